/* Parser for the plan's netstring records (PLAN.md, "Encoding" and "Records").
 * Strict: unknown tags, wrong field counts, bad numbers and NUL bytes in
 * fields are errors naming the record. */
#include "plan.h"

#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *const seccomp_action_names[] = {
  "kill_process", "kill_thread", "trap", "errno", "trace", "allow", "log", "notify", NULL,
};
const char *const seccomp_op_names[] = { "NE", "LT", "LE", "EQ", "GE", "GT", "MASKED_EQ", NULL };

#define MAX_FIELDS 4096

struct ctx {
  struct plan *p;
  char **f;      /* fields of the current record, f[0] is the tag */
  size_t nf;
  size_t index;  /* record number, from 1 */
  char *err;
  size_t errlen;
};

static int bad(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(struct ctx *c, const char *fmt, ...) {
  int n = snprintf(c->err, c->errlen, "plan: record %zu (%s): ", c->index, c->nf ? c->f[0] : "?");
  if (n < 0 || (size_t)n >= c->errlen) return -1;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->err + n, c->errlen - n, fmt, ap);
  va_end(ap);
  return -1;
}

static void *grow(void *v, size_t n, size_t size) {
  void *r = realloc(v, (n + 1) * size);
  if (!r) { perror("berth-executor: realloc"); _exit(1); }
  return r;
}
#define PUSH(vec, item) do { \
    (vec).v = grow((vec).v, (vec).n, sizeof *(vec).v); \
    (vec).v[(vec).n++] = (item); \
  } while (0)

static int u64(struct ctx *c, size_t i, uint64_t max, uint64_t *out) {
  const char *s = c->f[i];
  if (!*s || *s < '0' || *s > '9') return bad(c, "field %zu: %s: not an unsigned integer", i, s);
  errno = 0;
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end || v > max) return bad(c, "field %zu: %s: not an integer in 0..%llu", i, s, (unsigned long long)max);
  *out = v;
  return 0;
}

static int i64(struct ctx *c, size_t i, long long min, long long max, long long *out) {
  const char *s = c->f[i];
  errno = 0;
  char *end;
  long long v = strtoll(s, &end, 10);
  if (!*s || errno || *end || v < min || v > max)
    return bad(c, "field %zu: %s: not an integer in %lld..%lld", i, s, min, max);
  *out = v;
  return 0;
}

#define U(i, max, dst) do { uint64_t t_; if (u64(c, (i), (max), &t_)) return -1; (dst) = t_; } while (0)

static int oneof(struct ctx *c, size_t i, const char *const *names, int *out) {
  for (int k = 0; names[k]; k++)
    if (!strcmp(names[k], c->f[i])) { *out = k; return 0; }
  return bad(c, "field %zu: unknown value %s", i, c->f[i]);
}

static int absolute(struct ctx *c, size_t i) {
  if (c->f[i][0] != '/') return bad(c, "field %zu: %s: not an absolute path", i, c->f[i]);
  return 0;
}

/* ---- one handler per tag ---- */

static int r_version(struct ctx *c) {
  if (strcmp(c->f[1], "1")) return bad(c, "unsupported plan version %s (this executor speaks 1)", c->f[1]);
  return 0;
}

static int r_ns(struct ctx *c) {
  static const char *const names[] = { "user", "mnt", "pid", "net", "ipc", "uts", "cgroup", "time", NULL };
  static const int flags[] = { CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET,
                               CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWCGROUP, CLONE_NEWTIME };
  int k;
  if (oneof(c, 1, names, &k)) return -1;
  struct plan *p = c->p;
  for (size_t i = 0; i < p->n_ns; i++)
    if (p->ns[i].flag == flags[k]) return bad(c, "namespace %s given twice", names[k]);
  if (c->f[2][0] && absolute(c, 2)) return -1;
  p->ns[p->n_ns++] = (struct ns_rec){ .flag = flags[k], .type = names[k], .path = c->f[2] };
  return 0;
}

static int r_idmap(struct ctx *c) {
  struct idmap_rec m;
  U(1, UINT32_MAX, m.container);
  U(2, UINT32_MAX, m.host);
  U(3, UINT32_MAX, m.size);
  if (!strcmp(c->f[0], "uidmap")) PUSH(c->p->uidmaps, m);
  else PUSH(c->p->gidmaps, m);
  return 0;
}

