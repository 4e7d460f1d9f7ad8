export { UpstreamPool, AWAITING_PROBE } from './upstream-pool.js';
export type {
  BackendStats,
  BackendStatus,
  CloseOptions,
  DrainOptions,
  PinOptions,
  PoolStats,
  RemoveOptions,
  UpstreamSocket,
  ConnectOptions,
  PoolConnection,
} from './upstream-pool.js';
export { PinnedConnection } from './pinned-connection.js';
export type { DestroyOptions, PinnedConnectionInit } from './pinned-connection.js';
export { PinnedSocket } from './pinned-socket.js';
export type { PinnedSocketInit } from './pinned-socket.js';
export { PoolAgent } from './pool-agent.js';
export type { PoolAgentOptions } from './pool-agent.js';
export { createUpgradeHandler, pinUpgrade } from './upgrade.js';
export type { UpgradeHandlerOptions, UpgradeOptions } from './upgrade.js';
export { proxyAddressesOf, proxyHeader, proxyHeaderV1, proxyHeaderV2, PROXY_V2_SIGNATURE } from './proxy-protocol.js';
export type { ProxyAddresses, ProxyProtocolVersion, SocketAddresses } from './proxy-protocol.js';
export { dialBackend } from './dial.js';
export type { DialOptions } from './dial.js';
export { backendId, parseHostPort, resolveBackend } from './backend.js';
export type { Backend, BackendSpec, BackendState, UpstreamTlsOptions } from './backend.js';
export { pinnedConnectionDefaults, upstreamPoolDefaults } from './options.js';
export type { DialFunction, DialFunctionOptions, PinnedConnectionOptions, QueueOptions, UpstreamPoolOptions } from './options.js';
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
  ConnectError,
  ConnectTimeoutError,
  DuplicateBackendError,
  FailoverProxyError,
  InvalidArgumentError,
  MaxConnectionsError,
  NoHealthyBackendError,
  PoolClosedError,
  ProbeClosedError,
  UnknownBackendError,
} from './errors.js';
export type { CheckLayer, ErrorCode, NoHealthyBackendReason } from './errors.js';
export type {
  CheckResult,
  ConnectionClosedInfo,
  DownChange,
  HealthProbeEvents,
  PinnedConnectionEvents,
  StateChange,
  TeardownReason,
  UpstreamPoolEvents,
} from './events.js';
export { HealthProbe, PROBE_FAILED, PROBE_PASSED } from './health-probe.js';
export type { ProbeHealth, ProbeTarget, ProbeTargetEvents, ProbeTargetStatus } from './health-probe.js';
export { healthProbeDefaults } from './probe-options.js';
export type { HealthProbeOptions } from './probe-options.js';
export { HealthState } from './health-state.js';
export type { HealthStateOptions, HealthVerdict, InitialHealth } from './health-state.js';
export type { CheckContext, CheckFunction } from './checks/check.js';
export { ConnectionSlot } from './checks/connection-slot.js';
export { customCheck } from './checks/custom-check.js';
export { resolveCheck } from './checks/resolve-check.js';
export type { CheckSpec } from './checks/resolve-check.js';
export { tcpCheck } from './checks/tcp.js';
export type { TcpCheckSpec } from './checks/tcp.js';
export { tlsCheck } from './checks/tls.js';
export type { TlsCheckOptions, TlsCheckSpec } from './checks/tls.js';
export { httpCheck, httpsCheck } from './checks/http.js';
export type { HttpCheckOptions, HttpCheckSpec, HttpsCheckOptions, HttpsCheckSpec } from './checks/http.js';
