/**
 * What a discovery source is: something that, once started, tells a sink
 * which backends it sees now, or that it could not tell this time. The
 * {@link Discovery} layer owns everything else (debounce, never-empty,
 * draining removals, events and stats).
 *
 * @module
 */

/**
 * One backend as a source sees it. `state: 'draining'` keeps the backend in
 * the pool without new connections (an apiserver that is terminating but
 * still serving); a backend no longer listed is drained, then removed.
 */
export interface DiscoveredBackend {
  /** Host name or IP address to dial. */
  readonly host: string;
  /** TCP port. */
  readonly port: number;
  /** @default `host:port` */
  readonly id?: string | undefined;
  /** @default 'active' */
  readonly state?: 'active' | 'draining' | undefined;
  /** Relative weight (an SRV record's). @default 1 */
  readonly weight?: number | undefined;
  /** Free-form data carried into the backend's `meta` (the layer adds `source`). */
  readonly meta?: Readonly<Record<string, unknown>> | undefined;
}

/** Where a source reports. Calls after the source was closed are ignored. */
export interface DiscoverySink {
  /**
   * A complete answer: the backends this source wants now. An empty list is
   * an answer too; the layer then keeps the source's last good list and says
   * so (`sourceHeld`, reason `empty`).
   */
  update(backends: readonly DiscoveredBackend[]): void;
  /**
   * No answer this time (a lookup failed, the API was unreachable). The layer
   * keeps the source's last good list (`sourceHeld`, reason `failed`).
   */
  fail(error: Error): void;
}

/**
 * A source of backends. Implement it to feed the layer from anything (a
 * service registry, a file); the built-ins are {@link DnsSource} and
 * {@link KubernetesSource}.
 *
 * @example
 * ```ts
 * const fileSource: DiscoverySource = {
 *   name: 'file:backends.json',
 *   start(sink) {
 *     const read = () => readFile('backends.json', 'utf8').then((t) => sink.update(JSON.parse(t)), (e) => sink.fail(e));
 *     read();
 *     this.timer = setInterval(read, 5000);
 *   },
 *   close() { clearInterval(this.timer); },
 * };
 * ```
 */
export interface DiscoverySource {
  /** Unique among the layer's sources; shown as each backend's `meta.source`. */
  readonly name: string;
  /** Starts watching; report through `sink` from now until `close()`. */
  start(sink: DiscoverySink): void | Promise<void>;
  /** Stops watching and releases every socket and timer. Called once. */
  close(): void | Promise<void>;
  /** Source-specific counters, merged into the layer's per-source stats. */
  stats?(): Readonly<Record<string, unknown>>;
}
