/**
 * A `node:http` gateway in front of three apiserver-like backends, built on
 * the pool's agent and upgrade pinning:
 *
 * - ordinary requests and long chunked `/watch` streams are forwarded with
 *   `http.request({ agent: pool.createAgent() })`;
 * - `Connection: upgrade` requests are relayed and pinned with
 *   `createUpgradeHandler(pool)`;
 * - a `HealthProbe` checks `GET /readyz` on every backend.
 *
 * Then it shows the point of it: the backend serving a watch is cut silently
 * (no FIN, no RST), the probe marks it down, the watch is torn down at once
 * and the client re-watches on another backend; an operator puts the backend
 * of an upgraded stream in maintenance and the stream is torn down too.
 *
 * ```sh
 * npx tsx examples/http-gateway.ts               # runs the scenario, then keeps serving (Ctrl-C to stop)
 * npx tsx examples/http-gateway.ts --self-test   # runs the scenario and exits (0 when it went as described)
 * DEBUG=failover-proxy:* npx tsx examples/http-gateway.ts --self-test   # with the library's logs
 * ```
 *
 * See docs/examples.md.
 *
 * @module
 */
import { once } from 'node:events';
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import { pipeline } from 'node:stream';
import { createUpgradeHandler, HealthProbe, UpstreamPool, type FailoverProxyError, type PoolAgent } from '../src/index.js';
import { FaultProxy } from './support/fault-proxy.js';
import { WatchClient } from './support/watch-client.js';

const selfTest = process.argv.includes('--self-test');
const t0 = Date.now();
function say(line: string): void {
  process.stdout.write(`+${((Date.now() - t0) / 1000).toFixed(2).padStart(5)}s  ${line}\n`);
}

// ------------------------------------------------------------------ backends

/** A small apiserver-like backend: `/readyz`, a chunked `/watch`, and line-echo upgrades. */
interface Backend {
  readonly name: string;
  readonly port: number;
  close(): Promise<void>;
}

