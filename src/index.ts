export { UpstreamPool } from './upstream-pool.js';
export type { BackendStats, PoolState, PoolStats } from './pool-stats.js';
export type {
  CloseOptions,
  DrainOptions,
  ReconcileOptions,
  ReconcileResult,
  RemoveOptions,
  RemoveResult,
  UpstreamSocket,
  PoolConnection,
} from './pool-call-options.js';
export type { ConnectOptions, MemberFactory, PinOptions, PlaceOptions } from './placement.js';
export { isPoolMember, kMember as memberBrand } from './pool-member.js';
export type { DestroyOptions, MemberCloseOptions, MemberKind, PoolMember } from './pool-member.js';
export { PinnedConnection } from './pinned-connection.js';
export type { PinnedConnectionInit } from './pinned-connection.js';
export { PinnedSocket } from './pinned-socket.js';
export type { PinnedSocketInit } from './pinned-socket.js';
export { PoolAgent } from './pool-agent.js';
export type { AgentPool, PoolAgentOptions } from './pool-agent.js';
export { createHttpProxy } from './http-proxy.js';
export type { HttpProxy, HttpProxyOptions } from './http-proxy.js';
export { createUpgradeHandler, pinUpgrade } from './upgrade.js';
export type { UpgradeHandlerOptions, UpgradeOptions, UpgradePool } from './upgrade.js';
export { Rebalancer } from './rebalancer.js';
export type { RebalancerEvents, RebalancerOptions, RebalancerPool } from './rebalancer.js';
export { WriteStallDetector } from './write-stall-detector.js';
export type { WriteStallDetectorOptions, WriteStallPool } from './write-stall-detector.js';
export { proxyAddressesOf, proxyHeader, proxyHeaderV1, proxyHeaderV2 } from './proxy-protocol.js';
export type { ProxyAddresses, ProxyProtocolVersion, SocketAddresses } from './proxy-protocol.js';
export { backendId, parseHostPort } from './backend.js';
export type { Backend, BackendInput, BackendSpec, BackendTunables, UpstreamTlsOptions } from './backend.js';
export type { AdminState, BackendHealth, BackendState, BackendStatus, HealthCause, HealthSource } from './backend-status.js';
export type {
  DialFunction,
  DialFunctionOptions,
  PinnedConnectionOptions,
  QueueOptions,
  TeardownOptions,
  UpstreamPoolOptions,
} from './options.js';
export { systemClock } from './clock.js';
export type { Clock } from './clock.js';
export { LeastConnectionsBalancer } from './balancers/least-connections.js';
export { RoundRobinBalancer } from './balancers/round-robin.js';
export { RandomTwoBalancer } from './balancers/random-two.js';
export type { RandomTwoBalancerOptions } from './balancers/random-two.js';
export { HashBalancer } from './balancers/hash.js';
export { createBalancer, balancerNames } from './balancers/create-balancer.js';
export type { CreateBalancerOptions } from './balancers/create-balancer.js';
export type { Balancer, BalancerName, PickCandidate, PickContext, PickFunction } from './balancers/balancer.js';
export {
  BackendDownError,
  CheckError,
  ClientClosedError,
  DiscoveryClosedError,
  DiscoverySourceError,
  KubeconfigError,
  OptionalDependencyError,
  ConnectError,
  ConnectTimeoutError,
  DuplicateBackendError,
  FailoverProxyError,
  InvalidArgumentError,
  MaxConnectionsError,
  MemberRegisteredError,
  NoHealthyBackendError,
  PoolClosedError,
  ProbeClosedError,
  UnknownBackendError,
  UpstreamError,
} from './errors.js';
export type { CheckLayer, ErrorCode, NoHealthyBackendReason } from './errors.js';
export type {
  BackendUpdate,
  CheckResult,
  ConnectionClosedInfo,
  DownChange,
  HealthProbeEvents,
  MemberEvents,
  PinnedConnectionEvents,
  StateChange,
  StatePoint,
  TeardownReason,
  UpstreamPoolEvents,
} from './events.js';
export type {
  BackendStateChangedMessage,
  CheckedMessage,
  ConnectionClosedMessage,
  ConnectionOpenedMessage,
  TeardownMessage,
} from './diagnostics.js';
export { HealthProbe } from './health-probe.js';
export type { ProbeHealth, ProbeTarget, ProbeTargetEvents, ProbeTargetStatus } from './health-probe.js';
export type { HealthProbeOptions } from './probe-options.js';
export type { CheckOutcome, HealthVerdict, InitialHealth } from './health-state.js';
export type { CheckContext, CheckFunction, LeavingAnswer } from './checks/check.js';
export { ConnectionSlot } from './checks/connection-slot.js';
export { customCheck } from './checks/custom-check.js';
export type { CheckSpec } from './checks/resolve-check.js';
export { tcpCheck } from './checks/tcp.js';
export type { TcpCheckSpec } from './checks/tcp.js';
export { tlsCheck } from './checks/tls.js';
export type { TlsCheckOptions, TlsCheckSpec } from './checks/tls.js';
export { httpCheck, httpsCheck } from './checks/http.js';
export type { HttpCheckOptions, HttpCheckSpec, HttpClassification, HttpClassifier, HttpsCheckOptions, HttpsCheckSpec } from './checks/http.js';
export { Discovery } from './discovery/discovery.js';
export type { DiscoveryApplied, DiscoveryEvents, DiscoverySourceStats, DiscoveryStats, HoldReason, SourceState } from './discovery/discovery.js';
export type { DiscoveryOptions, DiscoveryPool } from './discovery/discovery-options.js';
export type { DiscoveredBackend, DiscoverySink, DiscoverySource } from './discovery/source.js';
export { DnsSource } from './discovery/dns-source.js';
export type { DnsSourceOptions } from './discovery/dns-source.js';
export { KubernetesSource } from './discovery/kubernetes-source.js';
export type { KubernetesSourceOptions } from './discovery/kubernetes-source.js';
export type { KubeConnectionOptions } from './discovery/kube-options.js';
export type { KubeTransportPool } from './discovery/kube-transport.js';
export { inClusterAccess, loadKubeconfig } from './discovery/kubeconfig.js';
export type { KubeAccess } from './discovery/kubeconfig.js';
export { backendsFromSlices, rewriteAddress } from './discovery/endpoint-slices.js';
export type { AddressRewrite, EndpointSlice, SliceEndpoint, SliceMappingOptions } from './discovery/endpoint-slices.js';
export { ClusterIntent, intentKey } from './discovery/intent.js';
export type { BackendIntent, ClusterIntentEvents, ClusterIntentOptions, IntentChange, IntentPool } from './discovery/intent.js';
