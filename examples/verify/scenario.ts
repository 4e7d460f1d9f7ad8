/**
 * The scenario itself, run by the supervised process (inside the private
 * network namespace in `netns` mode): three TLS backends, the user's
 * balancer, and for each fault a fresh fleet of watch streams, the fault on
 * one backend, the recovery of the streams that were on it, the heal, and the
 * spread of the streams after it.
 *
 * @module
 */
import { writeFileSync, readFileSync } from 'node:fs';
import { createServer, connect, type AddressInfo } from 'node:net';
import { basename, join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { WatchEvent } from '../support/apiserver-backend.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { applyNftRuleset, liftNftFault, nftCutRuleset, setUpLoopback } from '../support/nft-cut.js';
import { WatchFleet, type WatchClient } from '../support/watch-client.js';
import { makeThrowawayCerts, type ScenarioCerts } from './certs.js';
import type { FaultName, VerifyOptions } from './options.js';
import { startGroup, type Started } from './processes.js';
import { phaseSummary, type PhaseResult, type VerifyResult } from './report.js';
import { renderTemplate, type TemplateBackend, type TemplateValues } from './template.js';

/** How the scenario was reached: the mode actually used and how to run a child of this program. */
export interface ScenarioContext {
  readonly options: VerifyOptions;
  readonly mode: 'netns' | 'proxy';
  readonly dir: string;
  /** `[command, ...args]` that runs this program (node, its flags, the script). */
  readonly self: readonly string[];
  readonly log: (line: string) => void;
}

const NETNS_HOSTS = ['127.0.0.2', '127.0.0.3', '127.0.0.4'] as const;
const NAMES = ['b1', 'b2', 'b3'] as const;
/** The backend every fault hits. */
const VICTIM = 2;

function percentile(sorted: readonly number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

async function freePort(host: string): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function waitForPort(host: string, port: number, timeoutMs: number, balancer: Started): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (balancer.exited) throw new Error(`the balancer exited before listening on ${host}:${port}: ${balancer.lines.slice(-8).join(' | ')}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host, port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listening on ${host}:${port} after ${timeoutMs} ms: ${balancer.lines.slice(-8).join(' | ')}`);
    await delay(50);
  }
}

/** Applies and heals faults on the victim, the same way whatever the mode. */
interface FaultDriver {
  apply(fault: FaultName): Promise<void>;
  heal(fault: FaultName): Promise<void>;
}

/** Is the whole fleet on the three backends, each with about its share? */
function evenlySpread(fleet: WatchFleet, size: number): boolean {
  if (fleet.connectedCount !== size) return false;
  const share = size / NAMES.length;
  const counts = fleet.byBackend();
  return NAMES.every((n) => Math.abs((counts[n] ?? 0) - share) <= Math.max(1, share * 0.25));
}

/**
 * Opens `size` watches and waits until every backend carries some. A
 * balancer may not have seen every backend up yet: then the fleet is closed
 * and opened again, until the ready timeout.
 */
async function openSpreadFleet(ctx: ScenarioContext, port: number, ca: Buffer, phase: string, balancer: Started): Promise<WatchFleet> {
  const { streams, readyTimeoutMs } = ctx.options;
  const deadline = Date.now() + readyTimeoutMs;
  for (let attempt = 1; ; attempt++) {
    const fleet = new WatchFleet({ size: streams, host: '127.0.0.1', port, tls: { ca }, backoffMs: 50, idPrefix: `${phase}-${attempt}` });
    const left = Math.max(1000, deadline - Date.now());
    try {
      await fleet.waitFor((f) => f.connectedCount === streams && f.clients.every((c) => c.lastEventAt !== undefined), left);
      if (NAMES.every((n) => (fleet.byBackend()[n] ?? 0) > 0)) return fleet;
    } catch {
      // Not all connected in time: reported below.
    }
    const spread = JSON.stringify(fleet.byBackend());
    const connected = fleet.connectedCount;
    await fleet.stop();
    if (balancer.exited) throw new Error(`the balancer exited: ${balancer.lines.slice(-8).join(' | ')}`);
    if (Date.now() > deadline) {
      throw new Error(`${phase}: the balancer did not spread ${streams} watch streams over the three backends within ${readyTimeoutMs} ms (connected ${connected}, by backend ${spread})`);
    }
    ctx.log(`${phase}: streams not on every backend yet (${connected} connected, ${spread}); opening them again`);
    await delay(1000);
  }
}

