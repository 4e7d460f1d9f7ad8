// Write stalls on real loopback sockets: a pair whose backend stops reading
// while its client keeps sending is torn down after `writeStallTimeout`; the
// stall is evidence, not a verdict: an attached probe checks the backend at
// once (even with fall 1, only a failing check marks it down). A client that
// stops reading is torn down too, but says nothing about the backend.
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { test } from 'node:test';
import { HealthProbe, UpstreamPool, type Backend, type ConnectionClosedInfo } from '../src/index.js';
import { connect, frontend, HOST, listen, waitFor } from './helpers/net.js';

const STALL_MS = 500;
const CHUNK = Buffer.alloc(64 * 1024, 0x61);
/** A bound on what a test writes, far above any loopback buffering. */
const MAX_BYTES = 512 * 1024 * 1024;

/** Writes until backpressure, then again at each drain, until stopped or MAX_BYTES. */
function flood(socket: Socket): { written: () => number } {
  let written = 0;
  const pump = (): void => {
    while (written < MAX_BYTES && !socket.destroyed) {
      written += CHUNK.length;
      if (!socket.write(CHUNK)) return;
    }
  };
  socket.on('drain', pump);
  pump();
  return { written: () => written };
}

for (const answers of [true, false]) {
test(`a backend that stops reading: the pair is torn down (write-stalled) and the backend checked at once; ${answers ? 'its check passes: still up' : 'its check fails: down'}`, { timeout: 60_000 }, async (t) => {
  // b1 reads nothing at all: its sockets stay paused.
  const stuck = await listen(t, (socket) => socket.pause());
  const fine = await listen(t, (socket) => socket.resume());
  const pool = new UpstreamPool({
    backends: [{ host: HOST, port: stuck.port, id: 'stuck' }, { host: HOST, port: fine.port, id: 'fine' }],
    balancer: (candidates) => candidates.find((c) => c.backend.id === 'stuck') ?? candidates[0],
    writeStallTimeout: STALL_MS,
  });
  t.after(() => pool.destroy());
  // Active checks far away (and not started): only a check the stall triggers can run.
  const checked: string[] = [];
  const check = (backend: Backend): Promise<void> => {
    checked.push(backend.id);
    return answers ? Promise.resolve() : Promise.reject(new Error('readyz failed'));
  };
  const probe = new HealthProbe({ check, interval: 60_000, fall: 1, rise: 1, autoStart: false });
  t.after(() => probe.stop());
  probe.attach(pool);
  const stalled: Backend[] = [];
  pool.on('writeStalled', (backend) => stalled.push(backend));
  const reasons: string[] = [];
  pool.on('connectionClosed', (_member, info: ConnectionClosedInfo) => reasons.push(info.reason));
  const port = await frontend(t, pool);

  const client = await connect(t, port);
  await waitFor(() => pool.status('stuck')!.members === 1, { what: 'the client pinned to the stuck backend' });
  const [member] = [...pool.members('stuck')];
  const sending = flood(client);

  await waitFor(() => reasons.length === 1, { what: 'the stalled pair to be torn down' });
  assert.deepEqual(reasons, ['write-stalled']);
  assert.equal(member!.closedInfo?.reason, 'write-stalled');
  assert.deepEqual(stalled.map((b) => b.id), ['stuck'], 'writeStalled names the backend that stopped reading');
  assert.ok(sending.written() > CHUNK.length, 'the client had been sending');
  await waitFor(() => checked.length === 1, { what: 'the triggered check' });
  assert.deepEqual(checked, ['stuck'], 'the stall checked its backend, only it');
  assert.equal(probe.health('stuck')!.triggeredChecks, 1);
  await waitFor(() => probe.health('stuck')!.checking === false, { what: 'the check to settle' });
  const status = pool.status('stuck')!;
  if (answers) {
    assert.notEqual(status.health, 'down', 'fall 1, yet the stall alone did not mark it down');
  } else {
    assert.equal(status.health, 'down', 'fall 1: the failed check marks it down');
    assert.equal(status.cause.source, 'probe', 'the verdict comes from the check, not the stall');
  }
  const stats = pool.stats().backends.find((b) => b.id === 'stuck')!;
  assert.equal(stats.writeStalls, 1, 'the stall is still counted as evidence');
  assert.equal(pool.status('fine')!.health, 'up');
  await waitFor(() => client.destroyed, { what: 'the client to be closed' });
});
}

