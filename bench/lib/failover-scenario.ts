/**
 * The failover bench's scenario, run inside a private network namespace by
 * bench/failover.ts (the same setup as test/e2e/partition-scenario.ts):
 *
 * ```sh
 * unshare -n -- node --import tsx bench/lib/failover-scenario.ts '{"sizes":[60],"rounds":1,...}'
 * ```
 *
 * Three apiserver-like HTTPS backends (127.0.0.2–4:6443, one process each),
 * then for every round, stream count and contender (in rotating order): the
 * contender on 127.0.0.1, a fleet of reflector-like watches through it,
 * 127.0.0.4 cut off with an nftables drop rule both ways, and the time until
 * each stream that was on it receives an event from a live backend again.
 * Streams that have not within the window are stuck. Prints
 * `FAILOVER_RESULT {json}` on stdout; progress on stderr.
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { WatchEvent } from '../../examples/support/apiserver-backend.js';
import { certPaths, loadCerts } from '../../examples/support/certs.js';
import { applyNftRuleset, liftNftFault, nftCutRuleset, setUpLoopback } from '../../examples/support/nft-cut.js';
import { WatchFleet, type WatchClient } from '../../examples/support/watch-client.js';
import { startNodeProxy } from './contenders.js';
import { benchContext } from './context.js';
import { startPeer, waitForPort } from './peers.js';
import { cpuSeconds, freePort, nodeTs, sleep, startChild, type Child } from './proc.js';


/** The contenders of the failover bench. */
export type FailoverContender = 'balancer' | 'balancer-workers2' | 'haproxy' | 'haproxy-noshutdown' | 'nginx' | 'naive' | 'direct';

/** What the outer bench asks for. */
export interface ScenarioInput {
  readonly sizes: readonly number[];
  readonly rounds: number;
  readonly contenders: readonly FailoverContender[];
  /** Contenders run in the first round only (those with no way to recover: every round ends the same). */
  readonly firstRoundOnly: readonly FailoverContender[];
  readonly probe: { readonly interval: number; readonly timeout: number; readonly fall: number; readonly rise: number };
  /** Time allowed to every connect to a backend, for every contender, in ms. */
  readonly connectTimeout: number;
  /** How long after the cut a stream may take before it counts as stuck, in ms. */
  readonly windowMs: number;
}

/** One contender, one stream count, one round. */
export interface Trial {
  readonly contender: FailoverContender;
  readonly size: number;
  readonly round: number;
  /** Streams on the cut backend at the cut. */
  readonly victims: number;
  /** ms from the cut to each victim's first event from a live backend, sorted. */
  readonly recoveryMs: readonly number[];
  /** Victims without an event from a live backend at the end of the window. */
  readonly stuck: number;
  /** Every stream (victims or not) that had received nothing for 2 s when the trial ended. */
  readonly stalledAtEnd: number;
  /** The balancer's: ms from the cut to its `up -> down` line for the cut backend (detection); the rest of a stream's recovery comes after it. */
  readonly downAfterMs?: number | undefined;
  /**
   * Connection attempts a listener in the namespace dropped from the cut (or
   * the storm's start) to the end of the trial (TcpExt ListenDrops: its
   * accept queue was full). Each is a client waiting for TCP's SYN
   * retransmission, a second or more.
   */
  readonly listenDrops?: number | undefined;
  /**
   * CPU seconds spent from the cut (or the storm's start) until the last
   * victim recovered (or the window closed), by the proxy's process tree,
   * the backends' processes and this process (every watch client).
   */
  readonly cpu?: { readonly proxy: number; readonly backends: number; readonly clients: number } | undefined;
  /**
   * Milliseconds from the cut, p50/p99/max over the victims: when each saw
   * its stream end (the proxy's teardown reaching it), and when its next
   * watch was answered (HTTP 200 from a live backend: TLS handshake and
   * request through the proxy done). Recovery is the first event after that.
   */
  readonly phases?: { readonly ended: readonly number[]; readonly answered: readonly number[] } | undefined;
  /**
   * The longest event-loop delay of this process (the watch clients) over
   * the same span, in ms: how long the load generator itself held a turn.
   */
  readonly clientLoopMaxMs?: number | undefined;
  /** The balancer's: connections each of its processes (each worker, with `--workers`) accepted from the cut to the end of the trial. */
  readonly acceptedBy?: readonly number[] | undefined;
  readonly error?: string | undefined;
}

