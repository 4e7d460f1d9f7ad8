/**
 * Bar charts of bench results as self-contained SVG, written by hand (no
 * charting library): one group of horizontal bars per contender, one bar per
 * series, the value printed at the end of each bar and the range of the
 * rounds as a whisker. Text is escaped; nothing is fetched or scripted.
 *
 * @module
 */

/** One series of bars (a figure measured for every contender). */
export interface ChartSeries {
  readonly name: string;
}

/** One contender: a value per series (`undefined`: no bar, `note` says why). */
export interface ChartRow {
  readonly label: string;
  readonly values: readonly (number | undefined)[];
  /** Per series, the lowest and highest round, drawn as a whisker. */
  readonly ranges?: readonly (readonly [number, number] | undefined)[] | undefined;
  /** Printed where a missing value's bar would be ("stuck", "skipped: …"). */
  readonly note?: string | undefined;
  /** This library's contenders, labelled in bold. */
  readonly ours?: boolean | undefined;
}

/** A chart a bench asks for; `run.ts` writes it as `<file>.svg`. */
export interface Chart {
  /** File name without extension, e.g. `throughput`. */
  readonly file: string;
  readonly title: string;
  /** Unit shown on the axis and after each value, e.g. `MB/s`. */
  readonly unit: string;
  /** Decimal places of the printed values. @default 0 */
  readonly digits?: number | undefined;
  /** Says which way is better, under the title. */
  readonly better: 'higher' | 'lower';
  readonly series: readonly ChartSeries[];
  readonly rows: readonly ChartRow[];
  /** Lines under the chart (how it was measured). */
  readonly notes?: readonly string[] | undefined;
}

// Okabe–Ito colours: distinguishable with the common colour-vision deficiencies.
const COLOURS = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00'];
/** With one series, the other proxies' bars are grey and this library's blue. */
const OTHERS = '#9a9a9a';
const WIDTH = 900;
const BAR = 15;
const BAR_GAP = 3;
const GROUP_GAP = 12;
const FONT = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"';

/** Escapes text for SVG element content and attribute values. */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** A rough width of `text` at `size` px in a proportional sans-serif (no font metrics here). */
function textWidth(text: string, size: number): number {
  return text.length * size * 0.56;
}

