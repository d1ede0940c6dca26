/* Actions: things a test asks the container to try. */
#include "json.h"
#include "probe.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/keyctl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/swap.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void result(const char *what, int rc, int err)
{
	j_obj_begin();
	j_kstr("try", what);
	j_result_fields(rc, err);
	j_obj_end();
	j_done();
}

static void temp_path(char *buf, size_t size, const char *what, const char *given)
{
	if (given)
		snprintf(buf, size, "%s", given);
	else
		snprintf(buf, size, "/tmp/.probe-%s-%d", what, (int)getpid());
}

static int ns_flag(const char *name)
{
	static const struct {
		const char *name;
		int flag;
	} ns[] = { { "user", CLONE_NEWUSER }, { "uts", CLONE_NEWUTS }, { "net", CLONE_NEWNET },
		   { "mnt", CLONE_NEWNS },    { "ipc", CLONE_NEWIPC }, { "pid", CLONE_NEWPID },
		   { "cgroup", CLONE_NEWCGROUP } };
	for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
		if (strcmp(ns[i].name, name) == 0)
			return ns[i].flag;
	return -1;
}

/* Runs one syscall the way a test needs it, undoing any effect it had. rc < 0: failed. */
static int try_one(const char *what, const char *arg, int *err)
{
	char path[512];
	int rc = -1;
	*err = 0;
	if (strcmp(what, "mkdir") == 0) {
		temp_path(path, sizeof path, "mkdir", arg);
		rc = mkdir(path, 0755);
		*err = errno;
		if (rc == 0)
			rmdir(path);
	} else if (strcmp(what, "chown") == 0) {
		temp_path(path, sizeof path, "chown", arg);
		bool made = false;
		if (!arg) {
			int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
			if (fd < 0) {
				*err = errno;
				return -1;
			}
			close(fd);
			made = true;
		}
		rc = chown(path, 1, 1);
		*err = errno;
		if (made)
			unlink(path);
	} else if (strcmp(what, "mount") == 0) {
		const char *target = arg ? arg : "/tmp";
		rc = mount("probe", target, "tmpfs", 0, "size=64k");
		*err = errno;
		if (rc == 0)
			umount2(target, MNT_DETACH);
	} else if (strcmp(what, "unshare") == 0) {
		int flag = ns_flag(arg ? arg : "user");
		if (flag < 0) {
			*err = EINVAL;
			return -1;
		}
		rc = unshare(flag);
		*err = errno;
	} else if (strcmp(what, "sethostname") == 0) {
		char name[256] = "";
		gethostname(name, sizeof name - 1);
		rc = sethostname(name, strlen(name));
		*err = errno;
	} else if (strcmp(what, "keyctl") == 0) {
		rc = (int)syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0);
		*err = errno;
	} else if (strcmp(what, "ptrace") == 0) {
		pid_t pid = fork();
		if (pid < 0) {
			*err = errno;
			return -1;
		}
		if (pid == 0)
			_exit(ptrace(PTRACE_TRACEME, 0, NULL, NULL) < 0 ? errno : 0);
		int st = 0;
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		int code = WIFEXITED(st) ? WEXITSTATUS(st) : EINTR;
		rc = code == 0 ? 0 : -1;
		*err = code;
	} else if (strcmp(what, "reboot") == 0) {
		/* Wrong magic numbers: never reboots. The capability (and seccomp) check
		 * comes first, so EPERM means refused and EINVAL means allowed. */
		rc = (int)syscall(SYS_reboot, 0, 0, 0, NULL);
		*err = errno;
		if (rc < 0 && *err == EINVAL)
			rc = 0;
	} else if (strcmp(what, "swapon") == 0) {
		rc = swapon("/.probe-no-such-swapfile", 0);
		*err = errno;
		if (rc < 0 && *err == ENOENT)
			rc = 0; /* allowed: it got past the permission check */
	} else if (strcmp(what, "setns") == 0) {
		int fd = open("/proc/self/ns/uts", O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			*err = errno;
			return -1;
		}
		rc = setns(fd, CLONE_NEWUTS);
		*err = errno;
		close(fd);
	} else if (strcmp(what, "chroot") == 0) {
		rc = chroot("/");
		*err = errno;
	} else if (strcmp(what, "socket-raw") == 0) {
		rc = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
		*err = errno;
		if (rc >= 0)
			close(rc);
	} else if (strcmp(what, "mknod") == 0) {
		temp_path(path, sizeof path, "mknod", arg);
		rc = mknod(path, S_IFCHR | 0600, makedev(1, 3));
		*err = errno;
		if (rc == 0)
			unlink(path);
	} else {
		fprintf(stderr, "probe: unknown syscall to try: %s\n", what);
		*err = ENOSYS;
		return -2;
	}
	return rc;
}

