// createHttpProxy: a node:http gateway over a pool, on real loopback sockets —
// hop-by-hop headers, X-Forwarded-*, upstream keep-alive, streaming with
// backpressure both ways, error statuses, teardown mid-stream, upgrades.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { createHttpProxy, type HttpProxy, type HttpProxyOptions } from '../src/http-proxy.js';
import { UpstreamError, UpstreamPool, type FailoverProxyError, type UpstreamPoolOptions } from '../src/index.js';
import { closedPort, HOST, waitFor } from './helpers/net.js';

interface Backend {
  readonly port: number;
  /** TCP connections the backend accepted. */
  readonly connections: number;
  readonly server: http.Server;
}

/** An HTTP backend on loopback, every socket and the server closed after the test. */
async function backend(t: TestContext, handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Backend> {
  const sockets = new Set<Socket>();
  let connections = 0;
  const server = http.createServer(handler);
  server.on('connection', (s: Socket) => {
    connections++;
    sockets.add(s);
    s.on('error', () => {});
    s.once('close', () => sockets.delete(s));
  });
  server.listen(0, HOST);
  await once(server, 'listening');
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return {
    port: (server.address() as AddressInfo).port,
    get connections() {
      return connections;
    },
    server,
  };
}

function poolOf(t: TestContext, ports: readonly number[], options: UpstreamPoolOptions = {}): UpstreamPool {
  const pool = new UpstreamPool({ ...options, backends: ports.map((port, i) => ({ id: `b${i + 1}`, host: HOST, port })) });
  t.after(() => pool.destroy());
  return pool;
}

/** A gateway server using the proxy, closed (with its sockets and the proxy's agent) after the test. */
async function gateway(t: TestContext, pool: UpstreamPool, options: HttpProxyOptions = {}): Promise<{ port: number; proxy: HttpProxy }> {
  const proxy = createHttpProxy(pool, options);
  const server = http.createServer(proxy);
  server.on('upgrade', proxy.upgrade);
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.listen(0, HOST);
  await once(server, 'listening');
  t.after(async () => {
    proxy.destroy();
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { port: (server.address() as AddressInfo).port, proxy };
}

/** Sends `text` on a fresh connection and resolves with everything the server sent until it closed. */
async function raw(t: TestContext, port: number, text: string): Promise<string> {
  const socket = net.connect({ host: HOST, port });
  socket.on('error', () => {});
  t.after(() => {
    socket.destroy();
  });
  socket.write(text);
  let out = '';
  socket.setEncoding('latin1').on('data', (d: string) => (out += d));
  await once(socket, 'close');
  return out;
}

/** Splits a raw response into status line, lower-cased header list and body. */
function parseResponse(text: string): { status: number; headers: [string, string][]; body: string } {
  const end = text.indexOf('\r\n\r\n');
  const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
  const headers = lines.map((l): [string, string] => {
    const i = l.indexOf(':');
    return [l.slice(0, i).toLowerCase(), l.slice(i + 1).trim()];
  });
  return { status: Number(statusLine!.split(' ')[1]), headers, body: text.slice(end + 4) };
}

/** `rawHeaders` as [lower-cased name, value] pairs. */
function pairs(rawHeaders: readonly string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) out.push([rawHeaders[i]!.toLowerCase(), rawHeaders[i + 1]!]);
  return out;
}

const hopByHop = ['connection', 'keep-alive', 'proxy-authorization', 'proxy-authenticate', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade'];

test('request headers: hop-by-hop ones (and those Connection names) are stripped, the rest kept as sent, X-Forwarded-* added', async (t) => {
  let seen: string[] = [];
  const b = await backend(t, (req, res) => {
    seen = req.rawHeaders;
    res.end('ok');
  });
  const { port } = await gateway(t, poolOf(t, [b.port]));
  const answer = await raw(
    t,
    port,
    'GET /path?q=1 HTTP/1.1\r\n' +
      'Host: gateway.example\r\n' +
      'Connection: close, X-Hop-Secret\r\n' +
      'X-Hop-Secret: 42\r\n' +
      'Keep-Alive: timeout=99\r\n' +
      'Proxy-Authorization: Basic Zm9vOmJhcg==\r\n' +
      'Proxy-Connection: keep-alive\r\n' +
      'TE: trailers\r\n' +
      'Trailer: X-Checksum\r\n' +
      'Upgrade: h2c\r\n' +
      'X-Dup: one\r\n' +
      'x-dup: two\r\n' +
      'X-Forwarded-For: 203.0.113.7\r\n' +
      'X-Forwarded-Proto: https\r\n' +
      'X-Forwarded-Host: forged.example\r\n' +
      'Accept: */*\r\n\r\n',
  );
  assert.equal(parseResponse(answer).status, 200);
  const headers = pairs(seen);
  for (const name of [...hopByHop.filter((h) => h !== 'connection'), 'x-hop-secret']) {
    assert.ok(!headers.some(([n]) => n === name), `${name} must not reach the backend`);
  }
  // The only Connection header is the agent's own.
  assert.deepEqual(headers.filter(([n]) => n === 'connection'), [['connection', 'keep-alive']]);
  // End-to-end headers as sent: case, order and duplicates kept.
  assert.deepEqual(seen.slice(0, 6), ['Host', 'gateway.example', 'X-Dup', 'one', 'x-dup', 'two']);
  assert.ok(seen.includes('Accept'));
  assert.deepEqual(headers.filter(([n]) => n.startsWith('x-forwarded-')), [
    ['x-forwarded-for', `203.0.113.7, ${HOST}`],
    ['x-forwarded-proto', 'http'],
    ['x-forwarded-host', 'gateway.example'],
  ]);
});

test('xForwarded: false adds nothing and forwards the request\'s own X-Forwarded-* untouched', async (t) => {
  let seen: [string, string][] = [];
  const b = await backend(t, (req, res) => {
    seen = pairs(req.rawHeaders);
    res.end('ok');
  });
  const { port } = await gateway(t, poolOf(t, [b.port]), { xForwarded: false });
  await raw(t, port, 'GET / HTTP/1.1\r\nHost: g\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n');
  assert.deepEqual(seen.filter(([n]) => n.startsWith('x-forwarded-')), [
    ['x-forwarded-for', '203.0.113.7'],
    ['x-forwarded-proto', 'https'],
  ]);
});

test('response headers: hop-by-hop ones are stripped, duplicates (Set-Cookie) and the status kept', async (t) => {
  const b = await backend(t, (_req, res) => {
    res.writeHead(201, [
      'Connection', 'keep-alive, X-Backend-Hop',
      'Keep-Alive', 'timeout=99',
      'X-Backend-Hop', 'internal',
      'Proxy-Authenticate', 'Basic',
      'Trailer', 'X-Checksum',
      'Upgrade', 'h2c',
      'Set-Cookie', 'a=1',
      'Set-Cookie', 'b=2',
      'X-Kept', 'yes',
    ]);
    res.end('made');
  });
  const { port } = await gateway(t, poolOf(t, [b.port]));
  const { status, headers, body } = parseResponse(await raw(t, port, 'GET / HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n'));
  assert.equal(status, 201);
  assert.match(body, /made/);
  assert.deepEqual(headers.filter(([n]) => n === 'set-cookie'), [['set-cookie', 'a=1'], ['set-cookie', 'b=2']]);
  assert.deepEqual(headers.filter(([n]) => n === 'x-kept'), [['x-kept', 'yes']]);
  for (const name of ['x-backend-hop', 'proxy-authenticate', 'trailer', 'upgrade']) {
    assert.ok(!headers.some(([n]) => n === name), `${name} must not reach the client`);
  }
  // The gateway's own connection handling answers the client's Connection: close.
  assert.deepEqual(headers.filter(([n]) => n === 'connection'), [['connection', 'close']]);
  assert.ok(!headers.some(([n, value]) => n === 'keep-alive' && value.includes('99')));
});

test('a client\'s Connection: close does not turn upstream keep-alive off: one backend connection serves both clients', async (t) => {
  const connectionHeaders: (string | undefined)[] = [];
  const b = await backend(t, (req, res) => {
    connectionHeaders.push(req.headers.connection);
    res.end('ok');
  });
  const pool = poolOf(t, [b.port]);
  const { port } = await gateway(t, pool);
  for (let i = 0; i < 2; i++) {
    const answer = parseResponse(await raw(t, port, `GET /${i} HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n`));
    assert.equal(answer.status, 200);
    assert.equal(answer.body, 'ok');
  }
  assert.deepEqual(connectionHeaders, ['keep-alive', 'keep-alive']);
  assert.equal(b.connections, 1, 'the second request reused the kept upstream connection');
  assert.equal(pool.stats().active, 1, 'the upstream socket is still open, idle in the agent');
});

test('a chunked request body is forwarded chunked whatever the method, so it cannot be read as a second request', async (t) => {
  const bodies: string[] = [];
  const b = await backend(t, (req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => (body += d));
    req.on('end', () => {
      bodies.push(`${req.method} ${req.url} ${body}`);
      res.end('ok');
    });
  });
  const { port } = await gateway(t, poolOf(t, [b.port]));
  // A body that is itself a request: sent unframed, the backend would run it.
  const body = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n';
  const answer = await raw(
    t,
    port,
    `DELETE /things/1 HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n` +
      'GET /next HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n',
  );
  assert.equal(answer.match(/HTTP\/1\.1 200/g)?.length, 2);
  assert.deepEqual(bodies, [`DELETE /things/1 ${body}`, 'GET /next ']);
});

test('Connection cannot strip Content-Length (or Host): a body stays framed', async (t) => {
  const seen: string[] = [];
  const b = await backend(t, (req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => (body += d));
    req.on('end', () => {
      seen.push(`${req.method} ${req.url} host=${req.headers.host} ${body}`);
      res.end('ok');
    });
  });
  const { port } = await gateway(t, poolOf(t, [b.port]));
  const body = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n';
  // A second request after it: a smuggled one would have reached the backend before it.
  const answer = await raw(
    t,
    port,
    `GET /a HTTP/1.1\r\nHost: g\r\nConnection: Content-Length, Host\r\nContent-Length: ${body.length}\r\n\r\n${body}` +
      'GET /next HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n',
  );
  assert.equal(answer.match(/HTTP\/1\.1 200/g)?.length, 2);
  assert.deepEqual(seen, [`GET /a host=g ${body}`, 'GET /next host=g ']);
});

/** Resolves once `read()` has stayed the same for `quietMs` (a stalled stream), bounded by `timeoutMs`. */
async function stalled(read: () => number, quietMs = 1000, timeoutMs = 30_000): Promise<number> {
  const start = Date.now();
  let last = read();
  let since = Date.now();
  while (Date.now() - start < timeoutMs) {
    await new Promise((r) => setTimeout(r, 50));
    const now = read();
    if (now !== last) {
      last = now;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) {
      return now;
    }
  }
  throw new Error('the stream never stalled');
}

const MiB = 1024 * 1024;
const TOTAL = 128 * MiB;
// Loopback socket buffers on two hops plus the streams' high-water marks hold
// a few MiB at most; without backpressure the proxy would take all 128.
const BOUND = 48 * MiB;

test('a request body streams with backpressure: a backend that does not read stalls the client', { timeout: 120_000 }, async (t) => {
  let received = 0;
  let release: (() => void) | undefined;
  const b = await backend(t, (req, res) => {
    req.pause();
    release = () => {
      req.on('data', (d: Buffer) => (received += d.length));
      req.on('end', () => res.end(String(received)));
      req.resume();
    };
  });
  const { port } = await gateway(t, poolOf(t, [b.port]));
  const upload = http.request({ host: HOST, port, method: 'PUT', path: '/upload', agent: false });
  upload.on('error', () => {});
  t.after(() => upload.destroy());
  const chunk = Buffer.alloc(MiB, 7);
  let sent = 0;
  let done = false;
  const pump = (): void => {
    while (sent < TOTAL) {
      sent += chunk.length;
      if (!upload.write(chunk)) return;
    }
    if (!done) {
      done = true;
      upload.end();
    }
  };
  upload.on('drain', pump);
  pump();
  const stalledAt = await stalled(() => sent);
  assert.ok(stalledAt < BOUND, `the client stalled after ${stalledAt / MiB} MiB`);
  await waitFor(() => release !== undefined, { what: 'the backend to get the request' });
  const responded = once(upload, 'response') as Promise<[IncomingMessage]>;
  release!();
  const [res] = await responded;
  let body = '';
  res.setEncoding('utf8').on('data', (d: string) => (body += d));
  await once(res, 'end');
  assert.equal(res.statusCode, 200);
  assert.equal(Number(body), TOTAL, 'every byte arrived once the backend read');
});

test('a response body streams with backpressure: a client that does not read stalls the backend', { timeout: 120_000 }, async (t) => {
  let written = 0;
  const b = await backend(t, (_req, res) => {
    const chunk = Buffer.alloc(MiB, 9);
    const pump = (): void => {
      while (written < TOTAL) {
        written += chunk.length;
        if (!res.write(chunk)) return;
      }
      res.end();
    };
    res.on('drain', pump);
    pump();
  });
  const { port } = await gateway(t, poolOf(t, [b.port]));
  const req = http.get({ host: HOST, port, path: '/download', agent: false });
  req.on('error', () => {});
  t.after(() => req.destroy());
  const [res] = (await once(req, 'response')) as [IncomingMessage];
  res.pause();
  const stalledAt = await stalled(() => written);
  assert.ok(stalledAt < BOUND, `the backend stalled after ${stalledAt / MiB} MiB`);
  let received = 0;
  res.on('data', (d: Buffer) => (received += d.length));
  res.resume();
  await once(res, 'end');
  assert.equal(received, TOTAL);
  assert.ok(res.complete);
});

test('no backend up: 503 NO_HEALTHY_BACKEND, in text or JSON, reflecting nothing from the request', async (t) => {
  const b = await backend(t, (_req, res) => res.end('never'));
  const pool = poolOf(t, [b.port], { queue: { max: 0 } });
  pool.markDown('b1', 'probe-failed');
  const errors: string[] = [];
  const { port } = await gateway(t, pool, { onError: (err) => errors.push(err.code) });
  const request = 'GET /%3Cscript%3Ealert(1)%3C/script%3E HTTP/1.1\r\nHost: <script>\r\nX-Evil: <script>\r\nConnection: close\r\n\r\n';
  const text = parseResponse(await raw(t, port, request));
  assert.equal(text.status, 503);
  assert.equal(text.body, 'NO_HEALTHY_BACKEND\n');
  assert.deepEqual(text.headers.find(([n]) => n === 'content-type'), ['content-type', 'text/plain; charset=utf-8']);

  const { port: jsonPort } = await gateway(t, pool, { errorFormat: 'json' });
  const json = parseResponse(await raw(t, jsonPort, request));
  assert.equal(json.status, 503);
  assert.deepEqual(JSON.parse(json.body), { status: 503, code: 'NO_HEALTHY_BACKEND' });
  for (const answer of [text, json]) {
    assert.doesNotMatch(JSON.stringify(answer), /script|alert|evil/i, 'nothing from the request is echoed');
  }
  assert.deepEqual(errors, ['NO_HEALTHY_BACKEND']);
  assert.equal(b.connections, 0);
});

test('a refused connect is 502 CONNECT_FAILED; a connect that hangs is 504 CONNECT_TIMEOUT', async (t) => {
  const refused = poolOf(t, [await closedPort()], { retries: 0 });
  const { port } = await gateway(t, refused);
  const failed = parseResponse(await raw(t, port, 'GET / HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n'));
  assert.equal(failed.status, 502);
  assert.equal(failed.body, 'CONNECT_FAILED\n');

  // A dialler that never connects: the pool's connectTimeout ends it.
  const hanging = poolOf(t, [1], {
    retries: 0,
    connectTimeout: 200,
    dial: (_backend, { signal }) => new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(new Error('aborted')))),
  });
  const { port: port2 } = await gateway(t, hanging);
  const timedOut = parseResponse(await raw(t, port2, 'GET / HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n'));
  assert.equal(timedOut.status, 504);
  assert.equal(timedOut.body, 'CONNECT_TIMEOUT\n');
});

