/**
 * `/metrics`: the pool's snapshot and the probe's figures in the Prometheus
 * text exposition format (version 0.0.4). A pure function of its inputs.
 *
 * @module
 */
import type { AdminState, BackendHealth, BackendState, DiscoveryStats, PoolStats } from '../index.js';
import type { ClientCapStats } from './client-cap.js';
import { checkOutcomes, latencyBuckets, type BackendProbeStats } from './probe-stats.js';
import type { ProcessFigures } from './process-stats.js';
import type { VerdictCountsSnapshot } from './verdict-counts.js';

/** What `/metrics` adds to the pool and probe figures. */
export interface MetricsExtras {
  /** `failover_proxy_build_info`: the package version (`unknown` when it cannot be told) and Node's. */
  readonly build?: { readonly version: string; readonly node: string } | undefined;
  /** One entry per process (the one process, or the primary and each worker). */
  readonly processes?: readonly ProcessFigures[] | undefined;
  /** Health verdicts per backend by cause code. */
  readonly verdicts?: VerdictCountsSnapshot | undefined;
  /** The accept cap (`--max-clients`) and the clients it refused, all processes together. */
  readonly clients?: ClientCapStats | undefined;
  /** The discovery layer's per-source figures, when `--discover` is on. */
  readonly discovery?: DiscoveryStats | undefined;
}

/** The content type of {@link renderMetrics}' output. */
export const metricsContentType = 'text/plain; version=0.0.4; charset=utf-8';

const states: readonly BackendState[] = ['up', 'down', 'unknown', 'leaving', 'draining', 'maintenance'];
const healths: readonly BackendHealth[] = ['unknown', 'up', 'leaving', 'down'];
const admins: readonly AdminState[] = ['active', 'draining', 'maintenance'];

