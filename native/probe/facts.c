/* Facts: each writes "<name>": <value> into the top-level object. */
#include "json.h"
#include "probe.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/personality.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <termios.h>
#include <unistd.h>

extern char **environ;

char *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap + 1);
	if (!buf) {
		close(fd);
		return NULL;
	}
	for (;;) {
		if (n == cap) {
			cap *= 2;
			char *nb = realloc(buf, cap + 1);
			if (!nb) {
				free(buf);
				close(fd);
				return NULL;
			}
			buf = nb;
		}
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			free(buf);
			close(fd);
			errno = e;
			return NULL;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

const char *errno_name(int err)
{
	static char buf[16];
	const char *n = strerrorname_np(err);
	if (n)
		return n;
	snprintf(buf, sizeof buf, "E%d", err);
	return buf;
}

void j_result_fields(int rc, int err)
{
	j_kbool("ok", rc >= 0);
	j_kint("errno", rc >= 0 ? 0 : err);
	if (rc >= 0)
		j_kstr("error", "");
	else
		j_kstr("error", errno_name(err));
}

/* Value of a "Key:\tvalue" line of /proc/self/status, or NULL. Static buffer. */
static const char *status_field(const char *key)
{
	static char val[256];
	char *st = slurp("/proc/self/status", NULL);
	if (!st)
		return NULL;
	size_t kl = strlen(key);
	const char *found = NULL;
	for (char *line = st; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
			const char *v = line + kl + 1;
			while (*v == ' ' || *v == '\t')
				v++;
			snprintf(val, sizeof val, "%s", v);
			found = val;
			break;
		}
		line = nl ? nl + 1 : NULL;
	}
	free(st);
	return found;
}

static void fact_ids(void)
{
	j_key("ids");
	j_obj_begin();
	j_kint("uid", getuid());
	j_kint("gid", getgid());
	j_kint("euid", geteuid());
	j_kint("egid", getegid());
	gid_t groups[256];
	int n = getgroups(256, groups);
	j_key("groups");
	j_arr_begin();
	for (int i = 0; i < n; i++)
		j_int(groups[i]);
	j_arr_end();
	j_obj_end();
}

static const char *const cap_names[] = {
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
	"CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
	"CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
	"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
	"CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
	"CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
};

static void cap_set(const char *name, uint64_t mask)
{
	char hex[24];
	snprintf(hex, sizeof hex, "%016llx", (unsigned long long)mask);
	j_key(name);
	j_obj_begin();
	j_kstr("hex", hex);
	j_key("names");
	j_arr_begin();
	for (unsigned i = 0; i < 64; i++) {
		if (!(mask & (1ULL << i)))
			continue;
		if (i < sizeof cap_names / sizeof cap_names[0]) {
			j_str(cap_names[i]);
		} else {
			char unk[16];
			snprintf(unk, sizeof unk, "CAP_%u", i);
			j_str(unk);
		}
	}
	j_arr_end();
	j_obj_end();
}

static uint64_t status_mask(const char *key)
{
	const char *v = status_field(key);
	return v ? strtoull(v, NULL, 16) : 0;
}

static void fact_caps(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof data);
	j_key("caps");
	j_obj_begin();
	if (syscall(SYS_capget, &hdr, data) < 0) {
		j_kstr("error", errno_name(errno));
	} else {
		cap_set("effective", (uint64_t)data[1].effective << 32 | data[0].effective);
		cap_set("permitted", (uint64_t)data[1].permitted << 32 | data[0].permitted);
		cap_set("inheritable", (uint64_t)data[1].inheritable << 32 | data[0].inheritable);
	}
	cap_set("bounding", status_mask("CapBnd"));
	cap_set("ambient", status_mask("CapAmb"));
	j_obj_end();
}

