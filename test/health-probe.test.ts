import assert from 'node:assert/strict';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { EventEmitter } from 'eventemitter3';
import { resolveBackend, type Backend, type BackendSpec } from '../src/backend.js';
import type { BackendHealth, HealthCause } from '../src/backend-status.js';
import type { CheckFunction } from '../src/checks/check.js';
import type { Clock } from '../src/clock.js';
import { CheckError, ConnectError, ConnectTimeoutError } from '../src/errors.js';
import type { CheckResult, HealthProbeEvents } from '../src/events.js';
import { HealthProbe, type ProbeTarget, type ProbeTargetEvents, type ProbeTargetStatus } from '../src/health-probe.js';
import { resolveProbeOptions, type HealthProbeOptions } from '../src/probe-options.js';
import { FakeClock } from './helpers/fake-clock.js';
import { handlesSettledTo, ourHandles } from './helpers/net.js';

// ---------------------------------------------------------------- helpers

/** Resolves with the arguments of the next `event`. */
function nextEvent<E extends keyof HealthProbeEvents>(probe: HealthProbe, event: E): Promise<HealthProbeEvents[E]> {
  return new Promise((resolve) => {
    const listener = (...args: HealthProbeEvents[E]): void => resolve(args);
    probe.once(event, listener);
  });
}

/** Lets pending promise callbacks and I/O callbacks run. */
async function turns(n = 5): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
}

/**
 * Fires the probe's timer (one for every backend) again and again until `ms`
 * from now, letting the checks it starts run before the next fire, so each
 * check starts at its own due time.
 */
async function runFor(clock: FakeClock, ms: number): Promise<void> {
  const end = clock.now() + ms;
  for (;;) {
    const [soonest] = clock.delays();
    if (soonest === undefined || clock.now() + soonest > end) break;
    clock.advance(soonest);
    await turns();
  }
  clock.advance(end - clock.now());
}

interface Deferred<T = void> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
}

function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((res) => (resolve = res));
  return { promise, resolve };
}

/** A check whose outcome the test flips: `state.healthy`. */
function switchable(): { check: CheckFunction; state: { healthy: boolean; calls: number } } {
  const state = { healthy: true, calls: 0 };
  const check: CheckFunction = () => {
    state.calls++;
    return state.healthy ? Promise.resolve() : Promise.reject(new Error('unhealthy'));
  };
  return { check, state };
}

function probeWith(t: TestContext, options: HealthProbeOptions): HealthProbe {
  const probe = new HealthProbe(options);
  t.after(() => probe.stop());
  return probe;
}

async function listen(t: TestContext, server: Server): Promise<number> {
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  );
  return (server.address() as AddressInfo).port;
}



/** Real timers, but ref'd, so they show up in `getActiveResourcesInfo()` while pending. */
const refClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

function assertCode(code: string): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.equal((err as { code?: unknown }).code, code);
    return true;
  };
}

/** A minimal pool: an eventemitter3 emitter over a Map, recording every call the probe makes. */
class FakePool extends EventEmitter<ProbeTargetEvents> implements ProbeTarget {
  readonly #entries = new Map<string, { backend: Backend; health: BackendHealth }>();
  readonly calls: string[] = [];
  readonly causes: (HealthCause | undefined)[] = [];
  onMarkDown: ((id: string) => void) | undefined;

  put(spec: BackendSpec, health: BackendHealth = 'up'): Backend {
    const backend = resolveBackend(spec);
    this.#entries.set(backend.id, { backend, health });
    this.emit('backendAdded', backend);
    return backend;
  }

  drop(id: string): void {
    const entry = this.#entries.get(id)!;
    this.#entries.delete(id);
    this.emit('backendRemoved', entry.backend);
  }

  set(id: string, health: BackendHealth): void {
    this.#entries.get(id)!.health = health;
  }

