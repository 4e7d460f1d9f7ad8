/**
 * The global client cap (`--max-clients`): the balancer refuses new clients
 * before it runs out of descriptors, so that its checks, its status listener
 * and its log always have some. Without it, a flood of idle clients takes the
 * last descriptors, the checks fail with EMFILE and, before local errors were
 * told apart, every backend was marked down with all its connections.
 *
 * Each client costs two descriptors (its socket and the upstream's); a
 * reserve of `max(64, 5 %)` of the limit stays for everything else.
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import type { Server } from 'node:net';

/** The descriptor limit assumed where `/proc/self/limits` cannot be read (Linux's usual soft limit). */
export const FALLBACK_DESCRIPTOR_LIMIT = 1024;
/** Descriptors one proxied client holds: its socket and its upstream. */
export const DESCRIPTORS_PER_CLIENT = 2;
/** The least kept back for checks, the status listener, logs and the runtime. */
export const MIN_RESERVE = 64;
/** The share of the limit kept back, when more than {@link MIN_RESERVE}. */
export const RESERVE_FRACTION = 0.05;
/** Refusals are logged at most once per this many ms (and counted always). */
export const REFUSAL_LOG_INTERVAL = 10_000;

/**
 * This process's soft `RLIMIT_NOFILE`, read from `/proc/self/limits` (Linux);
 * {@link FALLBACK_DESCRIPTOR_LIMIT} when that cannot be read or says
 * `unlimited`.
 */
export function descriptorLimit(read: (path: string) => string = (path) => readFileSync(path, 'utf8')): number {
  try {
    const line = read('/proc/self/limits')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = line === undefined ? undefined : /^Max open files\s+(\d+)/.exec(line)?.[1];
    if (soft !== undefined) return Number(soft);
  } catch {
    // Not Linux, or no /proc: the fallback.
  }
  return FALLBACK_DESCRIPTOR_LIMIT;
}

/** Clients one process can hold under `limit` descriptors, keeping the reserve. At least 1. */
export function defaultMaxClients(limit: number): number {
  const reserve = Math.max(MIN_RESERVE, Math.ceil(limit * RESERVE_FRACTION));
  return Math.max(1, Math.floor((limit - reserve) / DESCRIPTORS_PER_CLIENT));
}

/**
 * The cap of one accepting process: the configured total split over the
 * workers (each process has its own descriptor table), or the default from
 * this process's limit.
 */
export function clientShare(maxClients: number | undefined, workers: number, limit: number): number {
  return maxClients === undefined ? defaultMaxClients(limit) : Math.max(1, Math.floor(maxClients / Math.max(1, workers)));
}

/** `/stats`' `clients`: the cap and what it refused. */
export interface ClientCapStats {
  /** Clients this balancer holds at most (all workers together). */
  readonly max: number;
  /** Clients refused at the cap since start. */
  readonly refused: number;
}

/**
 * Enforces the cap on a listener with Node's `server.maxConnections`: a
 * client past it is closed at accept (its descriptor is released at once)
 * and the server emits `drop`, which is counted and logged, at most one line
 * per {@link REFUSAL_LOG_INTERVAL}.
 *
 * @example
 * ```ts
 * const cap = new ClientCap(server, 4000, (line) => log.info(line));
 * cap.refused; // clients refused so far
 * ```
 */
export class ClientCap {
  readonly max: number;
  /** Clients refused since start. */
  refused = 0;
  readonly #log: (line: string) => void;
  readonly #now: () => number;
  #loggedAt = -Infinity;
  #sinceLog = 0;

  constructor(server: Server, max: number, log: (line: string) => void, now: () => number = Date.now) {
    this.max = max;
    this.#log = log;
    this.#now = now;
    server.maxConnections = max;
    server.on('drop', () => this.#dropped());
  }

  #dropped(): void {
    this.refused++;
    this.#sinceLog++;
    const now = this.#now();
    if (now - this.#loggedAt < REFUSAL_LOG_INTERVAL) return;
    this.#log(`client cap reached (max clients ${this.max}): refused ${this.#sinceLog} client${this.#sinceLog === 1 ? '' : 's'} (${this.refused} since start)`);
    this.#loggedAt = now;
    this.#sinceLog = 0;
  }
}
