/**
 * The balancer process and its surroundings: SIGUSR1 never opens Node's
 * inspector, SIGUSR2 logs the state, and a closed stdout or stderr (the
 * reader exited) neither crashes nor stops it.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync, readdirSync as readdir, readlinkSync as readlink } from 'node:fs';
import { request } from 'node:http';
import { test } from 'node:test';
import { startCli } from './helpers/cli.js';
import { HOST, connect, echoServer, readLine, waitFor } from './helpers/net.js';

/** Listening TCP ports of `pid`, from /proc (inodes of its sockets matched against /proc/net/tcp). */
function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  const fds = readFileSync(`/proc/${pid}/net/tcp`, 'utf8');
  for (const fd of readdir(`/proc/${pid}/fd`)) {
    try {
      const target = readlink(`/proc/${pid}/fd/${fd}`);
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m) inodes.add(m[1]!);
    } catch {
      /* closed meanwhile */
    }
  }
  const ports: number[] = [];
  for (const line of fds.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    // st 0A: LISTEN
    if (cols[3] === '0A' && inodes.has(cols[9] ?? '')) ports.push(parseInt(cols[1]!.split(':')[1]!, 16));
  }
  return ports;
}

async function echoThrough(t: Parameters<typeof connect>[0], port: number): Promise<void> {
  const socket = await connect(t, port);
  socket.write('ping\n');
  assert.equal(await readLine(socket), 'ping');
  socket.destroy();
}

function get(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: HOST, port, path, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

test('SIGUSR1 does not open the inspector; SIGUSR2 logs the state', { skip: process.platform !== 'linux' }, async (t) => {
  const backend = await echoServer(t);
  const cli = await startCli(t, ['--listen', `${HOST}:0`, '--backend', `b1=${HOST}:${backend.port}`, '--check', 'tcp', '--interval', '300', '--rise', '1', '--status', '0']);
  const pid = cli.child.pid!;
  const before = listeningPorts(pid);
  cli.child.kill('SIGUSR1');
  // The signal is handled (or refused) by then: a SIGUSR2 sent after it is logged after it.
  cli.child.kill('SIGUSR2');
  await waitFor(() => cli.lines.some((l) => / SIGUSR2 state: /.test(l)), { what: 'the SIGUSR2 state line' });
  const line = cli.lines.find((l) => / SIGUSR2 state: /.test(l))!;
  assert.match(line, /b1 up\/active 0 active/);
  // Whatever Node tried on SIGUSR1 had time to finish: no new listening port, no inspector banner.
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(listeningPorts(pid).sort(), before.sort(), 'a port opened after SIGUSR1');
  assert.doesNotMatch(cli.stderr(), /Debugger listening/);
  assert.equal(cli.child.exitCode, null, 'still running');
  await echoThrough(t, cli.listen);
  cli.child.kill('SIGTERM');
  assert.deepEqual(await cli.exited, [0, null]);
});

for (const stream of ['stdout', 'stderr'] as const) {
  test(`a closed ${stream} (its reader exited) neither crashes nor stops the balancer`, async (t) => {
    const backend = await echoServer(t);
    const cli = await startCli(t, ['--listen', `${HOST}:0`, '--backend', `${HOST}:${backend.port}`, '--check', 'tcp', '--interval', '300', '--rise', '1', '--status', '0']);
    await echoThrough(t, cli.listen);
    // The reader goes away: the balancer's next write gets EPIPE.
    const pipe = cli.child[stream]!;
    pipe.destroy();
    await once(pipe, 'close');
    // Log lines that now hit the closed pipe: a reload attempt (refused, logged) and the state.
    for (let i = 0; i < 3; i++) {
      cli.child.kill('SIGHUP');
      cli.child.kill('SIGUSR2');
    }
    // Lines written now would be lost; what matters is that the process serves.
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(cli.child.exitCode, null, `exited after its ${stream} closed`);
    await echoThrough(t, cli.listen);
    assert.equal(await get(cli.status, '/livez'), 200);
    cli.child.kill('SIGTERM');
    assert.deepEqual(await cli.exited, [0, null]);
  });
}
