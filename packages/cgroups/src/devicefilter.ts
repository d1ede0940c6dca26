// The device allowlist (linux.resources.devices) compiled into an eBPF
// program of type BPF_PROG_TYPE_CGROUP_DEVICE, for cgroup v2 where the kernel
// has no devices.allow/devices.deny files. The executor loads and attaches the
// program (bpf(2)); this file only decides what it is.
//
// Semantics: those of the cgroup v1 devices controller, as runc emulates them
// on cgroup v2 (and as our v1 path gets them from the kernel, which it gives
// a deny-all first):
//
//   - The state is a default (allow or deny) plus a list of exceptions, each
//     a device type (c or b), a major and a minor (each possibly "*") and a
//     set of accesses (r read, w write, m mknod). It starts as deny-all with
//     no exceptions.
//   - The rules are applied in order. A rule of type `a` (or without type)
//     resets the state: the default becomes the rule's allow, the exceptions
//     are dropped; its major, minor and access are ignored (as the kernel
//     does). A rule whose allow differs from the default adds an exception
//     (the accesses are merged into an existing exception for exactly the
//     same type, major and minor). A rule whose allow equals the default
//     removes its accesses from the exception with exactly the same type,
//     major and minor, if any; an exception left without access disappears.
//   - Removing accesses that a wider exception of the same type holds
//     (`c 1:*` or `c *:*` when removing from `c 1:3`) cannot be expressed:
//     the kernel silently ignores it, runc refuses it, and so does this file
//     (compileDeviceRules throws), so that a config never looks stricter
//     than it is. A narrower exception is not touched by a wider removal
//     (denying `c 1:*` leaves an allowed `c 1:3` allowed), as in the kernel.
//   - Absent major or minor, or a negative one, is "*"; absent access is
//     "rwm"; access is any combination of r, w and m.
//   - A request (an open for reading and/or writing, or a mknod) is checked
//     against the final state. Default deny: allowed only when one exception
//     matches the device and holds every requested access. Default allow:
//     denied when any exception matches the device and holds any of the
//     requested accesses. (This last point follows the kernel; runc's own
//     program only denies when the exception holds all of them.)
//
// The program: r1 is the context, struct bpf_cgroup_dev_ctx { u32 access_type
// (low 16 bits BPF_DEVCG_DEV_BLOCK=1 / BPF_DEVCG_DEV_CHAR=2, high 16 bits
// BPF_DEVCG_ACC_MKNOD=1 | READ=2 | WRITE=4); u32 major; u32 minor }. It
// loads the type into r2, the access into r3, major into r4 and minor into
// r5, then tests one exception per block and returns the verdict of the
// first match (1 allow, 0 deny), or the default after the last block. Only
// 32-bit ALU and JMP32 instructions are used, so majors and minors compare
// as u32 whatever their high bit. runDeviceFilter() interprets exactly that
// subset, for tests.
import type { LinuxDeviceCgroup } from '@berth/spec';
import { invalid } from '@berth/base';
import { formatDeviceRule } from './devices.js';

/** Access bits as the kernel gives them to a device program. */
export const DEVCG_ACC = { m: 1, r: 2, w: 4 } as const;
/** Device types as the kernel gives them to a device program. */
export const DEVCG_DEV = { b: 1, c: 2 } as const;
const ALL_ACCESS = 7;
const WILDCARD = -1;
const U32_MAX = 0xffff_ffff;
/** The kernel's limit on the length of a program loaded by root. */
export const MAX_DEVICE_FILTER_INSNS = 1_000_000;

/** One exception of the state: a device (or range) and the accesses it holds. */
export interface DeviceException {
  type: 'c' | 'b';
  /** -1: any. */
  major: number;
  /** -1: any. */
  minor: number;
  /** DEVCG_ACC bits. */
  access: number;
}

/** What the rules amount to: a default and its exceptions. */
export interface DeviceCgroupState {
  defaultAllow: boolean;
  exceptions: DeviceException[];
}

/** An access to one device, as the kernel checks it. */
export interface DeviceRequest {
  type: 'c' | 'b';
  major: number;
  minor: number;
  /** One or more of r, w, m. */
  access: string;
}

