/**
 * Options of {@link PinnedConnection} and {@link UpstreamPool}: documented
 * types, one frozen defaults object each, and one `resolve…Options()` that
 * validates and merges with `??` (so `0` stays expressible).
 *
 * @module
 */
import type { Socket } from 'node:net';
import type { Backend, BackendInput, UpstreamTlsOptions } from './backend.js';
import type { Balancer, BalancerName, PickFunction } from './balancers/balancer.js';
import { resolveClock, type Clock } from './clock.js';
import { rebalancerDefaults } from './rebalancer.js';
import * as v from './validate.js';
import { MAX_TIMER_MS } from './limits.js';

/** Socket settings applied to both sides of a {@link PinnedConnection}. */
export interface PinnedConnectionOptions {
  /**
   * TCP keepalive on both sockets, so a peer that vanished is eventually
   * noticed by the kernel even when no probe is watching. A pool's `pin()`
   * switches it on once the connection has lived one to two seconds (one
   * sweep per second for all of them): a shorter connection never needs
   * it, and is spared the eight system calls. A connection built by hand
   * gets it at once.
   * @default true
   */
  readonly keepAlive?: boolean | undefined;
  /**
   * Idle time before the first keepalive probe, in ms.
   * @default 30000
   */
  readonly keepAliveInitialDelay?: number | undefined;
  /**
   * Disable Nagle's algorithm on both sockets (latency over batching, as
   * interactive protocols such as the Kubernetes API want).
   * @default true
   */
  readonly noDelay?: boolean | undefined;
  /**
   * Tear the connection down with reason `idle-timeout` after this many ms
   * without a byte in either direction. `0` disables it: Kubernetes watches are
   * legitimately silent for minutes.
   * @default 0
   */
  readonly idleTimeout?: number | undefined;
}

/** @internal */
export interface ResolvedPinnedConnectionOptions {
  readonly keepAlive: boolean;
  readonly keepAliveInitialDelay: number;
  readonly noDelay: boolean;
  readonly idleTimeout: number;
}

/** Defaults of {@link PinnedConnectionOptions}. */
export const pinnedConnectionDefaults: ResolvedPinnedConnectionOptions = Object.freeze({
  keepAlive: true,
  keepAliveInitialDelay: 30_000,
  noDelay: true,
  idleTimeout: 0,
});

const connectionKeys = ['keepAlive', 'keepAliveInitialDelay', 'noDelay', 'idleTimeout'] as const;

/**
 * Where a pool hands a connection the options it resolved once for all of
 * them: a symbol key, so it is no option anyone can pass by name, and the
 * connection skips validating per connection what was validated up front.
 *
 * @internal
 */
export const kResolvedOptions = Symbol('failover-proxy.resolved-options');

/** Validates connection options and fills in defaults. Throws `INVALID_ARGUMENT`. */
export function resolvePinnedConnectionOptions(
  options: PinnedConnectionOptions = {},
  name = 'options',
): ResolvedPinnedConnectionOptions {
  const raw = v.object(name, options);
  v.knownKeys(name, raw, [...connectionKeys, 'backend', 'id', 'clock']);
  const d = pinnedConnectionDefaults;
  return Object.freeze({
    keepAlive: v.boolean(`${name}.keepAlive`, options.keepAlive ?? d.keepAlive),
    keepAliveInitialDelay: v.integer(
      `${name}.keepAliveInitialDelay`,
      options.keepAliveInitialDelay ?? d.keepAliveInitialDelay,
      0,
    ),
    noDelay: v.boolean(`${name}.noDelay`, options.noDelay ?? d.noDelay),
    idleTimeout: v.integer(`${name}.idleTimeout`, options.idleTimeout ?? d.idleTimeout, 0, MAX_TIMER_MS),
  });
}

/**
 * Opens a socket to a backend. Resolve once the socket is connected (for TLS,
 * once the handshake is done); reject with an error when it cannot be. Honour
 * `signal`: when it aborts, destroy the socket and reject.
 *
 * The pool enforces `connectTimeout` around the whole call, so a dialler need
 * not. Inject one to add a SOCKS hop, a custom TLS policy, or a test double.
 */
export type DialFunction = (backend: Backend, options: DialFunctionOptions) => Promise<Socket>;

