/* Test helper: a console socket server. Listens on argv[1], receives one pty
 * master over SCM_RIGHTS, prints "name=<payload>" and then everything the
 * container writes to the terminal, until the pty closes.
 * Built by executor.test.ts with gcc; not part of the executor. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc != 2) { fprintf(stderr, "usage: recvtty SOCKET\n"); return 2; }
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", argv[1]);
  int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(l, 1) < 0) { perror("recvtty: listen"); return 1; }
  printf("listening\n");
  fflush(stdout);
  int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
  if (c < 0) { perror("recvtty: accept"); return 1; }
  char name[256] = "";
  struct iovec iov = { .iov_base = name, .iov_len = sizeof name - 1 };
  union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
  struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
  ssize_t n = recvmsg(c, &m, MSG_CMSG_CLOEXEC);
  if (n < 0) { perror("recvtty: recvmsg"); return 1; }
  name[n] = '\0';
  struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
  if (!cm || cm->cmsg_type != SCM_RIGHTS) { fprintf(stderr, "recvtty: no fd received\n"); return 1; }
  int master;
  memcpy(&master, CMSG_DATA(cm), sizeof master);
  printf("name=%s\n", name);
  fflush(stdout);
  char buf[4096];
  for (;;) {
    ssize_t k = read(master, buf, sizeof buf);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break; /* EIO once the last slave fd is closed */
    fwrite(buf, 1, (size_t)k, stdout);
    fflush(stdout);
  }
  return 0;
}