async function startBackend(name: string): Promise<Backend> {
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    res.setHeader('x-backend', name);
    if (req.url === '/readyz') {
      res.end('ok');
    } else if (req.url?.startsWith('/watch') === true) {
      // One JSON line at once and every 100 ms, forever: a Kubernetes watch.
      let seq = 0;
      const tick = (): boolean => res.write(`${JSON.stringify({ type: 'BOOKMARK', backend: name, seq: seq++, ts: Date.now() })}\n`);
      res.writeHead(200, { 'content-type': 'application/json' });
      tick();
      const timer = setInterval(tick, 100);
      res.on('close', () => clearInterval(timer));
    } else {
      res.writeHead(404).end();
    }
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    socket.on('error', () => {});
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${req.headers.upgrade ?? 'echo'}\r\nConnection: Upgrade\r\nX-Backend: ${name}\r\n\r\n`);
    if (head.length > 0) socket.unshift(head);
    // Answers each line with `<name>: <line>`.
    let partial = '';
    socket.on('data', (chunk: Buffer) => {
      partial += chunk.toString();
      for (let nl = partial.indexOf('\n'); nl !== -1; nl = partial.indexOf('\n')) {
        socket.write(`${name}: ${partial.slice(0, nl)}\n`);
        partial = partial.slice(nl + 1);
      }
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    name,
    port: (server.address() as AddressInfo).port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

// ------------------------------------------------------------------- gateway

// Hop-by-hop headers are the gateway's own business, not the backend's.
const hopByHop = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);

function endToEnd(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) if (!hopByHop.has(name)) out[name] = value;
  return out;
}

/** Forwards one request through the agent; a stream cut upstream is cut downstream too. */
function forward(agent: PoolAgent, req: IncomingMessage, res: ServerResponse): void {
  const upstream = http.request({
    host: 'backends', // ignored: the pool picks the backend
    method: req.method,
    path: req.url,
    headers: { ...endToEnd(req.headers), 'x-forwarded-for': req.socket.remoteAddress ?? '' },
    agent,
  });
  upstream.on('response', (up) => {
    res.writeHead(up.statusCode ?? 502, endToEnd(up.headers));
    pipeline(up, res, (err) => {
      // BACKEND_DOWN: the backend left service mid-stream. pipeline() has
      // destroyed `res`, so the client sees its stream end and re-requests.
      // (A premature close is the client leaving: nothing to report.)
      if (err && err.code !== 'ERR_STREAM_PREMATURE_CLOSE') {
        say(`gateway: ${req.url} from ${String(up.headers['x-backend'])} cut: ${describe(err)}`);
      }
    });
  });
  upstream.on('error', (err) => {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const code = (err as FailoverProxyError).code;
    res.writeHead(code === 'NO_HEALTHY_BACKEND' || code === 'MAX_CONNECTIONS' ? 503 : 502, { 'content-type': 'text/plain' });
    res.end(`${code ?? 'UPSTREAM_ERROR'}\n`);
  });
  pipeline(req, upstream, () => {});
}

function describe(err: Error): string {
  const e = err as FailoverProxyError & { reason?: string };
  return e.code === undefined ? err.message : `${e.code}${e.reason === undefined ? '' : ` (${e.reason})`}`;
}

// -------------------------------------------------------------- the scenario

/** A raw upgrade client: one request, then lines both ways. */
class UpgradeClient {
  readonly socket: Socket;
  readonly lines: string[] = [];
  backend = '';
  #partial = '';
  #inBody = false;
  constructor(port: number) {
    this.socket = net.connect({ host: '127.0.0.1', port });
    this.socket.on('error', () => {});
    this.socket.write('GET /echo HTTP/1.1\r\nHost: gateway\r\nConnection: Upgrade\r\nUpgrade: line-echo\r\n\r\n');
    this.socket.on('data', (chunk: Buffer) => {
      this.#partial += chunk.toString();
      for (let nl = this.#partial.indexOf('\n'); nl !== -1; nl = this.#partial.indexOf('\n')) {
        const line = this.#partial.slice(0, nl).replace(/\r$/, '');
        this.#partial = this.#partial.slice(nl + 1);
        if (this.#inBody) this.lines.push(line);
        else if (line === '') this.#inBody = true;
        else if (line.toLowerCase().startsWith('x-backend:')) this.backend = line.slice(10).trim();
      }
    });
  }
}

async function until(what: string, condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function main(): Promise<void> {
  const backends: Backend[] = [];
  const proxies: FaultProxy[] = [];
  for (const name of ['b1', 'b2', 'b3']) {
    const backend = await startBackend(name);
    backends.push(backend);
    // Each backend behind a fault switch, so the scenario can cut one silently.
    proxies.push(await FaultProxy.start({ target: { host: '127.0.0.1', port: backend.port } }));
  }

  const pool = new UpstreamPool({ backends: proxies.map((p, i) => ({ ...p.address, id: backends[i]!.name })) });
  const probe = new HealthProbe({ check: { type: 'http', path: '/readyz' }, interval: 250, timeout: 200, fall: 2, rise: 2 });
  probe.attach(pool);
  const agent = pool.createAgent({ keepAlive: true });

  pool.on('backendStateChanged', (b, c) => say(`pool: ${b.id} ${c.from} -> ${c.to} (${c.reason})`));
  pool.on('backendDown', (b, c) => say(`pool: ${b.id} down: ${c.tornDown} stream(s)/socket(s) torn down in the same tick`));
  pool.on('backendMaintenance', (b, c) => say(`pool: ${b.id} in maintenance: ${c.tornDown} torn down`));

  const server = http.createServer((req, res) => forward(agent, req, res));
  server.on('upgrade', createUpgradeHandler(pool, { onError: (err) => say(`gateway: upgrade refused: ${err.code}`) }));
  const gatewaySockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    gatewaySockets.add(s);
    s.once('close', () => gatewaySockets.delete(s));
  });
  server.listen(selfTest ? 0 : Number(process.env.PORT ?? 8080), '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  say(`gateway on http://127.0.0.1:${port} -> ${backends.map((b, i) => `${b.name}=127.0.0.1:${proxies[i]!.port}`).join(' ')}`);

  const watch = new WatchClient({ host: '127.0.0.1', port, tls: false, backoffMs: 50, id: 'watch' });
  let upgrade: UpgradeClient | undefined;
  let upgrade2: UpgradeClient | undefined;
  const failures: string[] = [];
  try {
    // 1. A watch through the gateway.
    await until('the watch', () => watch.connected && watch.events >= 2);
    const first = watch.backend!;
    say(`watch: streaming from ${first}`);

    // 2. An upgraded stream, pinned to its backend.
    upgrade = new UpgradeClient(port);
    upgrade.socket.write('hello\n');
    await until('the upgrade echo', () => upgrade!.lines.length === 1);
    say(`upgrade: pinned to ${upgrade.backend}, echo "${upgrade.lines[0]}"`);

    // 3. The watch's backend goes silent: the probe notices within its
    // `fall` checks and the pool tears the watch down; the client re-watches.
    const victim = proxies[backends.findIndex((b) => b.name === first)]!;
    say(`cut: ${first} stops answering (no FIN, no RST)`);
    const cutAt = Date.now();
    victim.cut();
    await until('the watch to come back elsewhere', () => watch.connected && watch.backend !== first && watch.backend !== undefined);
    say(`watch: re-established on ${watch.backend} ${Date.now() - cutAt} ms after the cut (probe: 250 ms x fall 2)`);
    const eventsBefore = watch.events;
    await until('events on the new stream', () => watch.events >= eventsBefore + 2);

    // 4. An operator takes the upgraded stream's backend out: torn down too.
    const upgradeBackend = upgrade.backend;
    if (upgradeBackend === first) {
      await until('the upgrade to be torn down with the cut backend', () => upgrade!.socket.destroyed);
      say(`upgrade: torn down with ${first}`);
    } else {
      const closed = new Promise((resolve) => upgrade!.socket.once('close', resolve));
      pool.markMaintenance(upgradeBackend, 'maintenance');
      await closed;
      say(`upgrade: torn down when ${upgradeBackend} went into maintenance`);
    }
    upgrade2 = new UpgradeClient(port);
    upgrade2.socket.write('again\n');
    await until('the new upgrade', () => upgrade2!.lines.length === 1);
    say(`upgrade: reconnected to ${upgrade2.backend}, echo "${upgrade2.lines[0]}"`);
    if (upgrade2.backend === upgradeBackend || upgrade2.backend === first) failures.push('the new upgrade landed on a backend out of service');

    const teardowns = pool.stats().teardowns;
    say(`teardowns by reason: ${JSON.stringify(teardowns)}`);
    if ((teardowns['probe-failed'] ?? 0) < 1) failures.push('no probe-failed teardown');
  } catch (err) {
    failures.push((err as Error).message);
  }

  if (!selfTest && failures.length === 0) {
    say(`still serving on http://127.0.0.1:${port} (try: curl -N http://127.0.0.1:${port}/watch); Ctrl-C to stop`);
    await new Promise((resolve) => process.once('SIGINT', resolve));
  }

  await watch.stop();
  upgrade?.socket.destroy();
  upgrade2?.socket.destroy();
  await probe.stop();
  agent.destroy();
  await pool.destroy();
  for (const s of gatewaySockets) s.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  for (const p of proxies) await p.close();
  for (const b of backends) await b.close();
  if (failures.length > 0) {
    say(`FAILED: ${failures.join('; ')}`);
    process.exitCode = 1;
  } else {
    say('done');
  }
}

// A scenario that hangs is a failure too.
setTimeout(() => {
  say('FAILED: did not finish within 20 s');
  process.exit(1);
}, 20_000).unref();

main().catch((err: unknown) => {
  say(`FAILED: ${err instanceof Error ? err.stack : String(err)}`);
  process.exit(1);
});
