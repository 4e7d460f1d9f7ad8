/**
 * Fault: a flood of idle clients drives the built balancer toward its
 * descriptor limit. Without a cap, each client takes two descriptors (its
 * socket and the upstream's) until none is left: the checks fail with
 * EMFILE, every backend is marked down and every connection is torn down,
 * unrelated established ones included.
 *
 * The balancer runs under `prlimit --nofile=256`; its default `--max-clients`
 * comes from that limit (keeping a reserve for the checks and the status
 * listener). Established streams see 0 cut, no backend is marked down, and
 * the clients past the cap are refused at accept and counted in `/stats` and
 * `/metrics`.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { get } from 'node:http';
import net, { type Socket } from 'node:net';
import { test } from 'node:test';
import { cliDist, startCli } from '../helpers/cli.js';
import { figure } from '../helpers/faults.js';
import { HOST, listen } from '../helpers/net.js';

const havePrlimit = spawnSync('prlimit', ['--version']).status === 0;
const NOFILE = 256;
/** (256 - max(64, 5 %)) / 2: what the balancer should derive. */
const EXPECTED_CAP = 96;
const ESTABLISHED = 20;
const FLOOD = 300;
const ATTACK_MS = 3000;
/** A bound on the flood's connection attempts, reconnects included. */
const MAX_ATTEMPTS = 5000;

function getText(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = get({ host: HOST, port, path, agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', reject);
  });
}

const localLines = (metrics: string): string[] =>
  metrics.split('\n').filter((l) => /^failover_proxy_(local_dial_errors_total|probe_checks_total\{.*result="local"\}) /.test(l));
/** Dials and checks that failed in the balancer itself, from `/metrics`. */
const localCount = (metrics: string): number => localLines(metrics).reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
const localFigures = (metrics: string): string => localLines(metrics).map((l) => l.replace('failover_proxy_', '')).join(', ');

/** Sends a line and resolves once it comes back; rejects when the socket is (or gets) closed. */
function echoOnce(socket: Socket, line: string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (socket.destroyed || socket.readableEnded) {
      reject(new Error('closed'));
      return;
    }
    let got = '';
    const onData = (d: Buffer): void => {
      got += d.toString('latin1');
      if (got.includes(line)) {
        socket.off('data', onData);
        resolve();
      }
    };
    socket.on('data', onData);
    socket.once('close', () => reject(new Error('closed')));
    socket.write(line);
  });
}