function describe(rule: LinuxDeviceCgroup, i: number): string {
  return `device rule ${i} (${rule.allow ? 'allow' : 'deny'} ${formatDeviceRule(rule)})`;
}

function accessBits(access: string, what: string): number {
  let bits = 0;
  for (const ch of access) {
    if (ch !== 'r' && ch !== 'w' && ch !== 'm') {
      throw invalid(`${what}: access ${JSON.stringify(access)} is not a combination of r, w and m`);
    }
    bits |= DEVCG_ACC[ch];
  }
  return bits;
}

function number(n: number | undefined, field: string, what: string): number {
  if (n === undefined || (Number.isInteger(n) && n < 0)) return WILDCARD;
  if (!Number.isInteger(n) || n > U32_MAX) throw invalid(`${what}: ${field} ${n} is not a device number (0..${U32_MAX}, or negative for all)`);
  return n;
}

/**
 * Apply the rules, in order, the way the v1 devices controller does, starting
 * from deny-all. Throws an invalid-argument error for a malformed rule or for
 * a removal that punches a hole in a wider exception.
 */
export function deviceCgroupState(rules: readonly LinuxDeviceCgroup[]): DeviceCgroupState {
  let defaultAllow = false;
  let exceptions: DeviceException[] = [];
  const find = (t: 'c' | 'b', major: number, minor: number): DeviceException | undefined =>
    exceptions.find((e) => e.type === t && e.major === major && e.minor === minor);

  rules.forEach((rule, i) => {
    const what = describe(rule, i);
    if (typeof rule.allow !== 'boolean') throw invalid(`${what}: allow must be true or false`);
    const type = rule.type ?? 'a';
    if (type !== 'a' && type !== 'c' && type !== 'b') throw invalid(`${what}: type ${JSON.stringify(type)} is not a, c or b`);
    const access = accessBits(rule.access ?? 'rwm', what);
    const major = number(rule.major, 'major', what);
    const minor = number(rule.minor, 'minor', what);
    if (type === 'a') {
      defaultAllow = rule.allow;
      exceptions = [];
      return;
    }
    if (rule.allow !== defaultAllow) {
      if (access === 0) return;
      const ex = find(type, major, minor);
      if (ex !== undefined) ex.access |= access;
      else exceptions.push({ type, major, minor, access });
      return;
    }
    // A removal: refuse it when a wider exception holds some of the accesses.
    for (const [wmaj, wmin] of [[WILDCARD, minor], [major, WILDCARD], [WILDCARD, WILDCARD]] as const) {
      if (wmaj === major && wmin === minor) continue;
      const wide = find(type, wmaj, wmin);
      if (wide !== undefined && (wide.access & access) !== 0) {
        const rule2 = { allow: !rule.allow, type, major: wmaj, minor: wmin, access: accessString(wide.access) };
        throw invalid(`${what}: cannot ${rule.allow ? 'allow' : 'deny'} part of the devices that the earlier rule ` +
          `${formatDeviceRule(rule2)} ${rule.allow ? 'denies' : 'allows'} (the devices controller would ignore it)`);
      }
    }
    const ex = find(type, major, minor);
    if (ex === undefined) return;
    ex.access &= ~access;
    if (ex.access === 0) exceptions = exceptions.filter((e) => e !== ex);
  });
  return { defaultAllow, exceptions };
}

function accessString(bits: number): string {
  return `${bits & DEVCG_ACC.r ? 'r' : ''}${bits & DEVCG_ACC.w ? 'w' : ''}${bits & DEVCG_ACC.m ? 'm' : ''}`;
}

function requestBits(req: DeviceRequest): number {
  const bits = accessBits(req.access, 'device request');
  if (bits === 0) throw invalid('device request: empty access');
  return bits;
}

const matches = (e: DeviceException, req: DeviceRequest): boolean =>
  e.type === req.type && (e.major === WILDCARD || e.major === req.major) && (e.minor === WILDCARD || e.minor === req.minor);

/** Whether the rules allow an access, evaluated on the state directly (no program). */
export function evalDeviceFilter(rules: readonly LinuxDeviceCgroup[], req: DeviceRequest): boolean {
  const state = deviceCgroupState(rules);
  const want = requestBits(req);
  if (state.defaultAllow) return !state.exceptions.some((e) => matches(e, req) && (e.access & want) !== 0);
  return state.exceptions.some((e) => matches(e, req) && (want & ~e.access) === 0);
}

