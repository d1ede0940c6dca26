// Test support (root): which device programs are attached to a cgroup2
// directory, read back with bpf(BPF_PROG_QUERY) by a small C program compiled
// on demand (Node has no bpf(2), and bpftool is not always installed).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';

const SOURCE = String.raw`
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int sys_bpf(int cmd, union bpf_attr *a) { return (int)syscall(SYS_bpf, cmd, a, sizeof *a); }

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  int cg = open(argv[1], O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  if (cg < 0) { perror(argv[1]); return 1; }
  uint32_t ids[64];
  union bpf_attr q;
  memset(&q, 0, sizeof q);
  q.query.target_fd = cg;
  q.query.attach_type = BPF_CGROUP_DEVICE;
  q.query.prog_ids = (uintptr_t)ids;
  q.query.prog_cnt = 64;
  if (sys_bpf(BPF_PROG_QUERY, &q) < 0) { perror("BPF_PROG_QUERY"); return 1; }
  for (uint32_t i = 0; i < q.query.prog_cnt && i < 64; i++) {
    union bpf_attr a;
    memset(&a, 0, sizeof a);
    a.prog_id = ids[i];
    int fd = sys_bpf(BPF_PROG_GET_FD_BY_ID, &a);
    if (fd < 0) { perror("BPF_PROG_GET_FD_BY_ID"); return 1; }
    struct bpf_prog_info info;
    memset(&info, 0, sizeof info);
    memset(&a, 0, sizeof a);
    a.info.bpf_fd = fd;
    a.info.info_len = sizeof info;
    a.info.info = (uintptr_t)&info;
    if (sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &a) < 0) { perror("BPF_OBJ_GET_INFO_BY_FD"); return 1; }
    printf("%u %u %.16s\n", info.id, info.type, info.name);
    close(fd);
  }
  return 0;
}
`;

/** BPF_PROG_TYPE_CGROUP_DEVICE */
export const PROG_TYPE_CGROUP_DEVICE = 15;

export interface AttachedProgram { id: number; type: number; name: string }

/**
 * Compiles the query program into a temp dir (removed by cleanup()) and
 * returns a function listing the device programs attached to a cgroup2 dir.
 */
export function bpfQuery(): { query: (cgroupDir: string) => AttachedProgram[]; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'berth-bpfquery-'));
  const cleanup = (): void => rmSync(dir, { recursive: true, force: true });
  try {
    writeFileSync(join(dir, 'q.c'), SOURCE);
    const cc = spawnSync('cc', ['-O1', '-o', join(dir, 'q'), join(dir, 'q.c')], { encoding: 'utf8' });
    if (cc.status !== 0) throw new Error(`compiling the BPF query helper: ${cc.error?.message ?? cc.stderr}`);
  } catch (e) {
    cleanup();
    throw e;
  }
  const query = (cgroupDir: string): AttachedProgram[] => {
    const r = spawnSync(join(dir, 'q'), [cgroupDir], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`BPF query on ${cgroupDir}: ${r.stderr}`);
    return r.stdout.split('\n').filter((l) => l !== '').map((l) => {
      const [id = '', type = '', name = ''] = l.split(' ');
      return { id: Number(id), type: Number(type), name };
    });
  };
  return { query, cleanup };
}

/** Whether a C compiler is there to build the helper. */
export function haveCompiler(): boolean {
  return spawnSync('cc', ['--version'], { stdio: 'ignore' }).status === 0;
}
