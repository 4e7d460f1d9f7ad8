/**
 * A balancer composed by hand from the primitives, the proof that they
 * compose without `pool.pin()`:
 *
 * - `UpstreamPool` holds the backends (each with a `zone` in `meta`), their
 *   states and the registry; its picker is a custom function that prefers
 *   the client's zone and falls back to any zone;
 * - `HealthProbe` checks `GET /readyz` and marks backends down and up;
 * - the front end does the rest itself: `pool.pick()`, its own dial,
 *   `new PinnedConnection(client, upstream)`, `pool.register(conn)`, and its
 *   own log of why each connection ended.
 *
 * Clients arrive on one listener per zone (as on a node-local proxy). The
 * scenario: zone a's two backends go silent at once; their watches are torn
 * down by the probe's verdict and re-watch on zone b; one of them comes back
 * and new zone-a clients prefer it again.
 *
 * ```sh
 * npx tsx examples/custom-balancer.ts               # runs the scenario, then keeps serving (Ctrl-C to stop)
 * npx tsx examples/custom-balancer.ts --self-test   # runs it and exits (0 when it went as described)
 * ```
 *
 * See docs/examples.md.
 *
 * @module
 */
import { once } from 'node:events';
import net, { type AddressInfo, type Server, type Socket } from 'node:net';
import {
  HealthProbe,
  PinnedConnection,
  UpstreamPool,
  type Backend,
  type ConnectionClosedInfo,
  type FailoverProxyError,
  type PickFunction,
} from '../src/index.js';
import { ApiserverBackend } from './support/apiserver-backend.js';
import { FaultProxy } from './support/fault-proxy.js';
import { WatchFleet } from './support/watch-client.js';

const selfTest = process.argv.includes('--self-test');
const t0 = Date.now();
function say(line: string): void {
  process.stdout.write(`+${((Date.now() - t0) / 1000).toFixed(2).padStart(5)}s  ${line}\n`);
}

// ------------------------------------------------------------- the picker

/**
 * Least connections among the backends in the client's zone; any zone when
 * the client's has nothing up. The pool has already filtered out backends
 * that are down, draining, in maintenance or full.
 */
const preferZone: PickFunction = (candidates, context) => {
  const zone = context.meta?.zone;
  const local = candidates.filter((c) => c.backend.meta.zone === zone);
  const from = local.length > 0 ? local : candidates;
  let best = from[0];
  for (const c of from) if (best === undefined || c.active / c.backend.weight < best.active / best.backend.weight) best = c;
  return best;
};

// ------------------------------------------------------- the teardown log

/** Our own record of how connections ended: one line each, and counts by reason. */
class TeardownLog {
  readonly byReason = new Map<string, number>();

  record(conn: PinnedConnection, zone: string, info: ConnectionClosedInfo): void {
    this.byReason.set(info.reason, (this.byReason.get(info.reason) ?? 0) + 1);
    // Clients closing is the normal case; everything else is worth a line.
    if (info.reason === 'client-closed' || info.reason === 'pool-destroyed') return;
    say(
      `teardown: ${conn.id} (zone ${zone}) on ${conn.backend?.id ?? '?'}: ${info.reason} after ${info.durationMs} ms, ` +
        `${info.bytesFromUpstream} B down / ${info.bytesFromClient} B up`,
    );
  }
}

// ------------------------------------------------------------- the front end

