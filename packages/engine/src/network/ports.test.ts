import test from 'node:test';
import assert from 'node:assert/strict';
import { allocatePorts, portRequests, portsView } from './ports.js';

test('bindings, ranges and -P become requests', () => {
  const r = portRequests({ '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '8080' }], '53/udp': [{ HostPort: '' }], '90-91/tcp': [{ HostPort: '9090-9091' }] },
    { '80/tcp': {}, '443/tcp': {} }, true);
  assert.deepEqual(r, [
    { proto: 'tcp', containerPort: 80, hostIp: '127.0.0.1', hostRange: [8080, 8080] },
    { proto: 'udp', containerPort: 53, hostIp: '', hostRange: [0, 0] },
    { proto: 'tcp', containerPort: 90, hostIp: '', hostRange: [9090, 9090] },
    { proto: 'tcp', containerPort: 91, hostIp: '', hostRange: [9091, 9091] },
    { proto: 'tcp', containerPort: 443, hostIp: '', hostRange: [0, 0] },
  ]);
  assert.throws(() => portRequests({ '80/sctp': [] }, undefined, false), /invalid proto/);
});

test('a port taken by another mapping is refused with Docker\'s words; ephemeral ports are real', async () => {
  await assert.rejects(allocatePorts([{ proto: 'tcp', containerPort: 80, hostIp: '', hostRange: [40123, 40123] }],
    [{ proto: 'tcp', containerPort: 80, hostIp: '127.0.0.1', hostPort: 40123 }]), /Bind for 0\.0\.0\.0:40123 failed: port is already allocated/);
  const [m] = await allocatePorts([{ proto: 'tcp', containerPort: 80, hostIp: '127.0.0.1', hostRange: [0, 0] }], []);
  assert.ok(m !== undefined && m.hostPort > 0);
  assert.deepEqual(portsView({ '80/tcp': {}, '81/tcp': {} }, [{ proto: 'tcp', containerPort: 80, hostIp: '', hostPort: 5000 }]),
    { '80/tcp': [{ HostIp: '0.0.0.0', HostPort: '5000' }], '81/tcp': null });
});
