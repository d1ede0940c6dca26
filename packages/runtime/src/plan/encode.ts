import type { Plan, PlanRecord } from './types.js';

function fieldsOf(r: PlanRecord): (string | number | bigint)[] {
  switch (r.tag) {
    case 'version': return [r.version];
    case 'ns': return [r.type, r.path];
    case 'uidmap': case 'gidmap': return [r.container, r.host, r.size];
    case 'setgroups': return [r.value];
    case 'cgroup_join': return [r.file];
    case 'device_filter': return [r.dir, r.program];
    case 'hostname': case 'domainname': return [r.name];
    case 'rootfs': return [r.path];
    case 'rootfs_propagation': return [r.flags];
    case 'mount': return [r.source, r.target, r.fstype, r.flags, r.data, r.mkdir, r.propagation];
    case 'device': return [r.path, r.type, r.major, r.minor, r.mode, r.uid, r.gid];
    case 'device_bind': return [r.path];
    case 'symlink': return [r.target, r.linkpath];
    case 'no_pivot': case 'rootfs_readonly': case 'no_new_privs': case 'seccomp_late':
    case 'console_relay': case 'wait':
      return [];
    case 'mask': case 'readonly': return [r.path];
    case 'sysctl': return [r.key, r.value];
    case 'rlimit': return [r.resource, r.soft, r.hard];
    case 'oom_score_adj': return [r.value];
    case 'personality': return [r.domain];
    case 'umask': return [r.mode];
    case 'user': return [r.uid, r.gid];
    case 'additional_gids': return r.gids;
    case 'caps': return [r.set, r.mask];
    case 'seccomp_default': return [r.action, r.errno];
    case 'seccomp_arch': return [r.name];
    case 'seccomp_flag': return [r.name];
    case 'seccomp_rule':
      return [r.action, r.errno, r.syscall, ...r.args.flatMap((a) => [a.index, a.op, a.value, a.valueTwo])];
    case 'apparmor': return [r.profile];
    case 'selinux_label': return [r.label];
    case 'keyring': return [r.name];
    case 'console_socket': return [r.path];
    case 'console_size': return [r.rows, r.cols];
    case 'exec_fifo': return [r.path];
    case 'hook_sync': return [r.event];
    case 'hook': return [r.event, r.path, r.timeout, r.args.length, ...r.args, ...r.env];
    case 'state': return [r.json];
    case 'preserve_fds': return [r.n];
    case 'cwd': return [r.path];
    case 'env': return [r.value];
    case 'args': return r.args;
  }
}

function netstring(parts: Buffer[], v: string | number | bigint): void {
  const b = Buffer.from(typeof v === 'string' ? v : v.toString(), 'utf8');
  parts.push(Buffer.from(`${b.length}:`), b, Buffer.from(','));
}

/** Encode a plan in the executor's wire format (native/executor/PLAN.md). */
export function encodePlan(plan: Plan): Buffer {
  const parts: Buffer[] = [];
  for (const r of plan) {
    netstring(parts, r.tag);
    for (const f of fieldsOf(r)) netstring(parts, f);
    parts.push(Buffer.from('\n'));
  }
  return Buffer.concat(parts);
}

/** Decode the wire format back into tag + raw fields (for tests and debugging). */
export function decodeRecords(buf: Buffer): string[][] {
  const out: string[][] = [];
  let i = 0;
  let rec: string[] = [];
  while (i < buf.length) {
    if (buf[i] === 0x0a) {
      if (rec.length === 0) throw new Error(`empty record at offset ${i}`);
      out.push(rec);
      rec = [];
      i++;
      continue;
    }
    const colon = buf.indexOf(0x3a, i);
    if (colon < 0) throw new Error(`bad netstring at offset ${i}`);
    const lenStr = buf.subarray(i, colon).toString();
    if (!/^\d+$/.test(lenStr)) throw new Error(`bad netstring length at offset ${i}`);
    const len = Number(lenStr);
    const end = colon + 1 + len;
    if (end >= buf.length || buf[end] !== 0x2c) throw new Error(`netstring not terminated at offset ${i}`);
    rec.push(buf.subarray(colon + 1, end).toString('utf8'));
    i = end + 1;
  }
  if (rec.length) throw new Error('plan ends inside a record');
  return out;
}
