// Config reload (SIGHUP, POST /api/reload) under a seeded stream of random
// config files: valid ones with random backends and tunables, and the same
// spoiled (wrong types and ranges, unknown keys, duplicate names, a missing
// token file, truncated JSON, raw bytes). In this process against
// `balancer.reload()` (thousands of files), then through the real CLI (a few
// hundred, by POST /api/reload and by SIGHUP). Every time:
//   - an invalid file is refused (CONFIG_INVALID) and the running pool is
//     exactly as it was (ids, addresses, admin state, weights, caps);
//   - a valid one is applied: the pool's backends become the file's, with
//     the file's weights and caps (defaults where it gives none);
//   - nothing else is ever thrown, and the process keeps answering.
// CI: 2,000 in process and 200 through the CLI; FUZZ=1: 20,000 and 600.
// SEED=<n> replays a run.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { startBalancer } from '../src/cli/balancer.js';
import { ConfigError, type BalancerConfig } from '../src/cli/config.js';
import { parseBalancerArgs } from '../src/cli/parse-balancer-args.js';
import { ReloadError } from '../src/cli/reload.js';
import type { UpstreamPool } from '../src/index.js';
import { TOKEN, api, tempDir } from './helpers/admin.js';
import { Prng, figure, seedFromEnv } from './helpers/faults.js';
import { startCli } from './helpers/cli.js';
import { HOST, closedPort, namedServer, waitFor } from './helpers/net.js';

const LONG = process.env['FUZZ'] === '1';
const IN_PROCESS = Number(process.env['FUZZ_CASES'] ?? (LONG ? 20_000 : 2000));
const THROUGH_CLI = Number(process.env['FUZZ_CLI_CASES'] ?? (LONG ? 600 : 200));

/** One backend of a config, as written in the file. */
type BackendItem = string | Record<string, unknown>;

const keys = ['check', 'interval', 'timeout', 'rise', 'fall', 'strategy', 'connect-timeout', 'retries', 'queue-timeout', 'drain-timeout', 'admin-token-file', 'insecure', 'servername', 'listen', 'status'];

function spoiled(r: Prng): unknown {
  return r.pick<unknown>([null, true, -1, 0, 1.5, 2 ** 31, 1e308, '', 'x', '\u0000', '\u202e', [], {}, ['a=h:1'], { name: 'z' }, '__proto__', 'x'.repeat(5000)]);
}

/**
 * A config file's text: a valid config (1 to 4 loopback backends by name,
 * with tunables half the time) spoiled in 0 to 2 ways, or not JSON at all.
 */
function randomConfig(r: Prng, ports: readonly number[], tokenFile: string): string {
  const shape = r.int(0, 19);
  if (shape === 0) return r.bytes(r.int(0, 80)).toString(r.chance(0.5) ? 'latin1' : 'utf8');
  const names = ['a', 'b', 'c', 'd', 'e'];
  const backend: BackendItem[] = [];
  for (const i of [0, 1, 2, 3, 4]) {
    if (!r.chance(0.55)) continue;
    const address = `${r.chance(0.9) ? HOST : '[::1]'}:${ports[i]!}`;
    if (r.chance(0.5)) backend.push(`${names[i]!}=${address}`);
    else {
      const item: Record<string, unknown> = { name: names[i], address };
      if (r.chance(0.5)) item['weight'] = r.pick([0, 0.5, 1, 2, 7, 1_000_000]);
      if (r.chance(0.3)) item['maxConnections'] = r.int(1, 500);
      backend.push(item);
    }
  }
  if (backend.length === 0) backend.push(`a=${HOST}:${ports[0]!}`);
  const doc: Record<string, unknown> = { backend, check: 'tcp', interval: 300, rise: 1, fall: 3, 'drain-timeout': r.int(0, 300), 'admin-token-file': tokenFile };
  if (r.chance(0.3)) doc['strategy'] = r.pick(['least-connections', 'round-robin', 'random-two', 'hash']);
  for (let n = shape <= 6 ? 0 : r.int(1, 2); n > 0; n--) {
    switch (r.int(0, 9)) {
      case 0:
        doc[r.pick(keys)] = spoiled(r);
        break;
      case 1:
        doc[r.pick(['backends', 'weight', 'constructor', 'prototype', 'x'])] = spoiled(r);
        break;
      case 2:
        // A duplicate name or address.
        backend.push(backend[0]!);
        break;
      case 3:
        backend.push(r.pick<BackendItem>([`a b=${HOST}:1`, `${HOST}:0`, `${HOST}:65536`, 'h', { address: `${HOST}:1`, port: 1 }, { name: 'f', address: 'not an address' }]));
        break;
      case 4:
        if (typeof backend[0] === 'object') backend[0]['weight'] = r.pick([-1, 1_000_001, '2', null, Infinity]);
        else doc['backend'] = r.pick([[], '', null, {}]);
        break;
      case 5:
        if (typeof backend[0] === 'object') backend[0]['maxConnections'] = r.pick([0, -1, 1.5, '10', null]);
        else doc['admin-token-file'] = r.pick(['/nonexistent/admin.token', '', 7]);
        break;
      case 6:
        doc['admin-token-file'] = '/nonexistent/admin.token';
        break;
      case 7:
        doc['timeout'] = 400;
        break;
      default:
        doc[r.pick(keys)] = spoiled(r);
    }
  }
  const text = JSON.stringify(doc);
  return shape === 1 ? text.slice(0, r.int(0, text.length - 1)) : text;
}

