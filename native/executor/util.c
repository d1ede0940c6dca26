/* Small helpers: whole writes, fd flags, the parent/child channel. */
#include "executor.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void write_full(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return;
    p += n;
    len -= (size_t)n;
  }
}

/* Writes data to path in one write(2) (id maps need that), failing with "write <what> to <path>". */
void write_file(const char *path, const char *data, size_t len, const char *what) {
  int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) fail(errno, "open %s to write %s", path, what);
  ssize_t n;
  do n = write(fd, data, len); while (n < 0 && errno == EINTR);
  if (n < 0) { int e = errno; close(fd); fail(e, "write %s to %s", what, path); }
  if ((size_t)n != len) { close(fd); fail(EIO, "write %s to %s: short write", what, path); }
  close(fd);
}

void fd_blocking(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0 && (fl & O_NONBLOCK)) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
}

void fd_cloexec(int fd, bool on) {
  int fl = fcntl(fd, F_GETFD);
  if (fl < 0) return;
  fcntl(fd, F_SETFD, on ? fl | FD_CLOEXEC : fl & ~FD_CLOEXEC);
}

int chan_send(int sock, char c, int fd) {
  struct iovec iov = { .iov_base = &c, .iov_len = 1 };
  union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
  struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
  if (fd >= 0) {
    memset(&u, 0, sizeof u);
    m.msg_control = u.buf;
    m.msg_controllen = sizeof u.buf;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof fd);
  }
  ssize_t n;
  do n = sendmsg(sock, &m, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
  return n == 1 ? 0 : -1;
}

int chan_recv(int sock, char *c, int *fd) {
  struct iovec iov = { .iov_base = c, .iov_len = 1 };
  union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
  struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
  if (fd) *fd = -1;
  ssize_t n;
  do n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC); while (n < 0 && errno == EINTR);
  if (n <= 0) return (int)n;
  for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm)) {
    if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
      int got;
      memcpy(&got, CMSG_DATA(cm), sizeof got);
      if (fd) *fd = got;
      else close(got);
    }
  }
  return 1;
}

char *xstrdup(const char *s) {
  char *r = strdup(s);
  if (!r) fail(ENOMEM, "strdup");
  return r;
}

char *xasprintf(const char *fmt, ...) {
  va_list ap;
  char *r;
  va_start(ap, fmt);
  int n = vasprintf(&r, fmt, ap);
  va_end(ap);
  if (n < 0) fail(ENOMEM, "asprintf");
  return r;
}
