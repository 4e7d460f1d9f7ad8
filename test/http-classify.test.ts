/**
 * The HTTP check's `classify` option: pass, leaving or fail from the status
 * and, only when the classifier asks, a bounded body. And the reference
 * balancer's `/readyz` classifier on kube-apiserver bodies.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { classifyReadyz } from '../src/cli/readyz.js';
import { resolveBackend } from '../src/backend.js';
import { ConnectionSlot } from '../src/checks/connection-slot.js';
import { httpCheck, type HttpClassifier } from '../src/checks/http.js';
import { CheckError } from '../src/errors.js';
import { HealthProbe } from '../src/index.js';

const SHUTDOWN_BODY = '[+]ping ok\n[+]log ok\n[-]shutdown failed: reason withheld\n[+]poststarthook/start-apiextensions-controllers ok\nreadyz check failed\n';
const ETCD_BODY = '[+]ping ok\n[-]etcd failed: reason withheld\n[+]shutdown ok\nreadyz check failed\n';

/** An HTTP server answering with `answer`; counts body bytes it managed to write. */
async function server(t: TestContext, answer: (req: IncomingMessage, res: ServerResponse) => void): Promise<number> {
  const sockets = new Set<Socket>();
  const srv = createServer(answer);
  srv.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        srv.close(() => resolve());
      }),
  );
  return (srv.address() as AddressInfo).port;
}

function text(status: number, body: string) {
  return (_req: IncomingMessage, res: ServerResponse): void => {
    res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
}

const run = (classify: HttpClassifier, port: number, extra: Record<string, unknown> = {}) =>
  httpCheck({ path: '/readyz', classify, ...extra })(resolveBackend({ host: '127.0.0.1', port }), { signal: AbortSignal.timeout(5000) });

test('classify is validated: a function, and alone (not with expect or body)', () => {
  assert.throws(() => httpCheck({ classify: 'yes' as never }), { code: 'INVALID_ARGUMENT', message: /check\.classify/ });
  assert.throws(() => httpCheck({ classify: () => 'pass', expect: 200 }), { code: 'INVALID_ARGUMENT', message: /classify/ });
  assert.throws(() => httpCheck({ classify: () => 'pass', body: () => true }), { code: 'INVALID_ARGUMENT', message: /classify/ });
  assert.throws(() => new HealthProbe({ check: { type: 'http', classify: () => 'pass', expect: [200] } }), { code: 'INVALID_ARGUMENT' });
});

test('a classifier that decides on the status never has the body read (an endless body is not a problem)', async (t) => {
  const port = await server(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    // An endless body: only a check that reads it would hang or fail.
    const timer = setInterval(() => res.write('x'.repeat(1024)), 5);
    res.on('close', () => clearInterval(timer));
  });
  const calls: (string | undefined)[] = [];
  const result = await run((status, body) => {
    calls.push(body);
    return status === 200 ? 'pass' : 'body';
  }, port, { maxBodyBytes: 16 });
  assert.equal(result, undefined, 'a pass resolves with nothing');
  assert.deepEqual(calls, [undefined]);
});

test('leaving: the check resolves with the answer and the classifier message', async (t) => {
  const port = await server(t, text(500, SHUTDOWN_BODY));
  const result = await run(classifyReadyz, port);
  assert.deepEqual(result, { outcome: 'leaving', message: `\`127.0.0.1:${port}\` answered 500, leaving: [-]shutdown failed: reason withheld` });
});

test('fail: any other failing readyz rejects at layer protocol with the failing line', async (t) => {
  const port = await server(t, text(500, ETCD_BODY));
  await assert.rejects(run(classifyReadyz, port), (err: unknown) => {
    assert.ok(err instanceof CheckError);
    assert.equal(err.code, 'PROBE_BAD_RESPONSE');
    assert.equal(err.layer, 'protocol');
    assert.match(err.message, /answered 500: \[-\]etcd failed/);
    return true;
  });
});

test('a body longer than maxBodyBytes, asked for, fails; a throwing or wordless classifier fails', async (t) => {
  const port = await server(t, text(500, SHUTDOWN_BODY));
  await assert.rejects(run(classifyReadyz, port, { maxBodyBytes: 10 }), { code: 'PROBE_BAD_RESPONSE', message: /longer than maxBodyBytes/ });
  await assert.rejects(
    run(() => {
      throw new Error('boom');
    }, port),
    { code: 'PROBE_BAD_RESPONSE', message: /classifier threw/ },
  );
  await assert.rejects(run(() => 'maybe' as never, port), { code: 'PROBE_BAD_RESPONSE', message: /no outcome/ });
  // Asking for the body twice is a fail, not a loop.
  await assert.rejects(run(() => 'body', port), { code: 'PROBE_BAD_RESPONSE' });
});

test('a leaving answer keeps the connection for the next check, as a pass does', async (t) => {
  let connections = 0;
  const port = await server(t, (req, res) => {
    if (req.socket.listenerCount('x-seen') === 0) {
      req.socket.on('x-seen', () => undefined);
      connections++;
    }
    text(500, SHUTDOWN_BODY)(req, res);
  });
  const check = httpCheck({ path: '/readyz', classify: classifyReadyz });
  const backend = resolveBackend({ host: '127.0.0.1', port });
  const connection = new ConnectionSlot();
  t.after(() => connection.close());
  for (let i = 0; i < 3; i++) {
    const result = await check(backend, { signal: AbortSignal.timeout(5000), connection });
    assert.equal((result as { outcome?: string } | undefined)?.outcome, 'leaving');
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.equal(connections, 1);
});

test('classifyReadyz: 2xx/3xx pass without the body; [-]shutdown is leaving; anything else fails', () => {
  assert.equal(classifyReadyz(200, undefined), 'pass');
  assert.equal(classifyReadyz(500, undefined), 'body');
  assert.deepEqual(classifyReadyz(500, SHUTDOWN_BODY), { outcome: 'leaving', message: '[-]shutdown failed: reason withheld' });
  assert.deepEqual(classifyReadyz(500, ETCD_BODY), { outcome: 'fail', message: '[-]etcd failed: reason withheld' });
  // `[+]shutdown ok` is not a shutdown; a body that only mentions it mid-line neither.
  assert.deepEqual(classifyReadyz(503, 'not ready: see [-]shutdown'), { outcome: 'fail', message: undefined });
  assert.deepEqual(classifyReadyz(500, ''), { outcome: 'fail', message: undefined });
});
