/* Runs the OCI runtime (create, start, exec, kill --all, delete) or, on the fast
 * path, berth-runc's executor on a plan. Each call runs to completion before the
 * shim goes back to its loop; the runtime's own children become ours once it exits. */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define HELPER_TIMEOUT_MS 120000

/* fds[i] becomes fd i in the child (-1: /dev/null for 0-2, nothing above). */
static pid_t spawn(char *const argv[], const int *fds, int nfds)
{
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	sigset_t all;
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	signal(SIGPIPE, SIG_DFL);
	int high[8];
	for (int i = 0; i < nfds; i++) {
		int src = fds[i] >= 0 ? fds[i] : open("/dev/null", O_RDWR);
		high[i] = fcntl(src, F_DUPFD, 100);
	}
	for (int i = 0; i < nfds; i++) {
		dup2(high[i], i);
		close(high[i]);
	}
	execv(argv[0], argv);
	dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

/* Waits for a helper; returns its wait status, or -1 (killed) after the timeout. */
static int wait_helper(pid_t pid, int timeout_ms)
{
	int st;
	/* A pidfd turns readable when the process exits: no sleeping in between. */
	int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pfd >= 0) {
		struct pollfd w = {.fd = pfd, .events = POLLIN};
		int r;
		while ((r = poll(&w, 1, timeout_ms)) < 0 && errno == EINTR)
			;
		close(pfd);
		if (r == 0)
			kill(pid, SIGKILL);
		while (waitpid(pid, &st, 0) < 0)
			if (errno != EINTR)
				return -1;
		return r == 0 ? -1 : st;
	}
	struct timespec delay = {0, 200000};
	long waited_us = 0;
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return st;
		if (r < 0 && errno != EINTR)
			return -1;
		if (waited_us / 1000 > timeout_ms) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return -1;
		}
		nanosleep(&delay, NULL);
		waited_us += delay.tv_nsec / 1000;
		if (delay.tv_nsec < 10000000)
			delay.tv_nsec *= 2;
	}
}

static void describe_status(int st, char *out, size_t n)
{
	if (st < 0)
		snprintf(out, n, "timed out after %d s", HELPER_TIMEOUT_MS / 1000);
	else if (WIFEXITED(st))
		snprintf(out, n, "exited with status %d", WEXITSTATUS(st));
	else
		snprintf(out, n, "killed by signal %d", WTERMSIG(st));
}

/* The msg of the last "level":"error" line of runtime.log, if any. */
static int runtime_log_error(char *err, size_t errn)
{
	char path[4096];
	state_path(path, sizeof path, "runtime.log");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	off_t size = lseek(fd, 0, SEEK_END);
	off_t from = size > 65536 ? size - 65536 : 0;
	char *text = xmalloc(65537);
	ssize_t n = pread(fd, text, 65536, from);
	close(fd);
	int found = 0;
	if (n > 0) {
		text[n] = 0;
		char *line = NULL;
		for (char *s = text; s && *s;) {
			char *nl = strchr(s, '\n');
			if (nl)
				*nl = 0;
			if (strstr(s, "\"level\":\"error\""))
				line = s;
			s = nl ? nl + 1 : NULL;
		}
		if (line) {
			struct jobj o;
			const char *perr;
			if (json_parse(line, strlen(line), &o, &perr) == 0 && json_str(&o, "msg")) {
				snprintf(err, errn, "%s", json_str(&o, "msg"));
				json_free(&o);
			} else {
				snprintf(err, errn, "%s", line);
			}
			found = 1;
		}
	}
	free(text);
	return found;
}

static void truncate_runtime_log(void)
{
	char path[4096];
	state_path(path, sizeof path, "runtime.log");
	(void)truncate(path, 0);
}

