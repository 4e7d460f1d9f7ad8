/**
 * The discovery layer: sources say which backends they see; the layer
 * merges them with the static (bootstrap) list and applies the result to a
 * pool through `reconcile`, after a debounce. A source that fails or
 * answers with nothing keeps its last good list (never empty); a backend
 * that leaves the list is drained with a deadline, then removed, never
 * marked down: removal from a list means "leaving", not "dead".
 *
 * @module
 */
import createDebug from 'debug';
import { EventEmitter } from 'eventemitter3';
import { backendId, parseHostPort, type BackendInput, type BackendSpec } from '../backend.js';
import { DiscoveryClosedError, DiscoverySourceError, errorCode } from '../errors.js';
import type { ReconcileResult } from '../pool-call-options.js';
import * as v from '../validate.js';
import { resolveDiscoveryOptions, type DiscoveryOptions, type ResolvedDiscoveryOptions } from './discovery-options.js';
import type { DiscoveredBackend, DiscoverySink, DiscoverySource } from './source.js';
import { loadState, saveState } from './state-file.js';
import { noop } from '../noop.js';

const log = createDebug('failover-proxy:discovery');

/** Where a source stands: never answered, answered, or failing/empty with its last good list kept. */
export type SourceState = 'pending' | 'ok' | 'held';

/** Why a source's last good list was kept. */
export type HoldReason = 'failed' | 'empty';

/** Per-source counters, in {@link DiscoveryStats}. */
export interface DiscoverySourceStats {
  readonly state: SourceState;
  /** Backends in the list in use (the last good one). */
  readonly backends: number;
  /** Whether the list in use came from the state file (no answer since start). */
  readonly fromStateFile: boolean;
  /** Good answers. */
  readonly updates: number;
  /** Failed attempts. */
  readonly failures: number;
  /** Empty answers (held: never empty). */
  readonly empties: number;
  /** Clock time of the last good answer; 0 if none. */
  readonly lastUpdateAt: number;
  /** Clock time of the last failure or empty answer; 0 if none. */
  readonly lastHeldAt: number;
  /** The last failure, as data. */
  readonly lastError: { readonly code: string; readonly reason?: string | undefined; readonly message: string } | undefined;
  /** What the source itself counts (`source.stats()`). */
  readonly source: Readonly<Record<string, unknown>>;
}

/** A snapshot of the layer. */
export interface DiscoveryStats {
  /** Reconciles done. */
  readonly applies: number;
  /** Clock time of the last reconcile; 0 if none. */
  readonly lastAppliedAt: number;
  /** Backends wanted at the last reconcile (static included). */
  readonly backends: number;
  readonly sources: Readonly<Record<string, DiscoverySourceStats>>;
}

/** What one apply did. */
export interface DiscoveryApplied {
  readonly added: readonly string[];
  readonly removed: readonly string[];
  readonly updated: readonly string[];
  readonly replaced: readonly string[];
  /** Ids a source lists as draining (terminating but serving), drained now. */
  readonly draining: readonly string[];
  /** The whole wanted set, by id, with the source that gave each. */
  readonly backends: readonly { readonly id: string; readonly source: string; readonly state: 'active' | 'draining' }[];
  readonly at: number;
}

/** Events of {@link Discovery}. */
export interface DiscoveryEvents {
  /** A source answered with a non-empty list. */
  sourceUpdated: [source: string, backends: readonly DiscoveredBackend[]];
  /** A source failed or answered with nothing; its last good list (`kept` backends) stays in use. */
  sourceHeld: [source: string, reason: HoldReason, kept: number, error: Error | undefined];
  /** The wanted set was applied to the pool. */
  applied: [result: DiscoveryApplied];
  /** Applying failed (a bad spec from a source, a closed pool); nothing changed. */
  applyFailed: [error: Error];
  /** Reading or writing the state file failed; discovery goes on without it. */
  stateFileFailed: [operation: 'load' | 'save', error: Error];
  /** `close()` or `destroy()` finished. */
  closed: [];
}

class SourceSlot {
  state: SourceState = 'pending';
  list: readonly DiscoveredBackend[] = [];
  fromStateFile = false;
  updates = 0;
  failures = 0;
  empties = 0;
  lastUpdateAt = 0;
  lastHeldAt = 0;
  lastError: DiscoverySourceStats['lastError'];
  constructor(readonly source: DiscoverySource) {}
}

