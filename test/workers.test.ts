// Multi-core mode of the reference balancer (`--workers N`): the flag, the
// stats merge, and the CLI as a child process on loopback: both workers serve,
// a silent cut reaches every worker, a killed worker is replaced (with the
// verdicts so far) without touching the other's connections, failed dials in
// the workers reach the primary's probe, SIGTERM drains every worker; and the
// broadcast of admin commands, with the primary in this process.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../src/cli/config.js';
import { parseBalancerArgs } from '../src/cli/parse-balancer-args.js';
import { mergeStats } from '../src/cli/merge-stats.js';
import { startWorkers } from '../src/cli/primary.js';
import { ApiserverBackend } from '../examples/support/apiserver-backend.js';
import { certPaths } from '../examples/support/certs.js';
import { FaultProxy } from '../examples/support/fault-proxy.js';
import { WatchFleet } from '../examples/support/watch-client.js';
import { UpstreamPool, type PoolStats } from '../src/index.js';
import { startCli as startCliProcess, type RunningCli } from './helpers/cli.js';
import { HOST, connect, echoServer, listen, readLine, waitFor } from './helpers/net.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const workerProgram = join(root, 'test/helpers/balancer-worker.ts');
const noFiles = { readFile: (): string => assert.fail('no file is read') };

test('--workers: N, auto, and refused values', () => {
  const workers = (...flags: string[]): number => {
    const result = parseBalancerArgs(['--backend', 'h:1', ...flags], noFiles);
    assert.equal(result.kind, 'run');
    return result.config.workers;
  };
  assert.equal(workers(), 1);
  assert.equal(workers('--workers', '2'), 2);
  assert.equal(workers('--workers=auto'), availableParallelism());
  const fromFile = parseBalancerArgs(['--config', 'c.json'], { readFile: () => '{"backend":"h:1","workers":"auto"}' });
  assert.equal(fromFile.kind === 'run' && fromFile.config.workers, availableParallelism());
  for (const [value, file] of [['0'], ['257'], ['two'], ['-1'], ['1.5'], ['"2"', true]] as const) {
    let err: unknown;
    try {
      if (file === true) parseBalancerArgs(['--config', 'c.json'], { readFile: () => `{"backend":"h:1","workers":${value}}` });
      else parseBalancerArgs(['--backend', 'h:1', '--workers', value], noFiles);
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof ConfigError, `--workers ${value} should be refused`);
    assert.match(err.message, /"?workers"?: expected an integer from 1 to 256 or auto/);
  }
});

test('mergeStats: counters summed, per backend too; state from the first worker', async (t) => {
  const { port } = await echoServer(t);
  const pools = [0, 1].map(() => new UpstreamPool({ backends: [{ host: HOST, port, id: 'b1' }] }));
  t.after(() => Promise.all(pools.map((p) => p.destroy())));
  const servers = await Promise.all(pools.map((pool) => listen(t, (socket) => pool.accept(socket), { pauseOnConnect: true })));
  // Two connections through the first pool, one through the second.
  const clients = [await connect(t, servers[0]!.port), await connect(t, servers[0]!.port), await connect(t, servers[1]!.port)];
  for (const c of clients) c.write('x\n');
  for (const c of clients) assert.equal(await readLine(c), 'x');
  pools[1]!.markDown('b1', 'marked-down');
  const merged = mergeStats(pools.map((p) => p.stats()), 42);
  assert.equal(merged.at, 42);
  assert.equal(merged.total, 3);
  assert.equal(merged.active, 2);
  assert.equal(merged.teardowns['marked-down'], 1);
  const [b1] = merged.backends;
  assert.equal(b1?.id, 'b1');
  assert.equal(b1?.total, 3);
  assert.equal(b1?.members, 2);
  assert.equal(b1?.bytesFromClient, 6);
  assert.equal(b1?.teardowns['marked-down'], 1);
  assert.equal(b1?.health, 'up', 'state comes from the first snapshot');
  assert.equal(merged.allDown, true, 'one worker without an eligible backend shows');
  assert.deepEqual(mergeStats([]).backends, []);
});

// ------------------------------------------------------------------ the CLI