const backends = [
  { name: 'b2', host: '127.0.0.2' },
  { name: 'b3', host: '127.0.0.3' },
  { name: 'b4', host: '127.0.0.4' },
] as const;
const victim = backends[2];
const BACKEND_PORT = 6443;
/** Streams opened at once while setting a trial up. */
const OPEN_BATCH = 250;

const cutRuleset = nftCutRuleset(victim.host);

const ctx = benchContext();

/** The backends' pids, for their CPU time. */
const backendPids: number[] = [];

/** Starts counting CPU seconds of the proxy (if any), the backends and this process. */
function cpuMeter(proxyPid: number | undefined): () => NonNullable<Trial['cpu']> {
  const proxy = (): number => (proxyPid === undefined ? 0 : cpuSeconds(proxyPid, true));
  const backendsCpu = (): number => backendPids.reduce((n, pid) => n + cpuSeconds(pid, true), 0);
  const clients = (): number => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  };
  const p0 = proxy();
  const b0 = backendsCpu();
  const c0 = clients();
  return () => ({ proxy: proxy() - p0, backends: backendsCpu() - b0, clients: clients() - c0 });
}

/** The TcpExt and Tcp counters of this network namespace (/proc/net/netstat and /proc/net/snmp). */
function tcpCounters(): Map<string, number> {
  const out = new Map<string, number>();
  for (const file of ['/proc/net/netstat', '/proc/net/snmp']) {
    const lines = readFileSync(file, 'utf8').split('\n');
    for (let i = 0; i + 1 < lines.length; i += 2) {
      const names = lines[i]!.split(/\s+/);
      const values = lines[i + 1]!.split(/\s+/);
      const prefix = names[0]!;
      if (prefix !== 'TcpExt:' && prefix !== 'Tcp:') continue;
      for (let j = 1; j < names.length; j++) out.set(`${prefix.slice(0, -1)}.${names[j]!}`, Number(values[j]));
    }
  }
  return out;
}

/** TcpExt ListenDrops of this network namespace (every listener in it). */
function listenDrops(): number {
  return tcpCounters().get('TcpExt.ListenDrops') ?? 0;
}

/** The counters that moved between two readings, for the verbose log. */
function movedCounters(before: Map<string, number>): string {
  const moved: string[] = [];
  for (const [k, v] of tcpCounters()) {
    const d = v - (before.get(k) ?? 0);
    if (d !== 0 && /Retrans|Timeout|Drop|Overflow|Syn|Cookie|Abort|Reset|Rst|QFull/i.test(k)) moved.push(`${k}=${d}`);
  }
  return moved.join(' ');
}

async function setUpNetwork(): Promise<void> {
  await setUpLoopback(backends.map((b) => b.host));
}

