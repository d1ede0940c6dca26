// The device program compiler: its programs, run by the interpreter, must
// give the answers of the v1 devices controller for the same rules.
// Run: node --test packages/cgroups/dist/devicefilter.test.js (no root needed).
import test from 'node:test';
import assert from 'node:assert/strict';
import type { LinuxDeviceCgroup } from '@berth/spec';
import { BerthError } from '@berth/base';
import { DEFAULT_DEVICE_RULES } from './devices.js';
import {
  deviceCgroupState, deviceFilterProgram, evalDeviceFilter, runDeviceFilter,
} from './devicefilter.js';
import type { DeviceRequest } from './devicefilter.js';

// ---- a reference: the kernel's v1 devices controller, written out plainly ----

interface Item { type: string; major: number; minor: number; access: Set<string> }

/** What the kernel would hold after `echo a > devices.deny` and then each rule; null when refused. */
function reference(rules: LinuxDeviceCgroup[]): { allowAll: boolean; items: Item[] } | null {
  let allowAll = false;
  let items: Item[] = [];
  for (const r of rules) {
    const type = r.type ?? 'a';
    const major = r.major === undefined || r.major < 0 ? -1 : r.major;
    const minor = r.minor === undefined || r.minor < 0 ? -1 : r.minor;
    const access = new Set(r.access ?? 'rwm');
    if (type === 'a') {
      allowAll = r.allow;
      items = [];
      continue;
    }
    const same = (i: Item, maj: number, min: number): boolean => i.type === type && i.major === maj && i.minor === min;
    if (r.allow !== allowAll) {
      // dev_exception_add
      const it = items.find((i) => same(i, major, minor));
      if (it) for (const a of access) it.access.add(a);
      else if (access.size > 0) items.push({ type, major, minor, access });
    } else {
      // what runc refuses: taking accesses away from part of a wider exception
      for (const [wmaj, wmin] of [[-1, minor], [major, -1], [-1, -1]]) {
        if (wmaj === major && wmin === minor) continue;
        const wide = items.find((i) => same(i, wmaj ?? -1, wmin ?? -1));
        if (wide && [...access].some((a) => wide.access.has(a))) return null;
      }
      // dev_exception_rm
      for (const i of items.filter((x) => same(x, major, minor))) for (const a of access) i.access.delete(a);
      items = items.filter((i) => i.access.size > 0);
    }
  }
  return { allowAll, items };
}

function referenceAllows(rules: LinuxDeviceCgroup[], q: DeviceRequest): boolean | null {
  const st = reference(rules);
  if (st === null) return null;
  const hits = st.items.filter((i) => i.type === q.type && (i.major === -1 || i.major === q.major) && (i.minor === -1 || i.minor === q.minor));
  const want = [...q.access];
  if (st.allowAll) return !hits.some((i) => want.some((a) => i.access.has(a))); // match_exception_partial
  return hits.some((i) => want.every((a) => i.access.has(a))); // match_exception
}

// ---- helpers ----

const deny = (type?: 'a' | 'c' | 'b', major?: number, minor?: number, access?: string): LinuxDeviceCgroup =>
  rule(false, type, major, minor, access);
const allow = (type?: 'a' | 'c' | 'b', major?: number, minor?: number, access?: string): LinuxDeviceCgroup =>
  rule(true, type, major, minor, access);
function rule(allowed: boolean, type?: 'a' | 'c' | 'b', major?: number, minor?: number, access?: string): LinuxDeviceCgroup {
  const r: LinuxDeviceCgroup = { allow: allowed };
  if (type !== undefined) r.type = type;
  if (major !== undefined) r.major = major;
  if (minor !== undefined) r.minor = minor;
  if (access !== undefined) r.access = access;
  return r;
}

/** "c 1:3 rw" */
function req(s: string): DeviceRequest {
  const m = /^([cb]) (\d+):(\d+) ([rwm]+)$/.exec(s);
  if (!m) throw new Error(`bad request ${s}`);
  return { type: m[1] as 'c' | 'b', major: Number(m[2]), minor: Number(m[3]), access: m[4] ?? '' };
}