/** Starts the CLI on loopback ports with `args`; killed, with every worker it reported, after the test. */
function startCli(t: TestContext, args: string[]): Promise<RunningCli> {
  return startCliProcess(t, ['--listen', `${HOST}:0`, '--status', '0', ...args]);
}

interface WorkerRow {
  readonly worker: number;
  readonly pid: number;
  readonly answered: boolean;
  readonly listening: boolean;
  readonly active: number;
  readonly total: number;
  readonly members: Record<string, number>;
}
type Stats = PoolStats & { workers: WorkerRow[]; restarts: number; probe: { backends: Record<string, unknown> } };

function getStats(port: number): Promise<Stats> {
  return new Promise((resolve, reject) => {
    const req = request({ host: HOST, port, path: '/stats', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        try {
          assert.equal(res.statusCode, 200, body);
          resolve(JSON.parse(body) as Stats);
        } catch (err) {
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

function getText(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    request({ host: HOST, port, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(body));
      res.on('error', reject);
    })
      .on('error', reject)
      .end();
  });
}

/** Polls `/stats` until `condition` holds on it. */
async function pollStats(port: number, condition: (s: Stats) => boolean, what: string, timeout = 30_000): Promise<Stats> {
  const start = Date.now();
  let last: Stats | undefined;
  while (Date.now() - start < timeout) {
    last = await getStats(port);
    if (condition(last)) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}; last /stats workers: ${JSON.stringify(last?.workers)}`);
}
test('CLI --workers 2: both workers serve, /stats and /metrics merge them, SIGTERM drains both and exits 0', { timeout: 90_000 }, async (t) => {
  const a = await echoServer(t);
  const b = await echoServer(t);
  const cli = await startCli(t, ['--backend', `b1=${HOST}:${a.port}`, '--backend', `b2=${HOST}:${b.port}`, '--check', 'tcp', '--interval', '500', '--workers', '2', '--drain-timeout', '300']);
  assert.equal(cli.lines.filter((l) => / worker \d+ \(pid \d+\) listening$/.test(l)).length, 2);
  await pollStats(cli.status, (s) => s.backends.length === 2 && s.backends.every((x) => x.state === 'up'), 'both backends up in the merged stats');

  // Connections one after another, until both workers took some: the kernel
  // hands each to whichever worker accepts first (bounded: 200 connections).
  const clients: Socket[] = [];
  let stats: Stats | undefined;
  for (let i = 0; i < 200 && !(stats?.workers.length === 2 && stats.workers.every((w) => w.active > 0)); i++) {
    const c = await connect(t, cli.listen);
    c.write(`hello ${i}\n`);
    assert.equal(await readLine(c), `hello ${i}`);
    clients.push(c);
    if (clients.length >= 20) stats = await pollStats(cli.status, (s) => s.active === clients.length, 'every connection in the merged stats');
  }
  const n = clients.length;
  assert.ok(stats !== undefined);
  assert.equal(stats.workers.length, 2);
  assert.ok(
    stats.workers.every((w) => w.answered && w.active > 0),
    `every worker serves some: ${JSON.stringify(stats.workers)}`,
  );
  assert.equal(stats.workers.reduce((sum, w) => sum + w.active, 0), n);
  assert.equal(stats.total, n);
  assert.equal(
    stats.backends.reduce((sum, x) => sum + x.members, 0),
    n,
  );
  assert.deepEqual(Object.keys(stats.probe.backends).sort(), ['b1', 'b2']);
  const metrics = await getText(cli.status, '/metrics');
  assert.match(metrics, new RegExp(`^failover_proxy_active_connections ${n}$`, 'm'));
  assert.match(metrics, /^failover_proxy_workers\{state="answered"\} 2$/m);
  assert.match(metrics, /^failover_proxy_probe_checks_total\{backend="b1",result="ok"\} [1-9]/m);

  cli.child.kill('SIGTERM');
  const [code] = await cli.exited;
  assert.equal(code, 0, cli.stderr());
  assert.equal(cli.stderr(), '');
  const text = cli.lines.join('\n');
  assert.match(text, /shutting down: not accepting; 2 workers draining, 300 ms to finish/);
  // Every connection was closed at the drain deadline by the worker holding it.
  const stopped = cli.lines.flatMap((l) => / worker \d+: stopped \((\d+) connections? closed at the deadline\)$/.exec(l)?.[1] ?? []);
  assert.equal(stopped.length, 2, text);
  assert.equal(stopped.reduce((sum, x) => sum + Number(x), 0), n, text);
  assert.match(cli.lines.at(-1)!, /\dZ stopped$/);
  for (const c of clients) c.resume();
  await waitFor(() => clients.every((c) => c.readableEnded || c.closed), { what: 'every client told' });
});

test('CLI --workers 2: a silent cut reaches every worker; no stream stays stuck', { timeout: 120_000 }, async (t) => {
  const backends = await Promise.all(['b1', 'b2'].map((name) => ApiserverBackend.start({ name, host: HOST })));
  t.after(() => Promise.all(backends.map((x) => x.close())));
  const cutter = await FaultProxy.start({ target: backends[1]!.address });
  t.after(() => cutter.close());
  const cli = await startCli(t, [
    '--backend', `b1=${HOST}:${backends[0]!.port}`,
    '--backend', `b2=${HOST}:${cutter.port}`,
    '--ca', certPaths.ca,
    '--interval', '300', '--timeout', '300', '--fall', '2',
    '--workers', '2',
  ]);
  await pollStats(cli.status, (s) => s.backends.every((x) => x.state === 'up'), 'both backends up');

  // Fleets of 8 streams until each worker holds some on b2, or the test would
  // not show the verdict reaching both (bounded: 4 fleets).
  const fleets: WatchFleet[] = [];
  let before: Stats | undefined;
  while (fleets.length < 4 && !(before?.workers.length === 2 && before.workers.every((w) => (w.members['b2'] ?? 0) > 0))) {
    const fleet = new WatchFleet({ size: 8, host: HOST, port: cli.listen, backoffMs: 20, idPrefix: `watch${fleets.length}` });
    t.after(() => fleet.stop());
    fleets.push(fleet);
    await fleet.waitFor((f) => f.connectedCount === 8, 30_000);
    const size = fleets.length * 8;
    before = await pollStats(cli.status, (s) => s.active === size, 'every stream counted');
  }
  assert.ok(before !== undefined && before.workers.every((w) => (w.members['b2'] ?? 0) > 0), `both workers with streams on b2: ${JSON.stringify(before?.workers)}`);
  const clients = fleets.flatMap((f) => f.clients);
  const onB2 = clients.filter((c) => c.backend === 'b2');
  t.diagnostic(`before the cut: ${JSON.stringify(before.workers.map((w) => ({ worker: w.worker, members: w.members })))}`);
  const reconnects = new Map(onB2.map((c) => [c, c.reconnects]));

  cutter.cut();
  const cutAt = Date.now();
  await waitFor(() => onB2.every((c) => c.connected && c.backend === 'b1' && c.reconnects > reconnects.get(c)! && (c.lastEventAt ?? 0) > cutAt), {
    what: 'every b2 stream re-watching on b1',
    timeout: 30_000,
  });
  t.diagnostic(`cut -> every b2 stream re-watched on b1: ${Date.now() - cutAt} ms`);

  // Every worker logged its own teardown of b2.
  for (const w of before.workers) {
    const line = cli.lines.find((l) => l.includes(` worker ${w.worker}: backend b2 up -> down (probe-failed`));
    assert.match(line ?? '', /\(probe-failed: PROBE_TIMEOUT: .*\), [1-9]\d* connections? torn down$/, `worker ${w.worker}: ${cli.lines.join('\n')}`);
  }
  const after = await pollStats(cli.status, (s) => s.active === clients.length, 'every stream counted again');
  assert.equal(after.backends.find((x) => x.id === 'b2')?.health, 'down');
  assert.equal(after.backends.find((x) => x.id === 'b2')?.members, 0);
  assert.equal(after.teardowns['probe-failed'], onB2.length);
  assert.equal(clients.filter((c) => c.backend === 'b2').length, 0);
  assert.equal(fleets.flatMap((f) => f.stalled(5000)).length, 0, 'no stream stalled');
});

test('CLI --workers 2: a worker killed under load is replaced; the other worker\'s connections survive', { timeout: 120_000 }, async (t) => {
  const a = await echoServer(t);
  const b = await echoServer(t);
  // A short queue timeout: a replacement without the verdicts would refuse its clients quickly.
  const cli = await startCli(t, ['--backend', `b1=${HOST}:${a.port}`, '--backend', `b2=${HOST}:${b.port}`, '--check', 'tcp', '--interval', '500', '--queue-timeout', '3000', '--workers', '2']);
  await pollStats(cli.status, (s) => s.backends.every((x) => x.state === 'up'), 'both backends up');
  const clients: Socket[] = [];
  let before: Stats | undefined;
  // Until each worker holds a few (bounded: 200 connections).
  while (clients.length < 200 && !(before?.workers.length === 2 && before.workers.every((w) => w.active >= 3))) {
    const c = await connect(t, cli.listen);
    // A dying worker's sockets end with a FIN or an RST, by chance: either way the connection is lost.
    c.once('end', () => c.destroy());
    clients.push(c);
    if (clients.length >= 20) before = await pollStats(cli.status, (s) => s.active === clients.length, 'every connection counted');
  }
  assert.ok(before !== undefined && before.workers.every((w) => w.active >= 3), `both workers hold connections: ${JSON.stringify(before?.workers)}`);
  const [victim, survivor] = before.workers;
  assert.ok(victim !== undefined && survivor !== undefined);

  // Load: every connection echoes a line every few ms while the worker dies (bounded in count and time).
  let stop = false;
  const echoed = new Map<Socket, number>(clients.map((c) => [c, 0]));
  const pumps = clients.map(async (c, i) => {
    for (let n = 0; n < 2000 && !stop && !c.closed; n++) {
      c.write(`${i}:${n}\n`);
      try {
        if ((await readLine(c)) !== `${i}:${n}`) return;
      } catch {
        return;
      }
      echoed.set(c, n + 1);
      await new Promise((r) => setTimeout(r, 5));
    }
  });
  await waitFor(() => [...echoed.values()].every((n) => n >= 3), { what: 'load on every connection' });
  process.kill(victim.pid, 'SIGKILL');

  await waitFor(() => cli.lines.some((l) => l.includes(`worker ${victim.worker} (pid ${victim.pid}) exited (signal SIGKILL); starting a replacement`)), {
    what: 'the exit line',
  });
  await waitFor(() => clients.filter((c) => c.closed).length === victim.active, { what: "the victim's connections closed", timeout: 30_000 });
  const survivors = clients.filter((c) => !c.closed);
  assert.equal(survivors.length, survivor.active);
  // The survivors still carry bytes after the kill.
  const marks = new Map(survivors.map((c) => [c, echoed.get(c)!]));
  await waitFor(() => survivors.every((c) => echoed.get(c)! >= marks.get(c)! + 3), { what: 'survivors echoing after the kill' });
  stop = true;
  await Promise.all(pumps);
  assert.ok(survivors.every((c) => !c.closed), 'no survivor was closed');

  const replaced = await pollStats(cli.status, (s) => s.workers.length === 2 && s.workers.every((w) => w.answered && w.listening), 'a replacement worker', 60_000);
  assert.equal(replaced.restarts, 1);
  const fresh = replaced.workers.find((w) => w.worker !== survivor.worker);
  assert.ok(fresh !== undefined && fresh.pid !== victim.pid);
  assert.ok(
    cli.lines.some((l) => l.includes(`worker ${fresh.worker} (pid ${fresh.pid}) listening`)),
    cli.lines.join('\n'),
  );
  // The replacement got the verdicts on start: it serves at once (a backend
  // still awaiting its first check would queue the client, and this echo would not come back).
  let served = false;
  for (let i = 0; i < 40 && !served; i++) {
    const c = await connect(t, cli.listen);
    // A refused client gets a FIN: close, so the read below fails instead of waiting.
    c.once('end', () => c.destroy());
    c.write('after\n');
    assert.equal(await readLine(c), 'after');
    const s = await getStats(cli.status);
    served = (s.workers.find((w) => w.worker === fresh.worker)?.total ?? 0) > 0;
  }
  assert.ok(served, 'the replacement took connections');
  assert.equal(survivors.filter((c) => c.closed).length, 0);
});

test('CLI --workers 2: failed dials in the workers count at the primary\'s probe (passive health)', { timeout: 90_000 }, async (t) => {
  const a = await echoServer(t);
  const b = await echoServer(t);
  // A check a minute apart: only the workers' failed dials, forwarded to the
  // primary, can take b1 down within this test.
  const cli = await startCli(t, ['--backend', `b1=${HOST}:${a.port}`, '--backend', `b2=${HOST}:${b.port}`, '--check', 'tcp', '--interval', '60000', '--workers', '2']);
  await pollStats(cli.status, (s) => s.backends.every((x) => x.state === 'up'), 'both backends up');
  // b1 goes away: its port now refuses.
  for (const s of a.sockets) s.destroy();
  await new Promise<void>((resolve) => a.server.close(() => resolve()));

  // Clients keep coming (bounded); those placed on b1 fail to dial it and are retried on b2.
  const downIn = (worker: number): boolean => cli.lines.some((l) => l.includes(` worker ${worker}: backend b1 up -> down (probe-failed: `));
  const workers = (await getStats(cli.status)).workers.map((w) => w.worker);
  for (let i = 0; i < 200 && !workers.every(downIn); i++) {
    const c = await connect(t, cli.listen);
    c.write('x\n');
    assert.equal(await readLine(c), 'x', 'served by b2');
    c.destroy();
  }
  assert.ok(workers.every(downIn), `b1 down in every worker:\n${cli.lines.join('\n')}`);
  const stats = await getStats(cli.status);
  const b1 = stats.backends.find((x) => x.id === 'b1')!;
  assert.equal(b1.health, 'down');
  assert.ok(b1.connectFailures >= 1, `failed dials counted: ${b1.connectFailures}`);
  assert.equal(stats.pinFailures['CONNECT_FAILED'] ?? 0, 0, 'every client was served by b2');
});

test('startWorkers: broadcast runs a command in every worker, replays it to a replacement, and reports failures per worker', { timeout: 90_000 }, async (t) => {
  const a = await echoServer(t);
  const parsed = parseBalancerArgs(['--listen', `${HOST}:0`, '--backend', `b1=${HOST}:${a.port}`, '--check', 'tcp', '--interval', '500', '--workers', '2', '--drain-timeout', '0'], noFiles);
  assert.equal(parsed.kind, 'run');
  const lines: string[] = [];
  const balancer = await startWorkers(parsed.config, { log: (line) => lines.push(line), readFile: () => assert.fail('no file is read') }, { exec: workerProgram });
  t.after(() => balancer.destroy());
  assert.equal(balancer.workers().length, 2);

  const maintenance = await balancer.broadcast({ op: 'maintenance', id: 'b1', reason: 'kernel-upgrade' });
  assert.deepEqual(
    maintenance.map((r) => [r.ok, r.ok && r.result]),
    [
      [true, 0],
      [true, 0],
    ],
  );
  const unknown = await balancer.broadcast({ op: 'drain', id: 'nope' });
  assert.deepEqual(
    unknown.map((r) => !r.ok && r.error.code),
    ['UNKNOWN_BACKEND', 'UNKNOWN_BACKEND'],
  );
  assert.equal((await balancer.stats()).backends[0]?.admin, 'maintenance');

  // A replacement starts in maintenance too.
  const [victim] = balancer.workers();
  process.kill(victim!.pid, 'SIGKILL');
  await waitFor(() => balancer.workers().length === 2 && balancer.workers().every((w) => w.listening && w.pid !== victim!.pid), { what: 'a replacement', timeout: 60_000 });
  const admins = await balancer.broadcast({ op: 'stats' });
  assert.deepEqual(
    admins.map((r) => r.ok && (r.result as PoolStats).backends[0]?.admin),
    ['maintenance', 'maintenance'],
  );

  const ready = await balancer.broadcast({ op: 'ready', id: 'b1' });
  assert.ok(ready.every((r) => r.ok));
  assert.equal((await balancer.stats()).backends[0]?.state, 'up');
  await balancer.close();
  assert.equal(balancer.workers().length, 0);
  assert.match(lines.join('\n'), / worker \d+ \(pid \d+\) exited \(signal SIGKILL\); starting a replacement/);
  assert.match(lines.at(-1)!, /\dZ stopped$/);
});
