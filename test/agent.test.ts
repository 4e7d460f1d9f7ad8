import assert from 'node:assert/strict';
import { once } from 'node:events';
import http, { type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { ApiserverBackend } from '../examples/support/apiserver-backend.js';
import { FaultProxy } from '../examples/support/fault-proxy.js';
import { HealthProbe } from '../src/health-probe.js';
import { PinnedSocket, UpstreamPool, type FailoverProxyError, type PoolAgent, type UpstreamPoolOptions } from '../src/index.js';
import { activeResources, closedPort, HOST, settle, waitFor } from './helpers/net.js';

/** Three plain-HTTP apiserver-like backends, closed after the test. */
async function backends(t: TestContext, n = 3): Promise<ApiserverBackend[]> {
  const out: ApiserverBackend[] = [];
  for (let i = 1; i <= n; i++) {
    const b = await ApiserverBackend.start({ name: `b${i}`, tls: false, watchIntervalMs: 50 });
    t.after(() => b.close());
    out.push(b);
  }
  return out;
}

function poolOf(t: TestContext, list: readonly { address: { host: string; port: number }; name: string }[], options: UpstreamPoolOptions = {}): UpstreamPool {
  const pool = new UpstreamPool({ ...options, backends: list.map((b) => ({ ...b.address, id: b.name })) });
  t.after(() => pool.destroy());
  return pool;
}

function agentOf(t: TestContext, pool: UpstreamPool, options: Parameters<UpstreamPool['createAgent']>[0] = {}): PoolAgent {
  const agent = pool.createAgent(options);
  t.after(() => agent.destroy());
  return agent;
}

/** GET through the agent; resolves with the response (body not read). */
function get(agent: http.Agent, path: string, headers: Record<string, string> = {}): Promise<{ req: http.ClientRequest; res: IncomingMessage }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: 'apiserver.invalid', path, agent, headers });
    req.once('error', reject);
    req.once('response', (res) => resolve({ req, res }));
  });
}

/** GET and read the whole body; resolves with the backend that answered. */
async function fetchBackend(agent: http.Agent, path = '/readyz', headers: Record<string, string> = {}): Promise<{ backend: string; socket: Socket }> {
  const { res } = await get(agent, path, headers);
  const socket = res.socket;
  res.resume();
  await once(res, 'end');
  return { backend: String(res.headers['x-backend']), socket };
}

test('a streaming response fails with BACKEND_DOWN when its backend is marked down, and the retry lands elsewhere', async (t) => {
  const list = await backends(t);
  const pool = poolOf(t, list);
  const agent = agentOf(t, pool);

  const { req, res } = await get(agent, '/watch');
  const served = String(res.headers['x-backend']);
  await once(res, 'data');
  const reqError = once(req, 'error');
  const resError = once(res, 'error');
  let aborted = false;
  res.once('aborted', () => (aborted = true));
  const closed: string[] = [];
  pool.on('connectionClosed', (s, info) => closed.push(`${s.backend?.id}:${info.reason}`));

  assert.equal(pool.markDown(served, 'probe-failed'), 1);
  // Synchronous: when markDown returns the stream is already cut.
  assert.ok(res.destroyed, 'response destroyed before markDown returned');
  assert.ok(aborted, "the response emitted 'aborted'");
  assert.deepEqual(closed, [`${served}:probe-failed`]);
  assert.equal([...pool.sockets(served)].length, 0);

  const [errOnReq] = (await reqError) as [FailoverProxyError];
  const [errOnRes] = (await resError) as [FailoverProxyError];
  assert.equal(errOnReq.code, 'BACKEND_DOWN');
  assert.equal(errOnRes.code, 'BACKEND_DOWN');
  assert.equal((errOnRes as FailoverProxyError & { reason: string }).reason, 'probe-failed');

  // The client re-watches: the pool gives it a live backend.
  const again = await get(agent, '/watch');
  assert.notEqual(again.res.headers['x-backend'], served);
  again.req.destroy();
  assert.equal(pool.stats().teardowns['probe-failed'], 1);
});