/** A round step for about `target` ticks up to `max` (1, 2 or 5 × 10^n). */
function niceStep(max: number, target: number): number {
  const raw = max / target;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const fraction = raw / magnitude;
  return (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * magnitude;
}

function format(value: number, digits: number): string {
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** The chart as an SVG document. */
export function renderChart(chart: Chart, footer?: string): string {
  const digits = chart.digits ?? 0;
  const nSeries = chart.series.length;
  const labelSize = 13;
  const labelWidth = Math.min(360, Math.max(120, ...chart.rows.map((r) => textWidth(r.label, labelSize) + 20)));
  const valueSpace = 110;
  const x0 = labelWidth;
  const plotWidth = WIDTH - x0 - valueSpace;

  const finite = chart.rows.flatMap((r) => [...r.values, ...(r.ranges ?? []).map((x) => x?.[1])]).filter((v): v is number => v !== undefined && Number.isFinite(v));
  const top = finite.length === 0 ? 1 : Math.max(...finite);
  const step = niceStep(top > 0 ? top : 1, 5);
  const axisMax = Math.max(step, Math.ceil(top / step) * step);
  const scale = (v: number): number => (Math.max(0, v) / axisMax) * plotWidth;

  const out: string[] = [];
  let y = 28;
  out.push(`<text x="16" y="${y}" font-size="17" font-weight="600" fill="#111">${escapeXml(chart.title)}</text>`);
  y += 20;
  out.push(`<text x="16" y="${y}" font-size="12" fill="#555">${escapeXml(`${chart.unit}, ${chart.better} is better`)}</text>`);
  const legend: [string, string][] =
    nSeries > 1
      ? chart.series.map((s, i) => [s.name, COLOURS[i % COLOURS.length]!])
      : chart.rows.some((r) => r.ours !== true)
        ? [
            ['this library', COLOURS[0]!],
            ['others', OTHERS],
          ]
        : [];
  if (legend.length > 0) {
    let lx = 16;
    y += 22;
    for (const [name, colour] of legend) {
      out.push(`<rect x="${lx}" y="${y - 10}" width="12" height="12" fill="${colour}"/>`);
      out.push(`<text x="${lx + 17}" y="${y}" font-size="12" fill="#333">${escapeXml(name)}</text>`);
      lx += 17 + textWidth(name, 12) + 22;
    }
  }
  y += 18;
  const plotTop = y;
  const groupHeight = nSeries * BAR + (nSeries - 1) * BAR_GAP;

  const bars: string[] = [];
  for (const row of chart.rows) {
    const mid = y + groupHeight / 2;
    bars.push(
      `<text x="${x0 - 10}" y="${mid + 4.5}" font-size="${labelSize}" text-anchor="end" fill="#111"${row.ours === true ? ' font-weight="600"' : ''}>${escapeXml(row.label)}</text>`,
    );
    if (row.values.every((v) => v === undefined || !Number.isFinite(v))) {
      bars.push(`<text x="${x0 + 6}" y="${mid + 4.5}" font-size="12" font-style="italic" fill="#777">${escapeXml(row.note ?? 'no figure')}</text>`);
    } else {
      row.values.forEach((v, i) => {
        const by = y + i * (BAR + BAR_GAP);
        if (v === undefined || !Number.isFinite(v)) return;
        const w = scale(v);
        const colour = nSeries === 1 && row.ours !== true ? OTHERS : COLOURS[i % COLOURS.length];
        bars.push(`<rect x="${x0}" y="${by}" width="${w.toFixed(1)}" height="${BAR}" fill="${colour}"><title>${escapeXml(`${row.label} — ${chart.series[i]?.name ?? ''}: ${format(v, digits)} ${chart.unit}`)}</title></rect>`);
        const range = row.ranges?.[i];
        let textX = x0 + w + 6;
        if (range !== undefined && range[1] > range[0]) {
          const [lo, hi] = [x0 + scale(range[0]), x0 + scale(range[1])];
          const cy = by + BAR / 2;
          bars.push(
            `<path d="M${lo.toFixed(1)} ${cy}H${hi.toFixed(1)}M${lo.toFixed(1)} ${cy - 4}V${cy + 4}M${hi.toFixed(1)} ${cy - 4}V${cy + 4}" stroke="#222" stroke-width="1.2" fill="none"/>`,
          );
          textX = Math.max(textX, hi + 6);
        }
        bars.push(`<text x="${textX.toFixed(1)}" y="${by + BAR - 3}" font-size="12" fill="#222">${escapeXml(format(v, digits))}</text>`);
      });
    }
    y += groupHeight + GROUP_GAP;
  }
  const plotBottom = y - GROUP_GAP / 2;

  // Grid and axis under the bars.
  const grid: string[] = [];
  for (let t = 0; t <= axisMax + step / 2; t += step) {
    const gx = x0 + scale(t);
    grid.push(`<line x1="${gx.toFixed(1)}" y1="${plotTop - 6}" x2="${gx.toFixed(1)}" y2="${plotBottom}" stroke="#e3e3e3"/>`);
    grid.push(`<text x="${gx.toFixed(1)}" y="${plotBottom + 16}" font-size="11" text-anchor="middle" fill="#555">${escapeXml(format(t, step < 1 ? String(step).split('.')[1]!.length : 0))}</text>`);
  }
  grid.push(`<line x1="${x0}" y1="${plotTop - 6}" x2="${x0}" y2="${plotBottom}" stroke="#888"/>`);
  y = plotBottom + 36;

  const notes: string[] = [];
  for (const line of [...(chart.notes ?? []), ...(footer === undefined ? [] : [footer])]) {
    notes.push(`<text x="16" y="${y}" font-size="11" fill="#666">${escapeXml(line)}</text>`);
    y += 15;
  }
  const height = Math.ceil(y + 4);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" ${FONT} role="img" aria-label="${escapeXml(chart.title)}">`,
    `<rect width="${WIDTH}" height="${height}" fill="#fff"/>`,
    ...out,
    ...grid,
    ...bars,
    ...notes,
    '</svg>',
    '',
  ].join('\n');
}
