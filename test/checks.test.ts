import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { createSecureContext, createServer as createTlsServer } from 'node:tls';
import { resolveBackend, type Backend, type BackendSpec } from '../src/backend.js';
import type { CheckFunction } from '../src/checks/check.js';
import { customCheck } from '../src/checks/custom-check.js';
import { resolveCheck, type CheckSpec } from '../src/checks/resolve-check.js';
import { httpCheck, httpsCheck } from '../src/checks/http.js';
import { tcpCheck } from '../src/checks/tcp.js';
import { tlsCheck } from '../src/checks/tls.js';
import { CheckError, type CheckLayer, type ErrorCode } from '../src/errors.js';
import { handlesSettledTo } from './helpers/net.js';

const fixture = (name: string): Buffer => readFileSync(new URL(`./fixtures/${name}`, import.meta.url));
const ca = fixture('ca.crt');
const serverCert = { cert: fixture('server.crt'), key: fixture('server.key') };
const otherServerCert = { cert: fixture('other-server.crt'), key: fixture('other-server.key') };
const wrongNameCert = { cert: fixture('wrong-name.crt'), key: fixture('wrong-name.key') };
const clientCert = { cert: fixture('client.crt'), key: fixture('client.key') };

const layerCode: Record<CheckLayer, ErrorCode> = {
  connect: 'PROBE_CONNECT_FAILED',
  tls: 'PROBE_TLS_FAILED',
  protocol: 'PROBE_BAD_RESPONSE',
  timeout: 'PROBE_TIMEOUT',
  custom: 'PROBE_CHECK_FAILED',
  local: 'PROBE_LOCAL_ERROR',
};

/** Listens on 127.0.0.1:0, tracks connections, and closes everything in `t.after`. Returns the port and a closer. */
async function listen(t: TestContext, server: Server): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const socket of sockets) socket.destroy();
    }));
  t.after(close);
  return { port: (server.address() as AddressInfo).port, close };
}

function backendAt(port: number, spec: Partial<BackendSpec> = {}): Backend {
  return resolveBackend({ host: '127.0.0.1', port, ...spec });
}

/** A port nothing listens on: bound, then released. */
async function closedPort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Runs `check` with a signal nobody aborts. */
function runCheck(check: CheckFunction, backend: Backend): Promise<unknown> {
  return check(backend, { signal: new AbortController().signal });
}

/** Asserts `promise` rejects with a `CheckError` of `layer` (and its code), returning the error. */
async function rejectsAt(promise: Promise<unknown>, layer: CheckLayer, message?: RegExp): Promise<CheckError> {
  let caught: unknown;
  await assert.rejects(promise, (err: unknown) => {
    caught = err;
    return true;
  });
  assert.ok(caught instanceof CheckError, `expected a CheckError, got ${String(caught)}`);
  assert.equal(caught.layer, layer, `layer of: ${caught.message}`);
  assert.equal(caught.code, layerCode[layer]);
  if (message) assert.match(caught.message, message);
  return caught;
}



function causeCode(err: CheckError): unknown {
  return (err.cause as { code?: unknown } | undefined)?.code;
}

// ---------------------------------------------------------------- tcp

test('tcp: passes against a listening port', async (t) => {
  const { port } = await listen(t, createNetServer());
  await runCheck(tcpCheck(), backendAt(port));
});

test('tcp: a refused port fails at layer connect', async () => {
  const err = await rejectsAt(runCheck(tcpCheck(), backendAt(await closedPort())), 'connect');
  assert.equal(causeCode(err), 'ECONNREFUSED');
});

test('tcp: an already-aborted signal fails at layer timeout without dialling', async (t) => {
  let connections = 0;
  const server = createNetServer(() => connections++);
  const { port } = await listen(t, server);
  const controller = new AbortController();
  controller.abort();
  await rejectsAt(tcpCheck()(backendAt(port), { signal: controller.signal }), 'timeout');
  assert.equal(connections, 0);
});

// ---------------------------------------------------------------- tls

test('tls: passes with the right CA, verifying the IP SAN of an IP host', async (t) => {
  const { port } = await listen(t, createTlsServer(serverCert, (s) => s.end()));
  await runCheck(tlsCheck({ ca }), backendAt(port));
});

