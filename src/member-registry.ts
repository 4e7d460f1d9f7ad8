/**
 * The registry of live members, indexed by backend: who is registered, the
 * counters, and the teardown of a backend's members when it leaves service.
 *
 * Teardown is synchronous in what matters: when {@link MemberRegistry.takeOut}
 * returns, every member of the backend is out of the registry and forwards no
 * more bytes. Closing the sockets is the slow part (the kernel's `close()` on
 * thousands of loopback sockets took ~650 ms for 9,900 pairs), so with many
 * members it is sliced across event-loop turns under a time budget per turn,
 * and the process keeps serving its other backends meanwhile.
 *
 * @module
 * @internal
 */
import { performance } from 'node:perf_hooks';
import createDebug from 'debug';
import type { ReadonlyBackendEntry } from './backend-entry.js';
import { refusal, type PoolGate } from './admission.js';
import { BackendDownError, MemberRegisteredError, PoolClosedError } from './errors.js';
import type { ConnectionClosedInfo, TeardownReason } from './events.js';
import { isPoolMember, kGate, kOwner, kQuiesce, type MemberGate, type PoolMember } from './pool-member.js';
import * as v from './validate.js';
import { publishTeardown } from './diagnostics.js';

const log = createDebug('failover-proxy:pool');

// Registered members find their registry and entry through these
// back-references, so the shared `closed` listener allocates no closure.
const kEntry = Symbol('failover-proxy.registry.entry');
type Registered = PoolMember & {
  [kOwner]?: unknown;
  [kEntry]?: ReadonlyBackendEntry | undefined;
  [kQuiesce]?: () => void;
  [kGate]?: MemberGate;
};

/** How teardown of many members is spread over event-loop turns. */
export interface TeardownSlicing {
  /** Up to this many members are closed inside the call itself. */
  readonly syncMax: number;
  /** Time spent closing sockets per event-loop turn, in ms, beyond `syncMax`. */
  readonly budgetMs: number;
}

/**
 * The one writer of backend records ({@link BackendTable}), as the registry
 * sees it: a member joining or leaving a backend's record, and the report of
 * one that closed.
 *
 * @internal
 */
export interface MemberLedger {
  joined(entry: ReadonlyBackendEntry, member: PoolMember): void;
  /** Whether `member` was still in the record (it is not, after this). */
  left(entry: ReadonlyBackendEntry, member: PoolMember, reason: TeardownReason): boolean;
  closed(entry: ReadonlyBackendEntry, info: ConnectionClosedInfo): void;
}

/** What the registry tells its owner. @internal */
export interface RegistryHooks {
  opened(member: PoolMember): void;
  closed(member: PoolMember, entry: ReadonlyBackendEntry, info: ConnectionClosedInfo): void;
}

/** @internal */
export class MemberRegistry {
  readonly #hooks: RegistryHooks;
  readonly #ledger: MemberLedger;
  readonly #slicing: TeardownSlicing;
  readonly teardowns: Record<string, number> = Object.create(null) as Record<string, number>;
  /** Members registered now, all backends. */
  active = 0;
  /** Members registered since the start. */
  total = 0;
  /** Taken-out members whose sockets are still to be closed, with how. */
  readonly #doomed: { member: PoolMember; reason: TeardownReason; reset: boolean }[] = [];
  #doomedHead = 0;
  #sweep: NodeJS.Immediate | undefined;
  #onSwept: (() => void)[] = [];
  /** The gate the pairs of each backend share until it is taken out (see `kGate`). */
  readonly #gates = new WeakMap<ReadonlyBackendEntry, MemberGate>();

  constructor(hooks: RegistryHooks, ledger: MemberLedger, slicing: TeardownSlicing) {
    this.#hooks = hooks;
    this.#ledger = ledger;
    this.#slicing = slicing;
  }

