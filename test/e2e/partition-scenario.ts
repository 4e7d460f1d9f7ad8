/**
 * One silent-failure scenario, run inside a fresh network namespace by
 * partition.test.ts:
 *
 * ```sh
 * unshare -n -- node --import tsx test/e2e/partition-scenario.ts partition|rejoin|sigstop
 * ```
 *
 * Three apiserver backends (127.0.0.2-4:6443, each its own process), the
 * reference balancer as a user runs it (127.0.0.1:6443, status on
 * 127.0.0.1:9090), 60 reflector-like watches through it; then 127.0.0.4 is
 * cut off with nftables (or its process frozen with SIGSTOP) and the streams'
 * recovery is measured. In `rejoin`, the cut then heals: the backend must be
 * checked up again, and the balancer must spread the 60 streams over the
 * three again (slow start, rebalancing). Prints progress on stderr and one line
 * `E2E_RESULT {json}` on stdout; the test asserts on the JSON. Exits 0 when
 * the scenario ran (whatever it measured), 1 when it could not.
 *
 * Every process it starts is killed by pid on the way out, even on failure or
 * a signal, and the namespace goes with this process.
 *
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { createInterface } from 'node:readline';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { WatchEvent } from '../../examples/support/apiserver-backend.js';
import { certPaths } from '../../examples/support/certs.js';
import { applyNftRuleset, liftNftFault, nftCutRuleset, setUpLoopback } from '../../examples/support/nft-cut.js';
import { WatchFleet, type WatchClient } from '../../examples/support/watch-client.js';
import { healBoundMs, healSpread, probeSettings, recoveryBoundMs, scenarioCases, type ScenarioCase } from './partition-settings.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

const STREAMS = 60;
const backends = [
  { name: 'b2', host: '127.0.0.2', id: '127.0.0.2:6443' },
  { name: 'b3', host: '127.0.0.3', id: '127.0.0.3:6443' },
  { name: 'b4', host: '127.0.0.4', id: '127.0.0.4:6443' },
] as const;
const victim = backends[2];
const STATUS = { host: '127.0.0.1', port: 9090 };

/** What the scenario measured, printed as JSON for the test. */
export interface ScenarioResult {
  case: ScenarioCase;
  error?: string;
  streams: number;
  /** Streams on the failed backend when it failed. */
  victims: number;
  /** Victims that got data from a live backend again within the bound. */
  recovered: number;
  /** Victims that never did. */
  lost: number;
  /** ms from the fault to each victim's first event from a live backend, sorted. */
  recoveryMs: number[];
  p50: number | undefined;
  p99: number | undefined;
  max: number | undefined;
  boundMs: number;
  /** Streams without an event for over 1.5 s at the end. */
  stalled: number;
  /** Streams whose last event came from a live backend, recently. */
  flowingOnLive: number;
  /** `/stats` of the failed backend at the end. */
  deadBackend: { state: string; active: number; lastCheckCode: string | undefined } | undefined;
  /** Down transitions the balancer logged for the failed backend. */
  downLines: string[];
  /** rejoin: ms from removing the rule to the backend being up in `/stats`. */
  markedUpAfterMs?: number | undefined;
  /** rejoin: of the new streams opened after it came back, how many it serves. */
  newStreamsOnRejoined?: number | undefined;
  newStreams?: number | undefined;
  /** rejoin: the 60 streams after the heal. */
  heal?: HealResult | undefined;
  /** Exit code of the balancer after SIGTERM at the end (0 expected). */
  balancerExit: number | null | undefined;
  balancerLog: string[];
}

/** What the heal phase of `rejoin` measured. */
export interface HealResult {
  /** ms from removing the rule to every backend carrying healSpread streams; undefined: not within healBoundMs. */
  spreadAfterMs: number | undefined;
  /** Streams per backend then (or at the bound). */
  spread: Record<string, number>;
  /** Streams per backend 3 s later, at the end of the phase. */
  finalSpread: Record<string, number>;
  /** Streams without an event for over 2.5 s at the end of the phase. */
  stalled: number;
  /** Re-watches of the 60 streams since they opened (cut and moves together). */
  reconnects: number;
  /** Connections the balancer closed to move them (`teardowns.rebalanced` in /stats). */
  moved: number;
  /** The balancer's rebalancing summary line, if it logged one. */
  rebalancedLine: string | undefined;
}

