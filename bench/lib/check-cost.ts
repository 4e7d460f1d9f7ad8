/**
 * What one HTTPS check costs the probing process's main thread, checks run
 * one after another (never two at once) against the probe-cost targets (in
 * another process): CPU time per check (`process.cpuUsage`) and the longest
 * stretch the event loop was held (`monitorEventLoopDelay`, 1 ms
 * resolution, the excess over that 1 ms), for three ways of connecting:
 *
 * - `kept`: the request on the connection the last check left open;
 * - `resumed`: a new connection per check, its TLS session resumed;
 * - `full`: a new connection per check, a full TLS handshake (certificate
 *   chain verified).
 *
 * Run one after another, these say what no scheduling can spread: a check
 * that holds the loop for X ms makes a loop delay of up to X ms however
 * evenly checks are spread.
 *
 * ```sh
 * node --import tsx bench/lib/check-cost.ts --ports 4000,4001,... [--checks 300]
 * # prints "check-cost {json}" and exits
 * ```
 *
 * @module
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { loadCerts } from '../../examples/support/certs.js';
import { ConnectionSlot, type CheckFunction } from '../../src/index.js';
import { resolveCheck } from '../../src/checks/resolve-check.js';
import type { Backend } from '../../src/backend.js';
import { resolveBackend } from '../../src/backend.js';

type Mode = 'kept' | 'resumed' | 'full';

interface ModeCost {
  readonly checks: number;
  readonly cpuMsPerCheck: number;
  readonly userMsPerCheck: number;
  readonly systemMsPerCheck: number;
  readonly loopHeldP99Ms: number;
  readonly loopHeldMaxMs: number;
}

async function measure(mode: Mode, backends: readonly Backend[], checks: number): Promise<ModeCost> {
  const ca = loadCerts().ca;
  const base = { type: 'https' as const, path: '/readyz', ca, reuseConnection: mode === 'kept' };
  // A check built afresh has no TLS sessions yet: `full` builds one per
  // check and keeps it aside, so building it (parsing the CA) is not counted.
  const fresh = (): CheckFunction => resolveCheck(base);
  const shared = fresh();
  const slots = backends.map(() => new ConnectionSlot());
  const warm = Math.min(backends.length, 20);
  for (let i = 0; i < warm; i++) await shared(backends[i]!, { signal: AbortSignal.timeout(5000), connection: slots[i]! });
  const prepared = mode === 'full' ? Array.from({ length: checks }, fresh) : [];
  const eld = monitorEventLoopDelay({ resolution: 1 });
  eld.enable();
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < checks; i++) {
    const k = i % warm;
    const check = mode === 'full' ? prepared[i]! : shared;
    await check(backends[k]!, { signal: AbortSignal.timeout(5000), connection: slots[k]! });
  }
  const cpu = process.cpuUsage(cpu0);
  eld.disable();
  for (const slot of slots) slot.close();
  return {
    checks,
    cpuMsPerCheck: (cpu.user + cpu.system) / 1000 / checks,
    userMsPerCheck: cpu.user / 1000 / checks,
    systemMsPerCheck: cpu.system / 1000 / checks,
    loopHeldP99Ms: Math.max(0, eld.percentile(99) / 1e6 - 1),
    loopHeldMaxMs: Math.max(0, eld.max / 1e6 - 1),
  };
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { ports: { type: 'string' }, checks: { type: 'string', default: '300' } }, strict: true });
  const ports = (values.ports ?? '').split(',').filter((p) => p !== '').map(Number);
  const checks = Number(values.checks);
  if (ports.length === 0 || !ports.every((p) => Number.isInteger(p) && p > 0)) throw new TypeError('Expected `--ports` to list ports');
  if (!Number.isInteger(checks) || checks < 1) throw new TypeError(`Expected \`--checks\` to be an integer >= 1, got \`${values.checks}\``);
  const backends = ports.map((port) => resolveBackend({ host: '127.0.0.1', port }));
  const result: Record<string, ModeCost> = {};
  // Twice each, the second kept: the first pays for warming the JIT.
  for (const round of [0, 1]) {
    for (const mode of ['kept', 'resumed', 'full'] as const) {
      const cost = await measure(mode, backends, checks);
      if (round === 1) result[mode] = cost;
    }
  }
  process.stdout.write(`check-cost ${JSON.stringify(result)}\n`);
}

main(process.argv.slice(2)).then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`check-cost: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
