/**
 * The balancer's one shutdown sequence, the same in a single process, in each
 * worker of `--workers N` and in their primary:
 *
 * 1. one line: what is open, and the time it gets;
 * 2. stop accepting (and stop what would move connections a drain lets
 *    finish: rebalancing, discovery);
 * 3. drain: open connections finish for the drain deadline in force, then
 *    the rest is closed (`force`: at once);
 * 4. release: the probe, the status endpoint, the counters, the access log
 *    and the event log;
 * 5. one last line, and the exit code: 0 for a clean stop, 1 (with the
 *    reason on stderr) for one that was not.
 *
 * Each mode says what each step is for it ({@link ShutdownSteps}); the order,
 * the lines, idempotence and cutting a drain short are here. SIGTERM/SIGINT
 * (or the primary's `shutdown` message) close; a second one destroys, which
 * during a drain closes what is left at once.
 *
 * @module
 */

/** What each step of the shutdown is in one mode. */
export interface ShutdownSteps {
  /** The first line: what is open now and the time it gets (`force`: closed now). */
  announce(force: boolean, timeout: number): string;
  /** Stops taking new clients, and anything that would move a connection the drain lets finish. */
  stopAccepting(): Promise<void> | void;
  /** Lets open connections finish for `timeout` ms, then closes the rest; `force`: closes them now. */
  drain(force: boolean, timeout: number): Promise<void>;
  /** A drain is under way: close what is left now. */
  cutShort(): Promise<void> | void;
  /** Once the connections are gone: the probe, the status endpoint, the counters, the access log, the event log. */
  release(): Promise<void>;
  /** The last line; `failure` when the stop was not clean (the shutdown then rejects with it). */
  finish(): { readonly line: string; readonly failure?: Error | undefined };
}

/**
 * One process's shutdown: {@link Shutdown.close} and {@link Shutdown.destroy}
 * are idempotent and return the same promise when called again.
 */
export class Shutdown {
  readonly #steps: ShutdownSteps;
  readonly #log: (line: string) => void;
  readonly #drainTimeout: () => number;
  #stopping: Promise<void> | undefined;

  /** `drainTimeout`: the deadline in force when a close is given none (a reload may have changed it). */
  constructor(steps: ShutdownSteps, options: { readonly log: (line: string) => void; readonly drainTimeout: () => number }) {
    this.#steps = steps;
    this.#log = options.log;
    this.#drainTimeout = options.drainTimeout;
  }

  /** Whether a close or a destroy has begun. */
  get started(): boolean {
    return this.#stopping !== undefined;
  }

  /** Stops accepting, lets open connections finish for `timeout` ms (default: the drain deadline in force), releases the rest. */
  close(timeout = this.#drainTimeout()): Promise<void> {
    this.#stopping ??= this.#run(false, timeout);
    return this.#stopping;
  }

  /** As {@link Shutdown.close}, with every connection closed now; during a drain, cuts it short. */
  destroy(): Promise<void> {
    if (this.#stopping === undefined) {
      this.#stopping = this.#run(true, 0);
      return this.#stopping;
    }
    const stopping = this.#stopping;
    return Promise.resolve(this.#steps.cutShort()).then(() => stopping);
  }

  async #run(force: boolean, timeout: number): Promise<void> {
    const steps = this.#steps;
    this.#log(steps.announce(force, timeout));
    await steps.stopAccepting();
    await steps.drain(force, timeout);
    await steps.release();
    const { line, failure } = steps.finish();
    this.#log(line);
    if (failure !== undefined) throw failure;
  }
}

/** `N connections` / `1 connection`. */
export function connections(n: number): string {
  return `${n} connection${n === 1 ? '' : 's'}`;
}

/** The first line of a process that holds the connections itself (a single process, a worker). */
export function announceConnections(open: number, force: boolean, timeout: number): string {
  return force ? `closing ${connections(open)} now` : `shutting down: not accepting; ${connections(open)} open, ${timeout} ms to finish`;
}

/** The last line of such a process: how many connections the deadline closed. */
export function stoppedLine(closedAtDeadline: number): string {
  return `stopped${closedAtDeadline > 0 ? ` (${connections(closedAtDeadline)} closed at the deadline)` : ''}`;
}

/**
 * Ends the process with the outcome of its shutdown: exit 0 once it is
 * done; `fail` (which writes the reason and exits 1) when it failed.
 */
export function exitWhenStopped(stopped: Promise<void>, fail: (message: string) => void): void {
  stopped.then(
    () => process.exit(0),
    (err: unknown) => fail(`shutdown failed: ${err instanceof Error ? err.message : String(err)}`),
  );
}
