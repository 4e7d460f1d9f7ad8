/**
 * The probe-cost bench's subject: a {@link HealthProbe} checking every given
 * backend over HTTPS (`/readyz`, fixture CA) in a process of its own, which
 * measures itself: CPU time (`process.cpuUsage`), checks completed and
 * failed, new connections, and event-loop delay (`monitorEventLoopDelay`, `--resolution` ms, 10 by default,
 * reported as the excess over it) and the CPU time of each loop turn over a
 * window after a warm-up.
 *
 * ```sh
 * node --import tsx bench/lib/probe-host.ts --ports 4000,4001,... --interval 1000 --warmup 3000 --window 10000 [--reuse false]
 * # prints "probe-result {json}" and exits
 * ```
 *
 * @module
 */
import { subscribe } from 'node:diagnostics_channel';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { loadCerts } from '../../examples/support/certs.js';
import { HealthProbe } from '../../src/index.js';

function int(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new TypeError(`Expected \`--${name}\` to be an integer >= 0, got \`${text}\``);
  return n;
}

/** This thread's CPU time in ms (the process's where Node has no threadCpuUsage, before 23.9). */
function threadCpuMs(): number {
  const u = (process as { threadCpuUsage?: () => NodeJS.CpuUsage }).threadCpuUsage?.() ?? process.cpuUsage();
  return (u.user + u.system) / 1000;
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ports: { type: 'string' },
      interval: { type: 'string', default: '1000' },
      timeout: { type: 'string', default: '1000' },
      concurrency: { type: 'string' },
      warmup: { type: 'string', default: '3000' },
      window: { type: 'string', default: '10000' },
      reuse: { type: 'string', default: 'true' },
      resolution: { type: 'string', default: '10' },
    },
    strict: true,
  });
  const ports = (values.ports ?? '').split(',').filter((p) => p !== '').map((p) => int('ports', p));
  const interval = int('interval', values.interval);
  const timeout = int('timeout', values.timeout);
  const warmup = int('warmup', values.warmup);
  const window = int('window', values.window);
  if (values.reuse !== 'true' && values.reuse !== 'false') throw new TypeError(`Expected \`--reuse\` to be true or false, got \`${values.reuse}\``);
  const probe = new HealthProbe({
    check: { type: 'https', path: '/readyz', ca: loadCerts().ca, reuseConnection: values.reuse === 'true' },
    interval,
    timeout,
    rise: 2,
    fall: 3,
    ...(values.concurrency === undefined ? {} : { concurrency: int('concurrency', values.concurrency) }),
  });
  let checks = 0;
  // New connections (each a TLS handshake): what keeping connections saves.
  let dials = 0;
  subscribe('net.client.socket', () => {
    dials++;
  });
  let failures = 0;
  const failureCodes: Record<string, number> = {};
  let slowest = 0;
  probe.on('checked', (result) => {
    checks++;
    if (result.durationMs > slowest) slowest = result.durationMs;
    if (!result.ok) {
      failures++;
      const code = result.error?.layer ?? 'unknown';
      failureCodes[code] = (failureCodes[code] ?? 0) + 1;
    }
  });
  for (const port of ports) probe.add({ host: '127.0.0.1', port });

  await new Promise((r) => setTimeout(r, warmup));
  // The histogram records the time between two ticks of a timer of this
  // period: the delay is what exceeds it.
  const RESOLUTION = int('resolution', values.resolution);
  const eld = monitorEventLoopDelay({ resolution: RESOLUTION });
  eld.enable();
  // This thread's CPU time between two ticks of a 1 ms timer: the work of the
  // loop turns in between, which a loaded machine stretches in wall time but
  // not in CPU. Its p99 is what the loop delay's would be with a core to itself.
  const turnCpu: number[] = [];
  let lastCpu = threadCpuMs();
  const sampler = setInterval(() => {
    const cpu = threadCpuMs();
    turnCpu.push(cpu - lastCpu);
    lastCpu = cpu;
  }, 1);
  checks = 0;
  dials = 0;
  failures = 0;
  slowest = 0;
  for (const k of Object.keys(failureCodes)) delete failureCodes[k];
  const cpu0 = process.cpuUsage();
  const elu0 = performance.eventLoopUtilization();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, window));
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const elu = performance.eventLoopUtilization(elu0);
  eld.disable();
  clearInterval(sampler);
  turnCpu.sort((a, b) => a - b);
  await probe.stop();
  const result = {
    backends: ports.length,
    seconds,
    cpuPct: ((cpu.user + cpu.system) / 1e6 / seconds) * 100,
    userPct: (cpu.user / 1e6 / seconds) * 100,
    systemPct: (cpu.system / 1e6 / seconds) * 100,
    eventLoopUtilization: elu.utilization,
    checksPerSecond: checks / seconds,
    dialsPerSecond: dials / seconds,
    failures,
    failureCodes,
    slowestCheckMs: slowest,
    loopDelayP50Ms: Math.max(0, eld.percentile(50) / 1e6 - RESOLUTION),
    loopDelayP99Ms: Math.max(0, eld.percentile(99) / 1e6 - RESOLUTION),
    loopDelayMaxMs: Math.max(0, eld.max / 1e6 - RESOLUTION),
    turnCpuP99Ms: turnCpu[Math.floor(turnCpu.length * 0.99)] ?? 0,
    turnCpuMaxMs: turnCpu[turnCpu.length - 1] ?? 0,
    rssBytes: process.memoryUsage().rss,
  };
  process.stdout.write(`probe-result ${JSON.stringify(result)}\n`);
}

main(process.argv.slice(2)).then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`probe-host: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