/** What the pool hands a {@link DialFunction} besides the backend. */
export interface DialFunctionOptions {
  /** Aborted at `connectTimeout`, or when the client leaves or the pool closes. */
  readonly signal: AbortSignal;
  /**
   * Bytes to send first, before anything else and before a TLS handshake:
   * the PROXY protocol header, when the pool's `proxyProtocol` is set. A
   * custom dialler must write them (they are `undefined` otherwise).
   */
  readonly preamble?: Buffer | undefined;
}

/** Bounds of the queue of clients waiting while no backend is up. */
export interface QueueOptions {
  /**
   * How many clients may wait at once; the next one is closed with
   * `NO_HEALTHY_BACKEND` (reason `queue-full`). `0` disables waiting.
   * @default 1024
   */
  readonly max?: number | undefined;
  /**
   * How long a client may wait, in ms, before it is closed with
   * `NO_HEALTHY_BACKEND` (reason `queue-timeout`).
   * @default 10000
   */
  readonly timeout?: number | undefined;
}

/** Options of {@link UpstreamPool}. */
export interface UpstreamPoolOptions {
  /** Backends to start with; more can be added with `add()`. */
  readonly backends?: readonly BackendInput[] | undefined;
  /**
   * How a backend is chosen per connection: a built-in strategy by name, a
   * {@link Balancer}, or a plain function.
   * @default 'least-connections'
   */
  readonly balancer?: BalancerName | Balancer | PickFunction | undefined;
  /**
   * Health of a newly added backend: `'up'` (assume healthy until a probe says
   * otherwise) or `'probe'` (`unknown`, cause `awaiting-probe`, not picked
   * until the first check passes).
   * @default 'up'
   */
  readonly initialState?: 'up' | 'probe' | undefined;
  /**
   * Time allowed to dial a backend (TCP connect, plus TLS handshake when the
   * pool re-originates TLS), in ms. A timeout counts as a connect failure.
   * @default 3000
   */
  readonly connectTimeout?: number | undefined;
  /**
   * Further backends to try after a failed dial (each backend at most once per connection).
   * @default 2
   */
  readonly retries?: number | undefined;
  /** Waiting room for clients that arrive while no backend is up. */
  readonly queue?: QueueOptions | undefined;
  /**
   * Connections the pool holds at most (open plus being dialled); beyond it
   * clients are refused with `MAX_CONNECTIONS`. Per-backend caps are set on
   * the backend (`maxConnections`) and make the picker skip a full backend.
   * @default Infinity
   */
  readonly maxConnections?: number | undefined;
  /**
   * Reset (RST) the client side of connections torn down because their
   * backend left service (down, maintenance, removed, drain deadline), so
   * clients notice at once even if they are only writing. Clean closes
   * forwarded from either peer are never turned into resets.
   * @default true
   */
  readonly resetOnTeardown?: boolean | undefined;
  /** Socket settings for every pinned connection. */
  readonly connection?: PinnedConnectionOptions | undefined;
  /** Dial every backend over TLS with these settings (a backend's own `tls` wins). */
  readonly tls?: UpstreamTlsOptions | undefined;
  /**
   * Send a PROXY protocol header first on each upstream connection, before
   * any TLS handshake, so the backend learns the client's address: the
   * client's addresses for `pin()` (and `connect({ client })`), a `LOCAL`
   * (v2) / `UNKNOWN` (v1) header for connections the pool makes on its own
   * behalf (an agent's). See `docs/tls-and-proxy-protocol.md`.
   * @default false
   */
  readonly proxyProtocol?: false | 'v1' | 'v2' | undefined;
  /**
   * Replaces the built-in dialler (plain TCP, or TLS when configured).
   * @default the built-in dialler
   */
  readonly dial?: DialFunction | undefined;
  /**
   * Default deadline of `close()`, in ms: connections still open then are
   * destroyed with reason `pool-closed`.
   * @default 5000
   */
  readonly closeTimeout?: number | undefined;
  /**
   * Slow start, in ms: a backend that becomes eligible (recovered, made
   * ready, added to a running pool) gets an effective weight that ramps
   * linearly from 10% of its weight to all of it over this time, so a
   * reconnect storm does not land on a cold server. `0` disables it.
   * @default 0
   */
  readonly slowStart?: number | undefined;
  /**
   * Tear down a pinned pair whose writes toward one side have made no
   * progress for this many ms (reason `write-stalled`); a stall toward the
   * backend is also emitted as `writeStalled`, on which an attached probe
   * checks that backend at once (never a failed check by itself). Node has no
   * `TCP_USER_TIMEOUT`, so without this a write to a vanished backend queues
   * for ~15 minutes. Keep it above the probe's detection time. `0` disables it.
   * @default 15000
   */
  readonly writeStallTimeout?: number | undefined;
  /**
   * How long, in ms, a backend whose health is `leaving` (it answered that it
   * is shutting down gracefully, and still serves) keeps its connections for
   * itself to close. It takes no new ones from the moment it is `leaving`;
   * whatever it still holds after this is closed gracefully (reason
   * `leaving-grace`) at `leavingRate`, never all at once. The default covers
   * the longest usual kube-apiserver `--shutdown-delay-duration` (OpenShift's
   * 70 s) with 20 s to spare for the server's own rate-limited ending of its
   * watches. A `leaving` backend that stops answering goes `down` and is torn
   * down at once, whatever is left of this.
   * @default 90000
   */
  readonly leavingGrace?: number | undefined;
  /**
   * Members closed per second, at most, once a `leaving` backend's grace ran
   * out: the {@link Rebalancer}'s default rate, for the same reason (clients
   * that reconnect and re-list at once are a storm).
   * @default 4
   */
  readonly leavingRate?: number | undefined;
  /**
   * What to do while no backend is eligible: `'queue'` new connections until
   * one is (bounded by `queue.timeout`), or `'fail-open'`: place them on every
   * backend that is active though unhealthy (Envoy's panic mode), in case the
   * checks are what failed. Each switch is logged and emitted as `allDownChanged`.
   * @default 'queue'
   */
  readonly allDown?: 'queue' | 'fail-open' | undefined;
  /**
   * How a backend's members are closed when it leaves service: up to
   * `syncMax` inside the call, more in slices of at most `budgetMs` of work
   * per event-loop turn. Either way every member is out of the registry and
   * forwards nothing when the call returns.
   * @default { syncMax: 256, budgetMs: 5 }
   */
  readonly teardown?: TeardownOptions | undefined;
  /** Time source for `since` stamps and timers (tests inject a fake one). */
  readonly clock?: Clock | undefined;
  /**
   * Random source for `random-two`.
   * @default Math.random
   */
  readonly random?: (() => number) | undefined;
}

