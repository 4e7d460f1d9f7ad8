// The admin API (/api/ on the reference balancer's status listener) under a
// seeded stream of hostile requests, sent as raw bytes on real loopback
// sockets: random methods, paths (traversal, unicode, invalid encodings,
// over the header limit), queries, tokens (right, wrong, missing, malformed),
// headers, JSON and non-JSON bodies and sizes around the 16 KiB limit, framed
// by Content-Length or chunked. For every request:
//   - an answer comes (the balancer never crashes or wedges), never a 5xx;
//   - a refusal under /api/ is a 4xx whose body is exactly {error, message};
//   - a refused change changes nothing (GET /api/backends before and after);
//   - a marker planted in every part of the request never appears in the
//     answer's bytes.
// 3,000 requests in CI; FUZZ=1 for 30,000; FUZZ_CASES=<n> for any count;
// SEED=<n> replays a run.
import assert from 'node:assert/strict';
import { connect as netConnect } from 'node:net';
import { test } from 'node:test';
import { MAX_BODY } from '../src/cli/status-server.js';
import { TOKEN, api, startAdminBalancer } from './helpers/admin.js';
import { Prng, figure, seedFromEnv } from './helpers/faults.js';
import { HOST, namedServer, waitFor } from './helpers/net.js';

const CASES = Number(process.env['FUZZ_CASES'] ?? (process.env['FUZZ'] === '1' ? 30_000 : 3000));
/** A bound on the whole run, whatever the count: the loop stops early (and says so) rather than time out. */
const TIME_BUDGET_MS = Number(process.env['FUZZ_BUDGET_MS'] ?? (process.env['FUZZ'] === '1' ? 1_200_000 : 150_000));

const METHODS = ['GET', 'HEAD', 'POST', 'PATCH', 'DELETE', 'PUT', 'OPTIONS', 'TRACE', 'PROPFIND', 'get', 'P0ST'];
const READS = new Set(['GET', 'HEAD']);

interface Sent {
  readonly method: string;
  readonly target: string;
  readonly bytes: Buffer;
}

interface Answer {
  readonly raw: Buffer;
  readonly status: number;
  readonly headers: string;
  readonly body: string;
}

/** A JSON value of config-like or hostile shape; `marker` goes into strings and keys. */
function randomValue(r: Prng, marker: string, depth = 0): unknown {
  switch (r.int(0, depth > 2 ? 5 : 8)) {
    case 0:
      return r.pick([0, 1, -1, 0.5, 1e6, 1e6 + 1, 2 ** 31 - 1, 2 ** 31, 2 ** 53, -0, 1e308, 3.14]);
    case 1:
      return r.int(-5, 70_000);
    case 2:
      return r.pick([null, true, false]);
    case 3:
      return r.pick([marker, `${HOST}:${r.int(0, 70_000)}`, `[::1]:${r.int(1, 65_535)}`, `${marker}:80`, `[${marker}]:1`, `a b:${marker}`, '', '__proto__']);
    case 4:
      return `${marker}${'\u0000\u2028\ud800<script>"\\'.slice(r.int(0, 8))}`;
    case 5:
      return r.pick(['a', 'b', `x${r.int(0, 99)}`, `${marker}`]);
    case 6:
      return Array.from({ length: r.int(0, 3) }, () => randomValue(r, marker, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = r.int(0, 3); i > 0; i--) o[r.pick(['name', 'address', 'weight', 'maxConnections', 'timeoutMs', marker, '__proto__', 'constructor'])] = randomValue(r, marker, depth + 1);
      return o;
    }
  }
}

