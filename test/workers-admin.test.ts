// The admin API and reloads with `--workers 2`: what the primary's control
// pool sends to the workers (in this process), then the CLI as a child process
// on loopback: every change made through the API or a SIGHUP reaches both
// workers' pools, and a worker started afterwards begins from the current
// state, not the one the balancer started with.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { test } from 'node:test';
import { ControlPool } from '../src/cli/control-pool.js';
import { type AdminCommand, type HealthMessage } from '../src/cli/ipc.js';
import { ConnectTimeoutError, UpstreamPool, type PoolStats } from '../src/index.js';
import { TOKEN, api, tempDir, type ApiReply } from './helpers/admin.js';
import { startCli } from './helpers/cli.js';
import { HOST, connect, namedServer, readLine, waitFor } from './helpers/net.js';


interface WorkerRow {
  readonly worker: number;
  readonly pid: number;
  readonly answered: boolean;
  readonly listening: boolean;
  readonly total: number;
  readonly members: Record<string, number>;
}
type Stats = PoolStats & { workers: WorkerRow[]; restarts: number };

async function stats(port: number): Promise<Stats> {
  const reply = await api(port, 'GET', '/stats');
  assert.equal(reply.status, 200, reply.text);
  return JSON.parse(reply.text) as Stats;
}

