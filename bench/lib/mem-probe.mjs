/**
 * Preloaded into the balancer CLI by the memory bench (`node --expose-gc
 * --import ./bench/lib/mem-probe.mjs dist/apiserver-balancer.js ...`): answers
 * `mem` on stdin with the same figures as bench/lib/node-proxy.ts, after two
 * forced GCs. Nothing else in the process changes.
 */
import { createInterface } from 'node:readline';
import { getHeapSpaceStatistics } from 'node:v8';

createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() !== 'mem') return;
  const gc = globalThis.gc;
  if (gc) {
    gc();
    gc();
  }
  const m = process.memoryUsage();
  const young = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.physical_space_size ?? 0;
  const figures = { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers, young };
  process.stdout.write(`mem ${JSON.stringify(figures)}\n`);
});