const ACCESSES = ['r', 'w', 'm', 'rw', 'rm', 'wm', 'rwm'];

/** The program's verdict, checked against evalDeviceFilter and the reference. */
function verdict(rules: LinuxDeviceCgroup[], q: DeviceRequest): boolean {
  const got = runDeviceFilter(deviceFilterProgram(rules), q);
  assert.equal(evalDeviceFilter(rules, q), got, `evalDeviceFilter disagrees with the program on ${JSON.stringify(q)}`);
  assert.equal(referenceAllows(rules, q), got, `the reference disagrees with the program on ${JSON.stringify(q)}`);
  return got;
}

function expectTable(rules: LinuxDeviceCgroup[], table: Record<string, boolean>): void {
  for (const [q, want] of Object.entries(table)) assert.equal(verdict(rules, req(q)), want, `${q} with ${JSON.stringify(rules)}`);
}

// ---- tables ----

const DOCKER = [deny(undefined, undefined, undefined, 'rwm'), ...DEFAULT_DEVICE_RULES];

test('the default allowlist after a deny-all: standard nodes, mknod of anything, nothing else', () => {
  expectTable(DOCKER, {
    'c 1:3 r': true, 'c 1:3 w': true, 'c 1:3 rw': true, 'c 1:3 rwm': true, // null
    'c 1:5 rw': true, 'c 1:7 rw': true, 'c 1:8 r': true, 'c 1:9 rw': true, // zero full random urandom
    'c 5:0 rw': true, 'c 5:1 rw': true, 'c 5:2 rw': true, // tty console ptmx
    'c 136:0 rw': true, 'c 136:4095 rw': true, // pts
    'c 10:200 rw': true, // net/tun
    'c 1:1 r': false, 'c 1:1 w': false, 'c 1:1 m': true, // mem: mknod only
    'c 1:4 r': false, 'c 10:229 rw': false, 'c 4:0 rw': false, 'c 5:3 r': false, 'c 137:0 r': false,
    'b 8:0 r': false, 'b 8:0 w': false, 'b 8:0 m': true, 'b 8:0 rm': false, 'b 7:0 rw': false,
    'c 1:1 rm': false, // m alone is allowed, r is not: no single exception holds both
  });
});

test('no rule denies everything; a leading allow-all allows everything', () => {
  expectTable([], { 'c 1:3 r': false, 'b 8:0 m': false });
  expectTable([allow('a')], { 'c 1:3 rwm': true, 'b 8:0 rwm': true, 'c 4294967295:4294967295 r': true });
  expectTable([allow()], { 'c 1:1 rw': true });
});

test('an a rule resets everything before it and ignores its major, minor and access', () => {
  expectTable([allow('c', 1, 3, 'rwm'), deny('a', 1, 3, 'r')], { 'c 1:3 w': false, 'c 1:3 r': false });
  expectTable([deny('a'), allow('a', 1, 3, 'r')], { 'b 8:0 w': true, 'c 9:9 m': true });
  expectTable([deny(undefined, undefined, undefined, 'w'), allow('c', 1, 3, 'r')], { 'c 1:3 r': true, 'c 1:3 w': false });
});

test('allow rules for the same device merge; different ones do not combine', () => {
  expectTable([deny('a'), allow('c', 1, 3, 'r'), allow('c', 1, 3, 'w')], { 'c 1:3 rw': true, 'c 1:3 m': false });
  // c 1:* r and c 1:3 w: reading and writing at once needs one exception holding both.
  expectTable([deny('a'), allow('c', 1, undefined, 'r'), allow('c', 1, 3, 'w')], {
    'c 1:3 r': true, 'c 1:3 w': true, 'c 1:3 rw': false, 'c 1:4 r': true, 'c 1:4 w': false,
  });
});

