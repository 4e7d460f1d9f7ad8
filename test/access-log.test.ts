// The access log: one JSON line per closed connection, written off the data
// path; a destination that fails or does not keep up never stops the pool.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { AccessLog, MAX_BUFFERED } from '../src/cli/access-log.js';
import { UpstreamPool } from '../src/index.js';
import { tempDir } from './helpers/admin.js';
import { HOST, connect, echoServer, frontend, readLine, waitFor } from './helpers/net.js';

async function echoPool(t: TestContext): Promise<{ pool: UpstreamPool; port: number }> {
  const { port: upstream } = await echoServer(t);
  const pool = new UpstreamPool({ backends: [{ id: 'b1', host: HOST, port: upstream }] });
  t.after(() => pool.destroy());
  return { pool, port: await frontend(t, pool) };
}

/** One client: `hello` there and back, then closed by the client; resolves once the pool counted it closed. */
async function oneConnection(t: TestContext, pool: UpstreamPool, port: number): Promise<void> {
  const before = pool.stats().teardowns['client-closed'] ?? 0;
  const client = await connect(t, port);
  client.write('hello\n');
  assert.equal(await readLine(client), 'hello');
  client.end();
  await waitFor(() => (pool.stats().teardowns['client-closed'] ?? 0) > before, { what: 'the connection closed' });
}

test('one JSON line per closed connection, with client, backend, bytes each way, duration and reason', async (t) => {
  const { pool, port } = await echoPool(t);
  const file = join(tempDir(t), 'access.log');
  const log = new AccessLog(pool, file, { fields: { worker: 3 } });
  t.after(() => log.close());
  await oneConnection(t, pool, port);
  await oneConnection(t, pool, port);
  await log.close();
  const lines = readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(lines.length, 2);
  for (const line of lines) {
    assert.deepEqual(Object.keys(line), ['time', 'client', 'backend', 'address', 'bytesFromClient', 'bytesFromUpstream', 'durationMs', 'reason', 'worker']);
    assert.match(String(line['client']), /^127\.0\.0\.1:\d+$/);
    assert.equal(line['backend'], 'b1');
    assert.match(String(line['address']), /^127\.0\.0\.1:\d+$/);
    assert.deepEqual([line['bytesFromClient'], line['bytesFromUpstream'], line['reason'], line['worker']], [6, 6, 'client-closed', 3]);
    assert.equal(typeof line['durationMs'], 'number');
  }
  assert.equal(log.written, 2);
});

test('a file that cannot be written: reported once, the pool serves on', async (t) => {
  const { pool, port } = await echoPool(t);
  const errors: string[] = [];
  const log = new AccessLog(pool, join(tempDir(t), 'no-such-dir', 'access.log'), { onError: (err) => errors.push((err as NodeJS.ErrnoException).code ?? err.message) });
  t.after(() => log.close());
  await oneConnection(t, pool, port);
  await waitFor(() => errors.length > 0, { what: 'the error' });
  await oneConnection(t, pool, port);
  assert.deepEqual(errors, ['ENOENT']);
  assert.equal(pool.stats().total, 2);
  await log.close();
});

test('stdout that fails (EPIPE) or never drains: reported once or bounded, never thrown, never waited for', async (t) => {
  const { pool, port } = await echoPool(t);
  const errors: string[] = [];
  const broken = new Writable({
    write(_chunk, _encoding, callback) {
      callback(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
    },
  });
  const log = new AccessLog(pool, '-', { stdout: broken, onError: (err) => errors.push((err as NodeJS.ErrnoException).code ?? '') });
  t.after(() => log.close());
  await oneConnection(t, pool, port);
  await waitFor(() => errors.length > 0, { what: 'the EPIPE' });
  await oneConnection(t, pool, port);
  assert.deepEqual(errors, ['EPIPE']);
  await log.close();

  // A reader that never reads: the queue stops at MAX_BUFFERED; the rest is dropped and counted.
  const stuck = new Writable({ highWaterMark: 16, write() {} });
  const slow = new AccessLog(pool, '-', { stdout: stuck });
  t.after(() => slow.close());
  await oneConnection(t, pool, port);
  await waitFor(() => slow.written === 1, { what: 'the first line handed over' });
  // Enough closes to pass the bound: each line is ~200 bytes.
  const lines = Math.ceil(MAX_BUFFERED / 150) + 10;
  const member = { kind: 'connection', backend: pool.get('b1'), client: undefined } as never;
  for (let i = 0; i < lines; i++) pool.emit('connectionClosed', member, { reason: 'client-closed', kind: 'connection', error: undefined, bytesFromClient: 1, bytesFromUpstream: 1, durationMs: 1 });
  await new Promise((resolve) => setImmediate(resolve));
  assert.ok(slow.dropped > 0, 'lines beyond the bound are dropped');
  assert.ok(stuck.writableLength <= 16 + 4096, `nothing more handed to a stream that has not drained: ${stuck.writableLength}`);
  await slow.close();
});
