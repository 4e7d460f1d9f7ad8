/**
 * One client socket piped to one upstream socket, owned as a unit: both
 * directions with backpressure, half-close forwarded, and one `destroy(reason)`
 * that takes down both sides.
 *
 * @module
 */
import type { Socket } from 'node:net';
import createDebug from 'debug';
import type { TeardownReason } from './events.js';
import { closeTimeoutOf, MemberBase, type MemberInit } from './member-base.js';
import { kResolvedOptions, resolvePinnedConnectionOptions, type PinnedConnectionOptions, type ResolvedPinnedConnectionOptions } from './options.js';
import { kGate, kMember, kQuiesce, OPEN_GATE, type DestroyOptions, type MemberCloseOptions, type MemberGate } from './pool-member.js';
import { readBufferPool, type ReadBufferPool } from './read-buffer-pool.js';
import { readInto, readThroughStream } from './read-into.js';
import * as v from './validate.js';

const log = createDebug('failover-proxy:conn');

// Socket listeners are shared functions that find their connection through this
// back-reference (as `ws` does), so no closure is allocated per connection.
const kConnection = Symbol('failover-proxy.connection');
type OwnedSocket = Socket & { [kConnection]?: PinnedConnection };
type Side = 'client' | 'upstream';

// Assigned in the class's static block, where they may touch private state.
let socketClosed: (conn: PinnedConnection, side: Side) => void;
let socketFailed: (conn: PinnedConnection, side: Side, err: Error) => void;
let pendingReasonOf: (conn: PinnedConnection) => TeardownReason;
let relayRead: (conn: PinnedConnection, from: Side, nread: number, data: Buffer) => boolean;
let relayWritten: (conn: PinnedConnection) => void;

// Forwarding state of the two directions, packed in one number per
// connection: bits 0-2 for client -> upstream, 3-5 for upstream -> client.
/** The source reads into pooled buffers (else it emits 'data'). */
const POOLED = 1;
/** The source reads straight into the direction's buffer, lent by the pool. */
const LENT = 2;
/** The source is paused until the write of the direction's buffer completes. */
const WAITING = 4;
const UPSTREAM_SHIFT = 3;

const EMPTY = Buffer.alloc(0);

// A read callback picks its socket's next read target here, and Node takes it
// (takeNextTarget) right after the callback returns, on the same stack.
let nextTarget: Buffer | undefined;

/** Options of a {@link PinnedConnection} built by hand. */
export interface PinnedConnectionInit extends PinnedConnectionOptions, MemberInit {
  /** A pool's options, resolved once (see {@link kResolvedOptions}). @internal */
  readonly [kResolvedOptions]?: ResolvedPinnedConnectionOptions | undefined;
}

export type { DestroyOptions } from './pool-member.js';

/**
 * A client socket piped to an upstream socket.
 *
 * Bytes flow both ways with backpressure, so a slow reader on either side pauses
 * the other (memory stays bounded by the sockets' high-water marks). A FIN from
 * either side is forwarded as `end()` to the other while the other direction
 * keeps flowing. A reset, error or destroy on either side tears down both, and
 * `closed` is emitted exactly once with the reason.
 *
 * The byte counters are the sockets' own kernel-side counts (`bytesRead`), so
 * the data path does no per-chunk bookkeeping.
 *
 * The connection does the reading: plain TCP sockets read into buffers shared
 * by the process (no buffer is allocated per read, and an idle connection
 * holds none), so they emit no `'data'` events once wrapped; TLS sockets are
 * read through `'data'`.
 *
 * @example
 * ```ts
 * import net from 'node:net';
 * import { PinnedConnection } from 'failover-proxy';
 *
 * net.createServer({ allowHalfOpen: true }, (client) => {
 *   const upstream = net.connect({ host: '127.0.0.1', port: 8080, allowHalfOpen: true });
 *   upstream.once('connect', () => {
 *     const conn = new PinnedConnection(client, upstream);
 *     conn.on('closed', ({ reason, bytesFromClient }) => console.log(reason, bytesFromClient));
 *   });
 *   upstream.once('error', () => client.destroy());
 * }).listen(8000);
 * ```
 */
