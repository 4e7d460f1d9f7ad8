/**
 * Fault: hostile clients stall their own writes. Every backend behaves like
 * Go's net/http: while a long-running request's handler runs (a watch, `logs
 * -f`, `exec`), it stops reading that connection. Four clients pipeline bytes
 * behind such a request, so the pool's writes toward the backend stop
 * draining and its write-stall detector tears those four connections down
 * (`write-stalled`), again and again as the clients reconnect.
 *
 * A write stall is evidence, not a verdict: it may cut the stalled
 * connection and trigger a check, never take the backend down by itself.
 * Before this rule, two stalls in one sweep reached `fall 2` and each round
 * reset every healthy stream of both backends. The 100 healthy streams must
 * see 0 cut and the pool 0 `backendDown`.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import net, { type Socket } from 'node:net';
import { test } from 'node:test';
import { HealthProbe, UpstreamPool } from '../../src/index.js';
import { cliDist, startCli } from '../helpers/cli.js';
import { figure } from '../helpers/faults.js';
import { frontend, HOST, listen, waitFor } from '../helpers/net.js';

const HEALTHY = 100;
const HOSTILE = 4;
/** Attack rounds per hostile client (each one reconnects when torn down). */
const ROUNDS = 3;
const WRITE_STALL_TIMEOUT = 400;
const TICK = 100;

/**
 * A backend that answers like Go's net/http for our purpose: `WATCH` streams
 * a tick every {@link TICK} ms; `LONG` starts a long handler, during which
 * the connection is not read at all (bytes pipelined behind it pile up).
 */
async function goLikeBackend(t: Parameters<typeof listen>[0]): Promise<number> {
  const timers = new Set<NodeJS.Timeout>();
  t.after(() => {
    for (const timer of timers) clearInterval(timer);
  });
  const { port } = await listen(t, (socket) => {
    let buffered = '';
    const onData = (chunk: Buffer): void => {
      buffered += chunk.toString('latin1');
      if (buffered.startsWith('WATCH\n')) {
        socket.off('data', onData);
        const timer = setInterval(() => socket.write('tick\n'), TICK);
        timers.add(timer);
        socket.once('close', () => {
          clearInterval(timer);
          timers.delete(timer);
        });
      } else if (buffered.startsWith('LONG\n')) {
        // The handler runs; nobody reads this connection until it returns.
        socket.off('data', onData);
        socket.pause();
      } else if (buffered.length > 16) socket.destroy();
    };
    socket.on('data', onData);
  });
  return port;
}

/** A hostile client: a long request, then pipelined bytes as fast as the socket takes them, until it is closed. */
function hostile(port: number, sockets: Set<Socket>): Promise<void> {
  return new Promise((resolve) => {
    const c = net.connect({ host: HOST, port });
    sockets.add(c);
    const chunk = Buffer.alloc(64 * 1024, 'GET /api/v1/pods HTTP/1.1\r\n\r\n');
    let sent = 0;
    const pump = (): void => {
      // Bounded: 64 MiB at most, far more than the kernel buffers hold.
      while (!c.destroyed && sent < 64 * 1024 * 1024) {
        sent += chunk.length;
        if (!c.write(chunk)) return;
      }
    };
    c.on('error', () => {});
    c.on('drain', pump);
    c.once('connect', () => {
      c.write('LONG\n');
      pump();
    });
    c.once('close', () => {
      sockets.delete(c);
      resolve();
    });
  });
}

