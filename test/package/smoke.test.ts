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
  console.log([typeof m.UpstreamPool, typeof m.PinnedConnection, typeof m.HealthProbe, pool.backends().length, code].join(','));
  pool.destroy();
`;

test('dist is built (npm test runs the build first)', () => {
  assert.ok(built, 'run `npm run build` before this test');
});

test('import("failover-proxy") loads the ESM build', { skip: !built && 'dist/ is missing' }, () => {
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