async function runPhase(ctx: ScenarioContext, fault: FaultName, port: number, ca: Buffer, driver: FaultDriver, balancer: Started): Promise<PhaseResult> {
  const { streams, windowMs, settleMs } = ctx.options;
  const victimName = NAMES[VICTIM];
  const fleet = await openSpreadFleet(ctx, port, ca, fault, balancer);
  try {
    // Let checks and streams settle before the fault.
    await delay(1000);
    const before = fleet.byBackend();
    const victims = new Set<WatchClient>(fleet.clients.filter((c) => c.backend === victimName));
    const reconnectsBefore = new Map<WatchClient, number>(fleet.clients.map((c) => [c, c.reconnects]));
    const recoveredAt = new Map<WatchClient, number>();
    let faultAt = 0;
    for (const c of victims) {
      c.on('received', (event: WatchEvent) => {
        if (faultAt > 0 && event.backend !== victimName && !recoveredAt.has(c)) recoveredAt.set(c, Date.now());
      });
    }
    ctx.log(`${fault}: ${streams} streams ${JSON.stringify(before)}; applying the fault to ${victimName} (${victims.size} streams on it)`);
    await driver.apply(fault);
    faultAt = Date.now();
    await fleet.waitFor(() => recoveredAt.size === victims.size, windowMs).catch(() => undefined);
    const end = Date.now();
    const recoveryMs = Array.from(recoveredAt.values(), (at) => at - faultAt).sort((a, b) => a - b);
    let stuck = 0;
    let lost = 0;
    for (const c of victims) {
      if (recoveredAt.has(c)) continue;
      // Still held open on the failed backend (the balancer never closed it), or without a working stream at all.
      if (c.connected && c.backend === victimName) stuck++;
      else lost++;
    }
    let collateral = 0;
    for (const c of fleet.clients) if (!victims.has(c) && c.reconnects > (reconnectsBefore.get(c) ?? 0)) collateral++;
    // Percentiles over every victim: one that never resumed counts as never.
    const all = [...recoveryMs, ...Array.from({ length: victims.size - recoveryMs.length }, () => Infinity)];
    const pct = (p: number): number | null => {
      const v = percentile(all, p);
      return v === undefined || !Number.isFinite(v) ? null : v;
    };
    ctx.log(`${fault}: ${recoveryMs.length}/${victims.size} resumed on a live backend within ${end - faultAt} ms; ${stuck} stuck, ${lost} lost; healing`);

    await driver.heal(fault);
    const healAt = Date.now();
    const evenAt = await fleet.waitFor((f) => evenlySpread(f, streams), Math.max(1, settleMs)).then(
      () => Date.now(),
      () => undefined,
    );
    const spread = fleet.byBackend();
    const stalledAfterHeal = fleet.stalled(2500).length;
    ctx.log(`${fault}: after the heal ${JSON.stringify(spread)}${evenAt === undefined ? `, not even within ${settleMs} ms` : `, even after ${evenAt - healAt} ms`}`);
    return {
      fault,
      streams,
      victims: victims.size,
      recovered: recoveryMs.length,
      stuck,
      lost,
      collateral,
      recoveryMs: { p50: pct(50), p90: pct(90), p99: pct(99), max: pct(100) },
      heal: { spread, evenAfterMs: evenAt === undefined ? null : evenAt - healAt, stalled: stalledAfterHeal },
    };
  } finally {
    await fleet.stop();
  }
}