/** Escapes a label value: backslash, double quote and newline. */
function label(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** A number as Prometheus writes it. */
function num(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  return String(n);
}

class Writer {
  readonly lines: string[] = [];

  family(name: string, type: 'gauge' | 'counter' | 'histogram' | 'summary', help: string): void {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  }

  sample(name: string, labels: Readonly<Record<string, string>>, value: number): void {
    const pairs = Object.entries(labels).map(([k, v]) => `${k}="${label(v)}"`);
    this.lines.push(`${name}${pairs.length > 0 ? `{${pairs.join(',')}}` : ''} ${num(value)}`);
  }
}

/**
 * Renders the metrics. Every name starts with `failover_proxy_`; per-backend
 * series carry a `backend` label (the backend's id).
 *
 * @example
 * ```ts
 * res.setHeader('content-type', metricsContentType);
 * res.end(renderMetrics(pool.stats(), probeStats.snapshot()));
 * ```
 */
export function renderMetrics(pool: PoolStats, probe: Readonly<Record<string, BackendProbeStats>>, extras: MetricsExtras = {}): string {
  const w = new Writer();
  const p = 'failover_proxy_';

  if (extras.build !== undefined) {
    w.family(`${p}build_info`, 'gauge', 'Always 1: the version of failover-proxy and of Node.js serving.');
    w.sample(`${p}build_info`, { version: extras.build.version, node: extras.build.node }, 1);
  }

  w.family(`${p}backend_up`, 'gauge', '1 when the backend is up (picked for new connections), else 0.');
  for (const b of pool.backends) w.sample(`${p}backend_up`, { backend: b.id }, b.state === 'up' ? 1 : 0);

  w.family(`${p}backend_state`, 'gauge', 'The state of the backend: 1 for the current state, 0 for the others.');
  for (const b of pool.backends) for (const s of states) w.sample(`${p}backend_state`, { backend: b.id, state: s }, b.state === s ? 1 : 0);

  w.family(`${p}backend_health`, 'gauge', 'The health axis of the backend (what checks say): 1 for the current value.');
  for (const b of pool.backends) for (const h of healths) w.sample(`${p}backend_health`, { backend: b.id, health: h }, b.health === h ? 1 : 0);

  w.family(`${p}backend_admin`, 'gauge', 'The admin axis of the backend (what an operator set): 1 for the current value.');
  for (const b of pool.backends) for (const a of admins) w.sample(`${p}backend_admin`, { backend: b.id, admin: a }, b.admin === a ? 1 : 0);

  w.family(`${p}backend_effective_weight`, 'gauge', 'The weight pickers use now (below the configured weight during slow start).');
  for (const b of pool.backends) w.sample(`${p}backend_effective_weight`, { backend: b.id }, b.effectiveWeight);

  w.family(`${p}backend_state_since_seconds`, 'gauge', 'Unix time of the last state change of the backend.');
  for (const b of pool.backends) w.sample(`${p}backend_state_since_seconds`, { backend: b.id }, b.since / 1000);

  w.family(`${p}backend_active_connections`, 'gauge', 'Connections open to the backend now.');
  for (const b of pool.backends) w.sample(`${p}backend_active_connections`, { backend: b.id }, b.active);

  w.family(`${p}backend_dialling_connections`, 'gauge', 'Connections to the backend being dialled now.');
  for (const b of pool.backends) w.sample(`${p}backend_dialling_connections`, { backend: b.id }, b.dialling);

  w.family(`${p}backend_connections_total`, 'counter', 'Connections pinned to the backend since start.');
  for (const b of pool.backends) w.sample(`${p}backend_connections_total`, { backend: b.id }, b.total);

  w.family(`${p}backend_connect_failures_total`, 'counter', 'Failed dials to the backend (refused, timed out, reset).');
  for (const b of pool.backends) w.sample(`${p}backend_connect_failures_total`, { backend: b.id }, b.connectFailures);

  w.family(`${p}backend_sent_bytes_total`, 'counter', 'Bytes read from clients and sent to the backend.');
  for (const b of pool.backends) w.sample(`${p}backend_sent_bytes_total`, { backend: b.id }, b.bytesFromClient);

  w.family(`${p}backend_received_bytes_total`, 'counter', 'Bytes read from the backend and sent to clients.');
  for (const b of pool.backends) w.sample(`${p}backend_received_bytes_total`, { backend: b.id }, b.bytesFromUpstream);

  w.family(`${p}backend_teardowns_total`, 'counter', 'Closed connections of the backend, by teardown reason.');
  for (const b of pool.backends) {
    for (const [reason, n] of Object.entries(b.teardowns)) w.sample(`${p}backend_teardowns_total`, { backend: b.id, reason }, n);
  }

  w.family(`${p}active_connections`, 'gauge', 'Connections open now, all backends.');
  w.sample(`${p}active_connections`, {}, pool.active);
  w.family(`${p}waiting_clients`, 'gauge', 'Clients waiting for a backend to come up.');
  w.sample(`${p}waiting_clients`, {}, pool.waiting);
  w.family(`${p}connections_total`, 'counter', 'Connections pinned since start, all backends.');
  w.sample(`${p}connections_total`, {}, pool.total);
  w.family(`${p}teardowns_total`, 'counter', 'Closed connections by teardown reason, all backends (removed ones included).');
  for (const [reason, n] of Object.entries(pool.teardowns)) w.sample(`${p}teardowns_total`, { reason }, n);
  w.family(`${p}pin_failures_total`, 'counter', 'Clients that could not be given a backend, by error code.');
  for (const [code, n] of Object.entries(pool.pinFailures)) w.sample(`${p}pin_failures_total`, { code }, n);
  w.family(`${p}local_dial_errors_total`, 'counter', 'Dials that failed in this process (EMFILE, ENOBUFS, EADDRNOTAVAIL...), counted against no backend.');
  w.sample(`${p}local_dial_errors_total`, {}, pool.localDialErrors ?? 0);
  const clients = extras.clients;
  if (clients !== undefined) {
    w.family(`${p}max_clients`, 'gauge', 'Clients held at most (--max-clients, all workers); more are refused at accept.');
    w.sample(`${p}max_clients`, {}, clients.max);
    w.family(`${p}clients_refused_total`, 'counter', 'Clients refused at accept because the balancer held --max-clients.');
    w.sample(`${p}clients_refused_total`, {}, clients.refused);
  }

  const probed = Object.entries(probe);
  w.family(`${p}probe_checks_total`, 'counter', 'Health check results of the backend: ok, leaving (answered: shutting down, still serving), or the layer that failed (connect, tls, protocol, timeout, custom; local: failed in this process, no verdict).');
  for (const [id, s] of probed) for (const o of checkOutcomes) w.sample(`${p}probe_checks_total`, { backend: id, result: o }, s.results[o]);

  w.family(`${p}probe_last_success`, 'gauge', '1 when the last health check of the backend passed, else 0.');
  for (const [id, s] of probed) if (s.last !== undefined) w.sample(`${p}probe_last_success`, { backend: id }, s.last.ok ? 1 : 0);

  w.family(`${p}probe_last_duration_seconds`, 'gauge', 'Duration of the last health check of the backend.');
  for (const [id, s] of probed) if (s.last !== undefined && !s.last.passive) w.sample(`${p}probe_last_duration_seconds`, { backend: id }, s.last.durationMs / 1000);

  w.family(`${p}probe_duration_seconds`, 'histogram', 'Duration of health checks of the backend, passed or failed.');
  for (const [id, s] of probed) {
    latencyBuckets.forEach((le, i) => w.sample(`${p}probe_duration_seconds_bucket`, { backend: id, le: num(le) }, s.latencyBuckets[i] ?? 0));
    w.sample(`${p}probe_duration_seconds_bucket`, { backend: id, le: '+Inf' }, s.latencyCount);
    w.sample(`${p}probe_duration_seconds_sum`, { backend: id }, s.latencySumSeconds);
    w.sample(`${p}probe_duration_seconds_count`, { backend: id }, s.latencyCount);
  }

  if (extras.verdicts !== undefined) {
    w.family(`${p}backend_verdicts_total`, 'counter', 'Health verdicts (transitions of the health axis) of the backend, by the health set and the cause code that decided it.');
    for (const [id, list] of Object.entries(extras.verdicts)) {
      for (const v of list) w.sample(`${p}backend_verdicts_total`, { backend: id, health: v.health, cause: v.cause }, v.count);
    }
  }

  const procs = extras.processes ?? [];
  if (procs.length > 0) {
    // The usual names of Prometheus' client libraries, so existing dashboards read them; a `process` label per process.
    w.family('process_cpu_seconds_total', 'counter', 'User and system CPU time spent, in seconds.');
    for (const x of procs) w.sample('process_cpu_seconds_total', { process: x.process }, x.cpuSeconds);
    w.family('process_resident_memory_bytes', 'gauge', 'Resident memory size, in bytes.');
    for (const x of procs) w.sample('process_resident_memory_bytes', { process: x.process }, x.residentBytes);
    w.family('process_open_fds', 'gauge', 'Open file descriptors.');
    for (const x of procs) if (x.openFds !== undefined) w.sample('process_open_fds', { process: x.process }, x.openFds);
    w.family('process_max_fds', 'gauge', 'The limit on open file descriptors (soft).');
    for (const x of procs) if (x.maxFds !== undefined) w.sample('process_max_fds', { process: x.process }, x.maxFds);
    w.family('process_start_time_seconds', 'gauge', 'Start time of the process, Unix time in seconds.');
    for (const x of procs) w.sample('process_start_time_seconds', { process: x.process }, x.startTimeSeconds);
    w.family(`${p}event_loop_delay_seconds`, 'summary', 'Event-loop delay since the process started (perf_hooks monitorEventLoopDelay, 20 ms resolution).');
    for (const x of procs) {
      for (const [q, v] of [['0.5', x.loopDelay.p50], ['0.9', x.loopDelay.p90], ['0.99', x.loopDelay.p99]] as const) {
        w.sample(`${p}event_loop_delay_seconds`, { process: x.process, quantile: q }, v);
      }
      w.sample(`${p}event_loop_delay_seconds_sum`, { process: x.process }, x.loopDelay.sum);
      w.sample(`${p}event_loop_delay_seconds_count`, { process: x.process }, x.loopDelay.count);
    }
    w.family(`${p}event_loop_delay_max_seconds`, 'gauge', 'The longest event-loop delay seen since the process started.');
    for (const x of procs) w.sample(`${p}event_loop_delay_max_seconds`, { process: x.process }, x.loopDelay.max);
  }

  const discovery = extras.discovery;
  if (discovery !== undefined) {
    const sources = Object.entries(discovery.sources);
    w.family(`${p}discovery_source_backends`, 'gauge', 'Backends in the list the discovery source contributes now (its last good one).');
    for (const [name, s] of sources) w.sample(`${p}discovery_source_backends`, { source: name }, s.backends);
    w.family(`${p}discovery_source_held`, 'gauge', '1 while the source fails or answers with nothing and its last good list is kept (never empty), else 0.');
    for (const [name, s] of sources) w.sample(`${p}discovery_source_held`, { source: name }, s.state === 'held' ? 1 : 0);
    w.family(`${p}discovery_source_updates_total`, 'counter', 'Good answers of the discovery source.');
    for (const [name, s] of sources) w.sample(`${p}discovery_source_updates_total`, { source: name }, s.updates);
    w.family(`${p}discovery_source_failures_total`, 'counter', 'Failed attempts of the discovery source (its last good list kept).');
    for (const [name, s] of sources) w.sample(`${p}discovery_source_failures_total`, { source: name }, s.failures);
    w.family(`${p}discovery_source_empty_total`, 'counter', 'Empty answers of the discovery source (its last good list kept).');
    for (const [name, s] of sources) w.sample(`${p}discovery_source_empty_total`, { source: name }, s.empties);
    w.family(`${p}discovery_applies_total`, 'counter', 'Changes of the wanted backend set applied to the pool.');
    w.sample(`${p}discovery_applies_total`, {}, discovery.applies);
  }

  return `${w.lines.join('\n')}\n`;
}
