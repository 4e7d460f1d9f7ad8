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
import { HOST, listen, waitFor } from '../helpers/net.js';

const havePrlimit = spawnSync('prlimit', ['--version']).status === 0;
const NOFILE = 256;
/** (256 - max(64, 5 %)) / 2: what the balancer should derive. */
const EXPECTED_CAP = 96;
const ESTABLISHED = 20;
const FLOOD = 300;

function getText(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get({ host: HOST, port, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

/** Sends a line and resolves once it comes back. */
function echoOnce(socket: Socket, line: string): Promise<void> {
  return new Promise((resolve, reject) => {
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

test(
  'descriptor exhaustion: a flood of idle clients is refused at the cap; established streams 0 cut, 0 down verdicts',
  { skip: !havePrlimit ? 'needs prlimit (util-linux)' : !existsSync(cliDist) ? 'needs the build (npm run build)' : false, timeout: 120_000 },
  async (t) => {
    const b1 = await listen(t, (s) => s.pipe(s));
    const b2 = await listen(t, (s) => s.pipe(s));
    const cli = await startCli(
      t,
      ['--listen', `${HOST}:0`, '--status', '0', '--backend', `b1=${HOST}:${b1.port}`, '--backend', `b2=${HOST}:${b2.port}`, '--check', 'tcp', '--interval', '300', '--timeout', '300', '--fall', '2'],
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

    // The flood: idle clients that connect and say nothing, far past the cap.
    let flooded = 0;
    let shed = 0;
    for (let i = 0; i < FLOOD; i++) {
      const c = net.connect({ host: HOST, port: cli.listen });
      c.on('error', () => {});
      c.once('connect', () => flooded++);
      c.once('close', () => shed++);
      sockets.push(c);
    }
    await waitFor(() => flooded + shed >= FLOOD, { what: 'every flooding client to connect or be shed' });
    // Several check rounds under the flood: a check failing with EMFILE
    // twice in a row would have marked a backend down by then.
    await new Promise((r) => setTimeout(r, 2000));
    for (const [i, c] of established.entries()) await echoOnce(c, `again ${i}\n`);

    let s = await stats();
    // Accepts (and refusals) lag the clients' connects: the kernel completes those first.
    for (let i = 0; i < 100 && (s.clients?.refused ?? 0) < ESTABLISHED + FLOOD - EXPECTED_CAP; i++) {
      await new Promise((r) => setTimeout(r, 50));
      s = await stats();
    }
    const metrics = await getText(cli.status, '/metrics');
    const downs = cli.lines.filter((l) => / -> down /.test(l)).length;
    figure(
      t,
      `nofile ${NOFILE}: max clients ${s.clients?.max}; flood of ${FLOOD} idle clients: ${s.clients?.refused} refused at the cap; ` +
        `established streams cut ${cut}/${ESTABLISHED}; down verdicts ${downs}; probe-failed teardowns ${s.teardowns['probe-failed'] ?? 0}`,
    );
    assert.equal(downs, 0, `no backend marked down:\n${cli.lines.join('\n')}`);
    assert.equal(cut, 0, 'no established stream was cut');
    assert.equal(s.teardowns['probe-failed'] ?? 0, 0);
    assert.deepEqual(
      s.backends.map((b) => b.health),
      ['up', 'up'],
    );
    assert.equal(s.clients?.max, EXPECTED_CAP, 'the cap comes from the descriptor limit');
    // The cap holds: what was not held was refused, and counted.
    assert.equal(s.clients?.refused, ESTABLISHED + FLOOD - EXPECTED_CAP, 'every client past the cap was refused and counted');
    assert.match(metrics, new RegExp(`^failover_proxy_clients_refused_total ${s.clients?.refused}$`, 'm'));
    assert.match(metrics, new RegExp(`^failover_proxy_max_clients ${EXPECTED_CAP}$`, 'm'));
    assert.ok(cli.lines.some((l) => /client cap reached \(max clients 96\)/.test(l)), 'the refusals are logged');
  },
);
