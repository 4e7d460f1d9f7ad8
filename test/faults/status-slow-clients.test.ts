/**
 * Fault: slow and never-finishing clients on the balancer's status listener
 * (the admin API's door). A client that trickles its headers byte by byte,
 * one that stops half-way through its headers, one that never finishes its
 * body and one that never sends a byte are each closed by the listener's
 * deadline (10 s for headers and the whole request, enforced every second),
 * with a `408 {error: REQUEST_TIMEOUT}`, while a well-behaved client keeps
 * being served; idle connections beyond the cap (64) are closed at once, the
 * listener never holds more than the cap, and once the deadline has closed
 * the idle ones it serves again.
 */
import assert from 'node:assert/strict';
import { connect as netConnect, type Socket } from 'node:net';
import { test } from 'node:test';
import { MAX_CONNECTIONS } from '../../src/cli/status-server.js';
import { api, startAdminBalancer } from '../helpers/admin.js';
import { HOST, namedServer, waitFor } from '../helpers/net.js';

/** The listener's header and request deadline (docs/admin-api.md), and a generous bound for closing by it on a loaded machine. */
const DEADLINE_MS = 10_000;
const CLOSED_BY_MS = DEADLINE_MS + 8_000;

interface Watched {
  readonly socket: Socket;
  readonly openedAt: number;
  closedAt: number | undefined;
  received: string;
}

function open(port: number): Watched {
  const socket = netConnect({ host: HOST, port });
  const w: Watched = { socket, openedAt: Date.now(), closedAt: undefined, received: '' };
  socket.on('error', () => {});
  socket.on('data', (d: Buffer) => (w.received += d.toString('latin1')));
  socket.on('close', () => (w.closedAt = Date.now()));
  return w;
}

/** What a connection closed by the deadline got: nothing, or the JSON 408. */
function assertTimedOut(w: Watched, what: string): void {
  assert.ok(w.closedAt !== undefined, `${what}: still open`);
  const held = w.closedAt - w.openedAt;
  assert.ok(held <= CLOSED_BY_MS, `${what}: held ${held} ms, the deadline is ${DEADLINE_MS} ms`);
  if (w.received !== '') {
    assert.match(w.received, /^HTTP\/1\.1 408 /, what);
    assert.match(w.received, /\r\n\r\n\{\s*"error": "REQUEST_TIMEOUT",\s*"message": "[^"]+"\s*\}\n$/, what);
  }
}

test('slow clients: trickled headers, half headers, an unfinished body and silence are closed by the 10 s deadline; a good client is served throughout', { timeout: 120_000 }, async (t) => {
  const a = await namedServer(t, 'a');
  const { status } = await startAdminBalancer(t, [`a=${HOST}:${a.port}`]);

  // One byte every 250 ms: the 300-byte request would take 75 s.
  const request = `GET /api/backends HTTP/1.1\r\nHost: 127.0.0.1\r\n${'X-Pad: aaaaaaaaaaaaaaaa\r\n'.repeat(10)}\r\n`;
  const drip = open(status);
  let sent = 0;
  const dripTimer = setInterval(() => {
    if (drip.closedAt === undefined && sent < request.length) drip.socket.write(request[sent++]!);
  }, 250);
  t.after(() => clearInterval(dripTimer));
  const half = open(status);
  half.socket.write('POST /api/reload HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bea');
  const body = open(status);
  body.socket.write('POST /api/backends HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"name": "slow');
  const silent = open(status);
  const slow = [drip, half, body, silent];
  t.after(() => {
    for (const w of slow) w.socket.destroy();
  });

  // A well-behaved client, every 200 ms, the whole time.
  let served = 0;
  let failed = 0;
  const started = Date.now();
  while (slow.some((w) => w.closedAt === undefined) && Date.now() - started < CLOSED_BY_MS + 5_000) {
    const reply = await api(status, 'GET', '/api/backends').catch(() => undefined);
    if (reply?.status === 200) served++;
    else failed++;
    await new Promise((r) => setTimeout(r, 200));
  }
  for (const [w, what] of [[drip, 'byte-by-byte headers'], [half, 'half headers'], [body, 'unfinished body'], [silent, 'silent']] as const) assertTimedOut(w, what);
  assert.ok(sent < request.length, 'the trickling client was closed before it finished');
  assert.equal(failed, 0, 'the good client was never refused');
  assert.ok(served >= 20, `served ${served} requests meanwhile`);
  t.diagnostic(`closed after ${slow.map((w) => w.closedAt! - w.openedAt).join(', ')} ms (trickle, half, body, silent); ${served} good requests served meanwhile`);
});

test(`idle connections beyond the cap: never more than ${MAX_CONNECTIONS} held, the excess (the oldest, evicted by newcomers) closed at once, the rest by the deadline, then served again`, { timeout: 120_000 }, async (t) => {
  const a = await namedServer(t, 'a');
  const { status } = await startAdminBalancer(t, [`a=${HOST}:${a.port}`]);
  const N = 3 * MAX_CONNECTIONS;
  const idle = Array.from({ length: N }, () => open(status));
  t.after(() => {
    for (const w of idle) w.socket.destroy();
  });
  await Promise.all(idle.map((w) => new Promise((r) => (w.socket.connecting ? w.socket.once('connect', r).once('close', r) : r(undefined)))));
  // The excess is accepted, and each newcomer over the cap evicts the least recently active one, without a byte.
  await waitFor(() => idle.filter((w) => w.closedAt === undefined).length <= MAX_CONNECTIONS, { what: 'the excess closed' });
  let peak = 0;
  const excess = idle.filter((w) => w.closedAt !== undefined);
  assert.ok(excess.length >= N - MAX_CONNECTIONS, `${excess.length} closed at once`);
  for (const w of excess) assert.equal(w.received, '', 'the excess is closed unanswered');
  // Until the deadline: never more than the cap open.
  const sampler = setInterval(() => (peak = Math.max(peak, idle.filter((w) => w.closedAt === undefined).length)), 50);
  t.after(() => clearInterval(sampler));
  await waitFor(() => idle.every((w) => w.closedAt !== undefined), { timeout: CLOSED_BY_MS + 5_000, what: 'every idle connection closed by the deadline' });
  clearInterval(sampler);
  assert.ok(peak <= MAX_CONNECTIONS, `peak ${peak}`);
  for (const w of idle) if (!excess.includes(w)) assertTimedOut(w, 'idle');
  const reply = await api(status, 'GET', '/api/backends');
  assert.equal(reply.status, 200, 'served again');
});