  /** Throws unless `member` is a member that no other registry holds. */
  check(member: unknown): asserts member is PoolMember {
    if (!isPoolMember(member)) throw v.invalid('connection', 'a pool member (PinnedConnection, PinnedSocket, …)', member);
    const owner = (member as Registered)[kOwner];
    if (owner !== undefined && owner !== this) throw new MemberRegisteredError(member.id);
  }

  /** Whether this registry holds `member`. */
  holds(member: PoolMember): boolean {
    return (member as Registered)[kOwner] === this;
  }

  /**
   * Registers a member built by hand (`pool.register`), under the backend it
   * names, by the admission rule at stage `register`: a pool closing
   * destroys it (`POOL_CLOSED`), a backend that no longer serves too
   * (`BACKEND_DOWN`). Throws `INVALID_ARGUMENT` for what is not a member with
   * a backend, `MEMBER_ALREADY_REGISTERED` for one another registry holds.
   * A member this registry holds already is left as it is.
   */
  register(member: PoolMember, find: (id: string) => ReadonlyBackendEntry, gate: PoolGate, reset: boolean): void {
    this.check(member);
    if (member.backend === undefined || member.backend === null) {
      throw v.invalid('connection.backend', 'a Backend of this pool', member.backend);
    }
    if (this.holds(member)) return;
    if (refusal(undefined, 'register', gate) !== undefined) {
      member.destroy('pool-closed');
      throw new PoolClosedError();
    }
    const entry = find(member.backend.id);
    if (refusal(entry, 'register', gate) !== undefined) {
      member.destroy(entry.admin === 'maintenance' ? 'maintenance' : entry.reason, { reset });
      throw new BackendDownError(entry.backend.id, entry.state);
    }
    if (!member.closed) this.add(entry, member);
  }

  /** Registers a member built on a lease: it must be a member of the backend it was placed on. */
  attach(entry: ReadonlyBackendEntry, member: PoolMember): void {
    this.check(member);
    if (member.backend?.id !== entry.backend.id) {
      throw v.invalid('member.backend', `the backend it was placed on (${entry.backend.id})`, member.backend?.id);
    }
    if (!member.closed) this.add(entry, member);
  }

  /** Registers a live member under `entry`. The caller checked it and the entry's state. */
  add(entry: ReadonlyBackendEntry, member: PoolMember): void {
    const m = member as Registered;
    m[kOwner] = this;
    m[kEntry] = entry;
    this.#ledger.joined(entry, member);
    if (m[kGate] !== undefined && member.kind === 'connection') {
      let gate = this.#gates.get(entry);
      if (gate === undefined) this.#gates.set(entry, (gate = { shut: false }));
      m[kGate] = gate;
    }
    this.active++;
    this.total++;
    member.on('closed', onMemberClosed);
    this.#hooks.opened(member);
  }