test('a deny after an allow of the same device takes accesses away', () => {
  expectTable([deny('a'), allow('c', 1, 3, 'rwm'), deny('c', 1, 3, 'w')], {
    'c 1:3 r': true, 'c 1:3 m': true, 'c 1:3 w': false, 'c 1:3 rw': false,
  });
  expectTable([deny('a'), allow('c', 1, 3, 'rw'), deny('c', 1, 3, 'rw')], { 'c 1:3 r': false, 'c 1:3 w': false });
  // A later allow gives it back.
  expectTable([deny('a'), allow('c', 1, 3, 'rw'), deny('c', 1, 3, 'w'), allow('c', 1, 3, 'w')], { 'c 1:3 rw': true });
});

test('a wider deny leaves a narrower allow as it is (as the kernel does)', () => {
  expectTable([deny('a'), allow('c', 1, 3, 'rwm'), deny('c', 1, -1, 'rwm')], { 'c 1:3 rw': true, 'c 1:4 r': false });
});

test('punching a hole in a wider exception is refused', () => {
  for (const rules of [
    [deny('a'), allow('c', 1, undefined, 'rwm'), deny('c', 1, 3, 'w')],
    [deny('a'), allow('c', undefined, undefined, 'm'), deny('c', 1, 3, 'm')],
    [allow('a'), deny('b', 8, undefined, 'r'), allow('b', 8, 1, 'rw')],
    [allow('a'), deny('c', -1, 3, 'r'), allow('c', 1, 3, 'r')],
  ]) {
    assert.throws(() => deviceFilterProgram(rules), (e: unknown) => {
      assert.ok(e instanceof BerthError, String(e));
      assert.match(e.message, /^device rule 2 \(.*\): cannot (allow|deny) part of the devices that the earlier rule/);
      return true;
    });
    assert.equal(reference(rules), null);
  }
  // Not a hole: the wider exception does not hold the access taken away.
  expectTable([deny('a'), allow('c', 1, undefined, 'r'), allow('c', 1, 3, 'rw'), deny('c', 1, 3, 'w')], {
    'c 1:3 r': true, 'c 1:3 w': false,
  });
});

test('after allow-all, a deny matches any shared access (as the kernel, stricter than runc)', () => {
  expectTable([allow('a'), deny('c', 1, 3, 'w')], { 'c 1:3 r': true, 'c 1:3 w': false, 'c 1:3 rw': false, 'c 1:3 m': true });
  expectTable([allow('a'), deny('b', undefined, undefined, 'rwm'), allow('b', -1, -1, 'r')], { 'b 8:0 r': true, 'b 8:0 rw': false, 'c 8:0 rw': true });
  expectTable([allow('a'), deny('c', 1, 3, 'w'), allow('c', 1, 3, 'w')], { 'c 1:3 rw': true });
});

test('majors and minors with the high bit set compare as unsigned 32-bit numbers', () => {
  expectTable([deny('a'), allow('c', 4294967295, 2147483648, 'r')], {
    'c 4294967295:2147483648 r': true, 'c 4294967295:0 r': false, 'c 2147483647:2147483648 r': false,
  });
});

test('malformed rules are refused, naming the rule', () => {
  const bad: [LinuxDeviceCgroup, RegExp][] = [
    [allow('c', 1, 3, 'rx'), /device rule 1 \(allow c 1:3 rx\): access "rx" is not a combination of r, w and m/],
    [allow('c', 4294967296, 3, 'r'), /major 4294967296 is not a device number/],
    [allow('c', 1, 1.5, 'r'), /minor 1.5 is not a device number/],
    [{ allow: true, type: 'x' as 'c' }, /type "x" is not a, c or b/],
  ];
  for (const [r, re] of bad) {
    assert.throws(() => deviceFilterProgram([deny('a'), r]), (e: unknown) => e instanceof BerthError && re.test(e.message));
  }
});

test('an empty access allows nothing and takes nothing away', () => {
  expectTable([deny('a'), allow('c', 1, 3, '')], { 'c 1:3 r': false });
  expectTable([deny('a'), allow('c', 1, 3, 'r'), deny('c', 1, 3, '')], { 'c 1:3 r': true });
});

