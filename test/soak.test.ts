/**
 * Churn soak: many short connections through the pool, each sending a
 * pseudo-random payload and a FIN to a backend that echoes it and then sends
 * the SHA-256 of what it received (a checksum at each end), while backends
 * are marked down and up throughout. Afterwards, with the pool idle and a
 * forced GC, heap and active handles must be back within a small bound of
 * where they were after warm-up, and no connection that was not torn down
 * may have lost or changed a byte.
 *
 * Bounded for CI by default; `SOAK=1` runs the 200,000-connection version
 * (`SOAK_CONNECTIONS=<n>` sets any size):
 *
 * ```sh
 * SOAK=1 node test/run.mjs test/soak.test.ts
 * ```
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import net, { type AddressInfo, type Socket } from 'node:net';
import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { UpstreamPool } from '../src/index.js';
import { figure, Prng } from './helpers/faults.js';
import { activeResources, HOST, listen, settle } from './helpers/net.js';

const big = process.env['SOAK'] === '1';
const TOTAL = Number(process.env['SOAK_CONNECTIONS'] ?? (big ? 200_000 : 10_000));
const WARMUP = 1_000;
const CONCURRENCY = 64;
const MAX_PAYLOAD = 8 * 1024;
// How often a backend is marked down (and, the next time, up again).
const FLAP_MS = 40;
// Heap may differ by this much after a forced GC (allocator and JIT noise,
// not growth per connection: 1 MiB over 200,000 connections is 5 bytes each).
const HEAP_BOUND = (big ? 4 : 2) * 1024 * 1024;

/** A forced, full GC without starting node with --expose-gc. */
function forcedGc(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

interface Tally {
  done: number;
  verified: number;
  tornDown: number;
  mismatches: number;
  bytesVerified: number;
}

/** A backend that echoes every byte and, at the client's FIN, sends the SHA-256 of what it received. */
function checksumHandler(socket: Socket): void {
  const hash = createHash('sha256');
  socket.on('data', (d: Buffer) => {
    hash.update(d);
    socket.write(d);
  });
  socket.once('end', () => socket.end(hash.digest()));
}

/** One connection: payload (in two halves) + FIN out; expects payload + sha256(payload) back, then FIN. */
function oneConnection(port: number, random: Prng, tally: Tally): Promise<void> {
  return new Promise((resolve) => {
    const payload = random.bytes(random.int(1, MAX_PAYLOAD));
    const expected = Buffer.concat([payload, createHash('sha256').update(payload).digest()]);
    const chunks: Buffer[] = [];
    let got = 0;
    let settled = false;
    const socket = net.connect({ host: HOST, port, allowHalfOpen: true });
    const finish = (outcome: 'verified' | 'torn' | 'mismatch'): void => {
      if (settled) return;
      settled = true;
      tally.done++;
      if (outcome === 'verified') {
        tally.verified++;
        tally.bytesVerified += payload.length * 2 + 32;
      } else if (outcome === 'torn') tally.tornDown++;
      else tally.mismatches++;
      socket.destroy();
      resolve();
    };
    // Two exchanges, like a request and its follow-up: the second half goes
    // out once the first has come back, so each connection spans a few loop turns.
    const half = payload.length >> 1;
    let secondSent = false;
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      got += d.length;
      if (!secondSent && got >= half) {
        secondSent = true;
        socket.end(payload.subarray(half));
      }
    });
    socket.once('end', () => {
      // A clean end means the whole answer: anything else is a lost or changed byte.
      const answer = Buffer.concat(chunks, got);
      finish(answer.equals(expected) ? 'verified' : 'mismatch');
    });
    // A reset or a close without a clean end: torn down (its backend was marked down).
    socket.on('error', () => finish('torn'));
    socket.once('close', () => finish('torn'));
    socket.once('connect', () => {
      if (half === 0) {
        secondSent = true;
        socket.end(payload);
      } else socket.write(payload.subarray(0, half));
    });
  });
}

