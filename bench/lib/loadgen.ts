/**
 * The loopback load generator: a download, a batch of short exchanges at a
 * fixed concurrency, and a set of idle connections. It runs in the bench
 * process, which does nothing else while it measures.
 *
 * @module
 */
import net, { type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

/** Result of {@link download}. */
export interface DownloadResult {
  readonly bytes: number;
  /** From connect() to the server's FIN, in ms. */
  readonly ms: number;
}

/**
 * Asks a `source` backend (through whatever listens on `port`) for `bytes`
 * bytes and reads them as fast as they come.
 */
export function download(host: string, port: number, bytes: number, timeoutMs = 120_000): Promise<DownloadResult> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let received = 0;
    const socket = net.connect({ host, port, noDelay: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`download of ${bytes} B from ${host}:${port} timed out after ${timeoutMs} ms (${received} B received)`));
    }, timeoutMs);
    socket.once('connect', () => socket.write(`${bytes}\n`));
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
    });
    socket.once('end', () => {
      const ms = performance.now() - t0;
      clearTimeout(timer);
      socket.destroy();
      if (received !== bytes) reject(new Error(`download from ${host}:${port}: got ${received} of ${bytes} B`));
      else resolve({ bytes: received, ms });
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** Result of {@link exchanges}. */
export interface ExchangeResult {
  /** Per completed exchange: connect() to the reply's FIN, in ms. */
  readonly latencies: Float64Array;
  readonly completed: number;
  readonly errors: number;
  /** Wall time of the whole batch, in ms. */
  readonly ms: number;
}

/**
 * `count` exchanges, `concurrency` at a time: connect, send `payload`, read
 * the echoed reply until the server closes, close. An `echo-close` backend
 * answers and closes first, so TIME_WAIT lands on the listening side and the
 * client's ephemeral ports are not exhausted.
 */
export function exchanges(host: string, port: number, count: number, concurrency: number, payloadSize = 64, timeoutMs = 120_000): Promise<ExchangeResult> {
  const payload = Buffer.alloc(payloadSize, 0x62);
  const latencies = new Float64Array(count);
  let started = 0;
  let completed = 0;
  let errors = 0;
  let finished = 0;
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`exchanges with ${host}:${port}: ${finished}/${count} after ${timeoutMs} ms`)), timeoutMs);
    const done = (): void => {
      if (++finished === count) {
        clearTimeout(timer);
        resolve({ latencies: latencies.subarray(0, completed), completed, errors, ms: performance.now() - t0 });
      } else if (started < count) one();
    };
    const one = (): void => {
      started++;
      const begin = performance.now();
      let got = 0;
      let settled = false;
      const socket = net.connect({ host, port, noDelay: true });
      socket.once('connect', () => socket.write(payload));
      socket.on('data', (d: Buffer) => {
        got += d.length;
      });
      socket.once('end', () => {
        if (settled) return;
        settled = true;
        if (got === payloadSize) latencies[completed++] = performance.now() - begin;
        else errors++;
        socket.destroy();
        done();
      });
      socket.once('error', () => {
        if (settled) return;
        settled = true;
        errors++;
        socket.destroy();
        done();
      });
    };
    for (let i = 0; i < Math.min(concurrency, count); i++) one();
  });
}

/**
 * Opens `n` connections, `concurrency` at a time, each proven end to end by
 * one echoed byte, and leaves them open and idle.
 */
export async function openIdle(host: string, port: number, n: number, concurrency = 100, timeoutMs = 120_000): Promise<Socket[]> {
  const sockets: Socket[] = [];
  let next = 0;
  const deadline = Date.now() + timeoutMs;
  const worker = async (): Promise<void> => {
    while (next < n) {
      next++;
      if (Date.now() > deadline) throw new Error(`openIdle: ${sockets.length}/${n} open after ${timeoutMs} ms`);
      sockets.push(await pingOpen(host, port));
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  } catch (err) {
    closeAll(sockets);
    throw err;
  }
  return sockets;
}

function pingOpen(host: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, noDelay: true });
    const onError = (err: Error): void => {
      socket.destroy();
      reject(err);
    };
    socket.once('error', onError);
    socket.once('connect', () => socket.write('p'));
    socket.once('data', () => {
      socket.off('error', onError);
      // Later errors (a teardown resetting it) are expected, not fatal.
      socket.on('error', () => {});
      resolve(socket);
    });
    socket.once('close', () => reject(new Error(`connection to ${host}:${port} closed before its echo`)));
  });
}

/** Sends one byte on each socket and resolves with how many echoed it back within `timeoutMs`. */
export async function pingAll(sockets: readonly Socket[], timeoutMs = 5000): Promise<number> {
  const results = await Promise.all(
    sockets.map(
      (s) =>
        new Promise<boolean>((resolve) => {
          if (s.destroyed) {
            resolve(false);
            return;
          }
          const timer = setTimeout(() => {
            s.off('data', onData);
            resolve(false);
          }, timeoutMs);
          const onData = (): void => {
            clearTimeout(timer);
            resolve(true);
          };
          s.once('data', onData);
          s.write('q');
        }),
    ),
  );
  return results.filter(Boolean).length;
}

/** Destroys every socket. */
export function closeAll(sockets: readonly Socket[]): void {
  for (const s of sockets) s.destroy();
}
