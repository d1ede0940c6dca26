/* Namespaces and cgroups: joining existing ones (cgroup.procs, setns by path),
 * creating new ones with clone3, and the user namespace's id maps. */
#include "executor.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/keyctl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

void join_cgroups(struct run *r) {
  char pid[32];
  int n = snprintf(pid, sizeof pid, "%d", (int)getpid());
  for (size_t i = 0; i < r->plan->cgroup_files.n; i++)
    write_file(r->plan->cgroup_files.v[i], pid, (size_t)n, "the executor's pid");
}

/* Order of setns: user first (it grants the capabilities for the others), mnt last
 * (after it the other paths may not resolve). All paths are opened before any setns. */
static int ns_rank(int flag) {
  if (flag == CLONE_NEWUSER) return 0;
  if (flag == CLONE_NEWNS) return 2;
  return 1;
}

void join_namespaces(struct run *r) {
  struct plan *p = r->plan;
  int fds[MAX_NS];
  for (size_t i = 0; i < p->n_ns; i++) {
    fds[i] = -1;
    if (!p->ns[i].path[0]) continue;
    fds[i] = open(p->ns[i].path, O_RDONLY | O_CLOEXEC);
    if (fds[i] < 0) fail(errno, "open %s namespace %s", p->ns[i].type, p->ns[i].path);
  }
  for (int rank = 0; rank <= 2; rank++) {
    for (size_t i = 0; i < p->n_ns; i++) {
      if (fds[i] < 0 || ns_rank(p->ns[i].flag) != rank) continue;
      if (setns(fds[i], p->ns[i].flag) < 0) fail(errno, "setns %s namespace %s", p->ns[i].type, p->ns[i].path);
      close(fds[i]);
      if (p->ns[i].flag == CLONE_NEWUSER) become_ns_root();
    }
  }
}

int clone_flags(const struct plan *p) {
  int flags = 0;
  for (size_t i = 0; i < p->n_ns; i++)
    if (!p->ns[i].path[0]) flags |= p->ns[i].flag;
  return flags;
}

/* fork(2) with namespace flags: returns 0 in the child, the child's pid in the parent. */
pid_t clone_child(int flags) {
  struct clone_args args;
  memset(&args, 0, sizeof args);
  args.flags = (uint64_t)(unsigned)flags;
  args.exit_signal = SIGCHLD;
  long pid = syscall(SYS_clone3, &args, sizeof args);
  if (pid < 0) fail(errno, "clone3 with namespace flags 0x%x", (unsigned)flags);
  return (pid_t)pid;
}

static void write_map(pid_t pid, const char *file, const struct idmap_rec *m, size_t n) {
  if (!n) return;
  char buf[4096];
  size_t len = 0;
  for (size_t i = 0; i < n; i++) {
    int k = snprintf(buf + len, sizeof buf - len, "%lu %lu %lu\n", m[i].container, m[i].host, m[i].size);
    if (k < 0 || (size_t)k >= sizeof buf - len) fail(E2BIG, "%s for pid %d: too many ranges", file, (int)pid);
    len += (size_t)k;
  }
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
  write_file(path, buf, len, file);
}

void write_id_maps(struct run *r) {
  struct plan *p = r->plan;
  if (!r->new_userns) return;
  if (p->setgroups_deny) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/setgroups", (int)r->child);
    write_file(path, "deny", 4, "setgroups");
  }
  write_map(r->child, "uid_map", p->uidmaps.v, p->uidmaps.n);
  write_map(r->child, "gid_map", p->gidmaps.v, p->gidmaps.n);
}

/* In a user namespace just created or joined: become its root, keeping the capabilities. */
void become_ns_root(void) {
  if (setresgid(0, 0, 0) < 0) fail(errno, "setresgid 0 in the user namespace (is gid 0 mapped?)");
  if (setresuid(0, 0, 0) < 0) fail(errno, "setresuid 0 in the user namespace (is uid 0 mapped?)");
}

void set_uts(const struct plan *p) {
  if (p->hostname && sethostname(p->hostname, strlen(p->hostname)) < 0)
    fail(errno, "sethostname %s", p->hostname);
  if (p->domainname && setdomainname(p->domainname, strlen(p->domainname)) < 0)
    fail(errno, "setdomainname %s", p->domainname);
}

void join_keyring(const struct plan *p) {
  if (!p->keyring) return;
  if (syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, p->keyring) < 0 && errno != ENOSYS)
    fail(errno, "join session keyring %s", p->keyring);
}
