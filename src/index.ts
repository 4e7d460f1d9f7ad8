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
} from './upstream-pool.js';
export { PinnedConnection } from './pinned-connection.js';
export type { DestroyOptions, PinnedConnectionInit } from './pinned-connection.js';
export { dialBackend } from './dial.js';
export type { DialOptions } from './dial.js';
export { backendId, parseHostPort, resolveBackend } from './backend.js';
export type { Backend, BackendSpec, BackendState, UpstreamTlsOptions } from './backend.js';
export { pinnedConnectionDefaults, upstreamPoolDefaults } from './options.js';
export type { DialFunction, PinnedConnectionOptions, QueueOptions, UpstreamPoolOptions } from './options.js';
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
