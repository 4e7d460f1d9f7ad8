/**
 * Fault: CPU contention. Busy loops run beside the built balancer (four
 * processes spinning on a 2-core machine), the backends keep answering, and
 * two hostile clients stall their writes behind a long request meanwhile.
 * What holds: no healthy backend is marked down, no healthy stream is cut;
 * the hostile connections are torn down `write-stalled`, which is evidence,
 * not a verdict.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import net, { type Socket } from 'node:net';
import { test } from 'node:test';
import { cliDist, startCli } from '../helpers/cli.js';
import { exitOf, figure } from '../helpers/faults.js';
import { HOST, listen } from '../helpers/net.js';

const BUSY = 4;
const BUSY_MS = 5000;
const STREAMS = 40;
const HOSTILE = 2;

/** `WATCH` streams a tick every 100 ms; `LONG` stops reading the connection (as Go's net/http while a handler runs). */
async function goLikeBackend(t: Parameters<typeof listen>[0]): Promise<number> {
  const timers = new Set<NodeJS.Timeout>();
  t.after(() => {
    for (const timer of timers) clearInterval(timer);
  });
  const { port } = await listen(t, (socket) => {
    socket.once('data', (chunk: Buffer) => {
      if (chunk.toString('latin1').startsWith('WATCH')) {
        const timer = setInterval(() => socket.write('tick\n'), 100);
        timers.add(timer);
        socket.once('close', () => {
          clearInterval(timer);
          timers.delete(timer);
        });
      } else socket.pause();
    });
  });
  return port;
}

test(
  'CPU contention: busy loops beside the balancer and stalled writes: 0 healthy backends down, 0 streams cut',
  { skip: !existsSync(cliDist) ? 'needs the build (npm run build)' : false, timeout: 120_000 },
  async (t) => {
    const b1 = await goLikeBackend(t);
    const b2 = await goLikeBackend(t);
    const cli = await startCli(
      t,
      ['--listen', `${HOST}:0`, '--status', '0', '--backend', `b1=${HOST}:${b1}`, '--backend', `b2=${HOST}:${b2}`, '--check', 'tcp', '--write-stall-timeout', '500'],
      cliDist,
    );
    const sockets: Socket[] = [];
    t.after(() => {
      for (const s of sockets) s.destroy();
    });
    let cut = 0;
    let ticks = 0;
    for (let i = 0; i < STREAMS; i++) {
      const c = net.connect({ host: HOST, port: cli.listen });
      c.on('error', () => {});
      c.on('data', () => ticks++);
      c.once('close', () => cut++);
      c.write('WATCH\n');
      sockets.push(c);
    }

    // Busy loops, each bounded in time, killed after the test if still running.
    const busy: ChildProcess[] = [];
    t.after(async () => {
      for (const b of busy) if (b.exitCode === null) b.kill('SIGKILL');
      await Promise.all(busy.map((b) => exitOf(b)));
    });
    for (let i = 0; i < BUSY; i++) {
      busy.push(spawn(process.execPath, ['-e', `const end = Date.now() + ${BUSY_MS}; while (Date.now() < end);`], { stdio: 'ignore' }));
    }

    // Hostile clients: a long request, then bytes pipelined behind it until torn down.
    let hostileClosed = 0;
    await Promise.all(
      Array.from(
        { length: HOSTILE },
        () =>
          new Promise<void>((resolve) => {
            const c = net.connect({ host: HOST, port: cli.listen });
            sockets.push(c);
            const chunk = Buffer.alloc(64 * 1024, 0x61);
            let sent = 0;
            const pump = (): void => {
              while (!c.destroyed && sent < 64 * 1024 * 1024) {
                sent += chunk.length;
                if (!c.write(chunk)) return;
              }
            };
            c.on('error', () => {});
            c.on('drain', pump);
            c.once('connect', () => {
              c.write('LONG\n');
              pump();
            });
            c.once('close', () => {
              hostileClosed++;
              resolve();
            });
          }),
      ),
    );
    await Promise.all(busy.map((b) => exitOf(b)));
    const ticksBefore = ticks;
    await new Promise((r) => setTimeout(r, 1500));

    const downs = cli.lines.filter((l) => / -> down /.test(l)).length;
    figure(t, `${BUSY} busy loops for ${BUSY_MS} ms, ${HOSTILE} hostile clients (${hostileClosed} torn down): healthy streams cut ${cut}/${STREAMS}; down verdicts ${downs}`);
    assert.equal(downs, 0, cli.lines.join('\n'));
    assert.equal(cut, 0);
    assert.equal(hostileClosed, HOSTILE);
    assert.ok(ticks > ticksBefore, 'the streams still flow');
  },
);
