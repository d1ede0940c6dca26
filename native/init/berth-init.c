/* berth-init: a minimal init for containers started with --init.
 *
 *   berth-init [--] program [args...]
 *
 * Runs the program as a child in a process group of its own (the foreground
 * group of the terminal, if stdin is one), forwards every signal it receives
 * to that child, reaps every process that gets reparented to it, and exits
 * with the child's exit status, or 128+signal when the child was killed.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

/* Synchronous signals that concern this process itself; never blocked or forwarded. */
static int is_synchronous(int sig)
{
	return sig == SIGFPE || sig == SIGILL || sig == SIGSEGV || sig == SIGBUS || sig == SIGABRT ||
	       sig == SIGTRAP || sig == SIGSYS;
}

static void fill_forwardable(sigset_t *set)
{
	sigfillset(set);
	sigdelset(set, SIGFPE);
	sigdelset(set, SIGILL);
	sigdelset(set, SIGSEGV);
	sigdelset(set, SIGBUS);
	sigdelset(set, SIGABRT);
	sigdelset(set, SIGTRAP);
	sigdelset(set, SIGSYS);
}

static pid_t spawn(char **argv, const sigset_t *old_mask)
{
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "berth-init: fork: %s\n", strerror(errno));
		exit(1);
	}
	if (pid > 0) {
		setpgid(pid, pid); /* also done in the child; whichever runs first */
		return pid;
	}
	setpgid(0, 0);
	if (isatty(STDIN_FILENO)) {
		/* Take the terminal's foreground so that the program gets ^C and job control. */
		signal(SIGTTOU, SIG_IGN);
		tcsetpgrp(STDIN_FILENO, getpid());
		signal(SIGTTOU, SIG_DFL);
	}
	sigprocmask(SIG_SETMASK, old_mask, NULL);
	execvp(argv[0], argv);
	int err = errno;
	fprintf(stderr, "berth-init: exec %s: %s\n", argv[0], strerror(err));
	_exit(err == ENOENT ? 127 : 126);
}

/* Reaps every exited process; returns 1 when the child was among them (its status in *status). */
static int reap(pid_t child, int *status)
{
	int found = 0;
	for (;;) {
		int st = 0;
		pid_t pid = waitpid(-1, &st, WNOHANG);
		if (pid <= 0) {
			if (pid < 0 && errno == EINTR)
				continue;
			break;
		}
		if (pid == child) {
			*status = st;
			found = 1;
		}
	}
	return found;
}

int main(int argc, char **argv)
{
	int first = 1;
	if (argc > 1 && strcmp(argv[1], "--") == 0)
		first = 2;
	if (first >= argc) {
		fprintf(stderr, "usage: berth-init [--] program [args...]\n");
		return 1;
	}

	/* When not pid 1, become a subreaper so orphans still come to us. */
	if (getpid() != 1)
		prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);

	sigset_t forwardable, old_mask;
	fill_forwardable(&forwardable);
	if (sigprocmask(SIG_BLOCK, &forwardable, &old_mask) < 0) {
		fprintf(stderr, "berth-init: sigprocmask: %s\n", strerror(errno));
		return 1;
	}
	pid_t child = spawn(argv + first, &old_mask);

	int status = 0;
	for (;;) {
		siginfo_t info;
		int sig = sigwaitinfo(&forwardable, &info);
		if (sig < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "berth-init: sigwaitinfo: %s\n", strerror(errno));
			return 1;
		}
		if (sig == SIGCHLD) {
			if (reap(child, &status))
				break;
			continue;
		}
		if (is_synchronous(sig))
			continue;
		if (kill(child, sig) < 0 && errno != ESRCH)
			fprintf(stderr, "berth-init: forwarding signal %d: %s\n", sig, strerror(errno));
	}
	/* Collect whatever else has exited by now. */
	int ignored;
	reap(-1, &ignored);
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return 1;
}
