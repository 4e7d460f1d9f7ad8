/**
 * Fault: clients that connect and never send a byte. Pinned, they are left
 * alone (a Kubernetes watch is legitimately silent for minutes) unless an
 * `idleTimeout` is set, which closes them with reason `idle-timeout`; they
 * are still torn down with their backend. Waiting for a backend, they hold
 * a queue slot only until the queue timeout.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { test } from 'node:test';
import { UpstreamPool } from '../../src/index.js';
import { ConnectionLedger } from '../helpers/faults.js';
import { connect, frontend, HOST, listen, waitFor } from '../helpers/net.js';

test('silent clients stay pinned without an idle timeout, and go with their backend', async (t) => {
  const a = await listen(t);
  const b = await listen(t);
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: a.port, id: 'a' }, { host: HOST, port: b.port, id: 'b' }] });
  t.after(() => pool.destroy());
  const ledger = new ConnectionLedger(pool);
  const port = await frontend(t, pool);
  const clients: Socket[] = [];
  for (let i = 0; i < 10; i++) clients.push(await connect(t, port));
  await waitFor(() => pool.stats().active === 10 && a.sockets.size + b.sockets.size === 10);
  // Some time passes with nothing sent either way: nothing is closed.
  await delay(300);
  assert.equal(pool.stats().active, 10);
  assert.ok([...a.sockets, ...b.sockets].every((s) => s.bytesRead === 0 && !s.destroyed));
  const onA = ledger.open('a').length;
  assert.equal(pool.markDown('a'), onA);
  assert.equal(pool.stats().active, 10 - onA);
  assert.ok(ledger.closed().every((e) => e.info?.reason === 'marked-down'));
  assert.deepEqual(ledger.problems(), []);
});

// A byte every 100 ms against a 1,500 ms idle timeout: a loaded machine would
// have to stall the loop for well over a second to starve the dripper.
const IDLE_TIMEOUT = 1500;
const DRIP_EVERY = 100;

test('with idleTimeout, silent clients are closed with reason idle-timeout; a client dripping bytes is kept', async (t) => {
  const { port: up, sockets } = await listen(t, (s) => s.on('data', () => undefined));
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: up, id: 'b1' }], connection: { idleTimeout: IDLE_TIMEOUT } });
  t.after(() => pool.destroy());
  const ledger = new ConnectionLedger(pool);
  const port = await frontend(t, pool);
  const silent: Socket[] = [];
  for (let i = 0; i < 5; i++) silent.push(await connect(t, port));
  const dripper = await connect(t, port);
  const drip = setInterval(() => dripper.write('.'), DRIP_EVERY);
  t.after(() => clearInterval(drip));
  await waitFor(() => pool.stats().active === 6);
  await waitFor(() => pool.stats().active === 1, { what: 'the silent clients to be closed' });
  // Each silent client is told: its stream ends.
  await Promise.all(
    silent.map(async (c) => {
      c.resume();
      if (!c.readableEnded) await once(c, 'end');
    }),
  );
  assert.equal(pool.stats().teardowns['idle-timeout'], 5);
  // The dripping client keeps going past two idle periods: an interval fires
  // at most once per period, so this many drips take more than two timeouts
  // however late the timers run, and an idle timer blind to the drips would
  // have closed it after one.
  const dripperConn = ledger.open()[0]!;
  const drips = (2 * IDLE_TIMEOUT) / DRIP_EVERY + 5;
  await waitFor(() => dripperConn.conn.bytesFromClient >= drips || dripperConn.conn.closed, { what: 'the dripper to keep sending' });
  assert.equal(dripperConn.conn.closed, false);
  assert.ok(dripperConn.conn.bytesFromClient >= drips);
  // The backend saw the silent ones go (FIN) and still holds the dripper's.
  await waitFor(() => [...sockets].filter((s) => s.readableEnded || s.destroyed).length === 5, { what: 'the backend to see 5 FINs' });
  clearInterval(drip);
  assert.deepEqual(ledger.problems(), []);
});

test('a silent client waiting for a backend holds its queue slot only until the queue timeout', async (t) => {
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: 9, id: 'x' }], initialState: 'probe', queue: { max: 3, timeout: 300 } });
  t.after(() => pool.destroy());
  const failures: string[] = [];
  pool.on('pinFailed', (err) => failures.push(`${err.code}:${(err as { reason?: string }).reason}`));
  const port = await frontend(t, pool);
  const clients: Socket[] = [];
  for (let i = 0; i < 3; i++) clients.push(await connect(t, port));
  await waitFor(() => pool.stats().waiting === 3);
  await waitFor(() => failures.length === 3, { what: 'queue timeouts' });
  assert.deepEqual(failures, Array(3).fill('NO_HEALTHY_BACKEND:queue-timeout'));
  assert.equal(pool.stats().waiting, 0);
  for (const c of clients) {
    c.resume();
    // The pool closed it: a half-open-capable client sees the FIN as 'end' (it never 'close's by itself).
    if (!c.readableEnded && !c.destroyed) await once(c, 'end');
  }
});
