/**
 * Chain IDs, per the OCI image spec (config.md, "Layer ChainID"): the name a
 * stack of layers gets, used as the committed snapshot's name when unpacking.
 *
 *   ChainID(L0)      = DiffID(L0)
 *   ChainID(L0..Ln)  = sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln))
 */
import { createHash } from 'node:crypto';
import { invalid } from '@berth/base';

const DIGEST_RE = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

/** The chain ID of the whole list of diff IDs (bottom layer first). */
export function chainId(diffIds: readonly string[]): string {
  const all = chainIds(diffIds);
  const last = all[all.length - 1];
  if (last === undefined) throw invalid('chain ID of no layers: the list of diff IDs is empty');
  return last;
}

/** The chain ID of every prefix: result[i] names layers 0..i. */
export function chainIds(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  let prev: string | undefined;
  for (const [i, d] of diffIds.entries()) {
    if (!DIGEST_RE.test(d)) throw invalid(`diff ID ${i} (${JSON.stringify(d)}) is not a digest`);
    prev = prev === undefined ? d : `sha256:${createHash('sha256').update(`${prev} ${d}`).digest('hex')}`;
    out.push(prev);
  }
  return out;
}