test('a watch through the agent is cut when a probe fails its silently cut backend, and re-established on another', async (t) => {
  const list = await backends(t, 2);
  const proxies: FaultProxy[] = [];
  for (const b of list) {
    const proxy = await FaultProxy.start({ target: b.address });
    t.after(() => proxy.close());
    proxies.push(proxy);
  }
  const pool = new UpstreamPool({ backends: proxies.map((p, i) => ({ ...p.address, id: list[i]!.name })) });
  t.after(() => pool.destroy());
  const probe = new HealthProbe({ check: { type: 'http', path: '/readyz' }, interval: 200, timeout: 150, fall: 2, rise: 1, jitter: 0 });
  t.after(() => probe.stop());
  probe.attach(pool);
  const agent = agentOf(t, pool);

  const { req, res } = await get(agent, '/watch');
  req.on('error', () => {});
  const served = String(res.headers['x-backend']);
  const proxy = proxies[list.findIndex((b) => b.name === served)]!;
  await once(res, 'data');

  // Count the checks of the cut backend after the cut, and look at the
  // stream at the very moment the pool takes the backend down.
  let failedChecks = 0;
  probe.on('checked', (result) => {
    if (result.backend.id === served && !result.ok) failedChecks++;
  });
  let streamCutAtVerdict: boolean | undefined;
  pool.on('backendDown', (backend) => {
    if (backend.id === served) streamCutAtVerdict = res.destroyed;
  });
  const resError = once(res, 'error');
  proxy.cut();

  const [err] = (await resError) as [FailoverProxyError & { reason: string }];
  assert.equal(err.code, 'BACKEND_DOWN');
  assert.equal(err.reason, 'probe-failed');
  assert.equal(streamCutAtVerdict, true, 'the stream was already cut when backendDown was emitted');
  assert.equal(failedChecks, 2, 'cut by the fall-th failed check, not later');

  const again = await get(agent, '/watch');
  assert.notEqual(again.res.headers['x-backend'], served);
  await once(again.res, 'data');
  again.req.destroy();
});

test('idle keep-alive sockets to a down backend are evicted at once and never reused', async (t) => {
  const list = await backends(t, 2);
  // The request's x-want header steers which backend a new socket goes to.
  const pool = poolOf(t, list, {
    balancer: (candidates, context) => candidates.find((c) => c.backend.id === context.meta?.want) ?? candidates[0],
  });
  const agent = agentOf(t, pool, {
    context: (request) => ({ meta: { want: (request.headers as Record<string, string> | undefined)?.['x-want'] } }),
  });

  // Leave one idle socket to each backend, b1's last in the free list: Node
  // takes free sockets from the end (lifo) without checking them.
  const hold = http.request({ host: 'x', path: '/echo', method: 'POST', agent, headers: { 'x-want': 'b1' } });
  hold.write('held');
  const held = once(hold, 'response');
  assert.equal((await fetchBackend(agent, '/readyz', { 'x-want': 'b2' })).backend, 'b2');
  hold.end();
  const [holdRes] = (await held) as [IncomingMessage];
  holdRes.resume();
  await once(holdRes, 'end');
  await waitFor(() => Object.values(agent.freeSockets).flat().length === 2, { what: 'two idle sockets' });
  const idle = Object.values(agent.freeSockets).flat() as Socket[];
  const toB1 = new Set(idle.filter((s) => [...pool.sockets('b1')].some((p) => p.upstream === s)));
  assert.equal(toB1.size, 1);
  assert.equal(idle.at(-1), [...toB1][0], "b1's idle socket is the one Node would hand out next");

  assert.equal(pool.markDown('b1'), 1);
  // Same tick: gone from the agent's free list and from the registry.
  assert.ok(Object.values(agent.freeSockets).flat().every((s) => !toB1.has(s as Socket)));
  assert.equal([...pool.sockets('b1')].length, 0);
  const next = fetchBackend(agent, '/readyz', { 'x-want': 'b1' });
  const results = [await next];
  for (let i = 0; i < 5; i++) results.push(await fetchBackend(agent, '/readyz', { 'x-want': 'b1' }));
  for (const r of results) {
    assert.equal(r.backend, 'b2');
    assert.ok(!toB1.has(r.socket));
  }
  assert.equal(pool.stats().teardowns['marked-down'], 1);
});

