/* The device filter (PLAN.md, device_filter): loads the planner's
 * BPF_PROG_TYPE_CGROUP_DEVICE program, attaches it to the container's cgroup2
 * directory beside any other program there (BPF_F_ALLOW_MULTI), then detaches
 * the device programs this executor attached there before (known by their
 * name), so that a new filter replaces the old one without a moment when
 * neither is attached. Runs in the parent, on the host, after the cgroup join. */
#include "executor.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PROG_NAME "berth_devices" /* at most BPF_OBJ_NAME_LEN - 1 characters */
#define LOG_SIZE (1 << 20)
#define TAIL 2048                 /* how much of the verifier's log goes in the error */

static int sys_bpf(int cmd, union bpf_attr *attr) {
  return (int)syscall(SYS_bpf, cmd, attr, sizeof *attr);
}

/* Without a log buffer unless one is given: a verbose log can be larger than
 * any buffer, and a full buffer fails the load (ENOSPC). */
static int prog_load(const struct plan *p, char *log, size_t log_size) {
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
  a.insns = (uintptr_t)p->device_filter;
  a.insn_cnt = (uint32_t)(p->device_filter_len / sizeof(struct bpf_insn));
  a.license = (uintptr_t)"Apache-2.0"; /* the program calls no helper, GPL-only or other */
  _Static_assert(sizeof PROG_NAME <= BPF_OBJ_NAME_LEN, "program name too long");
  memcpy(a.prog_name, PROG_NAME, sizeof PROG_NAME);
  if (log) {
    log[0] = '\0';
    a.log_buf = (uintptr_t)log;
    a.log_size = (uint32_t)log_size;
    a.log_level = 1;
  }
  int fd, tries = 0;
  do fd = sys_bpf(BPF_PROG_LOAD, &a); while (fd < 0 && errno == EAGAIN && ++tries < 5);
  return fd;
}

/* The end of the verifier's log (where it stopped, and why), from a line start. */
static const char *log_tail(char *log) {
  size_t n = strlen(log);
  while (n > 0 && (log[n - 1] == '\n' || log[n - 1] == ' ')) log[--n] = '\0';
  if (n <= TAIL) return log;
  char *t = log + n - TAIL;
  char *nl = strchr(t, '\n');
  return nl ? nl + 1 : t;
}

static int load(const struct plan *p) {
  int fd = prog_load(p, NULL, 0);
  if (fd >= 0) return fd;
  int err = errno;
  char *log = malloc(LOG_SIZE);
  if (!log) fail(err, "bpf prog load (device filter for %s)", p->device_filter_dir);
  fd = prog_load(p, log, LOG_SIZE);
  if (fd >= 0) { free(log); return fd; }
  if (errno != ENOSPC) err = errno;
  fail_detail(err, log_tail(log), "bpf prog load (device filter for %s)", p->device_filter_dir);
}

static uint32_t prog_id(int fd, char name[BPF_OBJ_NAME_LEN]) {
  struct bpf_prog_info info;
  union bpf_attr a;
  memset(&info, 0, sizeof info);
  memset(&a, 0, sizeof a);
  a.info.bpf_fd = (uint32_t)fd;
  a.info.info_len = sizeof info;
  a.info.info = (uintptr_t)&info;
  if (sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &a) < 0) return 0;
  if (name) memcpy(name, info.name, BPF_OBJ_NAME_LEN);
  return info.id;
}

/* Detach every other program named PROG_NAME from the cgroup. */
static void detach_older(int cg, int prog, const char *dir) {
  uint32_t mine = prog_id(prog, NULL);
  if (!mine) fail(errno, "bpf obj get info (the device filter loaded for %s)", dir);
  uint32_t ids[64]; /* BPF_CGROUP_MAX_PROGS */
  union bpf_attr q;
  memset(&q, 0, sizeof q);
  q.query.target_fd = (uint32_t)cg;
  q.query.attach_type = BPF_CGROUP_DEVICE;
  q.query.prog_ids = (uintptr_t)ids;
  q.query.prog_cnt = sizeof ids / sizeof ids[0];
  if (sys_bpf(BPF_PROG_QUERY, &q) < 0) fail(errno, "bpf prog query (device programs on %s)", dir);
  uint32_t n = q.query.prog_cnt < 64 ? q.query.prog_cnt : 64;
  for (uint32_t i = 0; i < n; i++) {
    if (ids[i] == mine) continue;
    union bpf_attr a;
    memset(&a, 0, sizeof a);
    a.prog_id = ids[i];
    int fd = sys_bpf(BPF_PROG_GET_FD_BY_ID, &a);
    if (fd < 0 && errno == ENOENT) continue; /* detached meanwhile */
    if (fd < 0) fail(errno, "bpf prog get fd by id %u (device program on %s)", ids[i], dir);
    char name[BPF_OBJ_NAME_LEN] = "";
    if (!prog_id(fd, name)) fail(errno, "bpf obj get info (device program %u on %s)", ids[i], dir);
    if (!strncmp(name, PROG_NAME, sizeof name)) {
      memset(&a, 0, sizeof a);
      a.target_fd = (uint32_t)cg;
      a.attach_bpf_fd = (uint32_t)fd;
      a.attach_type = BPF_CGROUP_DEVICE;
      if (sys_bpf(BPF_PROG_DETACH, &a) < 0 && errno != ENOENT)
        fail(errno, "bpf prog detach (older device filter %u on %s)", ids[i], dir);
    }
    close(fd);
  }
}

void attach_device_filter(const struct plan *p) {
  const char *dir = p->device_filter_dir;
  if (!dir) return;
  int prog = load(p);
  int cg = open(dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  if (cg < 0) fail(errno, "open cgroup %s for the device filter", dir);
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.target_fd = (uint32_t)cg;
  a.attach_bpf_fd = (uint32_t)prog;
  a.attach_type = BPF_CGROUP_DEVICE;
  a.attach_flags = BPF_F_ALLOW_MULTI;
  if (sys_bpf(BPF_PROG_ATTACH, &a) < 0) fail(errno, "bpf prog attach (device filter on %s)", dir);
  detach_older(cg, prog, dir);
  close(cg);
  close(prog);
}