/** A backend with an endless chunked stream: a line every 20 ms. */
async function streamingBackend(t: TestContext): Promise<Backend & { readonly open: number }> {
  let open = 0;
  const b = await backend(t, (_req, res) => {
    open++;
    res.write('first\n');
    const timer = setInterval(() => res.write('tick\n'), 20);
    res.on('close', () => {
      open--;
      clearInterval(timer);
    });
  });
  return {
    port: b.port,
    server: b.server,
    get connections() {
      return b.connections;
    },
    get open() {
      return open;
    },
  };
}

test('a backend marked down mid-stream: the client\'s response is cut short, onError gets BACKEND_DOWN', async (t) => {
  const b = await streamingBackend(t);
  const pool = poolOf(t, [b.port]);
  const errors: FailoverProxyError[] = [];
  const { port } = await gateway(t, pool, { onError: (err) => errors.push(err) });
  const req = http.get({ host: HOST, port, path: '/watch', agent: false });
  req.on('error', () => {});
  t.after(() => req.destroy());
  const [res] = (await once(req, 'response')) as [IncomingMessage];
  assert.equal(res.statusCode, 200);
  let aborted = false;
  res.on('aborted', () => (aborted = true));
  res.on('error', () => {});
  await once(res, 'data');
  const closed = new Promise((resolve) => res.once('close', resolve));
  assert.equal(pool.markDown('b1', 'probe-failed'), 1);
  await closed;
  assert.ok(aborted, 'the client saw the response aborted');
  assert.equal(res.complete, false, 'the client can tell the stream was cut');
  assert.deepEqual(errors.map((e) => e.code), ['BACKEND_DOWN']);
  await waitFor(() => b.open === 0, { what: 'the backend stream to close' });
});