/** What a reload may change, per backend. */
function poolState(pool: UpstreamPool): string {
  return JSON.stringify(pool.stats().backends.map((b) => [b.id, b.host, b.port, b.admin, b.weight, b.maxConnections]));
}

/** The backends a valid config asks for, as `poolState` shows them once every removal has ended. */
function expectedState(config: BalancerConfig, admin: (id: string) => string): string {
  return JSON.stringify(
    [...config.backends]
      .map((b) => [b.id, b.host, b.port, admin(b.id), b.weight ?? 1, b.maxConnections ?? Infinity])
      .sort((x, y) => String(x[0]).localeCompare(String(y[0]))),
  );
}

function sortedState(state: string): string {
  return JSON.stringify((JSON.parse(state) as unknown[][]).sort((x, y) => String(x[0]).localeCompare(String(y[0]))));
}

test('reload fuzz in process: an invalid config changes nothing, a valid one is applied, nothing else is thrown', { timeout: 600_000 }, async (t) => {
  const servers = await Promise.all(['a', 'b', 'c'].map((n) => namedServer(t, n)));
  // d and e: nothing listens (their checks fail; a reload must not care).
  const ports = [...servers.map((s) => s.port), await closedPort(), await closedPort()];
  const tokenFile = '/etc/balancer/admin.token';
  const seed = seedFromEnv(0x7e10ad);
  const r = new Prng(seed);
  t.diagnostic(`seed ${seed} (replay: SEED=${seed})`);
  let text = JSON.stringify({ backend: [`a=${HOST}:${ports[0]!}`, `b=${HOST}:${ports[1]!}`], check: 'tcp', interval: 300, rise: 1, fall: 3, 'admin-token-file': tokenFile });
  const parse = (): BalancerConfig => {
    const parsed = parseBalancerArgs(['--config', '/etc/balancer/balancer.json', '--listen', `${HOST}:0`], { readFile: () => text });
    if (parsed.kind !== 'run') throw new Error('not a run');
    return parsed.config;
  };
  const readFile = (path: string): Buffer => {
    if (path === tokenFile) return Buffer.from(`${TOKEN}\n`);
    throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
  };
  const balancer = await startBalancer(parse(), { log: () => {}, readFile, loadConfig: parse });
  t.after(() => balancer.destroy());
  const { pool } = balancer;

  let applied = 0;
  let refused = 0;
  for (let i = 0; i < IN_PROCESS; i++) {
    // Operators' admin states must survive a reload: put one backend in maintenance now and then.
    const ids = pool.backends().map((b) => b.id);
    const roll = r.next();
    if (roll < 0.1) pool.markMaintenance(r.pick(ids), 'maintenance');
    else if (roll < 0.2) pool.markReady(r.pick(ids));
    const admins = new Map(pool.stats().backends.map((b) => [b.id, b.admin]));
    const before = poolState(pool);
    text = randomConfig(r, ports, tokenFile);
    const what = `case ${i} (SEED=${seed}): ${text.slice(0, 400)}`;
    let summary;
    try {
      summary = balancer.reload();
    } catch (err) {
      assert.ok(err instanceof ReloadError, `${what}: threw ${err instanceof Error ? err.stack : String(err)}`);
      assert.equal(err.code, 'CONFIG_INVALID', what);
      assert.doesNotMatch(err.message, /[\r\n]/, what);
      assert.equal(poolState(pool), before, `a refused reload changed the pool: ${what}`);
      // The parser agrees (or it was the token file, which only the balancer reads).
      try {
        const config = parse();
        assert.equal(config.adminTokenFile !== undefined && config.adminTokenFile !== tokenFile, true, `${what}: parses, yet refused: ${err.message}`);
      } catch (parseErr) {
        assert.ok(parseErr instanceof ConfigError, what);
      }
      refused++;
      continue;
    }
    applied++;
    const config = parse();
    assert.deepEqual([...summary.added, ...summary.updated, ...summary.replaced, ...summary.unchanged].sort(), config.backends.map((b) => b.id).sort(), what);
    // Removed backends drain; with no member on them that ends on its own. A kept one keeps its admin state; a new or replaced one is active.
    const expected = expectedState(config, (id) => (summary.added.includes(id) || summary.replaced.includes(id) ? 'active' : (admins.get(id) ?? 'active')));
    await waitFor(() => sortedState(poolState(pool)) === expected, { what: `the pool to match: ${what}\n  have ${poolState(pool)}\n  want ${expected}` });
  }
  assert.ok(applied > IN_PROCESS / 5 && refused > IN_PROCESS / 5, `${applied} applied, ${refused} refused`);
  assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
  figure(t, `${IN_PROCESS} reloads in process (seed ${seed}): ${applied} applied and matched, ${refused} refused with CONFIG_INVALID and the pool unchanged`);
});

