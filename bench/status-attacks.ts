/**
 * `/livez` latency on the balancer's status listener while other clients
 * attack it: keep-alive hogs, idle connections, slow senders, a flood.
 *
 * ```sh
 * npx tsx bench/status-attacks.ts [--program examples/apiserver-balancer.ts] [--seconds 10]
 * ```
 *
 * Starts the balancer (through tsx for a `.ts` program) with one loopback
 * backend and `--status`, then runs each attack for `--seconds` while a
 * prober opens a fresh connection for `GET /livez` every 250 ms (2 s
 * deadline, as keepalived's check would). Prints one line per attack: probes
 * answered, median and worst latency. Every loop is bounded in time; every
 * socket and the child are closed at the end.
 *
 * @module
 */
import { spawn } from 'node:child_process';
import { connect, createServer, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: { program: { type: 'string', default: 'examples/apiserver-balancer.ts' }, seconds: { type: 'string', default: '10' } },
});
const program = values.program;
const seconds = Number(values.seconds);
const HOST = '127.0.0.1';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function livez(port: number): Promise<number | undefined> {
  const started = performance.now();
  return new Promise((resolve) => {
    const s = connect(port, HOST);
    const timer = setTimeout(() => {
      s.destroy();
      resolve(undefined);
    }, 2000);
    let text = '';
    s.on('connect', () => s.write('GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'));
    s.setEncoding('latin1').on('data', (d: string) => {
      text += d;
      if (/^HTTP\/1\.1 200 /.test(text)) {
        clearTimeout(timer);
        s.destroy();
        resolve(performance.now() - started);
      }
    });
    s.on('error', () => {
      clearTimeout(timer);
      resolve(undefined);
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve(undefined);
    });
  });
}

type Attack = (port: number, until: number, sockets: Set<Socket>) => Promise<void>;

/** Keeps `n` connections doing `setup` on each; replaces any that closes, until `until`. */
function holders(n: number, setup: (s: Socket, until: number) => void): Attack {
  return async (port, until, sockets) => {
    const one = async (): Promise<void> => {
      while (performance.now() < until) {
        const s = connect(port, HOST);
        sockets.add(s);
        s.on('error', () => {});
        s.resume();
        s.on('connect', () => setup(s, until));
        await new Promise((r) => s.once('close', r));
        sockets.delete(s);
        await sleep(50);
      }
    };
    await Promise.all(Array.from({ length: n }, one));
  };
}

const attacks: Record<string, Attack> = {
  none: async (_port, until) => sleep(until - performance.now()),
  // 64 keep-alive clients, one /livez every 4 s each (inside the 5 s keep-alive timeout).
  'keep-alive hogs (64, /livez every 4 s)': holders(64, (s, until) => {
    const tick = (): void => {
      if (s.destroyed || performance.now() > until) return;
      s.write('GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
      setTimeout(tick, 4000).unref();
    };
    tick();
  }),
  'idle connections (64, never send)': holders(64, () => {}),
  'slow senders (64, one header byte per 500 ms)': holders(64, (s, until) => {
    const request = 'GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ' + 'a'.repeat(1000);
    let i = 0;
    const tick = (): void => {
      if (s.destroyed || performance.now() > until || i >= request.length) return;
      s.write(request[i++]!);
      setTimeout(tick, 500).unref();
    };
    tick();
  }),
  'flood (32 loops of connect, GET /stats, close)': async (port, until, sockets) => {
    const one = async (): Promise<void> => {
      while (performance.now() < until) {
        await new Promise<void>((resolve) => {
          const s = connect(port, HOST);
          sockets.add(s);
          s.on('error', () => {});
          s.on('connect', () => s.end('GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'));
          s.resume();
          s.once('close', () => {
            sockets.delete(s);
            resolve();
          });
        });
      }
    };
    await Promise.all(Array.from({ length: 32 }, one));
  },
};

async function main(): Promise<void> {
  const backend = createServer((s) => s.pipe(s));
  await new Promise<void>((r) => backend.listen(0, HOST, r));
  const backendPort = (backend.address() as { port: number }).port;
  const args = ['--listen', `${HOST}:0`, '--backend', `${HOST}:${backendPort}`, '--check', 'tcp', '--status', '0'];
  const child = spawn(process.execPath, program.endsWith('.ts') ? ['--import', 'tsx', program, ...args] : [program, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const status = await new Promise<number>((resolve, reject) => {
      child.once('exit', () => reject(new Error('the balancer exited')));
      createInterface({ input: child.stdout }).on('line', (line) => {
        if (line.startsWith('status ')) resolve(Number(line.split(':').at(-1)));
      });
    });
    console.log(`program ${program}, ${seconds} s per attack, a fresh-connection /livez every 250 ms (2 s deadline)`);
    for (const [name, attack] of Object.entries(attacks)) {
      const sockets = new Set<Socket>();
      const until = performance.now() + seconds * 1000;
      const running = attack(status, until, sockets);
      // Let the attack fill the listener first.
      await sleep(Math.min(1500, seconds * 200));
      const latencies: (number | undefined)[] = [];
      while (performance.now() < until) {
        latencies.push(await livez(status));
        await sleep(250);
      }
      const stopper = setTimeout(() => {
        for (const s of sockets) s.destroy();
      }, Math.max(0, until - performance.now()));
      // Holders reconnect until `until`; a socket the server keeps is destroyed then.
      await Promise.race([running, sleep(until - performance.now() + 200)]);
      for (const s of sockets) s.destroy();
      await running;
      clearTimeout(stopper);
      const ok = latencies.filter((l): l is number => l !== undefined).sort((a, b) => a - b);
      const median = ok.length === 0 ? NaN : ok[Math.floor(ok.length / 2)]!;
      const worst = ok.length === 0 ? NaN : ok[ok.length - 1]!;
      console.log(`${name}: ${ok.length}/${latencies.length} answered; median ${median.toFixed(1)} ms, worst ${worst.toFixed(1)} ms`);
      await sleep(500);
    }
  } finally {
    child.kill('SIGKILL');
    backend.close();
  }
}

await main();