test('a backend that resets the request: 502 UPSTREAM_ERROR, and onError gets an UpstreamError with code and cause', async (t) => {
  const b = await backend(t, (req) => req.socket.resetAndDestroy());
  const pool = poolOf(t, [b.port]);
  const errors: FailoverProxyError[] = [];
  // `code` is typed on what onError receives: no cast.
  const { port } = await gateway(t, pool, { onError: (err) => errors.push(err) });
  const reply = parseResponse(await raw(t, port, 'GET / HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n'));
  assert.equal(reply.status, 502);
  assert.equal(reply.body, 'UPSTREAM_ERROR\n');
  assert.equal(errors.length, 1);
  const [error] = errors;
  assert.ok(error instanceof UpstreamError);
  assert.equal(error.code, 'UPSTREAM_ERROR');
  assert.equal(error.causeCode, 'ECONNRESET');
  assert.equal((error.cause as NodeJS.ErrnoException).code, 'ECONNRESET');
});

test('a client that leaves mid-stream takes its upstream request with it', async (t) => {
  const b = await streamingBackend(t);
  const pool = poolOf(t, [b.port]);
  const errors: FailoverProxyError[] = [];
  const { port } = await gateway(t, pool, { onError: (err) => errors.push(err) });
  const req = http.get({ host: HOST, port, path: '/watch', agent: false });
  req.on('error', () => {});
  const [res] = (await once(req, 'response')) as [IncomingMessage];
  await once(res, 'data');
  assert.equal(b.open, 1);
  req.destroy();
  await waitFor(() => b.open === 0, { what: 'the upstream stream to be closed' });
  await waitFor(() => pool.stats().active === 0, { what: 'the upstream socket to be closed' });
  assert.deepEqual(errors, [], 'a client leaving is not an upstream error');
});

