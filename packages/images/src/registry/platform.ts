// Platforms (os/architecture/variant): the host's, parsing `linux/arm/v7`,
// normalising aliases, and choosing a manifest from an index with the
// fallbacks containerd allows (arm64 runs arm/v8..v5, arm/v7 runs v6 and v5,
// amd64 runs 386).
import { arch as hostArch, platform as hostOs } from 'node:process';
import process from 'node:process';
import { invalid } from '@berth/base';
import type { ImageDescriptor, ImagePlatform } from './media.js';

interface Plat {
  os: string;
  architecture: string;
  variant: string;
}

const ARCH_ALIASES: Record<string, { architecture: string; variant?: string }> = {
  x86_64: { architecture: 'amd64' },
  'x86-64': { architecture: 'amd64' },
  x64: { architecture: 'amd64' },
  aarch64: { architecture: 'arm64' },
  armhf: { architecture: 'arm', variant: 'v7' },
  armel: { architecture: 'arm', variant: 'v6' },
  i386: { architecture: '386' },
  i686: { architecture: '386' },
  ia32: { architecture: '386' },
};

/** Canonical form: lower case, aliases resolved, arm's default variant v7, arm64's v8 and amd64's v1 dropped. */
export function normalizePlatform(p: ImagePlatform): ImagePlatform {
  const n = norm(p);
  return n.variant === '' ? { os: n.os, architecture: n.architecture } : { os: n.os, architecture: n.architecture, variant: n.variant };
}

function norm(p: { os: string; architecture: string; variant?: string | undefined }): Plat {
  const os = p.os.toLowerCase();
  let architecture = p.architecture.toLowerCase();
  let variant = (p.variant ?? '').toLowerCase();
  const alias = ARCH_ALIASES[architecture];
  if (alias !== undefined) {
    architecture = alias.architecture;
    if (variant === '' && alias.variant !== undefined) variant = alias.variant;
  }
  if (architecture === 'arm64' && (variant === 'v8' || variant === '8')) variant = '';
  if (architecture === 'amd64' && variant === 'v1') variant = '';
  if (architecture === 'arm') {
    if (variant === '') variant = 'v7';
    else if (/^\d$/.test(variant)) variant = `v${variant}`;
  }
  return { os, architecture, variant };
}

/** The platform this process runs on: linux/amd64, linux/arm64, linux/arm/v7… */
export function hostPlatform(): ImagePlatform {
  const os = hostOs === 'win32' ? 'windows' : hostOs;
  const map: Record<string, string> = { x64: 'amd64', ia32: '386', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64', mips64el: 'mips64le' };
  const architecture = map[hostArch] ?? hostArch;
  if (architecture === 'arm') {
    const v = (process.config.variables as Record<string, unknown>)['arm_version'];
    return { os, architecture, variant: `v${typeof v === 'string' || typeof v === 'number' ? String(v) : '7'}` };
  }
  return { os, architecture };
}

/** Parses `linux/amd64`, `linux/arm/v7`, `linux/arm64/v8` (a lone `linux` means the host's architecture). */
export function parsePlatformSpec(s: string): ImagePlatform {
  const parts = s.trim().split('/');
  if (parts.some((x) => x === '') || parts.length > 3) throw invalid(`invalid platform ${JSON.stringify(s)}: expected os[/arch[/variant]]`);
  const [os = '', arch, variant] = parts;
  if (arch === undefined) {
    const h = hostPlatform();
    return normalizePlatform({ ...h, os });
  }
  return normalizePlatform(variant === undefined ? { os, architecture: arch } : { os, architecture: arch, variant });
}

export function formatPlatform(p: ImagePlatform): string {
  return [p.os, p.architecture, ...(p.variant !== undefined && p.variant !== '' ? [p.variant] : [])].join('/');
}

/** The platforms that can run on `want`, best first. */
function candidates(want: Plat): Plat[] {
  const out: Plat[] = [want];
  const { os } = want;
  if (want.architecture === 'arm64') {
    for (const v of ['v8', 'v7', 'v6', 'v5']) out.push({ os, architecture: 'arm', variant: v });
  } else if (want.architecture === 'arm') {
    const n = Number(want.variant.slice(1));
    for (let v = n - 1; v >= 5; v--) out.push({ os, architecture: 'arm', variant: `v${v}` });
  } else if (want.architecture === 'amd64') {
    if (want.variant !== '') {
      const n = Number(want.variant.slice(1));
      for (let v = n - 1; v >= 2; v--) out.push({ os, architecture: 'amd64', variant: `v${v}` });
      out.push({ os, architecture: 'amd64', variant: '' });
    }
    out.push({ os, architecture: '386', variant: '' });
  }
  return out;
}

/** True when an image for `have` runs on `want`. */
export function platformMatches(want: ImagePlatform, have: ImagePlatform): boolean {
  return rank(norm(want), norm(have)) !== -1;
}

function rank(want: Plat, have: Plat): number {
  return candidates(want).findIndex(
    (c) => c.os === have.os && c.architecture === have.architecture && c.variant === have.variant,
  );
}

/**
 * Chooses the manifest of an index for a platform: the best-ranked match,
 * the first of equals in index order. Entries without a platform never match.
 */
export function selectPlatform(manifests: readonly ImageDescriptor[], want: ImagePlatform): ImageDescriptor | undefined {
  const w = norm(want);
  let best: ImageDescriptor | undefined;
  let bestRank = Infinity;
  for (const m of manifests) {
    if (m.platform === undefined) continue;
    const r = rank(w, norm(m.platform));
    if (r !== -1 && r < bestRank) {
      best = m;
      bestRank = r;
    }
  }
  return best;
}
