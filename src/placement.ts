/**
 * The one placement path: pick a backend, dial it (counted from the pick),
 * retry another backend when a dial fails, wait in a bounded queue while
 * nothing can be picked, and grant a {@link Lease} on the connected socket
 * once the backend is admitted. {@link PlacementEngine.placeWith} uses the
 * lease in the same synchronous step as the final admission check, so no
 * verdict can slip in between.
 *
 * One `AbortController` per dial attempt and none otherwise: a placement is
 * cancelled (client gone, caller's signal, pool closing) by aborting the
 * attempt in flight or the wait in the queue.
 *
 * @module
 * @internal
 */
import type { Socket } from 'node:net';
import createDebug from 'debug';
import type { Backend, UpstreamTlsOptions } from './backend.js';
import { DialAttempt } from './dial.js';
import { refusal, type PoolGate } from './admission.js';
import type { ReadonlyBackendEntry } from './backend-entry.js';
import type { Balancer, PickContext } from './balancers/balancer.js';
import type { Clock } from './clock.js';
import {
  ClientClosedError,
  ConnectError,
  ConnectTimeoutError,
  FailoverProxyError,
  MaxConnectionsError,
  NoHealthyBackendError,
  PoolClosedError,
} from './errors.js';
import { Lease, type LeaseOwner } from './lease.js';
import type { DialFunction } from './options.js';
import type { PoolMember } from './pool-member.js';
import { proxyAddressesOf, proxyHeader } from './proxy-protocol.js';
import * as v from './validate.js';
import { noop } from './noop.js';

const log = createDebug('failover-proxy:pool');

/** Per-connection input to {@link UpstreamPool.pin}. */
export interface PinOptions {
  /** Hash key for the `hash` strategy. @default the client's remote address */
  readonly key?: string | undefined;
  /** Data for a custom picker (a zone, a tenant). */
  readonly meta?: Readonly<Record<string, unknown>> | undefined;
}

/** Per-connection input to {@link UpstreamPool.connect} and {@link UpstreamPool.place}. */
export interface ConnectOptions extends PinOptions {
  /**
   * The client the upstream is opened for, when there is one: given to the
   * picker, and its addresses are sent in the PROXY protocol header when the
   * pool sends one. Without it the header says the connection is the
   * proxy's own (`LOCAL` in v2, `UNKNOWN` in v1).
   */
  readonly client?: Socket | undefined;
  /** Cancels the pick, the dial and the wait in the queue (the promise rejects with `signal.reason`). */
  readonly signal?: AbortSignal | undefined;
}

/** Options of {@link UpstreamPool.place}. */
export interface PlaceOptions extends ConnectOptions {
  /**
   * Watch `client` while it is placed: its reset or close cancels the
   * placement with `CLIENT_CLOSED`, and its early bytes stay buffered.
   * @default true when `client` is given
   */
  readonly watchClient?: boolean | undefined;
}

/**
 * Builds the member for a connected upstream: called synchronously, once,
 * right after the last check that the backend may take it, and before the
 * member is registered. `id` is the pool's id for the new member.
 */
export type MemberFactory<M extends PoolMember> = (backend: Backend, upstream: Socket, id: string) => M;


/** What placement needs of its pool. @internal */
export interface PlacementHost {
  readonly clock: Clock;
  readonly connectTimeout: number;
  readonly retries: number;
  readonly queueMax: number;
  readonly queueTimeout: number;
  readonly maxConnections: number;
  /** The PROXY protocol header the pool sends first, if any. */
  readonly proxyProtocol: false | 'v1' | 'v2';
  readonly balancer: Balancer;
  /** A dialler of the caller's; the built-in one when undefined. */
  readonly dial: DialFunction | undefined;
  /** The built-in dialler's TLS settings for backends without their own. */
  readonly tls: UpstreamTlsOptions | undefined;
  /** Every backend, in the order added. */
  readonly entries: ReadonlyMap<string, ReadonlyBackendEntry>;
  /** The pool's side of the admission rule (read live). */
  readonly gate: PoolGate;
  /** A dial to `entry` starts (its slot is counted until the lease ends). */
  dialStarted(entry: ReadonlyBackendEntry): void;
  /** A dial's slot is free again. */
  dialEnded(entry: ReadonlyBackendEntry): void;
  /** Registers a member built on a lease (see {@link LeaseOwner.register}). */
  register(entry: ReadonlyBackendEntry, member: PoolMember): void;
  connectFailed(entry: ReadonlyBackendEntry, error: ConnectError | ConnectTimeoutError): void;
}

