/* The container's terminal. The pty comes from the container's own /dev/ptmx
 * (a devpts instance the plan mounted), after pivot. Its master either goes
 * to the caller's console socket (SCM_RIGHTS, the pty name as payload) or,
 * with console_relay, to the executor parent, which relays its own stdio to
 * it while it waits. */
#include "executor.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

/* Before entering the container: the socket path is a host path. */
void console_connect(struct run *r) {
  const char *path = r->plan->console_socket;
  if (!path) return;
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  if (strlen(path) >= sizeof sa.sun_path) fail(ENAMETOOLONG, "console socket %s", path);
  strcpy(sa.sun_path, path);
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) fail(errno, "socket for console socket %s", path);
  if (connect(s, (struct sockaddr *)&sa, sizeof sa) < 0) fail(errno, "connect console socket %s", path);
  r->console_sock = s;
}

static void send_master(int sock, int master, const char *name) {
  struct iovec iov = { .iov_base = (void *)name, .iov_len = strlen(name) };
  union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
  memset(&u, 0, sizeof u);
  struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
  struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cm), &master, sizeof master);
  ssize_t n;
  do n = sendmsg(sock, &m, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
  if (n < 0) fail(errno, "send the pty master over the console socket");
}

void console_setup(struct run *r) {
  struct plan *p = r->plan;
  if (!p->console_socket && !p->console_relay) return;
  int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) fail(errno, "open /dev/ptmx in the container");
  int unlock = 0;
  if (ioctl(master, TIOCSPTLCK, &unlock) < 0) fail(errno, "unlockpt on /dev/ptmx");
  unsigned num;
  if (ioctl(master, TIOCGPTN, &num) < 0) fail(errno, "get the pty number from /dev/ptmx");
  char name[64];
  snprintf(name, sizeof name, "/dev/pts/%u", num);
  if (p->has_console_size) {
    struct winsize ws = { .ws_row = p->console_rows, .ws_col = p->console_cols };
    if (ioctl(master, TIOCSWINSZ, &ws) < 0) fail(errno, "set the size of %s", name);
  }
  int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave < 0) slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave < 0) fail(errno, "open %s", name);
  if (p->console_socket) {
    send_master(r->console_sock, master, name);
    close(r->console_sock);
    r->console_sock = -1;
  } else if (chan_send(r->chan, 'M', master) < 0) {
    fail(errno, "pass the pty master to the executor");
  }
  close(master);
  for (int fd = 0; fd <= 2; fd++)
    if (dup2(slave, fd) < 0) fail(errno, "make %s fd %d", name, fd);
  if (slave > 2) close(slave);
  if (ioctl(0, TIOCSCTTY, 0) < 0) fail(errno, "make %s the controlling terminal", name);
}

/* ---- the relay, in the executor parent ---- */

static int relay_master = -1;
static bool stdin_open = true;
static bool raw;
static struct termios saved;

void relay_winch(void) {
  struct winsize ws;
  if (relay_master >= 0 && ioctl(0, TIOCGWINSZ, &ws) == 0) ioctl(relay_master, TIOCSWINSZ, &ws);
}

void relay_start(int master) {
  relay_master = master;
  if (isatty(0) && tcgetattr(0, &saved) == 0) {
    struct termios t = saved;
    cfmakeraw(&t);
    if (tcsetattr(0, TCSANOW, &t) == 0) raw = true;
    relay_winch();
  }
}

void relay_poll_fds(int *fds, int *n) {
  *n = 0;
  if (relay_master < 0) return;
  fds[(*n)++] = relay_master;
  if (stdin_open) fds[(*n)++] = 0;
}

static bool copy(int from, int to) {
  char buf[8192];
  ssize_t n;
  do n = read(from, buf, sizeof buf); while (n < 0 && errno == EINTR);
  if (n <= 0) return false;
  write_full(to, buf, (size_t)n);
  return true;
}

void relay_handle(const int *revents) {
  if (relay_master < 0) return;
  if (revents[0] & (POLLIN | POLLHUP | POLLERR)) {
    if (!copy(relay_master, 1)) {
      close(relay_master);
      relay_master = -1;
      return;
    }
  }
  if (stdin_open && (revents[1] & (POLLIN | POLLHUP | POLLERR)))
    if (!copy(0, relay_master)) stdin_open = false;
}

/* The process is gone: drain what it wrote, give the terminal back. */
void relay_finish(void) {
  if (relay_master >= 0) {
    int fl = fcntl(relay_master, F_GETFL);
    fcntl(relay_master, F_SETFL, fl | O_NONBLOCK);
    while (copy(relay_master, 1)) {}
    close(relay_master);
    relay_master = -1;
  }
  if (raw) tcsetattr(0, TCSANOW, &saved);
  raw = false;
}