static const struct {
	int res;
	const char *name;
} rlimits[] = {
	{ RLIMIT_AS, "RLIMIT_AS" },           { RLIMIT_CORE, "RLIMIT_CORE" },
	{ RLIMIT_CPU, "RLIMIT_CPU" },         { RLIMIT_DATA, "RLIMIT_DATA" },
	{ RLIMIT_FSIZE, "RLIMIT_FSIZE" },     { RLIMIT_LOCKS, "RLIMIT_LOCKS" },
	{ RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK" }, { RLIMIT_MSGQUEUE, "RLIMIT_MSGQUEUE" },
	{ RLIMIT_NICE, "RLIMIT_NICE" },       { RLIMIT_NOFILE, "RLIMIT_NOFILE" },
	{ RLIMIT_NPROC, "RLIMIT_NPROC" },     { RLIMIT_RSS, "RLIMIT_RSS" },
	{ RLIMIT_RTPRIO, "RLIMIT_RTPRIO" },   { RLIMIT_RTTIME, "RLIMIT_RTTIME" },
	{ RLIMIT_SIGPENDING, "RLIMIT_SIGPENDING" }, { RLIMIT_STACK, "RLIMIT_STACK" },
};

static void rlim_value(const char *key, rlim_t v)
{
	if (v == RLIM_INFINITY)
		j_kstr(key, "unlimited");
	else
		j_kint(key, (long long)v);
}

static void fact_rlimits(void)
{
	j_key("rlimits");
	j_obj_begin();
	for (size_t i = 0; i < sizeof rlimits / sizeof rlimits[0]; i++) {
		struct rlimit rl;
		if (getrlimit(rlimits[i].res, &rl) < 0)
			continue;
		j_key(rlimits[i].name);
		j_obj_begin();
		rlim_value("soft", rl.rlim_cur);
		rlim_value("hard", rl.rlim_max);
		j_obj_end();
	}
	j_obj_end();
}

static void fact_seccomp(void)
{
	const char *mode = status_field("Seccomp");
	long m = mode ? strtol(mode, NULL, 10) : -1;
	const char *filters = status_field("Seccomp_filters");
	long f = filters ? strtol(filters, NULL, 10) : -1;
	j_key("seccomp");
	j_obj_begin();
	j_kint("mode", m);
	j_kint("filters", f);
	j_obj_end();
}

static void fact_nnp(void)
{
	const char *v = status_field("NoNewPrivs");
	j_kbool("nnp", v && strtol(v, NULL, 10) == 1);
}

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape_octal(char *s)
{
	char *w = s;
	for (char *r = s; *r;) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '7' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 4;
		} else {
			*w++ = *r++;
		}
	}
	*w = '\0';
}

static void fact_mounts(void)
{
	char *mi = slurp("/proc/self/mountinfo", NULL);
	j_key("mounts");
	j_arr_begin();
	for (char *line = mi; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		/* id parent major:minor root target options [optional...] - fstype source superopts */
		char *fields[64];
		int nf = 0;
		char *save = NULL;
		for (char *tok = strtok_r(line, " ", &save); tok && nf < 64; tok = strtok_r(NULL, " ", &save))
			fields[nf++] = tok;
		int dash = -1;
		for (int i = 6; i < nf; i++) {
			if (strcmp(fields[i], "-") == 0) {
				dash = i;
				break;
			}
		}
		if (nf >= 6 && dash >= 0 && dash + 2 < nf) {
			for (int i = 0; i < nf; i++)
				unescape_octal(fields[i]);
			j_obj_begin();
			j_kint("id", strtol(fields[0], NULL, 10));
			j_kint("parent", strtol(fields[1], NULL, 10));
			j_kstr("root", fields[3]);
			j_kstr("target", fields[4]);
			j_kstr("options", fields[5]);
			j_key("propagation");
			j_arr_begin();
			for (int i = 6; i < dash; i++)
				j_str(fields[i]);
			j_arr_end();
			j_kstr("fstype", fields[dash + 1]);
			j_kstr("source", fields[dash + 2]);
			j_kstr("superOptions", dash + 3 < nf ? fields[dash + 3] : "");
			j_obj_end();
		}
		line = nl ? nl + 1 : NULL;
	}
	j_arr_end();
	free(mi);
}

static void fact_ns(void)
{
	static const char *const names[] = { "cgroup", "ipc", "mnt", "net", "pid", "pid_for_children",
					     "time", "time_for_children", "user", "uts" };
	j_key("ns");
	j_obj_begin();
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		char path[64], target[256];
		snprintf(path, sizeof path, "/proc/self/ns/%s", names[i]);
		ssize_t n = readlink(path, target, sizeof target - 1);
		if (n < 0)
			continue;
		target[n] = '\0';
		j_kstr(names[i], target);
	}
	j_obj_end();
}

static void fact_cwd(void)
{
	char buf[4096];
	/* getcwd(3) would fail with ENOENT outside the root; the raw syscall reports
	 * "(unreachable)/..." there, which is the fact the tests look for. */
	long n = syscall(SYS_getcwd, buf, sizeof buf);
	if (n < 0)
		j_kstr("cwd", NULL);
	else
		j_kstr("cwd", buf);
}

