/**
 * `npm run demo`: three apiserver-like HTTPS backends on loopback, each behind
 * a fault switch; the reference balancer in front of them, run exactly as a
 * user runs it (a child process, real flags); 30 watch clients that behave
 * like Kubernetes reflectors. Once the streams are spread, one backend's
 * network is cut silently (no FIN, no RST: bytes just stop) and the timeline
 * shows its streams stall, get torn down by the balancer, and come back on the
 * others. Ends by itself with a summary; exits 0 when no stream was lost.
 *
 * Everything stays on 127.0.0.1; nothing is downloaded (the certificates are
 * the test fixtures).
 *
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
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
/** Hard stop of the whole demo. */
const DEMO_DEADLINE_MS = 20_000;
const PROBE = { interval: 500, timeout: 500, fall: 2, rise: 2 };

const t0 = Date.now();
const stamp = (): string => `+${((Date.now() - t0) / 1000).toFixed(1).padStart(4)}s`;
function say(line: string): void {
  process.stdout.write(`${stamp()}  ${line}\n`);
}

let balancerChild: ChildProcess | undefined;
function killBalancer(): void {
  const child = balancerChild;
  if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}
process.on('exit', killBalancer);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    killBalancer();
    process.exit(130);
  });
}

/** Starts the balancer CLI and resolves with its client address once it prints `listening`. */
async function startBalancer(args: readonly string[], onLog: (line: string) => void): Promise<{ child: ChildProcess; address: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'examples/apiserver-balancer.ts', ...args], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  balancerChild = child;
  const errors: string[] = [];
  createInterface({ input: child.stderr }).on('line', (line) => {
    errors.push(line);
    say(`balancer ! ${line}`);
  });
  const address = await new Promise<string>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`the balancer exited (${code}) before listening: ${errors.join(' ')}`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (line.startsWith('listening ')) resolve(line.slice('listening '.length));
      else if (!line.startsWith('status ')) onLog(line);
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

interface Summary {
  victims: number;
  recovered: number;
  worstMs: number | undefined;
  medianMs: number | undefined;
  teardownMs: number | undefined;
}