const children = new Set<ChildProcess>();
const stopped = new Set<ChildProcess>();

function progress(message: string): void {
  process.stderr.write(`[scenario ${new Date().toISOString()}] ${message}\n`);
}

/** Kills every child still running, by pid, at once (used on exit and on signals). */
function killAllNow(): void {
  for (const child of children) {
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) continue;
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

process.on('exit', killAllNow);
for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
  process.on(signal, () => {
    progress(`${signal}: killing ${children.size} children`);
    killAllNow();
    process.exit(1);
  });
}

interface Spawned {
  readonly child: ChildProcess;
  readonly lines: string[];
  /** The text after `listening `. */
  readonly listening: string;
}

/** Spawns `node --import tsx <script> ...args` (the node process itself, so signals reach it) and waits for `listening`. */
async function spawnNode(label: string, script: string, args: readonly string[], keepLines = false): Promise<Spawned> {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  const lines: string[] = [];
  createInterface({ input: child.stderr }).on('line', (line) => progress(`${label} stderr: ${line}`));
  const listening = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${label}: no "listening" line within 20 s`)), 20_000);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${label} exited (${code ?? signal}) before listening: ${lines.join(' | ')}`));
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (keepLines || lines.length < 20) lines.push(line);
      if (line.startsWith('listening ')) {
        clearTimeout(timer);
        resolve(line.slice('listening '.length));
      }
    });
  });
  return { child, lines, listening };
}

async function stopChild(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  if (stopped.has(child)) child.kill('SIGCONT');
  child.kill('SIGTERM');
  const code = await Promise.race([exited, delay(5000).then(() => 'timeout' as const)]);
  if (code !== 'timeout') return code;
  child.kill('SIGKILL');
  await exited;
  return null;
}

interface BackendStats {
  id: string;
  state: string;
  active: number;
}
interface Stats {
  backends: BackendStats[];
  teardowns: Record<string, number>;
  probe: { backends: Record<string, { last?: { code?: string } }> };
}

