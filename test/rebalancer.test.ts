// Rebalancing on real loopback sockets: long-lived connections that piled up
// on two backends while the third was down move back, gracefully and at a
// bounded rate, once it returns; a flapping backend pauses the moves instead
// of pulling connections back and forth.
import assert from 'node:assert/strict';
import net, { type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { Rebalancer, UpstreamPool, type ConnectionClosedInfo, type PoolMember } from '../src/index.js';
import { echoServer, frontend, HOST, waitFor } from './helpers/net.js';

const IDS = ['b1', 'b2', 'b3'] as const;
const CLIENTS = 30;
const TOLERANCE = 0.2;

/**
 * Clients that behave like watches: one long-lived connection each, and a new
 * one as soon as it ends (a rebalanced member ends with a FIN, a torn-down one
 * with a reset). Bounded: each client reconnects at most `maxReconnects` times.
 */
class Fleet {
  readonly sockets = new Set<Socket>();
  reconnects = 0;
  #stopped = false;

  constructor(
    readonly port: number,
    readonly maxReconnects = 500,
    /** How long a client takes to come back after its connection ended (a relist, a backoff). */
    readonly reconnectDelay = 0,
  ) {}

  open(): Promise<void> {
    // A delayed reconnect may come due after the test stopped the fleet.
    if (this.#stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const socket = net.connect({ host: HOST, port: this.port });
      socket.on('error', () => {});
      socket.once('connect', () => resolve());
      this.sockets.add(socket);
      socket.once('close', () => {
        this.sockets.delete(socket);
        if (this.#stopped || this.reconnects >= this.maxReconnects) return;
        this.reconnects++;
        if (this.reconnectDelay === 0) void this.open();
        else setTimeout(() => void this.open(), this.reconnectDelay);
      });
    });
  }

  stop(): void {
    this.#stopped = true;
    for (const socket of this.sockets) socket.destroy();
  }
}

async function setUp(t: TestContext, options: ConstructorParameters<typeof Rebalancer>[1], reconnectDelay = 0) {
  // Registered first, so the clients stop before the pool goes (they would reconnect into a closing pool).
  const started: { fleet?: Fleet } = {};
  t.after(() => started.fleet?.stop());
  const backends = [];
  for (const id of IDS) backends.push({ host: HOST, port: (await echoServer(t)).port, id });
  const pool = new UpstreamPool({ backends });
  t.after(() => pool.destroy());
  const port = await frontend(t, pool);
  const fleet = new Fleet(port, 500, reconnectDelay);
  started.fleet = fleet;
  // One at a time: least-connections spreads them 10/10/10.
  for (let i = 0; i < CLIENTS; i++) await fleet.open();
  await waitFor(() => pool.stats().active === CLIENTS, { what: `${CLIENTS} pinned connections` });
  const rebalancer = new Rebalancer(pool, options);
  t.after(() => rebalancer.close());
  const moves: { member: PoolMember; from: string }[] = [];
  rebalancer.on('moved', (member, from) => moves.push({ member, from: from.id }));
  const paused: string[] = [];
  rebalancer.on('paused', (reason) => paused.push(reason));
  let balanced = 0;
  rebalancer.on('balanced', () => balanced++);
  const closed = new Map<PoolMember, string>();
  pool.on('connectionClosed', (member, info: ConnectionClosedInfo) => closed.set(member, info.reason));
  return { pool, fleet, rebalancer, moves, paused, closed, balancedCount: () => balanced };
}

const counts = (pool: UpstreamPool): number[] => IDS.map((id) => pool.status(id)!.members);

function assertWithinTolerance(pool: UpstreamPool): void {
  const share = CLIENTS / IDS.length;
  const slack = Math.max(1, TOLERANCE * share);
  for (const [i, n] of counts(pool).entries()) {
    assert.ok(Math.abs(n - share) <= slack, `${IDS[i]} holds ${n}, share ${share} ± ${slack} (${counts(pool).join('/')})`);
  }
}

test('a backend that returns gets its share back: moves are graceful (rebalanced), oldest first, never more than the surplus', async (t) => {
  const { pool, fleet, rebalancer, moves, closed, balancedCount } = await setUp(t, {
    rate: 20,
    tolerance: TOLERANCE,
    minAge: 200,
    stableFor: 300,
  });
  assert.deepEqual(counts(pool), [10, 10, 10]);
  const originals = new Set(pool.members());

  assert.equal(pool.markDown('b3'), 10);
  await waitFor(() => fleet.sockets.size === CLIENTS && pool.stats().active === CLIENTS, { what: 'the torn-down clients to reconnect' });
  assert.deepEqual(counts(pool), [15, 15, 0]);
  assert.equal(moves.length, 0, 'nothing to move while b3 is down: the others share everything');

  pool.markUp('b3');
  // Surplus over the equal share on b1 and b2 once b3 is back.
  const surplus = counts(pool).reduce((sum, n) => sum + Math.max(0, n - CLIENTS / IDS.length), 0);
  await waitFor(() => balancedCount() > 0 && pool.stats().active === CLIENTS && fleet.sockets.size === CLIENTS, {
    what: 'the rebalancer to report balance with every client back',
  });
  assertWithinTolerance(pool);
  assert.ok(moves.length > 0, 'some connections moved');
  assert.ok(moves.length <= surplus, `${moves.length} moves, surplus ${surplus}`);
  assert.equal(rebalancer.moves, moves.length);
  assert.ok(moves.every((m) => m.from === 'b1' || m.from === 'b2'), 'moves only off the backends above their share');
  // Graceful: each moved member closed with reason 'rebalanced' (a FIN to the client, not a reset).
  await waitFor(() => moves.every((m) => closed.has(m.member)), { what: 'moved members to close' });
  assert.ok(moves.every((m) => closed.get(m.member) === 'rebalanced'));
  assert.equal(pool.stats().teardowns['rebalanced'], moves.length);
  // Oldest first: every move took a connection placed before b3 went down.
  assert.ok(moves.every((m) => originals.has(m.member)), 'the oldest members move first');
  assert.equal(rebalancer.active, false);

  // Balanced stays balanced: no further moves.
  const settled = moves.length;
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(moves.length, settled);
});

test('clients slow to come back: the moves never outrun them (never more than the surplus)', async (t) => {
  // Each moved client takes 600 ms to reconnect, while the rebalancer may move one every 50 ms.
  const { pool, fleet, moves, balancedCount } = await setUp(t, { rate: 20, tolerance: TOLERANCE, minAge: 200, stableFor: 300 }, 600);
  pool.markDown('b3');
  await waitFor(() => fleet.sockets.size === CLIENTS && pool.stats().active === CLIENTS, { what: 'the torn-down clients to reconnect' });
  assert.deepEqual(counts(pool), [15, 15, 0]);
  pool.markUp('b3');
  await waitFor(() => balancedCount() > 0 && pool.stats().active === CLIENTS && fleet.sockets.size === CLIENTS, {
    what: 'balance with every client back',
  });
  assertWithinTolerance(pool);
  assert.ok(moves.length <= 10, `${moves.length} moves for a surplus of 10`);
});

test('a flapping backend pauses rebalancing: no moves while it flaps, the moves stay bounded, and balance comes once it is stable', async (t) => {
  const { pool, fleet, moves, paused, balancedCount } = await setUp(t, {
    rate: 4,
    tolerance: TOLERANCE,
    minAge: 200,
    stableFor: 1000,
  });
  pool.markDown('b3');
  await waitFor(() => fleet.sockets.size === CLIENTS && pool.stats().active === CLIENTS, { what: 'the torn-down clients to reconnect' });
  pool.markUp('b3');
  // Let the moves start, then flap: down/up every 300 ms, for 3 s.
  await waitFor(() => moves.length > 0, { what: 'the first move' });
  const movesBeforeFlapping = moves.length;
  let flips = 0;
  for (const end = Date.now() + 3000; Date.now() < end && flips < 20; flips++) {
    if (flips % 2 === 0) pool.markDown('b3');
    else pool.markUp('b3');
    await new Promise((r) => setTimeout(r, 300));
  }
  if (pool.status('b3')!.health !== 'up') pool.markUp('b3');
  // Within stableFor of the last change: still no move may have happened since the flapping began.
  const movesWhileFlapping = moves.length - movesBeforeFlapping;
  assert.ok(paused.length > 0, 'the rebalancer reported a pause');
  assert.ok(paused.some((reason) => reason.includes('b3')), `the pause names b3: ${paused.join('; ')}`);
  assert.ok(movesWhileFlapping <= 1, `${movesWhileFlapping} moves while b3 flapped (at most one already due when the first flip came)`);

  // Stable now: it finishes the job, still bounded by the surplus.
  const afterFlapping = moves.length;
  const surplus = counts(pool).reduce((sum, n) => sum + Math.max(0, n - CLIENTS / IDS.length), 0);
  await waitFor(() => balancedCount() > 0 && pool.stats().active === CLIENTS && fleet.sockets.size === CLIENTS, {
    what: 'balance once b3 is stable',
  });
  assertWithinTolerance(pool);
  assert.ok(moves.length - afterFlapping <= surplus, `${moves.length - afterFlapping} moves after the flapping, surplus ${surplus}`);
  // Overall the moves stay bounded: what the first return asked for, plus one stable return's surplus.
  assert.ok(moves.length <= 2 * CLIENTS / IDS.length + 1, `${moves.length} moves in all`);
});

test('Rebalancer validates its options and changes nothing on bad input', (t) => {
  const pool = new UpstreamPool({ backends: ['127.0.0.1:1'] });
  t.after(() => pool.destroy());
  for (const bad of [{ rate: 0 }, { tolerance: -1 }, { minAge: 1.5 }, { warmthFloor: 2 }, { nope: 1 }]) {
    assert.throws(() => new Rebalancer(pool, bad), { code: 'INVALID_ARGUMENT' }, JSON.stringify(bad));
  }
  assert.throws(() => new Rebalancer({} as never), { code: 'INVALID_ARGUMENT' });
  assert.equal(pool.listenerCount('backendStateChanged'), 0, 'a rejected rebalancer left no listener behind');
});
