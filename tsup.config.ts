import { defineConfig, type Options } from 'tsup';

// p-queue 9 is ESM-only. Node >= 20.19 can require() ESM, but 20.0–20.18 cannot,
// so the CommonJS build carries its own copy of p-queue (and its two small
// dependencies) while the ESM build imports the installed one.

const shared: Options = {
  entry: ['src/index.ts'],
  target: 'node20',
  platform: 'node',
  sourcemap: true,
  dts: true,
  treeshake: true,
  tsconfig: 'tsconfig.build.json',
};

export default defineConfig([
  { ...shared, format: ['esm'] },
  { ...shared, format: ['cjs'], noExternal: ['p-queue', 'p-timeout'] },
  // The reference balancer as a program (`npx failover-proxy-apiserver …`):
  // one self-contained ESM file, the library compiled in.
  {
    entry: { 'apiserver-balancer': 'examples/apiserver-balancer.ts' },
    format: ['esm'],
    target: 'node20',
    platform: 'node',
    sourcemap: true,
    dts: false,
    banner: { js: '#!/usr/bin/env node' },
  },
]);
