/**
 * `npm run demo`: three apiserver-like HTTPS backends on loopback, each behind
 * a fault switch; the reference balancer in front of them, run exactly as a
 * user runs it (a child process, real flags); 30 watch clients that behave
 * like Kubernetes reflectors. Once the streams are spread, one backend's
 * network is cut silently (no FIN, no RST: bytes just stop) and the timeline
 * shows its streams stall, get torn down by the balancer, and come back on the
 * others. Then the network heals: the backend is checked up again, warms up
 * (slow start), and the balancer moves streams back to it until the three
 * carry their share again. For contrast, 30 more watches go through a plain
 * pipe proxy (`c.pipe(u); u.pipe(c)`) over the same fault switches: its
 * streams on the cut backend stay stalled. Ends by itself with a summary;
 * exits 0 when no stream was lost and the balancer's streams are spread
 * again.
 *
 * Everything stays on 127.0.0.1; nothing is downloaded (the certificates are
 * the test fixtures).
 *
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { relative } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { ApiserverBackend, type WatchEvent } from './support/apiserver-backend.js';
import { certPaths, loadCerts } from './support/certs.js';
import { FaultProxy } from './support/fault-proxy.js';
import { WatchFleet, type WatchClient } from './support/watch-client.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const STREAMS = 30;
const NAMES = ['b1', 'b2', 'b3'] as const;
const CUT = 'b3';
/** A stream that heard nothing for this long is stalled (backends send every 200 ms). */
const STALL_MS = 700;
/** The demo gives up (exit 1) if the cut streams have not recovered this long after the cut. */
const RECOVERY_DEADLINE_MS = 10_000;
/**
 * Hard stop of the whole demo, a guard against a hang: about 15 s on an idle
 * machine, but a loaded one takes its time to start (11 s before the first
 * stream with six busy loops beside it), and each step below has its own
 * window from when it starts, not from the demo's start.
 */
const DEMO_DEADLINE_MS = 45_000;
/** Room kept before the hard stop to stop the balancer and print the summary. */
const STOP_RESERVE_MS = 2500;
const PROBE = { interval: 500, timeout: 500, fall: 2, rise: 2 };
/** Short enough for a demo; the balancer's default is 10 s. */
const SLOW_START_MS = 4000;
const REBALANCE = { rate: 10, tolerance: 0.1 };
/** From the heal: the slow start, then the moves back at `REBALANCE.rate` (a dozen streams, about 1.5 s), with room. */
const RETURN_WINDOW_MS = SLOW_START_MS + 10_000;

const t0 = Date.now();
const stamp = (): string => `+${((Date.now() - t0) / 1000).toFixed(1).padStart(4)}s`;
function say(line: string): void {
  process.stdout.write(`${stamp()}  ${line}\n`);
}

// Child processes this demo started, killed by pid on the way out.
const children = new Set<ChildProcess>();
function killChildren(): void {
  for (const child of children) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
  }
}
process.on('exit', killChildren);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    killChildren();
    process.exit(130);
  });
}

/** Starts `node --import tsx SCRIPT ...args`; resolves once it prints `listening HOST:PORT`. */
async function startChild(
  label: string,
  script: string,
  args: readonly string[],
  onLine: (line: string) => void,
): Promise<{ child: ChildProcess; address: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const errors: string[] = [];
  createInterface({ input: child.stderr }).on('line', (line) => {
    errors.push(line);
    say(`${label} ! ${line}`);
  });
  const address = await new Promise<string>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`the ${label} exited (${code}) before listening: ${errors.join(' ')}`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (line.startsWith('listening ')) resolve(line.slice('listening '.length));
      else onLine(line);
    });
  });
  return { child, address };
}

/** The balancer's log line without its ISO time (the timeline has its own). */
function shorten(line: string): string {
  return line.replace(/^\d{4}-\d\d-\d\dT[\d:.]+Z /, '');
}

function splitAddress(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(address.slice(i + 1)) };
}

/** One backend as `/stats` shows it (the fields the demo reads). */
interface BackendStats {
  readonly id: string;
  readonly state: string;
  readonly warming: boolean;
  readonly effectiveWeight: number;
}

