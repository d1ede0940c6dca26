/* The executor's modules, one section per source file. */
#ifndef BERTH_EXECUTOR_H
#define BERTH_EXECUTOR_H

#include <stdbool.h>
#include <sys/types.h>

#include "plan.h"

/* What the parent and the child share: set up by main.c. */
struct run {
  struct plan *plan;
  int sync_fd;      /* messages to and from the caller */
  int chan;         /* internal socket between parent and child (each holds one end) */
  pid_t child;      /* in the parent: the container process */
  int fifo_fd;      /* O_PATH fd of the exec fifo, or -1 */
  int console_sock; /* connected console socket, or -1 */
  int root_fd;      /* O_PATH fd of the (bind-mounted) rootfs, or -1 */
  int new_userns;   /* a user namespace was created by clone */
  char *exe;        /* resolved args[0] */
};

/* report.c: JSON-line messages on the sync fd, and failing. */
void report_init(int sync_fd);
void report_start_fd(int fd); /* exec fifo write end: failures after start are written there too */
void report_child(int chan);           /* in the child: failures also notify the parent */
void report_kill_on_fail(pid_t pid);   /* in the parent: a failure kills this pid */
void stage(const char *name);          /* enter a stage and report it */
void stage_quiet(const char *name);    /* enter a stage without a message */
const char *current_stage(void);
void report_pid(pid_t pid);
void report_hook(const char *event);
void report_ready(void);
void report_error(const char *stage, int err, const char *message);
/* Reports an error in the current stage ("<fmt>: ENAME (strerror)" when err != 0) and exits 1. */
_Noreturn void fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* As fail(), with detail (a tool's own explanation) after the errno: "<fmt>: ENAME (strerror): <detail>". */
_Noreturn void fail_detail(int err, const char *detail, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* "ENOENT (No such file or directory)" */
void errno_text(int err, char *buf, size_t len);

/* util.c */
void write_file(const char *path, const char *data, size_t len, const char *what);
void fd_blocking(int fd);
void fd_cloexec(int fd, bool on);
void write_full(int fd, const void *buf, size_t len);
/* The internal channel: one byte messages, optionally carrying an fd. */
int chan_send(int sock, char c, int fd);
int chan_recv(int sock, char *c, int *fd); /* returns 0 on EOF, 1 on a message, -1 on error */
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* memfd.c */
void memfd_reexec(char **argv);

/* ns.c */
void join_cgroups(struct run *r);
void join_namespaces(struct run *r);
int clone_flags(const struct plan *p);
pid_t clone_child(int flags);
void write_id_maps(struct run *r);
void become_ns_root(void);
void set_uts(const struct plan *p);
void join_keyring(const struct plan *p);

/* bpf.c */
void attach_device_filter(const struct plan *p);

/* mounts.c */
void prepare_rootfs(struct run *r);
void do_mounts(struct run *r);
void make_devices(struct run *r);
void make_symlinks(struct run *r);
void pivot(struct run *r);
void mask_paths(const struct plan *p);
void readonly_paths(const struct plan *p);
void set_sysctls(const struct plan *p);

/* console.c */
void console_connect(struct run *r);
void console_setup(struct run *r);
void relay_start(int master);  /* in the parent, once the master arrived */
void relay_poll_fds(int *fds, int *n);
void relay_handle(const int *revents);
void relay_winch(void);
void relay_finish(void);

/* creds.c */
void set_oom_score_adj(const struct plan *p);
void set_limits(const struct plan *p);
void set_lsm(const struct plan *p);
void drop_bounding(const struct plan *p);
void set_user(const struct plan *p);
void set_caps(const struct plan *p);
void set_no_new_privs(const struct plan *p);

/* seccomp.c */
void load_seccomp(const struct plan *p);

/* hooks.c */
void hook_sync(struct run *r);
void run_hooks(const struct plan *p, enum hook_event event);

/* process.c */
void open_fifo(struct run *r);
void lookup_exe(struct run *r);
void wait_for_start(struct run *r);
void enter_cwd(const struct plan *p);
void close_fds(const struct plan *p);
_Noreturn void exec_process(struct run *r);

/* parent.c */
_Noreturn void parent_run(struct run *r);
void child_ready(struct run *r);

#endif