  backends(): Backend[] {
    return Array.from(this.#entries.values(), (e) => e.backend);
  }

  status(id: string): ProbeTargetStatus | undefined {
    const e = this.#entries.get(id);
    return e && { health: e.health };
  }

  markDown(id: string, reason: string, cause?: HealthCause): number {
    this.calls.push(`markDown ${id} ${reason}`);
    this.causes.push(cause);
    this.set(id, 'down');
    this.onMarkDown?.(id);
    return 0;
  }

  markUp(id: string, reason: string, cause?: HealthCause): void {
    this.calls.push(`markUp ${id} ${reason}`);
    this.causes.push(cause);
    this.set(id, 'up');
  }
}

// ---------------------------------------------------------------- options

test('options: defaults, and timeout follows a small interval', () => {
  const d = resolveProbeOptions();
  assert.equal(d.interval, 2000);
  assert.equal(d.timeout, 1000);
  assert.equal(d.jitter, 0.1);
  assert.equal(d.rise, 2);
  assert.equal(d.fall, 3);
  assert.equal(d.downInterval, 2000);
  assert.equal(d.fastInterval, 2000);
  assert.equal(d.concurrency, 64);
  assert.equal(d.countConnectFailures, true, 'passive health is on by default');
  assert.equal(d.autoStart, true);
  assert.equal(typeof d.check, 'function');
  assert.equal(resolveProbeOptions({ interval: 500 }).timeout, 500);
  assert.equal(resolveProbeOptions({ interval: 500 }).downInterval, 500);
  // 0 stays expressible where it means something.
  assert.equal(resolveProbeOptions({ jitter: 0 }).jitter, 0);
});

test('options: invalid values throw INVALID_ARGUMENT naming the option', () => {
  const cases: [unknown, RegExp][] = [
    [{ interval: 0 }, /`interval`/],
    [{ interval: 1.5 }, /`interval`/],
    [{ interval: 2 ** 31 }, /`interval`/],
    [{ timeout: 0 }, /`timeout`/],
    [{ interval: 1000, timeout: 1001 }, /`timeout` to be an integer from 1 to `interval` \(1000\)/],
    [{ jitter: -0.1 }, /`jitter`/],
    [{ jitter: 1.5 }, /`jitter`/],
    [{ jitter: Number.NaN }, /`jitter`/],
    [{ rise: 0 }, /`rise`/],
    [{ fall: '3' }, /`fall`/],
    [{ downInterval: -1 }, /`downInterval`/],
    [{ fastInterval: 0 }, /`fastInterval`/],
    [{ concurrency: 0 }, /`concurrency`/],
    [{ countConnectFailures: 'yes' }, /`countConnectFailures`/],
    [{ autoStart: 1 }, /`autoStart`/],
    [{ clock: {} }, /`clock`/],
    [{ random: 0.5 }, /`random`/],
    [{ check: { type: 'udp' } }, /`check\.type`/],
    [{ check: { type: 'http', path: 'x' } }, /`check\.path`/],
    [{ intervall: 1000 }, /`intervall`/],
    ['fast', /`options`/],
  ];
  for (const [options, message] of cases) {
    assert.throws(
      () => new HealthProbe(options as HealthProbeOptions),
      (err: unknown) => {
        assert.equal((err as { code?: unknown }).code, 'INVALID_ARGUMENT', JSON.stringify(options));
        assert.match((err as Error).message, message);
        return true;
      },
      JSON.stringify(options),
    );
  }
});

// ---------------------------------------------------------------- scheduling (fake clock, no sockets)

test('scheduling: interval while up, fastInterval while changing, downInterval while down', async (t) => {
  const clock = new FakeClock();
  const { check, state } = switchable();
  const probe = probeWith(t, {
    clock,
    check,
    interval: 1000,
    fastInterval: 200,
    downInterval: 5000,
    timeout: 100,
    rise: 2,
    fall: 3,
    jitter: 0.1,
    // The midpoint: jitter spreads nothing, so delays are exact.
    random: () => 0.5,
  });
  const events: string[] = [];
  probe.on('healthy', (b) => events.push(`healthy ${b.id}`));
  probe.on('unhealthy', (b) => events.push(`unhealthy ${b.id}`));
  probe.add({ host: '127.0.0.1', port: 1, id: 'a' });
  // First check spread over [0, interval × jitter]: 0.5 × 100.
  assert.deepEqual(clock.delays(), [50]);

  async function step(ms: number, healthy: boolean): Promise<CheckResult> {
    state.healthy = healthy;
    const checked = nextEvent(probe, 'checked');
    clock.advance(ms);
    const [result] = await checked;
    return result;
  }

  assert.equal((await step(50, true)).ok, true);
  assert.deepEqual(events, ['healthy a'], 'unknown: the first result decides');
  assert.deepEqual(clock.delays(), [1000]);

  assert.equal((await step(1000, false)).ok, false);
  assert.deepEqual(clock.delays(), [200], 'a failure while up: fastInterval');
  await step(200, false);
  assert.deepEqual(clock.delays(), [200]);
  await step(200, false);
  assert.deepEqual(events, ['healthy a', 'unhealthy a']);
  assert.deepEqual(clock.delays(), [5000], 'down: downInterval');
  await step(5000, false);
  assert.deepEqual(clock.delays(), [5000]);

  await step(5000, true);
  assert.deepEqual(clock.delays(), [200], 'a success while down: fastInterval');
  await step(200, true);
  assert.deepEqual(events, ['healthy a', 'unhealthy a', 'healthy a']);
  assert.deepEqual(clock.delays(), [1000]);
  assert.equal(state.calls, 7);
});

test('scheduling: jitter spreads each delay within ±jitter, and first checks over [0, interval × jitter]', async (t) => {
  const clock = new FakeClock();
  const randoms = [0, 0.5, 0.999];
  let next = 0;
  const t0 = clock.now();
  // `port@ms`: when each check started, from t0.
  const started: string[] = [];
  const probe = probeWith(t, {
    clock,
    check: (backend) => {
      started.push(`${backend.port}@${clock.now() - t0}`);
      return Promise.resolve();
    },
    interval: 1000,
    jitter: 0.2,
    random: () => randoms[next++ % randoms.length]!,
  });
  probe.add({ host: '127.0.0.1', port: 1 });
  probe.add({ host: '127.0.0.1', port: 2 });
  probe.add({ host: '127.0.0.1', port: 3 });
  await runFor(clock, 200);
  assert.deepEqual(started, ['1@0', '2@100', '3@200']);
  started.length = 0;
  await probe.checkNow();
  assert.deepEqual(started, ['1@200', '2@200', '3@200']);
  started.length = 0;
  // Each result rescheduled with the next random value: 1000 × (1 ± 0.2).
  await runFor(clock, 1200);
  assert.deepEqual(started, ['1@1000', '2@1200', '3@1400']);
});

void test('scheduling: checks due within a tenth of the jitter run in one wake-up, started early', async (t) => {
  const clock = new FakeClock();
  const randoms = [0, 0.05, 0.08, 0.5];
  let next = 0;
  const t0 = clock.now();
  const started: string[] = [];
  const probe = probeWith(t, {
    clock,
    check: (backend) => {
      started.push(`${backend.port}@${clock.now() - t0}`);
      return Promise.resolve();
    },
    interval: 1000,
    jitter: 0.1,
    // Then the midpoint: the next checks are a whole interval away.
    random: () => randoms[next++] ?? 0.5,
  });
  // First checks due at 0, 5, 8 and 50 ms; a tenth of the jitter is 10 ms.
  for (let port = 1; port <= 4; port++) probe.add({ host: '127.0.0.1', port });
  await runFor(clock, 100);
  assert.deepEqual(started, ['1@0', '2@0', '3@0', '4@50']);
});

test('scheduling: jitter 0 probes at exact intervals', async (t) => {
  const clock = new FakeClock();
  const probe = probeWith(t, { clock, check: () => Promise.resolve(), interval: 700, jitter: 0 });
  probe.add({ host: '127.0.0.1', port: 1 });
  assert.deepEqual(clock.delays(), [0]);
  const checked = nextEvent(probe, 'checked');
  clock.advance(0);
  await checked;
  assert.deepEqual(clock.delays(), [700]);
});

test('scheduling: autoStart false schedules nothing until start(); checkNow still works', async (t) => {
  const clock = new FakeClock();
  const checked: string[] = [];
  const probe = probeWith(t, {
    clock,
    check: (backend) => {
      checked.push(backend.id);
      return Promise.resolve();
    },
    autoStart: false,
    random: () => 0,
  });
  probe.add({ host: '127.0.0.1', port: 1, id: 'a' });
  probe.add({ host: '127.0.0.1', port: 2, id: 'b' });
  assert.equal(clock.pending, 0);
  assert.equal((await probe.checkNow('a')).ok, true);
  assert.equal(clock.pending, 0, 'a result does not start the schedule');
  assert.equal(probe.isHealthy('a'), true);
  probe.start();
  probe.start();
  // Both scheduled once (random 0: first checks at once, the next ones interval × 0.9 later).
  await runFor(clock, 0);
  assert.deepEqual(checked, ['a', 'a', 'b']);
  await runFor(clock, 1799);
  assert.deepEqual(checked, ['a', 'a', 'b']);
  await runFor(clock, 1);
  assert.deepEqual(checked, ['a', 'a', 'b', 'a', 'b']);
});

// ---------------------------------------------------------------- timeout

test('timeout: a check that never settles fails with PROBE_TIMEOUT exactly at `timeout`', async (t) => {
  const clock = new FakeClock();
  let aborted: unknown;
  const probe = probeWith(t, {
    clock,
    timeout: 300,
    autoStart: false,
    check: (_b, { signal }) =>
      new Promise<void>(() => {
        signal.addEventListener('abort', () => {
          aborted = signal.reason as unknown;
        });
      }),
  });
  probe.add({ host: '127.0.0.1', port: 1, id: 'a' });
  let settled = false;
  const running = probe.checkNow('a').finally(() => (settled = true));
  clock.advance(299);
  await turns();
  assert.equal(settled, false);
  clock.advance(1);
  const result = await running;
  assert.equal(result.ok, false);
  assert.ok(result.error instanceof CheckError);
  assert.equal(result.error.layer, 'timeout');
  assert.equal(result.error.code, 'PROBE_TIMEOUT');
  assert.equal(result.durationMs, 300);
  assert.equal(aborted, result.error, 'the check is aborted with the same error');
});

test('timeout: a TCP server that never answers an HTTP check fails with PROBE_TIMEOUT at `timeout`', async (t) => {
  const clock = new FakeClock();
  const requested = deferred();
  const closed = deferred();
  const port = await listen(
    t,
    createNetServer((s) => {
      s.once('data', () => requested.resolve());
      s.once('close', () => closed.resolve());
    }),
  );
  const probe = probeWith(t, { clock, timeout: 1000, autoStart: false, check: { type: 'http' } });
  probe.add({ host: '127.0.0.1', port, id: 'silent' });
  let settled = false;
  const running = probe.checkNow('silent').finally(() => (settled = true));
  await requested.promise;
  clock.advance(999);
  await turns();
  assert.equal(settled, false);
  clock.advance(1);
  const result = await running;
  assert.equal(result.error?.code, 'PROBE_TIMEOUT');
  assert.equal(result.error.layer, 'timeout');
  assert.equal(result.durationMs, 1000);
  // The check's socket was destroyed: the server sees it close.
  await closed.promise;
});

void test('timeout: time the process itself was stalled does not count against a check', async (t) => {
  const clock = new FakeClock();
  const TIMEOUT = 300;
  let answer: (() => void) | undefined;
  const probe = probeWith(t, {
    clock,
    timeout: TIMEOUT,
    autoStart: false,
    check: (_b, { signal }) =>
      new Promise<void>((resolve, reject) => {
        answer = resolve;
        signal.addEventListener('abort', () => reject(signal.reason as Error));
      }),
  });
  probe.add({ host: '127.0.0.1', port: 1, id: 'a' });

  // Stalled 1000 ms (3.3 × timeout) 10 ms into a check; the answer comes 50 ms after.
  let running = probe.checkNow('a');
  await turns();
  clock.advance(10);
  clock.stall(1000);
  clock.advance(0);
  await turns();
  clock.advance(50);
  answer!();
  let result = await running;
  assert.equal(result.ok, true, result.error?.message);
  assert.equal(result.durationMs, 1060);

  // A check that never answers still times out, `timeout` of running time
  // after its start: the stall is given back, to within the probe's sampling
  // of it (a tenth of the timeout) and the 10 ms of jitter it ignores.
  let settled = false;
  running = probe.checkNow('a').finally(() => (settled = true));
  await turns();
  clock.advance(10);
  clock.stall(1000);
  clock.advance(0);
  await turns();
  clock.advance(TIMEOUT - 10 - TIMEOUT / 10 - 10);
  await turns();
  assert.equal(settled, false, 'still running at 1010 + 250 ms');
  clock.advance(TIMEOUT / 10 + 10);
  result = await running;
  assert.equal(result.error?.code, 'PROBE_TIMEOUT');
  assert.ok(result.durationMs > 1260 && result.durationMs <= 1300, String(result.durationMs));
  assert.match(result.error.message, /not counting \d+ ms this process was stalled/);

  // A stall while no check runs is nobody's: the next check gets `timeout`, exactly.
  clock.stall(5000);
  clock.advance(0);
  running = probe.checkNow('a');
  await turns();
  clock.advance(TIMEOUT);
  result = await running;
  assert.equal(result.error?.code, 'PROBE_TIMEOUT');
  assert.equal(result.durationMs, TIMEOUT);
  assert.doesNotMatch(result.error.message, /stalled/);
});

// ---------------------------------------------------------------- rise/fall through a real server

test('rise/fall: an HTTP backend toggled unhealthy and back goes down after `fall` and up after `rise`', async (t) => {
  let status = 200;
  const port = await listen(
    t,
    createHttpServer((_req, res) => {
      res.statusCode = status;
      res.end();
    }),
  );
  const clock = new FakeClock();
  const probe = probeWith(t, { clock, check: { type: 'http', path: '/readyz' }, interval: 1000, jitter: 0, rise: 2, fall: 3 });
  const events: string[] = [];
  probe.on('checked', (r) => events.push(r.ok ? 'pass' : `fail:${r.error?.layer}`));
  probe.on('healthy', () => events.push('HEALTHY'));
  probe.on('unhealthy', (_b, r) => events.push(`UNHEALTHY:${r.error?.code}`));
  probe.add({ host: '127.0.0.1', port, id: 'api' });

  async function tick(): Promise<void> {
    const checked = nextEvent(probe, 'checked');
    clock.next();
    await checked;
  }

  await tick();
  assert.equal(probe.isHealthy('api'), true);
  status = 503;
  await tick();
  await tick();
  assert.equal(probe.isHealthy('api'), true, 'two failures of three');
  await tick();
  assert.equal(probe.isHealthy('api'), false);
  status = 200;
  await tick();
  assert.equal(probe.isHealthy('api'), false, 'one success of two');
  await tick();
  assert.equal(probe.isHealthy('api'), true);
  assert.deepEqual(events, [
    'pass',
    'HEALTHY',
    'fail:protocol',
    'fail:protocol',
    'fail:protocol',
    'UNHEALTHY:PROBE_BAD_RESPONSE',
    'pass',
    'pass',
    'HEALTHY',
  ]);
  assert.equal(probe.health('api')?.consecutiveSuccesses, 2);
});

test('rise/fall: a refused port fails at layer connect', async (t) => {
  const server = createNetServer();
  const port = await new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
  await new Promise<void>((resolve) => server.close(() => resolve()));
  const probe = probeWith(t, { clock: new FakeClock(), autoStart: false });
  probe.add({ host: '127.0.0.1', port, id: 'gone' });
  const result = await probe.checkNow('gone');
  assert.equal(result.error?.code, 'PROBE_CONNECT_FAILED');
  assert.equal(result.passive, false);
});

// ---------------------------------------------------------------- one in flight, concurrency

test('never two checks of one backend in flight: checkNow and the timer join the running check', async (t) => {
  const clock = new FakeClock();
  const gate = deferred();
  let calls = 0;
  let active = 0;
  let maxActive = 0;
  const probe = probeWith(t, {
    clock,
    interval: 100,
    timeout: 100,
    random: () => 0,
    check: async () => {
      calls++;
      maxActive = Math.max(maxActive, ++active);
      await gate.promise;
      active--;
    },
  });
  probe.add({ host: '127.0.0.1', port: 1, id: 'slow' });
  const first = probe.checkNow('slow');
  const second = probe.checkNow('slow');
  const all = probe.checkNow();
  assert.equal(probe.health('slow')?.checking, true);
  assert.equal(clock.pending, 1, 'only the timeout timer: the scheduled check was replaced by this one');
  await turns();
  assert.equal(calls, 1);
  gate.resolve();
  const [a, b, [c]] = await Promise.all([first, second, all]);
  assert.equal(a, b);
  assert.equal(a, c);
  assert.equal(calls, 1);
  assert.equal(maxActive, 1);
  // The only timer left is the next check, interval × 0.9 after this one
  // started: the scheduled check it replaced (due at 0) is gone.
  assert.deepEqual(clock.delays(), [90]);
});

test('concurrency bounds the checks running at once across backends', async (t) => {
  const gate = deferred();
  let active = 0;
  let maxActive = 0;
  const probe = probeWith(t, {
    clock: new FakeClock(),
    autoStart: false,
    concurrency: 2,
    check: async () => {
      maxActive = Math.max(maxActive, ++active);
      await gate.promise;
      active--;
    },
  });
  for (let port = 1; port <= 7; port++) probe.add({ host: '127.0.0.1', port });
  const all = probe.checkNow();
  await turns();
  assert.equal(active, 2);
  gate.resolve();
  const results = await all;
  assert.equal(results.length, 7);
  assert.ok(results.every((r) => r.ok));
  assert.equal(maxActive, 2);
});

test('a check queued behind the concurrency bound starts its timeout when it starts', async (t) => {
  const clock = new FakeClock();
  const gate = deferred();
  const probe = probeWith(t, {
    clock,
    autoStart: false,
    concurrency: 1,
    timeout: 100,
    check: (backend) => (backend.id === 'first' ? gate.promise : Promise.resolve()),
  });
  probe.add({ host: '127.0.0.1', port: 1, id: 'first' });
  probe.add({ host: '127.0.0.1', port: 2, id: 'second' });
  const first = probe.checkNow('first');
  const second = probe.checkNow('second');
  clock.advance(90);
  gate.resolve();
  assert.equal((await first).ok, true);
  // `second` waited 90 ms in the queue; it is not charged for them.
  clock.advance(50);
  const result = await second;
  assert.equal(result.ok, true);
});

// ---------------------------------------------------------------- add/remove/errors

test('add, remove, isHealthy and checkNow report unknown and duplicate ids by code', async (t) => {
  const probe = probeWith(t, { clock: new FakeClock(), autoStart: false, check: () => Promise.resolve() });
  const backend = probe.add({ host: '127.0.0.1', port: 6443 });
  assert.equal(backend.id, '127.0.0.1:6443');
  assert.throws(() => probe.add({ host: '127.0.0.1', port: 6443 }), assertCode('DUPLICATE_BACKEND'));
  assert.throws(() => probe.add({ host: '', port: 1 }), assertCode('INVALID_ARGUMENT'));
  assert.throws(() => probe.isHealthy('nope'), assertCode('UNKNOWN_BACKEND'));
  await assert.rejects(probe.checkNow('nope'), assertCode('UNKNOWN_BACKEND'));
  assert.equal(probe.isHealthy(backend.id), false, 'unknown until checked');
  assert.equal(probe.health(backend.id)?.verdict, 'unknown');
  assert.equal(probe.remove(backend.id), true);
  assert.equal(probe.remove(backend.id), false);
  assert.equal(probe.health(backend.id), undefined);
});

test('remove() during a check aborts it: checkNow rejects UNKNOWN_BACKEND and no result is emitted', async (t) => {
  let aborted = false;
  const probe = probeWith(t, {
    clock: new FakeClock(),
    autoStart: false,
    check: (_b, { signal }) =>
      new Promise<void>((_resolve, reject) => {
        signal.addEventListener('abort', () => {
          aborted = true;
          reject(new Error('aborted'));
        });
      }),
  });
  let checked = 0;
  probe.on('checked', () => checked++);
  probe.add({ host: '127.0.0.1', port: 1, id: 'a' });
  const running = probe.checkNow('a');
  probe.remove('a');
  await assert.rejects(running, assertCode('UNKNOWN_BACKEND'));
  assert.equal(aborted, true);
  assert.equal(checked, 0);
});

test('a custom check failure is a result at layer custom, not a rejection', async (t) => {
  const probe = probeWith(t, { clock: new FakeClock(), autoStart: false, check: () => Promise.reject(new Error('etcd unhealthy')) });
  probe.add({ host: '127.0.0.1', port: 1, id: 'a' });
  const result = await probe.checkNow('a');
  assert.equal(result.ok, false);
  assert.equal(result.error?.layer, 'custom');
  assert.equal(result.error.code, 'PROBE_CHECK_FAILED');
  assert.match(result.error.message, /etcd unhealthy/);
});

// ---------------------------------------------------------------- attach

test('attach: initial verdicts follow the pool state', (t) => {
  const pool = new FakePool();
  pool.put({ host: '127.0.0.1', port: 1, id: 'up' }, 'up');
  pool.put({ host: '127.0.0.1', port: 2, id: 'awaiting' }, 'unknown');
  pool.put({ host: '127.0.0.1', port: 3, id: 'down' }, 'down');
  const probe = probeWith(t, { clock: new FakeClock(), check: () => Promise.resolve() });
  probe.attach(pool);
  const verdicts = Object.fromEntries(pool.backends().map((b) => [b.id, probe.health(b.id)?.verdict]));
  assert.deepEqual(verdicts, { up: 'up', awaiting: 'unknown', down: 'down' });
  assert.throws(() => probe.attach(pool), assertCode('INVALID_ARGUMENT'));
});

test('attach: markDown is called synchronously with the verdict, before `checked` and `unhealthy`', async (t) => {
  const pool = new FakePool();
  pool.put({ host: '127.0.0.1', port: 1, id: 'a' }, 'up');
  const { check, state } = switchable();
  const probe = probeWith(t, { clock: new FakeClock(), check, fall: 2, autoStart: false });
  probe.attach(pool);

  let verdictAtMarkDown: string | undefined;
  let lastResultAtMarkDown: CheckResult | undefined;
  let microtaskRan: boolean | undefined;
  pool.onMarkDown = (id) => {
    verdictAtMarkDown = probe.health(id)?.verdict;
    lastResultAtMarkDown = probe.health(id)?.lastResult;
    microtaskRan = false;
    queueMicrotask(() => (microtaskRan = true));
  };
  const seen: string[] = [];
  probe.on('checked', (r) => seen.push(`checked ok=${r.ok} markDowns=${pool.calls.length} microtaskRan=${microtaskRan}`));
  probe.on('unhealthy', (b) => seen.push(`unhealthy ${b.id} markDowns=${pool.calls.length} microtaskRan=${microtaskRan}`));

  state.healthy = false;
  await probe.checkNow('a');
  assert.deepEqual(pool.calls, [], 'one failure of two');
  const result = await probe.checkNow('a');
  assert.deepEqual(pool.calls, ['markDown a probe-failed']);
  // The verdict had flipped, on this very result, when the pool was told...
  assert.equal(verdictAtMarkDown, 'down');
  assert.equal(lastResultAtMarkDown, result);
  // ...and no microtask ran between the pool call and the events: same tick.
  assert.deepEqual(seen, [
    'checked ok=false markDowns=0 microtaskRan=undefined',
    'checked ok=false markDowns=1 microtaskRan=false',
    'unhealthy a markDowns=1 microtaskRan=false',
  ]);
});

test('attach: only health verdicts are reported, with their cause as data; admin states are not the probe\'s business', async (t) => {
  const pool = new FakePool();
  pool.put({ host: '127.0.0.1', port: 1, id: 'awaiting' }, 'unknown');
  pool.put({ host: '127.0.0.1', port: 4, id: 'down' }, 'down');
  pool.put({ host: '127.0.0.1', port: 5, id: 'up' }, 'up');
  const { check, state } = switchable();
  const probe = probeWith(t, { clock: new FakeClock(), check, rise: 2, fall: 2, autoStart: false });
  probe.attach(pool);

  // unknown: the first pass decides, and the pool is told.
  await probe.checkNow('awaiting');
  assert.deepEqual(pool.calls, ['markUp awaiting probe-passed']);
  assert.equal(pool.causes[0]?.source, 'probe');
  assert.equal(pool.causes[0]?.code, 'probe-passed');
  pool.calls.length = 0;
  pool.causes.length = 0;

  // up: fall failures report down, with the failing check's code and layer.
  state.healthy = false;
  await probe.checkNow('up');
  assert.deepEqual(pool.calls, []);
  await probe.checkNow('up');
  assert.deepEqual(pool.calls, ['markDown up probe-failed']);
  const cause = pool.causes[0];
  assert.equal(cause.source, 'probe');
  assert.equal(cause.code, 'PROBE_CHECK_FAILED');
  assert.equal(cause.layer, 'custom');
  assert.equal(typeof cause.durationMs, 'number');
  assert.deepEqual(JSON.parse(JSON.stringify(cause)), cause, 'the cause is plain JSON-safe data');
  pool.calls.length = 0;

  // down: a down verdict is not repeated; rise brings it up.
  await probe.checkNow('down');
  assert.deepEqual(pool.calls, []);
  state.healthy = true;
  await probe.checkNow('down');
  await probe.checkNow('down');
  assert.deepEqual(pool.calls, ['markUp down probe-passed']);
});

test('attach: a backend marked up behind a down verdict is marked down again on the next failure', async (t) => {
  const pool = new FakePool();
  pool.put({ host: '127.0.0.1', port: 1, id: 'a' }, 'up');
  const { check, state } = switchable();
  const probe = probeWith(t, { clock: new FakeClock(), check, fall: 1, autoStart: false });
  probe.attach(pool);
  state.healthy = false;
  await probe.checkNow('a');
  assert.deepEqual(pool.calls, ['markDown a probe-failed']);
  await probe.checkNow('a');
  assert.equal(pool.calls.length, 1, 'already down: not marked again');
  pool.set('a', 'up');
  await probe.checkNow('a');
  assert.deepEqual(pool.calls, ['markDown a probe-failed', 'markDown a probe-failed']);
});

test('attach: follows backendAdded and backendRemoved; detach unsubscribes and forgets pool backends', async (t) => {
  const clock = new FakeClock();
  const pool = new FakePool();
  const checked: string[] = [];
  const probe = probeWith(t, {
    clock,
    check: (backend) => {
      checked.push(backend.id);
      return Promise.resolve();
    },
    random: () => 0,
  });
  probe.add({ host: '127.0.0.1', port: 9, id: 'mine' });
  probe.attach(pool);
  pool.put({ host: '127.0.0.1', port: 1, id: 'a' }, 'unknown');
  assert.equal(probe.health('a')?.verdict, 'unknown');
  // Both scheduled (random 0: first checks at once).
  await runFor(clock, 0);
  assert.deepEqual(checked, ['mine', 'a']);
  assert.deepEqual(pool.calls, ['markUp a probe-passed']);
  pool.drop('a');
  assert.equal(probe.health('a'), undefined);
  // Its schedule went with it: only 'mine' is checked (every interval × 0.9).
  checked.length = 0;
  await runFor(clock, 4000);
  assert.deepEqual(checked, ['mine', 'mine']);
  pool.put({ host: '127.0.0.1', port: 2, id: 'b' });
  assert.ok(probe.health('b'));
  probe.detach();
  assert.equal(probe.health('b'), undefined);
  assert.ok(probe.health('mine'), 'backends added by hand stay');
  for (const event of ['backendAdded', 'backendRemoved', 'connectFailed', 'writeStalled'] as const) assert.equal(pool.listenerCount(event), 0);
  pool.put({ host: '127.0.0.1', port: 3, id: 'c' });
  assert.equal(probe.health('c'), undefined);
});

test('attach: with countConnectFailures, failed dials count as failed checks', async (t) => {
  const clock = new FakeClock();
  const pool = new FakePool();
  const a = pool.put({ host: '127.0.0.1', port: 1, id: 'a' }, 'up');
  const probe = probeWith(t, {
    clock,
    check: () => Promise.resolve(),
    countConnectFailures: true,
    fall: 2,
    interval: 1000,
    fastInterval: 100,
    jitter: 0,
  });
  probe.attach(pool);
  await probe.checkNow('a');
  assert.deepEqual(clock.delays(), [1000]);
  const results: CheckResult[] = [];
  probe.on('checked', (r) => results.push(r));
  pool.emit('connectFailed', a, new ConnectError('a', { cause: Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }) }));
  assert.equal(results[0]?.passive, true);
  assert.equal(results[0]?.error?.layer, 'connect');
  assert.deepEqual(clock.delays(), [100], 'the next active check is brought forward to fastInterval');
  assert.deepEqual(pool.calls, []);
  pool.emit('connectFailed', a, new ConnectTimeoutError('a', 3000));
  assert.equal(results[1]?.error?.code, 'PROBE_TIMEOUT');
  assert.deepEqual(pool.calls, ['markDown a probe-failed'], 'synchronously, inside the pool event');
  assert.equal(probe.isHealthy('a'), false);
});

