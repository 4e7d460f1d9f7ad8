/**
 * What a verify run measured, and its two renderings: a table for people and
 * JSON (`--json`) for scripts. The JSON shape is documented in docs/verify.md.
 *
 * @module
 */
import type { FaultName } from './options.js';

/** One fault and its heal. */
export interface PhaseResult {
  readonly fault: FaultName;
  readonly streams: number;
  /** Streams on the faulted backend when the fault began. */
  readonly victims: number;
  /** Victims that received an event from a live backend within the window. */
  readonly recovered: number;
  /** Victims still held open on the faulted backend at the end of the window (the balancer never closed them). */
  readonly stuck: number;
  /** Victims with no working stream at the end of the window (closed, and not served again). */
  readonly lost: number;
  /** Streams on healthy backends that had to re-watch during the window (collateral resets). */
  readonly collateral: number;
  /** ms from the fault to a victim's first event from a live backend, over every victim; `null`: not every victim that far did (stuck or lost). */
  readonly recoveryMs: { readonly p50: number | null; readonly p90: number | null; readonly p99: number | null; readonly max: number | null };
  readonly heal: {
    /** Streams per backend at the end of the heal. */
    readonly spread: Record<string, number>;
    /** ms from the heal until every backend carried its share ±25%; `null`: not within `--settle`. */
    readonly evenAfterMs: number | null;
    /** Streams without an event for 2.5 s at the end of the heal. */
    readonly stalled: number;
  };
}

/** A whole run. */
export interface VerifyResult {
  readonly tool: 'failover-proxy-verify';
  readonly version: string | undefined;
  readonly mode: 'netns' | 'proxy';
  readonly streams: number;
  /** The balancer's command as given, with placeholders. */
  readonly balancer: string;
  /** The command as run. */
  command: string | undefined;
  readonly windowMs: number;
  readonly settleMs: number;
  readonly startedAt: string;
  /** 1-, 5- and 15-minute load averages when the run began: a loaded machine makes every figure slower. */
  readonly loadAverage: readonly number[];
  readonly phases: PhaseResult[];
  error?: string;
}

const faultLabels: Readonly<Record<FaultName, string>> = {
  cut: 'silent cut',
  rst: 'RST',
  blackhole: 'blackhole',
};

function seconds(ms: number | null): string {
  return ms === null ? 'never' : `${(ms / 1000).toFixed(2)} s`;
}

/** One line per phase, for progress output. */
export function phaseSummary(p: PhaseResult): string {
  return `${faultLabels[p.fault]}: ${p.recovered}/${p.victims} resumed, ${p.stuck} stuck, ${p.lost} lost, p50 ${seconds(p.recoveryMs.p50)}, p99 ${seconds(p.recoveryMs.p99)}, max ${seconds(p.recoveryMs.max)}`;
}

/** Renders a result as a plain-text table. */
export function formatTable(r: VerifyResult): string {
  const header = ['fault', 'on victim', 'resumed', 'stuck', 'lost', 'collateral', 'p50', 'p90', 'p99', 'max', 'after heal', 'even after'];
  const rows = r.phases.map((p) => [
    faultLabels[p.fault],
    String(p.victims),
    String(p.recovered),
    String(p.stuck),
    String(p.lost),
    String(p.collateral),
    seconds(p.recoveryMs.p50),
    seconds(p.recoveryMs.p90),
    seconds(p.recoveryMs.p99),
    seconds(p.recoveryMs.max),
    Object.keys(p.heal.spread)
      .sort()
      .map((k) => `${k} ${p.heal.spread[k]}`)
      .join(', '),
    p.heal.evenAfterMs === null ? `not in ${(r.settleMs / 1000).toFixed(0)} s` : seconds(p.heal.evenAfterMs),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  const out = [
    `failover-proxy-verify ${r.version ?? ''}: ${r.streams} watch streams over 3 TLS backends, faults on b3, ${r.mode === 'netns' ? 'network namespace + nftables' : 'fault proxy'}`,
    `balancer: ${r.command ?? r.balancer}`,
    `load average at start: ${r.loadAverage.map((l) => l.toFixed(2)).join(' ')}`,
    '',
    ...(rows.length === 0 ? ['no fault ran'] : [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)]),
    '',
    `resumed: streams on b3 that got an event from a live backend within ${(r.windowMs / 1000).toFixed(1)} s of the fault; p50–max over every stream on b3 ("never" when that share did not resume).`,
    'stuck: still held open on b3 (the balancer never closed them); lost: closed and not served again; collateral: streams on healthy backends that had to re-watch.',
  ];
  if (r.error !== undefined) out.push('', `error: ${r.error}`);
  return `${out.join('\n')}\n`;
}
