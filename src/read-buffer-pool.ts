/**
 * The read buffers every forwarded socket in the process shares.
 *
 * @module
 */

/** Sizes of a {@link ReadBufferPool}. */
export interface ReadBufferPoolSizes {
  /** Bytes per buffer: the most one read takes in. */
  readonly bufferSize: number;
  /** Free buffers kept for reuse; more are left to the garbage collector. */
  readonly maxFree: number;
  /** Buffers that may be held as a socket's next read target at once (see {@link ReadBufferPool.lend}). */
  readonly maxLent: number;
}

/**
 * 64 KiB, the size Node reads into by default; 32 free (2 MiB) covers the
 * buffers in flight of 32 busy directions at once; 64 lent (4 MiB) bounds
 * what sockets that went quiet right after a full read can keep.
 */
const defaultSizes: ReadBufferPoolSizes = Object.freeze({ bufferSize: 64 * 1024, maxFree: 32, maxLent: 64 });

/** A snapshot of a {@link ReadBufferPool}. */
export interface ReadBufferPoolStats {
  /** Buffers allocated since the pool was created (the landing buffer included). */
  readonly allocated: number;
  /** Buffers waiting in the free list. */
  readonly free: number;
  /** Buffers currently a socket's next read target. */
  readonly lent: number;
}

/**
 * Read buffers for sockets that read into memory they are given (see
 * `read-into.ts`), recycled instead of being allocated per read and freed by
 * the garbage collector. Node's default allocates a fresh 64 KiB buffer per
 * read; in a bulk transfer glibc hands those back to the kernel after each
 * collection and faults them in again, about 200,000 page faults per GB.
 *
 * A socket with nothing in flight reads into {@link landing}, one buffer for
 * the whole process: bytes read there are copied out before they are written
 * anywhere, so the landing buffer is never held by a pending write and an
 * idle connection holds no buffer of its own. A socket in a bulk transfer
 * reads straight into a buffer {@link take}n from the pool instead (no copy),
 * and gives it back once the transfer pauses.
 */
export class ReadBufferPool {
  /** Bytes per buffer. */
  readonly bufferSize: number;
  /** Where every socket with nothing in flight reads; its bytes must be copied out before being written. */
  readonly landing: Buffer;
  readonly #free: Buffer[] = [];
  readonly #maxFree: number;
  readonly #maxLent: number;
  #lent = 0;
  #allocated = 1;

  constructor(sizes: ReadBufferPoolSizes = defaultSizes) {
    this.bufferSize = sizes.bufferSize;
    this.#maxFree = sizes.maxFree;
    this.#maxLent = sizes.maxLent;
    // Unsafe (not zero-filled) is fine: only bytes a read just wrote are ever sent.
    this.landing = Buffer.allocUnsafeSlow(this.bufferSize);
  }

  /** A buffer of {@link bufferSize} bytes, reused when one is free. */
  take(): Buffer {
    const buffer = this.#free.pop();
    if (buffer !== undefined) return buffer;
    this.#allocated++;
    return Buffer.allocUnsafeSlow(this.bufferSize);
  }

  /** Returns a buffer from {@link take} once nothing (no read, no pending write) refers to it. */
  give(buffer: Buffer): void {
    if (this.#free.length < this.#maxFree) this.#free.push(buffer);
  }

  /**
   * Asks to keep a taken buffer as a socket's next read target. A socket only
   * changes buffers after a read, so one that goes quiet keeps its target
   * until it reads again or closes; lending is capped so that such sockets
   * hold at most `maxLent` buffers in the whole process. `false`: read into
   * {@link landing} instead.
   */
  lend(): boolean {
    if (this.#lent >= this.#maxLent) return false;
    this.#lent++;
    return true;
  }

  /** Ends a {@link lend}. */
  unlend(): void {
    this.#lent--;
  }

  /** Counts, for tests and benches. */
  stats(): ReadBufferPoolStats {
    return { allocated: this.#allocated, free: this.#free.length, lent: this.#lent };
  }
}

let shared: ReadBufferPool | undefined;

/** The process's pool, created on first use. */
export function readBufferPool(): ReadBufferPool {
  shared ??= new ReadBufferPool();
  return shared;
}
