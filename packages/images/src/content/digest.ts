/** Content digests: "sha256:<64 lowercase hex>", the only algorithm the store keeps. */
import { invalid } from '@berth/base';

const OTHER_ALGORITHMS: Readonly<Record<string, number>> = { sha384: 96, sha512: 128 };

export interface ParsedContentDigest {
  readonly algorithm: 'sha256';
  readonly hex: string;
}

/** Parse and check a digest; messages as go-digest's. */
export function parseContentDigest(d: string): ParsedContentDigest {
  const i = d.indexOf(':');
  if (i <= 0 || i + 1 === d.length) throw invalid(`invalid checksum digest format: ${JSON.stringify(d)}`);
  const alg = d.slice(0, i);
  const hex = d.slice(i + 1);
  if (alg !== 'sha256') {
    const len = OTHER_ALGORITHMS[alg];
    if (len === undefined) throw invalid(`unsupported digest algorithm: ${JSON.stringify(d)}`);
    if (hex.length !== len || !/^[a-f0-9]+$/.test(hex)) throw invalid(`invalid checksum digest format: ${JSON.stringify(d)}`);
    throw invalid(`digest ${d}: only sha256 content is stored`);
  }
  if (hex.length !== 64) throw invalid(`invalid checksum digest length: ${JSON.stringify(d)}`);
  if (!/^[a-f0-9]+$/.test(hex)) throw invalid(`invalid checksum digest format: ${JSON.stringify(d)}`);
  return { algorithm: 'sha256', hex };
}

export function isContentDigest(d: string): boolean {
  return /^sha256:[a-f0-9]{64}$/.test(d);
}
