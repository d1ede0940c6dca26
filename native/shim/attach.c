/* The attach socket: clients that read a process's output and one that writes its stdin. */
#include "shim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define CLIENT_PENDING_MAX (1024 * 1024)

struct client {
	struct client *next;
	int fd;
	struct watch w;
	struct proc *p;
	int started, dead, closing, read_done;
	int peer_shut; /* the client shut its write side: it may still read */
	int want_out[3]; /* by stream number */
	int has_stdin, stdin_once;
	struct buf in, out;
};

static struct client *clients;
static struct watch listen_w = {.fd = -1};

static void client_release(void *ptr)
{
	struct client *c = ptr;
	buf_free(&c->in);
	buf_free(&c->out);
	free(c);
}

static void client_close(struct client *c)
{
	if (c->dead)
		return;
	c->dead = 1;
	loop_set(&c->w, 0);
	close(c->fd);
	c->fd = c->w.fd = -1;
	if (c->has_stdin && c->p) {
		c->p->stdin_taken = 0;
		if (c->stdin_once)
			io_close_stdin(c->p);
	}
	for (struct client **pp = &clients; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	loop_defer_free(c, client_release);
}

static void client_update(struct client *c)
{
	if (c->dead)
		return;
	if (c->closing && c->out.len == 0) {
		client_close(c);
		return;
	}
	uint32_t ev = c->out.len ? EPOLLOUT : 0;
	if (!c->read_done)
		ev |= EPOLLIN;
	else if (!c->peer_shut)
		ev |= EPOLLRDHUP; /* the peer shutting its write side, or going away */
	else
		ev |= EPOLLRDHUP | EPOLLET; /* its write side is shut for good: only EPOLLHUP (gone) is news */
	loop_set(&c->w, ev);
}

static void client_flush(struct client *c)
{
	if (buf_send(&c->out, c->fd) < 0) {
		client_close(c);
		return;
	}
	client_update(c);
}

static void client_send(struct client *c, const void *data, size_t n)
{
	buf_add(&c->out, data, n);
	if (c->out.len > CLIENT_PENDING_MAX) {
		warnx_log("attach client does not read; disconnected");
		client_close(c);
		return;
	}
	client_flush(c);
}

static void client_refuse(struct client *c, const char *code, const char *msg)
{
	struct buf b = {0};
	buf_addf(&b, "{\"ok\":false,\"code\":\"%s\",\"error\":", code);
	buf_json_str(&b, msg, strlen(msg));
	buf_adds(&b, "}\n");
	c->closing = 1;
	c->read_done = 1;
	client_send(c, b.p, b.len);
	buf_free(&b);
}

static void client_header(struct client *c, const char *line, size_t n)
{
	struct jobj o;
	const char *err;
	if (json_parse(line, n, &o, &err) < 0) {
		client_refuse(c, "invalid", err);
		return;
	}
	const char *exec_id = json_str(&o, "exec_id");
	struct proc *p = proc_find(exec_id ? exec_id : "");
	int want_in = json_bool(&o, "stdin", 0);
	c->want_out[1] = json_bool(&o, "stdout", 0);
	c->want_out[2] = json_bool(&o, "stderr", 0);
	c->stdin_once = json_bool(&o, "stdin_once", 0);
	json_free(&o);
	if (!p) {
		client_refuse(c, "not_found", "no such process");
		return;
	}
	if (want_in && !io_stdin_open(p)) {
		client_refuse(c, "failed_precondition", "the process has no open stdin");
		return;
	}
	if (want_in && p->stdin_taken) {
		client_refuse(c, "failed_precondition", "another client is attached to stdin");
		return;
	}
	c->p = p;
	if (want_in) {
		c->has_stdin = 1;
		p->stdin_taken = 1;
	} else {
		c->read_done = 1;
	}
	c->started = 1;
	char ans[64];
	int len = snprintf(ans, sizeof ans, "{\"ok\":true,\"terminal\":%s}\n", p->terminal ? "true" : "false");
	client_send(c, ans, (size_t)len);
	if (!c->dead && io_ended(p) && p->status == ST_STOPPED) {
		c->closing = 1;
		client_update(c);
	}
}

static void on_client(struct watch *w, uint32_t ev)
{
	struct client *c = w->ptr;
	if (ev & EPOLLOUT)
		client_flush(c);
	if (c->dead)
		return;
	if (c->read_done) {
		/* Output only. A client that went away is gone; one that only shut
		 * its write side (stdin_once, or nothing to send) still reads. */
		if (ev & (EPOLLHUP | EPOLLERR))
			client_close(c);
		else if ((ev & EPOLLRDHUP) && !c->peer_shut) {
			c->peer_shut = 1;
			client_update(c);
		}
		return;
	}
	if ((ev & (EPOLLHUP | EPOLLERR)) && !(ev & EPOLLIN)) {
		client_close(c);
		return;
	}
	if (!(ev & (EPOLLIN | EPOLLRDHUP)))
		return;
	char b[16 * 1024];
	ssize_t n = recv(c->fd, b, sizeof b, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		c->peer_shut = 1;
		if (!c->started || !(c->want_out[1] || c->want_out[2])) {
			client_close(c);
			return;
		}
		/* half-closed: stdin ends, output goes on */
		c->read_done = 1;
		if (c->has_stdin) {
			c->has_stdin = 0;
			c->p->stdin_taken = 0;
			if (c->stdin_once)
				io_close_stdin(c->p);
		}
		client_update(c);
		return;
	}
	if (c->started) {
		io_stdin_write(c->p, b, (size_t)n);
		return;
	}
	buf_add(&c->in, b, (size_t)n);
	char *nl = memchr(c->in.p, '\n', c->in.len);
	if (!nl) {
		if (c->in.len > 4096)
			client_refuse(c, "invalid", "attach request line too long");
		return;
	}
	size_t hl = (size_t)(nl - c->in.p);
	client_header(c, c->in.p, hl);
	if (!c->dead && c->started && c->has_stdin && c->in.len > hl + 1)
		io_stdin_write(c->p, c->in.p + hl + 1, c->in.len - hl - 1);
	buf_free(&c->in);
	client_update(c);
}

static void on_accept(struct watch *w, uint32_t ev)
{
	(void)ev;
	for (;;) {
		int fd = accept4(w->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			return;
		struct client *c = xmalloc(sizeof *c);
		c->fd = fd;
		c->w = (struct watch){.fd = fd, .fn = on_client, .ptr = c};
		c->next = clients;
		clients = c;
		loop_set(&c->w, EPOLLIN | EPOLLRDHUP);
	}
}

int listen_unix(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof sa.sun_path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 64) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int attach_listen(void)
{
	char path[4096];
	state_path(path, sizeof path, "attach.sock");
	int fd = listen_unix(path);
	if (fd < 0)
		return -1;
	listen_w = (struct watch){.fd = fd, .fn = on_accept};
	loop_set(&listen_w, EPOLLIN);
	return 0;
}

void attach_output(struct proc *p, int stream, const char *data, size_t n)
{
	unsigned char hdr[8] = {(unsigned char)stream, 0, 0, 0,
				(unsigned char)(n >> 24), (unsigned char)(n >> 16), (unsigned char)(n >> 8), (unsigned char)n};
	struct client *next;
	for (struct client *c = clients; c; c = next) {
		next = c->next;
		if (c->p != p || !c->started || c->dead || !c->want_out[p->terminal ? 1 : stream])
			continue;
		if (!p->terminal)
			buf_add(&c->out, hdr, 8);
		client_send(c, data, n);
	}
}

void attach_ended(struct proc *p)
{
	struct client *next;
	for (struct client *c = clients; c; c = next) {
		next = c->next;
		if (c->p != p)
			continue;
		c->closing = 1;
		c->read_done = 1;
		client_update(c);
		if (!c->dead && p != proc_find(p->exec_id))
			client_close(c); /* the process is being forgotten */
	}
}

void attach_flush_all(void)
{
	for (struct client *c = clients; c; c = c->next)
		if (!c->dead && c->out.len > 0) {
			set_nonblock(c->fd, 0);
			(void)write_all(c->fd, c->out.p, c->out.len);
			c->out.len = 0;
		}
}
