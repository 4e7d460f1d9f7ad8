/**
 * The balancer process and its surroundings, in one process and with
 * `--workers 2` (the same bodies): SIGUSR1 never opens Node's inspector,
 * sent to the balancer or to one of its workers; SIGUSR2 logs the state;
 * SIGHUP without `--config` is refused in the log and changes nothing, and
 * a worker that gets one too (a terminal's hangup) carries on; a Ctrl-C
 * while it starts is a stop, exit 0;
 * SIGINT drains and a second SIGINT closes what is left, also when a
 * terminal's Ctrl-C reaches every process of the group; and a closed stdout
 * or stderr (the reader exited) neither crashes nor stops it, in the primary
 * or in the workers that write to the same pipe.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, readdirSync as readdir, readlinkSync as readlink } from 'node:fs';
import { request } from 'node:http';
import { createInterface } from 'node:readline';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { api } from './helpers/admin.js';
import { cliEntry, modes, startMode, type RunningCli } from './helpers/cli.js';
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
  return ports.sort((a, b) => a - b);
}

async function echoThrough(t: TestContext, port: number): Promise<void> {
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

/** The balancer's processes: the one process, or the primary and its two workers (as their `listening` lines name them). */
async function processesOf(cli: RunningCli, mode: string): Promise<number[]> {
  if (mode === 'workers') await waitFor(() => cli.pids.size === 2, { what: 'both workers\' pids' });
  return [cli.child.pid!, ...cli.pids];
}

/** Sends `signal` to `pid` unless it has exited already (ESRCH). */
function signalIfAlive(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/** The pids whose parent is `pid` (from /proc). */
function childrenOf(pid: number): number[] {
  const found: number[] = [];
  for (const entry of readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // `pid (comm) state ppid …`; comm may hold spaces, so read after its last ')'.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) found.push(Number(entry));
    } catch {
      /* gone meanwhile */
    }
  }
  return found;
}

/** Worker pids and restarts as `/stats` lists them (none in one process). */
async function workerView(status: number): Promise<{ pids: number[]; restarts: number }> {
  const doc = JSON.parse((await api(status, 'GET', '/stats')).text) as { workers?: { pid: number }[]; restarts?: number };
  return { pids: (doc.workers ?? []).map((w) => w.pid).sort(), restarts: doc.restarts ?? 0 };
}

const root = fileURLToPath(new URL('..', import.meta.url));
const quick = ['--check', 'tcp', '--interval', '300', '--rise', '1', '--status', '0'];

