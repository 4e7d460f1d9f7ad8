/**
 * The balancer's log counts a transition's teardowns once: on the
 * transition's line (`backend a up -> down (...), N connections torn down`),
 * never again in the periodic line (`in the last 10 s: connections closed:
 * ...`). Past the pool's `teardown.syncMax` (256 by default) the sockets are
 * closed in slices after the transition, so their `connectionClosed` events
 * come after its line; they were counted a second time in the periodic line.
 * In process (a small `syncMax`, so both paths are cheap) and through the CLI
 * in one process and with `--workers 2` (more members than `syncMax`).
 */
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { test } from 'node:test';
import { EventLog } from '../src/cli/event-log.js';
import { UpstreamPool } from '../src/index.js';
import { modes, startMode } from './helpers/cli.js';
import { HOST, connect, echoServer, frontend, namedServer, readLine, waitFor } from './helpers/net.js';

/** Every `reason N` of the periodic lines, summed per reason. */
function periodic(lines: readonly string[]): Record<string, number> {
  const sums: Record<string, number> = {};
  for (const line of lines) {
    const closed = / in the last \d+ s: connections closed: ([^;]*)/.exec(line)?.[1];
    if (closed === undefined) continue;
    for (const part of closed.split(', ')) {
      const m = /^(\S+) (\d+)$/.exec(part);
      if (m) sums[m[1]!] = (sums[m[1]!] ?? 0) + Number(m[2]);
    }
  }
  return sums;
}

/** The `N connections torn down` of every transition line of `backend`, summed. */
function tornDownOnTransitions(lines: readonly string[], backend: string): number {
  let n = 0;
  for (const line of lines) {
    const m = new RegExp(` backend ${backend} \\S+ -> \\S+ \\(.*\\), (\\d+) connections? torn down$`).exec(line);
    if (m) n += Number(m[1]);
  }
  return n;
}

for (const [members, sliced] of [
  [3, false],
  [20, true],
] as const) {
  test(`in process, ${members} members (${sliced ? 'closed in slices after' : 'closed inside'} the transition): markDown and maintenance are counted on their lines only`, async (t) => {
    const { port: upstream } = await echoServer(t);
    const pool = new UpstreamPool({ backends: [{ host: HOST, port: upstream, id: 'b1' }], teardown: { syncMax: 4, budgetMs: 1 } });
    t.after(() => pool.destroy());
    const lines: string[] = [];
    const log = new EventLog(pool, undefined, { write: (line) => lines.push(line), now: () => Date.UTC(2030, 0, 1) });
    t.after(() => log.close());
    const front = await frontend(t, pool);
    const open = async (n: number): Promise<Socket[]> => {
      const clients = await Promise.all(Array.from({ length: n }, () => connect(t, front)));
      await waitFor(() => pool.stats().active === n, { what: `${n} pinned` });
      return clients;
    };
    const clients = await open(members + 2);
    // Two ordinary closes first: the periodic line reports those.
    clients[0]!.end();
    clients[1]!.end();
    await waitFor(() => pool.stats().active === members, { what: '2 closed' });
    assert.equal(pool.markDown('b1', 'probe-failed'), members);
    // Every socket closed (the slices ran), then the periodic line.
    await waitFor(() => pool.stats().closing === 0, { what: 'the slices closed' });
    log.flush();
    pool.markUp('b1', 'probe-passed');
    await open(members);
    assert.equal(pool.markMaintenance('b1', 'maintenance'), members);
    await waitFor(() => pool.stats().closing === 0, { what: 'the slices closed' });
    log.flush();
    assert.deepEqual(lines, [
      `2030-01-01T00:00:00.000Z backend b1 up -> down (probe-failed), ${members} connections torn down`,
      '2030-01-01T00:00:00.000Z in the last 0 s: connections closed: client-closed 2',
      '2030-01-01T00:00:00.000Z backend b1 down -> up (probe-passed)',
      `2030-01-01T00:00:00.000Z backend b1 up -> maintenance (maintenance), ${members} connections torn down`,
    ]);
    assert.deepEqual(pool.stats().teardowns, { 'client-closed': 2, 'probe-failed': members, maintenance: members });
  });
}

for (const mode of modes) {
  // More than the pool's syncMax (256) in at least one process: with two workers, 600 clients put 300 or more in one.
  const n = mode === 'workers' ? 600 : 300;
  test(`${mode}: ${n} clients of a backend that fails: its transition lines say ${n} torn down, and no periodic line counts them again`, { timeout: 180_000 }, async (t) => {
    const a = await namedServer(t, 'a');
    const cli = await startMode(t, mode, [
      '--listen', `${HOST}:0`, '--backend', `a=${HOST}:${a.port}`, '--check', 'tcp', '--interval', '300', '--rise', '1', '--fall', '1', '--status', '0', '--drain-timeout', '500',
    ]);
    const clients: Socket[] = [];
    for (let i = 0; i < n; i++) {
      const socket = await connect(t, cli.listen);
      assert.equal(await readLine(socket), 'a');
      clients.push(socket);
    }
    // Told when torn down: a FIN (the clients are half-open) or a reset.
    const told = Promise.all(
      clients.map(
        (c) =>
          new Promise((resolve) => {
            c.once('end', resolve);
            c.once('close', resolve);
            c.resume();
          }),
      ),
    );
    // a stops answering its checks; its pairs stay open until the verdict.
    a.server.close();
    await told;
    await waitFor(() => tornDownOnTransitions(cli.lines, 'a') === n, { what: `transition lines summing to ${n}` });
    // The last periodic line comes as the balancer stops: every close is in it by then.
    cli.child.kill('SIGTERM');
    const [code] = await cli.exited;
    assert.equal(code, 0, cli.stderr());
    const text = cli.lines.join('\n');
    assert.equal(tornDownOnTransitions(cli.lines, 'a'), n, text);
    assert.equal(periodic(cli.lines)['probe-failed'] ?? 0, 0, `the periodic lines count the transition's teardowns again:\n${text}`);
    t.diagnostic(`${mode}: ${cli.lines.filter((l) => / backend a up -> down /.test(l) || / in the last /.test(l)).join(' | ')}`);
  });
}
