/* berth-shim: stays with one container while the daemons come and go (PROTOCOL.md).
 *
 * The runbook: check the arguments, detach (double fork, setsid), become a child
 * subreaper, make the state dir, write shim.pid, listen on the control and attach
 * sockets, say we are up on the ready fd, create the container, then serve. */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct config cfg = {.ready_fd = -1, .log_max_files = 1};

void state_path(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", cfg.state_dir, name);
}

static void usage(const char *msg, const char *arg) __attribute__((noreturn));
static void usage(const char *msg, const char *arg)
{
	fprintf(stderr, "berth-shim: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
	fprintf(stderr, "usage: berth-shim --id ID --namespace NS --bundle DIR --state-dir DIR\n"
			"  (--runtime PATH [--runtime-arg ARG]... [--runtime-root DIR] | --executor PATH --plan FILE [--exec-fifo PATH])\n"
			"  [--terminal] [--stdin] [--stdin-fifo P] [--stdout-fifo P] [--stderr-fifo P]\n"
			"  [--log-path P] [--log-max-size BYTES] [--log-max-files N] [--cgroup DIR] [--ready-fd FD]\n");
	exit(2);
}

static long long number(const char *opt, const char *v)
{
	char *end;
	errno = 0;
	long long n = strtoll(v, &end, 10);
	if (errno || end == v || *end || n < 0)
		usage("not a number", opt);
	return n;
}

static void parse_args(int argc, char **argv)
{
	static const char *rargs[16];
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--terminal")) {
			cfg.terminal = 1;
			continue;
		}
		if (!strcmp(a, "--stdin")) {
			cfg.stdin_open = 1;
			continue;
		}
		if (i + 1 >= argc)
			usage("missing value", a);
		const char *v = argv[++i];
		if (!strcmp(a, "--id")) cfg.id = v;
		else if (!strcmp(a, "--namespace")) cfg.ns = v;
		else if (!strcmp(a, "--bundle")) cfg.bundle = v;
		else if (!strcmp(a, "--state-dir")) cfg.state_dir = v;
		else if (!strcmp(a, "--runtime")) cfg.runtime = v;
		else if (!strcmp(a, "--runtime-root")) cfg.runtime_root = v;
		else if (!strcmp(a, "--runtime-arg")) {
			if (cfg.n_runtime_args == 16)
				usage("too many", a);
			rargs[cfg.n_runtime_args++] = v;
		}
		else if (!strcmp(a, "--executor")) cfg.executor = v;
		else if (!strcmp(a, "--plan")) cfg.plan = v;
		else if (!strcmp(a, "--exec-fifo")) cfg.exec_fifo = v;
		else if (!strcmp(a, "--stdin-fifo")) cfg.stdin_fifo = v;
		else if (!strcmp(a, "--stdout-fifo")) cfg.stdout_fifo = v;
		else if (!strcmp(a, "--stderr-fifo")) cfg.stderr_fifo = v;
		else if (!strcmp(a, "--log-path")) cfg.log_path = v;
		else if (!strcmp(a, "--log-max-size")) cfg.log_max_size = number(a, v);
		else if (!strcmp(a, "--log-max-files")) cfg.log_max_files = (int)number(a, v);
		else if (!strcmp(a, "--cgroup")) cfg.cgroup = v;
		else if (!strcmp(a, "--ready-fd")) cfg.ready_fd = (int)number(a, v);
		else usage("unknown option", a);
	}
	cfg.runtime_args = rargs;
	if (!cfg.id || !cfg.id[0]) usage("required", "--id");
	if (!cfg.ns) cfg.ns = "default";
	if (!cfg.bundle) usage("required", "--bundle");
	if (!cfg.state_dir) usage("required", "--state-dir");
	if (!!cfg.runtime == !!cfg.executor) usage("exactly one of --runtime and --executor is required", NULL);
	if (cfg.executor && !cfg.plan) usage("required with --executor", "--plan");
	if (cfg.log_max_files < 1) usage("must be at least 1", "--log-max-files");
	const char *paths[] = {cfg.bundle, cfg.state_dir, cfg.runtime_root, cfg.executor, cfg.plan, cfg.exec_fifo,
			       cfg.stdin_fifo, cfg.stdout_fifo, cfg.stderr_fifo, cfg.log_path, cfg.cgroup};
	for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
		if (paths[i] && paths[i][0] != '/')
			usage("paths must be absolute", paths[i]);
	if (strlen(cfg.state_dir) + sizeof "/control.sock" > 108)
		usage("too long for a socket path (at most 94 bytes)", "--state-dir");
}

