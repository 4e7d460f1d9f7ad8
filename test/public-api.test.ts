/**
 * The root export is the public API (shared/STYLE.md rule 13): this file pins
 * it, names and kinds, so a name cannot join or leave it without a line here
 * and in docs/migration.md. Runtime names come from loading src/index.ts; type
 * names from TypeScript reading its declarations.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { EventEmitter } from 'eventemitter3';
import ts from 'typescript';
import * as api from '../src/index.js';
import {
  memberBrand,
  UpstreamPool,
  type Backend,
  type ConnectionClosedInfo,
  type MemberEvents,
  type PoolMember,
  type TeardownReason,
} from '../src/index.js';

const runtime = [
  'BackendDownError',
  'CheckError',
  'ClientClosedError',
  'ClusterIntent',
  'ConnectError',
  'ConnectTimeoutError',
  'ConnectionSlot',
  'Discovery',
  'DiscoveryClosedError',
  'DiscoverySourceError',
  'DnsSource',
  'DuplicateBackendError',
  'FailoverProxyError',
  'HashBalancer',
  'HealthProbe',
  'InvalidArgumentError',
  'KubeconfigError',
  'KubernetesSource',
  'LeastConnectionsBalancer',
  'MaxConnectionsError',
  'MemberRegisteredError',
  'NoHealthyBackendError',
  'OptionalDependencyError',
  'PinnedConnection',
  'PinnedSocket',
  'PoolAgent',
  'PoolClosedError',
  'ProbeClosedError',
  'RandomTwoBalancer',
  'Rebalancer',
  'RoundRobinBalancer',
  'UnknownBackendError',
  'UpstreamError',
  'UpstreamPool',
  'WriteStallDetector',
  'backendId',
  'backendsFromSlices',
  'balancerNames',
  'createBalancer',
  'createHttpProxy',
  'createUpgradeHandler',
  'customCheck',
  'httpCheck',
  'httpsCheck',
  'inClusterAccess',
  'intentKey',
  'isPoolMember',
  'loadKubeconfig',
  'memberBrand',
  'parseHostPort',
  'pinUpgrade',
  'proxyAddressesOf',
  'proxyHeader',
  'proxyHeaderV1',
  'proxyHeaderV2',
  'rewriteAddress',
  'systemClock',
  'tcpCheck',
  'tlsCheck',
];

const typeOnly = [
  'AddressRewrite',
  'AdminState',
  'AgentPool',
  'Backend',
  'BackendHealth',
  'BackendInput',
  'BackendIntent',
  'BackendSpec',
  'BackendState',
  'BackendStateChangedMessage',
  'BackendStats',
  'BackendStatus',
  'BackendTunables',
  'BackendUpdate',
  'Balancer',
  'BalancerName',
  'CheckContext',
  'CheckFunction',
  'CheckLayer',
  'CheckOutcome',
  'CheckResult',
  'CheckSpec',
  'CheckedMessage',
  'Clock',
  'CloseOptions',
  'ClusterIntentEvents',
  'ClusterIntentOptions',
  'ConnectOptions',
  'ConnectionClosedInfo',
  'ConnectionClosedMessage',
  'ConnectionOpenedMessage',
  'CreateBalancerOptions',
  'DestroyOptions',
  'DialFunction',
  'DialFunctionOptions',
  'DiscoveredBackend',
  'DiscoveryApplied',
  'DiscoveryEvents',
  'DiscoveryOptions',
  'DiscoveryPool',
  'DiscoverySink',
  'DiscoverySource',
  'DiscoverySourceStats',
  'DiscoveryStats',
  'DnsSourceOptions',
  'DownChange',
  'DrainOptions',
  'EndpointSlice',
  'ErrorCode',
  'HealthCause',
  'HealthProbeEvents',
  'HealthProbeOptions',
  'HealthSource',
  'HealthVerdict',
  'HoldReason',
  'HttpCheckOptions',
  'HttpCheckSpec',
  'HttpClassification',
  'HttpClassifier',
  'HttpProxy',
  'HttpProxyOptions',
  'HttpsCheckOptions',
  'HttpsCheckSpec',
  'InitialHealth',
  'IntentChange',
  'IntentPool',
  'KubeAccess',
  'KubeConnectionOptions',
  'KubeTransportPool',
  'KubernetesSourceOptions',
  'LeavingAnswer',
  'MemberCloseOptions',
  'MemberEvents',
  'MemberFactory',
  'MemberKind',
  'NoHealthyBackendReason',
  'PickCandidate',
  'PickContext',
  'PickFunction',
  'PinOptions',
  'PinnedConnectionEvents',
  'PinnedConnectionInit',
  'PinnedConnectionOptions',
  'PinnedSocketInit',
  'PlaceOptions',
  'PoolAgentOptions',
  'PoolConnection',
  'PoolMember',
  'PoolState',
  'PoolStats',
  'ProbeHealth',
  'ProbeTarget',
  'ProbeTargetEvents',
  'ProbeTargetStatus',
  'ProxyAddresses',
  'ProxyProtocolVersion',
  'QueueOptions',
  'RandomTwoBalancerOptions',
  'RebalancerEvents',
  'RebalancerOptions',
  'RebalancerPool',
  'ReconcileOptions',
  'ReconcileResult',
  'RemoveOptions',
  'RemoveResult',
  'SliceEndpoint',
  'SliceMappingOptions',
  'SocketAddresses',
  'SourceState',
  'StateChange',
  'StatePoint',
  'TcpCheckSpec',
  'TeardownMessage',
  'TeardownOptions',
  'TeardownReason',
  'TlsCheckOptions',
  'TlsCheckSpec',
  'UpgradeHandlerOptions',
  'UpgradeOptions',
  'UpgradePool',
  'UpstreamPoolEvents',
  'UpstreamPoolOptions',
  'UpstreamSocket',
  'UpstreamTlsOptions',
  'WriteStallDetectorOptions',
  'WriteStallPool',
];

/** The root module's exports as TypeScript sees them: values (with or without a type) and names that are only types. */
function declaredExports(): { values: string[]; types: string[] } {
  const index = fileURLToPath(new URL('../src/index.ts', import.meta.url));
  const program = ts.createProgram([index], {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    noEmit: true,
    types: [],
  });
  const checker = program.getTypeChecker();
  const module = checker.getSymbolAtLocation(program.getSourceFile(index)!)!;
  const values: string[] = [];
  const types: string[] = [];
  for (const symbol of checker.getExportsOfModule(module)) {
    const target = symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
    const typeOnlyExport = symbol.declarations?.some((d) => ts.isExportSpecifier(d) && (d.isTypeOnly || d.parent.parent.isTypeOnly)) ?? false;
    ((target.flags & ts.SymbolFlags.Value) !== 0 && !typeOnlyExport ? values : types).push(symbol.name);
  }
  return { values: values.sort(), types: types.sort() };
}

