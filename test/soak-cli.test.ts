/**
 * Soak of the real CLI: the built `dist/apiserver-balancer.js` in its own
 * process, with real flags, in front of three echo backends each behind a
 * fault proxy (examples/support/fault-proxy.ts), under checksummed traffic
 * while everything an operator and a network can do happens at random:
 * backends cut silently and healed, reset, flapped (cut and healed several
 * times), drained and made ready, put in maintenance, re-weighted through the
 * admin API, and the config file rewritten and reloaded by SIGHUP.
 *
 * Traffic: long-lived streams (random chunks, every echoed byte compared with
 * what was sent; a stream closed by the balancer is replaced) and short
 * connections (a payload, a FIN, the echo read to the end).
 *
 * What must hold:
 * - 0 byte mismatches: what comes back is always a prefix of what was sent,
 *   and all of it unless the balancer closed the connection;
 * - 0 streams stuck: no connection waits for its echo longer than the
 *   detection bound (a cut is seen within fall × interval + timeout, 550 ms;
 *   the bound allows 10 s on a loaded machine) without being closed; every
 *   cut lasts until the balancer has seen it, within that bound (a cut healed
 *   unseen strands its streams by construction, see cutSeen);
 * - at the end, idle: the balancer's open descriptors (from /proc/PID/fd)
 *   back to their idle count before the traffic (+4 for checks in flight),
 *   its RSS (/proc/PID/status) within 32 MiB (48 with SOAK=1) of what it was
 *   halfway through the traffic (after 30 s with SOAK=1) and 10,000
 *   connections in, once the heap had grown to its working size; SIGTERM
 *   exits 0 with nothing on stderr.
 *
 * About 75 s in CI; `SOAK=1` runs 10 minutes (`SOAK_CLI_SECONDS=<n>` any
 * length). Needs the build (`npm test` builds it first; else `npm run build`).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { FaultProxy } from '../examples/support/fault-proxy.js';
import { TOKEN, api, tempDir } from './helpers/admin.js';
import { EchoStream } from './helpers/echo-stream.js';
import { Prng, figure, seedFromEnv } from './helpers/faults.js';
import { startCli, cliDist } from './helpers/cli.js';
import { HOST, listen, waitFor } from './helpers/net.js';

const LONG = process.env['SOAK'] === '1';
const SECONDS = Number(process.env['SOAK_CLI_SECONDS'] ?? (LONG ? 600 : 60));
const STREAMS = 12;
const SHORT_LOOPS = 6;
/** Longest a connection may wait for its echo without being closed. */
const STUCK_BOUND_MS = 10_000;
/** Traffic before the memory baseline is taken. */
// The heap's working size: reached after about 10 s of this traffic on Node
// 20, but on Node 26 RSS still climbed for 20-30 s (warm-up 117 and 143 MiB
// in two runs, both settling near 165 MiB idle at the end). So the reference
// is taken halfway through (30 s in CI), when it has settled; a leak of a
// kilobyte per connection still adds about 30 MiB over the second half.
const WARMUP_MS = LONG ? 30_000 : Math.max(10_000, (SECONDS * 1000) / 2);
// And the heap's working size comes with traffic, not time: at six busy loops
// beside the suite, 8,000 connections passed in the whole minute and RSS went
// from 116 MiB at halfway to 149 MiB at the end (a quiet run: 150-155 MiB at
// halfway, 160-172 at the end, after 30,000-100,000 connections). So the
// reference also waits for this many connections; a run too starved to reach
// it compares no RSS, and says so.
const WARMUP_CONNECTIONS = 10_000;
const INTERVAL = 200;
const NAMES = ['a', 'b', 'c'] as const;
type Name = (typeof NAMES)[number];

/**
 * An echo backend that also answers the balancer's HTTP check: a connection
 * whose first byte is `G` gets `200 ok` and is closed; any other is echoed
 * (client traffic never starts with `G`, see EchoStream).
 */
