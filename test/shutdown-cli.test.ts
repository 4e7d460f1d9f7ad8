// SIGTERM while the backends fail: the built CLI drains, tears down the
// failed backends' connections as usual during the drain, and exits 0 with
// nothing on stderr — one body, in one process and with --workers 2. And when a worker
// does crash during the drain, the primary says so and exits 1.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import type { Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { cliDist, modes, startCli, type RunningCli } from './helpers/cli.js';
import { connect, HOST, listen, waitFor } from './helpers/net.js';

const built = existsSync(cliDist);
const opts = { timeout: 90_000, skip: built ? false : 'run `npm run build` first (the test spawns the built CLI)' };

interface Backend {
  readonly server: Awaited<ReturnType<typeof listen>>['server'];
  readonly port: number;
  /** Connections that carried a client's byte: the pairs (a tcp check sends none). */
  readonly paired: Set<Socket>;
}

/**
 * Backends that never answer a pair's FIN, so the pairs stay open through the
 * graceful close; a check's connection (no byte, then FIN) is closed.
 */
async function backends(t: TestContext): Promise<Backend[]> {
  return Promise.all(
    [0, 1].map(async () => {
      const paired = new Set<Socket>();
      const l = await listen(t, (socket) => {
        socket.once('data', () => paired.add(socket));
        socket.once('end', () => {
          if (!paired.has(socket)) socket.destroy();
        });
        socket.once('close', () => paired.delete(socket));
      });
      return { server: l.server, port: l.port, paired };
    }),
  );
}

/** Stops accepting (the tcp check is refused) while the connections already accepted stay open. */
function stopListening(b: Backend): void {
  b.server.close();
}

async function clientsThrough(t: TestContext, port: number, n: number): Promise<Socket[]> {
  const clients: Socket[] = [];
  for (let i = 0; i < n; i++) {
    const c = await connect(t, port);
    c.write('x');
    clients.push(c);
  }
  return clients;
}

async function run(t: TestContext, extra: readonly string[]): Promise<{ cli: RunningCli; clients: Socket[] }> {
  const [b1, b2] = await backends(t);
  const cli = await startCli(
    t,
    [
      '--listen', `${HOST}:0`,
      '--backend', `b1=${HOST}:${b1!.port}`,
      '--backend', `b2=${HOST}:${b2!.port}`,
      '--check', 'tcp',
      '--interval', '200',
      '--timeout', '200',
      '--rise', '1',
      '--fall', '1',
      // Long enough that the verdicts, not the deadline, end the drain.
      '--drain-timeout', '60000',
      '--no-rebalance',
      ...extra,
    ],
    cliDist,
  );
  await waitFor(() => cli.lines.filter((l) => / backend b[12] unknown -> up /.test(l)).length >= 2, { what: 'both backends up', timeout: 30_000 });
  // Clients that never answer a FIN either: the drain cannot end on its own.
  const clients = await clientsThrough(t, cli.listen, 4);
  await waitFor(() => b1!.paired.size + b2!.paired.size === 4, { what: 'four pairs' });
  cli.child.kill('SIGTERM');
  await waitFor(() => cli.lines.some((l) => /shutting down/.test(l)), { what: 'the drain to start' });
  // Both backends fail during the drain: their connections go, and with them the drain.
  stopListening(b1!);
  stopListening(b2!);
  return { cli, clients };
}

for (const mode of modes) {
  test(`${mode}: SIGTERM, then the backends fail during the drain: they are torn down as usual in every process and the CLI exits 0`, opts, async (t) => {
    const { cli } = await run(t, mode === 'workers' ? ['--workers', '2'] : []);
    const [code, signal] = await cli.exited;
    assert.equal(cli.stderr(), '', 'nothing on stderr');
    assert.deepEqual([code, signal], [0, null], cli.lines.join('\n'));
    const text = cli.lines.join('\n');
    assert.doesNotMatch(text, /exited \(code [1-9]/, 'no worker crashed');
    // With workers, each logs the teardown of its own connections (`worker N: backend …`).
    for (const b of ['b1', 'b2']) assert.match(text, new RegExp(`${mode === 'workers' ? 'worker \\d+: ' : ' '}backend ${b} up -> down \\(probe-failed`));
    assert.match(cli.lines.at(-1)!, / stopped$/);
  });
}

test('--workers 2: a worker that crashes during the drain is reported, and the CLI exits 1', opts, async (t) => {
  const [b1, b2] = await backends(t);
  const cli = await startCli(
    t,
    ['--listen', `${HOST}:0`, '--backend', `b1=${HOST}:${b1!.port}`, '--backend', `b2=${HOST}:${b2!.port}`, '--check', 'tcp', '--interval', '200', '--timeout', '200', '--drain-timeout', '60000', '--workers', '2'],
    cliDist,
  );
  await waitFor(() => cli.pids.size >= 2, { what: 'two worker pids' });
  const clients = await clientsThrough(t, cli.listen, 4);
  await waitFor(() => b1!.paired.size + b2!.paired.size === 4, { what: 'four pairs' });
  cli.child.kill('SIGTERM');
  await waitFor(() => cli.lines.some((l) => /shutting down/.test(l)), { what: 'the drain to start' });
  // A crash, as a bug would cause one: killed from outside while it drains.
  process.kill([...cli.pids][0]!, 'SIGKILL');
  // The other worker's pairs end: both peers go.
  for (const s of [...clients, ...b1!.paired, ...b2!.paired]) s.destroy();
  const [code] = await cli.exited;
  assert.equal(code, 1, cli.lines.join('\n'));
  assert.match(cli.stderr(), /worker \d+ \(pid \d+\) exited \(signal SIGKILL\) while draining/);
});
