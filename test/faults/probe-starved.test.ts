/**
 * Fault: the probing process itself is starved. Every backend is healthy and
 * answers at once, but the process's event loop is blocked by a synchronous
 * busy section for 2.5 × the check timeout, several times, each time while a
 * check is in flight:
 *
 * - TCP: the loop blocks as the server accepts (the kernel has completed the
 *   client's connection by then, so its `connect` may be waiting to be read);
 * - HTTP: the loop blocks right after the server wrote its answer, so the
 *   whole response is already waiting in the client's socket;
 * - HTTPS: the loop blocks when the request arrives, before the answer, so
 *   the check still needs a few loop turns once the loop is back.
 *
 * Node runs due timers before it reads sockets, so a naive check timeout
 * fires first and blames a healthy backend for the process's own stall
 * (k3s #10240: its load balancer cut off its only server this way). The
 * probe must not: no failed check, no `unhealthy`, no `backendDown`.
 */
import assert from 'node:assert/strict';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createConnection, createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { test, type TestContext } from 'node:test';
import { loadCerts } from '../../examples/support/certs.js';
import { HealthProbe, UpstreamPool, type CheckResult, type HealthProbeOptions } from '../../src/index.js';
import { HOST, waitFor } from '../helpers/net.js';

const TIMEOUT = 200;
const INTERVAL = 400;
/** 2.5 × the check timeout. */
const BLOCK = 500;
/** Blocks per backend. */
const BLOCKS_EACH = 3;
/** Loop time left free between two blocks, so checks get to run at all. */
const GAP = 300;

/** Blocks the event loop, as a long synchronous computation (or a GC pause) would. */
function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // spin
  }
}

/** Decides when a server event blocks the loop: `BLOCKS_EACH` times per backend, never two blocks closer than `GAP`. */
class Starver {
  readonly blocks = new Map<string, number>();
  #lastEnd = 0;