int act_try(int argc, char **argv)
{
	if (argc < 1) {
		fprintf(stderr, "probe: try <syscall> [arg]\n");
		return 2;
	}
	int err = 0;
	int rc = try_one(argv[0], argc > 1 ? argv[1] : NULL, &err);
	if (rc == -2)
		return 2;
	result(argv[0], rc, err);
	return 0;
}

int act_write(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int rc = fd, err = errno;
	if (fd >= 0) {
		static const char data[] = "probe\n";
		rc = (int)write(fd, data, sizeof data - 1);
		err = errno;
		if (close(fd) < 0 && rc >= 0) {
			rc = -1;
			err = errno;
		}
	}
	j_obj_begin();
	j_kstr("write", path);
	j_result_fields(rc, err);
	j_obj_end();
	j_done();
	return 0;
}

int act_read(const char *path)
{
	size_t len = 0;
	char *data = slurp(path, &len);
	int err = errno;
	j_obj_begin();
	j_kstr("read", path);
	j_result_fields(data ? 0 : -1, err);
	if (data) {
		j_kint("size", (long long)len);
		j_key("content");
		j_strn(data, len);
	}
	j_obj_end();
	j_done();
	free(data);
	return 0;
}

int act_sleep(const char *seconds)
{
	double s = strtod(seconds, NULL);
	struct timespec ts = { .tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9) };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	return 0;
}

int act_echo_stdin(void)
{
	char buf[65536];
	for (;;) {
		ssize_t n = read(0, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? 1 : 0;
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(1, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				return 1;
			off += w;
		}
	}
}

int act_signals(void)
{
	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		siginfo_t si;
		int sig = sigwaitinfo(&all, &si);
		if (sig < 0)
			continue;
		const char *abbrev = sigabbrev_np(sig);
		if (abbrev)
			printf("SIG%s\n", abbrev);
		else
			printf("SIG%d\n", sig);
		fflush(stdout);
		if (sig == SIGTERM)
			return 0;
	}
}

/* fork n children that wait for the parent; report how many forks succeeded. */
int act_fork(const char *count)
{
	long n = strtol(count, NULL, 10);
	int p[2];
	if (pipe(p) < 0)
		return 1;
	long made = 0;
	int err = 0;
	for (; made < n; made++) {
		pid_t pid = fork();
		if (pid < 0) {
			err = errno;
			break;
		}
		if (pid == 0) {
			char c;
			close(p[1]);
			while (read(p[0], &c, 1) < 0 && errno == EINTR)
				;
			_exit(0);
		}
	}
	close(p[1]);
	close(p[0]);
	while (wait(NULL) > 0 || errno == EINTR)
		;
	j_obj_begin();
	j_kint("forked", made);
	j_result_fields(err ? -1 : 0, err);
	j_obj_end();
	j_done();
	return 0;
}