test('reload fuzz through the CLI: POST /api/reload and SIGHUP with random files; invalid changes nothing, valid is applied, exit 0 at the end', { timeout: 600_000 }, async (t) => {
  const servers = await Promise.all(['a', 'b', 'c'].map((n) => namedServer(t, n)));
  const ports = [...servers.map((s) => s.port), await closedPort(), await closedPort()];
  const dir = tempDir(t);
  const file = join(dir, 'balancer.json');
  const tokenFile = join(dir, 'admin.token');
  writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  writeFileSync(file, JSON.stringify({ backend: [`a=${HOST}:${ports[0]!}`], check: 'tcp', interval: 300, rise: 1, fall: 3 }));
  // The token file on the command line: flags win over the file, so a reload never locks the test out.
  const argv = ['--config', file, '--listen', `${HOST}:0`, '--status', '0', '--admin-token-file', tokenFile];
  const cli = await startCli(t, argv);
  const { child, lines, exited, status } = cli;
  const state = async (): Promise<string> => {
    const reply = await api(status, 'GET', '/api/backends');
    assert.equal(reply.status, 200, 'the balancer keeps answering');
    return JSON.stringify(reply.json.backends.map((b) => [b.id, b.host, b.port, b.admin, b.weight, b.maxConnections ?? Infinity]));
  };
  const outcomes = (): number => lines.filter((l) => / reload: | reload refused/.test(l)).length;

  const seed = seedFromEnv(0xc11e10ad);
  const r = new Prng(seed ^ 0x5a5a);
  t.diagnostic(`seed ${seed} (replay: SEED=${seed})`);
  let applied = 0;
  let refused = 0;
  let byHup = 0;
  for (let i = 0; i < THROUGH_CLI; i++) {
    const before = await state();
    const text = randomConfig(r, ports, tokenFile);
    writeFileSync(file, text);
    const what = `case ${i} (SEED=${seed}): ${text.slice(0, 400)}`;
    let ok: boolean;
    if (r.chance(0.25)) {
      byHup++;
      const n = outcomes();
      child.kill('SIGHUP');
      await waitFor(() => outcomes() > n, { what: `the reload line: ${what}` });
      ok = / reload: /.test(lines.filter((l) => / reload: | reload refused/.test(l)).at(-1)!);
    } else {
      const reply = await api(status, 'POST', '/api/reload', { token: TOKEN });
      assert.ok(reply.status === 200 || (reply.status === 422 && reply.json.error === 'CONFIG_INVALID'), `${reply.status} ${reply.text}: ${what}`);
      ok = reply.status === 200;
    }
    if (!ok) {
      refused++;
      assert.equal(await state(), before, `a refused reload changed the pool: ${what}`);
      continue;
    }
    applied++;
    // As the CLI reads it: the same flags, which win over the file.
    const parsed = parseBalancerArgs(argv, { readFile: () => text });
    assert.equal(parsed.kind, 'run', what);
    const config = (parsed as { config: BalancerConfig }).config;
    const admins = new Map((JSON.parse(before) as [string, string, number, string][]).map((b) => [b[0], b[3]]));
    // A backend kept at the same address keeps its admin state (none is changed here: all active).
    const expected = expectedState(config, (id) => admins.get(id) ?? 'active');
    let have = '';
    // Removed backends drain first (at once: nothing is connected); bounded at 10 s.
    for (let tries = 0; tries < 200 && sortedState((have = await state())) !== expected; tries++) await new Promise((res) => setTimeout(res, 50));
    assert.equal(sortedState(have), expected, `a valid reload was not applied: ${what}`);
  }
  assert.ok(applied > 0 && refused > 0, `${applied} applied, ${refused} refused`);
  child.kill('SIGTERM');
  const [code] = await exited;
  assert.equal(code, 0, cli.stderr());
  assert.equal(cli.stderr(), '');
  figure(t, `${THROUGH_CLI} reloads through the CLI (seed ${seed}; ${byHup} by SIGHUP, the rest by POST /api/reload): ${applied} applied and matched, ${refused} refused and the pool unchanged; exit 0`);
});