function getStats(): Promise<Stats> {
  return new Promise((resolve, reject) => {
    const req = request({ ...STATUS, path: '/stats', agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        try {
          resolve(JSON.parse(body) as Stats);
        } catch (err) {
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('/stats timed out')));
    req.on('error', reject);
    req.end();
  });
}

async function waitForStats(predicate: (stats: Stats) => boolean, timeoutMs: number, what: string): Promise<Stats> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const stats = await getStats();
    if (predicate(stats)) return stats;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(stats.backends)}`);
    await delay(50);
  }
}

const cutRuleset = nftCutRuleset(victim.host);

/** Drops every packet to and from the victim. */
async function cut(): Promise<void> {
  await applyNftRuleset(cutRuleset);
}

async function uncut(): Promise<void> {
  await liftNftFault();
}

async function setUpNetwork(): Promise<void> {
  await setUpLoopback(backends.map((b) => b.host));
}

function percentile(sorted: readonly number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** Watches the fleet's events: the last backend each client heard from, and when victims heard from a live one. */
class Recorder {
  readonly lastBackend = new Map<WatchClient, string>();
  readonly recoveredAt = new Map<WatchClient, number>();
  victims = new Set<WatchClient>();
  faultAt = 0;

  constructor(fleet: WatchFleet) {
    for (const client of fleet.clients) this.follow(client);
  }

  follow(client: WatchClient): void {
    client.on('received', (event: WatchEvent) => {
      this.lastBackend.set(client, event.backend);
      if (this.faultAt > 0 && this.victims.has(client) && event.backend !== victim.name && !this.recoveredAt.has(client)) {
        this.recoveredAt.set(client, Date.now());
      }
    });
  }
}

async function scenario(which: ScenarioCase, result: ScenarioResult): Promise<void> {
  await setUpNetwork();
  progress('namespace ready; starting backends');
  const backendProcs = await Promise.all(
    backends.map((b) => spawnNode(b.name, 'examples/support/apiserver-backend.ts', ['--name', b.name, '--listen', `${b.host}:6443`])),
  );
  const victimProc = backendProcs[2]!.child;
  progress('starting the balancer');
  const balancer = await spawnNode(
    'balancer',
    'examples/apiserver-balancer.ts',
    [
      '--listen', '127.0.0.1:6443',
      ...backends.flatMap((b) => ['--backend', `${b.host}:6443`]),
      '--interval', String(probeSettings.interval),
      '--timeout', String(probeSettings.timeout),
      '--fall', String(probeSettings.fall),
      '--rise', String(probeSettings.rise),
      '--ca', certPaths.ca,
      '--status', `${STATUS.host}:${STATUS.port}`,
    ],
    true,
  );
  result.balancerLog = balancer.lines;
  try {
    // Spread needs every backend up before the first client arrives.
    await waitForStats((s) => s.backends.every((b) => b.state === 'up'), 15_000, 'every backend up');
    progress(`balancer up; opening ${STREAMS} watches`);
    const fleet = new WatchFleet({ size: STREAMS, host: '127.0.0.1', port: 6443, backoffMs: 50 });
    const extra: WatchFleet[] = [];
    try {
      const recorder = new Recorder(fleet);
      await fleet.waitFor((f) => f.connectedCount === STREAMS && backends.every((b) => (f.byBackend()[b.name] ?? 0) > 0), 20_000);
      // Every stream has had its first event.
      await fleet.waitFor((f) => f.clients.every((c) => c.lastEventAt !== undefined), 10_000);
      progress(`spread: ${JSON.stringify(fleet.byBackend())}`);

      recorder.victims = new Set(fleet.clients.filter((c) => c.backend === victim.name));
      result.victims = recorder.victims.size;
      recorder.faultAt = Date.now();
      if (which === 'sigstop') {
        victimProc.kill('SIGSTOP');
        stopped.add(victimProc);
        progress(`SIGSTOP ${victim.name} (pid ${victimProc.pid})`);
      } else {
        await cut();
        progress(`nft: ${victim.host} cut off`);
      }

      // Every victim back on a live backend, or the bound.
      await fleet
        .waitFor(() => recorder.recoveredAt.size === recorder.victims.size, recoveryBoundMs)
        .catch(() => progress(`bound reached with ${recorder.recoveredAt.size}/${recorder.victims.size} recovered`));
      // A while longer, so "flowing" means flowing, not one event. The window
      // is longer than the stall threshold below, so a stream stuck since the
      // cut is always caught, while a loaded machine has 2.5 s of slack
      // before a healthy stream (an event every 200 ms) counts as stalled.
      await delay(3000);

      const recovery = Array.from(recorder.recoveredAt.values(), (at) => at - recorder.faultAt).sort((a, b) => a - b);
      result.recoveryMs = recovery;
      result.recovered = recovery.length;
      result.lost = recorder.victims.size - recovery.length;
      result.p50 = percentile(recovery, 50);
      result.p99 = percentile(recovery, 99);
      result.max = recovery.at(-1);
      result.stalled = fleet.stalled(2500).length;
      const now = Date.now();
      result.flowingOnLive = fleet.clients.filter(
        (c) => c.lastEventAt !== undefined && now - c.lastEventAt < 2500 && recorder.lastBackend.get(c) !== victim.name,
      ).length;
      const stats = await getStats();
      const dead = stats.backends.find((b) => b.id === victim.id);
      result.deadBackend = dead && { state: dead.state, active: dead.active, lastCheckCode: stats.probe.backends[victim.id]?.last?.code };
      result.downLines = balancer.lines.filter((l) => l.includes(`backend ${victim.id} up -> down`));
      progress(`recovered ${result.recovered}/${result.victims}; p50 ${result.p50} p99 ${result.p99} max ${result.max} ms`);

      if (which === 'rejoin') {
        const restoredAt = Date.now();
        await uncut();
        progress('nft: rule removed');
        await waitForStats((s) => s.backends.find((b) => b.id === victim.id)?.state === 'up', recoveryBoundMs, `${victim.id} up again`);
        result.markedUpAfterMs = Date.now() - restoredAt;
        progress(`marked up after ${result.markedUpAfterMs} ms; waiting for the 60 streams to spread again`);

        // The heal: the streams that piled up on b2 and b3 move back, until
        // every backend carries its share again (within the bound).
        const spreadOut = (f: WatchFleet): boolean =>
          f.connectedCount === STREAMS &&
          backends.every((b) => {
            const n = f.byBackend()[b.name] ?? 0;
            return n >= healSpread.min && n <= healSpread.max;
          });
        const spreadDeadline = restoredAt + healBoundMs;
        const spreadAt = await fleet
          .waitFor(spreadOut, Math.max(1, spreadDeadline - Date.now()))
          .then(
            () => Date.now(),
            () => undefined,
          );
        const heal: HealResult = {
          spreadAfterMs: spreadAt === undefined ? undefined : spreadAt - restoredAt,
          spread: fleet.byBackend(),
          finalSpread: {},
          stalled: 0,
          reconnects: 0,
          moved: 0,
          rebalancedLine: undefined,
        };
        result.heal = heal;
        progress(`spread ${spreadAt === undefined ? 'NOT ' : ''}restored ${heal.spreadAfterMs ?? healBoundMs} ms after the heal: ${JSON.stringify(heal.spread)}`);
        // A while longer, as after the cut: no stream may be left stuck, and the spread must hold.
        await delay(3000);
        heal.finalSpread = fleet.byBackend();
        heal.stalled = fleet.stalled(2500).length;
        // Re-watches first, moves second: a move is counted when its pair has
        // closed, which can be a moment after its client re-watched.
        heal.reconnects = fleet.reconnects;
        heal.moved = (await getStats()).teardowns['rebalanced'] ?? 0;
        heal.rebalancedLine = balancer.lines.find((l) => / rebalanced: /.test(l));
        progress(`after the heal: ${JSON.stringify(heal.finalSpread)}, ${heal.stalled} stalled, ${heal.reconnects} re-watches, ${heal.moved} moved`);

        const fresh = new WatchFleet({ size: 12, host: '127.0.0.1', port: 6443, backoffMs: 50, idPrefix: 'fresh' });
        extra.push(fresh);
        await fresh.waitFor((f) => f.connectedCount === 12, 20_000);
        result.newStreams = 12;
        result.newStreamsOnRejoined = fresh.byBackend()[victim.name] ?? 0;
        progress(`marked up after ${result.markedUpAfterMs} ms; new streams ${JSON.stringify(fresh.byBackend())}`);
      }
    } finally {
      await Promise.all([fleet.stop(), ...extra.map((f) => f.stop())]);
    }
  } finally {
    if (stopped.has(victimProc)) victimProc.kill('SIGCONT');
    // No client left: the drain is immediate, and the exit code must be 0.
    result.balancerExit = await stopChild(balancer.child);
    await Promise.all(backendProcs.map((b) => stopChild(b.child)));
  }
}

async function main(): Promise<void> {
  const which = process.argv[2] as ScenarioCase;
  if (!(scenarioCases as readonly string[]).includes(which)) {
    process.stderr.write(`usage: partition-scenario.ts ${scenarioCases.join('|')}\n`);
    process.exit(2);
  }
  const result: ScenarioResult = {
    case: which,
    streams: STREAMS,
    victims: 0,
    recovered: 0,
    lost: 0,
    recoveryMs: [],
    p50: undefined,
    p99: undefined,
    max: undefined,
    boundMs: recoveryBoundMs,
    stalled: 0,
    flowingOnLive: 0,
    deadBackend: undefined,
    downLines: [],
    balancerExit: undefined,
    balancerLog: [],
  };
  let failed = false;
  // A hard stop, well inside the test's own timeout.
  const watchdog = setTimeout(() => {
    result.error = 'scenario watchdog: 85 s';
    process.stdout.write(`E2E_RESULT ${JSON.stringify(result)}\n`);
    killAllNow();
    process.exit(1);
  }, 85_000).unref();
  try {
    await scenario(which, result);
  } catch (err) {
    failed = true;
    result.error = err instanceof Error ? err.message : String(err);
  } finally {
    clearTimeout(watchdog);
    killAllNow();
  }
  process.stdout.write(`E2E_RESULT ${JSON.stringify(result)}\n`);
  process.exitCode = failed ? 1 : 0;
}

await main();