static int r_setgroups(struct ctx *c) {
  if (strcmp(c->f[1], "deny")) return bad(c, "expected deny, got %s", c->f[1]);
  c->p->setgroups_deny = true;
  return 0;
}

static int r_cgroup_join(struct ctx *c) {
  if (absolute(c, 1)) return -1;
  PUSH(c->p->cgroup_files, c->f[1]);
  return 0;
}

static int hex_digit(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* The program is decoded in place: byte i/2 is written after digits i and i+1 are read. */
static int r_device_filter(struct ctx *c) {
  if (c->p->device_filter_dir) return bad(c, "given twice");
  if (absolute(c, 1)) return -1;
  char *hex = c->f[2];
  size_t n = strlen(hex);
  if (n == 0 || n % 16) return bad(c, "field 2: %zu hex digits are not a whole number of 8-byte instructions", n);
  if (n / 16 > MAX_FILTER_INSNS) return bad(c, "field 2: %zu instructions, at most %d", n / 16, MAX_FILTER_INSNS);
  unsigned char *out = (unsigned char *)hex;
  for (size_t i = 0; i < n; i += 2) {
    int hi = hex_digit(hex[i]), lo = hex_digit(hex[i + 1]);
    if (hi < 0 || lo < 0) return bad(c, "field 2: not a hex digit at offset %zu", hi < 0 ? i : i + 1);
    out[i / 2] = (unsigned char)(hi << 4 | lo);
  }
  c->p->device_filter_dir = c->f[1];
  c->p->device_filter = out;
  c->p->device_filter_len = n / 2;
  return 0;
}

static int r_hostname(struct ctx *c) {
  if (!strcmp(c->f[0], "hostname")) c->p->hostname = c->f[1];
  else c->p->domainname = c->f[1];
  return 0;
}

static int r_rootfs(struct ctx *c) {
  if (absolute(c, 1)) return -1;
  c->p->rootfs = c->f[1];
  return 0;
}

static int r_rootfs_propagation(struct ctx *c) {
  U(1, UINT32_MAX, c->p->rootfs_propagation);
  c->p->has_rootfs_propagation = true;
  return 0;
}

static int r_mount(struct ctx *c) {
  static const char *const kinds[] = { "none", "dir", "file", NULL };
  static const enum mkdir_kind kv[] = { MKDIR_NONE, MKDIR_DIR, MKDIR_FILE };
  struct mount_rec m = { .source = c->f[1], .target = c->f[2], .fstype = c->f[3], .data = c->f[5] };
  if (absolute(c, 2)) return -1;
  U(4, UINT32_MAX, m.flags);
  int k;
  if (oneof(c, 6, kinds, &k)) return -1;
  m.mkdir = kv[k];
  U(7, UINT32_MAX, m.propagation);
  PUSH(c->p->mounts, m);
  return 0;
}

static int r_device(struct ctx *c) {
  struct device_rec d = { .path = c->f[1] };
  if (absolute(c, 1)) return -1;
  if (strlen(c->f[2]) != 1 || !strchr("cbpu", c->f[2][0])) return bad(c, "device type %s is not one of c b p u", c->f[2]);
  d.type = c->f[2][0];
  U(3, UINT32_MAX, d.major);
  U(4, UINT32_MAX, d.minor);
  U(5, 07777, d.mode);
  U(6, UINT32_MAX, d.uid);
  U(7, UINT32_MAX, d.gid);
  PUSH(c->p->devices, d);
  return 0;
}

static int r_device_bind(struct ctx *c) {
  if (absolute(c, 1)) return -1;
  PUSH(c->p->device_binds, c->f[1]);
  return 0;
}

static int r_symlink(struct ctx *c) {
  if (absolute(c, 2)) return -1;
  PUSH(c->p->symlinks, ((struct symlink_rec){ .target = c->f[1], .linkpath = c->f[2] }));
  return 0;
}

static int r_flag(struct ctx *c) {
  struct plan *p = c->p;
  const char *t = c->f[0];
  if (!strcmp(t, "no_pivot")) p->no_pivot = true;
  else if (!strcmp(t, "rootfs_readonly")) p->rootfs_readonly = true;
  else if (!strcmp(t, "no_new_privs")) p->no_new_privs = true;
  else if (!strcmp(t, "seccomp_late")) p->seccomp_late = true;
  else if (!strcmp(t, "console_relay")) p->console_relay = true;
  else if (!strcmp(t, "wait")) p->wait = true;
  return 0;
}

static int r_path_list(struct ctx *c) {
  if (absolute(c, 1)) return -1;
  if (!strcmp(c->f[0], "mask")) PUSH(c->p->masks, c->f[1]);
  else PUSH(c->p->readonly, c->f[1]);
  return 0;
}

static int r_sysctl(struct ctx *c) {
  const char *k = c->f[1];
  if (!*k) return bad(c, "empty sysctl key");
  PUSH(c->p->sysctls, ((struct sysctl_rec){ .key = k, .value = c->f[2] }));
  return 0;
}

static int r_rlimit(struct ctx *c) {
  struct rlimit_rec r;
  U(1, 64, r.resource);
  U(2, UINT64_MAX, r.soft);
  U(3, UINT64_MAX, r.hard);
  PUSH(c->p->rlimits, r);
  return 0;
}

static int r_oom(struct ctx *c) {
  long long v = 0;
  if (i64(c, 1, -1000, 1000, &v)) return -1;
  c->p->oom_score_adj = (int)v;
  c->p->has_oom_score_adj = true;
  return 0;
}

static int r_personality(struct ctx *c) {
  U(1, UINT32_MAX, c->p->personality);
  c->p->has_personality = true;
  return 0;
}

static int r_umask(struct ctx *c) {
  U(1, 0777, c->p->umask);
  c->p->has_umask = true;
  return 0;
}

static int r_user(struct ctx *c) {
  U(1, UINT32_MAX - 1, c->p->uid);
  U(2, UINT32_MAX - 1, c->p->gid);
  c->p->has_user = true;
  return 0;
}

static int r_gids(struct ctx *c) {
  c->p->has_gids = true;
  for (size_t i = 1; i < c->nf; i++) {
    gid_t g;
    U(i, UINT32_MAX - 1, g);
    PUSH(c->p->gids, g);
  }
  return 0;
}

static int r_caps(struct ctx *c) {
  static const char *const sets[] = { "bounding", "effective", "permitted", "inheritable", "ambient", NULL };
  int k;
  if (oneof(c, 1, sets, &k)) return -1;
  U(2, UINT64_MAX, c->p->caps[k]);
  c->p->has_caps = true;
  return 0;
}

static int r_seccomp_default(struct ctx *c) {
  if (oneof(c, 1, seccomp_action_names, &c->p->seccomp_default_action)) return -1;
  U(2, 4095, c->p->seccomp_default_errno);
  c->p->has_seccomp = true;
  return 0;
}

static int r_seccomp_name(struct ctx *c) {
  if (!strcmp(c->f[0], "seccomp_arch")) PUSH(c->p->seccomp_arches, c->f[1]);
  else PUSH(c->p->seccomp_flags, c->f[1]);
  return 0;
}

static int r_seccomp_rule(struct ctx *c) {
  struct seccomp_rule_rec r = { .syscall = c->f[3] };
  if (oneof(c, 1, seccomp_action_names, &r.action)) return -1;
  U(2, 65535, r.err);
  if ((c->nf - 4) % 4) return bad(c, "argument conditions come in groups of 4 fields, got %zu fields", c->nf - 4);
  r.nargs = (c->nf - 4) / 4;
  if (r.nargs > MAX_SECCOMP_ARGS) return bad(c, "%u argument conditions, at most %d", r.nargs, MAX_SECCOMP_ARGS);
  for (unsigned a = 0; a < r.nargs; a++) {
    size_t b = 4 + 4 * a;
    U(b, 5, r.args[a].index);
    if (oneof(c, b + 1, seccomp_op_names, &r.args[a].op)) return -1;
    U(b + 2, UINT64_MAX, r.args[a].value);
    U(b + 3, UINT64_MAX, r.args[a].value_two);
  }
  PUSH(c->p->seccomp_rules, r);
  return 0;
}

static int r_string(struct ctx *c) {
  struct plan *p = c->p;
  const char *t = c->f[0], *v = c->f[1];
  if (!strcmp(t, "apparmor")) p->apparmor = v;
  else if (!strcmp(t, "selinux_label")) p->selinux_label = v;
  else if (!strcmp(t, "keyring")) p->keyring = v;
  else if (!strcmp(t, "state")) p->state = v;
  else if (!strcmp(t, "console_socket")) { if (absolute(c, 1)) return -1; p->console_socket = v; }
  else if (!strcmp(t, "exec_fifo")) { if (absolute(c, 1)) return -1; p->exec_fifo = v; }
  else if (!strcmp(t, "cwd")) { if (absolute(c, 1)) return -1; p->cwd = v; }
  return 0;
}

static int r_console_size(struct ctx *c) {
  U(1, 65535, c->p->console_rows);
  U(2, 65535, c->p->console_cols);
  c->p->has_console_size = true;
  return 0;
}

static int r_hook_sync(struct ctx *c) {
  if (strcmp(c->f[1], "createRuntime")) return bad(c, "unknown sync event %s", c->f[1]);
  c->p->hook_sync = c->f[1];
  return 0;
}

static char **strv(char **src, size_t n) {
  char **v = calloc(n + 1, sizeof *v);
  if (!v) { perror("berth-executor: calloc"); _exit(1); }
  memcpy(v, src, n * sizeof *v);
  return v;
}

static int r_hook(struct ctx *c) {
  static const char *const events[] = { "createContainer", "startContainer", NULL };
  struct hook_rec h = { .path = c->f[2] };
  int k;
  if (oneof(c, 1, events, &k)) return -1;
  h.event = (enum hook_event)k;
  if (absolute(c, 2)) return -1;
  U(3, 86400 * 365, h.timeout);
  size_t nargs;
  U(4, c->nf - 5, nargs);
  h.args = strv(c->f + 5, nargs);
  h.env = strv(c->f + 5 + nargs, c->nf - 5 - nargs);
  PUSH(c->p->hooks, h);
  return 0;
}

static int r_preserve_fds(struct ctx *c) {
  U(1, 65536, c->p->preserve_fds);
  return 0;
}

static int r_env(struct ctx *c) {
  if (!strchr(c->f[1], '=')) return bad(c, "%s: not of the form K=V", c->f[1]);
  PUSH(c->p->env, c->f[1]);
  return 0;
}

static int r_args(struct ctx *c) {
  if (c->p->args.n) return bad(c, "given twice");
  for (size_t i = 1; i < c->nf; i++) PUSH(c->p->args, c->f[i]);
  return 0;
}

struct tag {
  const char *name;
  size_t min, max; /* number of fields after the tag */
  int (*fn)(struct ctx *);
};

static const struct tag tags[] = {
  { "version", 1, 1, r_version },
  { "ns", 2, 2, r_ns },
  { "uidmap", 3, 3, r_idmap },
  { "gidmap", 3, 3, r_idmap },
  { "setgroups", 1, 1, r_setgroups },
  { "cgroup_join", 1, 1, r_cgroup_join },
  { "device_filter", 2, 2, r_device_filter },
  { "hostname", 1, 1, r_hostname },
  { "domainname", 1, 1, r_hostname },
  { "rootfs", 1, 1, r_rootfs },
  { "rootfs_propagation", 1, 1, r_rootfs_propagation },
  { "mount", 7, 7, r_mount },
  { "device", 7, 7, r_device },
  { "device_bind", 1, 1, r_device_bind },
  { "symlink", 2, 2, r_symlink },
  { "no_pivot", 0, 0, r_flag },
  { "mask", 1, 1, r_path_list },
  { "readonly", 1, 1, r_path_list },
  { "rootfs_readonly", 0, 0, r_flag },
  { "sysctl", 2, 2, r_sysctl },
  { "rlimit", 3, 3, r_rlimit },
  { "oom_score_adj", 1, 1, r_oom },
  { "personality", 1, 1, r_personality },
  { "umask", 1, 1, r_umask },
  { "user", 2, 2, r_user },
  { "additional_gids", 0, 65536, r_gids },
  { "caps", 2, 2, r_caps },
  { "no_new_privs", 0, 0, r_flag },
  { "seccomp_default", 2, 2, r_seccomp_default },
  { "seccomp_arch", 1, 1, r_seccomp_name },
  { "seccomp_flag", 1, 1, r_seccomp_name },
  { "seccomp_rule", 3, 3 + 4 * MAX_SECCOMP_ARGS, r_seccomp_rule },
  { "seccomp_late", 0, 0, r_flag },
  { "apparmor", 1, 1, r_string },
  { "selinux_label", 1, 1, r_string },
  { "keyring", 1, 1, r_string },
  { "console_socket", 1, 1, r_string },
  { "console_relay", 0, 0, r_flag },
  { "console_size", 2, 2, r_console_size },
  { "exec_fifo", 1, 1, r_string },
  { "hook_sync", 1, 1, r_hook_sync },
  { "hook", 4, MAX_FIELDS, r_hook },
  { "state", 1, 1, r_string },
  { "preserve_fds", 1, 1, r_preserve_fds },
  { "cwd", 1, 1, r_string },
  { "env", 1, 1, r_env },
  { "args", 1, MAX_FIELDS, r_args },
  { "wait", 0, 0, r_flag },
};

static int record(struct ctx *c) {
  for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++) {
    const struct tag *t = &tags[i];
    if (strcmp(t->name, c->f[0])) continue;
    size_t n = c->nf - 1;
    if (n < t->min || n > t->max) {
      if (t->min == t->max) return bad(c, "expected %zu fields, got %zu", t->min, n);
      return bad(c, "expected %zu to %zu fields, got %zu", t->min, t->max, n);
    }
    if (c->index == 1 && strcmp(c->f[0], "version")) return bad(c, "the first record must be version");
    if (c->index > 1 && !strcmp(c->f[0], "version")) return bad(c, "version given twice");
    return t->fn(c);
  }
  return bad(c, "unknown record tag");
}

