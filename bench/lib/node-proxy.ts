/**
 * The Node contenders of the TCP benches, each in its own process like
 * HAProxy and nginx:
 *
 * - `pool`: an {@link UpstreamPool} with default options behind a listener
 *   (`pauseOnConnect`, `pool.accept(socket)`), as the README shows.
 * - `pinned`: a {@link PinnedConnection} per client over a plain `net.connect`
 *   (no pool), to separate the data path from the pool's placement work.
 * - `naive`: `c.pipe(u); u.pipe(c)`, plus the two error handlers without which
 *   the first reset would crash it.
 * - `sockets`: the two sockets and nothing else (`'data'` written to the peer):
 *   the floor of the memory bench. With `BENCH_FLOOR_SOCKET_OPTIONS=1` in its
 *   environment, both sockets also get the options the pool sets on every
 *   connection by default (TCP keepalive after 30 s, `TCP_NODELAY`): what
 *   those syscalls cost by themselves. With `--track` it also keeps its
 *   pairs, so that the `teardown` command can close them all the way the
 *   pool's sliced teardown does: the floor of the teardown bench.
 *
 * ```sh
 * node --expose-gc --import tsx bench/lib/node-proxy.ts --mode pool --backend 127.0.0.1:9000 [--backend ...]
 *     [--listen 127.0.0.1:0] [--balancer least-connections|round-robin|...|last]
 * # prints "listening HOST:PORT"; exits on SIGTERM (writing a --cpu-prof profile if asked)
 * ```
 *
 * Commands on stdin, one per line, each answered by one line on stdout:
 * `stats` → `stats {"active":N}`; `mem` → `mem {rss, heapUsed, ..., young}` (after GC);
 * `heapsnapshot PATH` → `heapsnapshot PATH` (after GC);
 * `add HOST:PORT` → `added ID` (pool); `markdown ID` → `markdown {...}` (pool:
 * times `markDown` and the event loop around it). `--teardown sync` closes
 * every socket inside `markDown` (the pool's `teardown.syncMax: Infinity`);
 * the default, `sliced`, is the pool's default slicing. `teardown` (`sockets
 * --track`) resets every pair in slices of 5 ms per loop turn, as the pool's
 * registry does, with nothing else, and is timed the same way.
 *
 * @module
 */
