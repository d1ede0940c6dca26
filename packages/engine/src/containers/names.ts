/**
 * Names for containers created without one: `<adjective>_<noun>`, Berth's
 * own word lists, with a number appended on the rare collision.
 */
import { randomInt } from 'node:crypto';

const ADJECTIVES = [
  'agile', 'amber', 'ancient', 'bold', 'brave', 'bright', 'brisk', 'calm', 'clever', 'cosmic', 'crisp', 'curious',
  'daring', 'dazzling', 'eager', 'early', 'electric', 'epic', 'fearless', 'festive', 'fluffy', 'frosty', 'gentle',
  'giant', 'glowing', 'golden', 'graceful', 'happy', 'hidden', 'humble', 'icy', 'jolly', 'keen', 'kind', 'lively',
  'loyal', 'lucky', 'lunar', 'magic', 'mellow', 'merry', 'mighty', 'misty', 'modest', 'noble', 'nimble', 'patient',
  'peaceful', 'polar', 'proud', 'quick', 'quiet', 'rapid', 'restless', 'rustic', 'serene', 'sharp', 'shiny', 'silent',
  'silver', 'sleepy', 'smooth', 'snowy', 'solar', 'spicy', 'steady', 'stoic', 'sunny', 'swift', 'tender', 'tidy',
  'tranquil', 'vivid', 'wandering', 'warm', 'wild', 'wise', 'witty', 'young', 'zealous',
];

const NOUNS = [
  'anchor', 'aurora', 'badger', 'barge', 'beacon', 'bison', 'breeze', 'buoy', 'canal', 'cargo', 'comet', 'coral',
  'crane', 'current', 'delta', 'dock', 'dolphin', 'dune', 'eagle', 'falcon', 'ferry', 'fjord', 'gull', 'harbor',
  'heron', 'hull', 'island', 'jetty', 'kayak', 'keel', 'kelp', 'lagoon', 'lantern', 'lighthouse', 'lynx', 'marina',
  'mast', 'meadow', 'narwhal', 'nebula', 'oar', 'ocean', 'orca', 'otter', 'pebble', 'pelican', 'pier', 'pilot',
  'puffin', 'quay', 'raft', 'reef', 'river', 'rudder', 'sail', 'schooner', 'seal', 'shore', 'sloop', 'sonar',
  'starfish', 'storm', 'tide', 'tugboat', 'walrus', 'wave', 'whale', 'wharf', 'yacht', 'zephyr',
];

export function randomName(taken: (name: string) => boolean): string {
  for (let i = 0; i < 10; i++) {
    const n = `${ADJECTIVES[randomInt(ADJECTIVES.length)]}_${NOUNS[randomInt(NOUNS.length)]}`;
    if (!taken(n)) return n;
  }
  for (;;) {
    const n = `${ADJECTIVES[randomInt(ADJECTIVES.length)]}_${NOUNS[randomInt(NOUNS.length)]}${randomInt(10)}`;
    if (!taken(n)) return n;
  }
}

/** Docker's rule for container names (the leading `/` is optional). */
export const VALID_NAME = /^\/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;
