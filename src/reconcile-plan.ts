/**
 * What `pool.reconcile(specs)` will do, as a value computed before anything
 * is done: which backends to add, which to update (their tunables, or a
 * draining removal called off because the list names them again), which to
 * drain and remove, and which to replace because their address or TLS
 * settings changed. Pure: it reads the specs and the current records and
 * changes neither.
 *
 * @module
 * @internal
 */
import { resolveBackend, sameIdentity, tunablesDiff, type Backend, type BackendInput, type BackendTunables } from './backend.js';
import { DuplicateBackendError } from './errors.js';

/** What the plan reads of a current backend. @internal */
export interface PlannedEntry {
  readonly backend: Backend;
  /** A draining removal is under way. */
  readonly removing: boolean;
}

/** One backend kept, with the tunables it should have. @internal */
export interface PlannedUpdate {
  readonly id: string;
  readonly tunables: BackendTunables;
  /** Its draining removal is called off: the list names it again. */
  readonly relisted: boolean;
}

/** What happens to one listed backend. @internal */
export type PlannedStep =
  | { readonly action: 'add' | 'replace'; readonly backend: Backend }
  | { readonly action: 'update'; readonly backend: Backend; readonly update: PlannedUpdate }
  | { readonly action: 'keep'; readonly backend: Backend };

/** @internal */
export interface ReconcilePlan {
  /** Every listed backend's step, in list order (the order they are carried out in, after the removals). */
  readonly steps: readonly PlannedStep[];
  /** New backends, in list order. */
  readonly add: readonly Backend[];
  /** Listed backends whose tunables change or whose removal is called off, in list order. */
  readonly update: readonly PlannedUpdate[];
  /** Ids no longer listed: drained, then removed (in the pool's order). */
  readonly remove: readonly string[];
  /** Backends whose identity changed: removed at once and added anew, in list order. */
  readonly replace: readonly Backend[];
  /** Ids listed and left as they are. */
  readonly unchanged: readonly string[];
}

/**
 * Plans a reconcile of `entries` to `specs`. Every spec is validated first:
 * a bad one throws `INVALID_ARGUMENT`, an id listed twice `DUPLICATE_BACKEND`.
 *
 * @internal
 */
export function planReconcile(specs: readonly BackendInput[], entries: Iterable<PlannedEntry>): ReconcilePlan {
  const wanted = new Map<string, { backend: Backend; tunables: BackendTunables }>();
  specs.forEach((spec, i) => {
    const backend = resolveBackend(spec, `specs[${i}]`);
    if (wanted.has(backend.id)) throw new DuplicateBackendError(backend.id, 'pool', ' list');
    // A bare 'host:port' resets the tunables to their defaults.
    const tunables: BackendTunables =
      typeof spec === 'string'
        ? { weight: 1, maxConnections: Infinity, meta: {} }
        : { weight: backend.weight, maxConnections: backend.maxConnections, meta: backend.meta };
    wanted.set(backend.id, { backend, tunables });
  });
  const current = new Map<string, PlannedEntry>();
  const remove: string[] = [];
  for (const entry of entries) {
    current.set(entry.backend.id, entry);
    if (!wanted.has(entry.backend.id)) remove.push(entry.backend.id);
  }
  const steps: PlannedStep[] = [];
  const add: Backend[] = [];
  const update: PlannedUpdate[] = [];
  const replace: Backend[] = [];
  const unchanged: string[] = [];
  for (const [id, { backend, tunables }] of wanted) {
    const entry = current.get(id);
    if (entry === undefined) {
      add.push(backend);
      steps.push({ action: 'add', backend });
    } else if (!sameIdentity(entry.backend, backend)) {
      replace.push(backend);
      steps.push({ action: 'replace', backend });
    } else if (entry.removing || Object.keys(tunablesDiff(entry.backend, tunables)).length > 0) {
      const planned: PlannedUpdate = { id, tunables, relisted: entry.removing };
      update.push(planned);
      steps.push({ action: 'update', backend: entry.backend, update: planned });
    } else {
      unchanged.push(id);
      steps.push({ action: 'keep', backend: entry.backend });
    }
  }
  return { steps, add, update, remove, replace, unchanged };
}
