/* The process's credentials and limits: rlimits, oom score, personality, umask,
 * LSM labels, groups and ids, the five capability sets (capset(2) directly),
 * no_new_privs. */
#include "executor.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Done by the executor before it joins any namespace: the value is inherited by the
 * child, and lowering it needs CAP_SYS_RESOURCE in the initial user namespace. */
void set_oom_score_adj(const struct plan *p) {
  if (!p->has_oom_score_adj) return;
  char buf[16];
  int n = snprintf(buf, sizeof buf, "%d", p->oom_score_adj);
  write_file("/proc/self/oom_score_adj", buf, (size_t)n, "oom_score_adj");
}

void set_limits(const struct plan *p) {
  stage("rlimit");
  for (size_t i = 0; i < p->rlimits.n; i++) {
    const struct rlimit_rec *l = &p->rlimits.v[i];
    struct rlimit rl = { .rlim_cur = l->soft, .rlim_max = l->hard };
    if (prlimit(0, (__rlimit_resource_t)l->resource, &rl, NULL) < 0)
      fail(errno, "setrlimit %d to %llu/%llu", l->resource, (unsigned long long)l->soft, (unsigned long long)l->hard);
  }
  stage("personality");
  if (p->has_personality && personality(p->personality) < 0) fail(errno, "personality 0x%lx", p->personality);
  stage("umask");
  if (p->has_umask) umask(p->umask);
}

void set_lsm(const struct plan *p) {
  if (p->apparmor) {
    stage("apparmor");
    char *v = xasprintf("exec %s", p->apparmor);
    const char *path = "/proc/self/attr/apparmor/exec";
    if (access(path, F_OK) < 0) path = "/proc/self/attr/exec";
    write_file(path, v, strlen(v), "the AppArmor profile");
    free(v);
  }
  if (p->selinux_label) {
    stage("selinux");
    write_file("/proc/self/attr/exec", p->selinux_label, strlen(p->selinux_label), "the SELinux label");
  }
}

static int last_cap(void) {
  static int last = -1;
  if (last >= 0) return last;
  FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
  if (!f || fscanf(f, "%d", &last) != 1 || last < 0 || last > 63) last = CAP_LAST_CAP;
  if (f) fclose(f);
  return last;
}

/* Dropping from the bounding set needs CAP_SETPCAP: done before the ids change. */
void drop_bounding(const struct plan *p) {
  if (!p->has_caps) return;
  for (int c = 0; c <= last_cap(); c++) {
    if (p->caps[CAP_BOUNDING] & (1ULL << c)) continue;
    if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL) fail(errno, "drop capability %d from the bounding set", c);
  }
}

static bool setgroups_denied(void) {
  char buf[16] = "";
  int fd = open("/proc/self/setgroups", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  return n > 0 && !strncmp(buf, "deny", 4);
}

void set_user(const struct plan *p) {
  if (!p->has_user && !p->has_gids) return;
  if (!setgroups_denied() && setgroups(p->gids.n, p->gids.v) < 0)
    fail(errno, "setgroups (%zu additional groups)", p->gids.n);
  if (!p->has_user) return;
  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) fail(errno, "prctl PR_SET_KEEPCAPS");
  if (setresgid(p->gid, p->gid, p->gid) < 0) fail(errno, "setresgid %u", p->gid);
  if (setresuid(p->uid, p->uid, p->uid) < 0) fail(errno, "setresuid %u", p->uid);
}

void set_caps(const struct plan *p) {
  if (!p->has_caps) return;
  struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
  struct __user_cap_data_struct data[2];
  for (int i = 0; i < 2; i++) {
    data[i].effective = (uint32_t)(p->caps[CAP_EFFECTIVE] >> (32 * i));
    data[i].permitted = (uint32_t)(p->caps[CAP_PERMITTED] >> (32 * i));
    data[i].inheritable = (uint32_t)(p->caps[CAP_INHERITABLE] >> (32 * i));
  }
  if (syscall(SYS_capset, &hdr, data) < 0)
    fail(errno, "capset effective 0x%llx permitted 0x%llx inheritable 0x%llx",
         (unsigned long long)p->caps[CAP_EFFECTIVE], (unsigned long long)p->caps[CAP_PERMITTED],
         (unsigned long long)p->caps[CAP_INHERITABLE]);
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
    fail(errno, "clear the ambient capabilities");
  /* The kernel only lets a capability be ambient if it is permitted and inheritable;
   * others are left out, as runc does (with a warning). */
  uint64_t ambient = p->caps[CAP_AMBIENT] & p->caps[CAP_PERMITTED] & p->caps[CAP_INHERITABLE];
  for (int c = 0; c <= last_cap(); c++)
    if ((ambient & (1ULL << c)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) < 0)
      fail(errno, "raise ambient capability %d", c);
}

void set_no_new_privs(const struct plan *p) {
  if (p->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) fail(errno, "prctl PR_SET_NO_NEW_PRIVS");
}
