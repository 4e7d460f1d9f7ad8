/**
 * Reading a socket into buffers we supply, for a socket that already exists.
 *
 * Node's `onread: { buffer, callback }` option makes a socket read into a
 * caller's buffer instead of allocating a new 64 KiB one per read, but only
 * for sockets built with it (`new net.Socket`, `net.connect`). The sockets a
 * proxy forwards mostly come from elsewhere: a `net.Server` accepts the
 * client sockets, and the dial function may be the caller's. This module
 * gives an existing socket that same mode, through the three properties that
 * the option itself sets, found on a probe socket built with the option (so
 * nothing here spells out Node's internal names beyond their descriptions),
 * and the handle's `useUserBuffer()`, which the option calls.
 *
 * Where that is not possible (a TLS socket, a non-stream handle, a Node whose
 * internals differ) {@link readInto} says so and the caller reads through
 * `'data'` events as before.
 *
 * @module
 */
import { Socket, type OnReadOpts, type SocketConstructorOpts } from 'node:net';

/**
 * Called for each read with the number of bytes read into `buffer`. `this`
 * is the socket. Returning `false` stops reading until `socket.resume()`.
 */
export type ReadCallback = (this: Socket, nread: number, buffer: Buffer) => boolean;

/**
 * Called right after every {@link ReadCallback}: the buffer for the next read,
 * or `undefined` to keep the current one.
 */
export type NextBuffer = () => Buffer | undefined;

interface OnreadKeys {
  /** The buffer the next read goes into. */
  readonly buffer: symbol;
  readonly callback: symbol;
  readonly next: symbol;
}

type Keyed = Record<symbol, unknown>;
interface StreamHandle {
  useUserBuffer?: (buffer: Buffer) => void;
}

// Found once, on first use (not at import time); `null` when not found.
let keys: OnreadKeys | null | undefined;
// Set when a read did not land where its connection said (see readThroughStream):
// this Node's internals are not what this module expects, so no new socket is switched.
let distrusted = false;

function probe(): OnreadKeys | null {
  const next: NextBuffer = () => undefined;
  const callback: ReadCallback = () => true;
  // No handle: builds the stream object only, nothing is opened. (`onread` is
  // a documented constructor option missing from @types/node's constructor type.)
  const options: SocketConstructorOpts & { onread: OnReadOpts } = { onread: { buffer: next as () => Uint8Array, callback } };
  const socket = new Socket(options) as unknown as Keyed;
  let buffer: symbol | undefined;
  let cb: symbol | undefined;
  let gen: symbol | undefined;
  for (const key of Object.getOwnPropertySymbols(socket)) {
    const value = socket[key];
    if (value === callback) cb = key;
    else if (value === next) gen = key;
    // With a function as `buffer`, the option stores `true` until the first read.
    else if (value === true && key.description === 'kBuffer') buffer = key;
  }
  return buffer !== undefined && cb !== undefined && gen !== undefined ? { buffer, callback: cb, next: gen } : null;
}

/**
 * Whether {@link readInto} can switch `socket`: a connected, unencrypted
 * stream socket not already reading into a caller's buffer.
 */
export function canReadInto(socket: Socket): boolean {
  if (distrusted) return false;
  keys ??= probe();
  if (keys === null) return false;
  // A TLSSocket's handle decrypts; the bytes it reads are not the ones to forward.
  if ((socket as Socket & { encrypted?: boolean }).encrypted === true) return false;
  if (socket.connecting || socket.destroyed) return false;
  const handle = (socket as unknown as { _handle?: StreamHandle | null })._handle;
  if (handle === null || handle === undefined || typeof handle.useUserBuffer !== 'function') return false;
  // Already built with `onread` by its owner: theirs to read.
  const k = socket as unknown as Keyed;
  return k[keys.buffer] === null || k[keys.buffer] === undefined;
}

/**
 * Makes `socket` read into `first`, then into whatever `next()` returns after
 * each `callback`, as if it had been built with `onread: { buffer: next, callback }`.
 * From then on the socket emits no `'data'`; `'end'`, `'error'` and `'close'`
 * are unchanged, as are `pause()`, `resume()` and `bytesRead`. Bytes already
 * buffered in the stream (read before the switch) stay there for `read()`.
 *
 * Returns `false`, changing nothing, when {@link canReadInto} is false.
 */
export function readInto(socket: Socket, first: Buffer, callback: ReadCallback, next: NextBuffer): boolean {
  if (!canReadInto(socket)) return false;
  const k = socket as unknown as Keyed;
  const { buffer, callback: cb, next: gen } = keys!;
  k[cb] = callback;
  k[gen] = next;
  k[buffer] = first;
  // Pushes a listener on the handle that reads into `first` and hands each
  // read to the stream's onread; called once per socket (each call pushes one).
  (socket as unknown as { _handle: Required<StreamHandle> })._handle.useUserBuffer(first);
  return true;
}

/** Bytes per read once a socket is back on stream reads: Node's own default. */
const STREAM_READ_SIZE = 64 * 1024;

/** A read of a socket on stream reads: a copy of the bytes is pushed into the stream, which emits it as `'data'`. */
function pushCopy(this: Socket, nread: number, buffer: Buffer): boolean {
  return this.push(Buffer.from(buffer.subarray(0, nread)));
}

/**
 * Takes a socket switched by {@link readInto} back to ordinary stream reads,
 * for a caller whose read callback saw a buffer it had not set: the socket
 * reads into a buffer of its own (not shared with any other socket) and every
 * read is pushed into the stream as a copy, so the socket emits `'data'`
 * again, with the stream's own backpressure. Call it from the read callback
 * (the new buffer is taken right after it returns); from then on no socket
 * in the process is switched by {@link readInto}.
 *
 * Node cannot take a read listener off a handle once `useUserBuffer()` has
 * pushed one, so this is as close to a switch back as a socket allows: it
 * relies only on `onread`'s documented contract (the callback's buffer holds
 * the `nread` bytes just read), not on the shared buffers.
 */
export function readThroughStream(socket: Socket): void {
  distrusted = true;
  if (keys === null || keys === undefined) return;
  const k = socket as unknown as Keyed;
  const own = Buffer.allocUnsafe(STREAM_READ_SIZE);
  k[keys.callback] = pushCopy;
  k[keys.next] = () => own;
}
