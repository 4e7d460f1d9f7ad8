/**
 * What a bench reports and how it is printed: tables as Markdown (so the
 * output can be pasted into docs/benchmarks.md as is), notes, and goals.
 *
 * @module
 */

import type { Chart } from './svg-chart.js';

/** One cell: a number is formatted by its column, a string is printed as is. */
export type Cell = string | number | undefined;

/** A column: its heading and how its numbers are printed. */
export interface Column {
  readonly title: string;
  /** Decimal places for numbers. @default 0 */
  readonly digits?: number | undefined;
  /** Suffix after numbers (`×`, ` ms`). */
  readonly unit?: string | undefined;
}

/** A table of results. */
export interface Table {
  readonly title: string;
  readonly columns: readonly Column[];
  readonly rows: readonly (readonly Cell[])[];
}

/** A goal from the issue, evaluated on this run. */
export interface Goal {
  readonly goal: string;
  /** `true` met, `false` missed, `undefined` not measurable here (a peer is missing). */
  readonly met: boolean | undefined;
  readonly detail: string;
}

/** What one bench hands back. */
export interface BenchReport {
  readonly name: string;
  readonly title: string;
  /** The settings the figures were taken with (sizes, rounds, probe settings). */
  readonly settings: Readonly<Record<string, string | number | boolean>>;
  readonly tables: readonly Table[];
  readonly goals: readonly Goal[];
  readonly notes: readonly string[];
  readonly durationMs: number;
  /** Bar charts of the same figures, written as SVG by run.ts. */
  readonly charts?: readonly Chart[] | undefined;
}

function formatCell(cell: Cell, column: Column): string {
  if (cell === undefined) return '—';
  if (typeof cell === 'string') return cell;
  if (!Number.isFinite(cell)) return '—';
  const digits = column.digits ?? 0;
  const text = cell.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
  return column.unit === undefined ? text : `${text}${column.unit}`;
}

/** A table as Markdown, columns padded so it also reads well in a terminal. */
export function renderTable(table: Table): string {
  const head = table.columns.map((c) => c.title);
  const body = table.rows.map((row) => table.columns.map((c, i) => formatCell(row[i], c)));
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
  // Numbers right-aligned, text left-aligned, judged by the first data row.
  const numeric = table.columns.map((_, i) => table.rows.some((r) => typeof r[i] === 'number'));
  const pad = (text: string, i: number): string => (numeric[i] ? text.padStart(widths[i]!) : text.padEnd(widths[i]!));
  const line = (cells: string[]): string => `| ${cells.map(pad).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (numeric[i] ? `${'-'.repeat(w + 1)}:` : `${'-'.repeat(w + 2)}`)).join('|')}|`;
  return [`**${table.title}**`, '', line(head), rule, ...body.map(line)].join('\n');
}

/** A whole report: settings, tables, goals and notes. */
export function renderReport(report: BenchReport): string {
  const out: string[] = [`### ${report.title}`, ''];
  const settings = Object.entries(report.settings).map(([k, v]) => `${k}=${String(v)}`);
  if (settings.length > 0) out.push(`Settings: ${settings.join(', ')}`, '');
  for (const table of report.tables) out.push(renderTable(table), '');
  if (report.goals.length > 0) {
    out.push('Goals:', '');
    for (const g of report.goals) {
      const verdict = g.met === undefined ? 'n/a' : g.met ? 'MET' : 'MISSED';
      out.push(`- ${verdict}: ${g.goal} (${g.detail})`);
    }
    out.push('');
  }
  for (const note of report.notes) out.push(`- ${note}`);
  if (report.notes.length > 0) out.push('');
  out.push(`(${report.name}: ${(report.durationMs / 1000).toFixed(1)} s)`, '');
  return out.join('\n');
}
