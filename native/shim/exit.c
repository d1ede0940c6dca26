/* Reaping: every child the shim has (the container's processes are reparented to
 * it, a subreaper), the exit files, and the exit notices. */
#include "shim.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

static struct watch sig_w = {.fd = -1};

void exit_record(struct proc *p, int wstatus, const struct timespec *ts)
{
	/* what it wrote before exiting goes out before anyone hears of the exit */
	io_drain(p);
	p->status = ST_STOPPED;
	p->exit_code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
	p->exited_at = *ts;

	char t[40], name[128], path[4096], line[256];
	fmt_time(ts, t);
	int n = snprintf(line, sizeof line, "{\"pid\":%d,\"exit_code\":%d,\"exited_at\":\"%s\"}\n",
			 (int)p->pid, p->exit_code, t);
	if (p == init_proc)
		snprintf(name, sizeof name, "exit");
	else
		snprintf(name, sizeof name, "exec-%s.exit", p->exec_id);
	state_path(path, sizeof path, name);
	if (write_atomic(path, line, (size_t)n) < 0)
		warnx_log("write %s: %m", path);
	ctrl_proc_exited(p);
}

static struct proc *proc_by_pid(pid_t pid)
{
	for (struct proc *p = procs; p; p = p->next)
		if (p->pid == pid && (p->status == ST_CREATED || p->status == ST_RUNNING))
			return p;
	return NULL;
}

static void reap(pid_t pid, int st)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct proc *p = proc_by_pid(pid);
	if (p)
		exit_record(p, st, &ts);
}

static void on_sigchld(struct watch *w, uint32_t ev)
{
	(void)ev;
	struct signalfd_siginfo si;
	while (read(w->fd, &si, sizeof si) == sizeof si)
		;
	for (;;) {
		int st;
		pid_t pid = waitpid(-1, &st, WNOHANG);
		if (pid <= 0)
			return;
		reap(pid, st);
	}
}

int exit_init(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -1;
	int fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (fd < 0)
		return -1;
	sig_w = (struct watch){.fd = fd, .fn = on_sigchld};
	loop_set(&sig_w, EPOLLIN);
	return 0;
}

int exit_wait_pid(pid_t pid, int timeout_ms)
{
	for (int waited = 0; waited <= timeout_ms; waited += 2) {
		int st;
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid) {
			reap(pid, st);
			return 0;
		}
		if (r < 0 && errno == ECHILD)
			return 0;
		struct timespec d = {0, 2000000};
		nanosleep(&d, NULL);
	}
	return -1;
}
