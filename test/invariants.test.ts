/**
 * Randomized invariants: thousands of operations — pin (a real loopback
 * client), client close (FIN, destroy, RST), upstream close (FIN, destroy,
 * RST), connection destroy, markDown, markUp, markMaintenance, drain, add, remove (with and
 * without drain), probe results through a check whose outcome the test sets,
 * client traffic, fake-clock advances (drain deadlines, queue timeouts) —
 * interleaved with the I/O they cause. After every step the invariants of
 * test/helpers/invariants.ts must hold; at the end every connection is
 * closed exactly once and every client got back only the bytes it sent.
 *
 * Seeded: the seed is printed, and `SEED=<n>` replays the same operation
 * choices (I/O completion order on a busy machine may still differ).
 * `INVARIANT_OPS=<n>` changes the number of operations per run.
 */
import assert from 'node:assert/strict';
import net, { type AddressInfo, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { HealthProbe, UpstreamPool, type Backend, type FailoverProxyError } from '../src/index.js';
import { FakeClock } from './helpers/fake-clock.js';
import { figure, Prng, seedFromEnv } from './helpers/faults.js';
import { InvariantChecker } from './helpers/invariants.js';
import { activeResources, HOST, listen, settle, waitFor } from './helpers/net.js';

const OPS = Number(process.env['INVARIANT_OPS'] ?? 10_000);
const MAX_CLIENTS = 100;
const IDS = ['b0', 'b1', 'b2', 'b3', 'b4', 'b5'];
const CUSTOM_REASON = 'chaos-monkey';
const allowedPinFailures = new Set(['NO_HEALTHY_BACKEND', 'CLIENT_CLOSED', 'CONNECT_FAILED', 'CONNECT_TIMEOUT', 'POOL_CLOSED']);

interface Client {
  readonly socket: Socket;
  sent: Buffer[];
  received: Buffer[];
}

interface RunFigures {
  ops: number;
  counts: Record<string, number>;
  opened: number;
  pinFailures: Record<string, number>;
  teardowns: Record<string, number>;
  bytesChecked: number;
}

async function run(t: TestContext, seed: number, ops: number): Promise<RunFigures> {
  const random = new Prng(seed);
  const fail = (message: string): never => assert.fail(`SEED=${seed}: ${message}`);

  // Six echo backends; the pool starts with four and may add the rest.
  const servers = new Map<string, { port: number; sockets: Set<Socket> }>();
  for (const id of IDS) servers.set(id, await listen(t, (s) => s.pipe(s)));
  await settle(5);
  const baseline = activeResources();

  const clock = new FakeClock();
  const specOf = (id: string): { host: string; port: number; id: string } => ({ host: HOST, port: servers.get(id)!.port, id });
  const pool = new UpstreamPool({
    clock,
    backends: IDS.slice(0, 4).map(specOf),
    queue: { max: 32, timeout: 5000 },
    connectTimeout: 10_000,
    retries: 2,
  });
  const checker = new InvariantChecker(pool, [CUSTOM_REASON]);
  const healthy = new Map<string, boolean>(IDS.map((id) => [id, true]));
  const probe = new HealthProbe({
    clock,
    autoStart: false,
    rise: 2,
    fall: 2,
    check: (backend: Backend) => (healthy.get(backend.id) === false ? Promise.reject(new Error('told to fail')) : Promise.resolve()),
  });
  probe.attach(pool);

  // The front: every accepted client is pinned; outcomes are counted.
  let pinsPending = 0;
  const pinFailures: Record<string, number> = {};
  const front = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
    pinsPending++;
    pool.pin(socket).then(
      () => pinsPending--,
      (err: FailoverProxyError) => {
        pinsPending--;
        pinFailures[err.code] = (pinFailures[err.code] ?? 0) + 1;
        if (!allowedPinFailures.has(err.code)) fail(`unexpected pin failure ${err.code}: ${err.message}`);
      },
    );
  });
  await new Promise<void>((resolve) => front.listen(0, HOST, resolve));
  const frontPort = (front.address() as AddressInfo).port;

  const clients = new Set<Client>();
  const allClients: Client[] = [];
  const openClient = (): void => {
    const socket = net.connect({ host: HOST, port: frontPort, allowHalfOpen: true });
    const client: Client = { socket, sent: [], received: [] };
    clients.add(client);
    allClients.push(client);
    socket.on('error', () => undefined);
    socket.on('data', (d: Buffer) => client.received.push(d));
    socket.once('end', () => socket.end());
    socket.once('close', () => clients.delete(client));
    const token = random.bytes(random.int(1, 256));
    client.sent.push(token);
    socket.write(token);
  };

  const drains: Promise<unknown>[] = [];
  const counts: Record<string, number> = {};
  const present = (): string[] => pool.backends().map((b) => b.id).sort();
  const absent = (): string[] => IDS.filter((id) => !pool.has(id));
  const sortedClients = (): Client[] => [...clients].sort((a, b) => (a.socket.localPort ?? 0) - (b.socket.localPort ?? 0));
  const sortedConnections = (): ReturnType<InvariantChecker['open']> => [...pool.connections()].sort((a, b) => Number(a.id) - Number(b.id));

  type Op = readonly [name: string, weight: number, run: () => Promise<void> | void];
  const operations: Op[] = [
    ['pin', 24, () => {
      if (clients.size < MAX_CLIENTS) openClient();
    }],
    ['client-close', 12, () => {
      const list = sortedClients();
      if (list.length === 0) return;
      const c = random.pick(list);
      const how = random.int(0, 2);
      if (how === 0) c.socket.end();
      else if (how === 1) c.socket.destroy();
      else c.socket.resetAndDestroy();
    }],
    ['upstream-close', 8, () => {
      const conns = sortedConnections();
      if (conns.length === 0) return;
      const conn = random.pick(conns);
      const server = servers.get(conn.backend!.id)!;
      const s = [...server.sockets].find((x) => x.remotePort === conn.upstream.localPort);
      if (s === undefined) return;
      const how = random.int(0, 2);
      if (how === 0) s.end();
      else if (how === 1) s.destroy();
      else s.resetAndDestroy();
    }],
    ['conn-destroy', 3, () => {
      const conns = sortedConnections();
      if (conns.length === 0) return;
      const conn = random.pick(conns);
      conn.destroy(random.chance(0.5) ? undefined : CUSTOM_REASON, { reset: random.chance(0.5) });
      if (!conn.closed || [...pool.connections()].includes(conn)) fail(`destroy() of #${conn.id} returned with it open or registered`);
    }],
    ['mark-down', 7, () => {
      const ids = present();
      if (ids.length === 0) return;
      const id = random.pick(ids);
      const before = checker.open(id);
      const reason = random.chance(0.5) ? CUSTOM_REASON : 'marked-down';
      const state = pool.status(id)!.state;
      const n = pool.markDown(id, reason);
      // Synchronous teardown: nothing left on it, every one closed with the reason, right now.
      if ([...pool.connections(id)].length !== 0) fail(`markDown(${id}) returned with connections still pinned`);
      if (n !== before.length) fail(`markDown(${id}) tore down ${n}, ${before.length} were open`);
      for (const conn of before) {
        if (!conn.closed || conn.closedInfo?.reason !== reason) fail(`markDown(${id}): #${conn.id} is ${conn.closed ? conn.closedInfo?.reason : 'open'} (was ${state})`);
      }
    }],
    ['mark-up', 7, () => {
      const ids = present();
      if (ids.length > 0) pool.markUp(random.pick(ids));
    }],
    ['maintenance', 2, () => {
      const ids = present();
      if (ids.length === 0) return;
      const id = random.pick(ids);
      pool.markMaintenance(id);
      if ([...pool.connections(id)].length !== 0) fail(`markMaintenance(${id}) returned with connections still pinned`);
    }],
    ['drain', 5, () => {
      const ids = present();
      if (ids.length > 0) drains.push(pool.drain(random.pick(ids), { timeout: random.int(0, 3000) }));
    }],
    ['add', 4, () => {
      const ids = absent();
      if (ids.length > 0) pool.add(specOf(random.pick(ids)));
    }],
    ['remove', 3, () => {
      const ids = present();
      if (ids.length <= 1) return;
      const id = random.pick(ids);
      if (random.chance(0.3)) {
        drains.push(pool.remove(id, { drain: true, timeout: random.int(0, 3000) }));
      } else {
        const before = checker.open(id);
        void pool.remove(id);
        if (pool.has(id)) fail(`remove(${id}) returned and it is still there`);
        for (const conn of before) if (conn.closedInfo?.reason !== 'backend-removed') fail(`remove(${id}): #${conn.id} ${conn.closedInfo?.reason ?? 'open'}`);
      }
    }],
    ['probe', 12, async () => {
      const ids = present();
      if (ids.length === 0) return;
      const id = random.pick(ids);
      healthy.set(id, random.chance(0.6));
      // A backend removed while its check runs rejects with UNKNOWN_BACKEND; that is fine.
      await probe.checkNow(id).catch((err: FailoverProxyError) => {
        if (err.code !== 'UNKNOWN_BACKEND') fail(`checkNow: ${err.code}`);
      });
    }],
    ['traffic', 6, () => {
      const list = sortedClients().filter((c) => c.socket.writable);
      if (list.length === 0) return;
      const c = random.pick(list);
      const bytes = random.bytes(random.int(1, 4096));
      c.sent.push(bytes);
      c.socket.write(bytes);
    }],
    ['advance', 5, () => clock.advance(random.int(1, 2500))],
    ['io', 5, () => settle(random.int(1, 10))],
  ];
  const totalWeight = operations.reduce((n, [, w]) => n + w, 0);
  const choose = (): Op => {
    let x = random.next() * totalWeight;
    for (const op of operations) {
      x -= op[1];
      if (x < 0) return op;
    }
    return operations[operations.length - 1]!;
  };

  const check = (step: number, op: string): void => {
    const v = checker.violations();
    if (v.length > 0) fail(`after step ${step} (${op}): ${v.slice(0, 5).join('; ')}${v.length > 5 ? ` (+${v.length - 5} more)` : ''}`);
    const waiting = pool.stats().waiting;
    if (waiting > 32) fail(`after step ${step} (${op}): ${waiting} waiting, more than queue.max`);
  };

  for (let step = 0; step < ops; step++) {
    const [name, , fn] = choose();
    counts[name] = (counts[name] ?? 0) + 1;
    await fn();
    check(step, name);
    // Let the I/O the step caused run, then check again: invariants hold between steps too.
    await settle(1);
    check(step, `${name}, after I/O`);
  }

  // Wind down: every backend up and healthy, every client told to finish.
  for (const id of present()) {
    healthy.set(id, true);
    pool.markUp(id);
  }
  await waitFor(() => pinsPending === 0 || (clock.advance(1000), false), { what: `pins to settle (${pinsPending} pending)` });
  check(ops, 'wind-down');

  // Echo integrity: whatever came back is exactly a prefix of what was sent.
  let bytesChecked = 0;
  for (const c of allClients) {
    const sent = Buffer.concat(c.sent);
    const got = Buffer.concat(c.received);
    if (got.length > sent.length || !got.equals(sent.subarray(0, got.length))) fail(`a client got back ${got.length} bytes that are not what it sent`);
    bytesChecked += got.length;
  }

  for (const c of allClients) c.socket.destroy();
  await pool.destroy();
  await probe.stop();
  await Promise.all(drains);
  await new Promise<void>((resolve) => front.close(() => resolve()));
  const v = [...checker.violations(), ...checker.audit()];
  if (v.length > 0) fail(`after destroy: ${v.slice(0, 5).join('; ')}`);
  if (checker.open().length !== 0) fail(`${checker.open().length} connections open after destroy`);
  // Nothing left behind by pool, probe or connections: only the six backend servers' handles remain.
  for (const server of servers.values()) for (const s of server.sockets) s.destroy();
  await waitFor(() => activeResources().length <= baseline.length, { what: 'handles released' });
  await settle(5);
  assert.deepEqual(activeResources(), baseline, `SEED=${seed}: handles left behind`);

  const stats = pool.stats();
  return { ops, counts, opened: checker.opened, pinFailures, teardowns: stats.teardowns, bytesChecked };
}

function report(t: TestContext, seed: number, f: RunFigures): void {
  figure(
    t,
    `SEED=${seed}: ${f.ops} operations ${JSON.stringify(f.counts)}; ${f.opened} connections pinned; pin failures ${JSON.stringify(f.pinFailures)}; ` +
      `teardowns ${JSON.stringify(f.teardowns)}; ${f.bytesChecked} echoed bytes verified`,
  );
}

const given = process.env['SEED'];
if (given !== undefined && given !== '') {
  test(`invariants hold through ${OPS} random operations (SEED=${given})`, async (t) => {
    const seed = seedFromEnv();
    report(t, seed, await run(t, seed, OPS));
  });
} else {
  test(`invariants hold through ${OPS} random operations (fixed seed)`, async (t) => {
    const seed = 0xc0ffee;
    report(t, seed, await run(t, seed, OPS));
  });
  test(`invariants hold through ${OPS} random operations (fresh seed)`, async (t) => {
    const seed = seedFromEnv();
    t.diagnostic(`SEED=${seed} (rerun with SEED=${seed} to replay)`);
    report(t, seed, await run(t, seed, OPS));
  });
}