test('hostile clients stalling their writes behind a long request: 0 healthy streams cut, 0 down verdicts', async (t) => {
  const backends = [await goLikeBackend(t), await goLikeBackend(t)];
  const pool = new UpstreamPool({
    backends: backends.map((port, i) => ({ host: HOST, port, id: `b${i + 1}` })),
    initialState: 'probe',
    writeStallTimeout: WRITE_STALL_TIMEOUT,
    slowStart: 0,
  });
  const probe = new HealthProbe({ check: { type: 'tcp' }, interval: 300, timeout: 200, rise: 2, fall: 2 });
  t.after(async () => {
    await probe.stop();
    await pool.destroy();
  });
  let downs = 0;
  pool.on('backendDown', () => downs++);
  let triggered = 0;
  // `checkTriggered` is the probe's answer to a stall (absent before the rule; then this stays 0).
  (probe as unknown as { on(e: string, fn: () => void): void }).on('checkTriggered', () => triggered++);
  probe.attach(pool);
  await probe.checkNow();
  const port = await frontend(t, pool);

  // 100 healthy streams, spread over both backends.
  const healthy: Socket[] = [];
  let cut = 0;
  let ticks = 0;
  t.after(() => {
    for (const s of healthy) s.destroy();
  });
  for (let i = 0; i < HEALTHY; i++) {
    const c = net.connect({ host: HOST, port });
    c.on('error', () => {});
    c.on('data', () => ticks++);
    c.once('close', () => cut++);
    c.write('WATCH\n');
    healthy.push(c);
  }
  await waitFor(() => pool.stats().active === HEALTHY, { what: 'the healthy streams to be placed' });

  // The attack: each hostile client comes back as soon as it is torn down.
  const attackStart = Date.now();
  const hostileSockets = new Set<Socket>();
  t.after(() => {
    for (const s of hostileSockets) s.destroy();
  });
  await Promise.all(
    Array.from({ length: HOSTILE }, async () => {
      for (let round = 0; round < ROUNDS; round++) await hostile(port, hostileSockets);
    }),
  );
  const attackMs = Date.now() - attackStart;
  // The last verdict a stall could have caused comes within a check round.
  const ticksAfterAttack = ticks;
  await new Promise((r) => setTimeout(r, 700));

  const stats = pool.stats();
  const stalled = stats.teardowns['write-stalled'] ?? 0;
  figure(t, `hostile: ${HOSTILE}x${ROUNDS} stalled connections torn down ${stalled}; healthy streams cut ${cut}/${HEALTHY}; down verdicts ${downs}; checks triggered ${triggered}`);
  assert.equal(downs, 0, 'no backend was marked down');
  assert.equal(cut, 0, 'no healthy stream was cut');
  assert.equal(stats.active, HEALTHY);
  assert.equal(stalled, HOSTILE * ROUNDS, 'every hostile connection was torn down for its stalled writes');
  assert.ok(triggered >= 1, 'a stall triggered a check of its backend');
  // No check storm: at most one triggered check per backend per interval (300 ms).
  for (const id of ['b1', 'b2']) {
    const n = (probe.health(id) as { triggeredChecks?: number } | undefined)?.triggeredChecks ?? 0;
    assert.ok(n <= Math.ceil(attackMs / 300) + 1, `${id}: ${n} triggered checks in ${attackMs} ms`);
  }
  assert.ok(ticks > ticksAfterAttack, 'the healthy streams still flow');
});

test(
  'the same attack on the built balancer with --workers 2: 0 healthy streams cut, 0 down verdicts',
  { skip: !existsSync(cliDist) ? 'needs the build (npm run build)' : false, timeout: 120_000 },
  async (t) => {
    const backends = [await goLikeBackend(t), await goLikeBackend(t)];
    const cli = await startCli(
      t,
      [
        '--listen', `${HOST}:0`,
        '--backend', `b1=${HOST}:${backends[0]}`, '--backend', `b2=${HOST}:${backends[1]}`,
        '--check', 'tcp', '--interval', '300', '--timeout', '200', '--fall', '2',
        '--write-stall-timeout', String(WRITE_STALL_TIMEOUT), '--workers', '2',
      ],
      cliDist,
    );
    const healthy: Socket[] = [];
    let cut = 0;
    t.after(() => {
      for (const s of healthy) s.destroy();
    });
    for (let i = 0; i < HEALTHY; i++) {
      const c = net.connect({ host: HOST, port: cli.listen });
      c.on('error', () => {});
      c.once('close', () => cut++);
      c.write('WATCH\n');
      healthy.push(c);
    }
    const hostileSockets = new Set<Socket>();
    t.after(() => {
      for (const s of hostileSockets) s.destroy();
    });
    await Promise.all(
      Array.from({ length: HOSTILE }, async () => {
        for (let round = 0; round < ROUNDS; round++) await hostile(cli.listen, hostileSockets);
      }),
    );
    await new Promise((r) => setTimeout(r, 700));
    const downs = cli.lines.filter((l) => / -> down /.test(l)).length;
    figure(t, `--workers 2: ${HOSTILE}x${ROUNDS} hostile connections torn down; healthy streams cut ${cut}/${HEALTHY}; down verdicts ${downs}`);
    assert.equal(downs, 0, cli.lines.join('\n'));
    assert.equal(cut, 0);
  },
);
