/**
 * Fault: the proxy runs out of file descriptors. A pool and its listener run
 * in a child whose limit is lowered (prlimit) to a few descriptors above
 * what it holds idle; then 120 clients arrive at once. Accepts and dials hit
 * EMFILE: the clients past the limit are shed (closed by the kernel trick
 * libuv plays, or refused by the pool with CONNECT_FAILED, cause EMFILE),
 * those within it are served, the process neither crashes nor wedges, and
 * once the served clients leave it serves new ones again.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import net, { type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { exitOf, root } from '../helpers/faults.js';
import { echoServer, HOST, waitFor } from '../helpers/net.js';

const script = fileURLToPath(new URL('../helpers/emfile-proxy.ts', import.meta.url));
const havePrlimit = spawnSync('prlimit', ['--version']).status === 0;

interface ChildStats {
  active: number;
  total: number;
  pinFailures: Record<string, number>;
  teardowns: Record<string, number>;
  connectFailures: number;
  serverErrors: Record<string, number>;
  pinFailureCauses: Record<string, number>;
  fds: number;
}

type Outcome = 'served' | 'shed';

/** One client: sends a line, resolves `served` when it is echoed, `shed` when the connection fails or closes first. */
function tryClient(t: TestContext, port: number, clients: Socket[]): Promise<Outcome> {
  return new Promise((resolve) => {
    const c = net.connect({ host: HOST, port, allowHalfOpen: true });
    clients.push(c);
    t.after(() => c.destroy());
    let done = false;
    const finish = (o: Outcome): void => {
      if (!done) {
        done = true;
        resolve(o);
      }
    };
    c.on('error', () => finish('shed'));
    c.once('close', () => finish('shed'));
    c.once('end', () => finish('shed'));
    c.once('data', (d: Buffer) => finish(String(d) === 'ping\n' ? 'served' : 'shed'));
    c.once('connect', () => c.write('ping\n'));
  });
}

test('EMFILE on accept and dial: excess clients are shed, the rest served, no crash, no wedge, service resumes', { skip: havePrlimit ? false : 'needs prlimit (util-linux)' }, async (t) => {
  const { port: backendPort } = await echoServer(t);
  const child = spawn(process.execPath, ['--import', 'tsx', script, String(backendPort)], { cwd: root, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exitOf(child);
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const [frontPort, idleFds] = await new Promise<[number, number]>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`child exited (${code}): ${stderr}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const m = /^ready (\d+) (\d+)$/.exec(line);
      if (m) resolve([Number(m[1]), Number(m[2])]);
    });
  });
  const stats = async (): Promise<ChildStats> => {
    child.send('stats');
    const [message] = (await once(child, 'message')) as [ChildStats];
    return message;
  };

  // Room for about ten proxied pairs (client + upstream socket each), no more.
  const limit = idleFds + 20;
  const lowered = spawnSync('prlimit', ['--pid', String(child.pid), `--nofile=${limit}:${limit}`], { encoding: 'utf8' });
  assert.equal(lowered.status, 0, lowered.stderr);
  t.diagnostic(`child holds ${idleFds} descriptors idle; limit lowered to ${limit}`);

  const clients: Socket[] = [];
  const N = 120;
  const outcomes = await Promise.all(Array.from({ length: N }, () => tryClient(t, frontPort, clients)));
  const served = outcomes.filter((o) => o === 'served').length;
  const s1 = await stats();
  t.diagnostic(`flood of ${N}: ${served} served, ${N - served} shed; pin failures ${JSON.stringify(s1.pinFailureCauses)}; server errors ${JSON.stringify(s1.serverErrors)}`);
  assert.equal(child.exitCode, null, 'the child is alive');
  assert.ok(served > 0, 'clients within the limit are served');
  assert.ok(served < N, 'the limit was hit');
  // Whatever was shed by the pool was shed with a code whose cause is the descriptor limit.
  for (const key of Object.keys(s1.pinFailureCauses)) assert.match(key, /^(CONNECT_FAILED:EMFILE|CLIENT_CLOSED:.*)$/, key);
  for (const key of Object.keys(s1.serverErrors)) assert.match(key, /^(EMFILE|ENFILE)$/, key);
  // The pool's books agree with the clients: every served client holds a connection.
  await waitFor(() => clients.filter((c) => !c.destroyed).length >= served);
  assert.equal(s1.active, served);

  // The served clients leave; the child frees its descriptors.
  const drained = async (): Promise<ChildStats> => {
    for (const c of clients) c.destroy();
    clients.length = 0;
    let s = await stats();
    for (let i = 0; i < 400 && s.active > 0; i++) {
      await new Promise((r) => setTimeout(r, 25));
      s = await stats();
    }
    assert.equal(s.active, 0);
    return s;
  };
  await drained();

  // Second flood, with dials starting a little after their accepts: a burst of
  // accepts takes the descriptors first, so now the dials hit EMFILE.
  child.send('delay:30');
  await once(child, 'message');
  const outcomes2 = await Promise.all(Array.from({ length: N }, () => tryClient(t, frontPort, clients)));
  const served2 = outcomes2.filter((o) => o === 'served').length;
  const s2 = await stats();
  t.diagnostic(`flood with late dials: ${served2} served, ${N - served2} shed; pin failures ${JSON.stringify(s2.pinFailureCauses)}; server errors ${JSON.stringify(s2.serverErrors)}`);
  assert.equal(child.exitCode, null, 'the child is alive');
  assert.ok((s2.pinFailureCauses['CONNECT_FAILED:EMFILE'] ?? 0) > 0, 'dials hit EMFILE and the pool refused those clients with CONNECT_FAILED');
  for (const key of Object.keys(s2.pinFailureCauses)) assert.match(key, /^(CONNECT_FAILED:EMFILE|CLIENT_CLOSED:.*)$/, key);
  assert.equal(s2.active, served2);
  await drained();
  child.send('delay:0');
  await once(child, 'message');
  const again = await Promise.all(Array.from({ length: 5 }, () => tryClient(t, frontPort, [])));
  assert.deepEqual(again, Array(5).fill('served'), 'serving again once descriptors are free');
  const s3 = await stats();
  assert.equal(s3.active, 5);
  assert.equal(child.exitCode, null);
  assert.equal(stderr, '', 'nothing printed: no crash, no unhandled error');
});