test('tls: SNI is backend.servername, else the host name, and none for an IP', async (t) => {
  const seen: string[] = [];
  const context = createSecureContext(serverCert);
  const server = createTlsServer(
    {
      ...serverCert,
      // Called only when the client sends SNI.
      SNICallback: (name, callback) => {
        seen.push(name);
        callback(null, context);
      },
    },
    (s) => s.end(),
  );
  const { port } = await listen(t, server);
  await runCheck(tlsCheck({ ca }), backendAt(port, { host: 'localhost' }));
  await runCheck(tlsCheck({ ca }), backendAt(port, { servername: 'apiserver.test' }));
  await runCheck(tlsCheck({ ca, servername: 'kubernetes.default.svc' }), backendAt(port, { servername: 'apiserver.test' }));
  await runCheck(tlsCheck({ ca }), backendAt(port));
  assert.deepEqual(seen, ['localhost', 'apiserver.test', 'kubernetes.default.svc']);
});

test('tls: an untrusted issuer fails at layer tls', async (t) => {
  const { port } = await listen(t, createTlsServer(otherServerCert, (s) => s.end()));
  const err = await rejectsAt(runCheck(tlsCheck({ ca }), backendAt(port)), 'tls');
  assert.equal(causeCode(err), 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
});

test('tls: the wrong name fails at layer tls', async (t) => {
  const { port } = await listen(t, createTlsServer(wrongNameCert, (s) => s.end()));
  const err = await rejectsAt(runCheck(tlsCheck({ ca }), backendAt(port)), 'tls');
  assert.equal(causeCode(err), 'ERR_TLS_CERT_ALTNAME_INVALID');
});

test('tls: verification is on by default (Node roots do not trust the test CA)', async (t) => {
  const { port } = await listen(t, createTlsServer(serverCert, (s) => s.end()));
  await rejectsAt(runCheck(tlsCheck(), backendAt(port)), 'tls');
});

test('tls: rejectUnauthorized: false accepts an untrusted certificate', async (t) => {
  const { port } = await listen(t, createTlsServer(otherServerCert, (s) => s.end()));
  await runCheck(tlsCheck({ rejectUnauthorized: false }), backendAt(port));
});

test('tls: a refused port fails at layer connect', async () => {
  await rejectsAt(runCheck(tlsCheck({ ca }), backendAt(await closedPort())), 'connect');
});

test('tls: a server speaking something else fails at layer tls', async (t) => {
  const { port } = await listen(t, createNetServer((s) => s.end('SSH-2.0-OpenSSH_9.6\r\n')));
  await rejectsAt(runCheck(tlsCheck({ ca }), backendAt(port)), 'tls');
});

test('tls: a server that never answers the handshake fails at layer timeout on abort', async (t) => {
  let connected!: () => void;
  const accepted = new Promise<void>((resolve) => (connected = resolve));
  const { port } = await listen(t, createNetServer(() => connected()));
  const controller = new AbortController();
  const check = tlsCheck({ ca })(backendAt(port), { signal: controller.signal });
  await accepted;
  controller.abort();
  await rejectsAt(check, 'timeout');
});

// ---------------------------------------------------------------- http

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

async function httpServer(t: TestContext, handler: Handler): Promise<number> {
  return (await listen(t, createHttpServer(handler))).port;
}

test('http: passes on 200 and sends GET /readyz with a Host header by default', async (t) => {
  const requests: { method?: string | undefined; url?: string | undefined; host?: string | undefined; connection?: string | undefined }[] = [];
  const port = await httpServer(t, (req, res) => {
    requests.push({ method: req.method, url: req.url, host: req.headers.host, connection: req.headers.connection });
    res.end('ok');
  });
  await runCheck(httpCheck(), backendAt(port));
  assert.deepEqual(requests, [{ method: 'GET', url: '/readyz', host: `127.0.0.1:${port}`, connection: 'close' }]);
});

test('http: method, path and headers are sent as given', async (t) => {
  let seen: IncomingMessage | undefined;
  const port = await httpServer(t, (req, res) => {
    seen = req;
    res.end();
  });
  await runCheck(httpCheck({ method: 'HEAD', path: '/healthz?verbose=1', headers: { 'x-probe': 'yes', host: 'api.internal' } }), backendAt(port));
  assert.equal(seen?.method, 'HEAD');
  assert.equal(seen?.url, '/healthz?verbose=1');
  assert.equal(seen?.headers['x-probe'], 'yes');
  assert.equal(seen?.headers.host, 'api.internal');
});

test('http: any 2xx or 3xx passes by default; other statuses fail at layer protocol', async (t) => {
  let status = 200;
  const port = await httpServer(t, (_req, res) => {
    res.statusCode = status;
    res.end();
  });
  for (const ok of [200, 204, 301, 399]) {
    status = ok;
    await runCheck(httpCheck(), backendAt(port));
  }
  for (const bad of [400, 404, 500, 503]) {
    status = bad;
    await rejectsAt(runCheck(httpCheck(), backendAt(port)), 'protocol', new RegExp(`answered ${bad}, expected 2xx or 3xx`));
  }
});

test('http: expect takes one status or a list', async (t) => {
  let status = 503;
  const port = await httpServer(t, (_req, res) => {
    res.statusCode = status;
    res.end();
  });
  await runCheck(httpCheck({ expect: 503 }), backendAt(port));
  await runCheck(httpCheck({ expect: [200, 503] }), backendAt(port));
  status = 200;
  await rejectsAt(runCheck(httpCheck({ expect: 503 }), backendAt(port)), 'protocol', /answered 200, expected 503/);
  status = 301;
  await rejectsAt(runCheck(httpCheck({ expect: [200, 204] }), backendAt(port)), 'protocol', /expected one of 200, 204/);
});

test('http: the body predicate decides after the status', async (t) => {
  let body = 'ok';
  const port = await httpServer(t, (_req, res) => res.end(body));
  const seen: string[] = [];
  const check = httpCheck({
    body: (text) => {
      seen.push(text);
      return text === 'ok';
    },
  });
  await runCheck(check, backendAt(port));
  body = 'degraded';
  await rejectsAt(runCheck(check, backendAt(port)), 'protocol', /predicate refused/);
  // Multi-byte characters split across chunks still decode.
  body = 'é'.repeat(5000);
  await rejectsAt(runCheck(check, backendAt(port)), 'protocol');
  assert.deepEqual(seen, ['ok', 'degraded', 'é'.repeat(5000)]);
});

test('http: a throwing or non-boolean predicate fails at layer protocol', async (t) => {
  const port = await httpServer(t, (_req, res) => res.end('{"status":"ok"}'));
  const boom = new Error('boom');
  const err = await rejectsAt(
    runCheck(
      httpCheck({
        body: () => {
          throw boom;
        },
      }),
      backendAt(port),
    ),
    'protocol',
    /threw/,
  );
  assert.equal(err.cause, boom);
  // Only `true` passes: a truthy value (a forgotten `await`, say) does not.
  await rejectsAt(runCheck(httpCheck({ body: (() => Promise.resolve(true)) as never }), backendAt(port)), 'protocol');
});

const tenMiB = 10 * 1024 * 1024;

/** A server streaming `total` bytes (or forever) with backpressure, stopping when the client goes. */
function streamingHandler(total: number, declareLength: boolean): Handler {
  const chunk = Buffer.alloc(64 * 1024, 'a');
  return (_req, res) => {
    res.writeHead(200, declareLength ? { 'content-length': total } : {});
    let sent = 0;
    const pump = (): void => {
      while (!res.destroyed && sent < total) {
        sent += chunk.length;
        if (!res.write(chunk)) {
          res.once('drain', pump);
          return;
        }
      }
      if (!res.destroyed) res.end();
    };
    pump();
  };
}

test('http: a 10 MiB body is not buffered: the predicate check fails at maxBodyBytes', async (t) => {
  for (const declareLength of [true, false]) {
    const port = await httpServer(t, streamingHandler(tenMiB, declareLength));
    let called = false;
    const predicate = (): boolean => (called = true);
    await rejectsAt(runCheck(httpCheck({ body: predicate }), backendAt(port)), 'protocol', /longer than maxBodyBytes \(65536\)/);
    assert.equal(called, false, 'the predicate never sees a truncated body');
  }
});

test('http: an endless body fails with a predicate and passes without one (the status decides)', async (t) => {
  const port = await httpServer(t, streamingHandler(Infinity, false));
  await rejectsAt(runCheck(httpCheck({ body: () => true, maxBodyBytes: 1024 }), backendAt(port)), 'protocol', /maxBodyBytes \(1024\)/);
  await runCheck(httpCheck(), backendAt(port));
});

test('http: a body within maxBodyBytes is read whole', async (t) => {
  const port = await httpServer(t, (_req, res) => res.end('x'.repeat(1024)));
  await runCheck(httpCheck({ body: (text) => text.length === 1024, maxBodyBytes: 1024 }), backendAt(port));
  await rejectsAt(runCheck(httpCheck({ body: () => true, maxBodyBytes: 1023 }), backendAt(port)), 'protocol');
});

test('http: headers that never end fail at layer timeout on abort', async (t) => {
  let requested!: () => void;
  const gotRequest = new Promise<void>((resolve) => (requested = resolve));
  const { port } = await listen(
    t,
    createNetServer((s) =>
      s.once('data', () => {
        s.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n');
        requested();
      }),
    ),
  );
  const controller = new AbortController();
  const check = httpCheck()(backendAt(port), { signal: controller.signal });
  await gotRequest;
  controller.abort();
  await rejectsAt(check, 'timeout');
});

test('http: an endless header block fails at layer protocol (the parser bounds it)', async (t) => {
  const { port } = await listen(
    t,
    createNetServer((s) =>
      s.once('data', () => {
        s.write('HTTP/1.1 200 OK\r\n');
        const line = Buffer.from(`X-Filler: ${'f'.repeat(1000)}\r\n`);
        const pump = (): void => {
          while (!s.destroyed && s.write(line));
          if (!s.destroyed) s.once('drain', pump);
        };
        pump();
      }),
    ),
  );
  const err = await rejectsAt(runCheck(httpCheck(), backendAt(port)), 'protocol');
  assert.equal(causeCode(err), 'HPE_HEADER_OVERFLOW');
});

test('http: garbage bytes fail at layer protocol', async (t) => {
  const { port } = await listen(t, createNetServer((s) => s.once('data', () => s.end('\x00\x01garbage\r\n\r\n'))));
  const err = await rejectsAt(runCheck(httpCheck(), backendAt(port)), 'protocol');
  assert.match(String(causeCode(err)), /^HPE_/);
});

test('http: a connection closed without an answer fails at layer protocol', async (t) => {
  const { port } = await listen(t, createNetServer((s) => s.once('data', () => s.end())));
  await rejectsAt(runCheck(httpCheck(), backendAt(port)), 'protocol');
});

test('http: a refused port fails at layer connect', async () => {
  await rejectsAt(runCheck(httpCheck(), backendAt(await closedPort())), 'connect');
});

// ---------------------------------------------------------------- https

test('https: passes with the right CA; an untrusted issuer or wrong name fails at layer tls', async (t) => {
  const handler: Handler = (_req, res) => res.end('ok');
  const good = await listen(t, createHttpsServer(serverCert, handler));
  const untrusted = await listen(t, createHttpsServer(otherServerCert, handler));
  const wrongName = await listen(t, createHttpsServer(wrongNameCert, handler));
  await runCheck(httpsCheck({ ca, body: (text) => text === 'ok' }), backendAt(good.port));
  await rejectsAt(runCheck(httpsCheck({ ca }), backendAt(untrusted.port)), 'tls');
  await rejectsAt(runCheck(httpsCheck({ ca }), backendAt(wrongName.port)), 'tls');
  await runCheck(httpsCheck({ rejectUnauthorized: false }), backendAt(untrusted.port));
});

test('https: the Host header carries the TLS name', async (t) => {
  let host: string | undefined;
  const { port } = await listen(
    t,
    createHttpsServer(serverCert, (req, res) => {
      host = req.headers.host;
      res.end();
    }),
  );
  await runCheck(httpsCheck({ ca }), backendAt(port, { servername: 'apiserver.test' }));
  assert.equal(host, `apiserver.test:${port}`);
});

test('https: mutual TLS passes with the client certificate and fails at layer tls without it', async (t) => {
  const { port } = await listen(
    t,
    createHttpsServer({ ...serverCert, ca, requestCert: true, rejectUnauthorized: true }, (_req, res) => res.end('ok')),
  );
  await runCheck(httpsCheck({ ca, ...clientCert }), backendAt(port));
  await rejectsAt(runCheck(httpsCheck({ ca }), backendAt(port)), 'tls');
});

test('https: plain HTTP on the port fails at layer tls', async (t) => {
  const port = await httpServer(t, (_req, res) => res.end());
  await rejectsAt(runCheck(httpsCheck({ ca }), backendAt(port)), 'tls');
});

// ---------------------------------------------------------------- handles

test('every check leaves no handle behind, on success, failure and abort', async (t) => {
  const before = await handlesSettledTo([]);
  const silent = await listen(t, createNetServer());
  const tls = await listen(t, createTlsServer(serverCert, (s) => s.end()));
  const http = await listen(t, createHttpServer((_req, res) => res.end()));
  const checks: [string, CheckFunction, number][] = [
    ['tcp', tcpCheck(), http.port],
    ['tls', tlsCheck({ ca }), tls.port],
    ['tls (wrong CA)', tlsCheck({ ca: fixture('other-ca.crt') }), tls.port],
    ['http', httpCheck(), http.port],
    ['tls (silent, aborted)', tlsCheck({ ca }), silent.port],
    ['http (silent, aborted)', httpCheck(), silent.port],
  ];
  for (const [name, check, port] of checks) {
    const controller = new AbortController();
    const running = check(backendAt(port), { signal: controller.signal });
    if (name.includes('aborted')) setImmediate(() => controller.abort());
    await running.catch(() => undefined);
  }
  await Promise.all([silent.close(), tls.close(), http.close()]);
  assert.deepEqual(await handlesSettledTo(before), before);
});

// ---------------------------------------------------------------- custom

test('custom: a resolving function passes; a throw fails at layer custom with the cause', async () => {
  const backend = backendAt(1);
  await runCheck(customCheck(() => Promise.resolve()), backend);
  const cause = new Error('no leader');
  const err = await rejectsAt(runCheck(customCheck(() => Promise.reject(cause)), backend), 'custom', /no leader/);
  assert.equal(err.cause, cause);
  // A synchronous throw from a function typed async is caught too.
  await rejectsAt(
    runCheck(
      customCheck(() => {
        throw new Error('sync');
      }),
      backend,
    ),
    'custom',
  );
});

test('custom: a thrown CheckError keeps its layer', async () => {
  const err = new CheckError('protocol', 'etcd says no');
  assert.equal(await runCheck(customCheck(() => Promise.reject(err)), backendAt(1)).catch((e: unknown) => e), err);
});

test('custom: a function ignoring its signal is abandoned at the abort', async () => {
  const controller = new AbortController();
  const never = customCheck(() => new Promise<void>(() => undefined));
  const running = never(backendAt(1), { signal: controller.signal });
  controller.abort(new CheckError('timeout', 'took too long'));
  await rejectsAt(running, 'timeout', /took too long/);
});

test('custom: resolveCheck wraps a function', async () => {
  await rejectsAt(runCheck(resolveCheck(() => Promise.reject(new Error('x'))), backendAt(1)), 'custom');
});

// ---------------------------------------------------------------- resolveCheck

test('resolveCheck builds each built-in type', async (t) => {
  const { port } = await listen(t, createHttpServer((_req, res) => res.end()));
  await runCheck(resolveCheck({ type: 'tcp' }), backendAt(port));
  await runCheck(resolveCheck({ type: 'http', path: '/' }), backendAt(port));
  const tls = await listen(t, createHttpsServer(serverCert, (_req, res) => res.end()));
  await runCheck(resolveCheck({ type: 'tls', ca }), backendAt(tls.port));
  await runCheck(resolveCheck({ type: 'https', ca }), backendAt(tls.port));
});

test('resolveCheck rejects invalid specs with INVALID_ARGUMENT naming the option', () => {
  const cases: [unknown, RegExp][] = [
    [null, /`check`/],
    [{}, /`check\.type`/],
    [{ type: 'udp' }, /`check\.type`/],
    [{ type: 'tcp', path: '/' }, /`check\.path`/],
    [{ type: 'http', path: 'readyz' }, /`check\.path`/],
    [{ type: 'http', path: '/ready z' }, /`check\.path`/],
    [{ type: 'http', method: 'GE T' }, /`check\.method`/],
    [{ type: 'http', expect: 99 }, /`check\.expect`/],
    [{ type: 'http', expect: [] }, /`check\.expect`/],
    [{ type: 'http', expect: [200, 700] }, /`check\.expect\[1\]`/],
    [{ type: 'http', expect: '200' }, /`check\.expect`/],
    [{ type: 'http', headers: { 'bad header': 'x' } }, /`check\.headers`/],
    [{ type: 'http', headers: { 'x-a': 'line\nbreak' } }, /`check\.headers`/],
    [{ type: 'http', headers: { 'x-a': 1 } }, /`check\.headers\.x-a`/],
    [{ type: 'http', body: 'ok' }, /`check\.body`/],
    [{ type: 'http', maxBodyBytes: -1 }, /`check\.maxBodyBytes`/],
    [{ type: 'http', ca: 'PEM' }, /`check\.ca`/],
    [{ type: 'https', rejectUnauthorized: 'no' }, /`check\.rejectUnauthorized`/],
    [{ type: 'https', ca: 42 }, /`check\.ca`/],
    [{ type: 'tls', cert: 'PEM' }, /`check\.cert` and `check\.key`/],
    [{ type: 'tls', servername: '' }, /`check\.servername`/],
    [{ type: 'tls', path: '/' }, /`check\.path`/],
  ];
  for (const [spec, message] of cases) {
    assert.throws(
      () => resolveCheck(spec as CheckSpec),
      (err: unknown) => {
        assert.equal((err as { code?: unknown }).code, 'INVALID_ARGUMENT', `spec ${JSON.stringify(spec)}`);
        assert.match((err as Error).message, message);
        return true;
      },
      `spec ${JSON.stringify(spec)}`,
    );
  }
});