async function demo(): Promise<Summary> {
  const certs = loadCerts();
  const backends: ApiserverBackend[] = [];
  const proxies: FaultProxy[] = [];
  let fleet: WatchFleet | undefined;
  try {
    for (const name of NAMES) {
      const backend = await ApiserverBackend.start({ name, tls: { cert: certs.serverCert, key: certs.serverKey } });
      backends.push(backend);
      proxies.push(await FaultProxy.start({ target: backend.address }));
    }
    say(`3 apiservers (HTTPS, /readyz, /watch every 200 ms), each behind a fault switch: ${NAMES.map((n, i) => `${n}=127.0.0.1:${proxies[i]!.port}`).join(' ')}`);

    let teardownAt: number | undefined;
    const args = [
      '--listen', '127.0.0.1:0',
      ...NAMES.flatMap((n, i) => ['--backend', `${n}=127.0.0.1:${proxies[i]!.port}`]),
      '--interval', String(PROBE.interval),
      '--timeout', String(PROBE.timeout),
      '--fall', String(PROBE.fall),
      '--rise', String(PROBE.rise),
      '--ca', relative(root, certPaths.ca),
      '--status', '127.0.0.1:0',
    ];
    say(`starting: tsx examples/apiserver-balancer.ts ${args.join(' ')}`);
    const balancer = await startBalancer(args, (line) => {
      if (line.includes(`backend ${CUT} up -> down`)) teardownAt = Date.now();
      // The start-up chatter is summed up by the timeline; show what matters.
      if (/ -> |check of|shutting down|stopped|warning/.test(line)) say(`balancer | ${shorten(line)}`);
    });
    say(`balancer listening on ${balancer.address} (TLS passthrough: clients verify the apiservers' certificate)`);

    fleet = new WatchFleet({ size: STREAMS, ...splitAddress(balancer.address), backoffMs: 50 });
    const lastBackend = new Map<WatchClient, string>();
    const recoveredAt = new Map<WatchClient, number>();
    let victims = new Set<WatchClient>();
    let cutAt = 0;
    for (const client of fleet.clients) {
      client.on('received', (event: WatchEvent) => {
        lastBackend.set(client, event.backend);
        if (cutAt > 0 && victims.has(client) && event.backend !== CUT && !recoveredAt.has(client)) recoveredAt.set(client, Date.now());
      });
    }

    // Balancer up, first checks passed, streams spread and flowing.
    await fleet.waitFor((f) => f.connectedCount === STREAMS && NAMES.every((n) => (f.byBackend()[n] ?? 0) > 0), 10_000);
    await fleet.waitFor((f) => f.clients.every((c) => c.lastEventAt !== undefined), 5_000);
    say(`${STREAMS} watches open and spread`);

    // The timeline: one line whenever the picture changes. A stream is
    // stalled when it was receiving and has heard nothing for STALL_MS.
    let previous = '';
    const picture = (): string => {
      const by = fleet!.byBackend();
      const now = Date.now();
      const stalled = fleet!.clients.filter((c) => c.lastEventAt !== undefined && now - c.lastEventAt > STALL_MS).length;
      return `streams ${NAMES.map((n) => `${n} ${String(by[n] ?? 0).padStart(2)}`).join('  ')}   stalled ${String(stalled).padStart(2)}`;
    };
    const ticker = setInterval(() => {
      const now = picture();
      if (now !== previous) say(now);
      previous = now;
    }, 100);

    try {
      await delay(1500);

      victims = new Set(fleet.clients.filter((c) => c.backend === CUT));
      cutAt = Date.now();
      proxies[NAMES.indexOf(CUT)]!.cut();
      say(`✂  ${CUT} cut: its packets just stop, no FIN, no RST (${victims.size} streams on it). nginx would keep them there.`);

      await fleet
        .waitFor(() => recoveredAt.size === victims.size, RECOVERY_DEADLINE_MS)
        .catch(() => say(`!! ${victims.size - recoveredAt.size} streams still not recovered after ${RECOVERY_DEADLINE_MS / 1000} s`));
      if (recoveredAt.size === victims.size) {
        const full = Math.max(...Array.from(recoveredAt.values())) - cutAt;
        say(`all ${STREAMS} streams receiving again; full recovery ${(full / 1000).toFixed(2)} s after the cut`);
      }
      await delay(1500);
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
    };

    await fleet.stop();
    // Let the balancer see the clients go, then its own graceful stop: no client left, so the drain is immediate.
    await delay(200);
    const exited = new Promise<number | null>((resolve) => balancer.child.once('exit', (code) => resolve(code)));
    balancer.child.kill('SIGTERM');
    const code = await Promise.race([exited, delay(5000).then(() => 'timeout' as const)]);
    if (code !== 0) say(`!! the balancer did not exit 0 on SIGTERM (${code})`);
    return summary;
  } finally {
    await fleet?.stop();
    killBalancer();
    await Promise.all([...proxies.map((p) => p.close()), ...backends.map((b) => b.close())]);
  }
}

const hardStop = setTimeout(() => {
  process.stdout.write(`${stamp()}  summary: the demo did not finish within ${DEMO_DEADLINE_MS / 1000} s; recovery failed\n`);
  killBalancer();
  process.exit(1);
}, DEMO_DEADLINE_MS).unref();

try {
  const s = await demo();
  clearTimeout(hardStop);
  const lost = s.victims - s.recovered;
  const secs = (ms: number | undefined): string => (ms === undefined ? 'n/a' : `${(ms / 1000).toFixed(2)} s`);
  process.stdout.write(
    `\nsummary: ${s.victims} of ${STREAMS} streams were on the cut backend; torn down ${secs(s.teardownMs)} after the cut ` +
      `(probe: ${PROBE.fall} failed checks, ${PROBE.interval} ms apart, ${PROBE.timeout} ms timeout); ` +
      `recovery median ${secs(s.medianMs)}, worst ${secs(s.worstMs)}; streams lost: ${lost}\n`,
  );
  process.exitCode = lost === 0 && s.victims > 0 ? 0 : 1;
} catch (err) {
  clearTimeout(hardStop);
  process.stdout.write(`\nsummary: the demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
}
