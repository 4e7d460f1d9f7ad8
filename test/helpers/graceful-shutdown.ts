/**
 * The graceful apiserver shutdown scenario, shared by its test and by a
 * measurement against an older build of the library (which knows no
 * `leaving` and no classifier): three apiserver-like HTTPS backends, a fleet
 * of watch clients through a pool (TLS passed through), and one backend shut
 * down as kube-apiserver does (readyz fails with `[-]shutdown`, it serves
 * for a delay, ends its own watches at a limited rate, then stops listening).
 */
import type { Socket } from 'node:net';
import { ApiserverBackend } from '../../examples/support/apiserver-backend.js';
import { loadCerts } from '../../examples/support/certs.js';
import { WatchFleet } from '../../examples/support/watch-client.js';
import { frontend, HOST } from './net.js';

/** The part of the library the scenario uses: the current one, or an older build. */
export interface ScenarioLibrary {
  // Loosely typed on purpose: an older build's classes have other option types.
  readonly UpstreamPool: new (options: Record<string, unknown>) => ScenarioPool;
  readonly HealthProbe: new (options: Record<string, unknown>) => {
    attach(pool: unknown): void;
    stop(): Promise<void>;
    health(id: string): { lastResult?: { message?: string; error?: { code?: string } } } | undefined;
  };
}

interface ScenarioPool {
  accept(socket: Socket): void;
  on(event: string, fn: (...args: never[]) => void): unknown;
  stats(): { teardowns: Readonly<Record<string, number>>; backends: readonly { id: string; health: string; teardowns: Readonly<Record<string, number>> }[] };
  destroy(): Promise<void>;
}

export interface ScenarioOptions {
  readonly clients: number;
  /** The backend's `--shutdown-delay-duration`, in ms. */
  readonly delayMs: number;
  /** The backend's `--shutdown-watch-termination-grace-period`, in ms. */
  readonly graceMs: number;
  /** Extra pool options (`leavingGrace`, `leavingRate`); none for an older build. */
  readonly pool?: Record<string, unknown>;
  /** The check's classifier; none for an older build. */
  readonly classify?: unknown;
  /** The backend closes its listener when the delay is over, before ending its watches (kube-apiserver's order). */
  readonly listenerClosesFirst?: boolean;
  /** The failing check `/readyz` reports: `shutdown` (a graceful shutdown) or another (`etcd`: not ready, not leaving). */
  readonly failing?: 'shutdown' | 'etcd';
  readonly log?: (line: string) => void;
}

export interface ScenarioFigures {
  /** Streams on the shut-down backend when it started leaving. */
  readonly onVictim: number;
  /** Streams the victim ended itself (clean end of the chunked stream, seen by its client). */
  readonly endedByBackend: number;
  /** Streams on the victim the balancer closed or tore down (cut short, seen by its client). */
  readonly closedByBalancer: number;
  /** The pool's teardowns of the victim's members, by reason. */
  readonly teardowns: Readonly<Record<string, number>>;
  /** Members placed on the victim after its verdict (leaving, or down). */
  readonly placedAfterVerdict: number;
  /** The victim's health transitions, in order. */
  readonly transitions: readonly string[];
  /** Where the clients are at the end. */
  readonly byBackend: Readonly<Record<string, number>>;
  readonly connected: number;
  /** Other backends that changed health (false verdicts). */
  readonly othersChanged: readonly string[];
  /** How the last check saw the closed listener: `leaving` (a refusal answered), `failed`, or not seen. */
  readonly refusal: string | undefined;
}

const INTERVAL = 200;
const TIMEOUT = 200;