static void ready(const char *error)
{
	if (cfg.ready_fd < 0)
		return;
	struct buf b = {0};
	if (error) {
		buf_adds(&b, "{\"ok\":false,\"error\":");
		buf_json_str(&b, error, strlen(error));
		buf_adds(&b, "}\n");
	} else {
		buf_addf(&b, "{\"ok\":true,\"pid\":%d}\n", (int)getpid());
	}
	(void)write_all(cfg.ready_fd, b.p, b.len);
	buf_free(&b);
	close(cfg.ready_fd);
	cfg.ready_fd = -1;
}

static void die(const char *what) __attribute__((noreturn));
static void die(const char *what)
{
	char msg[512];
	snprintf(msg, sizeof msg, "%s: %s", what, strerror(errno));
	warnx_log("%s", msg);
	ready(msg);
	exit(1);
}

/* Fork twice so the shim is nobody's child but init's (or a subreaper's), in its own session. */
static void detach(void)
{
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid > 0) {
		int st;
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		exit(WIFEXITED(st) ? WEXITSTATUS(st) : 1);
	}
	if (setsid() < 0)
		die("setsid");
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid > 0)
		_exit(0);
}

static void redirect_stdio(void)
{
	char path[4096];
	if (cfg.ready_fd >= 0 && cfg.ready_fd <= 2)
		cfg.ready_fd = fcntl(cfg.ready_fd, F_DUPFD_CLOEXEC, 3);
	int null = open("/dev/null", O_RDWR);
	state_path(path, sizeof path, "shim.log");
	int log = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
	dup2(null, 0);
	dup2(null, 1);
	dup2(log >= 0 ? log : null, 2);
	if (null > 2)
		close(null);
	if (log > 2)
		close(log);
}

static void remove_state_dir(void)
{
	DIR *d = opendir(cfg.state_dir);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				unlinkat(dirfd(d), e->d_name, 0);
		closedir(d);
	}
	rmdir(cfg.state_dir);
}

void shim_shutdown(void)
{
	ctrl_flush_all();
	attach_flush_all();
	for (struct proc *p = procs; p; p = p->next)
		io_close_all(p);
	remove_state_dir();
	exit(0);
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	detach();
	umask(022);
	signal(SIGPIPE, SIG_IGN);
	if (chdir("/") < 0)
		die("chdir /");
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
		die("PR_SET_CHILD_SUBREAPER");
	if (mkdir(cfg.state_dir, 0700) < 0 && errno != EEXIST)
		die(cfg.state_dir);
	redirect_stdio();

	char path[4096], pid[32];
	state_path(path, sizeof path, "shim.pid");
	int n = snprintf(pid, sizeof pid, "%d", (int)getpid());
	if (write_atomic(path, pid, (size_t)n) < 0)
		die(path);
	if (loop_init() < 0)
		die("epoll");
	if (exit_init() < 0)
		die("signalfd");
	if (ctrl_listen() < 0)
		die("listen on control.sock");
	if (attach_listen() < 0)
		die("listen on attach.sock");
	if (cfg.log_path && jlog_open(cfg.log_path, cfg.log_max_size, cfg.log_max_files) < 0)
		die(cfg.log_path);

	init_proc = proc_new("");
	init_proc->terminal = cfg.terminal;
	init_proc->want_stdin = cfg.stdin_open || cfg.stdin_fifo;
	init_proc->stdin_fifo = xstrdup(cfg.stdin_fifo);
	init_proc->stdout_fifo = xstrdup(cfg.stdout_fifo);
	init_proc->stderr_fifo = xstrdup(cfg.stderr_fifo);
	const char *ioerr = NULL;
	if (io_setup(init_proc, &ioerr) < 0)
		die(ioerr);
	ready(NULL);

	char err[2048];
	if (rt_create(init_proc, err, sizeof err) < 0) {
		warnx_log("create: %s", err);
		init_proc->status = ST_FAILED;
		init_proc->error = xstrdup(err);
		io_close_all(init_proc);
	} else {
		init_proc->status = ST_CREATED;
		io_started(init_proc);
		if (cfg.cgroup)
			oom_watch(cfg.cgroup);
	}
	loop_run();
	return 0;
}
