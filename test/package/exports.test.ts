/**
 * The package has one identity: the `exports` map has the shape we publish,
 * `import` and `require` reach one implementation (dist/index.cjs, see
 * tsup.config.ts), their types are one set of declarations, and the bin imports
 * the library instead of carrying a copy of it.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { builtinModules } from 'node:module';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { test } from 'node:test';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dist = join(root, 'dist');
const run = promisify(execFile);
const built = existsSync(join(dist, 'index.js')) && existsSync(join(dist, 'index.cjs'));
const skip = !built && 'dist/ is missing (npm test builds it first)';

interface PackageJson {
  type: string;
  main: string;
  module: string;
  types: string;
  bin: Record<string, string>;
  files: string[];
  sideEffects: boolean;
  exports: Record<string, unknown>;
  dependencies: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
  engines: Record<string, string>;
}
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as PackageJson;

const exportsMap = {
  '.': {
    import: { types: './dist/index.d.ts', default: './dist/index.js' },
    require: { types: './dist/index.d.cts', default: './dist/index.cjs' },
  },
  './package.json': './package.json',
};

/** Every file the package.json points a user at. */
const entryFiles = ['index.js', 'index.cjs', 'index.d.ts', 'index.d.cts', 'apiserver-balancer.js', 'verify.js'];

/** A definition of the class, however esbuild spells it (`class X` or `var X = class`). */
const upstreamPoolClass = /\bclass UpstreamPool\b|\bUpstreamPool = class\b/g;

