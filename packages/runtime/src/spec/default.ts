/**
 * The starter config.json that `berth-runc spec` writes, the same as
 * `runc spec` (and `runc spec --rootless`) produce, with hostname "berth".
 */
import type { LinuxIDMapping, Mount, Spec } from '@berth/spec';

/** The version in configs we write: the oldest that carries every default field, so older runtimes (crun 1.8) take them. */
export const DEFAULT_OCI_VERSION = '1.0.2';

const DEFAULT_CAPS = ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'];

/** The paths runc masks; the powercap entry is Docker's addition (energy counters leak data). */
export const DEFAULT_MASKED_PATHS = [
  '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/sys/firmware', '/proc/scsi', '/sys/devices/virtual/powercap',
];

export const DEFAULT_READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

export interface DefaultSpecOptions {
  rootless?: boolean;
  args?: string[];
  /** The ids mapped to root in a rootless spec; the caller's by default. */
  uid?: number;
  gid?: number;
}

function defaultMounts(): Mount[] {
  return [
    { destination: '/proc', type: 'proc', source: 'proc' },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    {
      destination: '/dev/pts', type: 'devpts', source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
  ];
}

export function defaultSpec(opts: DefaultSpecOptions = {}): Spec {
  const spec: Spec = {
    ociVersion: DEFAULT_OCI_VERSION,
    process: {
      terminal: true,
      user: { uid: 0, gid: 0 },
      args: opts.args !== undefined ? [...opts.args] : ['sh'],
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'TERM=xterm'],
      cwd: '/',
      capabilities: { bounding: [...DEFAULT_CAPS], effective: [...DEFAULT_CAPS], permitted: [...DEFAULT_CAPS] },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: 'rootfs', readonly: true },
    hostname: 'berth',
    mounts: defaultMounts(),
    linux: {
      resources: { devices: [{ allow: false, access: 'rwm' }] },
      namespaces: [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'cgroup' }],
      maskedPaths: [...DEFAULT_MASKED_PATHS],
      readonlyPaths: [...DEFAULT_READONLY_PATHS],
    },
  };
  return opts.rootless ? toRootless(spec, opts.uid ?? process.getuid?.() ?? 0, opts.gid ?? process.getgid?.() ?? 0) : spec;
}

/**
 * A spec an unprivileged user can run: a user namespace mapping root to the
 * caller, no network namespace (it could not be configured), the host's
 * /sys bound instead of a new sysfs, no cgroup mount and no resources (no
 * cgroup to manage), and no uid=/gid= mount options (those ids are unmapped).
 */
function toRootless(spec: Spec, uid: number, gid: number): Spec {
  const linux = spec.linux ?? {};
  const map = (hostID: number): LinuxIDMapping[] => [{ containerID: 0, hostID, size: 1 }];
  const namespaces = (linux.namespaces ?? []).filter((n) => n.type !== 'network' && n.type !== 'user');
  namespaces.push({ type: 'user' });
  const mounts: Mount[] = [];
  for (const m of spec.mounts ?? []) {
    if (m.destination === '/sys/fs/cgroup') continue;
    if (m.destination === '/sys') {
      mounts.push({ destination: '/sys', type: 'none', source: '/sys', options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro'] });
      continue;
    }
    const options = m.options?.filter((o) => !o.startsWith('uid=') && !o.startsWith('gid='));
    mounts.push(options !== undefined ? { ...m, options } : m);
  }
  const { resources: _resources, ...rest } = linux;
  return {
    ...spec,
    mounts,
    linux: { ...rest, namespaces, uidMappings: map(uid), gidMappings: map(gid) },
  };
}
