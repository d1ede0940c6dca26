/* The seccomp filter, built with libseccomp from the plan's seccomp records.
 * libseccomp must not set no_new_privs by itself: that is the plan's choice. */
#include "executor.h"

#include <errno.h>
#include <seccomp.h>
#include <string.h>

static uint32_t action(int a, int err) {
  switch (a) {
    case 0: return SCMP_ACT_KILL_PROCESS;
    case 1: return SCMP_ACT_KILL_THREAD;
    case 2: return SCMP_ACT_TRAP;
    case 3: return SCMP_ACT_ERRNO((uint32_t)err);
    case 4: return SCMP_ACT_TRACE((uint32_t)err);
    case 5: return SCMP_ACT_ALLOW;
    case 6: return SCMP_ACT_LOG;
    default: return SCMP_ACT_NOTIFY;
  }
}

static const enum scmp_compare ops[] = {
  SCMP_CMP_NE, SCMP_CMP_LT, SCMP_CMP_LE, SCMP_CMP_EQ, SCMP_CMP_GE, SCMP_CMP_GT, SCMP_CMP_MASKED_EQ,
};

static void set_flag(scmp_filter_ctx ctx, const char *name) {
  enum scmp_filter_attr attr;
  if (!strcmp(name, "SECCOMP_FILTER_FLAG_LOG")) attr = SCMP_FLTATR_CTL_LOG;
  else if (!strcmp(name, "SECCOMP_FILTER_FLAG_SPEC_ALLOW")) attr = SCMP_FLTATR_CTL_SSB;
  else if (!strcmp(name, "SECCOMP_FILTER_FLAG_TSYNC")) attr = SCMP_FLTATR_CTL_TSYNC;
  /* Only meaningful for notify, which this executor does not support. */
  else if (!strcmp(name, "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV")) return;
  else fail(EINVAL, "unknown seccomp flag %s", name);
  int rc = seccomp_attr_set(ctx, attr, 1);
  if (rc < 0) fail(-rc, "set seccomp flag %s", name);
}

static void add_rule(scmp_filter_ctx ctx, uint32_t def, const struct seccomp_rule_rec *r) {
  int nr = seccomp_syscall_resolve_name(r->syscall);
  if (nr == __NR_SCMP_ERROR) return; /* unknown to libseccomp or this kernel: skipped */
  uint32_t act = action(r->action, r->err);
  if (act == def) return;            /* libseccomp refuses rules that repeat the default */
  struct scmp_arg_cmp cmp[MAX_SECCOMP_ARGS];
  bool repeated = false;
  for (unsigned i = 0; i < r->nargs; i++) {
    cmp[i] = (struct scmp_arg_cmp){
      .arg = r->args[i].index, .op = ops[r->args[i].op],
      .datum_a = r->args[i].value, .datum_b = r->args[i].value_two,
    };
    for (unsigned k = 0; k < i; k++)
      if (r->args[k].index == r->args[i].index) repeated = true;
  }
  int rc;
  if (!repeated) {
    rc = seccomp_rule_add_array(ctx, act, nr, r->nargs, cmp);
    if (rc < 0) fail(-rc, "add seccomp rule for %s", r->syscall);
    return;
  }
  /* Conditions on the same argument cannot be and-ed by libseccomp: one rule each. */
  for (unsigned i = 0; i < r->nargs; i++) {
    rc = seccomp_rule_add_array(ctx, act, nr, 1, &cmp[i]);
    if (rc < 0) fail(-rc, "add seccomp rule for %s (condition %u)", r->syscall, i);
  }
}

void load_seccomp(const struct plan *p) {
  if (!p->has_seccomp) return;
  if (p->seccomp_default_action == 7) fail(EOPNOTSUPP, "seccomp default action notify is not supported");
  for (size_t i = 0; i < p->seccomp_rules.n; i++)
    if (p->seccomp_rules.v[i].action == 7)
      fail(EOPNOTSUPP, "seccomp action notify (syscall %s) is not supported", p->seccomp_rules.v[i].syscall);
  uint32_t def = action(p->seccomp_default_action, p->seccomp_default_errno);
  scmp_filter_ctx ctx = seccomp_init(def);
  if (!ctx) fail(EINVAL, "seccomp_init with the default action %s", seccomp_action_names[p->seccomp_default_action]);
  int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
  if (rc < 0) fail(-rc, "seccomp: leave no_new_privs alone");
  for (size_t i = 0; i < p->seccomp_arches.n; i++) {
    const char *name = p->seccomp_arches.v[i];
    uint32_t arch = seccomp_arch_resolve_name(name);
    if (!arch) fail(EINVAL, "unknown seccomp architecture %s", name);
    rc = seccomp_arch_add(ctx, arch);
    if (rc < 0 && rc != -EEXIST) fail(-rc, "add seccomp architecture %s", name);
  }
  for (size_t i = 0; i < p->seccomp_flags.n; i++) set_flag(ctx, p->seccomp_flags.v[i]);
  for (size_t i = 0; i < p->seccomp_rules.n; i++) add_rule(ctx, def, &p->seccomp_rules.v[i]);
  rc = seccomp_load(ctx);
  if (rc < 0) fail(-rc, "load the seccomp filter (%zu rules)", p->seccomp_rules.n);
  seccomp_release(ctx);
}
