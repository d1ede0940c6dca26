import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { applyRules, changePorts, removeRules, renderPortChange, renderRules } from './firewall.js';

test('rules: isolation between bridges, internal cut off, masquerade, DNAT', () => {
  const text = renderRules('abc123', {
    networks: [{ bridge: 'b1', subnet: '10.1.0.0/24', internal: false }, { bridge: 'b2', subnet: '10.2.0.0/24', internal: true }],
    ports: [{ proto: 'tcp', hostIp: '', hostPort: 8080, containerIp: '10.1.0.2', containerPort: 80 }],
  });
  const lines = text.split('\n');
  assert.ok(lines.includes('-A BERTH-abc123-FWD -i b1 -o b2 -j DROP'));
  assert.ok(lines.includes('-A BERTH-abc123-FWD -i b2 -o b1 -j DROP'));
  assert.ok(lines.includes('-A BERTH-abc123-FWD -i b2 ! -o b2 -j DROP'));
  assert.ok(lines.includes('-A BERTH-abc123-POST -s 10.1.0.0/24 ! -o b1 -j MASQUERADE'));
  assert.ok(!lines.some((l) => l.startsWith('-A BERTH-abc123-POST -s 10.2.0.0/24')), 'no way out for the internal network');
  assert.ok(lines.includes('-A BERTH-abc123-DNAT -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.1.0.2:80'));
  assert.equal(lines.filter((l) => l === 'COMMIT').length, 2);
});

test('port changes: only that container\'s DNAT rules, added and deleted', () => {
  const ports = [
    { proto: 'tcp' as const, hostIp: '', hostPort: 8080, containerIp: '10.1.0.2', containerPort: 80 },
    { proto: 'udp' as const, hostIp: '127.0.0.1', hostPort: 5353, containerIp: '10.1.0.2', containerPort: 53 },
  ];
  assert.deepEqual(renderPortChange('abc123', 'add', ports).split('\n'), [
    '*nat',
    '-A BERTH-abc123-DNAT -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.1.0.2:80',
    '-A BERTH-abc123-DNAT -d 127.0.0.1/32 -p udp -m udp --dport 5353 -j DNAT --to-destination 10.1.0.2:53',
    'COMMIT', '',
  ]);
  const del = renderPortChange('abc123', 'delete', ports).split('\n');
  assert.equal(del[1], '-D BERTH-abc123-DNAT -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.1.0.2:80');
  assert.ok(!del.some((l) => l.startsWith(':')), 'no chain declared: the others stay as they are');
});

test('port changes in the kernel: the rest of the chains kept, a missing rule fails the whole change', { skip: process.getuid?.() !== 0 ? 'needs root' : false }, async () => {
  const tag = `t${randomBytes(3).toString('hex')}`;
  const net = { bridge: `bt-${tag}`, subnet: '10.251.77.0/24', internal: false };
  const a = { proto: 'tcp' as const, hostIp: '', hostPort: 18080, containerIp: '10.251.77.2', containerPort: 80 };
  const b = { proto: 'tcp' as const, hostIp: '127.0.0.1', hostPort: 18081, containerIp: '10.251.77.3', containerPort: 80 };
  const dnat = (): string[] => execFileSync('iptables-save', ['-t', 'nat'], { encoding: 'utf8' }).split('\n').filter((l) => l.startsWith(`-A BERTH-${tag}-DNAT `));
  try {
    await applyRules(tag, { networks: [net], ports: [a] });
    await changePorts(tag, 'add', [b]);
    assert.equal(dnat().length, 2);
    assert.ok(dnat().some((l) => l.includes('--dport 18081') && l.includes('10.251.77.3:80')));
    await changePorts(tag, 'delete', [a]);
    assert.deepEqual(dnat().map((l) => /--dport (\d+)/.exec(l)?.[1]), ['18081']);
    await assert.rejects(changePorts(tag, 'delete', [a, b]), /iptables-restore/);
    assert.equal(dnat().length, 1, 'a failed change changes nothing');
    assert.ok(execFileSync('iptables-save', ['-t', 'nat'], { encoding: 'utf8' }).includes(`-A BERTH-${tag}-POST -s 10.251.77.0/24 ! -o ${net.bridge} -j MASQUERADE`));
  } finally {
    await removeRules(tag);
  }
  assert.ok(!execFileSync('iptables-save', { encoding: 'utf8' }).includes(`BERTH-${tag}`));
});
