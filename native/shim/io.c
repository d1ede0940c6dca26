/* A process's stdio: the pipes (or the pty master) the shim holds, and where
 * their output goes: the json-file log, the client fifos, attached clients. */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIFO_PENDING_MAX (4 * 1024 * 1024)
#define LOG_LINE_MAX (16 * 1024)

struct proc *init_proc;
struct proc *procs;

struct proc *proc_new(const char *exec_id)
{
	struct proc *p = xmalloc(sizeof *p);
	snprintf(p->exec_id, sizeof p->exec_id, "%s", exec_id);
	p->master = p->in_fd = p->sin_fd = -1;
	p->in_w.fd = p->sin_w.fd = -1;
	for (int i = 0; i < 2; i++) {
		p->out[i].p = p;
		p->out[i].no = i + 1;
		p->out[i].fd = p->out[i].w.fd = -1;
	}
	for (int i = 0; i < 3; i++)
		p->child_fds[i] = -1;
	p->next = procs;
	procs = p;
	return p;
}

struct proc *proc_find(const char *exec_id)
{
	for (struct proc *p = procs; p; p = p->next)
		if (!strcmp(p->exec_id, exec_id ? exec_id : ""))
			return p;
	return NULL;
}

static void proc_release(void *ptr)
{
	struct proc *p = ptr;
	free(p->error);
	free(p->process_file);
	free(p->plan_file);
	free(p->stdin_fifo);
	free(p->stdout_fifo);
	free(p->stderr_fifo);
	free(p);
}

void proc_free(struct proc *p)
{
	for (struct proc **pp = &procs; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	io_close_all(p);
	attach_ended(p);
	loop_defer_free(p, proc_release);
}

/* ---- fifos the output is copied to ---- */

static void fifo_close(struct fifo_out *f)
{
	loop_set(&f->w, 0);
	f->w.fd = -1;
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
	buf_free(&f->pend);
}

static void on_fifo_writable(struct watch *w, uint32_t ev)
{
	(void)ev;
	struct fifo_out *f = w->ptr;
	while (f->pend.len > 0) {
		ssize_t n = write(f->fd, f->pend.p, f->pend.len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0) {
			warnx_log("write to fifo: %m");
			f->pend.len = 0;
			break;
		}
		buf_consume(&f->pend, (size_t)n);
	}
	loop_set(&f->w, 0);
	if (f->ended) {
		fifo_close(f);
		free(f);
	}
}

static struct fifo_out *fifo_open(const char *path, const char **err)
{
	/* O_RDWR: there is always a reader, so the open never fails for want of one,
	 * and what is written waits in the fifo for a client that comes (back).
	 * A regular file (a file:// log a client named) is appended to. */
	struct stat st;
	int regular = stat(path, &st) == 0 && S_ISREG(st.st_mode);
	int fd = regular ? open(path, O_WRONLY | O_APPEND | O_CLOEXEC) : open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		*err = "open fifo";
		return NULL;
	}
	if (!regular)
		(void)fcntl(fd, F_SETPIPE_SZ, 1024 * 1024);
	struct fifo_out *f = xmalloc(sizeof *f);
	f->fd = fd;
	f->w = (struct watch){.fd = fd, .fn = on_fifo_writable, .ptr = f};
	return f;
}

static void fifo_write(struct fifo_out *f, const char *data, size_t n)
{
	if (f->fd < 0)
		return;
	if (f->pend.len == 0) {
		ssize_t w;
		do
			w = write(f->fd, data, n);
		while (w < 0 && errno == EINTR);
		if (w < 0 && errno != EAGAIN) {
			warnx_log("write to fifo: %m");
			return;
		}
		if (w > 0) {
			data += w;
			n -= (size_t)w;
		}
		if (n == 0)
			return;
	}
	buf_add(&f->pend, data, n);
	if (f->pend.len > FIFO_PENDING_MAX)
		buf_consume(&f->pend, f->pend.len - FIFO_PENDING_MAX);
	loop_set(&f->w, EPOLLOUT);
}

/* The stream has ended: close the fifo once what waits has been written. */
static void fifo_end(struct fifo_out *f)
{
	f->ended = 1;
	if (f->pend.len == 0) {
		fifo_close(f);
		free(f);
	}
}

/* ---- output streams ---- */

/* Docker's json-file lines: one entry per line, a line of 16 KiB or more
 * (its '\n' aside) in 16 KiB pieces, however the output was chunked. */