export class PinnedConnection extends MemberBase {
  /** The member brand. */
  readonly [kMember] = 'connection' as const;
  /** A client-to-upstream pair. */
  readonly kind = 'connection' as const;
  /** The client-facing socket. */
  readonly client: Socket;
  /** The backend-facing socket. */
  readonly upstream: Socket;
  /** Shut by the registry when it takes this pair's backend out: nothing moves from then on. @internal */
  [kGate]: MemberGate = OPEN_GATE;

  #closed = false;
  /** Taken out by the registry: forwards nothing; its sockets close on a later turn. */
  #quiesced = false;
  /** Reason noted when one side closed cleanly and the other is still flushing. */
  #pendingReason: TeardownReason | undefined;
  /** The graceful close's deadline, while one runs. */
  #closeTimer: NodeJS.Timeout | undefined;
  /** Forwarding flags of both directions (POOLED, LENT, WAITING). */
  #relay = 0;
  /** Pooled buffer of client -> upstream: in flight, and/or the client's read target when LENT. */
  #toUpstream: Buffer | undefined;
  /** Pooled buffer of upstream -> client. */
  #toClient: Buffer | undefined;
  /** Completion callback of pooled writes that were left pending: one function per connection, made the first time. */
  #afterWrite: (() => void) | undefined;