static void fact_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	j_key("fds");
	j_arr_begin();
	if (d) {
		int self = dirfd(d);
		struct dirent *e;
		while ((e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			int fd = (int)strtol(e->d_name, NULL, 10);
			if (fd == self)
				continue;
			char path[64], target[4096];
			snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
			ssize_t n = readlink(path, target, sizeof target - 1);
			if (n < 0)
				n = 0;
			target[n] = '\0';
			j_obj_begin();
			j_kint("fd", fd);
			j_kstr("target", target);
			j_obj_end();
		}
		closedir(d);
	}
	j_arr_end();
}

static void fact_hostname(void)
{
	struct utsname u;
	j_kstr("hostname", uname(&u) == 0 ? u.nodename : NULL);
}

static void fact_domainname(void)
{
	struct utsname u;
	j_kstr("domainname", uname(&u) == 0 ? u.domainname : NULL);
}

static void fact_env(void)
{
	j_key("env");
	j_arr_begin();
	for (char **e = environ; e && *e; e++)
		j_str(*e);
	j_arr_end();
}

static void fact_umask(void)
{
	mode_t m = umask(0);
	umask(m);
	j_kint("umask", m);
}

static void fact_oom(void)
{
	char *s = slurp("/proc/self/oom_score_adj", NULL);
	j_key("oom_score_adj");
	if (s)
		j_int(strtol(s, NULL, 10));
	else
		j_null();
	free(s);
}

static void fact_personality(void)
{
	j_kint("personality", personality(0xffffffff));
}

static void fact_cgroup(void)
{
	char *cg = slurp("/proc/self/cgroup", NULL);
	j_key("cgroup");
	j_arr_begin();
	for (char *line = cg; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		char *c1 = strchr(line, ':');
		char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (c2) {
			*c1 = '\0';
			*c2 = '\0';
			j_obj_begin();
			j_kint("hierarchy", strtol(line, NULL, 10));
			j_kstr("controllers", c1 + 1);
			j_kstr("path", c2 + 1);
			j_obj_end();
		}
		line = nl ? nl + 1 : NULL;
	}
	j_arr_end();
	free(cg);
}

static void fact_pid(void) { j_kint("pid", getpid()); }
static void fact_ppid(void) { j_kint("ppid", getppid()); }

static void fact_tty(void)
{
	j_key("tty");
	j_obj_begin();
	static const char *const keys[] = { "stdin", "stdout", "stderr" };
	for (int fd = 0; fd < 3; fd++) {
		j_key(keys[fd]);
		j_obj_begin();
		bool is = isatty(fd);
		j_kbool("isatty", is);
		char name[256];
		if (is && ttyname_r(fd, name, sizeof name) == 0)
			j_kstr("name", name);
		else
			j_kstr("name", NULL);
		struct winsize ws;
		if (is && ioctl(fd, TIOCGWINSZ, &ws) == 0) {
			j_key("winsize");
			j_obj_begin();
			j_kint("rows", ws.ws_row);
			j_kint("cols", ws.ws_col);
			j_obj_end();
		}
		j_obj_end();
	}
	j_obj_end();
}

void fact_sysctl(const char *key)
{
	char path[512];
	snprintf(path, sizeof path, "/proc/sys/");
	size_t off = strlen(path);
	for (const char *k = key; *k && off + 1 < sizeof path; k++)
		path[off++] = *k == '.' ? '/' : *k;
	path[off] = '\0';
	j_key("sysctl");
	j_obj_begin();
	j_kstr("key", key);
	char *v = slurp(path, NULL);
	if (v) {
		size_t n = strlen(v);
		while (n > 0 && (v[n - 1] == '\n' || v[n - 1] == ' '))
			v[--n] = '\0';
		j_kstr("value", v);
		free(v);
	} else {
		j_kstr("value", NULL);
		j_kstr("error", errno_name(errno));
	}
	j_obj_end();
}

const struct fact facts[] = {
	{ "ids", fact_ids },
	{ "caps", fact_caps },
	{ "rlimits", fact_rlimits },
	{ "seccomp", fact_seccomp },
	{ "nnp", fact_nnp },
	{ "mounts", fact_mounts },
	{ "ns", fact_ns },
	{ "cwd", fact_cwd },
	{ "fds", fact_fds },
	{ "hostname", fact_hostname },
	{ "domainname", fact_domainname },
	{ "env", fact_env },
	{ "umask", fact_umask },
	{ "oom_score_adj", fact_oom },
	{ "personality", fact_personality },
	{ "cgroup", fact_cgroup },
	{ "pid", fact_pid },
	{ "ppid", fact_ppid },
	{ "tty", fact_tty },
};
const size_t nfacts = sizeof facts / sizeof facts[0];