/** How teardown of many members is spread over event-loop turns. */
export interface TeardownOptions {
  /**
   * Members closed inside the call that takes their backend out.
   * @default 256
   */
  readonly syncMax?: number | undefined;
  /**
   * Time spent closing sockets per event-loop turn beyond `syncMax`, in ms.
   * @default 5
   */
  readonly budgetMs?: number | undefined;
}

/** @internal */
export interface ResolvedQueueOptions {
  readonly max: number;
  readonly timeout: number;
}

/** @internal */
export interface ResolvedUpstreamPoolOptions {
  readonly backends: readonly BackendInput[];
  readonly balancer: BalancerName | Balancer | PickFunction;
  readonly initialState: 'up' | 'probe';
  readonly connectTimeout: number;
  readonly retries: number;
  readonly queue: ResolvedQueueOptions;
  readonly maxConnections: number;
  readonly resetOnTeardown: boolean;
  readonly connection: ResolvedPinnedConnectionOptions;
  readonly tls: UpstreamTlsOptions | undefined;
  readonly proxyProtocol: false | 'v1' | 'v2';
  readonly dial: DialFunction | undefined;
  readonly closeTimeout: number;
  readonly slowStart: number;
  readonly writeStallTimeout: number;
  readonly leavingGrace: number;
  readonly leavingRate: number;
  readonly allDown: 'queue' | 'fail-open';
  readonly teardown: { readonly syncMax: number; readonly budgetMs: number };
  readonly clock: Clock;
  readonly random: () => number;
}

/** Defaults of {@link UpstreamPoolOptions}. */
export const upstreamPoolDefaults = Object.freeze({
  balancer: 'least-connections',
  initialState: 'up',
  connectTimeout: 3000,
  retries: 2,
  queue: Object.freeze({ max: 1024, timeout: 10_000 }),
  maxConnections: Infinity,
  resetOnTeardown: true,
  proxyProtocol: false,
  closeTimeout: 5000,
  slowStart: 0,
  writeStallTimeout: 15_000,
  leavingGrace: 90_000,
  leavingRate: rebalancerDefaults.rate,
  allDown: 'queue',
  teardown: Object.freeze({ syncMax: 256, budgetMs: 5 }),
} as const);

