/**
 * The access log (`--access-log PATH|-`): one JSON line per closed client
 * connection, HAProxy's and nginx's habit, in the pool's vocabulary:
 *
 * ```json
 * {"time":"2026-12-07T00:00:00.000Z","client":"10.0.0.9:51234","backend":"b1","address":"10.0.0.1:6443","bytesFromClient":517,"bytesFromUpstream":4312,"durationMs":60012,"reason":"backend-down"}
 * ```
 *
 * Kept off the data path: nothing happens while bytes flow. The client's
 * address is read once when the connection joins the pool (Node caches it
 * on the socket), the line is built on `connectionClosed` only, lines are
 * batched and written once per loop turn, never synchronously. A destination
 * that cannot keep up gets at most {@link MAX_BUFFERED} bytes queued; lines
 * beyond are dropped and counted (`dropped`), never waited for. A write
 * error is reported once through `onError` and the log stops writing; it
 * never throws and never stops the balancer.
 *
 * @module
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import type { ConnectionClosedInfo, PoolMember, UpstreamPool } from '../index.js';
import { formatAddress } from './address.js';

/** Most bytes queued for a destination that does not keep up; lines beyond are dropped. */
export const MAX_BUFFERED = 1024 * 1024;

/**
 * Largest write to a pipe (`-`): at most `PIPE_BUF` (4096 on Linux), so
 * lines of several workers sharing one stdout never interleave mid-line.
 */
const PIPE_WRITE = 4096;

/** Options of an {@link AccessLog}. */
export interface AccessLogOptions {
  /** Called once when the destination fails (the log stops writing then). */
  readonly onError?: ((err: Error) => void) | undefined;
  /** Added to every line (`{"worker": 2}` in multi-core mode). */
  readonly fields?: Readonly<Record<string, string | number>> | undefined;
  /** The stream for `-`. @default process.stdout */
  readonly stdout?: Writable | undefined;
}

/** One line of the access log, as written. */
export interface AccessLogLine {
  readonly time: string;
  readonly client: string | undefined;
  readonly backend: string | undefined;
  readonly address: string | undefined;
  readonly bytesFromClient: number;
  readonly bytesFromUpstream: number;
  readonly durationMs: number;
  readonly reason: string;
}

function hostPort(host: string | undefined, port: number | undefined): string | undefined {
  if (host === undefined) return undefined;
  return formatAddress({ host, port: port ?? 0 });
}

/**
 * Writes the access log of a pool.
 *
 * @example
 * ```ts
 * const access = new AccessLog(pool, '/var/log/failover-proxy/access.log', { onError: (err) => log(err.message) });
 * // on shutdown, after the pool closed:
 * await access.close();
 * ```
 */
export class AccessLog {
  readonly #pool: UpstreamPool;
  readonly #path: string;
  readonly #options: AccessLogOptions;
  readonly #clients = new WeakMap<PoolMember, string>();
  #out: Writable | undefined;
  #pending: string[] = [];
  #pendingBytes = 0;
  #scheduled = false;
  #failed = false;
  #closed = false;
  /** Lines dropped because the destination did not keep up. */
  dropped = 0;
  /** Lines handed to the destination. */
  written = 0;

  readonly #onOpened = (member: PoolMember): void => {
    const client = (member as { client?: { remoteAddress?: string; remotePort?: number } }).client;
    if (client === undefined) return;
    const address = hostPort(client.remoteAddress, client.remotePort);
    if (address !== undefined) this.#clients.set(member, address);
  };

  readonly #onClosed = (member: PoolMember, info: ConnectionClosedInfo): void => {
    if (this.#failed || this.#closed || member.kind !== 'connection') return;
    const backend = member.backend;
    const line: AccessLogLine = {
      time: new Date().toISOString(),
      client: this.#clients.get(member),
      backend: backend?.id,
      address: backend === undefined ? undefined : hostPort(backend.host, backend.port),
      bytesFromClient: info.bytesFromClient,
      bytesFromUpstream: info.bytesFromUpstream,
      durationMs: info.durationMs,
      reason: info.reason,
    };
    const text = `${JSON.stringify(this.#options.fields === undefined ? line : { ...line, ...this.#options.fields })}\n`;
    if (this.#pendingBytes + text.length > MAX_BUFFERED) {
      this.dropped++;
      return;
    }
    this.#pending.push(text);
    this.#pendingBytes += text.length;
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.#flush);
    }
  };

  readonly #flush = (): void => {
    this.#scheduled = false;
    const out = this.#out;
    if (out === undefined || this.#failed || this.#pending.length === 0) return;
    // A stream that has not drained keeps the lines queued here (bounded above).
    if (out.writableNeedDrain) {
      out.once('drain', () => {
        if (!this.#scheduled) {
          this.#scheduled = true;
          setImmediate(this.#flush);
        }
      });
      return;
    }
    const limit = this.#path === '-' ? PIPE_WRITE : 64 * 1024;
    let batch = '';
    for (const text of this.#pending) {
      if (batch.length > 0 && batch.length + text.length > limit) {
        out.write(batch);
        batch = '';
      }
      batch += text;
    }
    if (batch.length > 0) out.write(batch);
    this.written += this.#pending.length;
    this.#pending = [];
    this.#pendingBytes = 0;
  };

  readonly #onError = (err: Error): void => {
    if (this.#failed) return;
    this.#failed = true;
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#options.onError?.(err);
  };

  /** Starts logging `pool`'s connections to `path` (appended to), or to stdout for `-`. */
  constructor(pool: UpstreamPool, path: string, options: AccessLogOptions = {}) {
    this.#pool = pool;
    this.#path = path;
    this.#options = options;
    this.#open();
    pool.on('connectionOpened', this.#onOpened);
    pool.on('connectionClosed', this.#onClosed);
  }

  #open(): void {
    if (this.#path === '-') {
      this.#out = this.#options.stdout ?? process.stdout;
      // A closed stdout (EPIPE) is this log's failure, not the process's.
      this.#out.on('error', this.#onError);
      return;
    }
    const stream: WriteStream = createWriteStream(this.#path, { flags: 'a', mode: 0o640 });
    stream.on('error', this.#onError);
    this.#out = stream;
  }

  /** Reopens the file (after a log rotation moved it); a failed log tries again. Nothing for `-`. */
  reopen(): void {
    if (this.#closed || this.#path === '-') return;
    const old = this.#out;
    this.#failed = false;
    this.#open();
    old?.end();
  }

  /** Writes what is queued and stops; resolves once the file is closed. Idempotent. */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#pool.off('connectionOpened', this.#onOpened);
    this.#pool.off('connectionClosed', this.#onClosed);
    this.#flush();
    this.#closed = true;
    const out = this.#out;
    this.#out = undefined;
    if (out === undefined || this.#path === '-') {
      out?.off('error', this.#onError);
      return Promise.resolve();
    }
    if (out.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      out.once('close', () => resolve());
      out.end();
    });
  }
}