/**
 * The pick context of a client connection. The hash key defaults to the
 * client's address, read only when a picker asks: `remoteAddress` is a
 * `getpeername()` syscall that least-connections never needs.
 */
class ClientPickContext implements PickContext {
  readonly #key: string | undefined;
  readonly meta: Readonly<Record<string, unknown>> | undefined;
  constructor(
    readonly client: Socket | undefined,
    options: PinOptions,
  ) {
    this.#key = options.key;
    this.meta = options.meta;
  }
  get key(): string | undefined {
    return this.#key ?? this.client?.remoteAddress;
  }
}

/** One connection being placed. @internal */
export class Placement {
  /** Why it was cancelled, once it was. */
  aborted: Error | undefined = undefined;
  /** The dial in flight. */
  attempt: { abort(reason: Error): void } | undefined = undefined;
  /** Set while parked in the queue: wakes it (to re-pick) or fails it. */
  wake: ((error?: Error) => void) | undefined = undefined;
  /** Woken alone for one freed slot: if it cannot take it, the wake-up goes to the next waiter. */
  relay = false;
  /** Parked because the pool-wide cap was reached (its queue timeout then fails with `MAX_CONNECTIONS`). */
  capped = false;
  constructor(
    readonly context: PickContext,
    /** Bytes the dialler sends first (a PROXY protocol header). */
    readonly preamble: Buffer | undefined,
  ) {}

  /** Why it was cancelled, read afresh (TypeScript keeps a narrowed field narrowed across awaits). */
  abortReason(): Error | undefined {
    return this.aborted;
  }

  abort(reason: Error): void {
    if (this.aborted !== undefined) return;
    this.aborted = reason;
    this.attempt?.abort(reason);
    this.wake?.(reason);
  }
}

// A pending client socket finds its placement through this back-reference, so
// watching it allocates no closure.
const kPlacement = Symbol('failover-proxy.placement');
type PendingSocket = Socket & { [kPlacement]?: Placement | undefined };

/** @internal */
export class PlacementEngine implements LeaseOwner {
  readonly #host: PlacementHost;
  readonly #placements = new Set<Placement>();
  /**
   * Placements in the queue, in arrival order. A woken waiter keeps its place
   * until it leaves to dial (or fails), so re-picking and finding nothing
   * never sends it to the back.
   */
  readonly #waiting = new Set<Placement>();
  readonly #candidates: ReadonlyBackendEntry[] = [];
  /** Dials in flight, all backends. */
  dialling = 0;

  constructor(host: PlacementHost) {
    this.#host = host;
  }

  get waiting(): number {
    return this.#waiting.size;
  }

  /**
   * Watches a client while it is placed: its reset or close cancels the
   * placement, and reading into its buffer notices a reset even when the
   * server paused it. Bytes read stay buffered for the upstream. A FIN is not
   * an abort: it is forwarded once the pair exists.
   */
  watch(client: Socket, placement: Placement): void {
    (client as PendingSocket)[kPlacement] = placement;
    client.on('error', onPendingClientError);
    client.on('close', onPendingClientClose);
    if (client.destroyed) placement.abort(new ClientClosedError());
    else client.read(0);
  }

  unwatch(client: Socket): void {
    client.off('error', onPendingClientError);
    client.off('close', onPendingClientClose);
    // Not `delete`: deleting a property turns the socket into a slow
    // dictionary-mode object for the rest of its life (~1.6 kB each).
    (client as PendingSocket)[kPlacement] = undefined;
  }