/** Runs the whole scenario; fills `result.phases` as it goes, so an interruption still reports what ran. */
export async function runScenario(ctx: ScenarioContext, result: VerifyResult): Promise<void> {
  const { options, mode, dir, log } = ctx;
  const certs: ScenarioCerts = await makeThrowawayCerts(dir);
  const ca = readFileSync(certs.ca);
  const groups: Started[] = [];
  const proxies: FaultProxy[] = [];
  try {
    if (mode === 'netns') await setUpLoopback(NETNS_HOSTS);
    // The backends, one process each, so a blackhole can freeze one.
    const [cmd, ...args] = ctx.self;
    const backendProcs = NAMES.map((name, i) => {
      const listen = mode === 'netns' ? `${NETNS_HOSTS[i]}:6443` : '127.0.0.1:0';
      const b = startGroup(`backend ${name}`, cmd!, [...args, '__backend', name, listen, certs.cert, certs.key], dir, log, options.verbose);
      groups.push(b);
      return b;
    });
    const real: TemplateBackend[] = await Promise.all(
      backendProcs.map(async (b, i) => {
        const m = await b.waitForLine(/^listening (.+):(\d+)$/, 20_000);
        return { name: NAMES[i]!, host: m[1]!, port: Number(m[2]) };
      }),
    );
    let told: TemplateBackend[] = real;
    let driver: FaultDriver;
    const victimProc = backendProcs[VICTIM]!;
    if (mode === 'netns') {
      const host = real[VICTIM]!.host;
      driver = {
        async apply(fault) {
          if (fault === 'blackhole') victimProc.signal('SIGSTOP');
          else if (fault === 'cut') await applyNftRuleset(nftCutRuleset(host));
          else {
            // A crashed backend: its kernel refuses new connections and
            // resets the open ones. Done by the backend process itself, so
            // the resets carry the right sequence numbers (resets forged by
            // a firewall rule after dropped data are out of window, and a
            // watch carries nothing towards the backend to be rejected).
            victimProc.signal('SIGUSR1');
            await victimProc.waitForLine(/^reset \d+$/, 5000);
          }
        },
        async heal(fault) {
          if (fault === 'blackhole') victimProc.signal('SIGCONT');
          else if (fault === 'cut') await liftNftFault();
          else {
            victimProc.signal('SIGUSR2');
            await victimProc.waitForLine(/^listening again$/, 5000);
          }
        },
      };
    } else {
      for (const b of real) proxies.push(await FaultProxy.start({ target: { host: b.host, port: b.port }, host: '127.0.0.1' }));
      told = real.map((b, i) => ({ name: b.name, host: '127.0.0.1', port: proxies[i]!.port }));
      const fp = proxies[VICTIM]!;
      driver = {
        apply(fault) {
          if (fault === 'blackhole') victimProc.signal('SIGSTOP');
          else if (fault === 'cut') fp.cut();
          else {
            fp.refuse();
            fp.reset();
          }
          return Promise.resolve();
        },
        heal(fault) {
          if (fault === 'blackhole') victimProc.signal('SIGCONT');
          else fp.restore();
          return Promise.resolve();
        },
      };
    }
    const listen = { host: '127.0.0.1', port: mode === 'netns' ? 6443 : await freePort('127.0.0.1') };
    const values: TemplateValues = {
      listen,
      backends: told,
      ca: certs.ca,
      dir,
      config: options.configTemplate === undefined ? undefined : join(dir, basename(options.configTemplate)),
    };
    if (options.configTemplate !== undefined && values.config !== undefined) {
      writeFileSync(values.config, renderTemplate(readFileSync(options.configTemplate, 'utf8'), values, '\n'));
    }
    const command = renderTemplate(options.balancer, values, ' ');
    result.command = command;
    log(`balancer: ${command}`);
    const balancer = startGroup('balancer', '/bin/sh', ['-c', command], dir, log, options.verbose);
    groups.push(balancer);
    await waitForPort(listen.host, listen.port, options.readyTimeoutMs, balancer);
    for (const fault of options.faults) {
      const phase = await runPhase(ctx, fault, listen.port, ca, driver, balancer);
      result.phases.push(phase);
      log(phaseSummary(phase));
      if (balancer.exited) throw new Error(`the balancer exited during the ${fault} phase: ${balancer.lines.slice(-8).join(' | ')}`);
    }
    await balancer.stop();
  } finally {
    await Promise.all(groups.map((g) => g.stop()));
    await Promise.all(proxies.map((p) => p.close()));
  }
}
