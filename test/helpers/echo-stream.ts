/**
 * A client of an echo backend that checks every byte that comes back against
 * what it sent, in order (byte for byte, and by SHA-256 at the end), and
 * knows how long it has been waiting for an answer: what the flood and soak
 * tests use to tell "intact", "torn down" and "stuck" apart.
 */
import { createHash, type Hash } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Prng } from './faults.js';

export class EchoStream {
  readonly sentHash: Hash = createHash('sha256');
  readonly gotHash: Hash = createHash('sha256');
  sent = 0;
  received = 0;
  /** Echoed bytes that differ from what was sent at that offset (or come beyond it). */
  mismatches = 0;
  closed = false;
  /** When the oldest unanswered byte started waiting (`undefined`: nothing unanswered). */
  waitingSince: number | undefined;
  readonly #pending: Buffer[] = [];
  #pendingOffset = 0;

  constructor(
    readonly socket: Socket,
    readonly random: Prng,
    /** Most unanswered bytes before `pump()` holds back. */
    readonly window = 256 * 1024,
  ) {
    socket.on('data', (d: Buffer) => this.#check(d));
    socket.on('close', () => (this.closed = true));
  }

  /** Unanswered bytes. */
  get outstanding(): number {
    return this.sent - this.received;
  }

  /** Whether everything sent came back intact so far. */
  get intact(): boolean {
    return this.mismatches === 0;
  }

  /** Sends `chunk`, or a random one of 1 B to `max` bytes; never a first byte of `G`, so a backend can tell it from an HTTP check. */
  pump(max = 16 * 1024, chunk?: Buffer): void {
    if (this.closed || this.outstanding > this.window) return;
    const data = chunk ?? this.random.bytes(this.random.int(1, max));
    if (this.sent === 0) data[0] = 0x01;
    if (this.outstanding === 0) this.waitingSince = Date.now();
    this.#pending.push(data);
    this.sentHash.update(data);
    this.sent += data.length;
    this.socket.write(data);
  }

  /** How long the oldest unanswered byte has waited, at `now` (0 when nothing is unanswered or the stream is closed). */
  waited(now: number): number {
    return this.closed || this.waitingSince === undefined ? 0 : now - this.waitingSince;
  }

  #check(d: Buffer): void {
    this.gotHash.update(d);
    let i = 0;
    while (i < d.length) {
      const head = this.#pending[0];
      if (head === undefined) {
        this.mismatches++;
        return;
      }
      const n = Math.min(head.length - this.#pendingOffset, d.length - i);
      if (!d.subarray(i, i + n).equals(head.subarray(this.#pendingOffset, this.#pendingOffset + n))) this.mismatches++;
      i += n;
      this.#pendingOffset += n;
      if (this.#pendingOffset === head.length) {
        this.#pending.shift();
        this.#pendingOffset = 0;
      }
    }
    this.received += d.length;
    this.waitingSince = this.outstanding > 0 ? Date.now() : undefined;
  }
}