/** A request body: mostly JSON objects with the routes' fields, sometimes anything, sometimes sized to the limit. */
function randomBody(r: Prng, marker: string): Buffer | undefined {
  switch (r.int(0, 11)) {
    case 0:
      return undefined;
    case 1:
      return Buffer.from('{}');
    case 2:
    case 3:
    case 4: {
      const o: Record<string, unknown> = {};
      for (let i = r.int(1, 3); i > 0; i--) o[r.pick(['name', 'address', 'weight', 'maxConnections', 'timeoutMs'])] = randomValue(r, marker);
      // A field no route takes, carrying the marker, half the time.
      if (r.chance(0.5)) o[`k${marker}`] = marker;
      return Buffer.from(JSON.stringify(o));
    }
    case 5:
      return Buffer.from(JSON.stringify(randomValue(r, marker)));
    case 6:
      // Not JSON: truncated, raw bytes, a form.
      return r.pick([
        () => Buffer.from(`{"weight": ${marker}`),
        () => Buffer.concat([Buffer.from(marker), r.bytes(r.int(0, 64))]),
        () => Buffer.from(`weight=${marker}&name=${marker}`),
        () => Buffer.from(`\ufeff{"name":"${marker}"}`),
      ])();
    case 7:
      // Deep nesting (well inside the size limit).
      return Buffer.from(`${'['.repeat(4000)}"${marker}"${']'.repeat(4000)}`);
    case 8:
    case 9: {
      // Around the limit: MAX_BODY - 2 .. MAX_BODY + 2 bytes of valid JSON.
      const size = MAX_BODY + r.int(-2, 2);
      const head = `{"name":"${marker}`;
      return Buffer.from(`${head}${'x'.repeat(size - head.length - 2)}"}`);
    }
    case 10:
      return Buffer.from(`{"weight": 2, "weight": "${marker}"}`);
    default:
      return Buffer.from(JSON.stringify({ weight: r.pick([0, 1, 2, 0.25, 1000000]) }));
  }
}

/** A request target under /api/ (mostly): the routes, and hostile variations of them. */
function randomTarget(r: Prng, marker: string): string {
  const name = r.pick(['a', 'b', 'a', 'nope', marker, encodeURIComponent(marker), `a${encodeURIComponent('/')}..`, '%E0%A4%A', '..%2F..%2Fetc%2Fpasswd', encodeURIComponent(`ü名${marker}`), '%00', '%2e%2e', `a%3A${marker}`]);
  const action = r.pick(['', '', '/drain', '/maintenance', '/ready', `/${marker}`, '/drain/', '/../b/drain']);
  let path = r.pick([
    () => '/api/backends',
    () => `/api/backends/${name}${action}`,
    () => `/api/backends/${name}${action}`,
    () => '/api/events',
    () => '/api/reload',
    () => `/api/${marker}`,
    () => `/api/../api/backends/${name}`,
    () => `/api//backends/${name}`,
    () => `/api/backends/${name}/../../../stats`,
    () => `/api/backends/${'x'.repeat(r.int(60, 9000))}${marker}`,
    () => `/api/backends/${marker}${'%41'.repeat(r.int(1, 400))}`,
  ])();
  // The marker in the query of every request; sometimes an `after` too.
  path += r.pick([`?${marker}=1`, `?after=${marker}`, `?after=-1&m=${marker}`, `?after=1e999&${marker}`, `?m=${marker}#${marker}`]);
  return path;
}

function authorization(r: Prng, marker: string): string | undefined {
  return r.pick([
    () => undefined,
    () => `Bearer ${TOKEN}`,
    () => `Bearer ${TOKEN}`,
    () => `Bearer ${marker}`,
    () => `Bearer ${TOKEN}${marker}`,
    () => `bearer    ${TOKEN}`,
    () => `Bearer ${TOKEN} ${marker}`,
    () => 'Bearer',
    () => `Basic ${Buffer.from(`admin:${marker}`).toString('base64')}`,
    () => `Bearer ${marker}${'z'.repeat(r.int(100, 5000))}`,
    () => `${marker}`,
  ])();
}

/** Changes the API takes, with bodies it accepts (drawn fresh per request). */
const VALID: readonly (readonly [method: string, path: string, body: (r: Prng) => unknown])[] = [
  ['POST', '/api/backends/a/drain', (r) => (r.chance(0.5) ? {} : { timeoutMs: r.int(0, 5000) })],
  ['POST', '/api/backends/b/maintenance', () => ({})],
  ['POST', '/api/backends/a/ready', () => ({})],
  ['PATCH', '/api/backends/b', (r) => (r.chance(0.5) ? { weight: r.int(0, 100) / 4 } : { maxConnections: r.chance(0.5) ? null : r.int(1, 1000) })],
  ['POST', '/api/backends', (r) => ({ name: `n${r.int(0, 999)}`, address: `${HOST}:${r.int(1, 65_535)}`, weight: r.int(0, 9) })],
  ['DELETE', '/api/backends/b', (r) => ({ timeoutMs: r.int(0, 100) })],
  ['POST', '/api/reload', () => ({})],
];

