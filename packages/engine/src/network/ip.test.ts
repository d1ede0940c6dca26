import test from 'node:test';
import assert from 'node:assert/strict';
import { cidrString, ipToInt, macOf, nextFree, overlaps, parseCidr, pickSubnet } from './ip.js';

test('CIDRs parse, overlap and reject host bits when strict', () => {
  assert.equal(cidrString(parseCidr('10.1.2.3/16')), '10.1.0.0/16');
  assert.throws(() => parseCidr('10.1.2.3/16', true), /should be 10\.1\.0\.0\/16/);
  assert.throws(() => parseCidr('10.1.2.300/16'), /invalid IPv4 address/);
  assert.ok(overlaps(parseCidr('172.17.0.0/16'), parseCidr('172.17.5.0/24')));
  assert.ok(!overlaps(parseCidr('172.17.0.0/16'), parseCidr('172.18.0.0/16')));
});

test('the next free address skips network, broadcast and taken ones, within the range', () => {
  const s = parseCidr('10.0.0.0/30');
  assert.equal(nextFree(s, undefined, new Set([ipToInt('10.0.0.1')])), ipToInt('10.0.0.2'));
  assert.equal(nextFree(s, undefined, new Set([ipToInt('10.0.0.1'), ipToInt('10.0.0.2')])), undefined);
  assert.equal(nextFree(parseCidr('10.0.0.0/24'), parseCidr('10.0.0.128/25'), new Set()), ipToInt('10.0.0.128'));
});

test('a subnet is picked around routes (a docker0 on 172.17)', () => {
  assert.equal(cidrString(pickSubnet([parseCidr('172.17.0.0/16')]) ?? parseCidr('0.0.0.0/0')), '172.18.0.0/16');
  assert.equal(cidrString(pickSubnet([parseCidr('172.16.0.0/12')]) ?? parseCidr('0.0.0.0/0')), '192.168.0.0/20');
});

test('macOf: Docker\'s 02:42 and the address', () => {
  assert.equal(macOf(ipToInt('172.17.0.2')), '02:42:ac:11:00:02');
  assert.equal(macOf(ipToInt('10.255.1.254')), '02:42:0a:ff:01:fe');
});
