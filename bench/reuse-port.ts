/**
 * `--workers`: one listening socket shared by every worker (today's, the
 * cluster's `SCHED_NONE`: the primary binds, each worker accepts on the same
 * handle) against `reusePort` (Node 22.12+: each worker binds its own socket
 * with SO_REUSEPORT and the kernel spreads connections by a hash of the
 * addresses). Two cluster workers run the library's proxy path (a pool,
 * `pool.accept()`, a PinnedConnection per client) toward one echo backend;
 * the primary makes short exchanges (64 B echoed, client closes) at
 * concurrency 100 and reads how many connections each worker took.
 * The two modes alternate, round after round, so drift in the machine's load
 * falls on both.
 *
 * ```sh
 * node --import tsx bench/reuse-port.ts            # 5 rounds of 5,000 per mode
 * ROUNDS=1 COUNT=1000 node --import tsx bench/reuse-port.ts
 * ```
 *
 * Not part of `npm run bench`: it answers one question (docs/benchmarks.md, "--workers: shared handle or reusePort").
 *
 * @module
 */
import cluster, { type Worker } from 'node:cluster';
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { UpstreamPool } from '../src/index.js';

const HOST = '127.0.0.1';
const WORKERS = 2;
const CONCURRENCY = 100;
const COUNT = Number(process.env['COUNT'] ?? 5000);
const ROUNDS = Number(process.env['ROUNDS'] ?? 5);
const PAYLOAD = Buffer.alloc(64, 0x61);

type Mode = 'shared' | 'reusePort';

if (cluster.isPrimary) await primary();
else worker();

function worker(): void {
  const mode = process.env['MODE'] as Mode;
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: Number(process.env['BACKEND']) }] });
  let accepted = 0;
  const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (client) => {
    accepted++;
    pool.accept(client);
  });
  server.listen({ host: HOST, port: Number(process.env['PORT']), ...(mode === 'reusePort' ? { reusePort: true } : {}) }, () => process.send!({ type: 'listening' }));
  process.on('message', (m: { type: string }) => {
    if (m.type === 'count') process.send!({ type: 'count', accepted });
    if (m.type === 'stop') {
      server.close();
      void pool.destroy().then(() => process.exit(0));
    }
  });
}

/** One short exchange: connect, send 64 B, read them back, close. */
function exchange(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: HOST, port });
    let got = 0;
    s.on('connect', () => s.write(PAYLOAD));
    s.on('data', (d: Buffer) => {
      got += d.length;
      if (got >= PAYLOAD.length) s.end();
    });
    s.on('close', () => (got >= PAYLOAD.length ? resolve() : reject(new Error('short exchange'))));
    s.on('error', reject);
    s.setTimeout(10_000, () => s.destroy(new Error('timeout')));
  });
}

async function load(port: number, count: number): Promise<number> {
  let started = 0;
  const t0 = performance.now();
  const lane = async (): Promise<void> => {
    while (started < count) {
      started++;
      await exchange(port);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, lane));
  return count / ((performance.now() - t0) / 1000);
}

async function freePort(): Promise<number> {
  const s = net.createServer().listen(0, HOST);
  await once(s, 'listening');
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

async function run(mode: Mode, backend: number): Promise<{ rate: number; split: number[] }> {
  const port = await freePort();
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  const workers: Worker[] = [];
  for (let i = 0; i < WORKERS; i++) workers.push(cluster.fork({ MODE: mode, PORT: String(port), BACKEND: String(backend) }));
  await Promise.all(workers.map((w) => new Promise<void>((r) => w.once('message', () => r()))));
  await load(port, Math.min(500, COUNT)); // warm-up, not counted
  const before = await counts(workers);
  const rate = await load(port, COUNT);
  const after = await counts(workers);
  await Promise.all(workers.map((w) => (w.send({ type: 'stop' }), once(w, 'exit'))));
  return { rate, split: after.map((n, i) => n - before[i]!) };
}

function counts(workers: Worker[]): Promise<number[]> {
  return Promise.all(
    workers.map(
      (w) =>
        new Promise<number>((resolve) => {
          w.once('message', (m: { accepted: number }) => resolve(m.accepted));
          w.send({ type: 'count' });
        }),
    ),
  );
}

async function primary(): Promise<void> {
  const echo = net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s)).listen(0, HOST);
  await once(echo, 'listening');
  const backend = (echo.address() as AddressInfo).port;
  const results: Record<Mode, { rate: number; split: number[] }[]> = { shared: [], reusePort: [] };
  for (let round = 0; round < ROUNDS; round++) {
    for (const mode of (round % 2 === 0 ? ['shared', 'reusePort'] : ['reusePort', 'shared']) as Mode[]) {
      const r = await run(mode, backend);
      results[mode].push(r);
      console.log(`round ${round + 1} ${mode}: ${Math.round(r.rate)} conn/s, split ${r.split.join('/')}`);
    }
  }
  echo.close();
  for (const mode of ['shared', 'reusePort'] as Mode[]) {
    const rates = results[mode].map((r) => r.rate).sort((a, b) => a - b);
    const median = rates[Math.floor(rates.length / 2)]!;
    const skew = results[mode].map((r) => Math.max(...r.split) / (r.split.reduce((a, b) => a + b, 0) / r.split.length));
    console.log(
      `${mode}: median ${Math.round(median)} conn/s (min ${Math.round(rates[0]!)}, max ${Math.round(rates.at(-1)!)}), busiest worker ${Math.max(...skew).toFixed(2)}x its even share at worst`,
    );
  }
  console.log(`node ${process.version}, ${ROUNDS} rounds of ${COUNT} per mode, concurrency ${CONCURRENCY}, ${WORKERS} workers`);
}
