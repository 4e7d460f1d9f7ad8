/**
 * Cluster-wide operator intent: drain or maintenance of a backend declared
 * once, in a ConfigMap every balancer watches (one balancer per node), and
 * applied by each through its pool's admin calls. Keys name a backend by
 * `HOST_PORT` (`10.0.0.3_6443`; ConfigMap keys allow no `:`) or by `HOST`
 * (every port); values are `drain`, `maintenance` or `active`. The intent is
 * cached: when the API cannot be reached the last one stays applied
 * (fail-static) and still applies to backends added meanwhile. Only intent
 * travels: health verdicts stay local, so a partition is seen per node.
 *
 * @module
 */
import createDebug from 'debug';
import { EventEmitter } from 'eventemitter3';
import type { Backend } from '../backend.js';
import type { BackendStatus } from '../backend-status.js';
import { DiscoveryClosedError, type DiscoverySourceError } from '../errors.js';
import type { DrainOptions } from '../pool-call-options.js';
import * as v from '../validate.js';
import { kubeConnectionKeys, resolveKubeConnectionOptions, type KubeConnectionOptions, type ResolvedKubeConnectionOptions } from './kube-options.js';
import { KubeTransport } from './kube-transport.js';
import { KubeWatch, type KubeObject } from './kube-watch.js';
import { MAX_TIMER_MS } from '../limits.js';
import { noop } from '../noop.js';

const log = createDebug('failover-proxy:discovery:intent');

/** What an operator may declare for a backend. */
export type BackendIntent = 'drain' | 'maintenance' | 'active';

/** What the watcher needs of the pool it acts on: {@link UpstreamPool} fits. */
export interface IntentPool {
  backends(): Iterable<Backend>;
  status(id: string): BackendStatus | undefined;
  drain(id: string, options?: DrainOptions): Promise<void>;
  markMaintenance(id: string, reason?: string): number;
  markReady(id: string, reason?: string): void;
  readonly closed: boolean;
  on(event: 'backendAdded', fn: (backend: Backend) => void): unknown;
  off(event: 'backendAdded', fn: (backend: Backend) => void): unknown;
}

/** Options of {@link ClusterIntent}. */
export interface ClusterIntentOptions extends KubeConnectionOptions {
  /** The pool whose admin state follows the intent. */
  readonly target: IntentPool;
  /** Namespace of the ConfigMap. @default 'kube-system' */
  readonly namespace?: string | undefined;
  /** Name of the ConfigMap. @default 'failover-proxy-intent' */
  readonly configMap?: string | undefined;
  /** Drain deadline for a declared drain, in ms. @default 30000 */
  readonly drainTimeout?: number | undefined;
}

/** One admin change made because of the intent. */
export interface IntentChange {
  readonly id: string;
  readonly intent: BackendIntent;
}

/** Events of {@link ClusterIntent}. */
export interface ClusterIntentEvents {
  /** A new intent was read (the ConfigMap's data; `{}` when it does not exist). */
  intentUpdated: [intent: Readonly<Record<string, string>>];
  /** Admin changes made. */
  applied: [changes: readonly IntentChange[]];
  /** The API could not be read; the cached intent stays applied. */
  intentHeld: [error: DiscoverySourceError];
  /** A value that is not `drain`, `maintenance` or `active` (ignored). */
  intentInvalid: [key: string, value: string];
  closed: [];
}

interface ConfigMap extends KubeObject {
  readonly data?: Readonly<Record<string, string>> | undefined;
}

const values: readonly BackendIntent[] = ['drain', 'maintenance', 'active'];

/** The ConfigMap key of a backend: its id with `:` as `_` and no brackets. */
export function intentKey(backend: { host: string; port: number }): string {
  return `${backend.host.replaceAll(':', '-')}_${backend.port}`;
}

/**
 * Watches the intent ConfigMap and applies it to a pool.
 *
 * @example
 * ```ts
 * // kubectl -n kube-system create configmap failover-proxy-intent --from-literal=10.0.0.3_6443=drain
 * const intent = new ClusterIntent({ access, pool, target: pool, bootstrap: ['10.0.0.10:6443'] });
 * await intent.start();
 * ```
 */
export class ClusterIntent extends EventEmitter<ClusterIntentEvents> {
  readonly #o: ResolvedKubeConnectionOptions;
  readonly #target: IntentPool;
  readonly #namespace: string;
  readonly #name: string;
  readonly #drainTimeout: number;
  #intent: Readonly<Record<string, string>> = {};
  /** What this watcher set, per backend id: only that it undoes. */
  readonly #applied = new Map<string, BackendIntent>();
  #watch: KubeWatch<ConfigMap> | undefined;
  #transport: KubeTransport | undefined;
  #closed = false;
  #started = false;
  #updates = 0;
  #failures = 0;
  readonly #onAdded = (): void => this.#apply();