/**
 * Keeps a pool's membership in line with its sources.
 *
 * @example
 * ```ts
 * import { UpstreamPool, Discovery, DnsSource } from 'failover-proxy';
 *
 * const pool = new UpstreamPool({ backends: ['10.0.0.10:6443'] });
 * const discovery = new Discovery({
 *   pool,
 *   static: ['10.0.0.10:6443'],
 *   sources: [new DnsSource({ name: 'apiservers.example.internal', port: 6443 })],
 * });
 * discovery.on('sourceHeld', (source, reason) => console.warn(source, 'kept its last list:', reason));
 * await discovery.start();
 * ```
 */
export class Discovery extends EventEmitter<DiscoveryEvents> {
  readonly #o: ResolvedDiscoveryOptions;
  readonly #slots = new Map<string, SourceSlot>();
  #static: readonly BackendInput[];
  #timer: unknown;
  #pendingSince = 0;
  #started = false;
  #closed = false;
  #closePromise: Promise<void> | undefined;
  #applies = 0;
  #lastAppliedAt = 0;
  #lastKey = '';
  #wanted = 0;
  /** Ids this layer drained because a source said `draining`: only these it makes ready again. */
  readonly #drainedByUs = new Set<string>();
  #saving: Promise<void> = Promise.resolve();