for (const mode of modes) {
  test(`${mode}: SIGUSR1 opens no inspector (balancer or worker); SIGUSR2 logs the state; SIGHUP without --config is refused and changes nothing, also sent to every worker`, { skip: process.platform !== 'linux', timeout: 90_000 }, async (t) => {
    const backend = await echoServer(t);
    const cli = await startMode(t, mode, ['--listen', `${HOST}:0`, '--backend', `b1=${HOST}:${backend.port}`, ...quick]);
    const processes = await processesOf(cli, mode);
    const before = processes.map(listeningPorts);
    // What an operator does (`kill -USR1 PID`), to the balancer and, with workers, to each worker too.
    for (const pid of processes) process.kill(pid, 'SIGUSR1');
    // Signals to one process are handled in order: a SIGUSR2 sent after the SIGUSR1 is logged after it.
    cli.child.kill('SIGUSR2');
    await waitFor(() => cli.lines.some((l) => / SIGUSR2 state: /.test(l)), { what: 'the SIGUSR2 state line' });
    const line = cli.lines.find((l) => / SIGUSR2 state: /.test(l))!;
    assert.match(line, /b1 up\/active 0 active/);
    // A SIGHUP to every process, as a terminal's hangup (or `pkill -HUP` by
    // the program's name) sends it: the balancer refuses the reload (no
    // config), a worker has nothing to reload and must not die of it. It is
    // also one more round trip through each process (its line, then a stats
    // request every worker answers) before the ports are compared: the
    // workers handle their own SIGUSR1 on their own clock.
    for (const pid of processes) process.kill(pid, 'SIGHUP');
    await waitFor(() => cli.lines.some((l) => / reload refused, running config kept: no config file/.test(l)), { what: 'the SIGHUP refusal' });
    assert.equal(await get(cli.status, '/stats'), 200);
    assert.deepEqual(processes.map(listeningPorts), before, 'a port opened after SIGUSR1');
    assert.doesNotMatch(cli.stderr(), /Debugger listening/);
    assert.equal(cli.child.exitCode, null, 'still running');
    if (mode === 'workers') assert.deepEqual(await workerView(cli.status), { pids: [...cli.pids].sort(), restarts: 0 }, 'no worker died of a signal');
    await echoThrough(t, cli.listen);
    cli.child.kill('SIGTERM');
    assert.deepEqual(await cli.exited, [0, null]);
    assert.equal(cli.stderr(), '');
  });

  test(`${mode}: SIGINT to every process while it starts: it stops, exit 0, nothing on stderr`, { timeout: 90_000 }, async (t) => {
    const backend = await echoServer(t);
    const args = ['--listen', `${HOST}:0`, '--backend', `a=${HOST}:${backend.port}`, ...quick, ...(mode === 'workers' ? ['--workers', '2'] : [])];
    const child = spawn(process.execPath, ['--import', 'tsx', cliEntry, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    const seen = new Set<number>();
    t.after(() => {
      // By pid, and only while that pid still runs this program (pids are reused).
      for (const pid of [child.pid!, ...seen]) {
        try {
          if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(cliEntry)) process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const lines: string[] = [];
    const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    // The first verdict is logged while it starts: during the first checks in
    // one process, and with workers by the first worker to get its settings,
    // before it listens (the other may still be loading the program).
    let sent = false;
    createInterface({ input: child.stdout }).on('line', (line) => {
      lines.push(line);
      if (sent || !/ backend a unknown -> up/.test(line)) return;
      sent = true;
      // What a terminal's Ctrl-C does: the signal to every process of the group.
      const group = [child.pid!, ...childrenOf(child.pid!)];
      for (const pid of group) seen.add(pid);
      for (const pid of group) process.kill(pid, 'SIGINT');
    });
    const [code, signal] = await exited;
    assert.ok(sent, lines.join('\n'));
    assert.deepEqual([code, signal], [0, null], `${stderr}\n${lines.join('\n')}`);
    assert.equal(stderr, '');
    assert.match(lines.at(-1)!, / stopped/);
    t.diagnostic(`${mode}: ${lines.at(-1)!}`);
  });

  // One process has no group to speak of: the Ctrl-C form is the workers' alone.
  for (const group of mode === 'workers' ? [false, true] : [false]) {
    const who = group ? 'to every process of the group (Ctrl-C in a terminal)' : 'to the balancer';
    test(`${mode}: SIGINT ${who} drains; a second SIGINT closes what is left at once; exit 0`, { timeout: 90_000 }, async (t) => {
      const backend = await echoServer(t);
      const cli = await startMode(t, mode, ['--listen', `${HOST}:0`, '--backend', `b1=${HOST}:${backend.port}`, ...quick, '--drain-timeout', '60000']);
      const processes = await processesOf(cli, mode);
      const targets = group ? processes : [cli.child.pid!];
      // A client that never answers a FIN: only the deadline or the second signal ends the drain.
      const client = await connect(t, cli.listen);
      client.write('x\n');
      assert.equal(await readLine(client), 'x');
      const asked = once(client, 'end');
      client.resume();
      for (const pid of targets) process.kill(pid, 'SIGINT');
      await waitFor(() => cli.lines.some((l) => / SIGINT \(send it again to close every connection at once\)$/.test(l)), { what: 'the SIGINT line' });
      await waitFor(() => cli.lines.some((l) => /shutting down: not accepting; .*60000 ms to finish/.test(l)), { what: 'the drain line' });
      // Draining, not gone: asked to close (a FIN), not closed; not ready, still alive.
      await asked;
      assert.equal(client.closed, false, 'the first SIGINT closes nothing before the deadline');
      assert.equal(await get(cli.status, '/readyz'), 503);
      assert.equal(await get(cli.status, '/livez'), 200);
      const signalled = Date.now();
      // A worker that held no connection drained at once and may be gone: a
      // terminal's second Ctrl-C reaches only the processes still there.
      for (const pid of targets) signalIfAlive(pid, 'SIGINT');
      const [code, signal] = await cli.exited;
      const took = Date.now() - signalled;
      assert.deepEqual([code, signal], [0, null], `${cli.stderr()}\n${cli.lines.join('\n')}`);
      // Far below the 60 s deadline (a bound against it, not a speed claim).
      assert.ok(took < 30_000, `exited ${took} ms after the second SIGINT`);
      assert.equal(cli.stderr(), '');
      const text = cli.lines.join('\n');
      // Closed by the second signal, not by the deadline (that would be `pool-closed`).
      assert.match(text, /connections closed: pool-destroyed 1$/m);
      assert.doesNotMatch(text, /exited \((code [1-9]|signal)/, 'no worker crashed');
      assert.match(cli.lines.at(-1)!, / stopped/);
    });
  }

  for (const stream of ['stdout', 'stderr'] as const) {
    test(`${mode}: a closed ${stream} (its reader exited) neither crashes nor stops the balancer`, { timeout: 90_000 }, async (t) => {
      const backend = await echoServer(t);
      const leaving = await echoServer(t);
      const cli = await startMode(t, mode, [
        '--listen', `${HOST}:0`, '--backend', `b1=${HOST}:${backend.port}`, '--backend', `b2=${HOST}:${leaving.port}`, ...quick, '--fall', '1',
      ]);
      await processesOf(cli, mode);
      const workersBefore = await workerView(cli.status);
      await echoThrough(t, cli.listen);
      // The reader goes away: the next write of any process on that pipe gets EPIPE.
      const pipe = cli.child[stream]!;
      pipe.destroy();
      await once(pipe, 'close');
      // Lines that now hit the closed pipe: from the balancer (a refused
      // reload, the state, SIGUSR1's) and, with workers, from each worker (b2's
      // down transition, which every worker logs itself); Node's own stderr
      // line should the inspector be asked to start.
      for (let i = 0; i < 3; i++) {
        cli.child.kill('SIGHUP');
        cli.child.kill('SIGUSR2');
        cli.child.kill('SIGUSR1');
      }
      leaving.server.close();
      for (const s of leaving.sockets) s.destroy();
      // The down verdict has been applied (and logged) everywhere once /stats says so.
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline) {
        const doc = JSON.parse((await api(cli.status, 'GET', '/stats')).text) as { backends: { id: string; state: string }[] };
        if (doc.backends.find((b) => b.id === 'b2')?.state === 'down') break;
        await new Promise((r) => setTimeout(r, 50));
      }
      // More lines after the verdict: the pipe is surely broken by now.
      cli.child.kill('SIGUSR2');
      await echoThrough(t, cli.listen);
      assert.equal(await get(cli.status, '/livez'), 200);
      assert.equal(cli.child.exitCode, null, `exited after its ${stream} closed`);
      // No worker died and was replaced meanwhile.
      assert.deepEqual(await workerView(cli.status), workersBefore);
      cli.child.kill('SIGTERM');
      assert.deepEqual(await cli.exited, [0, null]);
    });
  }
}