test('attach: with countConnectFailures off, failed dials are ignored', async (t) => {
  const pool = new FakePool();
  const a = pool.put({ host: '127.0.0.1', port: 1, id: 'a' }, 'up');
  const probe = probeWith(t, { clock: new FakeClock(), check: () => Promise.resolve(), fall: 1, countConnectFailures: false });
  probe.attach(pool);
  let checked = 0;
  probe.on('checked', () => checked++);
  pool.emit('connectFailed', a, new ConnectTimeoutError('a', 3000));
  await turns(1);
  assert.equal(checked, 0);
  assert.equal(probe.isHealthy('a'), true);
});

// ---------------------------------------------------------------- stop

test('stop(): aborts checks, clears timers, leaves no handle; idempotent; PROBE_CLOSED afterwards', async (t) => {
  const requested = deferred();
  const port = await listen(
    t,
    createNetServer((s) => s.once('data', () => requested.resolve())),
  );
  const before = await handlesSettledTo(ourHandles());
  const pool = new FakePool();
  const probe = new HealthProbe({ clock: refClock, interval: 60_000, timeout: 30_000, check: { type: 'http' } });
  probe.attach(pool);
  pool.put({ host: '127.0.0.1', port, id: 'silent' });
  for (let p = 1; p <= 3; p++) probe.add({ host: '127.0.0.1', port: p });
  const inFlight = probe.checkNow('silent');
  await requested.promise;
  assert.ok(ourHandles().length > before.length, 'timers and a socket are live');

  let stopped = 0;
  probe.on('stopped', () => stopped++);
  const first = probe.stop();
  assert.equal(probe.stop(), first);
  await assert.rejects(inFlight, assertCode('PROBE_CLOSED'));
  await first;
  await probe[Symbol.asyncDispose]();
  assert.equal(stopped, 1);
  assert.deepEqual(await handlesSettledTo(before), before);
  assert.equal(pool.listenerCount('backendAdded'), 0);

  assert.throws(() => probe.add({ host: '127.0.0.1', port: 4 }), assertCode('PROBE_CLOSED'));
  assert.throws(() => probe.start(), assertCode('PROBE_CLOSED'));
  assert.throws(() => probe.attach(new FakePool()), assertCode('PROBE_CLOSED'));
  await assert.rejects(probe.checkNow('silent'), assertCode('PROBE_CLOSED'));
  await assert.rejects(probe.checkNow(), assertCode('PROBE_CLOSED'));
});