async function backend(t: TestContext): Promise<number> {
  const { port } = await listen(t, (s) => {
    let piped = false;
    s.once('data', (first: Buffer) => {
      if (first[0] === 0x47) {
        s.end('HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n');
        return;
      }
      piped = true;
      s.write(first);
      s.pipe(s);
    });
    s.once('end', () => {
      if (!piped) s.end();
    });
  });
  return port;
}

/** The balancer process's open descriptors and resident memory. */
function usage(pid: number): { fds: number; rssKiB: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rss = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  return { fds: readdirSync(`/proc/${pid}/fd`).length, rssKiB: rss === null ? 0 : Number(rss[1]) };
}

/**
 * For each stuck stream: its access-log line (backend, bytes, duration, how it
 * ended; written when the stream was closed at the end) and the balancer's log
 * lines from 12 s before it was seen, so a failure says what happened.
 */
function stuckDiagnosis(reports: readonly { client: string; at: string; waitedMs: number; sent: number; received: number }[], accessLogFile: string, lines: readonly string[]): string {
  const access = existsSync(accessLogFile) ? readFileSync(accessLogFile, 'utf8').split('\n') : [];
  const first = Math.min(...reports.map((r) => Date.parse(r.at))) - 12_000;
  const logWindow = lines.filter((l) => {
    const t = Date.parse(l.slice(0, 24));
    return Number.isNaN(t) || t >= first;
  });
  return [
    ...reports.map((r) => `stuck ${JSON.stringify(r)}; access log: ${access.find((l) => l.includes(`"${r.client}"`)) ?? 'no line'}`),
    'balancer log from 12 s before the first:',
    ...logWindow.slice(-200),
  ].join('\n');
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('soak of the CLI: checksummed streams and short connections through cuts, resets, flaps, drains, maintenance, re-weighting and SIGHUP reloads', { timeout: (SECONDS + 240) * 1000 }, async (t) => {
  if (!existsSync(cliDist)) {
    t.skip('dist/apiserver-balancer.js is missing: run `npm run build` first (`npm test` does)');
    return;
  }
  if (!existsSync('/proc/self/status')) {
    t.skip('needs /proc to read the balancer process’s descriptors and memory');
    return;
  }
  const seed = seedFromEnv(0x50a4c11);
  const r = new Prng(seed);
  t.diagnostic(`seed ${seed} (replay the schedule: SEED=${seed})`);

  const proxies = {} as Record<Name, FaultProxy>;
  for (const name of NAMES) {
    const port = await backend(t);
    proxies[name] = await FaultProxy.start({ target: { host: HOST, port } });
    t.after(() => proxies[name].close());
  }
  const dir = tempDir(t);
  const file = join(dir, 'balancer.json');
  const tokenFile = join(dir, 'admin.token');
  const accessLogFile = join(dir, 'access.log');
  writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  const writeConfig = (weights: Record<Name, number>): void =>
    writeFileSync(
      file,
      JSON.stringify({
        backend: NAMES.map((name) => ({ name, address: `${HOST}:${proxies[name].port}`, weight: weights[name] })),
        check: 'http:/readyz',
        interval: INTERVAL,
        timeout: 150,
        rise: 2,
        fall: 2,
        'drain-timeout': 1000,
        'queue-timeout': 5000,
        // Read only when a stream is stuck: which backend held it and why it ended.
        'access-log': accessLogFile,
      }),
    );
  writeConfig({ a: 1, b: 1, c: 1 });

  // The check is HTTP, not tcp: a silent cut still completes TCP handshakes (the
  // fault proxy's kernel accepts), so only a check that waits for an answer sees it.
  const cli = await startCli(t, ['--config', file, '--listen', `${HOST}:0`, '--status', '0', '--admin-token-file', tokenFile], cliDist);
  const { child, lines, exited } = cli;
  const ports = { listen: cli.listen, status: cli.status };
  const pid = child.pid!;
  const backends = async (): Promise<{ active: number; backends: { id: string; health: string; admin: string }[] }> => {
    const reply = await api(ports.status, 'GET', '/api/backends');
    assert.equal(reply.status, 200, 'the balancer keeps answering');
    return reply.json as unknown as { active: number; backends: { id: string; health: string; admin: string }[] };
  };
  await waitFor(() => lines.filter((l) => / backend [abc] unknown -> up/.test(l)).length === 3, { what: 'three backends up' });
  const baseline = usage(pid);

  // ---- traffic
  let running = true;
  const live = new Set<EchoStream>();
  const totals = { streams: 0, shorts: 0, shortsIntact: 0, closedByBalancer: 0, mismatches: 0, bytes: 0, stuck: 0 };
  const stuckSeen = new Set<EchoStream>();
  /** What a stuck stream looked like when it was seen: enough to find it in the access log and the balancer's log. */
  const stuckReports: { client: string; at: string; waitedMs: number; sent: number; received: number }[] = [];
  const open = (): EchoStream => {
    const socket = net.connect({ host: HOST, port: ports.listen, allowHalfOpen: true });
    socket.on('error', () => {});
    // A FIN from the balancer (a teardown ends the client's side) ends this
    // stream: end ours too, as a watch client does at EOF. A stream at its
    // window writes nothing more, so it would otherwise sit half-open and
    // count as stuck though the balancer closed it (seen under load: torn
    // down at a verdict, 137 KiB unanswered, no write to draw the RST).
    socket.once('end', () => socket.end());
    const s = new EchoStream(socket, new Prng(r.int(1, 2 ** 31)), 128 * 1024);
    live.add(s);
    socket.once('close', () => {
      live.delete(s);
      totals.mismatches += s.mismatches;
      totals.bytes += s.received;
    });
    return s;
  };
  t.after(() => {
    running = false;
    for (const s of live) s.socket.destroy();
  });

  const longLived = async (): Promise<void> => {
    while (running) {
      const s = open();
      totals.streams++;
      while (running && !s.closed) {
        s.pump(8 * 1024);
        await sleep(10);
      }
      if (s.closed) totals.closedByBalancer++;
      else s.socket.end();
      if (!s.closed) await once(s.socket, 'close').catch(() => undefined);
    }
  };
  const shortOnes = async (): Promise<void> => {
    while (running) {
      const s = open();
      totals.shorts++;
      const payload = s.random.bytes(s.random.int(1, 8 * 1024));
      s.pump(0, payload);
      s.socket.end();
      await once(s.socket, 'close').catch(() => undefined);
      if (s.received === s.sent && s.intact) totals.shortsIntact++;
    }
  };
  const stuckWatch = setInterval(() => {
    const now = Date.now();
    for (const s of live) {
      if (!stuckSeen.has(s) && s.waited(now) > STUCK_BOUND_MS) {
        stuckSeen.add(s);
        totals.stuck++;
        stuckReports.push({ client: `${HOST}:${s.socket.localPort}`, at: new Date(now).toISOString(), waitedMs: s.waited(now), sent: s.sent, received: s.received });
      }
    }
  }, 250);
  t.after(() => clearInterval(stuckWatch));
  const traffic = [...Array.from({ length: STREAMS }, longLived), ...Array.from({ length: SHORT_LOOPS }, shortOnes)];

  // ---- faults and operations, at most two backends disturbed at once
  const busy = new Set<Name>();
  const ops: Record<string, number> = {};
  const admin = async (method: string, path: string, body: unknown = {}): Promise<void> => {
    const reply = await api(ports.status, method, path, { token: TOKEN, body });
    assert.ok(reply.status >= 200 && reply.status < 300, `${method} ${path}: ${reply.status} ${reply.text}`);
  };
  // A cut lasts its planned time and at least until the balancer has seen it
  // (the backend is no longer up). Connections open across a cut stay silent
  // after the heal (the fault proxy models a peer whose TCP state is gone), so
  // a cut healed before detection would strand its streams by construction:
  // detection takes fall × interval + timeout (550 ms) on a quiet machine, but
  // the probe extends a check by the time its process stalled, so on a loaded
  // one it takes longer. A cut not seen within the stuck bound is a failure.
  const undetected: string[] = [];
  const cutSeen = async (name: Name, plannedMs: number): Promise<void> => {
    const cutAt = Date.now();
    let seen = false;
    while (!seen && Date.now() - cutAt < STUCK_BOUND_MS) {
      await sleep(100);
      seen = (await backends()).backends.some((b) => b.id === name && b.health !== 'up');
    }
    if (!seen) undetected.push(`${name} cut at ${new Date(cutAt).toISOString()}`);
    await sleep(plannedMs - (Date.now() - cutAt));
  };
  const disturb = async (name: Name, op: string): Promise<void> => {
    busy.add(name);
    ops[op] = (ops[op] ?? 0) + 1;
    const p = proxies[name];
    try {
      switch (op) {
        case 'cut':
          p.cut();
          await cutSeen(name, r.int(1500, 3000));
          p.restore();
          break;
        case 'reset':
          p.reset();
          break;
        case 'flap':
          // Each cut long enough to be seen (see cutSeen).
          for (let i = r.int(2, 4); i > 0; i--) {
            p.cut();
            await cutSeen(name, r.int(1000, 1500));
            p.restore();
            await sleep(r.int(600, 1200));
          }
          break;
        case 'drain':
          await admin('POST', `/api/backends/${name}/drain`, { timeoutMs: r.int(200, 1500) });
          await sleep(r.int(1000, 2500));
          await admin('POST', `/api/backends/${name}/ready`);
          break;
        case 'maintenance':
          await admin('POST', `/api/backends/${name}/maintenance`);
          await sleep(r.int(500, 2000));
          await admin('POST', `/api/backends/${name}/ready`);
          break;
        case 'weight':
          await admin('PATCH', `/api/backends/${name}`, { weight: r.pick([0, 0.5, 1, 2, 4]) });
          break;
        case 'reload': {
          const n = lines.filter((l) => l.includes(' reload: ')).length;
          writeConfig({ a: r.pick([1, 2, 3]), b: r.pick([1, 2, 3]), c: r.pick([1, 2, 3]) });
          child.kill('SIGHUP');
          await waitFor(() => lines.filter((l) => l.includes(' reload: ')).length > n, { what: 'the reload line' });
          break;
        }
      }
    } finally {
      // Back to a backend that takes clients before it counts as free.
      if (op === 'cut' || op === 'flap' || op === 'reset') await sleep(800);
      busy.delete(name);
    }
  };
  const chaos = async (): Promise<void> => {
    const pending = new Set<Promise<void>>();
    while (running) {
      await sleep(r.int(300, 900));
      const free = NAMES.filter((n) => !busy.has(n));
      if (busy.size >= 2 || free.length === 0) continue;
      const op = r.pick(['cut', 'cut', 'reset', 'flap', 'drain', 'maintenance', 'weight', 'weight', 'reload']);
      const job = disturb(r.pick(free), op);
      pending.add(job);
      void job.finally(() => pending.delete(job));
    }
    await Promise.all(pending);
  };

  const started = Date.now();
  const done = Promise.all([...traffic, chaos()]);
  let peakFds = baseline.fds;
  let peakRss = baseline.rssKiB;
  // The heap grows to its working size in the first seconds of traffic and V8 keeps it: memory is compared with that.
  let warm: { fds: number; rssKiB: number } | undefined;
  while (Date.now() - started < SECONDS * 1000) {
    await sleep(1000);
    const u = usage(pid);
    if (warm === undefined && Date.now() - started >= WARMUP_MS && totals.shorts + totals.streams >= WARMUP_CONNECTIONS) warm = u;
    peakFds = Math.max(peakFds, u.fds);
    peakRss = Math.max(peakRss, u.rssKiB);
  }
  running = false;
  // The loops finish their connections (FIN, echo, close); what is left after 5 s is cut short.
  await Promise.race([done, sleep(5000)]);
  for (const s of live) s.socket.destroy();
  await done;
  clearInterval(stuckWatch);
  // Everything back in rotation, then idle.
  for (const name of NAMES) proxies[name].restore();
  await admin('POST', '/api/reload');
  for (const name of NAMES) await admin('POST', `/api/backends/${name}/ready`);
  let idle = await backends();
  for (let i = 0; i < 200 && (idle.active !== 0 || idle.backends.some((b) => b.health !== 'up')); i++) {
    await sleep(100);
    idle = await backends();
  }
  assert.equal(idle.active, 0, 'no connection left in the balancer');
  await sleep(2 * INTERVAL);
  // Sockets still closing (a check in flight, a peer's FIN not yet read) take
  // a moment on a loaded machine: wait up to 10 s for descriptors to settle.
  // A leak never does, and fails the bound below.
  let end = usage(pid);
  for (let i = 0; i < 50 && end.fds > baseline.fds + 4; i++) {
    await sleep(200);
    end = usage(pid);
  }
  const stats = (await api(ports.status, 'GET', '/stats')).json as unknown as { total: number; teardowns: Record<string, number>; pinFailures: Record<string, number> };

  const elapsed = (Date.now() - started) / 1000;
  const warmRss = (warm ?? end).rssKiB;
  const mib = (kib: number): string => `${(kib / 1024).toFixed(1)} MiB`;
  const summary =
    `${elapsed.toFixed(0)} s (seed ${seed}): ${totals.streams} long-lived streams (${totals.closedByBalancer} closed by the balancer and replaced) and ` +
    `${totals.shorts} short connections (${totals.shortsIntact} echoed whole), ${(totals.bytes / 2 ** 20).toFixed(1)} MiB checked, ` +
    `${totals.mismatches} mismatches, ${totals.stuck} stuck past ${STUCK_BOUND_MS} ms; operations ${JSON.stringify(ops)}; ` +
    `balancer: ${stats.total} connections, teardowns ${JSON.stringify(stats.teardowns)}, pin failures ${JSON.stringify(stats.pinFailures)}; ` +
    `fds ${baseline.fds} idle -> peak ${peakFds} -> ${end.fds} idle; RSS ${mib(baseline.rssKiB)} idle, ${warm === undefined ? `not compared (fewer than ${WARMUP_CONNECTIONS} connections by ${WARMUP_MS / 1000} s or later)` : `${mib(warmRss)} after warm-up`}, peak ${mib(peakRss)}, ${mib(end.rssKiB)} idle at the end`;
  figure(t, summary);

  assert.equal(totals.mismatches, 0, summary);
  assert.deepEqual(undetected, [], `cuts the balancer never saw within ${STUCK_BOUND_MS} ms: ${summary}`);
  assert.equal(totals.stuck, 0, totals.stuck === 0 ? summary : `${summary}\n${stuckDiagnosis(stuckReports, accessLogFile, lines)}`);
  assert.ok(totals.shortsIntact > 0 && totals.streams > STREAMS, summary);
  for (const op of ['cut', 'drain', 'weight']) assert.ok(SECONDS < 30 || (ops[op] ?? 0) > 0, `${op} never happened: ${summary}`);
  // Generous: a check socket or two in flight; the heap may keep what it grew to.
  assert.ok(end.fds <= baseline.fds + 4, `descriptors: ${summary}`);
  assert.ok(end.rssKiB <= warmRss + (LONG ? 48 : 32) * 1024, `RSS: ${summary}`);

  child.kill('SIGTERM');
  const [code] = await exited;
  assert.equal(code, 0, cli.stderr());
  assert.equal(cli.stderr(), '');
  t.diagnostic('exit 0 on SIGTERM, nothing on stderr');
});
