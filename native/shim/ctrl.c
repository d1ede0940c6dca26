/* The control socket: line-delimited JSON requests and answers (PROTOCOL.md). */
#include "shim.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define CONN_PENDING_MAX (16 * 1024 * 1024)

struct conn {
	struct conn *next;
	int fd;
	struct watch w;
	struct buf in, out;
	int versioned, subscribed, dead;
};

struct waiter {
	struct waiter *next;
	struct conn *c;
	struct proc *p;
	int has_seq;
	long long seq;
};

struct req {
	struct conn *c;
	struct jobj o;
	int has_seq;
	long long seq;
};

static struct conn *conns;
static struct waiter *waiters;
static struct watch listen_w = {.fd = -1};

static void conn_release(void *ptr)
{
	struct conn *c = ptr;
	buf_free(&c->in);
	buf_free(&c->out);
	free(c);
}

static void conn_close(struct conn *c)
{
	if (c->dead)
		return;
	c->dead = 1;
	loop_set(&c->w, 0);
	close(c->fd);
	c->fd = c->w.fd = -1;
	for (struct conn **pp = &conns; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	/* its waits are forgotten when their process exits */
	for (struct waiter *w = waiters; w; w = w->next)
		if (w->c == c)
			w->c = NULL;
	loop_defer_free(c, conn_release);
}

static void conn_flush(struct conn *c)
{
	if (buf_send(&c->out, c->fd) < 0) {
		conn_close(c);
		return;
	}
	loop_set(&c->w, EPOLLIN | (c->out.len ? EPOLLOUT : 0));
}

static void conn_send(struct conn *c, const struct buf *b)
{
	if (c->dead)
		return;
	buf_add(&c->out, b->p, b->len);
	if (c->out.len > CONN_PENDING_MAX) {
		warnx_log("control client does not read; disconnected");
		conn_close(c);
		return;
	}
	conn_flush(c);
}

/* ---- answers ---- */

static void begin(struct buf *b, int has_seq, long long seq, int ok)
{
	buf_addf(b, "{\"ok\":%s", ok ? "true" : "false");
	if (has_seq)
		buf_addf(b, ",\"seq\":%lld", seq);
}

static void fail(struct req *r, const char *code, const char *msg)
{
	struct buf b = {0};
	begin(&b, r->has_seq, r->seq, 0);
	buf_addf(&b, ",\"code\":\"%s\",\"error\":", code);
	buf_json_str(&b, msg, strlen(msg));
	buf_adds(&b, "}\n");
	conn_send(r->c, &b);
	buf_free(&b);
}

/* extra: more fields, each starting with ',' */
static void ok(struct req *r, const char *extra)
{
	struct buf b = {0};
	begin(&b, r->has_seq, r->seq, 1);
	buf_adds(&b, extra);
	buf_adds(&b, "}\n");
	conn_send(r->c, &b);
	buf_free(&b);
}

static void exit_fields(struct buf *b, const struct proc *p)
{
	char t[40];
	fmt_time(&p->exited_at, t);
	buf_addf(b, ",\"pid\":%d,\"exit_code\":%d,\"exited_at\":\"%s\"", (int)p->pid, p->exit_code, t);
}

static const char *status_name(int s)
{
	switch (s) {
	case ST_CREATING: return "creating";
	case ST_CREATED: return "created";
	case ST_RUNNING: return "running";
	case ST_STOPPED: return "stopped";
	default: return "failed";
	}
}

/* ---- requests ---- */

static int valid_exec_id(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 76)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
		if (!alnum && (i == 0 || (c != '_' && c != '-' && c != '.')))
			return 0;
	}
	return 1;
}

static struct proc *target(struct req *r)
{
	const char *id = json_str(&r->o, "exec_id");
	struct proc *p = proc_find(id ? id : "");
	if (!p) {
		char msg[128];
		snprintf(msg, sizeof msg, "exec %s: no such process", id);
		fail(r, "not_found", msg);
	}
	return p;
}

static void op_version(struct req *r)
{
	long long v = json_num(&r->o, "version", -1);
	if (v != PROTOCOL_VERSION) {
		char msg[128];
		snprintf(msg, sizeof msg, "unsupported protocol version %lld; this shim speaks %d", v, PROTOCOL_VERSION);
		fail(r, "invalid", msg);
		return;
	}
	r->c->versioned = 1;
	struct buf b = {0};
	buf_addf(&b, ",\"version\":%d,\"pid\":%d,\"id\":", PROTOCOL_VERSION, (int)getpid());
	buf_json_str(&b, cfg.id, strlen(cfg.id));
	buf_adds(&b, ",\"namespace\":");
	buf_json_str(&b, cfg.ns, strlen(cfg.ns));
	buf_add(&b, "", 1);
	ok(r, b.p);
	buf_free(&b);
}