function scratch(t: { after: (fn: () => void) => void }): string {
  mkdirSync(join(root, '.tmp'), { recursive: true });
  // Inside the package, so `'failover-proxy'` resolves to it by self-reference.
  const dir = mkdtempSync(join(root, '.tmp', 'exports-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('package.json: the exports map and the top-level fields have exactly this shape', () => {
  assert.deepEqual(pkg.exports, exportsMap);
  // deepEqual ignores key order; resolution does not: `types` must come first
  // in each condition, `default` last.
  for (const condition of ['import', 'require'] as const) {
    assert.deepEqual(Object.keys((pkg.exports['.'] as Record<string, object>)[condition]!), ['types', 'default'], condition);
  }
  assert.deepEqual(Object.keys(pkg.exports['.'] as object), ['import', 'require']);
  assert.equal(pkg.type, 'module');
  assert.equal(pkg.main, './dist/index.cjs', 'main is the require entry');
  assert.equal(pkg.module, './dist/index.js', 'module is the import entry');
  assert.equal(pkg.types, './dist/index.d.cts', 'types matches main, for resolvers that ignore exports');
  // npm's own spelling (`npm pkg fix` drops the `./`; publish would rewrite it and warn).
  assert.deepEqual(pkg.bin, { 'failover-proxy-apiserver': 'dist/apiserver-balancer.js', 'failover-proxy-verify': 'dist/verify.js' });
  assert.deepEqual(pkg.files, ['dist']);
  assert.equal(pkg.sideEffects, false);
  // The lines CI tests (.ci/run); 22.12 is where require() of ESM (p-queue) needs no flag.
  assert.deepEqual(pkg.engines, { node: '^22.12.0 || ^24.0.0 || ^26.0.0' });
  assert.deepEqual(Object.keys(pkg.dependencies).sort(), ['debug', 'eventemitter3', 'p-queue', 'tslib']);
});

/** The packages a built file loads at run time: its bare `require()`/`import` specifiers, Node's built-ins left out. */
function packagesLoadedBy(file: string): string[] {
  const code = readFileSync(join(dist, file), 'utf8');
  const specifiers = [...code.matchAll(/\brequire\("([^"]+)"\)|^import\b[^'"]*["']([^'"]+)["'];?$/gm)].map((m) => (m[1] ?? m[2])!);
  const builtins = new Set(builtinModules);
  const packages = specifiers.filter((s) => !s.startsWith('.') && !s.startsWith('node:') && !builtins.has(s));
  return [...new Set(packages)].sort();
}

test('dist uses exactly the dependencies package.json declares, loaded at run time, none bundled', { skip }, () => {
  // The dependencies, and the optional peers a feature loads only when used (yaml, for a YAML kubeconfig).
  const optionalPeers = Object.keys(pkg.peerDependencies ?? {}).filter((name) => pkg.peerDependenciesMeta?.[name]?.optional === true);
  assert.deepEqual(packagesLoadedBy('index.cjs'), [...Object.keys(pkg.dependencies), ...optionalPeers].sort());
  // An optional peer is loaded lazily (a dynamic import), never when the package loads.
  for (const name of optionalPeers) assert.doesNotMatch(readFileSync(join(dist, 'index.cjs'), 'utf8'), new RegExp(`^(?:var|const|let) \\w+ = (?:__toESM\\()?require\\("${name}"\\)`, 'm'));
  const cjs = readFileSync(join(dist, 'index.cjs'), 'utf8');
  // TypeScript's helpers come from tslib (importHelpers), among them the
  // default-import interop that gets p-queue's class out of the ESM namespace.
  assert.match(cjs, /\btslib_\d*\.__importDefault\(require\("p-queue"\)\)/);
  // No copy of p-queue or its p-timeout in the bundle.
  assert.doesNotMatch(cjs, /\bclass PQueue\b|\bPQueue = class\b|p-timeout|node_modules/);
  // The program's packages are the library's too (plus the library itself, through ./index.js).
  for (const name of packagesLoadedBy('apiserver-balancer.js')) assert.ok(name in pkg.dependencies, `the bin loads ${name}`);
});

test('every file package.json points at is built', { skip }, () => {
  for (const file of entryFiles) assert.ok(existsSync(join(dist, file)), `dist/${file}`);
});

test('import and require in one process reach the same classes, and members cross between them', { skip }, async () => {
  const { stdout } = await run(process.execPath, [join(root, 'test/package/fixtures/mixed-entries.mjs')], { cwd: root, timeout: 60_000 });
  const r = JSON.parse(stdout) as {
    resolved: { import: string; require: string };
    esmNames: string[];
    cjsNames: string[];
    notIdentical: string[];
    crossRegister: Record<string, unknown>;
  };
  assert.equal(fileURLToPath(r.resolved.import), join(dist, 'index.js'));
  assert.equal(r.resolved.require, join(dist, 'index.cjs'));
  assert.deepEqual(r.esmNames, r.cjsNames);
  assert.ok(r.esmNames.includes('UpstreamPool') && r.esmNames.includes('PinnedSocket'));
  assert.deepEqual(r.notIdentical, [], 'every export is the same object both ways');
  const accepted = { registered: true, listed: true, tornDown: 1, closedReason: 'marked-down' };
  assert.deepEqual(r.crossRegister, { 'esm pool, cjs socket': accepted, 'cjs pool, esm socket': accepted });
});

test('the built entries export exactly what src/index.ts exports, and the declarations agree', { skip }, async () => {
  const source = Object.keys(await import('../../src/index.js')).sort();
  const { stdout } = await run(
    process.execPath,
    ['--input-type=module', '-e', `import * as m from 'failover-proxy'; console.log(JSON.stringify(Object.keys(m).sort()))`],
    { cwd: root, timeout: 30_000 },
  );
  assert.deepEqual(JSON.parse(stdout), source, 'a stale build or a wrapper that lost a name');

  // The CommonJS declarations' value exports (a bundled .d.cts ends in one `export { … }`).
  const dcts = readFileSync(join(dist, 'index.d.cts'), 'utf8');
  const list = /^export \{([^}]*)\};?\s*$/m.exec(dcts);
  assert.ok(list !== null, 'dist/index.d.cts ends in an export list');
  const declared = list[1]!
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '' && !s.startsWith('type '))
    .map((s) => s.split(/\s+as\s+/).pop()!)
    .sort();
  assert.deepEqual(declared, source);

  // The ESM side re-exports those same declarations rather than a copy.
  const dts = readFileSync(join(dist, 'index.d.ts'), 'utf8');
  assert.deepEqual(dts.split('\n').filter((l) => l !== '' && !l.startsWith('//')), [`export * from './index.cjs';`]);
  // And the ESM wrapper is only a wrapper: its single import is the CommonJS build.
  const wrapper = readFileSync(join(dist, 'index.js'), 'utf8');
  assert.deepEqual([...wrapper.matchAll(/\bfrom\s+['"]([^'"]+)['"]/g)].map((m) => m[1]), ['./index.cjs']);
  assert.doesNotMatch(wrapper, /\brequire\(|\bclass\b/);
});

