/**
 * The pure mapping from EndpointSlices to wanted backends: conditions
 * (nil ready/serving mean true), the port by name, the rewrite map, and one
 * entry per address with active winning over draining.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backendsFromSlices, rewriteAddress, type EndpointSlice } from '../src/index.js';

const slice = (endpoints: EndpointSlice['endpoints'], ports: EndpointSlice['ports'] = [{ name: 'https', port: 6443, protocol: 'TCP' }]): EndpointSlice => ({
  metadata: { name: 's' },
  addressType: 'IPv4',
  endpoints,
  ports,
});

test('conditions: ready -> active, serving only -> draining, neither -> left out; nil means true', () => {
  const out = backendsFromSlices([
    slice([
      { addresses: ['10.0.0.1'], conditions: { ready: true } },
      { addresses: ['10.0.0.2'], conditions: { ready: false, serving: true, terminating: true } },
      { addresses: ['10.0.0.3'], conditions: { ready: false, serving: false, terminating: true } },
      { addresses: ['10.0.0.4'] },
      { addresses: ['10.0.0.5'], conditions: { ready: null, serving: null, terminating: null } },
    ]),
  ]);
  assert.deepEqual(
    out.map((b) => [b.host, b.port, b.state]),
    [
      ['10.0.0.1', 6443, 'active'],
      ['10.0.0.2', 6443, 'draining'],
      ['10.0.0.4', 6443, 'active'],
      ['10.0.0.5', 6443, 'active'],
    ],
  );
  assert.equal(out[0]!.meta?.slice, 's');
});

test('the port by name, the only port otherwise; a slice without a usable port is skipped', () => {
  assert.equal(backendsFromSlices([slice([{ addresses: ['10.0.0.1'] }], [{ name: 'other', port: 1 }, { name: 'https', port: 443 }])])[0]!.port, 443);
  assert.equal(backendsFromSlices([slice([{ addresses: ['10.0.0.1'] }], [{ name: 'x', port: 7443 }])])[0]!.port, 7443);
  assert.deepEqual(backendsFromSlices([slice([{ addresses: ['10.0.0.1'] }], [{ name: 'a', port: 1 }, { name: 'b', port: 2 }])]), []);
  assert.deepEqual(backendsFromSlices([slice([{ addresses: ['10.0.0.1'] }], [])]), []);
  assert.deepEqual(backendsFromSlices([{ metadata: { name: 'empty' } }]), []);
});

test('rewrite map: HOST or HOST:PORT keys, HOST or HOST:PORT values; the advertised address is kept in meta', () => {
  const rewrite = { '192.168.1.11': '10.0.0.11', '192.168.1.12:6443': '10.0.0.12:443', 'fd00::1': '[fd00::9]:8443' };
  assert.deepEqual(rewriteAddress('192.168.1.11', 6443, rewrite), { host: '10.0.0.11', port: 6443 });
  assert.deepEqual(rewriteAddress('192.168.1.12', 6443, rewrite), { host: '10.0.0.12', port: 443 });
  assert.deepEqual(rewriteAddress('192.168.1.12', 7443, rewrite), { host: '192.168.1.12', port: 7443 });
  assert.deepEqual(rewriteAddress('fd00::1', 6443, rewrite), { host: 'fd00::9', port: 8443 });
  const [b] = backendsFromSlices([slice([{ addresses: ['192.168.1.11'] }])], { rewrite });
  assert.deepEqual([b!.host, b!.port, b!.meta?.advertised], ['10.0.0.11', 6443, '192.168.1.11:6443']);
});

test('an address in two slices appears once; active wins over draining', () => {
  const out = backendsFromSlices([
    slice([{ addresses: ['10.0.0.1'], conditions: { ready: false, serving: true } }]),
    slice([{ addresses: ['10.0.0.1'], conditions: { ready: true } }]),
  ]);
  assert.equal(out.length, 1);
  assert.equal(out[0]!.state, 'active');
});
