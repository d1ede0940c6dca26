/* The plan, parsed: one struct with everything the executor will do.
 * The wire format and the meaning of each record are in PLAN.md. */
#ifndef BERTH_PLAN_H
#define BERTH_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define MAX_NS 8
#define MAX_SECCOMP_ARGS 6
#define MAX_FILTER_INSNS 1000000 /* the kernel's limit for a program loaded by root */

enum mkdir_kind { MKDIR_NONE, MKDIR_DIR, MKDIR_FILE };
enum hook_event { HOOK_CREATE_CONTAINER, HOOK_START_CONTAINER };
enum cap_set { CAP_BOUNDING, CAP_EFFECTIVE, CAP_PERMITTED, CAP_INHERITABLE, CAP_AMBIENT, CAP_NSETS };

struct ns_rec { int flag; const char *type; const char *path; /* "" = new */ };
struct idmap_rec { unsigned long container, host, size; };
struct mount_rec {
  const char *source, *target, *fstype, *data;
  unsigned long flags, propagation;
  enum mkdir_kind mkdir;
};
struct device_rec {
  const char *path;
  char type; /* c b p u */
  unsigned major, minor;
  mode_t mode;
  uid_t uid;
  gid_t gid;
};
struct symlink_rec { const char *target, *linkpath; };
struct sysctl_rec { const char *key, *value; };
struct rlimit_rec { int resource; uint64_t soft, hard; };
struct seccomp_arg_rec { unsigned index; int op; /* enum scmp_compare */ uint64_t value, value_two; };
struct seccomp_rule_rec {
  int action; /* index into the action names, see seccomp.c */
  int err;
  const char *syscall;
  unsigned nargs;
  struct seccomp_arg_rec args[MAX_SECCOMP_ARGS];
};
struct hook_rec {
  enum hook_event event;
  const char *path;
  unsigned timeout;
  char **args; /* NULL-terminated */
  char **env;  /* NULL-terminated */
};

/* A growable array of T. */
#define VEC(T) struct { T *v; size_t n; }

struct plan {
  struct ns_rec ns[MAX_NS];
  size_t n_ns;
  VEC(struct idmap_rec) uidmaps;
  VEC(struct idmap_rec) gidmaps;
  bool setgroups_deny;
  VEC(const char *) cgroup_files;
  const char *device_filter_dir;        /* cgroup2 directory, or NULL: no device filter */
  const unsigned char *device_filter;   /* struct bpf_insn records, decoded from hex */
  size_t device_filter_len;             /* bytes */
  const char *hostname, *domainname;
  const char *rootfs;
  bool has_rootfs_propagation;
  unsigned long rootfs_propagation;
  VEC(struct mount_rec) mounts;
  VEC(struct device_rec) devices;
  VEC(const char *) device_binds;
  VEC(struct symlink_rec) symlinks;
  bool no_pivot;
  VEC(const char *) masks;
  VEC(const char *) readonly;
  bool rootfs_readonly;
  VEC(struct sysctl_rec) sysctls;
  VEC(struct rlimit_rec) rlimits;
  bool has_oom_score_adj;
  int oom_score_adj;
  bool has_personality;
  unsigned long personality;
  bool has_umask;
  mode_t umask;
  bool has_user;
  uid_t uid;
  gid_t gid;
  bool has_gids;
  VEC(gid_t) gids;
  bool has_caps;
  uint64_t caps[CAP_NSETS];
  bool no_new_privs;
  bool has_seccomp;
  int seccomp_default_action, seccomp_default_errno;
  VEC(const char *) seccomp_arches;
  VEC(const char *) seccomp_flags;
  VEC(struct seccomp_rule_rec) seccomp_rules;
  bool seccomp_late;
  const char *apparmor, *selinux_label, *keyring;
  const char *console_socket;
  bool console_relay;
  bool has_console_size;
  unsigned short console_rows, console_cols;
  const char *exec_fifo;
  const char *hook_sync;
  VEC(struct hook_rec) hooks;
  const char *state;
  unsigned preserve_fds;
  const char *cwd;
  VEC(char *) env;   /* NULL-terminated once parsed */
  VEC(char *) args;  /* NULL-terminated once parsed */
  bool wait;
};

/* Parses the plan in buf (modified in place; the plan's strings point into it).
 * On error returns -1 with a message in err. */
int plan_parse(char *buf, size_t len, struct plan *p, char *err, size_t errlen);

/* Reads fd to EOF into a NUL-terminated malloc'd buffer. */
char *read_all(int fd, size_t *len);

/* Names of seccomp actions, indexed like seccomp_rule_rec.action. */
extern const char *const seccomp_action_names[];
extern const char *const seccomp_op_names[];

#endif