/* <runtime> [args] [--root R] --log L --log-format json <cmd...> */
static int run_runtime(const char *const *cmd, const int *stdio, int errfd, char *err, size_t errn)
{
	const char *argv[48];
	char logp[4096];
	int n = 0;
	state_path(logp, sizeof logp, "runtime.log");
	argv[n++] = cfg.runtime;
	for (int i = 0; i < cfg.n_runtime_args && n < 20; i++)
		argv[n++] = cfg.runtime_args[i];
	if (cfg.runtime_root) {
		argv[n++] = "--root";
		argv[n++] = cfg.runtime_root;
	}
	argv[n++] = "--log";
	argv[n++] = logp;
	argv[n++] = "--log-format";
	argv[n++] = "json";
	for (int i = 0; cmd[i] && n < 47; i++)
		argv[n++] = cmd[i];
	argv[n] = NULL;
	int none[3] = {-1, -1, -1};
	truncate_runtime_log();
	pid_t pid = spawn((char *const *)argv, stdio ? stdio : none, 3);
	if (pid < 0) {
		snprintf(err, errn, "fork: %s", strerror(errno));
		return -1;
	}
	int st = wait_helper(pid, HELPER_TIMEOUT_MS);
	if (st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	if (runtime_log_error(err, errn))
		return -1;
	char what[96];
	describe_status(st, what, sizeof what);
	char out[1024] = "";
	if (errfd >= 0) { /* what the runtime wrote to stderr, if we can tell it apart */
		set_nonblock(errfd, 1);
		ssize_t k = read(errfd, out, sizeof out - 1);
		out[k > 0 ? k : 0] = 0;
		for (char *e = out + strlen(out); e > out && (e[-1] == '\n' || e[-1] == ' '); e--)
			e[-1] = 0;
	}
	snprintf(err, errn, "%s %s %s%s%s", cfg.runtime, cmd[0], what, out[0] ? ": " : "", out);
	return -1;
}

static pid_t read_pid_file(const char *name)
{
	char path[4096], b[32];
	state_path(path, sizeof path, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, b, sizeof b - 1);
	close(fd);
	if (n <= 0)
		return -1;
	b[n] = 0;
	return (pid_t)atoi(b);
}

static void write_pid_file(const char *name, pid_t pid)
{
	char path[4096], b[32];
	state_path(path, sizeof path, name);
	int n = snprintf(b, sizeof b, "%d", (int)pid);
	if (write_atomic(path, b, (size_t)n) < 0)
		warnx_log("write %s: %m", path);
}

/* The executor on a plan file: reads the sync messages up to ready or error. */
static int run_executor(struct proc *p, const char *plan, char *err, size_t errn)
{
	int planfd = open(plan, O_RDONLY | O_CLOEXEC);
	if (planfd < 0) {
		snprintf(err, errn, "open plan %s: %s", plan, strerror(errno));
		return -1;
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		snprintf(err, errn, "socketpair: %s", strerror(errno));
		close(planfd);
		return -1;
	}
	char *argv[] = {(char *)cfg.executor, "--plan-fd", "3", "--sync-fd", "4", NULL};
	int fds[5] = {p->child_fds[0], p->child_fds[1], p->child_fds[2], planfd, sv[1]};
	pid_t pid = spawn(argv, fds, 5);
	close(planfd);
	close(sv[1]);
	if (pid < 0) {
		snprintf(err, errn, "fork: %s", strerror(errno));
		close(sv[0]);
		return -1;
	}
	struct buf in = {0};
	int result = 0; /* 1 ready, -1 error */
	err[0] = 0;
	while (result == 0) {
		struct pollfd pfd = {.fd = sv[0], .events = POLLIN};
		int r = poll(&pfd, 1, HELPER_TIMEOUT_MS);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0) {
			snprintf(err, errn, "executor: no answer in %d s", HELPER_TIMEOUT_MS / 1000);
			kill(pid, SIGKILL);
			result = -1;
			break;
		}
		char b[4096];
		ssize_t n = read(sv[0], b, sizeof b);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			result = -1;
			break;
		}
		buf_add(&in, b, (size_t)n);
		char *nl;
		while (result == 0 && (nl = memchr(in.p, '\n', in.len))) {
			size_t len = (size_t)(nl - in.p);
			struct jobj o;
			const char *perr;
			if (json_parse(in.p, len, &o, &perr) == 0) {
				const char *type = json_str(&o, "type");
				if (!type) {
				} else if (!strcmp(type, "pid")) {
					p->pid = (pid_t)json_num(&o, "pid", 0);
				} else if (!strcmp(type, "ready")) {
					result = 1;
				} else if (!strcmp(type, "error")) {
					const char *m = json_str(&o, "message");
					snprintf(err, errn, "%s", m ? m : "executor failed");
					result = -1;
				} else if (!strcmp(type, "hook")) {
					(void)write_all(sv[0], "abort\n", 6);
					snprintf(err, errn, "executor: hook %s needs the runtime path, not the fast path",
						 json_str(&o, "event") ? json_str(&o, "event") : "?");
					result = -1;
				}
				json_free(&o);
			}
			buf_consume(&in, len + 1);
		}
	}
	buf_free(&in);
	close(sv[0]);
	int st = wait_helper(pid, 10000);
	if (result == 1 && st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 && p->pid > 0)
		return 0;
	if (!err[0]) {
		char what[96];
		describe_status(st, what, sizeof what);
		snprintf(err, errn, "executor %s before the process was ready", what);
	}
	return -1;
}

/* With a terminal: the console socket around the call, and the master it brings. */
static int console_begin(struct proc *p)
{
	return p->terminal ? console_listen() : -1;
}

static int console_end(struct proc *p, int lfd, int ok, char *err, size_t errn)
{
	if (!p->terminal)
		return ok;
	if (ok == 0) {
		const char *cerr = NULL;
		int master = console_receive(lfd, 5000, &cerr);
		if (master < 0) {
			snprintf(err, errn, "console socket: %s", cerr ? cerr : "no terminal received");
			ok = -1;
		} else {
			io_take_master(p, master);
		}
	}
	console_close(lfd);
	return ok;
}