for (const capped of [true, false]) {
test(
  capped
    ? 'descriptor exhaustion: a flood of idle clients is refused at the default cap; established streams 0 cut, 0 down verdicts'
    : 'descriptor exhaustion past a cap set too high: checks and dials fail with EMFILE at layer local; established streams 0 cut, 0 down verdicts',
  { skip: !havePrlimit ? 'needs prlimit (util-linux)' : !existsSync(cliDist) ? 'needs the build (npm run build)' : false, timeout: 120_000 },
  async (t) => {
    const b1 = await listen(t, (s) => s.pipe(s));
    const b2 = await listen(t, (s) => s.pipe(s));
    const cli = await startCli(
      t,
      ['--listen', `${HOST}:0`, '--status', '0', '--backend', `b1=${HOST}:${b1.port}`, '--backend', `b2=${HOST}:${b2.port}`, '--check', 'tcp', '--interval', '300', '--timeout', '300', '--fall', '2', ...(capped ? [] : ['--max-clients', '10000'])],
      cliDist,
      { nofile: NOFILE },
    );
    const stats = async (): Promise<{ clients?: { max: number; refused: number }; teardowns: Record<string, number>; backends: { id: string; health: string }[] }> =>
      JSON.parse(await getText(cli.status, '/stats')) as never;

    // Unrelated established streams, spread over both backends.
    const sockets: Socket[] = [];
    t.after(() => {
      for (const s of sockets) s.destroy();
    });
    let cut = 0;
    const established: Socket[] = [];
    for (let i = 0; i < ESTABLISHED; i++) {
      const c = net.connect({ host: HOST, port: cli.listen, allowHalfOpen: true });
      c.on('error', () => {});
      c.once('close', () => cut++);
      sockets.push(c);
      established.push(c);
      await echoOnce(c, `hello ${i}\n`);
    }

    // The flood: idle clients that connect and say nothing, far past the cap,
    // and come back when shed (as retrying clients do), for ATTACK_MS: the
    // descriptor table stays full while the checks run.
    let attempts = 0;
    let shed = 0;
    let attacking = true;
    let ending = false;
    const flood = (): void => {
      if (!attacking || attempts >= MAX_ATTEMPTS) return;
      attempts++;
      const c = net.connect({ host: HOST, port: cli.listen });
      c.on('error', () => {});
      c.once('close', () => {
        if (ending) return;
        shed++;
        sockets.splice(sockets.indexOf(c), 1);
        flood();
      });
      sockets.push(c);
    };
    for (let i = 0; i < FLOOD; i++) flood();
    // Several check rounds under the flood: checks failing with EMFILE
    // twice in a row would mark a backend down within them.
    await new Promise((r) => setTimeout(r, ATTACK_MS));
    attacking = false;
    // The flood leaves: the status listener gets descriptors again even without a cap.
    ending = true;
    for (const c of sockets) if (!established.includes(c)) c.destroy();
    await new Promise((r) => setTimeout(r, 500));
    // Every established stream still carries bytes (a cut one is counted by its close).
    let stalled = 0;
    await Promise.all(
      established.map((c, i) =>
        Promise.race([echoOnce(c, `again ${i}\n`), new Promise((_, reject) => setTimeout(reject, 5000, new Error('no echo')).unref())]).catch(() => stalled++),
      ),
    );

    const downs = cli.lines.filter((l) => / -> down /.test(l)).length;
    let s = await stats().catch((err: Error) => assert.fail(`/stats: ${err.message}; cut ${cut}/${ESTABLISHED}, down verdicts ${downs}\n${cli.lines.join('\n')}`));
    // Accepts (and refusals) lag the clients' connects: the kernel completes those first.
    for (let i = 0; capped && i < 100 && (s.clients?.refused ?? 0) < shed; i++) {
      await new Promise((r) => setTimeout(r, 50));
      s = await stats();
    }
    const metrics = await getText(cli.status, '/metrics');
    figure(
      t,
      `nofile ${NOFILE}: max clients ${s.clients?.max}${capped ? '' : ' (set)'}; flood of ${FLOOD} idle clients reconnecting for ${ATTACK_MS} ms (${attempts} attempts, ${shed} shed): ${s.clients?.refused} refused at the cap; ` +
        `established streams cut ${cut}/${ESTABLISHED} (${stalled} without an echo); down verdicts ${downs}; probe-failed teardowns ${s.teardowns['probe-failed'] ?? 0}; local errors: ${localFigures(metrics)}`,
    );
    assert.equal(downs, 0, `no backend marked down:\n${cli.lines.join('\n')}`);
    assert.equal(cut, 0, 'no established stream was cut');
    assert.equal(stalled, 0, 'every established stream still echoes');
    assert.equal(s.teardowns['probe-failed'] ?? 0, 0);
    assert.deepEqual(
      s.backends.map((b) => b.health),
      ['up', 'up'],
    );
    if (!capped) {
      assert.ok(localCount(metrics) > 0, `the flood ran into EMFILE, reported at layer local: ${localFigures(metrics)}`);
      return;
    }
    assert.equal(s.clients?.max, EXPECTED_CAP, 'the cap comes from the descriptor limit');
    // The cap holds: what was not held was refused, and counted.
    assert.ok(shed >= ESTABLISHED + FLOOD - EXPECTED_CAP, `the clients past the cap were shed (${shed})`);
    // Every client shed was refused at the cap and counted (a few more refusals
    // may not have reached their client when the flood left).
    const refused = s.clients?.refused ?? 0;
    assert.ok(refused >= shed && refused <= attempts, `refused ${refused}, shed ${shed}, attempts ${attempts}`);
    assert.match(metrics, new RegExp(`^failover_proxy_clients_refused_total ${s.clients?.refused}$`, 'm'));
    assert.match(metrics, new RegExp(`^failover_proxy_max_clients ${EXPECTED_CAP}$`, 'm'));
    assert.ok(cli.lines.some((l) => /client cap reached \(max clients 96\)/.test(l)), 'the refusals are logged');
  },
);
}

test(
  '--max-clients with --workers: each worker holds its share; the rest are refused and counted in the merged /stats',
  { skip: !existsSync(cliDist) ? 'needs the build (npm run build)' : false, timeout: 60_000 },
  async (t) => {
    const b1 = await listen(t, (s) => s.pipe(s));
    const cli = await startCli(
      t,
      ['--listen', `${HOST}:0`, '--status', '0', '--backend', `b1=${HOST}:${b1.port}`, '--check', 'tcp', '--workers', '2', '--max-clients', '4'],
      cliDist,
    );
    await waitForLine(cli.lines, /listening/);
    const clients: Socket[] = [];
    t.after(() => {
      for (const c of clients) c.destroy();
    });
    let refused = 0;
    for (let i = 0; i < 10; i++) {
      const c = net.connect({ host: HOST, port: cli.listen });
      c.on('error', () => {});
      c.once('close', () => refused++);
      clients.push(c);
    }
    let s = JSON.parse(await getText(cli.status, '/stats')) as { clients?: { max: number; refused: number }; active: number };
    for (let i = 0; i < 100 && (s.active + (s.clients?.refused ?? 0) < 10 || refused < (s.clients?.refused ?? 0)); i++) {
      await new Promise((r) => setTimeout(r, 50));
      s = JSON.parse(await getText(cli.status, '/stats')) as typeof s;
    }
    figure(t, `--workers 2 --max-clients 4, 10 clients: held ${s.active}, refused ${s.clients?.refused} (clients saw ${refused} closed)`);
    assert.equal(s.clients?.max, 4, 'two shares of 2');
    assert.ok(s.active <= 4, `held ${s.active}`);
    assert.equal(s.active + (s.clients?.refused ?? 0), 10);
    assert.equal(refused, s.clients?.refused);
  },
);

async function waitForLine(lines: readonly string[], pattern: RegExp): Promise<void> {
  for (let i = 0; i < 200 && !lines.some((l) => pattern.test(l)); i++) await new Promise((r) => setTimeout(r, 25));
}