/** Runs the scenario; everything it opens is closed through `t.after`. */
export async function gracefulShutdown(t: { after(fn: () => unknown): void }, lib: ScenarioLibrary, options: ScenarioOptions): Promise<ScenarioFigures> {
  const log = options.log ?? (() => undefined);
  const { ca } = loadCerts();
  const backends = await Promise.all(['b1', 'b2', 'b3'].map((name) => ApiserverBackend.start({ name, host: HOST, watchIntervalMs: 200 })));
  t.after(() => Promise.all(backends.map((b) => b.close())));
  const victim = backends[0]!;
  const pool = new lib.UpstreamPool({
    backends: backends.map((b) => ({ ...b.address, id: b.name })),
    initialState: 'probe',
    ...options.pool,
  });
  t.after(() => pool.destroy());
  const probe = new lib.HealthProbe({
    check: { type: 'https', path: '/readyz', ca, ...(options.classify !== undefined && { classify: options.classify }) },
    interval: INTERVAL,
    timeout: TIMEOUT,
    fall: 2,
    rise: 2,
  });
  probe.attach(pool);
  t.after(() => probe.stop());

  const transitions: string[] = [];
  const othersChanged: string[] = [];
  let verdictAt = 0;
  let placedAfterVerdict = 0;
  // Transitions count from the fault on: a check that timed out while the
  // scenario started (a loaded machine, TLS handshakes of 60 clients at once)
  // is not what this scenario is about, and it is over before the fault,
  // since every backend served streams by then.
  let faultInjected = false;
  pool.on('backendStateChanged', (backend: { id: string }, change: { axis: string; from: string; to: string; reason: string; tornDown: number }) => {
    if (change.axis !== 'health' || !faultInjected) return;
    if (backend.id !== victim.name) {
      if (change.from !== 'unknown') othersChanged.push(`${backend.id} ${change.from} -> ${change.to} (${change.reason})`);
      return;
    }
    if (change.from === 'unknown') return;
    transitions.push(`${change.from} -> ${change.to} (${change.reason}, ${change.tornDown} torn down)`);
    log(`${victim.name}: ${change.from} -> ${change.to} (${change.reason}, ${change.tornDown} torn down)`);
    if (verdictAt === 0) verdictAt = Date.now();
  });
  pool.on('connectionOpened', (member: { backend?: { id: string } }) => {
    if (verdictAt !== 0 && member.backend?.id === victim.name) placedAfterVerdict++;
  });

  const port = await frontend(t as never, pool);
  const fleet = new WatchFleet({ host: HOST, port, size: options.clients, tls: { ca }, backoffMs: 100 });
  t.after(() => fleet.stop());
  await fleet.waitFor((f) => f.connectedCount === options.clients && Object.keys(f.byBackend()).length === 3, 30_000);
  const onVictimClients = fleet.clients.filter((c) => c.backend === victim.name);
  const marks = new Map(onVictimClients.map((c) => [c, c.history.length]));
  log(`streams before: ${JSON.stringify(fleet.byBackend())}`);

  faultInjected = true;
  if (options.failing === 'etcd') victim.setReady(false, 'etcd');
  else void victim.shutdown({ delayMs: options.delayMs, graceMs: options.graceMs, listenerClosesFirst: options.listenerClosesFirst === true });
  // Done when no client is on the victim any more and all are connected again.
  await fleet.waitFor((f) => f.byBackend()[victim.name] === undefined && f.connectedCount === options.clients, options.delayMs + options.graceMs + 30_000);

  // How each stream that was on the victim ended, as its client saw it: a
  // clean end of the chunked stream is the backend's doing; anything cut
  // short (reset, FIN without the terminating chunk) is the balancer's.
  // A backend that stops listening is refused, which a leaving backend answers
  // (it stays leaving); give the checks time to see the closed listener.
  // Wait until a check has met the closed listener (refused: an answer while
  // leaving; a failure to an older build), so the figures include what it did.
  // `failed` only once the victim is down: a single connect failure that is
  // not a refusal (a check whose connection the closing backend broke off,
  // seen once under six busy loops) counts toward `fall`, and the next check,
  // refused, is read as leaving; an older build takes refusals for failures
  // and goes down.
  const refusedCheck = (): string | undefined => {
    const last = probe.health(victim.name)?.lastResult;
    if (last?.message?.startsWith('stopped listening while leaving') === true) return 'leaving';
    const down = pool.stats().backends.find((b) => b.id === victim.name)?.health === 'down';
    if (last?.error?.code === 'PROBE_CONNECT_FAILED' && down) return 'failed';
    return undefined;
  };
  if (options.failing !== 'etcd') {
    const deadline = Date.now() + 20_000;
    while (refusedCheck() === undefined && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, INTERVAL / 4));
  }
  const refusal = refusedCheck();
  let endedByBackend = 0;
  let closedByBalancer = 0;
  for (const client of onVictimClients) {
    const first = client.history.slice(marks.get(client)).find((e) => e.event === 'closed' || e.event === 'error');
    if (first === undefined) continue;
    if (first.event === 'closed' && first.detail === 'EOF') endedByBackend++;
    else closedByBalancer++;
  }
  const stats = pool.stats();
  const teardowns = stats.backends.find((b) => b.id === victim.name)?.teardowns ?? {};
  return {
    onVictim: onVictimClients.length,
    endedByBackend,
    closedByBalancer,
    teardowns: { ...teardowns },
    placedAfterVerdict,
    transitions,
    byBackend: fleet.byBackend(),
    connected: fleet.connectedCount,
    othersChanged,
    refusal,
  };
}