test('a client that stops reading is torn down (write-stalled) without counting against its backend', { timeout: 60_000 }, async (t) => {
  // The backend talks and talks.
  const talker = await listen(t, (socket) => void flood(socket));
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: talker.port, id: 'talker' }], writeStallTimeout: STALL_MS });
  t.after(() => pool.destroy());
  const probe = new HealthProbe({ interval: 60_000, fall: 1, rise: 1, autoStart: false });
  t.after(() => probe.stop());
  probe.attach(pool);
  let stalledEvents = 0;
  pool.on('writeStalled', () => stalledEvents++);
  const reasons: string[] = [];
  pool.on('connectionClosed', (_member, info: ConnectionClosedInfo) => reasons.push(info.reason));
  const port = await frontend(t, pool);

  const client = await connect(t, port);
  // Read a little, then never again.
  await new Promise<void>((resolve) => client.once('data', () => resolve()));
  client.pause();

  await waitFor(() => reasons.length === 1, { what: 'the pair to be torn down' });
  assert.deepEqual(reasons, ['write-stalled']);
  assert.equal(stalledEvents, 0, 'no passive signal against the backend');
  assert.equal(pool.status('talker')!.health, 'up', 'the backend stays up');
  assert.equal(pool.stats().backends[0]!.writeStalls, 1, 'the stall is still counted as a teardown of this backend');
  // And it keeps taking clients.
  const next = await connect(t, port);
  await new Promise<void>((resolve) => next.once('data', () => resolve()));
  next.destroy();
});

test('writeStallTimeout 0 turns detection off; bad values are refused', () => {
  assert.doesNotThrow(() => void new UpstreamPool({ writeStallTimeout: 0 }).destroy());
  for (const bad of [-1, 50, 1.5, '1000']) {
    assert.throws(() => new UpstreamPool({ writeStallTimeout: bad as number }), { code: 'INVALID_ARGUMENT' }, String(bad));
  }
});

test('a sweep that comes late (this process stalled) gives the stalled time back; a real stall is still found', async () => {
  const { kReportWriteStall, WriteStallDetector } = await import('../src/write-stall-detector.js');
  const upstream = { writableLength: 1000, bytesWritten: 1000 };
  const member = { id: 'm1', closed: false, client: { writableLength: 0, bytesWritten: 0 }, upstream };
  const stalls: boolean[] = [];
  const pool = {
    closed: false,
    members: () => [member],
    [kReportWriteStall]: (_m: unknown, towardBackend: boolean) => stalls.push(towardBackend),
  };
  let now = 0;
  // timeout 200: sweeps every 50 ms.
  const detector = new WriteStallDetector(pool as never, { timeout: 200, now: () => now });
  try {
    detector.sweep(); // t=0: marked
    now = 50;
    upstream.bytesWritten += 100; // progress
    detector.sweep();
    // The loop was blocked for 500 ms: no sweep, and no byte could move.
    now = 600;
    detector.sweep();
    assert.deepEqual(stalls, [], 'the stall of this process is not the backend’s');
    now = 650;
    detector.sweep();
    now = 700;
    detector.sweep();
    assert.deepEqual(stalls, []);
    // No progress for the whole timeout after that, with sweeps on time: a stall.
    for (now = 750; now <= 800; now += 50) detector.sweep();
    assert.deepEqual(stalls, [true], 'a real stall toward the backend is still found');
  } finally {
    detector.close();
  }
});
