/**
 * The balancer's discovery: the `--discover` sources, the `--intent`
 * watcher and their log lines, built from the config. The static
 * `--backend` list is the bootstrap list: always in the pool, and the first
 * addresses the Kubernetes requests fall back to.
 *
 * @module
 */
import {
  ClusterIntent,
  Discovery,
  DnsSource,
  KubernetesSource,
  inClusterAccess,
  loadKubeconfig,
  type DiscoverySource,
  type KubeAccess,
  type UpstreamPool,
} from '../index.js';
import type { BalancerConfig } from './config.js';
import { formatAddress } from './address.js';
import { backendSpecs } from './reload.js';

/** What runs besides the pool. */
export interface BalancerDiscovery {
  readonly discovery: Discovery | undefined;
  readonly intent: ClusterIntent | undefined;
  start(): Promise<void>;
  close(): Promise<void>;
}

/** Builds the sources and the intent watcher of a config (nothing runs until `start()`). */
export function createBalancerDiscovery(config: BalancerConfig, pool: UpstreamPool, log: (line: string) => void): BalancerDiscovery {
  let accessPromise: Promise<KubeAccess> | undefined;
  const access = (): Promise<KubeAccess> => (accessPromise ??= config.kubeconfig === undefined ? inClusterAccess() : loadKubeconfig(config.kubeconfig));
  const bootstrap = config.backends.map((b) => formatAddress(b));
  const servers = config.dnsServer === undefined ? undefined : [formatAddress(config.dnsServer)];
  const sources: DiscoverySource[] = config.discover.map((d) => {
    if (d.kind === 'dns') return new DnsSource({ name: d.name, port: d.port, servers });
    if (d.kind === 'srv') return new DnsSource({ name: d.name, type: 'srv', servers });
    return new KubernetesSource({ access, pool, bootstrap });
  });
  const discovery =
    sources.length === 0
      ? undefined
      : new Discovery({ pool, sources, static: backendSpecs(config), drainTimeout: config.drainTimeout, stateFile: config.discoveryState });
  discovery?.on('applied', (a) => {
    const parts = [`+${a.added.length ? a.added.join(',') : '0'}`, `-${a.removed.length ? a.removed.join(',') : '0'}`];
    if (a.draining.length > 0) parts.push(`draining ${a.draining.join(',')}`);
    log(`discovery: ${a.backends.length} backends (${parts.join(' ')})`);
  });
  discovery?.on('sourceHeld', (source, reason, kept, error) =>
    log(`discovery: ${source} ${reason === 'empty' ? 'answered with nothing' : `failed (${error?.message ?? 'unknown'})`}; keeping its last ${kept} backends`),
  );
  discovery?.on('applyFailed', (error) => log(`discovery: apply failed, nothing changed: ${error.message}`));
  discovery?.on('stateFileFailed', (op, error) => log(`discovery: state file ${op} failed: ${error.message}`));
  const intent =
    config.intent === undefined
      ? undefined
      : new ClusterIntent({ access, pool, target: pool, bootstrap, namespace: config.intent.namespace, configMap: config.intent.name, drainTimeout: config.drainTimeout });
  intent?.on('applied', (changes) => log(`intent: ${changes.map((c) => `${c.id} ${c.intent}`).join(', ')}`));
  intent?.on('intentHeld', (error) => log(`intent: cannot read ${config.intent!.namespace}/${config.intent!.name} (${error.reason}); keeping the last intent`));
  intent?.on('intentInvalid', (key, value) => log(`intent: ${key}: ${JSON.stringify(value)} is not drain, maintenance or active; ignored`));
  return {
    discovery,
    intent,
    async start() {
      if (discovery !== undefined) {
        log(`discovery: ${sources.map((s) => s.name).join(', ')}; static ${bootstrap.length ? bootstrap.join(', ') : 'none'}`);
        await discovery.start();
      }
      await intent?.start();
    },
    async close() {
      await Promise.all([discovery?.close(), intent?.close()]);
    },
  };
}
