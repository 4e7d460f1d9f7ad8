// The reference balancer's client cap: the default from the descriptor limit,
// the per-worker share, and refusals counted and logged at most every 10 s.
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { test } from 'node:test';
import { ClientCap, clientShare, defaultMaxClients, descriptorLimit, FALLBACK_DESCRIPTOR_LIMIT } from '../src/cli/client-cap.js';
import { HOST, listen, waitFor } from './helpers/net.js';

const limits = (soft: string): string =>
  `Limit                     Soft Limit           Hard Limit           Units\nMax open files            ${soft}                 1048576              files\n`;

test('the descriptor limit is the soft RLIMIT_NOFILE; the fallback when it cannot be read or is unlimited', () => {
  assert.equal(descriptorLimit(() => limits('20000')), 20000);
  assert.equal(descriptorLimit(() => limits('unlimited')), FALLBACK_DESCRIPTOR_LIMIT);
  assert.equal(
    descriptorLimit(() => {
      throw Object.assign(new Error('no /proc'), { code: 'ENOENT' });
    }),
    FALLBACK_DESCRIPTOR_LIMIT,
  );
  assert.ok(descriptorLimit() >= 1);
});

test('the default keeps max(64, 5 %) in reserve and counts two descriptors a client; a set cap is split over the workers', () => {
  assert.equal(defaultMaxClients(256), 96);
  assert.equal(defaultMaxClients(1024), 480);
  assert.equal(defaultMaxClients(20_000), 9500);
  assert.equal(defaultMaxClients(10), 1);
  assert.equal(clientShare(undefined, 4, 1024), 480, 'each worker has its own descriptors');
  assert.equal(clientShare(1000, 4, 1024), 250);
  assert.equal(clientShare(3, 4, 1024), 1);
});

test('clients past the cap are refused at accept, counted, and logged at most once per 10 s', async (t) => {
  const { server, port } = await listen(t);
  const lines: string[] = [];
  let now = 0;
  const cap = new ClientCap(server, 2, (line) => lines.push(line), () => now);
  const clients: net.Socket[] = [];
  t.after(() => {
    for (const c of clients) c.destroy();
  });
  const open = async (): Promise<net.Socket> => {
    const c = net.connect({ host: HOST, port });
    c.on('error', () => {});
    clients.push(c);
    await once(c, 'connect');
    return c;
  };
  await open();
  await open();
  const third = await open();
  await once(third, 'close');
  assert.equal(cap.refused, 1);
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /^client cap reached \(max clients 2\): refused 1 client \(1 since start\)$/);
  const fourth = await open();
  await once(fourth, 'close');
  assert.equal(cap.refused, 2);
  assert.equal(lines.length, 1, 'not logged again within 10 s');
  now = 10_000;
  const fifth = await open();
  await once(fifth, 'close');
  await waitFor(() => lines.length === 2, { what: 'the next log line' });
  assert.match(lines[1]!, /refused 2 clients \(3 since start\)$/);
});