/* Watches for other processes in the pid namespace (a runtime's exec helper)
 * and tries, as CVE-2019-5736 did, to open their executable for writing: it
 * keeps an O_PATH handle on /proc/<pid>/exe and retries O_WRONLY through it
 * until the deadline (or until stop_file exists, when given). Reports every
 * executable it could open for writing. */
#define MAX_WATCH 256
int act_exe_watch(const char *seconds, const char *stop_file)
{
	struct {
		int pid;
		int fd;
		bool done;
		dev_t dev;
		ino_t ino;
		char link[256];
	} w[MAX_WATCH];
	int nw = 0;
	struct {
		int pid;
		char link[256];
		unsigned long long dev, ino;
		long nlink;
	} hit[MAX_WATCH];
	int nhit = 0;
	struct stat self;
	stat("/proc/self/exe", &self);
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	double limit = strtod(seconds, NULL);
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((double)(now.tv_sec - start.tv_sec) + (double)(now.tv_nsec - start.tv_nsec) / 1e9 > limit)
			break;
		if (stop_file && access(stop_file, F_OK) == 0)
			break;
		DIR *d = opendir("/proc");
		struct dirent *e;
		while (d && (e = readdir(d))) {
			int pid = atoi(e->d_name);
			if (pid <= 0 || pid == getpid())
				continue;
			if (nw >= MAX_WATCH)
				continue;
			char path[64];
			snprintf(path, sizeof path, "/proc/%d/exe", pid);
			/* A pid is tracked once per executable it runs: a runtime's helper
			 * first, then what it executes. */
			int fd = open(path, O_PATH | O_CLOEXEC);
			if (fd < 0)
				continue;
			struct stat st;
			if (fstat(fd, &st) < 0 || (st.st_dev == self.st_dev && st.st_ino == self.st_ino)) {
				close(fd);
				continue;
			}
			bool known = false;
			for (int i = 0; i < nw; i++)
				if (w[i].pid == pid && w[i].dev == st.st_dev && w[i].ino == st.st_ino)
					known = true;
			if (known) {
				close(fd);
				continue;
			}
			w[nw].pid = pid;
			w[nw].fd = fd;
			w[nw].done = false;
			w[nw].dev = st.st_dev;
			w[nw].ino = st.st_ino;
			ssize_t n = readlink(path, w[nw].link, sizeof w[nw].link - 1);
			w[nw].link[n < 0 ? 0 : n] = '\0';
			nw++;
		}
		if (d)
			closedir(d);
		for (int i = 0; i < nw; i++) {
			if (w[i].done)
				continue;
			char path[64];
			snprintf(path, sizeof path, "/proc/self/fd/%d", w[i].fd);
			int fd = open(path, O_WRONLY | O_CLOEXEC);
			if (fd < 0)
				continue;
			struct stat st;
			fstat(fd, &st);
			close(fd);
			w[i].done = true;
			hit[nhit].pid = w[i].pid;
			snprintf(hit[nhit].link, sizeof hit[nhit].link, "%s", w[i].link);
			hit[nhit].dev = st.st_dev;
			hit[nhit].ino = st.st_ino;
			hit[nhit].nlink = (long)st.st_nlink;
			nhit++;
		}
	}
	j_obj_begin();
	j_key("seen");
	j_arr_begin();
	for (int i = 0; i < nw; i++) {
		j_obj_begin();
		j_kint("pid", w[i].pid);
		j_kstr("exe", w[i].link);
		j_obj_end();
		close(w[i].fd);
	}
	j_arr_end();
	j_key("writable");
	j_arr_begin();
	for (int i = 0; i < nhit; i++) {
		j_obj_begin();
		j_kint("pid", hit[i].pid);
		j_kstr("exe", hit[i].link);
		j_kint("dev", (long long)hit[i].dev);
		j_kint("ino", (long long)hit[i].ino);
		j_kint("nlink", hit[i].nlink);
		j_obj_end();
	}
	j_arr_end();
	j_obj_end();
	j_done();
	return 0;
}
