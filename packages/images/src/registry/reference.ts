// Image references, parsed and normalised as Docker does: `busybox` is
// `docker.io/library/busybox`, a first path component is a registry domain
// only when it holds a `.` or a `:`, is `localhost`, or has upper case.
import { invalid } from '@berth/base';

export const DEFAULT_DOMAIN = 'docker.io';
const LEGACY_DEFAULT_DOMAIN = 'index.docker.io';
const OFFICIAL_REPO_PREFIX = 'library/';
export const DEFAULT_TAG = 'latest';
const NAME_TOTAL_LENGTH_MAX = 255;

// The grammar of distribution's reference package, as regular expressions.
const alphanumeric = '[a-z0-9]+';
const separator = '(?:[._]|__|[-]+)';
const pathComponent = `${alphanumeric}(?:${separator}${alphanumeric})*`;
const domainNameComponent = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const ipv6address = '\\[(?:[a-fA-F0-9:]+)\\]';
const domainName = `${domainNameComponent}(?:\\.${domainNameComponent})*`;
const host = `(?:${domainName}|${ipv6address})`;
const domainAndPort = `${host}(?::[0-9]+)?`;
const tagPattern = '[\\w][\\w.-]{0,127}';
const digestPattern = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}';
const namePattern = `(?:${domainAndPort}/)?${pathComponent}(?:/${pathComponent})*`;

const REFERENCE_RE = new RegExp(`^(${namePattern})(?::(${tagPattern}))?(?:@(${digestPattern}))?$`);
const DOMAIN_RE = new RegExp(`^${domainAndPort}$`);
const TAG_RE = new RegExp(`^${tagPattern}$`);
const IDENTIFIER_RE = /^[a-f0-9]{64}$/;

/** A parsed, normalised image reference. */
export interface ImageReference {
  /** Registry domain, with port if any: `docker.io`, `127.0.0.1:5000`. */
  readonly domain: string;
  /** Repository path inside the registry: `library/busybox`. */
  readonly path: string;
  readonly tag?: string;
  readonly digest?: string;
}

const DIGEST_LENGTHS: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };

/** Validates a digest string as go-digest does, with its (terse) messages. */
export function validateDigest(d: string): void {
  const i = d.indexOf(':');
  if (i <= 0 || i + 1 === d.length) throw invalid('invalid checksum digest format');
  const alg = d.slice(0, i);
  const hex = d.slice(i + 1);
  const len = DIGEST_LENGTHS[alg];
  if (len === undefined) throw invalid('unsupported digest algorithm');
  if (hex.length !== len) throw invalid('invalid checksum digest length');
  if (!/^[a-f0-9]+$/.test(hex)) throw invalid('invalid checksum digest format');
}

function splitDockerDomain(name: string): { domain: string; remainder: string } {
  const i = name.indexOf('/');
  let domain: string;
  let remainder: string;
  const first = i === -1 ? '' : name.slice(0, i);
  if (i === -1 || (!/[.:]/.test(first) && first !== 'localhost' && first.toLowerCase() === first)) {
    domain = DEFAULT_DOMAIN;
    remainder = name;
  } else {
    domain = first;
    remainder = name.slice(i + 1);
  }
  if (domain === LEGACY_DEFAULT_DOMAIN) domain = DEFAULT_DOMAIN;
  if (domain === DEFAULT_DOMAIN && !remainder.includes('/')) remainder = OFFICIAL_REPO_PREFIX + remainder;
  return { domain, remainder };
}

/**
 * Parses a fully qualified reference (`domain/path[:tag][@digest]`, or a
 * path alone, which then has no domain). Errors carry Docker's messages.
 */
function parseQualified(s: string): { name: string; tag?: string; digest?: string } {
  const m = REFERENCE_RE.exec(s);
  if (m === null) {
    if (s === '') throw invalid('repository name must have at least one component');
    if (REFERENCE_RE.test(s.toLowerCase())) {
      throw invalid('invalid reference format: repository name must be lowercase');
    }
    throw invalid('invalid reference format');
  }
  const name = m[1] ?? '';
  if (name.length > NAME_TOTAL_LENGTH_MAX) {
    throw invalid(`repository name must not be more than ${NAME_TOTAL_LENGTH_MAX} characters`);
  }
  const out: { name: string; tag?: string; digest?: string } = { name };
  if (m[2] !== undefined) out.tag = m[2];
  if (m[3] !== undefined) {
    validateDigest(m[3]);
    out.digest = m[3];
  }
  return out;
}