test('upgrades pass through proxy.upgrade and are pinned to their backend', async (t) => {
  const b = await backend(t, (_req, res) => res.end('plain'));
  b.server.on('upgrade', (_req: IncomingMessage, socket: Socket, head: Buffer) => {
    socket.on('error', () => {});
    socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n');
    if (head.length > 0) socket.write(head);
    socket.pipe(socket);
  });
  const pool = poolOf(t, [b.port]);
  const { port } = await gateway(t, pool);
  const client = net.connect({ host: HOST, port });
  client.on('error', () => {});
  t.after(() => {
    client.destroy();
  });
  client.write('GET /echo HTTP/1.1\r\nHost: g\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nhello\n');
  let got = '';
  client.setEncoding('latin1').on('data', (d: string) => (got += d));
  await waitFor(() => got.includes('hello\n'), { what: 'the echo through the upgrade' });
  assert.match(got, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
  assert.equal([...pool.connections('b1')].length, 1, 'pinned as a connection of b1');
  // Reset (resetOnTeardown): 'error' then 'close'.
  const closed = new Promise((resolve) => client.once('close', resolve));
  pool.markDown('b1', 'probe-failed');
  await closed;
});

test('options are validated in one place; a bad one throws INVALID_ARGUMENT and creates nothing', (t) => {
  const pool = poolOf(t, [1]);
  const other = poolOf(t, [2]);
  const otherAgent = other.createAgent();
  t.after(() => otherAgent.destroy());
  const draining = (): number => pool.listenerCount('backendDraining');
  const before = draining();
  for (const [options, mentions] of [
    [{ errorFormat: 'xml' }, 'errorFormat'],
    [{ xForwarded: 'yes' }, 'xForwarded'],
    [{ onError: 'log' }, 'onError'],
    [{ agent: otherAgent }, 'agent'],
    [{ agent: {} }, 'agent'],
    [{ upgrade: 'on' }, 'upgrade'],
    [{ upgrade: { connection: { idleTimeout: -1 } } }, 'idleTimeout'],
    [{ retries: 1 }, 'retries'],
  ] as [HttpProxyOptions, string][]) {
    assert.throws(
      () => createHttpProxy(pool, options),
      (err: FailoverProxyError) => err.code === 'INVALID_ARGUMENT' && err.message.includes(mentions),
      mentions,
    );
  }
  assert.throws(() => createHttpProxy({} as UpstreamPool), { code: 'INVALID_ARGUMENT' });
  assert.equal(draining(), before, 'no agent was created');
});

test('destroy() destroys the agent the proxy made, not one it was given', (t) => {
  const pool = poolOf(t, [1]);
  const draining = (): number => pool.listenerCount('backendDraining');
  const base = draining();
  const own = createHttpProxy(pool);
  assert.equal(own.agent.pool, pool);
  assert.equal(draining(), base + 1);
  own.destroy();
  assert.equal(draining(), base);

  const given = pool.createAgent({ maxSockets: 4 });
  t.after(() => given.destroy());
  const proxy = createHttpProxy(pool, { agent: given });
  assert.equal(proxy.agent, given);
  proxy.destroy();
  assert.equal(draining(), base + 1, 'the given agent still follows the pool');
});