static void op_create(struct req *r)
{
	if (init_proc->status == ST_FAILED) {
		fail(r, "failed_precondition", init_proc->error ? init_proc->error : "create failed");
		return;
	}
	char extra[32];
	snprintf(extra, sizeof extra, ",\"pid\":%d", (int)init_proc->pid);
	ok(r, extra);
}

static void op_start(struct req *r)
{
	struct proc *p = target(r);
	if (!p)
		return;
	if (p->status != ST_CREATED) {
		char msg[96];
		snprintf(msg, sizeof msg, "cannot start a process that is %s", status_name(p->status));
		fail(r, "failed_precondition", msg);
		return;
	}
	char err[2048];
	int rc = p == init_proc ? rt_start(p, err, sizeof err) : rt_exec(p, err, sizeof err);
	if (rc < 0) {
		if (p != init_proc) {
			p->status = ST_FAILED;
			free(p->error);
			p->error = xstrdup(err);
			io_close_all(p); /* the client's fifos see their end */
			attach_ended(p); /* and so do attached clients */
		}
		fail(r, "failed_precondition", err);
		return;
	}
	if (p->status == ST_CREATED)
		p->status = ST_RUNNING;
	char extra[32];
	snprintf(extra, sizeof extra, ",\"pid\":%d", (int)p->pid);
	ok(r, extra);
	if (p != init_proc) {
		struct buf b = {0};
		buf_adds(&b, "{\"event\":\"exec_started\",\"exec_id\":");
		buf_json_str(&b, p->exec_id, strlen(p->exec_id));
		buf_addf(&b, ",\"pid\":%d}", (int)p->pid);
		buf_add(&b, "", 1);
		ctrl_event(b.p);
		buf_free(&b);
	}
}

static void op_exec(struct req *r)
{
	const char *id = json_str(&r->o, "exec_id");
	if (!id || !valid_exec_id(id)) {
		fail(r, "invalid", "exec_id: required, letters, digits, '_', '-', '.' (at most 76)");
		return;
	}
	if (proc_find(id)) {
		fail(r, "already_exists", "exec_id: a process with this id exists");
		return;
	}
	if (init_proc->status != ST_RUNNING) {
		fail(r, "failed_precondition", "cannot exec in a container that is not running");
		return;
	}
	const char *file = json_str(&r->o, cfg.executor ? "plan" : "process");
	if (!file || file[0] != '/') {
		fail(r, "invalid", cfg.executor ? "plan: an absolute path to the exec plan is required"
						: "process: an absolute path to the process.json is required");
		return;
	}
	struct proc *p = proc_new(id);
	if (cfg.executor)
		p->plan_file = xstrdup(file);
	else
		p->process_file = xstrdup(file);
	p->terminal = json_bool(&r->o, "terminal", 0);
	p->want_stdin = json_bool(&r->o, "stdin", 0);
	p->stdin_fifo = xstrdup(json_str(&r->o, "stdin_fifo"));
	p->stdout_fifo = xstrdup(json_str(&r->o, "stdout_fifo"));
	p->stderr_fifo = xstrdup(json_str(&r->o, "stderr_fifo"));
	if (p->stdin_fifo && !p->stdin_fifo[0]) {
		free(p->stdin_fifo);
		p->stdin_fifo = NULL;
	}
	if (p->stdin_fifo)
		p->want_stdin = 1;
	const char *err = NULL;
	if (io_setup(p, &err) < 0) {
		char msg[256];
		snprintf(msg, sizeof msg, "exec %s: %s: %s", id, err, strerror(errno));
		proc_free(p);
		fail(r, "failed_precondition", msg);
		return;
	}
	p->status = ST_CREATED;
	ok(r, "");
}

static void op_state(struct req *r)
{
	struct proc *p = target(r);
	if (!p)
		return;
	struct buf b = {0};
	buf_adds(&b, ",\"exec_id\":");
	buf_json_str(&b, p->exec_id, strlen(p->exec_id));
	buf_addf(&b, ",\"status\":\"%s\",\"terminal\":%s,\"stdin\":%s", status_name(p->status),
		 p->terminal ? "true" : "false", io_stdin_open(p) ? "true" : "false");
	if (p->status == ST_STOPPED)
		exit_fields(&b, p);
	else
		buf_addf(&b, ",\"pid\":%d", (int)p->pid);
	if (p->status == ST_FAILED && p->error) {
		buf_adds(&b, ",\"error\":");
		buf_json_str(&b, p->error, strlen(p->error));
	}
	buf_add(&b, "", 1);
	ok(r, b.p);
	buf_free(&b);
}