/** GET `url` over HTTPS (fixture CA) or HTTP; resolves with the status, rejects on error or after `timeoutMs`. */
function get(url: string, timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const options = { host: u.hostname, port: Number(u.port), path: u.pathname, agent: false as const, timeout: timeoutMs };
    const req = u.protocol === 'https:' ? httpsRequest({ ...options, ca: loadCerts().ca }) : httpRequest(options);
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

async function until(what: string, timeoutMs: number, fn: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await fn().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

interface Running {
  readonly port: number;
  /** The proxy's main pid, its process tree counted. */
  readonly pid: number;
  stop(): Promise<void>;
  /** Connections accepted so far by each of the balancer's processes, from its `/stats` (this package's balancer only). */
  acceptedTotals?: (() => Promise<number[]>) | undefined;
  /** Resolves when the balancer logs the cut backend down (this package's balancer only). */
  markedDown?: ((timeoutMs: number) => Promise<void>) | undefined;
}

async function startContender(name: FailoverContender, input: ScenarioInput): Promise<Running> {
  const upstreams = backends.map((b) => ({ host: b.host, port: BACKEND_PORT }));
  const { interval, timeout, fall, rise } = input.probe;
  if (name === 'balancer' || name === 'balancer-workers2') {
    const port = await freePort();
    const status = await freePort();
    const [cmd, args] = nodeTs('examples/apiserver-balancer.ts', [
      '--listen', `127.0.0.1:${port}`,
      ...upstreams.flatMap((u) => ['--backend', `${u.host}:${u.port}`]),
      '--check', 'https:/readyz',
      '--ca', certPaths.ca,
      '--interval', String(interval),
      '--timeout', String(timeout),
      '--fall', String(fall),
      '--rise', String(rise),
      '--connect-timeout', String(input.connectTimeout),
      '--status', `127.0.0.1:${status}`,
      ...(name === 'balancer-workers2' ? ['--workers', '2'] : []),
    ]);
    // detached: with --workers the primary's workers go with it.
    const child = startChild(cmd, args, { detached: name === 'balancer-workers2' });
    await child.waitForLine(/^listening /, 20_000);
    await until('every backend up in the balancer', 15_000, async () => {
      const { body } = await get(`http://127.0.0.1:${status}/stats`, 2000);
      const stats = JSON.parse(body) as { backends: { state: string }[] };
      return stats.backends.length === 3 && stats.backends.every((b) => b.state === 'up');
    });
    const down = new RegExp(`backend ${victim.host.replaceAll('.', '\\.')}:${BACKEND_PORT} up -> down`);
    const acceptedTotals = async (): Promise<number[]> => {
      const { body } = await get(`http://127.0.0.1:${status}/stats`, 5000);
      const doc = JSON.parse(body) as { total: number; workers?: { total?: number }[] };
      return doc.workers?.map((w) => w.total ?? 0) ?? [doc.total];
    };
    return { port, pid: child.pid, stop: () => child.stop(), acceptedTotals, markedDown: (timeoutMs) => child.waitForLine(down, timeoutMs).then(() => undefined) };
  }
  if (name === 'naive') {
    const child: Child = await startNodeProxy(ctx, 'naive', upstreams);
    const m = await child.waitForLine(/^listening (.+):(\d+)$/);
    return { port: Number(m[2]), pid: child.pid, stop: () => child.stop() };
  }
  if (name === 'nginx') {
    const peer = await startPeer('nginx', { upstreams, connectTimeoutMs: input.connectTimeout });
    return { port: peer.port, pid: peer.pid, stop: () => peer.stop() };
  }
  // HAProxy: the same probe as the balancer's, over TLS without verification.
  const shutdown = name === 'haproxy' ? ' on-marked-down shutdown-sessions' : '';
  const peer = await startPeer('haproxy', {
    upstreams,
    connectTimeoutMs: input.connectTimeout,
    haproxyBackendLines: ['option httpchk GET /readyz', `timeout check ${timeout}ms`, 'option redispatch', 'retries 2'],
    haproxyServerOptions: `check check-ssl verify none inter ${interval} fall ${fall} rise ${rise}${shutdown}`,
  });
  return { port: peer.port, pid: peer.pid, stop: () => peer.stop() };
}

/**
 * The reconnect floor: no balancer. The streams the cut would move (a third)
 * open at one instant straight to the two surviving backends, while the other
 * two thirds stream from them as before; the time from that instant to each
 * one's first event is what reconnecting costs by itself (TLS handshakes and
 * the backends' accept loops under a storm). A balancer's recovery cannot
 * beat detection plus this.
 */
async function floorTrial(size: number, round: number, input: ScenarioInput): Promise<Trial> {
  const live = backends.filter((b) => b !== victim);
  const moving = Math.round(size / backends.length);
  const fleets: WatchFleet[] = [];
  try {
    for (const [i, b] of live.entries()) {
      const total = Math.floor((size - moving) / live.length) + (i < (size - moving) % live.length ? 1 : 0);
      for (let opened = 0; opened < total; opened += OPEN_BATCH) {
        const n = Math.min(OPEN_BATCH, total - opened);
        const batch = new WatchFleet({ size: n, host: b.host, port: BACKEND_PORT, backoffMs: 50, idPrefix: `direct-${b.name}-${opened}` });
        fleets.push(batch);
        await batch.waitFor((x) => x.clients.every((c) => c.lastEventAt !== undefined), 60_000);
      }
    }
    await sleep(1000);
    const firstAt = new Map<WatchClient, number>();
    const drops0 = listenDrops();
    const cpu = cpuMeter(undefined);
    const loop = monitorEventLoopDelay({ resolution: 10 });
    loop.enable();
    const startedAt = Date.now();
    let onAll: () => void = () => {};
    const all = new Promise<void>((resolve) => (onAll = resolve));
    const movers = live.map(
      (b, i) => new WatchFleet({ size: Math.floor(moving / live.length) + (i < moving % live.length ? 1 : 0), host: b.host, port: BACKEND_PORT, backoffMs: 50, idPrefix: `direct-move-${b.name}` }),
    );
    fleets.push(...movers);
    for (const c of movers.flatMap((m) => m.clients)) {
      c.once('received', () => {
        firstAt.set(c, Date.now());
        if (firstAt.size === moving) onAll();
      });
    }
    ctx.log(`failover direct ${size} round ${round + 1}: ${moving} streams reconnect at once straight to the two live backends`);
    await Promise.race([all, sleep(input.windowMs)]);
    const used = cpu();
    loop.disable();
    const recoveryMs = Array.from(firstAt.values(), (at) => at - startedAt).sort((a, b) => a - b);
    return {
      contender: 'direct',
      size,
      round,
      victims: moving,
      recoveryMs,
      stuck: moving - firstAt.size,
      stalledAtEnd: 0,
      listenDrops: listenDrops() - drops0,
      cpu: used,
      clientLoopMaxMs: loop.max / 1e6,
    };
  } finally {
    await Promise.all(fleets.map((f) => f.stop()));
  }
}

async function trial(name: FailoverContender, size: number, round: number, input: ScenarioInput): Promise<Trial> {
  if (name === 'direct') return floorTrial(size, round, input);
  const proxy = await startContender(name, input);
  const fleets: WatchFleet[] = [];
  let cut = false;
  try {
    // Opened in batches of 250: 3,000 TLS handshakes started at one instant
    // on two loaded cores all progress together and none completes for
    // minutes (0 of 3,000 after 60 s); batches make the setup bounded.
    for (let opened = 0; opened < size; opened += OPEN_BATCH) {
      const n = Math.min(OPEN_BATCH, size - opened);
      const batch = new WatchFleet({ size: n, host: '127.0.0.1', port: proxy.port, backoffMs: 50, idPrefix: `${name}-${size}-${opened}` });
      fleets.push(batch);
      await batch.waitFor((x) => x.connectedCount === n && x.clients.every((c) => c.lastEventAt !== undefined), 60_000);
    }
    const clients = fleets.flatMap((x) => x.clients);
    const byBackend = (): Record<string, number> => {
      const counts: Record<string, number> = {};
      for (const x of fleets) for (const [k, v] of Object.entries(x.byBackend())) counts[k] = (counts[k] ?? 0) + v;
      return counts;
    };
    const stalled = (ms: number): number => fleets.reduce((n, x) => n + x.stalled(ms).length, 0);
    const f = { clients, byBackend };
    if (!backends.every((b) => (f.byBackend()[b.name] ?? 0) > 0)) throw new Error(`streams not spread over every backend: ${JSON.stringify(f.byBackend())}`);
    // Let checks and streams settle before the fault.
    await sleep(1000);

    const victims = new Set<WatchClient>(f.clients.filter((c) => c.backend === victim.name));
    const recoveredAt = new Map<WatchClient, number>();
    const endedAt = new Map<WatchClient, number>();
    const answeredAt = new Map<WatchClient, number>();
    let faultAt = 0;
    let onAll: () => void = () => {};
    const all = new Promise<void>((resolve) => (onAll = resolve));
    for (const c of victims) {
      const ended = (): void => {
        if (faultAt > 0 && !endedAt.has(c)) endedAt.set(c, Date.now());
      };
      c.on('closed', ended);
      c.on('error', ended);
      c.on('connected', () => {
        if (endedAt.has(c) && !answeredAt.has(c)) answeredAt.set(c, Date.now());
      });
      c.on('received', (event: WatchEvent) => {
        if (faultAt > 0 && event.backend !== victim.name && !recoveredAt.has(c)) {
          recoveredAt.set(c, Date.now());
          if (recoveredAt.size === victims.size) onAll();
        }
      });
    }
    const accepted0 = await proxy.acceptedTotals?.();
    const drops0 = listenDrops();
    const counters0 = tcpCounters();
    const loop = monitorEventLoopDelay({ resolution: 10 });
    loop.enable();
    const cpu = cpuMeter(proxy.pid);
    await applyNftRuleset(cutRuleset);
    cut = true;
    faultAt = Date.now();
    let downAt: number | undefined;
    proxy.markedDown?.(input.windowMs).then(
      () => (downAt = Date.now()),
      () => undefined,
    );
    ctx.log(`failover ${name} ${size} round ${round + 1}: cut ${victim.host} with ${victims.size} streams on it`);
    await Promise.race([all, sleep(input.windowMs)]);
    const used = cpu();
    const recoveryMs = Array.from(recoveredAt.values(), (at) => at - faultAt).sort((a, b) => a - b);
    const spread = (m: Map<WatchClient, number>): number[] => {
      const xs = Array.from(m.values(), (at) => at - faultAt).sort((a, b) => a - b);
      return xs.length === 0 ? [] : [xs[Math.floor(0.5 * (xs.length - 1))]!, xs[Math.floor(0.99 * (xs.length - 1))]!, xs.at(-1)!];
    };
    const phases = { ended: spread(endedAt), answered: spread(answeredAt) };
    loop.disable();
    const accepted1 = accepted0 === undefined ? undefined : await proxy.acceptedTotals?.();
    const acceptedBy = accepted1?.map((t, i) => t - (accepted0?.[i] ?? 0));
    if (acceptedBy !== undefined) ctx.log(`failover ${name} ${size} round ${round + 1}: connections accepted since the cut, by process: ${acceptedBy.join('/')}`);
    ctx.log(`failover ${name} ${size} round ${round + 1}: TCP counters that moved: ${movedCounters(counters0)}; this process's event loop delay max ${(loop.max / 1e6).toFixed(0)} ms, p99 ${(loop.percentile(99) / 1e6).toFixed(0)} ms`);
    ctx.log(`failover ${name} ${size} round ${round + 1}: stream ended p50/p99/max ${phases.ended.join('/')} ms, next watch answered ${phases.answered.join('/')} ms, first event p99 ${recoveryMs[Math.floor(0.99 * (recoveryMs.length - 1))] ?? '-'} ms`);
    return {
      contender: name,
      size,
      round,
      victims: victims.size,
      recoveryMs,
      stuck: victims.size - recoveredAt.size,
      stalledAtEnd: stalled(2000),
      downAfterMs: downAt === undefined ? undefined : downAt - faultAt,
      listenDrops: listenDrops() - drops0,
      cpu: used,
      phases,
      clientLoopMaxMs: loop.max / 1e6,
      acceptedBy,
    };
  } finally {
    await Promise.all(fleets.map((x) => x.stop()));
    await proxy.stop();
    if (cut) await liftNftFault();
    // The cut backend must serve again before the next trial.
    await until(`${victim.host} ready again`, 10_000, async () => (await get(`https://${victim.host}:${BACKEND_PORT}/readyz`, 1000)).status === 200);
  }
}

async function main(): Promise<void> {
  const input = JSON.parse(process.argv[2] ?? '{}') as ScenarioInput;
  await setUpNetwork();
  const procs: Child[] = [];
  const trials: Trial[] = [];
  try {
    for (const b of backends) {
      // node itself (not the tsx wrapper), so signals reach the server.
      // Thousands of streams each ticking every 200 ms kept two loaded cores
      // busy with events alone (batches of 250 stopped connecting past
      // ~1,500 streams): large runs tick once a second. The first event of a
      // watch is sent at once either way, so recovery is measured alike.
      const tick = Math.max(...input.sizes) >= 1000 ? '1000' : '200';
      const [cmd, args] = nodeTs('examples/support/apiserver-backend.ts', ['--name', b.name, '--listen', `${b.host}:${BACKEND_PORT}`, '--watch-interval-ms', tick]);
      const child = startChild(cmd, args);
      procs.push(child);
      backendPids.push(child.pid);
      await child.waitForLine(/^listening /, 20_000);
      await waitForPort(b.host, BACKEND_PORT);
    }
    for (let round = 0; round < input.rounds; round++) {
      for (const size of input.sizes) {
        const names = input.contenders.filter((c) => round === 0 || !input.firstRoundOnly.includes(c));
        const n = names.length;
        for (let i = 0; i < n; i++) {
          const name = names[(i + round) % n]!;
          try {
            const t = await trial(name, size, round, input);
            ctx.log(`failover ${name} ${size} round ${round + 1}: ${t.recoveryMs.length}/${t.victims} recovered, ${t.stuck} stuck, max ${t.recoveryMs.at(-1) ?? '-'} ms`);
            trials.push(t);
          } catch (err) {
            const error = err instanceof Error ? err.message : String(err);
            ctx.warn(`failover ${name} ${size} round ${round + 1} failed: ${error}`);
            trials.push({ contender: name, size, round, victims: 0, recoveryMs: [], stuck: 0, stalledAtEnd: 0, error });
          }
        }
      }
    }
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
  }
  process.stdout.write(`FAILOVER_RESULT ${JSON.stringify({ trials })}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stdout.write(`FAILOVER_RESULT ${JSON.stringify({ error: err instanceof Error ? err.message : String(err), trials: [] })}\n`);
    process.exit(1);
  },
);