int rt_create(struct proc *p, char *err, size_t errn)
{
	int lfd = console_begin(p);
	if (p->terminal && lfd < 0) {
		snprintf(err, errn, "console socket: %s", strerror(errno));
		return -1;
	}
	int rc;
	if (cfg.executor) {
		rc = run_executor(p, cfg.plan, err, errn);
		if (rc == 0)
			write_pid_file("init.pid", p->pid);
	} else {
		char pidf[4096], sock[4096];
		state_path(pidf, sizeof pidf, "init.pid");
		state_path(sock, sizeof sock, "console.sock");
		const char *cmd[] = {"create", "--bundle", cfg.bundle, "--pid-file", pidf,
				     p->terminal ? "--console-socket" : cfg.id, p->terminal ? sock : NULL, cfg.id, NULL};
		if (!p->terminal)
			cmd[6] = NULL;
		rc = run_runtime(cmd, p->child_fds, p->out[1].fd, err, errn);
		if (rc == 0 && (p->pid = read_pid_file("init.pid")) <= 0) {
			snprintf(err, errn, "%s create: no pid in %s", cfg.runtime, pidf);
			rc = -1;
		}
	}
	return console_end(p, lfd, rc, err, errn);
}

int rt_start(struct proc *p, char *err, size_t errn)
{
	if (!cfg.executor) {
		const char *cmd[] = {"start", cfg.id, NULL};
		return run_runtime(cmd, NULL, -1, err, errn);
	}
	if (!cfg.exec_fifo)
		return 0;
	int fd = open(cfg.exec_fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errn, "open exec fifo %s: %s", cfg.exec_fifo, strerror(errno));
		return -1;
	}
	/* The container's open for writing returns once we have our end; it then
	 * writes one byte. poll() wakes on that byte; with no writer yet it blocks
	 * (a fifo reports POLLHUP only once a writer has come and gone). */
	for (int waited = 0;; waited += 20) {
		char c;
		ssize_t n = read(fd, &c, 1);
		if (n == 1)
			break;
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			snprintf(err, errn, "read exec fifo %s: %s", cfg.exec_fifo, strerror(errno));
			close(fd);
			return -1;
		}
		siginfo_t si = {0};
		if (waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == p->pid) {
			snprintf(err, errn, "cannot start a container that has stopped");
			close(fd);
			return -1;
		}
		if (waited > HELPER_TIMEOUT_MS) {
			snprintf(err, errn, "start: the container did not open its exec fifo");
			close(fd);
			return -1;
		}
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int r = poll(&pfd, 1, 20);
		if (r > 0 && (pfd.revents & POLLHUP) && !(pfd.revents & POLLIN)) {
			/* its writer closed without a byte: the process is going away */
			struct timespec d = {0, 1000000};
			nanosleep(&d, NULL);
		}
	}
	close(fd);
	unlink(cfg.exec_fifo);
	return 0;
}

int rt_exec(struct proc *p, char *err, size_t errn)
{
	char name[128], pidf[4096], sock[4096];
	snprintf(name, sizeof name, "exec-%s.pid", p->exec_id);
	state_path(pidf, sizeof pidf, name);
	state_path(sock, sizeof sock, "console.sock");
	int lfd = console_begin(p);
	if (p->terminal && lfd < 0) {
		snprintf(err, errn, "console socket: %s", strerror(errno));
		return -1;
	}
	int rc;
	if (cfg.executor) {
		rc = run_executor(p, p->plan_file, err, errn);
		if (rc == 0)
			write_pid_file(name, p->pid);
	} else {
		const char *cmd[] = {"exec", "--detach", "--pid-file", pidf, "--process", p->process_file,
				     "--console-socket", sock, cfg.id, NULL};
		if (!p->terminal)
			cmd[6] = cfg.id, cmd[7] = NULL;
		rc = run_runtime(cmd, p->child_fds, p->out[1].fd, err, errn);
		if (rc == 0 && (p->pid = read_pid_file(name)) <= 0) {
			snprintf(err, errn, "%s exec: no pid in %s", cfg.runtime, pidf);
			rc = -1;
		}
	}
	rc = console_end(p, lfd, rc, err, errn);
	if (rc == 0) {
		p->status = ST_RUNNING;
		io_started(p);
	}
	return rc;
}

int rt_kill_all(int sig, char *err, size_t errn)
{
	if (!cfg.executor) {
		char s[16];
		snprintf(s, sizeof s, "%d", sig);
		const char *cmd[] = {"kill", "--all", cfg.id, s, NULL};
		return run_runtime(cmd, NULL, -1, err, errn);
	}
	if (!cfg.cgroup) {
		snprintf(err, errn, "kill --all needs the shim's --cgroup");
		return -1;
	}
	char path[4096];
	snprintf(path, sizeof path, "%s/cgroup.procs", cfg.cgroup);
	FILE *f = fopen(path, "re");
	if (!f) {
		snprintf(err, errn, "open %s: %s", path, strerror(errno));
		return -1;
	}
	int pid;
	while (fscanf(f, "%d", &pid) == 1)
		if (pid > 0)
			kill(pid, sig);
	fclose(f);
	return 0;
}

int rt_delete(int force, char *err, size_t errn)
{
	if (cfg.executor)
		return 0; /* the supervisor removes the runtime state it wrote */
	const char *cmd[] = {"delete", force ? "--force" : cfg.id, force ? cfg.id : NULL, NULL};
	return run_runtime(cmd, NULL, -1, err, errn);
}