// ---------------------------------------------------------------- encoding

// Opcodes (class | op | source) of the instructions used.
const OP = {
  LDX_W: 0x61, // BPF_LDX | BPF_MEM | BPF_W: dst = *(u32 *)(src + off)
  MOV32_K: 0xb4, // BPF_ALU | BPF_MOV | BPF_K
  MOV32_X: 0xbc, // BPF_ALU | BPF_MOV | BPF_X
  AND32_K: 0x54, // BPF_ALU | BPF_AND | BPF_K
  RSH32_K: 0x74, // BPF_ALU | BPF_RSH | BPF_K
  JEQ32_K: 0x16, // BPF_JMP32 | BPF_JEQ | BPF_K
  JNE32_K: 0x56, // BPF_JMP32 | BPF_JNE | BPF_K
  JA: 0x05, // BPF_JMP | BPF_JA
  EXIT: 0x95, // BPF_JMP | BPF_EXIT
} as const;

interface Insn { code: number; dst: number; src: number; off: number; imm: number }

const insn = (code: number, dst: number, src: number, off: number, imm: number): Insn => ({ code, dst, src, off, imm });

function encode(insns: Insn[]): Buffer {
  const buf = Buffer.alloc(insns.length * 8);
  insns.forEach((x, i) => {
    buf.writeUInt8(x.code, i * 8);
    buf.writeUInt8(((x.src & 0xf) << 4) | (x.dst & 0xf), i * 8 + 1);
    buf.writeInt16LE(x.off, i * 8 + 2);
    buf.writeInt32LE(x.imm | 0, i * 8 + 4);
  });
  return buf;
}

/** Instructions testing one exception; the jumps with off = SKIP go past the block. */
function block(e: DeviceException, defaultAllow: boolean): Insn[] {
  const SKIP = 0x7fff;
  const out: Insn[] = [insn(OP.JNE32_K, 2, 0, SKIP, DEVCG_DEV[e.type])];
  if (e.major !== WILDCARD) out.push(insn(OP.JNE32_K, 4, 0, SKIP, e.major | 0));
  if (e.minor !== WILDCARD) out.push(insn(OP.JNE32_K, 5, 0, SKIP, e.minor | 0));
  if (defaultAllow) {
    // A deny exception: matches when it shares any requested access.
    if (e.access !== ALL_ACCESS) {
      out.push(insn(OP.MOV32_X, 1, 3, 0, 0), insn(OP.AND32_K, 1, 0, 0, e.access), insn(OP.JEQ32_K, 1, 0, SKIP, 0));
    }
  } else {
    // An allow exception: matches when it holds every requested access. Also
    // for rwm, so that an access bit unknown today is never allowed.
    out.push(insn(OP.MOV32_X, 1, 3, 0, 0), insn(OP.AND32_K, 1, 0, 0, ~e.access), insn(OP.JNE32_K, 1, 0, SKIP, 0));
  }
  out.push(insn(OP.MOV32_K, 0, 0, 0, defaultAllow ? 0 : 1), insn(OP.EXIT, 0, 0, 0, 0));
  out.forEach((x, i) => { if (x.off === SKIP) x.off = out.length - (i + 1); });
  return out;
}

/**
 * The device rules as a BPF_PROG_TYPE_CGROUP_DEVICE program: struct bpf_insn
 * records, 8 bytes each, little-endian. Throws like deviceCgroupState().
 */