test('stop(): checks still queued behind the concurrency bound reject PROBE_CLOSED and never start', async () => {
  let started = 0;
  const probe = new HealthProbe({
    clock: new FakeClock(),
    autoStart: false,
    concurrency: 1,
    check: (_b, { signal }) => {
      started++;
      return new Promise<void>((_resolve, reject) => signal.addEventListener('abort', () => reject(new Error('aborted'))));
    },
  });
  probe.add({ host: '127.0.0.1', port: 1, id: 'a' });
  probe.add({ host: '127.0.0.1', port: 2, id: 'b' });
  const a = probe.checkNow('a');
  const b = probe.checkNow('b');
  await probe.stop();
  await assert.rejects(a, assertCode('PROBE_CLOSED'));
  await assert.rejects(b, assertCode('PROBE_CLOSED'));
  await turns();
  assert.equal(started, 1);
});

test('await using stops the probe at the end of the scope', async () => {
  const clock = new FakeClock();
  let stopped = false;
  {
    await using probe = new HealthProbe({ clock, check: () => Promise.resolve() });
    probe.on('stopped', () => (stopped = true));
    probe.add({ host: '127.0.0.1', port: 1 });
    assert.equal(clock.pending, 1);
  }
  assert.equal(stopped, true);
  assert.equal(clock.pending, 0);
});

test('scheduling: first checks start at least 1 ms apart, so many backends do not start in one burst; past an interval the spacing starts over', async (t) => {
  const clock = new FakeClock();
  const t0 = clock.now();
  const started: number[] = [];
  const probe = probeWith(t, {
    clock,
    check: () => {
      started.push(clock.now() - t0);
      return Promise.resolve();
    },
    interval: 10,
    // Every first check would fall due at once.
    jitter: 0,
  });
  for (let port = 1; port <= 14; port++) probe.add({ host: '127.0.0.1', port });
  await runFor(clock, 9);
  // Ten first checks 1 ms apart fill the interval; the eleventh starts over at 0.
  assert.deepEqual(started, [0, 0, 1, 1, 2, 2, 3, 3, 4, 5, 6, 7, 8, 9]);
});