import net, { type AddressInfo, type Socket } from 'node:net';
import { PerformanceObserver, monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { getHeapSpaceStatistics, writeHeapSnapshot } from 'node:v8';
import { PinnedConnection, UpstreamPool, parseHostPort, type BalancerName, type PickFunction } from '../../src/index.js';
import { upstreamPoolDefaults } from '../../src/options.js';

type Mode = 'pool' | 'pinned' | 'naive' | 'sockets';

interface Target {
  readonly host: string;
  readonly port: number;
}

function ignore(): void {}

/** What a mode exposes to the command channel. */
interface Host {
  active(): number;
  pool: UpstreamPool | undefined;
  /** `sockets --track`: every open pair's client socket. */
  pairs?: Set<Peered> | undefined;
}

/** `last`: the most recently added backend that is up (the teardown bench steers connections with it). */
const pickLast: PickFunction = (candidates) => candidates[candidates.length - 1];

function startPool(server: net.Server, targets: readonly Target[], balancer: string, teardown: string): Host {
  const pool = new UpstreamPool({
    backends: targets.map((t) => ({ host: t.host, port: t.port })),
    balancer: balancer === 'last' ? pickLast : (balancer as BalancerName),
    // `sync`: every socket closed inside markDown (the 0.1 contract), for comparison.
    teardown: teardown === 'sync' ? { syncMax: Infinity } : undefined,
  });
  server.on('connection', (socket: Socket) => pool.accept(socket));
  return { active: () => pool.stats().active, pool };
}

function startPinned(server: net.Server, targets: readonly Target[]): Host {
  const open = new Set<PinnedConnection>();
  let next = 0;
  server.on('connection', (client: Socket) => {
    const target = targets[next++ % targets.length]!;
    const upstream = net.connect({ host: target.host, port: target.port, allowHalfOpen: true });
    const onDialError = (): void => {
      client.destroy();
    };
    client.on('error', ignore);
    upstream.once('error', onDialError);
    upstream.once('connect', () => {
      upstream.off('error', onDialError);
      client.off('error', ignore);
      const conn = new PinnedConnection(client, upstream);
      open.add(conn);
      conn.once('closed', () => open.delete(conn));
    });
  });
  return { active: () => open.size, pool: undefined };
}

// `sockets`: the two sockets of a proxied connection and nothing else, no
// library, no closure: what any Node proxy pays per connection (the floor of
// the memory bench). Each socket finds its peer through one property.
const kPeer = Symbol('peer');
type Peered = Socket & { [kPeer]?: Socket };
let socketsOpen = 0;

function forwardToPeer(this: Peered, chunk: Buffer): void {
  this[kPeer]?.write(chunk);
}

function destroyPeer(this: Peered): void {
  this[kPeer]?.destroy();
}

function destroyBoth(this: Peered): void {
  // A FIN either way ends the pair (no half-close here): its descriptors are
  // back before the next batch of connections.
  this.destroy();
  this[kPeer]?.destroy();
}

function socketsClosed(): void {
  socketsOpen--;
}

function startSockets(server: net.Server, targets: readonly Target[], track: boolean): Host {
  let next = 0;
  const options = process.env['BENCH_FLOOR_SOCKET_OPTIONS'] === '1';
  // Only with --track: a Set entry per pair would change the memory floor.
  const pairs = track ? new Set<Peered>() : undefined;
  const untrack = function (this: Peered): void {
    pairs?.delete(this);
  };
  server.on('connection', (c: Peered) => {
    const target = targets[next++ % targets.length]!;
    const u: Peered = net.connect(target);
    if (options) {
      for (const s of [c, u]) {
        s.setKeepAlive(true, 30_000);
        s.setNoDelay(true);
      }
    }
    c[kPeer] = u;
    u[kPeer] = c;
    c.on('data', forwardToPeer);
    u.on('data', forwardToPeer);
    c.on('error', destroyPeer);
    u.on('error', destroyPeer);
    c.on('end', destroyBoth);
    u.on('end', destroyBoth);
    c.once('close', socketsClosed);
    if (pairs !== undefined) {
      pairs.add(c);
      c.once('close', untrack);
    }
    socketsOpen++;
    c.resume();
  });
  return { active: () => socketsOpen, pool: undefined, pairs };
}

/**
 * Resets every pair the way the pool's registry closes a taken-out backend's
 * members: up to the pool's default budget (5 ms) of closing per loop turn,
 * the clock read every 16.
 * The floor under the pool's teardown: what closing the sockets costs with
 * no library around them.
 */
function resetInSlices(pairs: readonly Peered[]): number {
  const { budgetMs } = upstreamPoolDefaults.teardown;
  let i = 0;
  const slice = (): void => {
    const deadline = performance.now() + budgetMs;
    while (i < pairs.length) {
      const c = pairs[i]!;
      i++;
      c.resetAndDestroy();
      c[kPeer]?.resetAndDestroy();
      if ((i & 15) === 0 && performance.now() >= deadline) break;
    }
    if (i < pairs.length) setImmediate(slice);
  };
  setImmediate(slice);
  return pairs.length;
}

function startNaive(server: net.Server, targets: readonly Target[]): Host {
  let open = 0;
  let next = 0;
  server.on('connection', (c: Socket) => {
    const target = targets[next++ % targets.length]!;
    const u = net.connect(target);
    c.pipe(u);
    u.pipe(c);
    c.on('error', () => u.destroy());
    u.on('error', () => c.destroy());
    open++;
    c.once('close', () => open--);
  });
  return { active: () => open, pool: undefined };
}

function memory(): Record<string, number> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) {
    gc();
    gc();
  }
  const m = process.memoryUsage();
  // The young generation's resident pages: V8 grows it while connections are
  // being opened and gives it back only after some idle seconds.
  const young = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.physical_space_size ?? 0;
  return { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers, young };
}