test('randomized rule lists: program, state evaluation and the reference agree', () => {
  let seed = 0x2545f491;
  const rnd = (n: number): number => {
    seed ^= seed << 13; seed >>>= 0;
    seed ^= seed >>> 17;
    seed ^= seed << 5; seed >>>= 0;
    return seed % n;
  };
  const pick = <T>(xs: readonly T[]): T => xs[rnd(xs.length)] as T;
  const majors = [undefined, -1, 1, 5];
  const minors = [undefined, -1, 3, 7];
  const requests: DeviceRequest[] = [];
  for (const type of ['c', 'b'] as const)
    for (const major of [1, 5, 6]) for (const minor of [3, 7, 8]) for (const access of ACCESSES) requests.push({ type, major, minor, access });
  let compiled = 0;
  let refused = 0;
  for (let n = 0; n < 600; n++) {
    const rules: LinuxDeviceCgroup[] = [];
    if (rnd(4) !== 0) rules.push(rnd(3) === 0 ? allow('a') : deny('a'));
    const len = 1 + rnd(7);
    for (let i = 0; i < len; i++) {
      const type = pick(['c', 'c', 'b', 'a'] as const);
      rules.push(rule(rnd(2) === 0, rnd(12) === 0 ? type : type === 'a' ? 'c' : type, pick(majors), pick(minors), pick([...ACCESSES, undefined])));
    }
    if (reference(rules) === null) {
      refused++;
      assert.throws(() => deviceFilterProgram(rules), BerthError, JSON.stringify(rules));
      continue;
    }
    compiled++;
    const program = deviceFilterProgram(rules);
    for (const q of requests) {
      const got = runDeviceFilter(program, q);
      assert.equal(got, referenceAllows(rules, q), `${JSON.stringify(q)} with ${JSON.stringify(rules)}`);
      assert.equal(got, evalDeviceFilter(rules, q), `${JSON.stringify(q)} with ${JSON.stringify(rules)}`);
    }
  }
  assert.ok(compiled > 300 && refused > 10, `compiled ${compiled}, refused ${refused}`);
});

test('the program: struct bpf_insn records, loading the context first, ending in exit', () => {
  const p = deviceFilterProgram([deny('a'), allow('c', 1, 3, 'r')]);
  assert.equal(p.length % 8, 0);
  // ldxw r2, [r1+0]: opcode 0x61, dst r2 in the low nibble, src r1 in the high one.
  assert.deepEqual([...p.subarray(0, 8)], [0x61, 0x12, 0, 0, 0, 0, 0, 0]);
  // ldxw r4, [r1+4]
  assert.deepEqual([...p.subarray(32, 40)], [0x61, 0x14, 4, 0, 0, 0, 0, 0]);
  assert.deepEqual([...p.subarray(p.length - 8)], [0x95, 0, 0, 0, 0, 0, 0, 0]);
  // One block per exception: deny-all plus the default list has 12.
  assert.equal(deviceCgroupState(DOCKER).exceptions.length, 12);
  assert.ok(deviceFilterProgram(DOCKER).length / 8 < 6 + 12 * 8 + 2);
});

test('the interpreter refuses what the verifier would', () => {
  const q = req('c 1:3 r');
  const exitOnly = Buffer.from([0x95, 0, 0, 0, 0, 0, 0, 0]);
  assert.throws(() => runDeviceFilter(exitOnly, q), /reads r0, which is not set/);
  const callInsn = Buffer.from([0x85, 0, 0, 0, 1, 0, 0, 0]);
  assert.throws(() => runDeviceFilter(callInsn, q), /opcode 0x85/);
  const back = Buffer.from([0xb4, 0, 0, 0, 1, 0, 0, 0, 0x05, 0, 0xfe, 0xff, 0, 0, 0, 0]);
  assert.throws(() => runDeviceFilter(back, q), /jumps backwards/);
  const twos = Buffer.from([0xb4, 0, 0, 0, 2, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]);
  assert.throws(() => runDeviceFilter(twos, q), /returns 2/);
  assert.throws(() => runDeviceFilter(Buffer.alloc(7), q), /whole number of instructions/);
});