test('types: a value made through one condition fits the type from the other', { skip }, async (t) => {
  // Classes with #private fields are nominal: two copies of the declarations
  // would make these assignments fail, as two copies of the code would at run time.
  const dir = scratch(t);
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', strict: true, noEmit: true, types: ['node'], skipLibCheck: false },
      files: ['esm.mts', 'cjs.cts'],
    }),
  );
  writeFileSync(
    join(dir, 'esm.mts'),
    `import { Socket } from 'node:net';
import { PinnedSocket, UpstreamPool, type ErrorCode } from 'failover-proxy';
import type { PinnedSocket as RequiredPinnedSocket, UpstreamPool as RequiredPool } from 'failover-proxy' with { 'resolution-mode': 'require' };

const pool: RequiredPool = new UpstreamPool();
const pinned: RequiredPinnedSocket = new PinnedSocket(new Socket());
pool.register(pinned);
export const code: ErrorCode = 'POOL_CLOSED';
`,
  );
  writeFileSync(
    join(dir, 'cjs.cts'),
    `import net = require('node:net');
import fp = require('failover-proxy');
import type { PinnedSocket as ImportedPinnedSocket, UpstreamPool as ImportedPool } from 'failover-proxy' with { 'resolution-mode': 'import' };

const pool: ImportedPool = new fp.UpstreamPool();
const pinned: ImportedPinnedSocket = new fp.PinnedSocket(new net.Socket());
pool.register(pinned);
export const code: fp.ErrorCode = 'POOL_CLOSED';
`,
  );
  const tsc = join(root, 'node_modules/typescript/bin/tsc');
  try {
    await run(process.execPath, [tsc, '-p', dir], { cwd: dir, timeout: 120_000 });
  } catch (err) {
    assert.fail(`tsc: ${(err as { stdout?: string }).stdout ?? String(err)}`);
  }
});

test('the library is built once: UpstreamPool is defined in dist/index.cjs and nowhere else', { skip }, () => {
  const hits = readdirSync(dist)
    .filter((f) => /\.(c|m)?js$/.test(f))
    .flatMap((f) => Array.from(readFileSync(join(dist, f), 'utf8').matchAll(upstreamPoolClass), () => f));
  assert.deepEqual(hits, ['index.cjs']);
});

test('the bin is a program that imports the library instead of containing it', { skip }, async (t) => {
  const bin = readFileSync(join(root, pkg.bin['failover-proxy-apiserver']!), 'utf8');
  assert.ok(bin.startsWith('#!/usr/bin/env node\n'), 'starts with a shebang');
  assert.match(bin, /^import \{[^}]*\bUpstreamPool\b[^}]*\} from "\.\/index\.js";$/m);
  assert.doesNotMatch(bin, upstreamPoolClass);
  // The error brands are the library's; a copy of src/errors.ts would bring them along.
  assert.doesNotMatch(bin, /failover-proxy\.error/);
  assert.doesNotMatch(bin, /\.\.\/src\/|from "failover-proxy\/dist/);

  // npm runs a bin through a symlink in node_modules/.bin; its import of
  // ./index.js must resolve beside the real file.
  const dir = scratch(t);
  const link = join(dir, 'failover-proxy-apiserver');
  symlinkSync(join(root, pkg.bin['failover-proxy-apiserver']!), link);
  const { stdout } = await run(process.execPath, [link, '--help'], { cwd: dir, timeout: 30_000 });
  // Named as invoked: through the bin's symlink, the bin's name.
  assert.match(stdout, /^Usage: failover-proxy-apiserver /);
});

test('npm pack publishes exactly the built entries, their maps, README, LICENSE and package.json', { skip }, async () => {
  const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, timeout: 120_000 });
  const [{ files }] = JSON.parse(stdout) as [{ files: { path: string }[] }];
  const expected = ['LICENSE', 'README.md', 'package.json', ...entryFiles.map((f) => `dist/${f}`), 'dist/index.cjs.map', 'dist/apiserver-balancer.js.map', 'dist/verify.js.map'];
  assert.deepEqual(files.map((f) => f.path).sort(), expected.sort());
});