  constructor(options: DiscoveryOptions) {
    super();
    this.#o = resolveDiscoveryOptions(options);
    this.#static = this.#o.static;
    for (const source of this.#o.sources) this.#slots.set(source.name, new SourceSlot(source));
  }

  /**
   * Loads the state file (when set) and starts every source. The first apply
   * follows the first answers, after the debounce. Rejects with
   * `DISCOVERY_CLOSED` after `close()`.
   */
  async start(): Promise<void> {
    if (this.#closed) throw new DiscoveryClosedError();
    if (this.#started) return;
    this.#started = true;
    if (this.#o.stateFile !== undefined) {
      try {
        const state = await loadState(this.#o.stateFile);
        for (const [name, list] of Object.entries(state?.sources ?? {})) {
          const slot = this.#slots.get(name);
          if (slot === undefined || list.length === 0 || slot.state !== 'pending') continue;
          slot.list = list;
          slot.fromStateFile = true;
        }
        if (state !== undefined) this.#schedule();
      } catch (err) {
        const error = asError(err);
        if (log.enabled) log('state file %s ignored: %s', this.#o.stateFile, error.message);
        this.emit('stateFileFailed', 'load', error);
      }
    }
    if (this.#closed) return;
    for (const slot of this.#slots.values()) {
      const sink = this.#sinkFor(slot);
      try {
        await slot.source.start(sink);
      } catch (err) {
        sink.fail(asError(err));
      }
    }
  }

  #sinkFor(slot: SourceSlot): DiscoverySink {
    return {
      update: (backends) => {
        if (this.#closed) return;
        this.#update(slot, backends);
      },
      fail: (error) => {
        if (this.#closed) return;
        this.#fail(slot, error);
      },
    };
  }

  #update(slot: SourceSlot, backends: readonly DiscoveredBackend[]): void {
    const name = slot.source.name;
    let list: DiscoveredBackend[];
    try {
      if (!isArray(backends)) throw v.invalid(`${name} update`, 'an array of backends', backends);
      list = backends.map((b, i) => checkDiscovered(b, `${name}[${i}]`));
    } catch (err) {
      this.#fail(slot, asError(err));
      return;
    }
    if (list.length === 0) {
      slot.empties++;
      slot.lastHeldAt = this.#o.clock.now();
      slot.state = slot.list.length > 0 ? 'held' : slot.state === 'pending' ? 'pending' : 'held';
      if (log.enabled) log('%s answered with nothing: keeping its %d backends', name, slot.list.length);
      this.emit('sourceHeld', name, 'empty', slot.list.length, undefined);
      return;
    }
    slot.updates++;
    slot.lastUpdateAt = this.#o.clock.now();
    slot.state = 'ok';
    slot.fromStateFile = false;
    const changed = keyOf(slot.list) !== keyOf(list);
    slot.list = list;
    this.emit('sourceUpdated', name, list);
    if (changed) {
      if (log.enabled) log('%s changed: %d backends', name, list.length);
      this.#schedule();
    }
  }

  #fail(slot: SourceSlot, error: Error): void {
    const name = slot.source.name;
    slot.failures++;
    slot.lastHeldAt = this.#o.clock.now();
    if (slot.state === 'ok') slot.state = 'held';
    const reason = error instanceof DiscoverySourceError ? error.reason : undefined;
    slot.lastError = { code: errorCode(error) ?? 'ERROR', reason, message: error.message };
    if (log.enabled) log('%s failed (%s): keeping its %d backends', name, error.message, slot.list.length);
    this.emit('sourceHeld', name, 'failed', slot.list.length, error);
  }

  #schedule(): void {
    if (this.#closed) return;
    const { clock, debounce, maxDelay } = this.#o;
    const now = clock.now();
    if (this.#timer !== undefined) {
      clock.clearTimeout(this.#timer);
    } else {
      this.#pendingSince = now;
    }
    const wait = Math.max(0, Math.min(debounce, this.#pendingSince + maxDelay - now));
    this.#timer = clock.setTimeout(() => {
      this.#timer = undefined;
      this.apply();
    }, wait);
  }

  /**
   * Replaces the static (bootstrap) list and applies at once (a config
   * reload); returns what `reconcile` did (`undefined`: nothing changed).
   * @throws `INVALID_ARGUMENT`, `DUPLICATE_BACKEND` (the old list stays), `DISCOVERY_CLOSED`
   */
  setStatic(specs: readonly BackendInput[]): ReconcileResult | undefined {
    if (this.#closed) throw new DiscoveryClosedError();
    const list: readonly BackendInput[] = specs;
    if (!isArray(list)) throw v.invalid('static', 'an array of backends', specs);
    const previous = this.#static;
    this.#static = Object.freeze([...list]);
    try {
      return this.#apply(true);
    } catch (err) {
      this.#static = previous;
      throw err;
    }
  }

  /** The merged wanted set: static first, then each source's list in order; the first to give an id wins. */
  wanted(): { spec: BackendSpec; source: string; state: 'active' | 'draining' }[] {
    const out = new Map<string, { spec: BackendSpec; source: string; state: 'active' | 'draining' }>();
    this.#static.forEach((input, i) => {
      const spec: BackendSpec = typeof input === 'string' ? parseHostPort(input, `static[${i}]`) : input;
      const id = spec.id ?? backendId(spec.host, spec.port);
      if (!out.has(id)) out.set(id, { spec: { ...spec, id, meta: { ...spec.meta, source: 'static' } }, source: 'static', state: 'active' });
    });
    for (const slot of this.#slots.values()) {
      for (const b of slot.list) {
        const id = b.id ?? backendId(b.host, b.port);
        if (out.has(id)) continue;
        const spec: BackendSpec = { host: b.host, port: b.port, id, weight: b.weight, meta: { ...b.meta, source: slot.source.name } };
        out.set(id, { spec, source: slot.source.name, state: b.state ?? 'active' });
      }
    }
    return Array.from(out.values());
  }

  /**
   * Applies the wanted set now, without waiting for the debounce. Does
   * nothing (returns `undefined`) when it has not changed since the last
   * apply. Failures are reported with `applyFailed`.
   */
  apply(): ReconcileResult | undefined {
    return this.#apply(false);
  }

  #apply(throwing: boolean): ReconcileResult | undefined {
    if (this.#closed) return undefined;
    if (this.#timer !== undefined) {
      this.#o.clock.clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    const { pool, drainTimeout, clock } = this.#o;
    let wanted: ReturnType<Discovery['wanted']>;
    let result: ReconcileResult;
    try {
      wanted = this.wanted();
      const key = JSON.stringify(wanted);
      if (key === this.#lastKey || pool.closed) return undefined;
      result = pool.reconcile(wanted.map((w) => w.spec), { drainTimeout });
      this.#lastKey = key;
    } catch (err) {
      const error = asError(err);
      if (log.enabled) log('apply failed: %s', error.message);
      if (throwing) throw error;
      this.emit('applyFailed', error);
      return undefined;
    }
    result.settled.catch(noop);
    const draining: string[] = [];
    const listed = new Set<string>();
    for (const w of wanted) {
      const id = w.spec.id!;
      listed.add(id);
      const status = pool.status(id);
      if (status === undefined) continue;
      if (w.state === 'draining') {
        if (status.admin === 'active') {
          pool.drain(id, { timeout: drainTimeout }).catch(noop);
          this.#drainedByUs.add(id);
          draining.push(id);
        }
      } else if (this.#drainedByUs.delete(id) && status.admin === 'draining') {
        pool.markReady(id, 'discovered-ready');
      }
    }
    for (const id of this.#drainedByUs) if (!listed.has(id)) this.#drainedByUs.delete(id);
    this.#applies++;
    this.#wanted = wanted.length;
    const at = (this.#lastAppliedAt = clock.now());
    const applied: DiscoveryApplied = {
      added: result.added,
      removed: result.removed,
      updated: result.updated,
      replaced: result.replaced,
      draining,
      backends: wanted.map((w) => ({ id: w.spec.id!, source: w.source, state: w.state })),
      at,
    };
    if (log.enabled) log('applied %d backends: +%d -%d ~%d draining %d', wanted.length, result.added.length, result.removed.length, result.updated.length, draining.length);
    this.emit('applied', applied);
    this.#save();
    return result;
  }

  #save(): void {
    const path = this.#o.stateFile;
    if (path === undefined) return;
    const sources: Record<string, readonly DiscoveredBackend[]> = {};
    for (const [name, slot] of this.#slots) if (slot.list.length > 0) sources[name] = slot.list;
    const state = { version: 1 as const, savedAt: this.#o.clock.now(), sources };
    this.#saving = this.#saving.then(() =>
      saveState(path, state).catch((err: unknown) => {
        this.emit('stateFileFailed', 'save', asError(err));
      }),
    );
  }

  /** A snapshot of every source and of the last apply. */
  stats(): DiscoveryStats {
    const sources: Record<string, DiscoverySourceStats> = {};
    for (const [name, s] of this.#slots) {
      let extra: Readonly<Record<string, unknown>> = {};
      try {
        extra = s.source.stats?.() ?? {};
      } catch {
        // A source's counters are informative; a throwing getter changes nothing.
      }
      sources[name] = {
        state: s.state,
        backends: s.list.length,
        fromStateFile: s.fromStateFile,
        updates: s.updates,
        failures: s.failures,
        empties: s.empties,
        lastUpdateAt: s.lastUpdateAt,
        lastHeldAt: s.lastHeldAt,
        lastError: s.lastError,
        source: extra,
      };
    }
    return { applies: this.#applies, lastAppliedAt: this.#lastAppliedAt, backends: this.#wanted, sources };
  }

  /** Whether `close()` or `destroy()` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Stops every source and the debounce; the pool keeps what was applied.
   * Idempotent: every call returns the same promise.
   */
  close(): Promise<void> {
    if (this.#closePromise === undefined) {
      this.#closed = true;
      if (this.#timer !== undefined) this.#o.clock.clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#closePromise = (async () => {
        await Promise.all(Array.from(this.#slots.values(), async (slot) => {
          try {
            await slot.source.close();
          } catch (err) {
            if (log.enabled) log('%s close failed: %s', slot.source.name, asError(err).message);
          }
        }));
        await this.#saving;
        log('closed');
        this.emit('closed');
      })();
    }
    return this.#closePromise;
  }

  /** The same as {@link close}: sources hold no traffic to wait for. */
  destroy(): Promise<void> {
    return this.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function checkDiscovered(b: DiscoveredBackend, name: string): DiscoveredBackend {
  v.object(name, b);
  v.knownKeys(name, b as unknown as Record<string, unknown>, ['host', 'port', 'id', 'state', 'weight', 'meta']);
  const out: { -readonly [K in keyof DiscoveredBackend]: DiscoveredBackend[K] } = {
    host: v.string(`${name}.host`, b.host),
    port: v.integer(`${name}.port`, b.port, 1, 65535),
  };
  if (b.id !== undefined) out.id = v.string(`${name}.id`, b.id);
  if (b.state !== undefined) out.state = v.oneOf(`${name}.state`, b.state, ['active', 'draining']);
  if (b.weight !== undefined) out.weight = v.number(`${name}.weight`, b.weight, 0);
  if (b.meta !== undefined) out.meta = v.object(`${name}.meta`, b.meta);
  return out;
}

function keyOf(list: readonly DiscoveredBackend[]): string {
  return JSON.stringify(list);
}


function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** `Array.isArray` without widening to `any[]`. */
function isArray(value: unknown): value is readonly unknown[] {
  return Array.isArray(value);
}
