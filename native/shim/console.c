/* The console socket (runc's --console-socket protocol) and the pty master it brings. */
#include "shim.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

int console_listen(void)
{
	char path[4096];
	state_path(path, sizeof path, "console.sock");
	return listen_unix(path);
}

static int wait_readable(int fd, int timeout_ms)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	int r;
	do
		r = poll(&pfd, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	return r;
}

int console_receive(int lfd, int timeout_ms, const char **err)
{
	if (wait_readable(lfd, timeout_ms) <= 0) {
		*err = "the runtime did not connect";
		return -1;
	}
	int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0) {
		*err = "accept failed";
		return -1;
	}
	if (wait_readable(c, timeout_ms) <= 0) {
		close(c);
		*err = "the runtime sent nothing";
		return -1;
	}
	char name[256];
	struct iovec iov = {.iov_base = name, .iov_len = sizeof name};
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b};
	ssize_t n;
	do
		n = recvmsg(c, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	close(c);
	struct cmsghdr *cm = n >= 0 ? CMSG_FIRSTHDR(&msg) : NULL;
	if (!cm || cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS ||
	    cm->cmsg_len != CMSG_LEN(sizeof(int))) {
		*err = "no file descriptor in the message";
		return -1;
	}
	int fd;
	memcpy(&fd, CMSG_DATA(cm), sizeof fd);
	return fd;
}

void console_close(int lfd)
{
	char path[4096];
	if (lfd >= 0)
		close(lfd);
	state_path(path, sizeof path, "console.sock");
	unlink(path);
}

int console_resize(int master, unsigned rows, unsigned cols)
{
	struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
	return ioctl(master, TIOCSWINSZ, &ws);
}