/** Builds one request as bytes; with a valid token a third of the time, so some changes are accepted. */
function randomRequest(r: Prng, marker: string): Sent {
  // A quarter of the requests are well-formed changes with one part (maybe) spoiled, so the
  // fuzzer also reaches past the routing and the token check into the handlers.
  const nearValid = r.chance(0.25);
  const [validMethod, validPath, validBody] = r.pick(VALID);
  const method = nearValid && r.chance(0.8) ? validMethod : r.pick(METHODS);
  const query = r.pick([`?${marker}=1`, `?after=${marker}`, `?m=${marker}#${marker}`]);
  const target = nearValid && r.chance(0.8) ? `${validPath}${query}` : randomTarget(r, marker);
  const body = nearValid && r.chance(0.7) ? Buffer.from(JSON.stringify(validBody(r))) : randomBody(r, marker);
  const lines = [`${method} ${target} HTTP/1.1`, `Host: ${r.chance(0.1) ? marker : '127.0.0.1'}`, `User-Agent: ${marker}`, `X-${marker}: ${marker}`, 'Connection: close'];
  const auth = nearValid && r.chance(0.8) ? `Bearer ${TOKEN}` : authorization(r, marker);
  if (auth !== undefined) lines.push(`Authorization: ${auth}`);
  if (r.chance(0.1) && auth !== undefined) lines.push(`Authorization: Bearer ${marker}`);
  lines.push(`Content-Type: ${r.pick(['application/json', 'text/plain', `application/${marker}`])}`);
  if (r.chance(0.1)) lines.push(`Cookie: token=${marker}`);
  let payload: Buffer = Buffer.alloc(0);
  if (body !== undefined) {
    const framing = r.int(0, 9);
    if (framing === 0) {
      // Chunked, in two chunks.
      lines.push('Transfer-Encoding: chunked');
      const cut = r.int(0, body.length);
      const chunk = (b: Buffer): Buffer => (b.length === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from(`${b.length.toString(16)}\r\n`), b, Buffer.from('\r\n')]));
      payload = Buffer.concat([chunk(body.subarray(0, cut)), chunk(body.subarray(cut)), Buffer.from('0\r\n\r\n')]);
    } else if (framing === 1) {
      // A declared size over the limit; the body is not sent (it would not be read).
      lines.push(`Content-Length: ${MAX_BODY + r.int(1, 10_000_000)}`);
    } else {
      lines.push(`Content-Length: ${body.length}`);
      payload = body;
    }
  }
  return { method, target, bytes: Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), payload]) };
}