async function pollStats(port: number, condition: (s: Stats) => boolean, what: string, timeout = 30_000): Promise<Stats> {
  const start = Date.now();
  let last: Stats | undefined;
  while (Date.now() - start < timeout) {
    last = await stats(port);
    if (condition(last)) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}; last /stats: ${JSON.stringify({ backends: last?.backends.map((b) => [b.id, b.state, b.members]), workers: last?.workers })}`);
}

function ok(reply: ApiReply, status: number): ApiReply {
  assert.equal(reply.status, status, reply.text);
  return reply;
}

test('ControlPool: each accepted change is sent once, a refused one never; the snapshot is the current state', async (t) => {
  const pool = new UpstreamPool({ backends: [{ id: 'a', host: HOST, port: 1 }, { id: 'b', host: HOST, port: 2 }], initialState: 'probe' });
  const sent: AdminCommand[] = [];
  const verdicts: HealthMessage[] = [];
  const control = new ControlPool(pool, {
    verdict: (v) => verdicts.push(v),
    command: (c) => {
      sent.push(c);
      return Promise.resolve([{ worker: 1, pid: 1, ok: true, result: 3 }]);
    },
  });
  t.after(() => control.close());

  // Health: the pool's changes, as verdicts.
  pool.markUp('a', 'probe-passed', { source: 'probe', code: 'probe-passed' });
  pool.markDown('b', 'probe-failed', { source: 'probe', code: 'PROBE_TIMEOUT' });
  assert.deepEqual(
    verdicts.map((v) => [v.id, v.health, v.reason, v.cause?.code]),
    [
      ['a', 'up', 'probe-passed', 'probe-passed'],
      ['b', 'down', 'probe-failed', 'PROBE_TIMEOUT'],
    ],
  );

  // Refused: nothing sent, the pool's own error.
  assert.throws(() => control.markMaintenance('nope'), { code: 'UNKNOWN_BACKEND' });
  assert.throws(() => control.update('a', { weight: -1 }), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => control.add({ id: 'a', host: HOST, port: 3 }), { code: 'DUPLICATE_BACKEND' });
  await assert.rejects(control.drain('nope'), { code: 'UNKNOWN_BACKEND' });
  await assert.rejects(control.remove('a', { drain: true, timeout: -1 }), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => control.reconcile([{ id: 'x', host: HOST, port: 0 }]), { code: 'INVALID_ARGUMENT' });
  await assert.rejects(control.apply({ op: 'ready', id: 'nope' }), { code: 'UNKNOWN_BACKEND' });
  assert.deepEqual(sent, []);
  assert.equal(pool.status('a')?.admin, 'active');

  // Accepted: sent with what the workers need (the drain deadline, a drained removal).
  await control.drain('a', { timeout: 1234 });
  control.update('a', { weight: 0 });
  const { acks } = control.capture(() => control.markMaintenance('b', 'maintenance'));
  assert.deepEqual(await acks, [[{ worker: 1, pid: 1, ok: true, result: 3 }]]);
  control.add({ id: 'c', host: HOST, port: 3 });
  await control.remove('c', { drain: true, timeout: 500 });
  assert.deepEqual(sent, [
    { op: 'drain', id: 'a', timeout: 1234 },
    { op: 'update', id: 'a', tunables: { weight: 0 } },
    { op: 'maintenance', id: 'b', reason: 'maintenance' },
    { op: 'add', spec: { id: 'c', host: HOST, port: 3, weight: 1, maxConnections: Infinity } },
    { op: 'remove', id: 'c', drain: true, timeout: 500 },
  ]);
  assert.equal(pool.has('c'), false, 'removed here at once: nothing to drain');

  // What a worker started now is given.
  const now = control.snapshot();
  assert.deepEqual(now.backends, [
    { id: 'a', host: HOST, port: 1, weight: 0, maxConnections: Infinity },
    { id: 'b', host: HOST, port: 2, weight: 1, maxConnections: Infinity },
  ]);
  assert.deepEqual(now.replay, [
    { op: 'drain', id: 'a' },
    { op: 'maintenance', id: 'b', reason: 'maintenance' },
  ]);
  assert.deepEqual(
    now.verdicts.map((v) => [v.id, v.health]),
    [
      ['a', 'up'],
      ['b', 'down'],
    ],
  );

  // A reload: one reconcile, with the list as given (not the backends this pool still drains).
  sent.length = 0;
  control.reconcile([{ id: 'a', host: HOST, port: 1 }, 'localhost:4'], { drainTimeout: 700 });
  assert.deepEqual(sent, [{ op: 'reconcile', specs: [{ id: 'a', host: HOST, port: 1 }, 'localhost:4'], drainTimeout: 700 }]);

  // A worker's failed dial reaches whoever listens on the pool (the probe, in the primary).
  const seen: string[] = [];
  pool.on('connectFailed', (backend, error) => seen.push(`${backend.id} ${error.code}`));
  control.connectFailed('a', new ConnectTimeoutError('a', 100));
  control.connectFailed('gone', new ConnectTimeoutError('gone', 100));
  assert.deepEqual(seen, ['a CONNECT_TIMEOUT']);
});

test('CLI --workers 2: admin API changes and SIGHUP reloads reach every worker; a replacement starts from the current state', { timeout: 240_000 }, async (t) => {
  const servers = { a: await namedServer(t, 'a'), b: await namedServer(t, 'b'), c: await namedServer(t, 'c'), d: await namedServer(t, 'd'), e: await namedServer(t, 'e') };
  const at = (name: keyof typeof servers): string => `${HOST}:${servers[name].port}`;
  const dir = tempDir(t);
  const file = join(dir, 'balancer.json');
  writeFileSync(join(dir, 'admin.token'), TOKEN, { mode: 0o600 });
  const write = (backend: unknown): void =>
    writeFileSync(
      file,
      JSON.stringify({
        backend,
        listen: `${HOST}:0`,
        check: 'tcp',
        // Quick to rise, slow to fall: a check timing out on a loaded machine must not take a backend down here.
        interval: 300,
        rise: 1,
        fall: 5,
        status: '0',
        'admin-token-file': 'admin.token',
        'drain-timeout': 60_000,
        strategy: 'round-robin',
        // A backend back from a drain takes its full share at once.
        'slow-start': 0,
        workers: 2,
      }),
    );
  write([`a=${at('a')}`, `b=${at('b')}`, `c=${at('c')}`]);

  const cli = await startCli(t, ['--config', file]);
  const { child, lines, exited, pids } = cli;
  const ports = { listen: cli.listen, status: cli.status };
  const token = TOKEN;
  await pollStats(ports.status, (s) => s.workers.length === 2 && s.backends.length === 3 && s.backends.every((x) => x.state === 'up'), 'three backends up in both workers');

  /** One client: the backend answers with its name. */
  const clients: { socket: Socket; backend: string }[] = [];
  const open = async (): Promise<string> => {
    const socket = await connect(t, ports.listen);
    const backend = await readLine(socket);
    clients.push({ socket, backend });
    return backend;
  };
  /**
   * Clients until every worker took at least `perWorker` new ones (bounded: 200);
   * returns the backends they landed on and the stats after.
   */
  const spread = async (perWorker: number, enough: (s: Stats) => boolean = () => true): Promise<{ landed: string[]; after: Stats }> => {
    const before = await stats(ports.status);
    const took = (s: Stats): boolean =>
      s.workers.length === 2 && s.workers.every((w) => w.total - (before.workers.find((x) => x.worker === w.worker)?.total ?? 0) >= perWorker) && enough(s);
    const landed: string[] = [];
    let after = before;
    for (let i = 0; i < 200 && !took(after); i++) {
      landed.push(await open());
      if (landed.length >= 2 * perWorker) after = await stats(ports.status);
    }
    assert.ok(took(after), `every worker took ${perWorker} new clients: ${JSON.stringify(after.workers)}`);
    return { landed, after };
  };
  const closedOf = (name: string): Promise<unknown[]> =>
    Promise.all(clients.filter((c) => c.backend === name && !c.socket.closed).map((c) => new Promise((resolve) => c.socket.once('close', resolve))));

  // Both workers hold clients on a.
  await spread(3, (s) => s.workers.every((w) => (w.members['a'] ?? 0) > 0));
  const onA = clients.filter((c) => c.backend === 'a').length;

  // Drain a: the answer comes after both workers applied it, with their members.
  const drained = ok(await api(ports.status, 'POST', '/api/backends/a/drain', { token, body: { timeoutMs: 60_000 } }), 202);
  assert.equal(drained.json.admin, 'draining');
  assert.equal(drained.json.members, onA, 'members are the workers\', summed');
  // Neither worker places on a any more; its clients stay.
  const afterDrain = await spread(3);
  assert.ok(!afterDrain.landed.includes('a'), `nothing placed on a draining backend: ${afterDrain.landed.join(' ')}`);
  assert.equal(clients.filter((c) => c.backend === 'a' && c.socket.closed).length, 0, 'a drain closes nothing before its deadline');
  const listed = ok(await api(ports.status, 'GET', '/api/backends'), 200).json;
  assert.equal(listed.backends.find((b) => b.id === 'a')?.admin, 'draining');
  assert.equal(listed.backends.find((b) => b.id === 'a')?.members, onA);
  ok(await api(ports.status, 'POST', '/api/backends/a/ready', { token }), 200);

  // Weight 0 on b: neither worker places on it.
  const weighed = ok(await api(ports.status, 'PATCH', '/api/backends/b', { token, body: { weight: 0 } }), 200);
  assert.equal(weighed.json.weight, 0);
  const afterWeight = await spread(3);
  assert.ok(!afterWeight.landed.includes('b'), `nothing placed on a backend of weight 0: ${afterWeight.landed.join(' ')}`);
  assert.ok(afterWeight.landed.includes('a'), `a takes clients again after ready: ${afterWeight.landed.join(' ')}`);

  // Maintenance on a tears down its clients in both workers; the answer counts them all.
  const aOpen = clients.filter((c) => c.backend === 'a' && !c.socket.closed);
  const aClosed = closedOf('a');
  const before = await stats(ports.status);
  assert.ok(before.workers.every((w) => (w.members['a'] ?? 0) > 0), `both workers hold clients on a: ${JSON.stringify(before.workers)}`);
  const maintenance = ok(await api(ports.status, 'POST', '/api/backends/a/maintenance', { token }), 200);
  assert.equal(maintenance.json.admin, 'maintenance');
  assert.equal(maintenance.json.tornDown, aOpen.length);
  await aClosed;
  for (const w of before.workers) assert.ok(lines.some((l) => l.includes(` worker ${w.worker}: backend a up -> maintenance`)), `worker ${w.worker} logged it:\n${lines.join('\n')}`);

  // Add d: probed, then both workers place on it; DELETE with no drain time closes its clients in both.
  const added = ok(await api(ports.status, 'POST', '/api/backends', { token, body: { name: 'd', address: at('d') } }), 201);
  assert.equal(added.json.id, 'd');
  await pollStats(ports.status, (s) => s.backends.find((x) => x.id === 'd')?.state === 'up', 'd up in the workers');
  await spread(1, (s) => s.workers.every((w) => (w.members['d'] ?? 0) > 0));
  const dClosed = closedOf('d');
  ok(await api(ports.status, 'DELETE', '/api/backends/d', { token, body: { timeoutMs: 0 } }), 202);
  await dClosed;
  await pollStats(ports.status, (s) => !s.backends.some((x) => x.id === 'd'), 'd removed from every worker');
  assert.equal(ok(await api(ports.status, 'GET', '/api/backends/d'), 404).json.error, 'UNKNOWN_BACKEND');

  // SIGHUP with c gone and e new (b's weight back to the file's 1): both workers follow.
  const cOpen = clients.filter((c) => c.backend === 'c' && !c.socket.closed).length;
  assert.ok(cOpen > 0);
  write([`a=${at('a')}`, `b=${at('b')}`, `e=${at('e')}`]);
  child.kill('SIGHUP');
  await waitFor(() => lines.some((l) => l.includes(' reload: ')), { what: 'the reload line' });
  assert.match(lines.find((l) => l.includes(' reload: '))!, / reload: added e; updated b; draining c \(60000 ms\); replaced -; unchanged a$/);
  await pollStats(ports.status, (s) => s.backends.find((x) => x.id === 'e')?.state === 'up', 'e up');
  const afterReload = await spread(2, (s) => s.workers.every((w) => (w.members['e'] ?? 0) > 0));
  assert.ok(!afterReload.landed.includes('c') && !afterReload.landed.includes('a'), afterReload.landed.join(' '));
  assert.ok(afterReload.landed.includes('b'), `b has its weight back: ${afterReload.landed.join(' ')}`);
  // c drains in each worker: its clients stay until the deadline.
  assert.equal(afterReload.after.backends.find((x) => x.id === 'c')?.members, cOpen);
  assert.equal(afterReload.after.backends.find((x) => x.id === 'c')?.admin, 'draining');

  // POST /api/reload is the same reload: nothing left to change.
  // c still drains (its clients are open), so it is still listed and removed again, as in one process.
  const again = ok(await api(ports.status, 'POST', '/api/reload', { token }), 200).json as unknown as Record<string, string[]>;
  assert.deepEqual([again['added'], again['removed'], again['unchanged']], [[], ['c'], ['a', 'b', 'e']]);

  // Drain b, then kill a worker: the replacement starts with a in maintenance,
  // b draining, c gone, e there; it places only on e.
  ok(await api(ports.status, 'POST', '/api/backends/b/drain', { token }), 202);
  const [victim, survivor] = (await stats(ports.status)).workers;
  assert.ok(victim !== undefined && survivor !== undefined);
  process.kill(victim.pid, 'SIGKILL');
  const replaced = await pollStats(
    ports.status,
    (s) => s.restarts === 1 && s.workers.length === 2 && s.workers.every((w) => w.answered && w.listening),
    'a replacement worker',
    60_000,
  );
  const fresh = replaced.workers.find((w) => w.worker !== survivor.worker)!;
  pids.add(fresh.pid);
  const landed: string[] = [];
  let now = replaced;
  for (let i = 0; i < 200 && (now.workers.find((w) => w.worker === fresh.worker)?.total ?? 0) < 3; i++) {
    landed.push(await open());
    now = await stats(ports.status);
  }
  assert.ok((now.workers.find((w) => w.worker === fresh.worker)?.total ?? 0) >= 3, `the replacement took clients: ${JSON.stringify(now.workers)}`);
  assert.deepEqual([...new Set(landed)], ['e'], 'only e takes clients, in the replacement too');
  const freshMembers = now.workers.find((w) => w.worker === fresh.worker)!.members;
  assert.deepEqual(Object.keys(freshMembers).sort(), ['a', 'b', 'e'], 'the replacement has the reloaded list');
  const view = ok(await api(ports.status, 'GET', '/api/backends'), 200).json;
  assert.deepEqual(
    view.backends.map((b) => [b.id, b.admin]),
    [
      ['a', 'maintenance'],
      ['b', 'draining'],
      // Still draining for its removal in the surviving worker (and checked), as in one process.
      ['c', 'draining'],
      ['e', 'active'],
    ],
  );
  // No worker refused a change.
  assert.ok(!lines.some((l) => l.includes('did not apply')), lines.join('\n'));

  // A drain of 60 s: the second signal closes what is left at once.
  child.kill('SIGTERM');
  await waitFor(() => lines.some((l) => l.includes('shutting down: not accepting')), { what: 'the shutdown line' });
  child.kill('SIGTERM');
  const [code] = await exited;
  assert.equal(code, 0, cli.stderr());
  assert.equal(cli.stderr(), '');
});