  constructor(client: Socket, upstream: Socket, init: PinnedConnectionInit = {}) {
    if (!isSocketLike(client)) throw v.invalid('client', 'a net.Socket', client);
    if (!isSocketLike(upstream)) throw v.invalid('upstream', 'a net.Socket', upstream);
    const options = init[kResolvedOptions] ?? resolvePinnedConnectionOptions(init, 'init');
    super(init, client);
    this.client = client;
    this.upstream = upstream;

    const c = client as OwnedSocket;
    const u = upstream as OwnedSocket;
    c[kConnection] = this;
    u[kConnection] = this;

    // Half-close must be forwarded, not answered: with allowHalfOpen off, a
    // socket ends its own writable side when the peer sends FIN, cutting off the
    // reply still flowing the other way.
    client.allowHalfOpen = true;
    upstream.allowHalfOpen = true;

    configure(client, options.keepAlive, options.keepAliveInitialDelay, options.noDelay);
    configure(upstream, options.keepAlive, options.keepAliveInitialDelay, options.noDelay);

    client.on('error', onClientError);
    upstream.on('error', onUpstreamError);
    client.on('close', onClientClose);
    upstream.on('close', onUpstreamClose);

    if (options.idleTimeout > 0) {
      // The client socket sees every byte either way (reads from the client,
      // writes of upstream bytes), and Node refreshes its timer on both, so one
      // timer covers the pair.
      client.setTimeout(options.idleTimeout);
      client.on('timeout', onIdleTimeout);
    }

    if (client.destroyed || upstream.destroyed) {
      // Handed an already dead socket: report it once listeners can be attached.
      const reason: TeardownReason = client.destroyed ? 'client-closed' : 'upstream-closed';
      queueMicrotask(() => this.destroy(reason));
      return;
    }

    // Forwarding is shared listeners rather than two pipe() calls: pipe()
    // allocates nine closures per direction and grows each socket's listener
    // arrays, ~3 kB of heap per connection. The behaviour is the same: write,
    // pause the source while the sink is full, and forward FIN as end().
    // Where Node allows it a socket reads into pooled buffers (see relayRead)
    // rather than into a new 64 KiB buffer per read; elsewhere (TLS) it
    // forwards 'data' chunks and resumes on 'drain'.
    const pool = readBufferPool();
    if (readInto(client, pool.landing, onClientRead, takeNextTarget)) this.#relay |= POOLED;
    else {
      client.on('data', onClientData);
      upstream.on('drain', onUpstreamDrain);
    }
    if (readInto(upstream, pool.landing, onUpstreamRead, takeNextTarget)) this.#relay |= POOLED << UPSTREAM_SHIFT;
    else {
      upstream.on('data', onUpstreamData);
      client.on('drain', onClientDrain);
    }
    client.on('end', onClientEnd);
    upstream.on('end', onUpstreamEnd);
    // Bytes a pooled socket read before the switch stay in its stream buffer
    // (a ClientHello read while the upstream was dialled): send them first.
    let early: Buffer | null;
    if ((this.#relay & POOLED) !== 0) while ((early = client.read() as Buffer | null) !== null) upstream.write(early);
    if ((this.#relay & (POOLED << UPSTREAM_SHIFT)) !== 0) while ((early = upstream.read() as Buffer | null) !== null) client.write(early);
    // A FIN read before we listened (a client that half-closed while its
    // upstream was being dialled) has already emitted 'end': forward it now.
    if (client.readableEnded) upstream.end();
    if (upstream.readableEnded) client.end();
    // A socket the caller paused (or never read) must flow now that it has a sink.
    client.resume();
    upstream.resume();
    if (log.enabled) log('%s pinned to %s', this.id, this.backend?.id ?? `${upstream.remoteAddress}:${upstream.remotePort}`);
  }

  /** Bytes read from the client (and handed to the upstream). */
  get bytesFromClient(): number {
    return this.client.bytesRead;
  }

  /** Bytes read from the upstream (and handed to the client). */
  get bytesFromUpstream(): number {
    return this.upstream.bytesRead;
  }

  /** Whether the connection has been torn down (or taken out of service to be, a turn later). */
  get closed(): boolean {
    return this.#closed || this.#quiesced || this[kGate].shut;
  }

  /**
   * Closes gracefully: stops forwarding, sends FIN both ways, and emits
   * `closed` with `reason` once both peers have closed, or destroys the pair
   * at the deadline. Idempotent; a later `destroy()` cuts it short.
   */
  close(reason: TeardownReason = 'closed', options: MemberCloseOptions = {}): void {
    if (this.#closed || this.#quiesced || this[kGate].shut || this.#closeTimer !== undefined) return;
    const timeout = closeTimeoutOf(options);
    const { client, upstream } = this;
    this.#pendingReason = reason;
    // Bytes still arriving from either peer have nowhere to go once both
    // sides are ended: drop them (the sockets keep flowing so FINs are read).
    // A pooled source waiting for a write reads on once that write is done:
    // until then its read target may be the buffer being written.
    client.off('data', onClientData);
    upstream.off('data', onUpstreamData);
    if ((this.#relay & WAITING) === 0) client.resume();
    if ((this.#relay & (WAITING << UPSTREAM_SHIFT)) === 0) upstream.resume();
    client.end();
    upstream.end();
    this.#closeTimer = setTimeout(onCloseDeadline, timeout, this);
    this.#closeTimer.unref();
    if (log.enabled) log('%s closing: %s', this.id, reason);
  }

  /**
   * Stops moving bytes at once, closing nothing: the registry calls this when
   * it takes the pair out and closes the sockets on a later turn.
   *
   * @internal
   */
  [kQuiesce](): void {
    this.#quiesced = true;
    const { client, upstream } = this;
    client.off('data', onClientData);
    upstream.off('data', onUpstreamData);
    client.pause();
    upstream.pause();
  }

  /**
   * Tears down both sockets at once and emits `closed` before returning.
   * Idempotent: later calls do nothing. Never throws.
   */
  destroy(reason: TeardownReason = 'destroyed', options: DestroyOptions = {}): void {
    if (this.#closed) return;
    this.#closed = true;
    const { client, upstream } = this;
    const error = options.error;
    if (this.#closeTimer !== undefined) {
      clearTimeout(this.#closeTimer);
      this.#closeTimer = undefined;
    }

    if (options.reset === true && !client.destroyed) resetSocket(client);
    else client.destroy();
    upstream.destroy();
    // Both sockets are closed, so no read or write can touch the pooled buffers any more.
    if (this.#relay !== 0) this.#releaseBuffers();
    // The client's idle timer must not outlive the connection.
    if (client.timeout) client.setTimeout(0);

    this.reportClosed(reason, error, client.bytesRead, upstream.bytesRead);
  }

  #releaseBuffers(): void {
    const pool = readBufferPool();
    const flags = this.#relay;
    if ((flags & LENT) !== 0) pool.unlend();
    if ((flags & (LENT << UPSTREAM_SHIFT)) !== 0) pool.unlend();
    if (this.#toUpstream !== undefined) pool.give(this.#toUpstream);
    if (this.#toClient !== undefined) pool.give(this.#toClient);
    this.#toUpstream = undefined;
    this.#toClient = undefined;
    this.#relay = 0;
  }

  static {
    socketClosed = (conn, side) => {
      if (conn.#closed) return;
      const self = side === 'client' ? conn.client : conn.upstream;
      const other = side === 'client' ? conn.upstream : conn.client;
      const reason: TeardownReason = conn.#pendingReason ?? (side === 'client' ? 'client-closed' : 'upstream-closed');
      // A clean close after FIN both ways: the other side was already ended by the
      // forwarding and may still be flushing the last bytes we sent it. Let it finish
      // and close on its own rather than cutting those bytes off.
      const cleanly = self.readableEnded && self.writableFinished;
      if (cleanly && other.writableEnded && !other.destroyed) {
        conn.#pendingReason = reason;
        return;
      }
      conn.destroy(reason);
    };
    pendingReasonOf = (conn) => conn.#pendingReason ?? 'closed';
    socketFailed = (conn, side, err) => {
      if (conn.#closed) return; // after the first error, further ones are noise
      if (log.enabled) log('%s %s error: %s', conn.id, side, (err as NodeJS.ErrnoException).code ?? err.message);
      // A peer that resets while we close it gracefully keeps the close's reason.
      const reason = conn.#closeTimer !== undefined ? conn.#pendingReason! : side === 'client' ? 'client-error' : 'upstream-error';
      conn.destroy(reason, { error: err });
    };

    // The pooled data path, for one read of `from` (see ReadBufferPool):
    // - read into the landing buffer (nothing in flight): copy into a pooled
    //   buffer, as the landing buffer is shared by every quiet socket and must
    //   never be held by a pending write;
    // - write the pooled buffer; if the kernel took it all it is free at once:
    //   after a read that filled it (a bulk transfer: more is waiting) it is
    //   lent as the next read target, so bulk bytes are never copied; after a
    //   short one it goes back to the pool and `from` reads into the landing
    //   buffer again, so a quiet connection holds no buffer;
    // - if the kernel did not take it all, the buffer stays with the write and
    //   `from` is paused until the write completes (#afterWrite): one
    //   buffer in flight per direction at most, and backpressure.
    relayRead = (conn, from, nread, data) => {
      if (conn.#closed || conn.#quiesced || conn[kGate].shut) return false;
      const pool = readBufferPool();
      const shift = from === 'client' ? 0 : UPSTREAM_SHIFT;
      // The read must have landed in the buffer this connection set for `from`:
      // its lent buffer, else the landing buffer. Anything else means Node
      // reads differently from what read-into.ts expects, and treating a
      // foreign buffer as ours could send one connection's bytes down another.
      const lent = (conn.#relay & (LENT << shift)) !== 0;
      if (data !== (lent ? (from === 'client' ? conn.#toUpstream : conn.#toClient) : pool.landing)) {
        return fallBack(conn, pool, from, shift, data.subarray(0, nread));
      }
      if (conn.#closeTimer !== undefined) {
        // Closing: both sinks are ended, the bytes go nowhere; read on for the FIN.
        keep(conn, pool, from, shift, false);
        return true;
      }
      const to = from === 'client' ? conn.upstream : conn.client;
      let buffer = data;
      if (data === pool.landing) {
        buffer = pool.take();
        data.copy(buffer, 0, 0, nread);
        if (from === 'client') conn.#toUpstream = buffer;
        else conn.#toClient = buffer;
      }
      to.write(nread === buffer.length ? buffer : buffer.subarray(0, nread));
      if (to.writableLength > 0) {
        // An empty write completes right after the pending ones: its callback
        // is the wake-up ('drain' only follows writes past the high-water
        // mark). Made on the first pending write, so connections whose writes
        // always complete at once (idle ones) carry no function. An arrow
        // rather than bind(): a bound function gets a 256-byte property
        // dictionary when its target's `name` was redefined, as tsx does.
        to.write(EMPTY, (conn.#afterWrite ??= () => relayWritten(conn)));
        conn.#relay |= WAITING << shift;
        keep(conn, pool, from, shift, true);
        return false;
      }
      keep(conn, pool, from, shift, nread === data.length);
      return true;
    };
    relayWritten = (conn) => {
      if (conn.#closed) return;
      const pool = readBufferPool();
      if ((conn.#relay & WAITING) !== 0 && conn.upstream.writableLength === 0) done(conn, pool, 'client', 0);
      if ((conn.#relay & (WAITING << UPSTREAM_SHIFT)) !== 0 && conn.client.writableLength === 0) done(conn, pool, 'upstream', UPSTREAM_SHIFT);
    };
    /** Picks `from`'s next read target: its direction's buffer when wanted and lent, else the landing buffer. */
    const keep = (conn: PinnedConnection, pool: ReadBufferPool, from: Side, shift: number, want: boolean): void => {
      const lent = (conn.#relay & (LENT << shift)) !== 0;
      if (want && (lent || pool.lend())) {
        if (!lent) {
          conn.#relay |= LENT << shift;
          nextTarget = from === 'client' ? conn.#toUpstream : conn.#toClient;
        }
        return;
      }
      if (lent) {
        conn.#relay &= ~(LENT << shift);
        pool.unlend();
        nextTarget = pool.landing;
      }
      if ((conn.#relay & (WAITING << shift)) === 0) giveBack(conn, pool, from);
    };
    /** The write `from`'s direction waited for completed: free its buffer unless lent, and read on. */
    const done = (conn: PinnedConnection, pool: ReadBufferPool, from: Side, shift: number): void => {
      conn.#relay &= ~(WAITING << shift);
      if ((conn.#relay & (LENT << shift)) === 0) giveBack(conn, pool, from);
      if (!conn.#quiesced && !conn[kGate].shut) (from === 'client' ? conn.client : conn.upstream).resume();
    };
    /**
     * A read of `from` landed in a buffer the connection had not set: its bytes
     * (`bytes`, per `onread`'s contract) are copied out at once, and `from`
     * goes back to stream reads and `'data'` events for the rest of its life,
     * as TLS sockets are read. Its pooled buffers go back once no write holds them.
     */
    const fallBack = (conn: PinnedConnection, pool: ReadBufferPool, from: Side, shift: number, bytes: Buffer): boolean => {
      const source = from === 'client' ? conn.client : conn.upstream;
      const sink = from === 'client' ? conn.upstream : conn.client;
      log('%s %s: a read landed outside the buffers set for it; back to data events (and for every later socket)', conn.id, from);
      if ((conn.#relay & (LENT << shift)) !== 0) pool.unlend();
      conn.#relay &= ~((POOLED | LENT) << shift);
      if ((conn.#relay & (WAITING << shift)) === 0) giveBack(conn, pool, from);
      const chunk = Buffer.from(bytes);
      readThroughStream(source);
      if (conn.#closeTimer === undefined) {
        source.on('data', from === 'client' ? onClientData : onUpstreamData);
        sink.on('drain', from === 'client' ? onUpstreamDrain : onClientDrain);
      }
      // Closing: both sinks are ended; the stream flows without a listener (for the FIN) and drops the bytes.
      return source.push(chunk);
    };
    const giveBack = (conn: PinnedConnection, pool: ReadBufferPool, from: Side): void => {
      const buffer = from === 'client' ? conn.#toUpstream : conn.#toClient;
      if (buffer === undefined) return;
      pool.give(buffer);
      if (from === 'client') conn.#toUpstream = undefined;
      else conn.#toClient = undefined;
    };
  }
}

function isSocketLike(value: unknown): value is Socket {
  return typeof value === 'object' && value !== null && typeof (value as Socket).write === 'function' && typeof (value as Socket).destroy === 'function';
}

function onCloseDeadline(conn: PinnedConnection): void {
  conn.destroy(pendingReasonOf(conn));
}

function configure(socket: Socket, keepAlive: boolean, delay: number, noDelay: boolean): void {
  // A TLSSocket over a duplex that is not a TCP socket has nothing to configure.
  try {
    socket.setKeepAlive(keepAlive, delay);
    socket.setNoDelay(noDelay);
  } catch {
    /* not a TCP socket */
  }
}

function resetSocket(socket: Socket): void {
  // While the shutdown that end() started is still pending (a graceful close
  // begun in this same tick) libuv refuses the reset (EINVAL) and Node then
  // never closes the handle: the socket would stay open for the life of the
  // process. The FIN is on its way; close it plainly. Once the FIN is out
  // (`writableFinished`), a reset works again and tells a half-open client.
  if (socket.writableEnded && !socket.writableFinished) {
    socket.destroy();
    return;
  }
  try {
    socket.resetAndDestroy();
  } catch {
    // TLS sockets cannot be reset from JavaScript (ERR_INVALID_HANDLE_TYPE).
    socket.destroy();
  }
}

function onClientError(this: OwnedSocket, err: Error): void {
  const conn = this[kConnection];
  if (conn) socketFailed(conn, 'client', err);
}

function onUpstreamError(this: OwnedSocket, err: Error): void {
  const conn = this[kConnection];
  if (conn) socketFailed(conn, 'upstream', err);
}

function onClientClose(this: OwnedSocket): void {
  const conn = this[kConnection];
  if (conn) socketClosed(conn, 'client');
}

function onUpstreamClose(this: OwnedSocket): void {
  const conn = this[kConnection];
  if (conn) socketClosed(conn, 'upstream');
}

// The data path. No allocation here beyond a view of a short read: a chunk
// goes straight to the other socket, and a full socket pauses its source
// until its write completes.

function onClientRead(this: OwnedSocket, nread: number, data: Buffer): boolean {
  const conn = this[kConnection];
  return conn !== undefined && relayRead(conn, 'client', nread, data);
}

function onUpstreamRead(this: OwnedSocket, nread: number, data: Buffer): boolean {
  const conn = this[kConnection];
  return conn !== undefined && relayRead(conn, 'upstream', nread, data);
}

function takeNextTarget(): Buffer | undefined {
  const target = nextTarget;
  nextTarget = undefined;
  return target;
}

// Sockets that cannot read into pooled buffers (TLS) emit 'data'.

// A shut gate (the pair was taken out, its sockets not closed yet) stops
// every one of them: nothing is written, nothing resumed, no FIN passed on.

function onClientData(this: OwnedSocket, chunk: Buffer): void {
  const conn = this[kConnection];
  if (conn === undefined) return;
  if (conn[kGate].shut || !conn.upstream.write(chunk)) this.pause();
}

function onUpstreamData(this: OwnedSocket, chunk: Buffer): void {
  const conn = this[kConnection];
  if (conn === undefined) return;
  if (conn[kGate].shut || !conn.client.write(chunk)) this.pause();
}

function onClientDrain(this: OwnedSocket): void {
  // The client took what it was sent: let the upstream flow again.
  const conn = this[kConnection];
  if (conn !== undefined && !conn[kGate].shut) conn.upstream.resume();
}

function onUpstreamDrain(this: OwnedSocket): void {
  const conn = this[kConnection];
  if (conn !== undefined && !conn[kGate].shut) conn.client.resume();
}

function onClientEnd(this: OwnedSocket): void {
  // FIN from the client: pass it on; the upstream's reply keeps flowing.
  const conn = this[kConnection];
  if (conn !== undefined && !conn[kGate].shut) conn.upstream.end();
}

function onUpstreamEnd(this: OwnedSocket): void {
  const conn = this[kConnection];
  if (conn !== undefined && !conn[kGate].shut) conn.client.end();
}

function onIdleTimeout(this: OwnedSocket): void {
  this[kConnection]?.destroy('idle-timeout');
}