  constructor(options: ClusterIntentOptions) {
    super();
    const raw = v.object('options', options);
    v.knownKeys('options', raw, [...kubeConnectionKeys, 'target', 'namespace', 'configMap', 'drainTimeout']);
    this.#o = resolveKubeConnectionOptions(options);
    const target = options.target;
    if (typeof target !== 'object' || target === null || typeof target.markMaintenance !== 'function') throw v.invalid('target', 'an UpstreamPool', target);
    this.#target = target;
    this.#namespace = v.string('namespace', options.namespace ?? 'kube-system');
    this.#name = v.string('configMap', options.configMap ?? 'failover-proxy-intent');
    this.#drainTimeout = v.integer('drainTimeout', options.drainTimeout ?? 30_000, 0, MAX_TIMER_MS);
  }

  /** Starts watching. Rejects with `DISCOVERY_CLOSED` after `close()`, `KUBECONFIG_INVALID` when the access cannot be loaded. */
  async start(): Promise<void> {
    if (this.#closed) throw new DiscoveryClosedError();
    if (this.#started) return;
    this.#started = true;
    const access = typeof this.#o.access === 'function' ? await this.#o.access() : this.#o.access;
    if (this.#closed) return;
    this.#target.on('backendAdded', this.#onAdded);
    const transport = (this.#transport = new KubeTransport({
      access,
      pool: this.#o.pool,
      connectTimeout: this.#o.connectTimeout,
      clock: this.#o.clock,
      direct: () => [...this.#o.bootstrap, ...Array.from(this.#target.backends(), (b) => ({ host: b.host, port: b.port }))],
    }));
    this.#watch = new KubeWatch<ConfigMap>({
      name: `intent:${this.#namespace}/${this.#name}`,
      transport,
      path: `/api/v1/namespaces/${encodeURIComponent(this.#namespace)}/configmaps`,
      query: { fieldSelector: `metadata.name=${this.#name}` },
      clock: this.#o.clock,
      silence: this.#o.watchSilence,
      backoff: { base: this.#o.backoffBase, max: this.#o.backoffMax },
      random: this.#o.random,
      changed: (maps) => {
        const cm = Array.from(maps.values())[0];
        this.#updates++;
        this.#intent = Object.freeze({ ...(cm?.data ?? {}) });
        if (log.enabled) log('intent: %o', this.#intent);
        this.emit('intentUpdated', this.#intent);
        this.#apply();
      },
      failed: (error) => {
        this.#failures++;
        if (log.enabled) log('intent held: %s', error.message);
        this.emit('intentHeld', error);
      },
    });
    this.#watch.start();
  }

  /** The intent in force (cached). */
  get intent(): Readonly<Record<string, string>> {
    return this.#intent;
  }

  #wanted(backend: Backend): BackendIntent | undefined {
    const key = intentKey(backend);
    const raw = this.#intent[key] ?? this.#intent[backend.host.replaceAll(':', '-')];
    if (raw === undefined) return undefined;
    const value = raw.trim().toLowerCase();
    if ((values as readonly string[]).includes(value)) return value as BackendIntent;
    this.emit('intentInvalid', key, raw);
    return undefined;
  }

  #apply(): void {
    if (this.#closed || this.#target.closed) return;
    const changes: IntentChange[] = [];
    const present = new Set<string>();
    for (const backend of this.#target.backends()) {
      const id = backend.id;
      present.add(id);
      const status = this.#target.status(id);
      if (status === undefined) continue;
      const want = this.#wanted(backend) ?? 'active';
      try {
        if (want === 'drain' && status.admin !== 'draining') {
          if (status.admin === 'maintenance' && this.#applied.get(id) !== 'maintenance') continue; // an operator's own maintenance wins
          this.#target.drain(id, { timeout: this.#drainTimeout }).catch(noop);
          this.#applied.set(id, 'drain');
          changes.push({ id, intent: want });
        } else if (want === 'maintenance' && status.admin !== 'maintenance') {
          this.#target.markMaintenance(id, 'maintenance');
          this.#applied.set(id, 'maintenance');
          changes.push({ id, intent: want });
        } else if (want === 'active' && this.#applied.has(id)) {
          this.#applied.delete(id);
          if (status.admin !== 'active') {
            this.#target.markReady(id, 'intent-active');
            changes.push({ id, intent: want });
          }
        }
      } catch (err) {
        if (log.enabled) log('%s: %s', id, (err as Error).message);
      }
    }
    for (const id of this.#applied.keys()) if (!present.has(id)) this.#applied.delete(id);
    if (changes.length > 0) {
      if (log.enabled) log('applied %o', changes);
      this.emit('applied', changes);
    }
  }

  /** Counters. */
  stats(): { updates: number; failures: number; applied: Record<string, BackendIntent>; watch: Readonly<Record<string, unknown>> } {
    return { updates: this.#updates, failures: this.#failures, applied: Object.fromEntries(this.#applied), watch: { ...this.#watch?.stats, requests: { ...this.#transport?.counts } } };
  }

  /** Stops watching; the pool keeps the admin states applied. Idempotent. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#target.off('backendAdded', this.#onAdded);
      this.#watch?.close();
      this.#transport?.close();
      this.emit('closed');
    }
    return Promise.resolve();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