const poolKeys = [
  'backends',
  'balancer',
  'initialState',
  'connectTimeout',
  'retries',
  'queue',
  'maxConnections',
  'resetOnTeardown',
  'connection',
  'tls',
  'proxyProtocol',
  'dial',
  'closeTimeout',
  'slowStart',
  'writeStallTimeout',
  'leavingGrace',
  'leavingRate',
  'allDown',
  'teardown',
  'clock',
  'random',
] as const;


/** Validates pool options and fills in defaults. Throws `INVALID_ARGUMENT`. */
export function resolveUpstreamPoolOptions(options: UpstreamPoolOptions = {}): ResolvedUpstreamPoolOptions {
  const raw = v.object('options', options);
  v.knownKeys('', raw, poolKeys);
  const d = upstreamPoolDefaults;

  if (options.backends !== undefined && !Array.isArray(options.backends)) {
    throw v.invalid('backends', 'an array of backends', options.backends);
  }
  const balancer = options.balancer ?? d.balancer;
  if (typeof balancer !== 'string' && typeof balancer !== 'function' && typeof (balancer as Balancer | null)?.pick !== 'function') {
    throw v.invalid('balancer', "a strategy name, a Balancer or a function", balancer);
  }
  const queue = options.queue === undefined ? {} : v.object('queue', options.queue);
  v.knownKeys('queue', queue, ['max', 'timeout']);
  const teardown = options.teardown === undefined ? {} : v.object('teardown', options.teardown);
  v.knownKeys('teardown', teardown, ['syncMax', 'budgetMs']);
  if (options.tls !== undefined) v.object('tls', options.tls);
  const proxyProtocol = options.proxyProtocol ?? d.proxyProtocol;
  if (proxyProtocol !== false) v.oneOf('proxyProtocol', proxyProtocol, ['v1', 'v2']);
  const clock = resolveClock(options.clock);

  return Object.freeze({
    backends: options.backends ?? [],
    balancer,
    initialState: v.oneOf('initialState', options.initialState ?? d.initialState, ['up', 'probe']),
    connectTimeout: v.integer('connectTimeout', options.connectTimeout ?? d.connectTimeout, 1, MAX_TIMER_MS),
    retries: v.integer('retries', options.retries ?? d.retries, 0, 1000),
    queue: Object.freeze({
      max: v.integer('queue.max', (queue as QueueOptions).max ?? d.queue.max, 0, Infinity),
      timeout: v.integer('queue.timeout', (queue as QueueOptions).timeout ?? d.queue.timeout, 1, MAX_TIMER_MS),
    }),
    maxConnections: v.integer('maxConnections', options.maxConnections ?? d.maxConnections, 1, Infinity),
    resetOnTeardown: v.boolean('resetOnTeardown', options.resetOnTeardown ?? d.resetOnTeardown),
    connection: resolvePinnedConnectionOptions(options.connection, 'connection'),
    tls: options.tls,
    proxyProtocol,
    dial: options.dial === undefined ? undefined : v.func<DialFunction>('dial', options.dial),
    closeTimeout: v.integer('closeTimeout', options.closeTimeout ?? d.closeTimeout, 0, MAX_TIMER_MS),
    slowStart: v.integer('slowStart', options.slowStart ?? d.slowStart, 0, MAX_TIMER_MS),
    leavingGrace: v.integer('leavingGrace', options.leavingGrace ?? d.leavingGrace, 0, MAX_TIMER_MS),
    leavingRate: v.number('leavingRate', options.leavingRate ?? d.leavingRate, 0.01, 10_000),
    writeStallTimeout: options.writeStallTimeout === 0 ? 0 : v.integer('writeStallTimeout', options.writeStallTimeout ?? d.writeStallTimeout, 100, MAX_TIMER_MS),
    allDown: v.oneOf('allDown', options.allDown ?? d.allDown, ['queue', 'fail-open']),
    teardown: Object.freeze({
      syncMax: v.integer('teardown.syncMax', (teardown as TeardownOptions).syncMax ?? d.teardown.syncMax, 0, Infinity),
      budgetMs: v.number('teardown.budgetMs', (teardown as TeardownOptions).budgetMs ?? d.teardown.budgetMs, 0.1, 1000),
    }),
    clock,
    random: options.random === undefined ? Math.random : v.func<() => number>('random', options.random),
  });
}