  /**
   * Takes every member of `entry` out now: out of the registry, counted under
   * `reason`, forwarding nothing. Their sockets are closed before this returns
   * when there are at most `syncMax`, else in slices on later turns. Returns
   * how many were taken out.
   */
  takeOut(entry: ReadonlyBackendEntry, reason: TeardownReason, reset: boolean): number {
    const n = entry.members.size;
    if (n === 0) return 0;
    publishTeardown(entry.backend, reason, n, n > this.#slicing.syncMax);
    if (n <= this.#slicing.syncMax) {
      // Each destroy() emits `closed` synchronously and the handler deletes the
      // member from this set; deleting visited members while iterating is safe.
      for (const member of entry.members) member.destroy(reason, { reset });
      return n;
    }
    // One store silences every pair that shares the backend's gate; later
    // pairs get a new one.
    const gate = this.#gates.get(entry);
    if (gate !== undefined) {
      gate.shut = true;
      this.#gates.delete(entry);
    }
    for (const member of Array.from(entry.members)) {
      if (gate === undefined || (member as Registered)[kGate] !== gate) {
        const quiesce = (member as Registered)[kQuiesce];
        if (quiesce === undefined || member.kind !== 'connection') {
          // Only pairs can be silenced without closing; anything else (an idle
          // agent socket a request could still take from the free list) is
          // closed now, and accounted for by its `closed` event.
          member.destroy(reason, { reset });
          continue;
        }
        // A pair without this gate (from another copy of the package, say).
        quiesce.call(member);
      }
      this.#ledger.left(entry, member, reason);
      this.active--;
      this.#count(reason);
      this.#doomed.push({ member, reason, reset });
    }
    if (log.enabled) log('%s: %d members out, closing in slices', entry.backend.id, n);
    this.#scheduleSweep();
    return n;
  }

  /**
   * Asks every member of `entry` to close gracefully (`close(reason)`, with
   * `timeout` as its own deadline); they leave as they close, the idle ones
   * (an agent's free socket) before this returns.
   */
  closeAll(entry: ReadonlyBackendEntry, reason: TeardownReason, timeout: number): number {
    let n = 0;
    for (const member of Array.from(entry.members)) {
      if (member.closed) continue;
      member.close(reason, { timeout });
      n++;
    }
    return n;
  }

  /** Destroys every member, all backends, at once (no slicing: the pool is going away). */
  destroyAll(entries: Iterable<ReadonlyBackendEntry>, reason: TeardownReason, reset: boolean): void {
    for (const entry of entries) for (const member of entry.members) member.destroy(reason, { reset });
    this.#flush();
  }

  /** Resolves once no sliced teardown is pending. */
  swept(): Promise<void> {
    if (this.#sweep === undefined) return Promise.resolve();
    return new Promise((resolve) => this.#onSwept.push(resolve));
  }

  /** Taken-out members whose sockets are still being closed. */
  get closing(): number {
    return this.#doomed.length - this.#doomedHead;
  }

  #count(reason: TeardownReason): void {
    this.teardowns[reason] = (this.teardowns[reason] ?? 0) + 1;
  }

  #scheduleSweep(): void {
    this.#sweep ??= setImmediate(() => this.#sweepSlice());
  }

  #sweepSlice(): void {
    this.#sweep = undefined;
    const deadline = performance.now() + this.#slicing.budgetMs;
    const doomed = this.#doomed;
    let i = this.#doomedHead;
    // Check the clock every 16 closes: performance.now() costs about as much as a close.
    while (i < doomed.length) {
      const { member, reason, reset } = doomed[i]!;
      doomed[i] = undefined as never;
      i++;
      member.destroy(reason, { reset });
      if ((i & 15) === 0 && performance.now() >= deadline) break;
    }
    this.#doomedHead = i;
    if (i < doomed.length) {
      this.#scheduleSweep();
      return;
    }
    this.#flush();
  }

  #flush(): void {
    if (this.#sweep !== undefined) {
      clearImmediate(this.#sweep);
      this.#sweep = undefined;
    }
    const doomed = this.#doomed;
    for (let i = this.#doomedHead; i < doomed.length; i++) {
      const d = doomed[i]!;
      d.member.destroy(d.reason, { reset: d.reset });
    }
    doomed.length = 0;
    this.#doomedHead = 0;
    const waiters = this.#onSwept;
    this.#onSwept = [];
    for (const resolve of waiters) resolve();
  }

  /** A member emitted `closed`: account for it (unless it was taken out already) and tell the owner. */
  memberClosed(member: Registered, info: ConnectionClosedInfo): void {
    const entry = member[kEntry];
    if (entry === undefined || member[kOwner] !== this) return;
    if (this.#ledger.left(entry, member, info.reason)) {
      this.active--;
      this.#count(info.reason);
    }
    this.#ledger.closed(entry, info);
    this.#hooks.closed(member, entry, info);
  }
}

function onMemberClosed(this: Registered, info: ConnectionClosedInfo): void {
  // eventemitter3 calls a listener with the emitter as `this` when no context is given.
  const registry = this[kOwner];
  if (registry instanceof MemberRegistry) registry.memberClosed(this, info);
}