static void log_chunk(struct stream *s, const char *data, size_t n, const struct timespec *ts)
{
	const char *name = s->no == 1 ? "stdout" : "stderr";
	while (n > 0) {
		const char *nl = memchr(data, '\n', n);
		size_t len = nl ? (size_t)(nl - data) + 1 : n; /* up to and with the '\n' */
		if (s->partial.len == 0 && nl && len <= LOG_LINE_MAX) {
			jlog_write(name, data, len, ts);
		} else {
			buf_add(&s->partial, data, len);
			size_t content = s->partial.len - (nl ? 1 : 0), off = 0;
			for (; content - off >= LOG_LINE_MAX; off += LOG_LINE_MAX)
				jlog_write(name, s->partial.p + off, LOG_LINE_MAX, ts);
			buf_consume(&s->partial, off);
			if (nl) {
				jlog_write(name, s->partial.p, s->partial.len, ts);
				buf_consume(&s->partial, s->partial.len);
			}
		}
		data += len;
		n -= len;
	}
}

static void deliver(struct stream *s, const char *data, size_t n)
{
	struct proc *p = s->p;
	if (p == init_proc && cfg.log_path) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		log_chunk(s, data, n, &ts);
	}
	if (s->fifo)
		fifo_write(s->fifo, data, n);
	attach_output(p, s->no, data, n);
}

static void stream_end(struct stream *s)
{
	if (s->fd < 0)
		return;
	loop_set(&s->w, 0);
	close(s->fd);
	s->fd = s->w.fd = -1;
	if (s->partial.len > 0 && s->p == init_proc && cfg.log_path) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		jlog_write(s->no == 1 ? "stdout" : "stderr", s->partial.p, s->partial.len, &ts);
	}
	buf_free(&s->partial);
	if (s->fifo) {
		fifo_end(s->fifo);
		s->fifo = NULL;
	}
	if (io_ended(s->p))
		attach_ended(s->p);
}