/** Sends raw bytes on a fresh connection and reads until the server closes it. */
function exchange(port: number, bytes: Buffer, bound = 25_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: HOST, port });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no end of answer within ${bound} ms`));
    }, bound);
    socket.on('data', (d: Buffer) => chunks.push(d));
    // A reset after the answer (the server closing on unread bytes) is still an answer.
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
    socket.write(bytes);
  });
}

function parse(raw: Buffer): Answer {
  const text = raw.toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  const status = /^HTTP\/1\.1 (\d{3}) /.exec(text);
  return { raw, status: status === null ? 0 : Number(status[1]), headers: end === -1 ? text : text.slice(0, end), body: end === -1 ? '' : text.slice(end + 4) };
}

test('admin API fuzz: every answer comes, no 5xx, refusals are {error, message}, a refused change changes nothing, nothing is reflected', { timeout: TIME_BUDGET_MS + 120_000 }, async (t) => {
  const a = await namedServer(t, 'a');
  const b = await namedServer(t, 'b');
  const specs = { a: { id: 'a', host: HOST, port: a.port }, b: { id: 'b', host: HOST, port: b.port } };
  const { balancer, status } = await startAdminBalancer(t, [`a=${HOST}:${a.port}`, `b=${HOST}:${b.port}`]);
  const { pool } = balancer;
  await waitFor(() => pool.status('a')?.health === 'up' && pool.status('b')?.health === 'up', { what: 'both up' });

  /** What the API can change (health is the probe's, and is left out). */
  const state = async (): Promise<string> => {
    const reply = await api(status, 'GET', '/api/backends');
    assert.equal(reply.status, 200, 'the balancer keeps answering');
    return JSON.stringify(reply.json.backends.map((d) => [d.id, d.host, d.port, d.admin, d.weight, d.maxConnections]));
  };
  /** After an accepted change: back to a and b, active, weight 1, no cap, so the next cases start from the same place. */
  const restore = async (removing: string | undefined): Promise<void> => {
    // A DELETE drains, then removes: with no member on it that ends on its own.
    if (removing !== undefined) await waitFor(() => !pool.has(removing), { what: `${removing} removed` });
    for (const backend of pool.backends()) if (backend.id !== 'a' && backend.id !== 'b') await pool.remove(backend.id);
    for (const spec of Object.values(specs)) {
      if (!pool.has(spec.id)) pool.add(spec);
      if (pool.status(spec.id)!.admin !== 'active') pool.markReady(spec.id);
      pool.update(spec.id, { weight: 1, maxConnections: Infinity });
    }
  };

  const seed = seedFromEnv(0x5eed_ad01);
  const r = new Prng(seed);
  t.diagnostic(`seed ${seed} (replay: SEED=${seed})`);
  const started = Date.now();
  const byStatus = new Map<number, number>();
  let accepted = 0;
  let refusedChanges = 0;
  let reflected = 0;
  let done = 0;
  let before = await state();
  for (let i = 0; i < CASES && Date.now() - started < TIME_BUDGET_MS; i++) {
    const marker = `~Mk${seed.toString(36)}q${i}~`;
    const sent = randomRequest(r, marker);
    const what = `case ${i} (SEED=${seed}): ${sent.bytes.subarray(0, 300).toString('latin1')}`;
    const answer = parse(await exchange(status, sent.bytes));
    byStatus.set(answer.status, (byStatus.get(answer.status) ?? 0) + 1);
    done++;

    assert.ok(answer.status >= 200 && answer.status < 500, `a status from 200 to 499, got ${answer.status}: ${what}\n-> ${answer.headers}`);
    if (answer.raw.toString('latin1').toLowerCase().includes(marker.toLowerCase())) reflected++;
    assert.ok(!answer.raw.toString('latin1').toLowerCase().includes(marker.toLowerCase()), `the marker is reflected: ${what}\n-> ${answer.raw.toString('latin1').slice(0, 600)}`);
    if (answer.status >= 400) {
      assert.match(answer.headers, /\r\ncontent-type: application\/json; charset=utf-8\r\n/i, what);
      if (sent.method !== 'HEAD') {
        const doc = JSON.parse(answer.body) as Record<string, unknown>;
        assert.deepEqual(Object.keys(doc).sort(), ['error', 'message'], what);
        assert.match(String(doc['error']), /^[A-Z_]+$/, what);
        assert.equal(typeof doc['message'], 'string', what);
      }
    }
    if (READS.has(sent.method)) continue;
    const after = await state();
    if (answer.status >= 400) {
      refusedChanges++;
      assert.equal(after, before, `a refused change changed the pool: ${what}\n-> ${answer.body.slice(0, 300)}`);
    } else {
      accepted++;
      await restore(sent.method === 'DELETE' ? (JSON.parse(answer.body) as { id: string }).id : undefined);
      before = await state();
    }
  }
  assert.equal(reflected, 0);
  assert.ok(done >= Math.min(CASES, 500), `at least 500 cases ran (${done})`);
  assert.ok(accepted > 0, 'some changes were accepted: the fuzzer reaches past the token check');
  // Still serving: the page and a read.
  assert.equal((await api(status, 'GET', '/livez')).status, 200);
  const statuses = [...byStatus].sort((x, y) => x[0] - y[0]).map(([s, n]) => `${s}: ${n}`).join(', ');
  figure(t, `${done} requests in ${((Date.now() - started) / 1000).toFixed(1)} s (seed ${seed}): ${refusedChanges} refused changes left the pool unchanged, ${accepted} accepted; statuses ${statuses}; 0 reflected, no 5xx`);
});
