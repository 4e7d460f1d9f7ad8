/**
 * A discovery source from the cluster itself: the EndpointSlices of the
 * `kubernetes` Service in `default` (one endpoint per apiserver), listed and
 * watched. Conditions map to active, draining or gone (see
 * {@link backendsFromSlices}). The bootstrap addresses are always in its
 * list, and requests go through the pool first, then directly (see
 * {@link KubeTransport}).
 *
 * @module
 */
import createDebug from 'debug';
import { DiscoveryClosedError } from '../errors.js';
import * as v from '../validate.js';
import { backendsFromSlices, type AddressRewrite, type EndpointSlice } from './endpoint-slices.js';
import { kubeConnectionKeys, resolveKubeConnectionOptions, type KubeConnectionOptions, type ResolvedKubeConnectionOptions } from './kube-options.js';
import { KubeTransport } from './kube-transport.js';
import { KubeWatch } from './kube-watch.js';
import type { DiscoveredBackend, DiscoverySink, DiscoverySource } from './source.js';

const log = createDebug('failover-proxy:discovery:kube');

/** Options of {@link KubernetesSource}. */
export interface KubernetesSourceOptions extends KubeConnectionOptions {
  /** Namespace of the Service. @default 'default' */
  readonly namespace?: string | undefined;
  /** Name of the Service. @default 'kubernetes' */
  readonly service?: string | undefined;
  /** Port name in the slices. @default 'https' */
  readonly portName?: string | undefined;
  /** Advertise address -> address to dial (`HOST` or `HOST:PORT` both sides). */
  readonly rewrite?: AddressRewrite | undefined;
  /** Source name. @default 'kubernetes' */
  readonly sourceName?: string | undefined;
}

/**
 * Watches the apiservers' EndpointSlices.
 *
 * @example
 * ```ts
 * const source = new KubernetesSource({
 *   access: () => loadKubeconfig('/etc/kubernetes/kubelet.conf'),
 *   pool,
 *   bootstrap: ['10.0.0.10:6443'],
 * });
 * const discovery = new Discovery({ pool, sources: [source], static: ['10.0.0.10:6443'] });
 * await discovery.start();
 * ```
 */
export class KubernetesSource implements DiscoverySource {
  readonly name: string;
  readonly #o: ResolvedKubeConnectionOptions;
  readonly #namespace: string;
  readonly #service: string;
  readonly #portName: string;
  readonly #rewrite: AddressRewrite | undefined;
  #watch: KubeWatch<EndpointSlice> | undefined;
  #transport: KubeTransport | undefined;
  #last: readonly DiscoveredBackend[] = [];
  #closed = false;
  #started = false;

  constructor(options: KubernetesSourceOptions) {
    const raw = v.object('options', options);
    v.knownKeys('options', raw, [...kubeConnectionKeys, 'namespace', 'service', 'portName', 'rewrite', 'sourceName']);
    this.#o = resolveKubeConnectionOptions(options);
    this.#namespace = v.string('namespace', options.namespace ?? 'default');
    this.#service = v.string('service', options.service ?? 'kubernetes');
    this.#portName = v.string('portName', options.portName ?? 'https');
    if (options.rewrite !== undefined) {
      for (const [k, val] of Object.entries(v.object('rewrite', options.rewrite))) v.string(`rewrite[${k}]`, val);
    }
    this.#rewrite = options.rewrite;
    this.name = v.string('sourceName', options.sourceName ?? 'kubernetes');
  }

  async start(sink: DiscoverySink): Promise<void> {
    if (this.#closed) throw new DiscoveryClosedError();
    if (this.#started) return;
    this.#started = true;
    const access = typeof this.#o.access === 'function' ? await this.#o.access() : this.#o.access;
    if (this.#closed) return;
    const transport = (this.#transport = new KubeTransport({
      access,
      pool: this.#o.pool,
      connectTimeout: this.#o.connectTimeout,
      clock: this.#o.clock,
      direct: () => [...this.#o.bootstrap, ...this.#last.map((b) => ({ host: b.host, port: b.port }))],
    }));
    this.#watch = new KubeWatch<EndpointSlice>({
      name: this.name,
      transport,
      path: `/apis/discovery.k8s.io/v1/namespaces/${encodeURIComponent(this.#namespace)}/endpointslices`,
      query: { labelSelector: `kubernetes.io/service-name=${this.#service}` },
      clock: this.#o.clock,
      silence: this.#o.watchSilence,
      backoff: { base: this.#o.backoffBase, max: this.#o.backoffMax },
      random: this.#o.random,
      changed: (slices) => {
        const list = backendsFromSlices(slices.values(), { portName: this.#portName, rewrite: this.#rewrite });
        if (log.enabled) log('%s: %d slices, %d backends', this.name, slices.size, list.length);
        if (list.length > 0) this.#last = list;
        sink.update(list);
      },
      failed: (error) => sink.fail(error),
    });
    this.#watch.start();
  }

  stats(): Readonly<Record<string, unknown>> {
    return { ...this.#watch?.stats, requests: { ...this.#transport?.counts } };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#watch?.close();
    this.#transport?.close();
  }
}