static void op_kill(struct req *r)
{
	struct proc *p = target(r);
	if (!p)
		return;
	long long sig = json_num(&r->o, "signal", SIGTERM);
	if (sig <= 0 || sig >= 65) {
		fail(r, "invalid", "signal: a signal number from 1 to 64");
		return;
	}
	char err[2048];
	if (json_bool(&r->o, "all", 0) && p == init_proc) {
		if (rt_kill_all((int)sig, err, sizeof err) < 0)
			fail(r, "failed_precondition", err);
		else
			ok(r, "");
		return;
	}
	if (p->status == ST_STOPPED || p->status == ST_FAILED || p->pid <= 0) {
		fail(r, "not_found", "process already finished");
		return;
	}
	/* the shim is the parent: the pid cannot have been reused until it reaps it */
	if (kill(p->pid, (int)sig) < 0) {
		snprintf(err, sizeof err, "kill %d: %s", (int)p->pid, strerror(errno));
		fail(r, errno == ESRCH ? "not_found" : "failed_precondition", err);
		return;
	}
	ok(r, "");
}

static void op_resize(struct req *r)
{
	struct proc *p = target(r);
	if (!p)
		return;
	long long rows = json_num(&r->o, "rows", -1), cols = json_num(&r->o, "cols", -1);
	if (rows < 0 || cols < 0 || rows > 65535 || cols > 65535) {
		fail(r, "invalid", "rows, cols: numbers from 0 to 65535 are required");
		return;
	}
	if (p->master < 0) {
		fail(r, "failed_precondition", "the process has no terminal");
		return;
	}
	if (console_resize(p->master, (unsigned)rows, (unsigned)cols) < 0) {
		char msg[96];
		snprintf(msg, sizeof msg, "resize: %s", strerror(errno));
		fail(r, "failed_precondition", msg);
		return;
	}
	ok(r, "");
}

static void op_close_stdin(struct req *r)
{
	struct proc *p = target(r);
	if (!p)
		return;
	io_close_stdin(p);
	ok(r, "");
}

static void op_wait(struct req *r)
{
	struct proc *p = target(r);
	if (!p)
		return;
	if (p->status == ST_FAILED) {
		fail(r, "failed_precondition", p->error ? p->error : "the process failed to start");
		return;
	}
	if (p->status == ST_STOPPED) {
		struct buf b = {0};
		exit_fields(&b, p);
		buf_add(&b, "", 1);
		ok(r, b.p);
		buf_free(&b);
		return;
	}
	struct waiter *w = xmalloc(sizeof *w);
	*w = (struct waiter){.next = waiters, .c = r->c, .p = p, .has_seq = r->has_seq, .seq = r->seq};
	waiters = w;
}

static void remove_exec_files(const struct proc *p)
{
	char name[128], path[4096];
	snprintf(name, sizeof name, "exec-%s.pid", p->exec_id);
	state_path(path, sizeof path, name);
	unlink(path);
	snprintf(name, sizeof name, "exec-%s.exit", p->exec_id);
	state_path(path, sizeof path, name);
	unlink(path);
}

static void op_delete(struct req *r)
{
	struct proc *p = target(r);
	if (!p)
		return;
	if (p->status == ST_RUNNING) {
		fail(r, "failed_precondition", p == init_proc ? "cannot delete a running container; kill it first"
							      : "cannot delete a running process");
		return;
	}
	struct buf b = {0};
	if (p != init_proc) {
		if (p->status == ST_STOPPED)
			exit_fields(&b, p);
		buf_add(&b, "", 1);
		remove_exec_files(p);
		for (struct waiter **wp = &waiters; *wp;) {
			if ((*wp)->p == p) {
				struct waiter *w = *wp;
				*wp = w->next;
				free(w);
			} else {
				wp = &(*wp)->next;
			}
		}
		proc_free(p);
		ok(r, b.p);
		buf_free(&b);
		return;
	}
	char err[2048];
	if (rt_delete(p->status != ST_STOPPED, err, sizeof err) < 0) {
		fail(r, "failed_precondition", err);
		return;
	}
	if (p->status == ST_CREATED && p->pid > 0) {
		kill(p->pid, SIGKILL);
		if (exit_wait_pid(p->pid, 10000) < 0) {
			fail(r, "failed_precondition", "the container's process did not exit after SIGKILL");
			return;
		}
	}
	if (p->status == ST_STOPPED)
		exit_fields(&b, p);
	buf_add(&b, "", 1);
	ok(r, b.p);
	buf_free(&b);
	shim_shutdown();
}

static void op_subscribe(struct req *r)
{
	r->c->subscribed = 1;
	ok(r, "");
}