  maybeBlock(name: string): void {
    const done = this.blocks.get(name) ?? 0;
    if (done >= BLOCKS_EACH || performance.now() - this.#lastEnd < GAP) return;
    this.blocks.set(name, done + 1);
    busy(BLOCK);
    this.#lastEnd = performance.now();
  }

  get finished(): boolean {
    return this.blocks.size === 3 && [...this.blocks.values()].every((n) => n >= BLOCKS_EACH);
  }
}

async function listen(t: TestContext, server: Server | HttpServer): Promise<number> {
  server.listen(0, HOST);
  await new Promise<void>((resolve) => server.once('listening', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        if ('closeAllConnections' in server) server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return (server.address() as AddressInfo).port;
}

test('a starved process blames no healthy backend: no failed check, no unhealthy, no backendDown', async (t) => {
  const certs = loadCerts();
  const starver = new Starver();

  const tcpSockets = new Set<Socket>();
  const tcp = createNetServer((socket) => {
    tcpSockets.add(socket);
    socket.on('error', () => undefined);
    socket.once('close', () => tcpSockets.delete(socket));
    starver.maybeBlock('tcp');
  });
  t.after(() => {
    for (const s of tcpSockets) s.destroy();
  });
  const http = createHttpServer((_req, res) => {
    res.end('ok');
    starver.maybeBlock('http');
  });
  const https = createHttpsServer({ cert: certs.serverCert, key: certs.serverKey }, (_req, res) => {
    starver.maybeBlock('https');
    res.end('ok');
  });
  const ports = { tcp: await listen(t, tcp), http: await listen(t, http), https: await listen(t, https) };

  const checks: Record<keyof typeof ports, HealthProbeOptions['check']> = {
    tcp: { type: 'tcp' },
    http: { type: 'http', path: '/readyz' },
    https: { type: 'https', path: '/readyz', ca: certs.ca },
  };
  const results: CheckResult[] = [];
  const verdicts: string[] = [];
  for (const name of ['tcp', 'http', 'https'] as const) {
    const pool = new UpstreamPool({ backends: [{ host: HOST, port: ports[name], id: name }] });
    t.after(() => pool.destroy());
    // fall 1: a single false failure is a false verdict.
    const probe = new HealthProbe({ check: checks[name], interval: INTERVAL, timeout: TIMEOUT, rise: 1, fall: 1 });
    t.after(() => probe.stop());
    probe.attach(pool);
    probe.on('checked', (r) => results.push(r));
    probe.on('unhealthy', (b, r) => verdicts.push(`unhealthy ${b.id} (${r.error?.code}, ${r.durationMs} ms)`));
    pool.on('backendDown', (b) => verdicts.push(`backendDown ${b.id}`));
  }

  await waitFor(() => starver.finished, { timeout: 60_000, what: `${BLOCKS_EACH} blocks of ${BLOCK} ms per backend` });
  // A few more checks of each after the last block.
  const seen = results.length;
  await waitFor(() => results.length >= seen + 6, { timeout: 20_000, what: 'checks after the last block' });

  const failed = results.filter((r) => !r.ok).map((r) => `${r.backend.id}: ${r.error?.code} after ${r.durationMs} ms`);
  assert.deepEqual(failed, [], `${failed.length} false failure(s) of ${results.length} checks`);
  assert.deepEqual(verdicts, []);
});

test('a starved process tears down no healthy pair for stalled writes, and a stall is never a verdict', async (t) => {
  // A backend that reads steadily but slowly (one read every 20 ms), so the
  // pair always has writes queued and always makes progress.
  const sinkSockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const sink = createNetServer((socket) => {
    sinkSockets.add(socket);
    socket.on('error', () => undefined);
    socket.pause();
    const timer = setInterval(() => {
      socket.resume();
      setImmediate(() => socket.pause());
    }, 20);
    timers.add(timer);
    socket.once('close', () => {
      clearInterval(timer);
      timers.delete(timer);
      sinkSockets.delete(socket);
    });
  });
  t.after(() => {
    for (const timer of timers) clearInterval(timer);
    for (const s of sinkSockets) s.destroy();
  });
  const port = await listen(t, sink);
  const pool = new UpstreamPool({ backends: [{ host: HOST, port, id: 'sink' }], writeStallTimeout: 200 });
  t.after(() => pool.destroy());
  // Blocks run in the same timer phase, just after one of the detector's
  // sweeps (its period is 200 / 4 ms; timers of one period fire in the order
  // they were made): the worst case, where no byte moved since that sweep.
  let blocksLeft = 0;
  let lastBlockEnd = 0;
  const blocker = setInterval(() => {
    if (blocksLeft === 0 || performance.now() - lastBlockEnd < GAP) return;
    blocksLeft--;
    busy(BLOCK);
    lastBlockEnd = performance.now();
  }, 50);
  t.after(() => clearInterval(blocker));
  const probe = new HealthProbe({ check: { type: 'tcp' }, interval: INTERVAL, timeout: TIMEOUT, rise: 1, fall: 1 });
  t.after(() => probe.stop());
  probe.attach(pool);
  const verdicts: string[] = [];
  pool.on('backendDown', (b) => verdicts.push(`backendDown ${b.id}`));
  const reasons: string[] = [];
  pool.on('connectionClosed', (_m, info) => reasons.push(info.reason));
  const front = createNetServer({ pauseOnConnect: true }, (socket) => pool.accept(socket));
  const frontPort = await listen(t, front);

  const client = createConnection({ host: HOST, port: frontPort });
  client.on('error', () => undefined);
  t.after(() => client.destroy());
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  let sent = 0;
  const pump = (): void => {
    // Bounded: 256 MiB at most.
    while (!client.destroyed && sent < 256 * 1024 * 1024) {
      sent += chunk.length;
      if (!client.write(chunk)) return;
    }
  };
  client.on('drain', pump);
  client.once('connect', pump);
  await waitFor(() => pool.stats().active === 1, { what: 'the pair' });
  const [pair] = [...pool.members('sink')] as unknown as { upstream: Socket }[];
  await waitFor(() => pair!.upstream.writableLength > 0, { what: 'writes queued toward the backend' });

  // The loop blocked 2.5 x the write-stall timeout, three times, while the pair streams.
  blocksLeft = BLOCKS_EACH;
  await waitFor(() => blocksLeft === 0, { what: 'the blocks' });
  await new Promise((r) => setTimeout(r, GAP));
  assert.deepEqual(reasons, [], 'the pair streamed on: no teardown');
  assert.deepEqual(verdicts, []);
  assert.ok(sent > 0);
});