export function deviceFilterProgram(rules: readonly LinuxDeviceCgroup[]): Buffer {
  const state = deviceCgroupState(rules);
  const insns: Insn[] = [
    insn(OP.LDX_W, 2, 1, 0, 0), // r2 = access_type
    insn(OP.MOV32_X, 3, 2, 0, 0), // r3 = r2
    insn(OP.RSH32_K, 3, 0, 0, 16), // r3 = access
    insn(OP.AND32_K, 2, 0, 0, 0xffff), // r2 = type
    insn(OP.LDX_W, 4, 1, 4, 0), // r4 = major
    insn(OP.LDX_W, 5, 1, 8, 0), // r5 = minor
  ];
  for (const e of state.exceptions) {
    if (e.access === 0) continue;
    insns.push(...block(e, state.defaultAllow));
  }
  insns.push(insn(OP.MOV32_K, 0, 0, 0, state.defaultAllow ? 1 : 0), insn(OP.EXIT, 0, 0, 0, 0));
  if (insns.length > MAX_DEVICE_FILTER_INSNS) {
    throw invalid(`device rules: ${state.exceptions.length} exceptions make a program of ${insns.length} instructions, more than ${MAX_DEVICE_FILTER_INSNS}`);
  }
  return encode(insns);
}

// ---------------------------------------------------------------- interpreter

/**
 * Run a device program on one request, interpreting the instructions that
 * deviceFilterProgram() emits (and refusing any other, or any jump or read
 * the kernel's verifier would refuse). Returns the verdict: true = allowed.
 */
export function runDeviceFilter(program: Buffer, req: DeviceRequest): boolean {
  if (program.length === 0 || program.length % 8 !== 0) throw invalid(`device program: ${program.length} bytes is not a whole number of instructions`);
  const n = program.length / 8;
  const ctx = [((requestBits(req) << 16) | DEVCG_DEV[req.type]) >>> 0, req.major >>> 0, req.minor >>> 0];
  const CTX = 'ctx';
  const regs: (number | typeof CTX | undefined)[] = new Array<number | typeof CTX | undefined>(11).fill(undefined);
  regs[1] = CTX;
  const scalar = (r: number, pc: number): number => {
    const v = regs[r];
    if (typeof v !== 'number') throw invalid(`device program: instruction ${pc} reads r${r}, which ${v === undefined ? 'is not set' : 'is not a number'}`);
    return v;
  };
  let pc = 0;
  for (let steps = 0; steps <= n; steps++) {
    if (pc < 0 || pc >= n) throw invalid(`device program: jumped to ${pc}, outside 0..${n - 1}`);
    const at = pc * 8;
    const code = program.readUInt8(at);
    const dst = program.readUInt8(at + 1) & 0xf;
    const src = program.readUInt8(at + 1) >> 4;
    const off = program.readInt16LE(at + 2);
    const imm = program.readInt32LE(at + 4);
    const jump = (taken: boolean): void => {
      if (off < 0) throw invalid(`device program: instruction ${pc} jumps backwards`);
      pc += 1 + (taken ? off : 0);
    };
    if (dst > 10 || src > 10) throw invalid(`device program: instruction ${pc} names a register beyond r10`);
    switch (code) {
      case OP.LDX_W: {
        if (regs[src] !== CTX || off < 0 || off % 4 !== 0 || off / 4 >= ctx.length) {
          throw invalid(`device program: instruction ${pc} loads from r${src}+${off}, not a context field`);
        }
        regs[dst] = ctx[off / 4];
        pc++;
        break;
      }
      case OP.MOV32_K: regs[dst] = imm >>> 0; pc++; break;
      case OP.MOV32_X: regs[dst] = scalar(src, pc); pc++; break;
      case OP.AND32_K: regs[dst] = (scalar(dst, pc) & imm) >>> 0; pc++; break;
      case OP.RSH32_K:
        if (imm < 0 || imm > 31) throw invalid(`device program: instruction ${pc} shifts by ${imm}`);
        regs[dst] = scalar(dst, pc) >>> imm;
        pc++;
        break;
      case OP.JEQ32_K: jump(scalar(dst, pc) === imm >>> 0); break;
      case OP.JNE32_K: jump(scalar(dst, pc) !== imm >>> 0); break;
      case OP.JA: jump(true); break;
      case OP.EXIT: {
        const r0 = scalar(0, pc);
        if (r0 !== 0 && r0 !== 1) throw invalid(`device program: returns ${r0}, not 0 or 1`);
        return r0 === 1;
      }
      default:
        throw invalid(`device program: instruction ${pc} has opcode 0x${code.toString(16)}, outside the subset this interpreter runs`);
    }
  }
  throw invalid('device program: ran more instructions than it has (a loop)');
}
