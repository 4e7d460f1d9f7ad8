/**
 * The published package, as a user gets it: the built `dist/` loaded through
 * the `exports` map with both `import` and `require`.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const root = fileURLToPath(new URL('../..', import.meta.url));
const built = existsSync(new URL('../../dist/index.js', import.meta.url)) && existsSync(new URL('../../dist/index.cjs', import.meta.url));

function run(code: string, type: 'module' | 'commonjs'): string {
  return execFileSync(process.execPath, [type === 'module' ? '--input-type=module' : '--input-type=commonjs', '-e', code], {
    cwd: root,
    encoding: 'utf8',
  });
}

const probe = `
  const pool = new m.UpstreamPool({ backends: [{ host: '127.0.0.1', port: 1 }] });
  let code;
  try { new m.UpstreamPool({ retries: -1 }); } catch (e) { code = e.code + ':' + (e instanceof m.FailoverProxyError); }
  // A probe makes its p-queue in the constructor: p-queue (ESM-only) is required at run time, not bundled.
  const probe = new m.HealthProbe({ autoStart: false });
  console.log([typeof m.UpstreamPool, typeof m.PinnedConnection, typeof m.HealthProbe, pool.backends().length, code].join(','));
  pool.destroy();
  probe.stop();
`;

test('dist is built (npm test runs the build first)', () => {
  assert.ok(built, 'run `npm run build` before this test');
});

test('import("failover-proxy") loads the ESM entry', { skip: !built && 'dist/ is missing' }, () => {
  const out = run(`import * as m from 'failover-proxy'; ${probe}`, 'module');
  assert.equal(out.trim(), 'function,function,function,1,INVALID_ARGUMENT:true');
});

test('require("failover-proxy") loads the CommonJS build', { skip: !built && 'dist/ is missing' }, () => {
  const out = run(`const m = require('failover-proxy'); ${probe}`, 'commonjs');
  assert.equal(out.trim(), 'function,function,function,1,INVALID_ARGUMENT:true');
});

test('an error from one copy of the package is instanceof the classes of the other', { skip: !built && 'dist/ is missing' }, () => {
  const out = run(
    `import * as esm from 'failover-proxy'; import { createRequire } from 'node:module';
     const cjs = createRequire(import.meta.url)('failover-proxy');
     const e = new cjs.UnknownBackendError('x');
     console.log(e instanceof esm.UnknownBackendError, e instanceof esm.FailoverProxyError, e instanceof esm.PoolClosedError);`,
    'module',
  );
  assert.equal(out.trim(), 'true true false');
});

test('the reference balancer runs from the build as the package bin', { skip: !built && 'dist/ is missing' }, () => {
  const pkg = JSON.parse(execFileSync(process.execPath, ['-p', 'JSON.stringify(require("./package.json"))'], { cwd: root, encoding: 'utf8' })) as {
    bin: Record<string, string>;
  };
  const bin = pkg.bin['failover-proxy-apiserver'];
  assert.ok(bin !== undefined);
  const help = execFileSync(process.execPath, [bin, '--help'], { cwd: root, encoding: 'utf8' });
  assert.match(help, /^Usage: apiserver-balancer/);
  try {
    execFileSync(process.execPath, [bin, '--bogus'], { cwd: root, encoding: 'utf8', stdio: 'pipe' });
    assert.fail('a bad flag must exit non-zero');
  } catch (err) {
    const e = err as { status: number; stderr: string };
    assert.equal(e.status, 2);
    assert.equal(e.stderr.trim().split('\n').length, 1, 'one clear line');
  }
});

test('npm pack publishes dist/ and the package metadata only', { skip: !built && 'dist/ is missing' }, () => {
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const [{ files }] = JSON.parse(out) as [{ files: { path: string }[] }];
  const paths = files.map((f) => f.path);
  assert.ok(paths.includes('dist/index.js') && paths.includes('dist/index.cjs') && paths.includes('dist/index.d.ts') && paths.includes('dist/index.d.cts'));
  const stray = paths.filter((p) => !p.startsWith('dist/') && !['package.json', 'README.md', 'LICENSE'].includes(p));
  assert.deepEqual(stray, []);
});
