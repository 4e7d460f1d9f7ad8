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
import type { BackendEntry } from './backend-entry.js';
import { MemberRegisteredError } from './errors.js';
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
  [kEntry]?: BackendEntry | undefined;
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

/** What the registry tells its owner. @internal */
export interface RegistryHooks {
  opened(member: PoolMember): void;
  closed(member: PoolMember, entry: BackendEntry, info: ConnectionClosedInfo): void;
}

/** @internal */
export class MemberRegistry {
  readonly #hooks: RegistryHooks;
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
  readonly #gates = new WeakMap<BackendEntry, MemberGate>();

  constructor(hooks: RegistryHooks, slicing: TeardownSlicing) {
    this.#hooks = hooks;
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

  /** Registers a live member under `entry`. The caller checked it and the entry's state. */
  add(entry: BackendEntry, member: PoolMember): void {
    const m = member as Registered;
    m[kOwner] = this;
    m[kEntry] = entry;
    entry.members.add(member);
    if (m[kGate] !== undefined && member.kind === 'connection') {
      let gate = this.#gates.get(entry);
      if (gate === undefined) this.#gates.set(entry, (gate = { shut: false }));
      m[kGate] = gate;
    }
    entry.total++;
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
  takeOut(entry: BackendEntry, reason: TeardownReason, reset: boolean): number {
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
      entry.members.delete(member);
      this.active--;
      this.#count(entry, reason);
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
  closeAll(entry: BackendEntry, reason: TeardownReason, timeout: number): number {
    let n = 0;
    for (const member of Array.from(entry.members)) {
      if (member.closed) continue;
      member.close(reason, { timeout });
      n++;
    }
    return n;
  }

  /** Destroys every member, all backends, at once (no slicing: the pool is going away). */
  destroyAll(entries: Iterable<BackendEntry>, reason: TeardownReason, reset: boolean): void {
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

  #count(entry: BackendEntry, reason: TeardownReason): void {
    entry.teardowns[reason] = (entry.teardowns[reason] ?? 0) + 1;
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
    if (entry.members.delete(member)) {
      this.active--;
      this.#count(entry, info.reason);
    }
    entry.closedBytesFromClient += info.bytesFromClient;
    entry.closedBytesFromUpstream += info.bytesFromUpstream;
    this.#hooks.closed(member, entry, info);
  }
}

function onMemberClosed(this: Registered, info: ConnectionClosedInfo): void {
  // eventemitter3 calls a listener with the emitter as `this` when no context is given.
  const registry = this[kOwner];
  if (registry instanceof MemberRegistry) registry.memberClosed(this, info);
}