static const struct {
	const char *name;
	void (*fn)(struct req *);
} ops[] = {
	{"version", op_version}, {"create", op_create}, {"start", op_start},
	{"exec", op_exec}, {"state", op_state}, {"kill", op_kill},
	{"resize", op_resize}, {"close_stdin", op_close_stdin}, {"wait", op_wait},
	{"delete", op_delete}, {"subscribe", op_subscribe},
};

static void handle(struct conn *c, const char *line, size_t n)
{
	struct req r = {.c = c};
	const char *err;
	if (json_parse(line, n, &r.o, &err) < 0) {
		char msg[128];
		snprintf(msg, sizeof msg, "request: %s", err);
		fail(&r, "invalid", msg);
		return;
	}
	r.has_seq = json_has(&r.o, "seq");
	r.seq = json_num(&r.o, "seq", 0);
	const char *op = json_str(&r.o, "op");
	if (!op) {
		fail(&r, "invalid", "op: required");
	} else if (!c->versioned && strcmp(op, "version")) {
		fail(&r, "failed_precondition", "the first request must be {\"op\":\"version\",\"version\":1}");
	} else {
		size_t i;
		for (i = 0; i < sizeof ops / sizeof ops[0]; i++)
			if (!strcmp(ops[i].name, op))
				break;
		if (i == sizeof ops / sizeof ops[0]) {
			char msg[96];
			snprintf(msg, sizeof msg, "op: unknown operation %.40s", op);
			fail(&r, "invalid", msg);
		} else {
			ops[i].fn(&r);
		}
	}
	json_free(&r.o);
}

static void on_conn(struct watch *w, uint32_t ev)
{
	struct conn *c = w->ptr;
	if (ev & EPOLLOUT)
		conn_flush(c);
	if (c->dead || !(ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	char b[16 * 1024];
	ssize_t n = recv(c->fd, b, sizeof b, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_close(c);
		return;
	}
	buf_add(&c->in, b, (size_t)n);
	size_t start = 0;
	for (;;) {
		char *nl = memchr(c->in.p + start, '\n', c->in.len - start);
		if (!nl)
			break;
		size_t len = (size_t)(nl - (c->in.p + start));
		if (len > 0)
			handle(c, c->in.p + start, len);
		if (c->dead)
			return;
		start += len + 1;
	}
	buf_consume(&c->in, start);
	if (c->in.len > MAX_LINE) {
		struct req r = {.c = c};
		fail(&r, "invalid", "request line longer than 64 KiB");
		conn_close(c);
	}
}

static void on_accept(struct watch *w, uint32_t ev)
{
	(void)ev;
	for (;;) {
		int fd = accept4(w->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			return;
		struct conn *c = xmalloc(sizeof *c);
		c->fd = fd;
		c->w = (struct watch){.fd = fd, .fn = on_conn, .ptr = c};
		c->next = conns;
		conns = c;
		loop_set(&c->w, EPOLLIN);
	}
}

int ctrl_listen(void)
{
	char path[4096];
	state_path(path, sizeof path, "control.sock");
	int fd = listen_unix(path);
	if (fd < 0)
		return -1;
	listen_w = (struct watch){.fd = fd, .fn = on_accept};
	loop_set(&listen_w, EPOLLIN);
	return 0;
}

void ctrl_event(const char *json_line)
{
	struct buf b = {0};
	buf_adds(&b, json_line);
	buf_add(&b, "\n", 1);
	struct conn *next;
	for (struct conn *c = conns; c; c = next) {
		next = c->next;
		if (c->subscribed)
			conn_send(c, &b);
	}
	buf_free(&b);
}

void ctrl_proc_exited(struct proc *p)
{
	struct buf b = {0};
	buf_adds(&b, "{\"event\":\"exit\",\"exec_id\":");
	buf_json_str(&b, p->exec_id, strlen(p->exec_id));
	exit_fields(&b, p);
	buf_adds(&b, "}");
	buf_add(&b, "", 1);
	ctrl_event(b.p);
	buf_free(&b);
	for (struct waiter **wp = &waiters; *wp;) {
		struct waiter *w = *wp;
		if (w->p != p) {
			wp = &w->next;
			continue;
		}
		*wp = w->next;
		if (!w->c) {
			free(w);
			continue;
		}
		struct req r = {.c = w->c, .has_seq = w->has_seq, .seq = w->seq};
		struct buf e = {0};
		exit_fields(&e, p);
		buf_add(&e, "", 1);
		ok(&r, e.p);
		buf_free(&e);
		free(w);
	}
}

void ctrl_flush_all(void)
{
	for (struct conn *c = conns; c; c = c->next)
		if (!c->dead && c->out.len > 0) {
			set_nonblock(c->fd, 0);
			(void)write_all(c->fd, c->out.p, c->out.len);
			c->out.len = 0;
		}
}