/** Runs `count` connections, `CONCURRENCY` at a time, calling `tick` after each. */
async function churn(port: number, count: number, random: Prng, tally: Tally, tick: (done: number) => void): Promise<void> {
  let started = 0;
  const worker = async (): Promise<void> => {
    while (started < count) {
      started++;
      await oneConnection(port, random, tally);
      tick(tally.done);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
}

async function idle(pool: UpstreamPool, backendSockets: Set<Socket>[]): Promise<void> {
  // Bounded: the last connections close within a few loop turns of their clients.
  for (let i = 0; i < 2000 && (pool.stats().active > 0 || backendSockets.some((s) => s.size > 0)); i++) {
    await new Promise((r) => setTimeout(r, 5));
  }
  await settle(10);
}

test(`churn soak: ${TOTAL.toLocaleString('en')} short connections with backends flapping; heap and handles return, no byte lost`, { timeout: big ? 1_800_000 : 120_000 }, async (t) => {
  const gc = forcedGc();
  const servers = await Promise.all([0, 1, 2].map(() => listen(t, checksumHandler)));
  const pool = new UpstreamPool({ backends: servers.map((s, i) => ({ host: HOST, port: s.port, id: `b${i}` })), queue: { max: 4096, timeout: 30_000 } });
  t.after(() => pool.destroy());
  const front = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => pool.accept(s));
  await new Promise<void>((resolve) => front.listen(0, HOST, resolve));
  t.after(() => new Promise<void>((resolve) => front.close(() => resolve())));
  const port = (front.address() as AddressInfo).port;
  const random = new Prng(0x50a6);
  const backendSockets = servers.map((s) => s.sockets);

  // Warm up (JIT, buffer pools, TCP), then take the baseline.
  const warm: Tally = { done: 0, verified: 0, tornDown: 0, mismatches: 0, bytesVerified: 0 };
  await churn(port, WARMUP, random, warm, () => undefined);
  await idle(pool, backendSockets);
  gc();
  gc();
  const heapBefore = process.memoryUsage().heapUsed;
  const handlesBefore = activeResources();

  // The run: a timer marks one backend down and, on its next tick, up again,
  // so down/up transitions land on live traffic at arbitrary moments.
  const tally: Tally = { done: 0, verified: 0, tornDown: 0, mismatches: 0, bytesVerified: 0 };
  let flaps = 0;
  let downId: string | undefined;
  let tornByMarkDown = 0;
  const flapper = setInterval(() => {
    if (downId === undefined) {
      downId = `b${flaps % 3}`;
      tornByMarkDown += pool.markDown(downId, 'soak-flap');
      flaps++;
    } else {
      pool.markUp(downId);
      downId = undefined;
    }
  }, FLAP_MS);
  const started = Date.now();
  try {
    await churn(port, TOTAL, random, tally, () => undefined);
  } finally {
    clearInterval(flapper);
  }
  if (downId !== undefined) pool.markUp(downId);
  const elapsed = Date.now() - started;
  await idle(pool, backendSockets);

  gc();
  gc();
  const heapAfter = process.memoryUsage().heapUsed;
  const handlesAfter = activeResources();
  const stats = pool.stats();
  const mib = (n: number): string => (n / 1024 / 1024).toFixed(2);
  figure(
    t,
    `${TOTAL} connections churned in ${(elapsed / 1000).toFixed(1)} s (${CONCURRENCY} at a time), ${flaps} markDown/markUp cycles (every ${FLAP_MS} ms) tearing down ${tornByMarkDown}; ` +
      `${tally.verified} verified (${(tally.bytesVerified / 1024 / 1024).toFixed(1)} MiB checked at both ends), ${tally.tornDown} torn down, ${tally.mismatches} mismatches; ` +
      `heap after GC ${mib(heapBefore)} -> ${mib(heapAfter)} MiB; handles ${handlesBefore.length} -> ${handlesAfter.length}; teardowns ${JSON.stringify(stats.teardowns)}`,
  );

  assert.equal(tally.done, TOTAL);
  assert.equal(tally.mismatches, 0, 'no byte lost or changed on a connection that was not torn down');
  assert.equal(tally.verified + tally.tornDown, TOTAL);
  // Every torn-down client was torn down by a flap (reset), nothing else failed.
  assert.ok(tally.tornDown <= tornByMarkDown, `${tally.tornDown} torn down, ${tornByMarkDown} by markDown`);
  assert.ok(flaps >= 5, `${flaps} flaps`);
  assert.equal(stats.active, 0);
  assert.equal(stats.waiting, 0);
  assert.deepEqual(stats.pinFailures, {});
  assert.deepEqual(handlesAfter, handlesBefore, 'active handles are back to the baseline');
  assert.ok(heapAfter - heapBefore < HEAP_BOUND, `heap grew ${mib(heapAfter - heapBefore)} MiB (bound ${mib(HEAP_BOUND)} MiB)`);
});
