// The SVG charts the benches write (bench/lib/svg-chart.ts): text escaped,
// one bar per figure, missing figures explained instead of drawn.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { escapeXml, renderChart } from '../bench/lib/svg-chart.js';

test('chart text is escaped and every finite figure gets a bar with its value', () => {
  const svg = renderChart(
    {
      file: 'x',
      title: 'A <script> & "quotes"',
      unit: 'MB/s',
      better: 'higher',
      series: [{ name: 'median' }],
      rows: [
        { label: 'ours <b>', values: [1234.4], ranges: [[1000, 1500]], ours: true },
        { label: "peer's & co", values: [999] },
        { label: 'missing', values: [undefined], note: 'skipped: <not installed>' },
      ],
      notes: ['a & b'],
    },
    'footer <x>',
  );
  assert.equal(escapeXml(`<&>"'`), '&lt;&amp;&gt;&quot;&apos;');
  for (const raw of ['<script>', '<b>', "peer's", '& co', '<not installed>', 'a & b', 'footer <x>']) assert.ok(!svg.includes(raw), `unescaped: ${raw}`);
  assert.ok(svg.includes('A &lt;script&gt; &amp; &quot;quotes&quot;'));
  assert.equal((svg.match(/<rect x="\d+(\.\d+)?" y="[\d.]+" width="[\d.]+" height="15"/g) ?? []).length, 2, 'two bars, none for the missing figure');
  assert.ok(svg.includes('>1,234<'), 'the value is printed');
  assert.ok(svg.includes('skipped: &lt;not installed&gt;'), 'the missing figure says why');
  assert.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"') && svg.trimEnd().endsWith('</svg>'));
});