/* Reads until the pipe is empty (drain) or a few chunks (fairness); 1 at EOF. */
static int stream_read(struct stream *s, int drain)
{
	static char rbuf[32 * 1024];
	for (int i = 0; drain || i < 4; i++) {
		if (s->fd < 0)
			return 1;
		ssize_t n = read(s->fd, rbuf, sizeof rbuf);
		if (n > 0) {
			deliver(s, rbuf, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		/* 0: every writer closed; EIO: the pty's last slave closed */
		stream_end(s);
		return 1;
	}
	return 0;
}

static void on_stream(struct watch *w, uint32_t ev)
{
	(void)ev;
	stream_read(w->ptr, 0);
}

void io_drain(struct proc *p)
{
	for (int i = 0; i < 2; i++)
		if (p->out[i].fd >= 0)
			stream_read(&p->out[i], 1);
}

int io_ended(const struct proc *p)
{
	return p->out[0].fd < 0 && p->out[1].fd < 0;
}

/* ---- stdin ---- */

static void stdin_close_now(struct proc *p)
{
	loop_set(&p->in_w, 0);
	if (p->in_fd >= 0)
		close(p->in_fd);
	p->in_fd = p->in_w.fd = -1;
	buf_free(&p->in_pend);
}

/* Whether stdin takes input: open now, or (a terminal exec not started yet)
 * once its pty arrives; what is written meanwhile waits in in_pend. */
int io_stdin_open(const struct proc *p)
{
	if (p->in_closing)
		return 0;
	if (p->in_fd >= 0)
		return 1;
	return p->terminal && p->want_stdin && p->master < 0 && (p->status == ST_CREATING || p->status == ST_CREATED);
}

static void stdin_flush(struct proc *p)
{
	while (p->in_pend.len > 0) {
		ssize_t n = write(p->in_fd, p->in_pend.p, p->in_pend.len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			loop_set(&p->in_w, EPOLLOUT);
			return;
		}
		if (n < 0) { /* EPIPE: the process closed its stdin */
			stdin_close_now(p);
			return;
		}
		buf_consume(&p->in_pend, (size_t)n);
	}
	loop_set(&p->in_w, 0);
	if (p->in_closing)
		stdin_close_now(p);
}

static void on_stdin_writable(struct watch *w, uint32_t ev)
{
	(void)ev;
	stdin_flush(w->ptr);
}

/* in_fd is known: make it non-blocking, give it its watch, write what waits. */
static void stdin_ready(struct proc *p)
{
	set_nonblock(p->in_fd, 1);
	p->in_w = (struct watch){.fd = p->in_fd, .fn = on_stdin_writable, .ptr = p};
	if (p->in_pend.len > 0 || p->in_closing)
		stdin_flush(p);
}

void io_stdin_write(struct proc *p, const char *data, size_t n)
{
	if (!io_stdin_open(p) || n == 0)
		return;
	buf_add(&p->in_pend, data, n);
	if (p->in_fd >= 0 && p->in_w.events == 0)
		stdin_flush(p);
}

void io_close_stdin(struct proc *p)
{
	if (!io_stdin_open(p))
		return;
	if (p->terminal) {
		/* a pty has no end of file: send ^D, as a typist would */
		io_stdin_write(p, "\x04", 1);
	}
	p->in_closing = 1;
	if (p->in_fd >= 0 && p->in_pend.len == 0)
		stdin_close_now(p);
}

static void on_stdin_fifo(struct watch *w, uint32_t ev)
{
	(void)ev;
	struct proc *p = w->ptr;
	char b[16 * 1024];
	ssize_t n = read(p->sin_fd, b, sizeof b);
	if (n > 0) {
		io_stdin_write(p, b, (size_t)n);
		return;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	/* the fifo's last writer has gone */
	loop_set(&p->sin_w, 0);
	close(p->sin_fd);
	p->sin_fd = p->sin_w.fd = -1;
	io_close_stdin(p);
}

/* ---- setup ---- */

static int make_pipe(int fds[2])
{
	return pipe2(fds, O_CLOEXEC);
}

int io_setup(struct proc *p, const char **err)
{
	int fds[2];
	if (p->terminal) {
		/* the runtime's own stdio: its stderr is kept to report its errors */
		p->child_fds[0] = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (make_pipe(fds) < 0)
			goto fail;
		p->out[1].fd = fds[0];
		p->child_fds[1] = fcntl(fds[1], F_DUPFD_CLOEXEC, 0);
		p->child_fds[2] = fds[1];
	} else {
		if (p->want_stdin) {
			if (make_pipe(fds) < 0)
				goto fail;
			p->child_fds[0] = fds[0];
			p->in_fd = fds[1];
			stdin_ready(p);
		} else {
			p->child_fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
		}
		for (int i = 0; i < 2; i++) {
			if (make_pipe(fds) < 0)
				goto fail;
			p->out[i].fd = fds[0];
			p->child_fds[i + 1] = fds[1];
		}
	}
	if (p->stdout_fifo && !(p->out[0].fifo = fifo_open(p->stdout_fifo, err)))
		return -1;
	if (p->stderr_fifo && !p->terminal && !(p->out[1].fifo = fifo_open(p->stderr_fifo, err)))
		return -1;
	if (p->stdin_fifo) {
		p->sin_fd = open(p->stdin_fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
		if (p->sin_fd < 0) {
			*err = "open stdin fifo";
			return -1;
		}
	}
	return 0;
fail:
	*err = "pipe";
	return -1;
}

void io_take_master(struct proc *p, int master)
{
	p->master = master;
	p->out[0].fd = fcntl(master, F_DUPFD_CLOEXEC, 0);
	set_nonblock(master, 1);
	if (p->want_stdin || p->stdin_fifo) {
		p->in_fd = fcntl(master, F_DUPFD_CLOEXEC, 0);
		if (p->in_fd >= 0)
			stdin_ready(p);
	}
}

/* The process runs: drop our copies of its ends and start copying. */
void io_started(struct proc *p)
{
	for (int i = 0; i < 3; i++) {
		if (p->child_fds[i] >= 0)
			close(p->child_fds[i]);
		p->child_fds[i] = -1;
	}
	if (p->terminal && p->out[1].fd >= 0) {
		/* the runtime's stderr pipe; not the process's output */
		close(p->out[1].fd);
		p->out[1].fd = -1;
	}
	for (int i = 0; i < 2; i++) {
		struct stream *s = &p->out[i];
		if (s->fd < 0)
			continue;
		set_nonblock(s->fd, 1);
		s->w = (struct watch){.fd = s->fd, .fn = on_stream, .ptr = s};
		loop_set(&s->w, EPOLLIN);
	}
	if (p->sin_fd >= 0) {
		p->sin_w = (struct watch){.fd = p->sin_fd, .fn = on_stdin_fifo, .ptr = p};
		loop_set(&p->sin_w, EPOLLIN);
	}
}

void io_close_all(struct proc *p)
{
	for (int i = 0; i < 2; i++) {
		struct stream *s = &p->out[i];
		if (s->w.events)
			stream_end(s);
		else if (s->fd >= 0) {
			close(s->fd);
			s->fd = -1;
		}
		buf_free(&s->partial);
		if (s->fifo) {
			on_fifo_writable(&s->fifo->w, EPOLLOUT); /* one last try */
			if (s->fifo->fd >= 0) {
				fifo_close(s->fifo);
				free(s->fifo);
			}
			s->fifo = NULL;
		}
	}
	stdin_close_now(p);
	if (p->sin_fd >= 0) {
		loop_set(&p->sin_w, 0);
		close(p->sin_fd);
		p->sin_fd = p->sin_w.fd = -1;
	}
	if (p->master >= 0)
		close(p->master);
	p->master = -1;
	for (int i = 0; i < 3; i++) {
		if (p->child_fds[i] >= 0)
			close(p->child_fds[i]);
		p->child_fds[i] = -1;
	}
}