test('draining: idle sockets are evicted, a request in flight finishes, and its socket is not kept', async (t) => {
  const list = await backends(t, 2);
  const pool = poolOf(t, list, {
    balancer: (candidates, context) => candidates.find((c) => c.backend.id === context.meta?.want) ?? candidates[0],
  });
  const agent = agentOf(t, pool, {
    context: (request) => ({ meta: { want: (request.headers as Record<string, string> | undefined)?.['x-want'] } }),
  });
  // One socket to b1 busy with a request whose body is not all sent, and one idle.
  const busy = http.request({ host: 'x', path: '/echo', method: 'POST', agent, headers: { 'x-want': 'b1' } });
  const response = once(busy, 'response');
  busy.write('a');
  await waitFor(() => [...pool.sockets('b1')].length === 1, { what: 'the busy socket' });
  await fetchBackend(agent, '/readyz', { 'x-want': 'b1' });
  await waitFor(() => Object.values(agent.freeSockets).flat().length === 1, { what: 'an idle socket' });
  const reasons: string[] = [];
  pool.on('connectionClosed', (_s, info) => reasons.push(info.reason));

  const drained = pool.drain('b1', { timeout: 20_000 });
  assert.deepEqual(reasons, ['drained'], 'the idle socket was evicted at once');
  assert.equal([...pool.sockets('b1')].length, 1);

  const [res] = (await response) as [IncomingMessage];
  let body = '';
  res.setEncoding('utf8');
  res.on('data', (c: string) => (body += c));
  busy.end('b');
  await once(res, 'end');
  assert.equal(body, 'ab', 'the request in flight completed');
  await drained;
  assert.equal([...pool.sockets('b1')].length, 0, 'its socket was closed, not kept idle');
  assert.equal(Object.values(agent.freeSockets).flat().length, 0);
  assert.equal((await fetchBackend(agent, '/readyz', { 'x-want': 'b1' })).backend, 'b2');
});

test('a refused dial is a passive health signal and the request is retried on another backend', async (t) => {
  const [good] = await backends(t, 1);
  const refused = await closedPort();
  const pool = new UpstreamPool({
    backends: [{ host: HOST, port: refused, id: 'refused' }, { ...good!.address, id: 'b1' }],
    balancer: (candidates) => candidates.find((c) => c.backend.id === 'refused') ?? candidates[0],
  });
  t.after(() => pool.destroy());
  const failures: string[] = [];
  pool.on('connectFailed', (b, err) => failures.push(`${b.id}:${err.code}`));
  const agent = agentOf(t, pool);
  assert.equal((await fetchBackend(agent)).backend, 'b1');
  assert.deepEqual(failures, ['refused:CONNECT_FAILED']);
});

test('with nothing up the request fails with the pool code', async (t) => {
  const [b] = await backends(t, 1);
  const pool = poolOf(t, [b!], { queue: { max: 0 } });
  const agent = agentOf(t, pool);
  pool.markDown('b1');
  await assert.rejects(fetchBackend(agent), (err: FailoverProxyError) => err.code === 'NO_HEALTHY_BACKEND');
});

test('agent sockets count in stats, are listed by sockets() only, and leave nothing behind', async (t) => {
  const before = activeResources();
  const list = await backends(t, 2);
  const pool = new UpstreamPool({ backends: list.map((b) => ({ ...b.address, id: b.name })) });
  const agent = pool.createAgent();
  const opened: string[] = [];
  pool.on('connectionOpened', (s) => opened.push(s.id));
  pool.on('connectionOpened', (m) => assert.equal(m.kind, 'socket', 'agent sockets are members of kind socket'));
  await fetchBackend(agent);
  assert.equal(opened.length, 1);
  assert.equal([...pool.connections()].length, 0);
  const sockets = [...pool.sockets()];
  assert.equal(sockets.length, 1);
  assert.ok(sockets[0] instanceof PinnedSocket);
  const stats = pool.stats();
  assert.equal(stats.active, 1);
  assert.equal(stats.total, 1);
  assert.ok(stats.backends.some((b) => b.bytesFromUpstream > 0 && b.bytesFromClient > 0));

  agent.destroy();
  await waitFor(() => pool.stats().active === 0, { what: 'agent sockets to close' });
  assert.equal(pool.stats().teardowns['client-closed'], 1);
  await pool.close();
  for (const b of list) await b.close();
  await settle();
  assert.deepEqual(activeResources(), before);
});
