/* berth-executor: carries out a plan (PLAN.md). This file is the runbook: the
 * stages in order, first in the executor, then in the container process. */
#include "executor.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

static _Noreturn void child_run(struct run *r);

static int fd_arg(const char *s) {
  char *end;
  long v = strtol(s, &end, 10);
  if (!*s || *end || v < 0 || v > 65535) return -1;
  return (int)v;
}

static void usage(void) {
  fprintf(stderr, "usage: berth-executor --plan-fd N --sync-fd N\n");
  exit(2);
}

int main(int argc, char **argv) {
  int plan_fd = -1, sync_fd = -1;
  for (int i = 1; i < argc; i++) {
    if (i + 1 < argc && !strcmp(argv[i], "--plan-fd")) plan_fd = fd_arg(argv[++i]);
    else if (i + 1 < argc && !strcmp(argv[i], "--sync-fd")) sync_fd = fd_arg(argv[++i]);
    else usage();
  }
  if (plan_fd < 0 || sync_fd < 0 || plan_fd == sync_fd) usage();
  report_init(sync_fd);
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

  stage_quiet("memfd"); /* reported once, from the copy */
  memfd_reexec(argv);
  stage("memfd");
  fd_blocking(sync_fd);
  fd_blocking(plan_fd);
  fd_cloexec(sync_fd, true);

  stage("plan");
  static struct plan plan;
  size_t len;
  char *buf = read_all(plan_fd, &len);
  if (!buf) fail(errno, "read the plan from fd %d", plan_fd);
  close(plan_fd);
  char err[512];
  if (plan_parse(buf, len, &plan, err, sizeof err) < 0) {
    report_error("plan", EINVAL, err);
    return 1;
  }

  struct run r = { .plan = &plan, .sync_fd = sync_fd, .chan = -1, .fifo_fd = -1, .console_sock = -1, .root_fd = -1 };

  /* What must be opened in the caller's view of the world, before joining anything. */
  stage("fifo");
  open_fifo(&r);
  stage("console");
  console_connect(&r);
  stage("oom_score_adj");
  set_oom_score_adj(&plan);

  stage("cgroup");
  join_cgroups(&r);
  stage("device_filter");
  attach_device_filter(&plan);
  stage("setns");
  join_namespaces(&r);

  stage("clone");
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) fail(errno, "socketpair");
  int flags = clone_flags(&plan);
  r.new_userns = (flags & CLONE_NEWUSER) != 0;
  pid_t pid = clone_child(flags);
  if (pid == 0) {
    close(sv[0]);
    r.chan = sv[1];
    child_run(&r);
  }
  close(sv[1]);
  r.chan = sv[0];
  r.child = pid;
  report_kill_on_fail(pid);

  stage("idmap");
  write_id_maps(&r);
  if (chan_send(r.chan, 'G', -1) < 0) fail(errno, "release the container process");
  stage("pid");
  report_pid(pid);
  parent_run(&r);
}

static void child_run(struct run *r) {
  struct plan *p = r->plan;
  report_child(r->chan);
  sigset_t all;
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, NULL);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) fail(errno, "prctl PR_SET_PDEATHSIG");
  char go;
  if (chan_recv(r->chan, &go, NULL) != 1 || go != 'G') _exit(1); /* the executor failed or died */
  stage_quiet("idmap");
  if (r->new_userns) become_ns_root();

  stage("session");
  if (setsid() < 0) fail(errno, "setsid");
  stage("keyring");
  join_keyring(p);
  stage("uts");
  set_uts(p);

  if (p->rootfs) {
    stage("rootfs");
    prepare_rootfs(r);
    stage("mounts");
    do_mounts(r);
    stage("devices");
    make_devices(r);
    stage("symlinks");
    make_symlinks(r);
  }
  stage("hook");
  hook_sync(r);
  run_hooks(p, HOOK_CREATE_CONTAINER);
  if (p->rootfs) {
    stage("pivot");
    pivot(r);
  }
  /* sysctls first: readonlyPaths usually include /proc/sys. */
  stage("sysctl");
  set_sysctls(p);
  stage("mask");
  mask_paths(p);
  stage("readonly");
  readonly_paths(p);
  stage("console");
  console_setup(r);

  set_limits(p); /* rlimit, personality, umask */
  set_lsm(p);    /* apparmor, selinux */
  if (!p->seccomp_late) {
    stage("seccomp");
    load_seccomp(p);
  }
  stage("caps");
  drop_bounding(p);
  stage("user");
  set_user(p);
  stage("caps");
  set_caps(p);
  stage("no_new_privs");
  set_no_new_privs(p);
  stage("cwd");
  enter_cwd(p);
  stage("lookup");
  lookup_exe(r);

  stage("ready");
  child_ready(r);
  stage("fifo");
  wait_for_start(r);
  stage("hook");
  run_hooks(p, HOOK_START_CONTAINER);
  if (p->seccomp_late) {
    stage("seccomp");
    load_seccomp(p);
  }
  stage("fds");
  close_fds(p);
  stage("exec");
  exec_process(r);
}
