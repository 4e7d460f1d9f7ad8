/**
 * From EndpointSlices (`discovery.k8s.io/v1`) of the `kubernetes` Service to
 * wanted backends: a pure mapping. An endpoint that is `ready` is active; one
 * that is not ready but still `serving` (an apiserver shutting down, during
 * its `--shutdown-delay-duration`) is draining; one that is not serving is
 * left out, so the layer drains it with a deadline and removes it. None of
 * these is a health verdict: that stays with the probe.
 *
 * @module
 */
import { backendId, parseHostPort } from '../backend.js';
import type { DiscoveredBackend } from './source.js';

/** The fields of an EndpointSlice this mapping reads. */
export interface EndpointSlice {
  readonly metadata?: { readonly name?: string; readonly resourceVersion?: string; readonly labels?: Readonly<Record<string, string>> } | undefined;
  /** `IPv4`, `IPv6` or `FQDN`. */
  readonly addressType?: string | undefined;
  readonly endpoints?: readonly SliceEndpoint[] | null | undefined;
  readonly ports?: readonly { readonly name?: string | null; readonly port?: number | null; readonly protocol?: string | null }[] | null | undefined;
}

/** One endpoint of a slice. */
export interface SliceEndpoint {
  readonly addresses?: readonly string[] | undefined;
  /** `ready`/`serving` nil mean true (as the API says), `terminating` nil means false. */
  readonly conditions?: { readonly ready?: boolean | null; readonly serving?: boolean | null; readonly terminating?: boolean | null } | undefined;
  readonly nodeName?: string | undefined;
  readonly zone?: string | undefined;
}

/**
 * Where to dial instead of an advertised address: keys `HOST` or
 * `HOST:PORT`, values `HOST` or `HOST:PORT` (an advertise address that
 * nodes cannot reach, behind NAT or on another network).
 */
export type AddressRewrite = Readonly<Record<string, string>>;

/** Options of {@link backendsFromSlices}. */
export interface SliceMappingOptions {
  /** The port's name in the slice; the only port is used when none has it. @default 'https' */
  readonly portName?: string | undefined;
  readonly rewrite?: AddressRewrite | undefined;
}

/** Applies the rewrite map to one address. */
export function rewriteAddress(host: string, port: number, rewrite: AddressRewrite | undefined): { host: string; port: number } {
  if (rewrite === undefined) return { host, port };
  const to = rewrite[backendId(host, port)] ?? rewrite[host];
  if (to === undefined) return { host, port };
  if (/^\[.*\]:\d+$|^[^:]+:\d+$/.test(to)) return parseHostPort(to, 'rewrite');
  return { host: to.replace(/^\[(.*)\]$/, '$1'), port };
}

/** The wanted backends of a set of slices, sorted by id; each address once (active wins over draining). */
export function backendsFromSlices(slices: Iterable<EndpointSlice>, options: SliceMappingOptions = {}): DiscoveredBackend[] {
  const portName = options.portName ?? 'https';
  const out = new Map<string, DiscoveredBackend>();
  for (const slice of slices) {
    const ports = (slice.ports ?? []).filter((p) => typeof p.port === 'number' && (p.protocol ?? 'TCP') === 'TCP');
    const port = (ports.find((p) => p.name === portName) ?? (ports.length === 1 ? ports[0] : undefined))?.port;
    if (typeof port !== 'number' || port < 1 || port > 65535) continue;
    for (const endpoint of slice.endpoints ?? []) {
      const c = endpoint.conditions ?? {};
      const ready = c.ready ?? true;
      const serving = c.serving ?? ready;
      if (!ready && !serving) continue;
      const state = ready && c.terminating !== true ? 'active' : 'draining';
      for (const address of endpoint.addresses ?? []) {
        if (typeof address !== 'string' || address === '') continue;
        const to = rewriteAddress(address, port, options.rewrite);
        const id = backendId(to.host, to.port);
        if (out.get(id)?.state === 'active') continue;
        const meta: Record<string, unknown> = { advertised: backendId(address, port) };
        if (slice.metadata?.name !== undefined) meta.slice = slice.metadata.name;
        if (endpoint.nodeName !== undefined) meta.node = endpoint.nodeName;
        out.set(id, { host: to.host, port: to.port, state, meta });
      }
    }
  }
  return Array.from(out.values()).sort((a, b) => (backendId(a.host, a.port) < backendId(b.host, b.port) ? -1 : 1));
}