/** Our own dialler: plain TCP with a deadline. */
function dial(backend: Backend, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: backend.host, port: backend.port, allowHalfOpen: true });
    const timer = setTimeout(() => socket.destroy(new Error('connect timeout')), timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

let nextId = 1;

/** Places one client by hand: pick, dial, pin, register. */
async function place(pool: UpstreamPool, log: TeardownLog, client: Socket, zone: string): Promise<void> {
  // Until the pair exists nothing else listens to the client.
  client.on('error', () => {});
  const backend = pool.pick({ client, meta: { zone } });
  if (backend === undefined) {
    say(`front ${zone}: no backend up, client closed`);
    client.destroy();
    return;
  }
  let upstream: Socket;
  try {
    upstream = await dial(backend, 1000);
  } catch (err) {
    say(`front ${zone}: dial to ${backend.id} failed: ${(err as Error).message}`);
    client.destroy();
    return;
  }
  const conn = new PinnedConnection(client, upstream, { backend, id: `c${nextId++}` });
  conn.on('closed', (info) => log.record(conn, zone, info));
  try {
    // Throws BACKEND_DOWN (and destroys the pair) if the backend left service
    // while we dialled: never keep a connection the registry does not know.
    pool.register(conn);
  } catch (err) {
    say(`front ${zone}: ${backend.id} refused the registration: ${(err as FailoverProxyError).code}`);
  }
}

async function front(pool: UpstreamPool, log: TeardownLog, zone: string): Promise<Server> {
  // pauseOnConnect: the client's first bytes wait in its socket while we dial.
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
    void place(pool, log, client, zone);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

// -------------------------------------------------------------- the scenario

async function main(): Promise<void> {
  const zones = { a1: 'a', a2: 'a', b1: 'b' } as const;
  const backends: ApiserverBackend[] = [];
  const proxies = new Map<string, FaultProxy>();
  for (const name of Object.keys(zones)) {
    const backend = await ApiserverBackend.start({ name, tls: false, watchIntervalMs: 100 });
    backends.push(backend);
    proxies.set(name, await FaultProxy.start({ target: backend.address }));
  }

  const pool = new UpstreamPool({
    backends: Object.entries(zones).map(([name, zone]) => ({ ...proxies.get(name)!.address, id: name, meta: { zone } })),
    balancer: preferZone,
  });
  const probe = new HealthProbe({ check: { type: 'http', path: '/readyz' }, interval: 250, timeout: 200, fall: 2, rise: 2 });
  probe.attach(pool);
  pool.on('backendStateChanged', (b, c) => say(`pool: ${b.id} (zone ${String(b.meta.zone)}) ${c.from} -> ${c.to} (${c.reason})`));

  const log = new TeardownLog();
  const frontA = await front(pool, log, 'a');
  const frontB = await front(pool, log, 'b');
  const portOf = (s: Server): number => (s.address() as AddressInfo).port;
  say(`zone a clients -> 127.0.0.1:${portOf(frontA)}, zone b clients -> 127.0.0.1:${portOf(frontB)}`);

  const zoneA = new WatchFleet({ size: 4, host: '127.0.0.1', port: portOf(frontA), tls: false, backoffMs: 50, idPrefix: 'a' });
  const zoneB = new WatchFleet({ size: 2, host: '127.0.0.1', port: portOf(frontB), tls: false, backoffMs: 50, idPrefix: 'b' });
  let late: WatchFleet | undefined;
  const failures: string[] = [];
  const check = (ok: boolean, what: string): void => {
    if (!ok) failures.push(what);
  };
  try {
    await zoneA.waitFor((f) => f.connectedCount === 4, 5000);
    await zoneB.waitFor((f) => f.connectedCount === 2, 5000);
    say(`zone a watches: ${JSON.stringify(zoneA.byBackend())}, zone b watches: ${JSON.stringify(zoneB.byBackend())}`);
    check(zoneA.byBackend().b1 === undefined, 'zone a clients start in zone a');

    say('cut: a1 and a2 go silent (zone a outage)');
    proxies.get('a1')!.cut();
    proxies.get('a2')!.cut();
    await zoneA.waitFor((f) => f.byBackend().b1 === 4 && f.stalled(500).length === 0, 8000);
    say(`zone a watches fell back to zone b: ${JSON.stringify(zoneA.byBackend())}`);
    // At least the 4 first watches; more when one re-watched onto the other
    // zone-a backend before the probe had caught up with it too.
    check((log.byReason.get('probe-failed') ?? 0) >= 4, 'the zone-a watches were torn down by the probe');

    say('restore: a1 answers again');
    proxies.get('a1')!.restore();
    await new Promise<void>((resolve) => {
      const onUp = (b: Backend): void => {
        if (b.id !== 'a1') return;
        pool.off('backendUp', onUp);
        resolve();
      };
      pool.on('backendUp', onUp);
    });
    late = new WatchFleet({ size: 1, host: '127.0.0.1', port: portOf(frontA), tls: false, idPrefix: 'late' });
    await late.waitFor((f) => f.connectedCount === 1, 5000);
    say(`a new zone-a client lands on ${JSON.stringify(late.byBackend())} (existing ones stay put: no rebalancing)`);
    check(late.byBackend().a1 === 1, 'a new zone-a client prefers a1 again');
    say(`teardowns by reason (our own log): ${JSON.stringify(Object.fromEntries(log.byReason))}`);
  } catch (err) {
    failures.push((err as Error).message);
  }

  if (!selfTest && failures.length === 0) {
    say('still serving; Ctrl-C to stop');
    await new Promise((resolve) => process.once('SIGINT', resolve));
  }

  await Promise.all([zoneA.stop(), zoneB.stop(), late?.stop()]);
  await probe.stop();
  await pool.destroy();
  for (const s of [frontA, frontB]) await new Promise<void>((resolve) => s.close(() => resolve()));
  for (const p of proxies.values()) await p.close();
  for (const b of backends) await b.close();
  if (failures.length > 0) {
    say(`FAILED: ${failures.join('; ')}`);
    process.exitCode = 1;
  } else {
    say('done');
  }
}

// A scenario that hangs is a failure too.
setTimeout(() => {
  say('FAILED: did not finish within 20 s');
  process.exit(1);
}, 20_000).unref();

main().catch((err: unknown) => {
  say(`FAILED: ${err instanceof Error ? err.stack : String(err)}`);
  process.exit(1);
});
