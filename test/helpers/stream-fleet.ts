/**
 * N long-lived client streams through a frontend: each sends a line every
 * `interval` ms and counts the echoes; a stream that is closed (drained,
 * rebalanced) reconnects after a short pause, as a client would. Bounded:
 * everything stops at `stop()` (and after the test).
 */
import net, { type Socket } from 'node:net';
import type { TestContext } from 'node:test';

export class StreamFleet {
  readonly sockets = new Set<Socket>();
  reconnects = 0;
  echoes = 0;
  #stopped = false;
  readonly #timers = new Set<NodeJS.Timeout>();

  constructor(
    t: TestContext,
    readonly port: number,
    readonly count: number,
    readonly interval = 100,
  ) {
    t.after(() => this.stop());
    for (let i = 0; i < count; i++) this.#open();
  }

  /** Streams connected now. */
  get open(): number {
    let n = 0;
    for (const s of this.sockets) if (!s.connecting && !s.destroyed) n++;
    return n;
  }

  #open(): void {
    if (this.#stopped) return;
    const socket = net.connect(this.port, '127.0.0.1');
    this.sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('error', () => {});
    socket.on('data', () => this.echoes++);
    // interval 0: a silent stream (it only holds its connection).
    const tick = setInterval(() => {
      if (this.interval > 0 && !socket.destroyed && !socket.connecting) socket.write('ping\n');
    }, this.interval || 60_000);
    this.#timers.add(tick);
    socket.once('close', () => {
      clearInterval(tick);
      this.#timers.delete(tick);
      this.sockets.delete(socket);
      if (this.#stopped) return;
      this.reconnects++;
      const again = setTimeout(() => {
        this.#timers.delete(again);
        this.#open();
      }, 20);
      this.#timers.add(again);
    });
  }

  stop(): void {
    this.#stopped = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    for (const s of this.sockets) s.destroy();
  }
}
