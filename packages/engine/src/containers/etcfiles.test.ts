import test from 'node:test';
import assert from 'node:assert/strict';
import { buildHostnameFile, buildHostsFile, buildResolvConf, parseResolvConf } from './etcfiles.js';

test('buildHostsFile', () => {
  assert.equal(buildHostsFile({ hostname: 'abc', addresses: ['172.17.0.2'], extraHosts: ['db:10.0.0.5', 'v6:[fe80::1]', 'gw=host-gateway'], hostGateway: ['172.17.0.1'] }), [
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    'fe00::\tip6-localnet',
    'ff00::\tip6-mcastprefix',
    'ff02::1\tip6-allnodes',
    'ff02::2\tip6-allrouters',
    '10.0.0.5\tdb',
    'fe80::1\tv6',
    '172.17.0.1\tgw',
    '172.17.0.2\tabc',
    '',
  ].join('\n'));
  assert.equal(buildHostsFile({ hostname: 'h', domainname: 'example.com', addresses: ['10.1.1.1', 'fd00::2'], ipv6: false }),
    '127.0.0.1\tlocalhost\n10.1.1.1\th.example.com h\n');
  assert.equal(buildHostsFile({ hostname: 'h', ipv6: false }), '127.0.0.1\tlocalhost\n');
  assert.throws(() => buildHostsFile({ hostname: 'h', extraHosts: ['gw:host-gateway'] }), { message: 'unable to derive the IP value for host-gateway' });
  assert.throws(() => buildHostsFile({ hostname: 'h', extraHosts: ['gw:nope'] }), { message: 'invalid IP address in add-host: "nope"' });
});

test('buildResolvConf', () => {
  const host = '# comment\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\nsearch corp.example\noptions edns0 trust-ad\nsortlist 10.0.0.0\n';
  const out = (s: string): string[] => s.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
  const cases: Array<[string, string, Parameters<typeof buildResolvConf>[1], string[]]> = [
    ['local nameservers dropped', host, { hostNetwork: false }, ['nameserver 10.0.0.2', 'search corp.example', 'options edns0 trust-ad']],
    ['host network keeps them', host, { hostNetwork: true }, ['nameserver 127.0.0.53', 'nameserver 10.0.0.2', 'nameserver ::1', 'search corp.example', 'options edns0 trust-ad']],
    ['only local ones: Docker defaults', 'nameserver 127.0.0.53\n', { hostNetwork: false }, ['nameserver 8.8.8.8', 'nameserver 8.8.4.4']],
    ['defaults with IPv6', '', { hostNetwork: false, ipv6: true }, ['nameserver 8.8.8.8', 'nameserver 8.8.4.4', 'nameserver 2001:4860:4860::8888', 'nameserver 2001:4860:4860::8844']],
    ['overrides', host, { hostNetwork: false, dns: ['1.1.1.1'], dnsSearch: ['a.example', 'b.example'], dnsOptions: ['ndots:2'] }, ['nameserver 1.1.1.1', 'search a.example b.example', 'options ndots:2']],
    ['search "." clears', host, { hostNetwork: false, dnsSearch: ['.'] }, ['nameserver 10.0.0.2', 'options edns0 trust-ad']],
  ];
  for (const [name, text, opts, want] of cases) assert.deepEqual(out(buildResolvConf(text, opts)), want, name);
  assert.deepEqual(parseResolvConf('domain x.example\nnameserver bogus\n'), { nameservers: [], search: ['x.example'], options: [], other: [] });
});

test('buildHostnameFile', () => {
  assert.equal(buildHostnameFile('abc'), 'abc\n');
});
