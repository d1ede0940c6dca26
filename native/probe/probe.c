/* probe: run inside a test container; reports facts as one JSON object on stdout.
 *
 *   probe [all | <fact>... | sysctl <key>]   facts: ids caps rlimits seccomp nnp mounts ns
 *                                          cwd fds hostname domainname env umask
 *                                          oom_score_adj personality cgroup pid ppid tty
 *   probe try <syscall> [arg]    mkdir chown mount unshare sethostname keyctl ptrace
 *                                reboot swapon setns chroot socket-raw mknod
 *                                -> {"try":..,"ok":bool,"errno":N,"error":"EPERM"}
 *   probe write <path> | read <path>
 *   probe exit <n> | sleep <seconds> | echo-stdin | signals | fork <n>
 *   probe exe-watch <seconds> [stop-file]
 */
#include "json.h"
#include "probe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void)
{
	fprintf(stderr, "usage: probe [all|<fact>...|sysctl <key>] | try <syscall> [arg] | write <path> |"
			" read <path> | exit <n> | sleep <s> | echo-stdin | signals | fork <n> |"
			" exe-watch <s> [stop-file]\n");
}

static const struct fact *find_fact(const char *name)
{
	for (size_t i = 0; i < nfacts; i++)
		if (strcmp(facts[i].name, name) == 0)
			return &facts[i];
	return NULL;
}

static int report(int argc, char **argv)
{
	/* Check every name first so that a typo gives no partial output. */
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "all") == 0)
			continue;
		if (strcmp(argv[i], "sysctl") == 0) {
			if (++i >= argc) {
				usage();
				return 2;
			}
			continue;
		}
		if (!find_fact(argv[i])) {
			fprintf(stderr, "probe: unknown fact or action: %s\n", argv[i]);
			usage();
			return 2;
		}
	}
	j_obj_begin();
	if (argc == 0) {
		for (size_t i = 0; i < nfacts; i++)
			facts[i].fn();
	}
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "all") == 0) {
			for (size_t k = 0; k < nfacts; k++)
				facts[k].fn();
		} else if (strcmp(argv[i], "sysctl") == 0) {
			fact_sysctl(argv[++i]);
		} else {
			find_fact(argv[i])->fn();
		}
	}
	j_obj_end();
	j_done();
	return 0;
}

static int need(int argc, int n)
{
	if (argc < n) {
		usage();
		return 0;
	}
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return report(0, argv + 1);
	const char *cmd = argv[1];
	if (strcmp(cmd, "try") == 0)
		return act_try(argc - 2, argv + 2);
	if (strcmp(cmd, "write") == 0)
		return need(argc, 3) ? act_write(argv[2]) : 2;
	if (strcmp(cmd, "read") == 0)
		return need(argc, 3) ? act_read(argv[2]) : 2;
	if (strcmp(cmd, "exit") == 0)
		return need(argc, 3) ? atoi(argv[2]) : 2;
	if (strcmp(cmd, "sleep") == 0)
		return need(argc, 3) ? act_sleep(argv[2]) : 2;
	if (strcmp(cmd, "echo-stdin") == 0)
		return act_echo_stdin();
	if (strcmp(cmd, "signals") == 0)
		return act_signals();
	if (strcmp(cmd, "fork") == 0)
		return need(argc, 3) ? act_fork(argv[2]) : 2;
	if (strcmp(cmd, "exe-watch") == 0)
		return need(argc, 3) ? act_exe_watch(argv[2], argc > 3 ? argv[3] : NULL) : 2;
	if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) {
		usage();
		return 0;
	}
	return report(argc - 1, argv + 1);
}