function getStats(address: { host: string; port: number }): Promise<{ backends: BackendStats[] }> {
  return new Promise((resolve, reject) => {
    const req = request({ ...address, path: '/stats', agent: false, timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        try {
          resolve(JSON.parse(body) as { backends: BackendStats[] });
        } catch (err) {
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('/stats timed out')));
    req.on('error', reject);
    req.end();
  });
}

/**
 * Where a fleet's streams are, each counted once: flowing on a backend,
 * stalled (open, but nothing heard for STALL_MS), or between two watches.
 * The parts always add up to the fleet's size.
 */
class Picture {
  readonly #fleet: WatchFleet;
  /** When each client's current watch was answered: a fresh stream is not stalled before its first event is due. */
  readonly #connectedAt = new Map<WatchClient, number>();

  constructor(fleet: WatchFleet) {
    this.#fleet = fleet;
    for (const client of fleet.clients) client.on('connected', () => this.#connectedAt.set(client, Date.now()));
  }

  counts(): { flowing: Record<string, number>; stalled: Record<string, number>; stalledTotal: number; between: number } {
    const now = Date.now();
    const flowing: Record<string, number> = {};
    const stalled: Record<string, number> = {};
    let stalledTotal = 0;
    let between = 0;
    for (const client of this.#fleet.clients) {
      const backend = client.backend;
      if (backend === undefined) {
        between++;
        continue;
      }
      const heard = Math.max(client.lastEventAt ?? 0, this.#connectedAt.get(client) ?? 0);
      if (now - heard > STALL_MS) {
        stalled[backend] = (stalled[backend] ?? 0) + 1;
        stalledTotal++;
      } else {
        flowing[backend] = (flowing[backend] ?? 0) + 1;
      }
    }
    return { flowing, stalled, stalledTotal, between };
  }

  line(label: string): string {
    const { flowing, stalled, stalledTotal, between } = this.counts();
    const where = Object.entries(stalled)
      .map(([id, n]) => `${id} ${n}`)
      .join(', ');
    return (
      `${label.padEnd(10)} ${NAMES.map((n) => `${n} ${String(flowing[n] ?? 0).padStart(2)}`).join('  ')}` +
      `   stalled ${String(stalledTotal).padStart(2)}${stalledTotal > 0 ? ` (on ${where})` : ''}` +
      `${between > 0 ? `   reconnecting ${between}` : ''}`
    );
  }
}

interface Summary {
  victims: number;
  recovered: number;
  worstMs: number | undefined;
  medianMs: number | undefined;
  teardownMs: number | undefined;
  /** Ms from the heal to b3 being up again in the balancer. */
  upAfterMs: number | undefined;
  /** The balancer's "rebalanced: …" line, shortened. */
  rebalanced: string | undefined;
  /** Open streams per backend through the balancer at the end. */
  finalSpread: Record<string, number>;
  /** Pipe-proxy streams stalled at the end. */
  pipeStalled: number;
  pipeOnCut: number;
}

async function demo(): Promise<Summary> {
  const certs = loadCerts();
  const backends: ApiserverBackend[] = [];
  const proxies: FaultProxy[] = [];
  const fleets: WatchFleet[] = [];
  try {
    for (const name of NAMES) {
      const backend = await ApiserverBackend.start({ name, tls: { cert: certs.serverCert, key: certs.serverKey } });
      backends.push(backend);
      proxies.push(await FaultProxy.start({ target: backend.address }));
    }
    say(`3 apiservers (HTTPS, /readyz, /watch every 200 ms), each behind a fault switch: ${NAMES.map((n, i) => `${n}=127.0.0.1:${proxies[i]!.port}`).join(' ')}`);

    // Which part of the story the balancer's lines belong to: on a loaded
    // machine a start-up check may time out and the backends flap and
    // rebalance before the cut; those lines are shown, but only the cut's
    // teardown and the heal's return and rebalancing are measured.
    let phase: 'start' | 'cut' | 'healed' = 'start';
    let teardownAt: number | undefined;
    let upAt: number | undefined;
    let rebalanced: string | undefined;
    let statusAddress: string | undefined;
    const args = [
      '--listen', '127.0.0.1:0',
      ...NAMES.flatMap((n, i) => ['--backend', `${n}=127.0.0.1:${proxies[i]!.port}`]),
      '--interval', String(PROBE.interval),
      '--timeout', String(PROBE.timeout),
      '--fall', String(PROBE.fall),
      '--rise', String(PROBE.rise),
      '--slow-start', String(SLOW_START_MS),
      '--rebalance-rate', String(REBALANCE.rate),
      '--rebalance-tolerance', String(REBALANCE.tolerance),
      '--ca', relative(root, certPaths.ca),
      '--status', '127.0.0.1:0',
    ];
    say(`starting: tsx examples/apiserver-balancer.ts ${args.join(' ')}`);
    const pipeArgs = ['--mode', 'naive', ...proxies.flatMap((p) => ['--backend', `127.0.0.1:${p.port}`])];
    say(`and for contrast a plain pipe proxy over the same switches: tsx bench/lib/node-proxy.ts ${pipeArgs.join(' ')}`);
    const [balancer, pipe] = await Promise.all([
      startChild('balancer', 'examples/apiserver-balancer.ts', args, (line) => {
        if (line.startsWith('status ')) {
          statusAddress = line.slice('status '.length);
          return;
        }
        const short = shorten(line);
        if (phase === 'cut' && short.startsWith(`backend ${CUT} up -> down`)) teardownAt ??= Date.now();
        if (phase === 'healed' && short.startsWith(`backend ${CUT} down -> up`)) upAt ??= Date.now();
        if (phase === 'healed' && short.startsWith('rebalanced: ')) rebalanced ??= short;
        // The start-up chatter is summed up by the timeline; show what matters.
        if (/ -> |check of|^rebalanc|shutting down|stopped|warning/.test(short)) say(`balancer | ${short}`);
      }),
      startChild('pipe proxy', 'bench/lib/node-proxy.ts', pipeArgs, () => {}),
    ]);
    say(`balancer listening on ${balancer.address} (TLS passthrough: clients verify the apiservers' certificate); pipe proxy on ${pipe.address}`);
    if (statusAddress === undefined) throw new Error('the balancer printed no status address');
    const status = splitAddress(statusAddress);

    const fleet = new WatchFleet({ size: STREAMS, ...splitAddress(balancer.address), backoffMs: 50 });
    fleets.push(fleet);
    const pipeFleet = new WatchFleet({ size: STREAMS, ...splitAddress(pipe.address), backoffMs: 50, idPrefix: 'pipe' });
    fleets.push(pipeFleet);
    const recoveredAt = new Map<WatchClient, number>();
    let victims = new Set<WatchClient>();
    let cutAt = 0;
    for (const client of fleet.clients) {
      client.on('received', (event: WatchEvent) => {
        if (cutAt > 0 && victims.has(client) && event.backend !== CUT && !recoveredAt.has(client)) recoveredAt.set(client, Date.now());
      });
    }

    // Balancer up, first checks passed, streams spread and flowing.
    const spread = (f: WatchFleet): boolean => f.connectedCount === STREAMS && NAMES.every((n) => (f.byBackend()[n] ?? 0) > 0);
    await Promise.all([fleet.waitFor(spread, 10_000), pipeFleet.waitFor(spread, 10_000)]);
    await Promise.all([fleet, pipeFleet].map((f) => f.waitFor((x) => x.clients.every((c) => c.lastEventAt !== undefined), 5_000)));
    say(`${STREAMS} watches open and spread through each`);

    // The timeline: a line whenever either picture changes.
    const pictures = [
      { label: 'balancer', picture: new Picture(fleet), previous: '' },
      { label: 'pipe proxy', picture: new Picture(pipeFleet), previous: '' },
    ];
    const ticker = setInterval(() => {
      for (const p of pictures) {
        const now = p.picture.line(p.label);
        if (now !== p.previous) say(now);
        p.previous = now;
      }
    }, 100);

    let final: Summary['finalSpread'] = {};
    let pipeStalled = 0;
    let pipeOnCut = 0;
    try {
      await delay(1500);

      victims = new Set(fleet.clients.filter((c) => c.backend === CUT));
      pipeOnCut = pipeFleet.clients.filter((c) => c.backend === CUT).length;
      cutAt = Date.now();
      phase = 'cut';
      proxies[NAMES.indexOf(CUT)]!.cut();
      say(`✂  ${CUT} cut: its packets just stop, no FIN, no RST (${victims.size} balancer streams and ${pipeOnCut} pipe-proxy streams on it)`);

      await fleet
        .waitFor(() => recoveredAt.size === victims.size, RECOVERY_DEADLINE_MS)
        .catch(() => say(`!! ${victims.size - recoveredAt.size} streams still not recovered after ${RECOVERY_DEADLINE_MS / 1000} s`));
      if (recoveredAt.size === victims.size) {
        const full = Math.max(...Array.from(recoveredAt.values())) - cutAt;
        say(`all ${STREAMS} balancer streams receiving again; full recovery ${(full / 1000).toFixed(2)} s after the cut`);
      }
      await delay(1000);

      // The network comes back. Streams open across the cut stay dead (their
      // TCP state is gone); new connections go through.
      const healAt = Date.now();
      phase = 'healed';
      proxies[NAMES.indexOf(CUT)]!.restore();
      say(`🩹 ${CUT} reachable again: checks pass, it warms up over ${SLOW_START_MS / 1000} s, and the balancer moves streams back (at most ${REBALANCE.rate}/s)`);
      const returnDeadline = Math.min(healAt + RETURN_WINDOW_MS, t0 + DEMO_DEADLINE_MS - STOP_RESERVE_MS);
      let shown = -1;
      while (rebalanced === undefined && Date.now() < returnDeadline) {
        const b = (await getStats(status)).backends.find((x) => x.id === CUT);
        if (b !== undefined && b.state === 'up') {
          // The ramp in quarters: enough to see it, not a line per poll.
          const quarter = b.warming ? Math.floor(b.effectiveWeight * 4) : 4;
          if (quarter > shown) {
            say(b.warming ? `${CUT} slow start: weight ${Math.round(b.effectiveWeight * 100)}% of its share` : `${CUT} warm: full weight`);
            shown = quarter;
          }
        }
        await delay(200);
      }
      if (rebalanced === undefined) say('!! the balancer did not finish rebalancing in time');
      // The last moved streams are re-watching: let them land (bounded), then read where every stream is.
      await delay(300);
      await fleet.waitFor((f) => f.connectedCount === STREAMS, 2000).catch(() => undefined);
      final = fleet.byBackend();
      const pipeNow = pictures[1]!.picture.counts();
      pipeStalled = pipeNow.stalledTotal;
      say(
        `balancer streams: ${NAMES.map((n) => `${n} ${final[n] ?? 0}`).join(', ')}; ` +
          `pipe proxy: ${pipeStalled} still stalled ${((Date.now() - cutAt) / 1000).toFixed(1)} s after the cut` +
          (upAt === undefined ? '' : ` (${CUT} up ${((upAt - healAt) / 1000).toFixed(1)} s after the heal)`),
      );
      upAt = upAt === undefined ? undefined : upAt - healAt;
    } finally {
      clearInterval(ticker);
    }

    const recovery = Array.from(recoveredAt.values(), (at) => at - cutAt).sort((a, b) => a - b);
    const summary: Summary = {
      victims: victims.size,
      recovered: recovery.length,
      worstMs: recovery.at(-1),
      medianMs: recovery[Math.floor((recovery.length - 1) / 2)],
      teardownMs: teardownAt === undefined ? undefined : teardownAt - cutAt,
      upAfterMs: upAt,
      rebalanced,
      finalSpread: final,
      pipeStalled,
      pipeOnCut,
    };

    await Promise.all(fleets.map((f) => f.stop()));
    // Let the balancer see the clients go, then its own graceful stop: no client left, so the drain is immediate.
    await delay(200);
    const exited = new Promise<number | null>((resolve) => balancer.child.once('exit', (code) => resolve(code)));
    balancer.child.kill('SIGTERM');
    pipe.child.kill('SIGTERM');
    // An unref'd timer: once the balancer has exited it must not hold the demo open for the rest of the 5 s.
    const code = await Promise.race([exited, delay(5000, undefined, { ref: false }).then(() => 'timeout' as const)]);
    if (code !== 0) say(`!! the balancer did not exit 0 on SIGTERM (${code})`);
    return summary;
  } finally {
    await Promise.all(fleets.map((f) => f.stop()));
    killChildren();
    await Promise.all([...proxies.map((p) => p.close()), ...backends.map((b) => b.close())]);
  }
}

const hardStop = setTimeout(() => {
  process.stdout.write(`${stamp()}  summary: the demo did not finish within ${DEMO_DEADLINE_MS / 1000} s; recovery failed\n`);
  killChildren();
  process.exit(1);
}, DEMO_DEADLINE_MS).unref();

/** Every backend within the rebalancer's tolerance of an equal share (at least one stream either way). */
function spreadAgain(spread: Record<string, number>): boolean {
  const share = STREAMS / NAMES.length;
  const slack = Math.max(1, REBALANCE.tolerance * share);
  return NAMES.every((n) => Math.abs((spread[n] ?? 0) - share) <= slack);
}

try {
  const s = await demo();
  clearTimeout(hardStop);
  const lost = s.victims - s.recovered;
  const secs = (ms: number | undefined): string => (ms === undefined ? 'n/a' : `${(ms / 1000).toFixed(2)} s`);
  const balanced = s.rebalanced !== undefined && spreadAgain(s.finalSpread);
  process.stdout.write(
    `\nsummary: ${s.victims} of ${STREAMS} streams were on the cut backend; torn down ${secs(s.teardownMs)} after the cut ` +
      `(probe: ${PROBE.fall} failed checks, ${PROBE.interval} ms apart, ${PROBE.timeout} ms timeout); ` +
      `recovery median ${secs(s.medianMs)}, worst ${secs(s.worstMs)}; streams lost: ${lost}\n` +
      `return: ${CUT} up ${secs(s.upAfterMs)} after the heal; ${s.rebalanced ?? 'not rebalanced in time'}; ` +
      `spread ${balanced ? 'restored' : 'NOT restored'}: ${NAMES.map((n) => `${n} ${s.finalSpread[n] ?? 0}`).join(', ')}\n` +
      `contrast: through the plain pipe proxy, ${s.pipeStalled} of its ${s.pipeOnCut} streams on ${CUT} were still stalled at the end\n`,
  );
  process.exitCode = lost === 0 && s.victims > 0 && balanced ? 0 : 1;
} catch (err) {
  clearTimeout(hardStop);
  process.stdout.write(`\nsummary: the demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
}