  /**
   * Places a connection for a caller's options (see {@link PlaceOptions}):
   * watches its client while it is placed, and cancels on its signal. The
   * lease is used as in {@link placeWith}.
   */
  async placeFor<T>(options: PlaceOptions, use: (lease: Lease) => T): Promise<T> {
    const raw = v.object('options', options);
    v.knownKeys('options', raw, ['key', 'meta', 'client', 'signal', 'watchClient']);
    const { client, signal } = options;
    signal?.throwIfAborted();
    const placement = new Placement(new ClientPickContext(client, options), this.#preambleFor(client));
    const watch = client !== undefined && options.watchClient !== false;
    if (watch) this.watch(client, placement);
    const onAbort = signal === undefined ? undefined : (): void => placement.abort(signal.reason as Error);
    if (onAbort !== undefined) signal!.addEventListener('abort', onAbort, { once: true });
    try {
      return await this.placeWith(placement, use);
    } finally {
      if (watch) this.unwatch(client);
      if (onAbort !== undefined) signal!.removeEventListener('abort', onAbort);
    }
  }

  /**
   * {@link placeFor} for a client the pool accepts (`pin`): watched while it
   * is placed, no signal, and no options to validate but the pick's, which
   * the picker reads as given.
   */
  async placeClient<T>(client: Socket, options: PinOptions, use: (lease: Lease) => T): Promise<T> {
    const placement = new Placement(new ClientPickContext(client, options), this.#preambleFor(client));
    this.watch(client, placement);
    try {
      return await this.placeWith(placement, use);
    } finally {
      this.unwatch(client);
    }
  }

  /** The PROXY protocol header for a connection made for `client`, when the pool sends one. */
  #preambleFor(client: Socket | undefined): Buffer | undefined {
    const version = this.#host.proxyProtocol;
    if (version === false) return undefined;
    return proxyHeader(version, client === undefined ? undefined : proxyAddressesOf(client));
  }

  /**
   * Places a connection and uses its lease: `use(lease)` runs synchronously
   * right after the final admission check and must end the lease
   * (`attach` or `take`; one it leaves held is released). When a verdict
   * came in between the grant and this step, the lease is released and
   * another backend is picked. If `use` throws, the lease is released and
   * the error is the placement's.
   */
  async placeWith<T>(placement: Placement, use: (lease: Lease) => T): Promise<T> {
    while (true) {
      const lease = await this.place(placement);
      const aborted = placement.abortReason();
      if (aborted) {
        lease.release();
        throw aborted;
      }
      if (!lease.admitted) {
        lease.release();
        continue;
      }
      try {
        return use(lease);
      } finally {
        lease.release();
      }
    }
  }

  /**
   * Picks, dials with retries, waits in the queue while nothing can be
   * picked, and grants a lease once the dial is done and the backend may
   * still take the connection. The lease holds the dial's slot until it ends.
   */
  async place(placement: Placement): Promise<Lease> {
    const host = this.#host;
    const gate = host.gate;
    const before = refusal(undefined, 'pick', gate);
    if (before === 'pool-closed') throw new PoolClosedError();
    if (before === 'pool-full') throw new MaxConnectionsError(host.maxConnections);
    this.#placements.add(placement);
    let tried: Set<string> | undefined;
    let failures = 0;
    let lastError: ConnectError | ConnectTimeoutError | undefined;
    let deadline = -1;
    try {
      while (true) {
        if (placement.aborted !== undefined) throw placement.aborted;
        // Every attempt asks the whole admission rule, the pool-wide cap
        // included: a waiter woken from the queue is admitted by the same
        // rule as a newcomer.
        const pool = refusal(undefined, 'pick', gate);
        if (pool === 'pool-closed') throw new PoolClosedError();
        const capped = pool === 'pool-full';
        const entry = capped ? undefined : this.pick(placement.context, tried);
        if (entry === undefined) {
          // Every backend we could try has failed us: report the last failure.
          if (!capped && lastError !== undefined) throw lastError;
          // A freed slot this waiter cannot take (its picker wants another
          // backend) goes to the next waiter, or nobody would use it. Under
          // the cap nobody can: keep it.
          if (placement.relay) {
            placement.relay = false;
            if (!capped) this.#relay(placement);
          }
          placement.capped = capped;
          if (deadline < 0) deadline = host.clock.now() + host.queueTimeout;
          await this.#wait(placement, deadline);
          continue;
        }
        placement.relay = false;
        // It leaves the queue to dial; should it have to wait again, it queues anew.
        this.#waiting.delete(placement);
        (tried ??= new Set()).add(entry.backend.id);
        // Counted from the pick, so least-connections sees the dial.
        this.dialling++;
        host.dialStarted(entry);
        let socket: Socket;
        try {
          socket = await this.#dial(entry, placement);
        } catch (err) {
          this.leaseEnded(entry);
          const aborted = placement.abortReason();
          if (aborted) throw aborted;
          lastError = err as ConnectError | ConnectTimeoutError;
          host.connectFailed(entry, lastError);
          if (++failures > host.retries) throw lastError;
          continue;
        }
        const aborted = placement.abortReason();
        if (aborted) {
          this.leaseEnded(entry);
          socket.destroy();
          throw aborted;
        }
        // The backend may have left service while we dialled; never attach to
        // it. That was not its dial failing: should it come back while this
        // client waits, it may be tried again.
        if (!this.admitsDialled(entry)) {
          this.leaseEnded(entry);
          socket.destroy();
          tried.delete(entry.backend.id);
          continue;
        }
        return new Lease(entry, socket, this);
      }
    } finally {
      this.#placements.delete(placement);
      this.#waiting.delete(placement);
      // Woken for a slot and gone before using it (its client left): pass it on.
      if (placement.relay) {
        placement.relay = false;
        this.#relay(placement);
      }
    }
  }

  /** The admission rule after a dial (stage `dialled`): the pool still open, the backend still serving. */
  admitsDialled(entry: ReadonlyBackendEntry): boolean {
    const gate = this.#host.gate;
    return refusal(undefined, 'dialled', gate) === undefined && refusal(entry, 'dialled', gate) === undefined;
  }

  /** A lease (or a dial that came to nothing) frees its slot. */
  leaseEnded(entry: ReadonlyBackendEntry): void {
    this.dialling--;
    this.#host.dialEnded(entry);
  }

  register(entry: ReadonlyBackendEntry, member: PoolMember): void {
    this.#host.register(entry, member);
  }

  /** Chooses a backend among those the admission rule lets take a new connection now, or none. */
  pick(context: PickContext, tried: Set<string> | undefined): ReadonlyBackendEntry | undefined {
    // One reused array: picks are synchronous, so it is never shared.
    const candidates = this.#candidates;
    const { entries, gate } = this.#host;
    for (const entry of entries.values()) {
      if (refusal(entry, 'pick', gate) === undefined && !tried?.has(entry.backend.id)) candidates.push(entry);
    }
    const picked = candidates.length === 0 ? undefined : (this.#host.balancer.pick(candidates, context) as ReadonlyBackendEntry | undefined);
    candidates.length = 0;
    // A custom picker may hand back something that is not one of ours.
    return picked !== undefined && entries.get(picked.backend.id) === picked ? picked : undefined;
  }

  /**
   * A slot freed: wakes the oldest parked waiter. If it cannot take the slot
   * it passes the wake-up on ({@link Placement.relay}), so one freed slot
   * reaches every waiter in turn until one takes it.
   */
  wakeOne(): void {
    for (const placement of this.#waiting) {
      if (placement.wake === undefined) continue;
      placement.relay = true;
      placement.wake();
      return;
    }
  }

  /**
   * A member of `entry` left: its slot lets one waiting client through a
   * per-backend cap, or through the pool-wide cap when the pool was full.
   */
  slotFreed(entry: ReadonlyBackendEntry): void {
    const gate = this.#host.gate;
    if (this.#waiting.size > 0 && (entry.eligible || gate.active + 1 >= gate.maxConnections)) this.wakeOne();
  }

  /** Capacity appeared (a backend became eligible, a cap was raised): every waiter re-picks. */
  wakeAll(): void {
    // Each re-picks; one that still finds nothing parks again in its place,
    // with what is left of its deadline.
    for (const placement of Array.from(this.#waiting)) placement.wake?.();
  }

  /** Hands a wake-up nobody took to the next parked waiter after `from`, if any. */
  #relay(from: Placement): void {
    let after = false;
    for (const placement of this.#waiting) {
      if (placement === from) {
        after = true;
        continue;
      }
      if (!after || placement.wake === undefined) continue;
      placement.relay = true;
      placement.wake();
      return;
    }
  }

  /** Cancels every placement (the pool is closing). */
  abortAll(error: Error): void {
    for (const placement of Array.from(this.#placements)) placement.abort(error);
  }

  #wait(placement: Placement, deadline: number): Promise<void> {
    const { queueMax, clock } = this.#host;
    if (queueMax === 0) return Promise.reject(this.#timedOut(placement, 'queue-disabled'));
    if (!this.#waiting.has(placement) && this.#waiting.size >= queueMax) return Promise.reject(new NoHealthyBackendError('queue-full'));
    const remaining = deadline - clock.now();
    if (remaining <= 0) return Promise.reject(this.#timedOut(placement, 'queue-timeout'));
    return new Promise<void>((resolve, reject) => {
      const timer = clock.setTimeout(() => placement.wake?.(this.#timedOut(placement, 'queue-timeout')), remaining);
      placement.wake = (error?: Error) => {
        clock.clearTimeout(timer);
        placement.wake = undefined;
        if (error === undefined) resolve();
        else reject(error);
      };
      this.#waiting.add(placement);
      if (log.enabled) log('client waiting for a backend (%d waiting)', this.#waiting.size);
    });
  }

  /** Why a wait ended without a backend: the pool-wide cap, or nothing to pick. */
  #timedOut(placement: Placement, why: 'queue-disabled' | 'queue-timeout'): Error {
    return placement.capped ? new MaxConnectionsError(this.#host.maxConnections) : new NoHealthyBackendError(why);
  }

  async #dial(entry: ReadonlyBackendEntry, placement: Placement): Promise<Socket> {
    const { backend } = entry;
    const { clock, connectTimeout, dial } = this.#host;
    // The built-in dialler is cancelled directly; a caller's gets a signal.
    const attempt = dial === undefined ? new DialAttempt(backend, this.#host.tls, placement.preamble) : new AbortController();
    placement.attempt = attempt;
    let timedOut: ConnectTimeoutError | undefined;
    const timer = clock.setTimeout(() => attempt.abort((timedOut = new ConnectTimeoutError(backend.id, connectTimeout))), connectTimeout);
    try {
      return await (attempt instanceof DialAttempt ? attempt.promise : dialWithin(dial!, backend, attempt.signal, placement.preamble));
    } catch (err) {
      if (timedOut !== undefined) throw timedOut;
      if (placement.aborted !== undefined) throw placement.aborted;
      throw err instanceof FailoverProxyError ? err : new ConnectError(backend.id, { cause: err });
    } finally {
      clock.clearTimeout(timer);
      placement.attempt = undefined;
    }
  }
}

/**
 * Runs a dialler, but never waits for it past `signal`: a custom dialler that
 * ignores the signal must not hold the placement past its deadline, nor leak
 * the socket it produces afterwards.
 */
function dialWithin(dial: DialFunction, backend: Backend, signal: AbortSignal, preamble: Buffer | undefined): Promise<Socket> {
  const dialled = dial(backend, { signal, preamble });
  return new Promise<Socket>((resolve, reject) => {
    const onAbort = (): void => {
      reject(signal.reason as Error);
      dialled.then(destroyLate, noop);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    dialled.then(
      (socket) => {
        signal.removeEventListener('abort', onAbort);
        if (signal.aborted) socket.destroy();
        else resolve(socket);
      },
      (err: Error) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}


function destroyLate(socket: Socket): void {
  socket.destroy();
}

function onPendingClientError(this: PendingSocket, err: Error): void {
  this[kPlacement]?.abort(new ClientClosedError({ cause: err }));
}

function onPendingClientClose(this: PendingSocket): void {
  this[kPlacement]?.abort(new ClientClosedError());
}