test('the root runtime exports are exactly these', () => {
  assert.deepEqual(Object.keys(api).sort(), runtime);
});

test('the root declarations export exactly these values and these types', () => {
  const { values, types } = declaredExports();
  assert.deepEqual(values, runtime, 'every declared value is a runtime export, and back');
  assert.deepEqual(types, typeOnly);
});

/** A member of your own, typed with the exported brand, as docs/upstream-pool.md shows. */
class Tunnel extends EventEmitter<MemberEvents> implements PoolMember {
  readonly [memberBrand] = 'tunnel' as const;
  readonly kind = 'tunnel' as const;
  readonly id = 'tunnel-1';
  readonly openedAt = Date.now();
  readonly bytesFromClient = 0;
  readonly bytesFromUpstream = 0;
  closedInfo: ConnectionClosedInfo | undefined;
  constructor(readonly backend: Backend) {
    super();
  }
  get closed(): boolean {
    return this.closedInfo !== undefined;
  }
  close(reason: TeardownReason = 'closed'): void {
    this.destroy(reason);
  }
  destroy(reason: TeardownReason = 'destroyed'): void {
    if (this.closedInfo !== undefined) return;
    this.closedInfo = { reason, kind: this.kind, error: undefined, bytesFromClient: 0, bytesFromUpstream: 0, durationMs: 0 };
    this.emit('closed', this.closedInfo);
  }
}

test('a member of your own, typed with memberBrand, is registered and torn down like the built-in ones', async () => {
  const pool = new UpstreamPool({ backends: [{ host: '127.0.0.1', port: 1, id: 'a' }] });
  const tunnel = new Tunnel(pool.get('a')!);
  assert.equal(api.isPoolMember(tunnel), true);
  pool.register(tunnel);
  assert.deepEqual([...pool.members('a')], [tunnel]);
  assert.equal(pool.markDown('a'), 1);
  assert.equal(tunnel.closedInfo?.reason, 'marked-down');
  await pool.close();
});