/* Checks that make sense only with the whole plan. */
static int whole(struct plan *p, char *err, size_t errlen) {
  if (!p->args.n) { snprintf(err, errlen, "plan: no args record"); return -1; }
  if (p->console_socket && p->console_relay) {
    snprintf(err, errlen, "plan: console_socket and console_relay are exclusive");
    return -1;
  }
  if (p->console_relay && !p->wait) {
    snprintf(err, errlen, "plan: console_relay needs wait (the relay runs while the executor waits)");
    return -1;
  }
  if (!p->rootfs && (p->mounts.n || p->devices.n || p->device_binds.n || p->symlinks.n || p->no_pivot)) {
    snprintf(err, errlen, "plan: mount, device and symlink records need a rootfs record");
    return -1;
  }
  if (p->hooks.n && !p->state) { snprintf(err, errlen, "plan: hook records need a state record"); return -1; }
  PUSH(p->env, NULL);
  p->env.n--;
  PUSH(p->args, NULL);
  p->args.n--;
  return 0;
}

int plan_parse(char *buf, size_t len, struct plan *p, char *err, size_t errlen) {
  char *fields[MAX_FIELDS + 1];
  struct ctx c = { .p = p, .f = fields, .err = err, .errlen = errlen };
  memset(p, 0, sizeof *p);
  size_t i = 0;
  while (i < len) {
    c.index++;
    c.nf = 0;
    while (i < len && buf[i] != '\n') {
      size_t start = i;
      unsigned long long n = 0;
      while (i < len && buf[i] >= '0' && buf[i] <= '9' && i - start < 10) n = n * 10 + (unsigned)(buf[i++] - '0');
      if (i == start || i >= len || buf[i] != ':') return bad(&c, "bad netstring length at byte %zu", start);
      i++;
      if (n > len - i || i + n >= len || buf[i + n] != ',')
        return bad(&c, "netstring at byte %zu is not terminated by a comma", start);
      if (memchr(buf + i, '\0', n)) return bad(&c, "field at byte %zu contains a NUL byte", start);
      if (c.nf == MAX_FIELDS) return bad(&c, "more than %d fields", MAX_FIELDS);
      buf[i + n] = '\0';
      fields[c.nf++] = buf + i;
      i += n + 1;
    }
    if (i >= len) return bad(&c, "plan ends inside a record (missing newline)");
    i++;
    if (!c.nf) return bad(&c, "empty record");
    if (record(&c)) return -1;
  }
  if (!c.index) { snprintf(err, errlen, "plan: empty plan"); return -1; }
  return whole(p, err, errlen);
}

char *read_all(int fd, size_t *len) {
  size_t cap = 16384, n = 0;
  char *b = malloc(cap + 1);
  if (!b) return NULL;
  for (;;) {
    if (n == cap) {
      char *nb = realloc(b, 2 * cap + 1);
      if (!nb) { free(b); errno = ENOMEM; return NULL; }
      b = nb;
      cap *= 2;
    }
    ssize_t r = read(fd, b + n, cap - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) { int e = errno; free(b); errno = e; return NULL; }
    if (r == 0) break;
    n += (size_t)r;
  }
  b[n] = '\0';
  *len = n;
  return b;
}