/**
 * Parses a reference as the docker CLI does (ParseNormalizedNamed):
 * `busybox` → docker.io/library/busybox, `user/app:tag`, `localhost:5000/x`,
 * `host/a/b@sha256:…`. No tag is added; see withDefaultTag.
 */
export function parseReference(s: string): ImageReference {
  if (IDENTIFIER_RE.test(s)) {
    throw invalid(`invalid repository name (${s}), cannot specify 64-byte hexadecimal strings`);
  }
  const { domain, remainder } = splitDockerDomain(s);
  const tagSep = remainder.indexOf(':');
  const remote = tagSep > -1 ? remainder.slice(0, tagSep) : remainder;
  if (remote.toLowerCase() !== remote) {
    throw invalid(`invalid reference format: repository name (${remote}) must be lowercase`);
  }
  const parsed = parseQualified(`${domain}/${remainder}`);
  const slash = parsed.name.indexOf('/');
  const ref: { domain: string; path: string; tag?: string; digest?: string } = {
    domain: parsed.name.slice(0, slash),
    path: parsed.name.slice(slash + 1),
  };
  if (parsed.tag !== undefined) ref.tag = parsed.tag;
  if (parsed.digest !== undefined) ref.digest = parsed.digest;
  return ref;
}

/** Adds `:latest` when the reference has neither tag nor digest (TagNameOnly). */
export function withDefaultTag(ref: ImageReference): ImageReference {
  if (ref.tag !== undefined || ref.digest !== undefined) return ref;
  return { ...ref, tag: DEFAULT_TAG };
}

/** parseReference then withDefaultTag: what `docker pull` works with. */
export function parseDockerReference(s: string): ImageReference {
  return withDefaultTag(parseReference(s));
}

/** `docker.io/library/busybox`: the repository, fully qualified. */
export function repositoryName(ref: ImageReference): string {
  return `${ref.domain}/${ref.path}`;
}

/** `docker.io/library/busybox:latest@sha256:…`: the canonical string. */
export function formatReference(ref: ImageReference): string {
  let s = repositoryName(ref);
  if (ref.tag !== undefined) s += `:${ref.tag}`;
  if (ref.digest !== undefined) s += `@${ref.digest}`;
  return s;
}

/** `busybox`, `user/app`, `localhost:5000/x`: the name as users write it. */
export function familiarName(ref: ImageReference): string {
  if (ref.domain !== DEFAULT_DOMAIN) return repositoryName(ref);
  const rest = ref.path;
  if (rest.startsWith(OFFICIAL_REPO_PREFIX) && !rest.slice(OFFICIAL_REPO_PREFIX.length).includes('/')) {
    return rest.slice(OFFICIAL_REPO_PREFIX.length);
  }
  return rest;
}

/** `busybox:latest`, `user/app@sha256:…`: the familiar name with tag and digest. */
export function familiarString(ref: ImageReference): string {
  let s = familiarName(ref);
  if (ref.tag !== undefined) s += `:${ref.tag}`;
  if (ref.digest !== undefined) s += `@${ref.digest}`;
  return s;
}

/** A reference for the same repository with another tag (and no digest). */
export function withTag(ref: ImageReference, tag: string): ImageReference {
  if (!TAG_RE.test(tag)) throw invalid(`invalid tag format: ${JSON.stringify(tag)}`);
  return { domain: ref.domain, path: ref.path, tag };
}

/** A reference for the same repository pinned to a digest (tag kept). */
export function withDigest(ref: ImageReference, digest: string): ImageReference {
  validateDigest(digest);
  return { ...ref, digest };
}

/** True when the string is a valid registry domain (host with optional port). */
export function isDomain(s: string): boolean {
  return DOMAIN_RE.test(s);
}