/** This thread's CPU time in ms (the process's where Node has no threadCpuUsage, before 23.9). */
function threadCpuMs(): number {
  const u = (process as { threadCpuUsage?: () => NodeJS.CpuUsage }).threadCpuUsage?.() ?? process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/**
 * Times `pool.markDown(id)` (see {@link timeTeardown}) and checks its
 * contract: nothing of the backend left in the registry when it returns, the
 * other backends' connections untouched.
 */
async function timeMarkDown(pool: UpstreamPool, id: string): Promise<Record<string, number>> {
  const victims: Socket[] = [];
  for (const conn of pool.connections(id)) victims.push(conn.client, conn.upstream);
  const othersBefore = pool.stats().backends.filter((b) => b.id !== id).reduce((n, b) => n + b.active, 0);
  let leftInRegistry = 0;
  const r = await timeTeardown(victims, () => {
    const tornDown = pool.markDown(id, 'bench');
    // The contract, checked where it is measured: out of the registry when the call returns.
    leftInRegistry = [...pool.members(id)].length;
    return tornDown;
  });
  const othersAfter = pool.stats().backends.filter((b) => b.id !== id).reduce((n, b) => n + b.active, 0);
  pool.markUp(id);
  return { ...r, leftInRegistry, othersBefore, othersAfter };
}

/** Times `teardown` of a `sockets --track` floor: every pair reset in slices, nothing else. */
async function timeFloorTeardown(pairs: Set<Peered>): Promise<Record<string, number>> {
  const all = [...pairs];
  const victims: Socket[] = [];
  for (const c of all) {
    victims.push(c);
    if (c[kPeer] !== undefined) victims.push(c[kPeer]);
  }
  return timeTeardown(victims, () => resetInSlices(all));
}

/**
 * Times `act()`, which closes `victims` now or later: the call, until every
 * victim has emitted 'close', the longest event-loop stall in that window
 * (and 200 ms after), the longest turn's CPU, and V8's garbage-collection
 * pauses in the same window, so that a stall can be told apart from a GC.
 */
async function timeTeardown(victims: readonly Socket[], act: () => number): Promise<Record<string, number>> {
  let pending = victims.length;
  let allClosedAt = 0;
  let onAllClosed: () => void = ignore;
  const allClosed = new Promise<void>((resolve) => (onAllClosed = resolve));
  const onClose = (): void => {
    if (--pending === 0) {
      allClosedAt = performance.now();
      onAllClosed();
    }
  };
  for (const s of victims) s.once('close', onClose);

  let last = performance.now();
  let maxGap = 0;
  // This thread's CPU time between two ticks: the work of the loop turns in
  // between, which a loaded machine stretches in wall time but not in CPU.
  let lastCpu = threadCpuMs();
  let maxTurnCpu = 0;
  const sampler = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
    const cpu = threadCpuMs();
    maxTurnCpu = Math.max(maxTurnCpu, cpu - lastCpu);
    lastCpu = cpu;
  }, 1);
  await new Promise((r) => setTimeout(r, 200));
  const baselineGap = maxGap;
  maxGap = 0;
  maxTurnCpu = 0;
  // The same stall seen by Node's own histogram (1 ms resolution: a delay is what exceeds the 1 ms).
  const eld = monitorEventLoopDelay({ resolution: 1 });
  eld.enable();

  // V8's pauses in the same window (main-thread time of each collection).
  const gcs: number[] = [];
  const gcObserver = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcs.push(e.duration);
  });
  gcObserver.observe({ entryTypes: ['gc'] });

  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const tornDown = act();
  const t1 = performance.now();
  // Kernel vs user time of the call: closing a loopback socket runs the
  // peer's TCP receive path inside the close() syscall.
  const cpu = process.cpuUsage(cpu0);
  if (victims.length === 0) onAllClosed();
  await allClosed;
  await new Promise((r) => setTimeout(r, 200));
  clearInterval(sampler);
  eld.disable();
  // Entries are delivered asynchronously: take what is queued, then stop.
  for (const e of gcObserver.takeRecords()) gcs.push(e.duration);
  gcObserver.disconnect();
  return {
    tornDown,
    syncMs: t1 - t0,
    userMs: cpu.user / 1000,
    systemMs: cpu.system / 1000,
    allClosedMs: (allClosedAt || t1) - t0,
    maxLoopDelayMs: Math.max(0, maxGap - 1),
    eldMaxMs: Math.max(0, eld.max / 1e6 - 1),
    maxTurnCpuMs: maxTurnCpu,
    eldP99Ms: Math.max(0, eld.percentile(99) / 1e6 - 1),
    baselineLoopDelayMs: Math.max(0, baselineGap - 1),
    gcCount: gcs.length,
    maxGcMs: gcs.length === 0 ? 0 : Math.max(...gcs),
  };
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      mode: { type: 'string' },
      listen: { type: 'string', default: '127.0.0.1:0' },
      backend: { type: 'string', multiple: true },
      balancer: { type: 'string', default: 'least-connections' },
      teardown: { type: 'string', default: 'sliced' },
      track: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const mode = values.mode as Mode;
  if (mode !== 'pool' && mode !== 'pinned' && mode !== 'naive' && mode !== 'sockets') throw new TypeError(`Expected \`--mode\` to be pool, pinned, naive or sockets, got \`${String(values.mode)}\``);
  const targets = (values.backend ?? []).map((b) => parseHostPort(b, '--backend'));
  if (targets.length === 0) throw new TypeError('Expected at least one `--backend`');
  const listen = values.listen === '127.0.0.1:0' ? { host: '127.0.0.1', port: 0 } : parseHostPort(values.listen, '--listen');

  const server = net.createServer({ allowHalfOpen: mode !== 'naive', pauseOnConnect: mode !== 'naive' });
  const host =
    mode === 'pool'
      ? startPool(server, targets, values.balancer, values.teardown)
      : mode === 'pinned'
        ? startPinned(server, targets)
        : mode === 'sockets'
          ? startSockets(server, targets, values.track)
          : startNaive(server, targets);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: listen.host, port: listen.port, backlog: 4096 }, () => resolve());
  });
  const { address, port } = server.address() as AddressInfo;
  process.stdout.write(`listening ${address}:${port}\n`);

  const reply = (word: string, payload: unknown): void => {
    process.stdout.write(`${word} ${typeof payload === 'string' ? payload : JSON.stringify(payload)}\n`);
  };
  createInterface({ input: process.stdin }).on('line', (line) => {
    const [cmd, arg] = line.trim().split(/\s+/);
    const pool = host.pool;
    try {
      if (cmd === 'stats') reply('stats', { active: host.active() });
      else if (cmd === 'mem') reply('mem', memory());
      else if (cmd === 'heapsnapshot' && arg !== undefined) {
        memory();
        reply('heapsnapshot', writeHeapSnapshot(arg));
      }
      else if (cmd === 'add' && pool && arg !== undefined) reply('added', pool.add(parseHostPort(arg)).id);
      else if (cmd === 'markdown' && pool && arg !== undefined) {
        timeMarkDown(pool, arg).then(
          (r) => reply('markdown', r),
          (err: unknown) => reply('markdown', { error: String(err) }),
        );
      } else if (cmd === 'teardown' && host.pairs !== undefined) {
        timeFloorTeardown(host.pairs).then(
          (r) => reply('teardown', r),
          (err: unknown) => reply('teardown', { error: String(err) }),
        );
      } else reply('error', `unknown command ${line}`);
    } catch (err) {
      reply('error', String(err));
    }
  });
  const stop = (): void => {
    server.close();
    // Exit (rather than die by signal) so --cpu-prof writes its profile.
    if (host.pool) host.pool.destroy().then(() => process.exit(0), () => process.exit(0));
    else process.exit(0);
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`node-proxy: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
