/**
 * A lease: what a placement hands back once a backend is picked, dialled and
 * admitted. It holds the backend's slot (counted from the pick, so
 * least-connections and the caps see the dial) and the connected upstream
 * until one of three ends: `attach(member)` registers the member built on
 * it, `take()` hands the bare socket to a caller that owns it from then on,
 * `release()` gives everything back (the upstream is destroyed). Exactly one
 * of them counts; later calls throw (`attach`, `take`) or do nothing
 * (`release`).
 *
 * @module
 * @internal
 */
import type { Socket } from 'node:net';
import type { Backend } from './backend.js';
import type { ReadonlyBackendEntry } from './backend-entry.js';
import type { PoolMember } from './pool-member.js';

/** What a lease needs of the placement that granted it. @internal */
export interface LeaseOwner {
  /** The admission rule at stage `dialled`: may `entry` still take the member? */
  admitsDialled(entry: ReadonlyBackendEntry): boolean;
  /** The lease ended: free the dial's slot. */
  leaseEnded(entry: ReadonlyBackendEntry): void;
  /**
   * Registers a member under `entry`: throws `INVALID_ARGUMENT` when it is
   * not a member of that backend, `MEMBER_ALREADY_REGISTERED` when another
   * pool holds it; a member already closed is not registered.
   */
  register(entry: ReadonlyBackendEntry, member: PoolMember): void;
}

/** @internal */
export class Lease {
  readonly #owner: LeaseOwner;
  #held = true;

  constructor(
    readonly entry: ReadonlyBackendEntry,
    /** The connected upstream socket (a PROXY protocol header already queued on it). */
    readonly upstream: Socket,
    owner: LeaseOwner,
  ) {
    this.#owner = owner;
  }

  get backend(): Backend {
    return this.entry.backend;
  }

  /**
   * Whether the backend may still take the member. Ask it right before
   * building the member, in the same synchronous step as `attach`: the lease
   * reaches its holder a microtask after it was granted, and a verdict may
   * have come in between.
   */
  get admitted(): boolean {
    return this.#held && this.#owner.admitsDialled(this.entry);
  }

  /**
   * Ends the lease by registering `member` (built on this lease's upstream,
   * pinned to its backend). When the member is refused the lease ends all
   * the same: the upstream is destroyed and the error thrown.
   */
  attach<M extends PoolMember>(member: M): M {
    this.#assertHeld();
    this.#end();
    try {
      this.#owner.register(this.entry, member);
    } catch (err) {
      this.upstream.destroy();
      throw err;
    }
    return member;
  }

  /** Ends the lease and hands the upstream to the caller, unregistered. */
  take(): Socket {
    this.#assertHeld();
    this.#end();
    return this.upstream;
  }

  /** Gives the slot back and destroys the upstream. Idempotent. */
  release(): void {
    if (!this.#held) return;
    this.#end();
    this.upstream.destroy();
  }

  #end(): void {
    this.#held = false;
    this.#owner.leaseEnded(this.entry);
  }

  #assertHeld(): void {
    if (!this.#held) throw new Error('The lease has ended');
  }
}
