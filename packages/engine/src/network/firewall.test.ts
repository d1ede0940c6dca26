import test from 'node:test';
import assert from 'node:assert/strict';
import { renderRules } from './firewall.js';

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
