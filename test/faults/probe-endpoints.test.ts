/**
 * Fault: health endpoints that misbehave, end to end through a HealthProbe
 * attached to a pool, over HTTPS as an apiserver's `/readyz` is checked:
 * a wrong status, garbage instead of HTTP, a 10 MB body, headers that never
 * end, a response trickling one byte a second, a certificate for another
 * name, a hang-up, a refused port. Each fails at its own layer with its own
 * code, within the check timeout; none is read past its bound; the probe's
 * loop keeps checking the healthy backend even with a concurrency of 3; and
 * no client is ever sent to a misbehaving backend.
 *
 * `test/checks.test.ts` covers each check function alone (plain HTTP);
 * this file covers what a pool sees.
 */
import assert from 'node:assert/strict';
import type { AddressInfo, Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { loadCerts } from '../../examples/support/certs.js';
import { HealthProbe, UpstreamPool, type CheckResult, type ErrorCode } from '../../src/index.js';
import { ConnectionLedger, Prng } from '../helpers/faults.js';
import { closedPort, connect, frontend, HOST, waitFor } from '../helpers/net.js';

const TIMEOUT = 500;
const TEN_MB = 10 * 1024 * 1024;

interface Endpoint {
  readonly port: number;
  /** Check connections that reached the server and are still open. */
  readonly open: Set<Socket>;
  /** Bytes the server managed to hand to the kernel, per connection, when it closed. */
  readonly written: number[];
}

/** A TLS server answering each request with `respond(socket)`, its sockets tracked and closed after the test. */
async function tlsEndpoint(t: TestContext, certName: 'server' | 'wrongName', respond: (socket: TLSSocket) => void): Promise<Endpoint> {
  const certs = loadCerts();
  const [cert, key] = certName === 'server' ? [certs.serverCert, certs.serverKey] : [certs.wrongNameCert, certs.wrongNameKey];
  const open = new Set<Socket>();
  const written: number[] = [];
  const server = createTlsServer({ cert, key }, (socket) => {
    open.add(socket);
    socket.on('error', () => undefined);
    socket.once('close', () => {
      open.delete(socket);
      written.push(socket.bytesWritten);
    });
    socket.once('data', () => respond(socket));
  });
  server.on('tlsClientError', () => undefined);
  // Every TCP connection, handshakes not finished included, so close() leaves none.
  const raw = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    raw.add(socket);
    socket.once('close', () => raw.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of raw) s.destroy();
      }),
  );
  return { port: (server.address() as AddressInfo).port, open, written };
}

const ok = 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok';

test('misbehaving /readyz endpoints fail at the right layer, within the timeout, bounded, without stalling the probe', async (t) => {
  const random = new Prng(0xbad0);
  let bodyFinished = 0;
  const endpoints: Record<string, Endpoint | { port: number }> = {
    healthy: await tlsEndpoint(t, 'server', (s) => s.end(ok)),
    'wrong-status': await tlsEndpoint(t, 'server', (s) => s.end('HTTP/1.1 503 Service Unavailable\r\ncontent-length: 9\r\n\r\nnot ready')),
    garbage: await tlsEndpoint(t, 'server', (s) => s.end(random.bytes(4096))),
    'ten-mb-body': await tlsEndpoint(t, 'server', (s) => {
      // Chunked, no length announced: the check must count and stop by itself.
      s.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n');
      const chunk = Buffer.concat([Buffer.from('10000\r\n'), Buffer.alloc(0x10000, 0x6f), Buffer.from('\r\n')]);
      let sent = 0;
      const pump = (): void => {
        while (!s.destroyed && sent < TEN_MB) {
          sent += 0x10000;
          if (!s.write(chunk)) {
            s.once('drain', pump);
            return;
          }
        }
        if (!s.destroyed) s.end('0\r\n\r\n', () => bodyFinished++);
      };
      pump();
    }),
    'endless-headers': await tlsEndpoint(t, 'server', (s) => {
      s.write('HTTP/1.1 200 OK\r\n');
      let n = 0;
      const timer = setInterval(() => s.write(`x-filler-${n++}: ${'f'.repeat(64)}\r\n`), 20);
      s.once('close', () => clearInterval(timer));
    }),
    trickle: await tlsEndpoint(t, 'server', (s) => {
      let i = 0;
      const drip = (): void => {
        if (i < ok.length) s.write(ok[i++]!);
      };
      drip();
      const timer = setInterval(drip, 1000);
      s.once('close', () => clearInterval(timer));
    }),
    'wrong-name': await tlsEndpoint(t, 'wrongName', (s) => s.end(ok)),
    'hang-up': await tlsEndpoint(t, 'server', (s) => s.end()),
    refused: { port: await closedPort() },
  };
  const expected: Record<string, ErrorCode | 'ok'> = {
    healthy: 'ok',
    'wrong-status': 'PROBE_BAD_RESPONSE',
    garbage: 'PROBE_BAD_RESPONSE',
    'ten-mb-body': 'PROBE_BAD_RESPONSE',
    'endless-headers': 'PROBE_TIMEOUT',
    trickle: 'PROBE_TIMEOUT',
    'wrong-name': 'PROBE_TLS_FAILED',
    'hang-up': 'PROBE_BAD_RESPONSE',
    refused: 'PROBE_CONNECT_FAILED',
  };

  const { ca } = loadCerts();
  const pool = new UpstreamPool({
    initialState: 'probe',
    backends: Object.entries(endpoints).map(([id, e]) => ({ host: HOST, port: e.port, id })),
  });
  t.after(() => pool.destroy());
  const ledger = new ConnectionLedger(pool);
  const probe = new HealthProbe({
    // The body predicate makes the check read the body, up to maxBodyBytes.
    check: { type: 'https', path: '/readyz', ca, body: (text) => text === 'ok' },
    interval: TIMEOUT,
    timeout: TIMEOUT,
    rise: 1,
    fall: 1,
    // Fewer slots than slow backends: slow checks must not starve the rest.
    concurrency: 3,
  });
  const results = new Map<string, CheckResult[]>();
  probe.on('checked', (r) => {
    const list = results.get(r.backend.id) ?? [];
    list.push(r);
    results.set(r.backend.id, list);
  });
  probe.attach(pool);
  t.after(() => probe.stop());

  const ROUNDS = 3;
  await waitFor(() => Object.keys(endpoints).every((id) => (results.get(id)?.length ?? 0) >= ROUNDS), {
    timeout: 60_000,
    what: `${ROUNDS} checks of every backend`,
  });

  const summary: string[] = [];
  for (const [id, code] of Object.entries(expected)) {
    const list = results.get(id)!;
    const codes = list.map((r) => r.error?.code ?? 'ok');
    assert.ok(codes.every((c) => c === code), `${id}: expected every check to be ${code}, got ${codes.join(', ')} (${list.find((r) => !r.ok)?.error?.message ?? ''})`);
    summary.push(`${id}=${code} (max ${Math.max(...list.map((r) => r.durationMs))} ms)`);
  }
  t.diagnostic(summary.join('; '));
  // The right cause at the right layer.
  const tlsCause = (results.get('wrong-name')![0]!.error!.cause as { code?: string }).code;
  assert.equal(tlsCause, 'ERR_TLS_CERT_ALTNAME_INVALID');
  assert.match(results.get('ten-mb-body')![0]!.error!.message, /longer than maxBodyBytes/);
  assert.match(String((results.get('garbage')![0]!.error!.cause as { code?: string }).code), /^HPE_/);

  // Only the healthy backend is up; clients never reach the others.
  assert.deepEqual(
    pool.stats().backends.filter((b) => b.state === 'up').map((b) => b.id),
    ['healthy'],
  );
  const port = await frontend(t, pool);
  for (let i = 0; i < 10; i++) await connect(t, port);
  await waitFor(() => ledger.entries.size === 10, { what: 'ten connections pinned' });
  assert.ok([...ledger.entries.values()].every((e) => e.backend === 'healthy'));

  await probe.stop();
  // Bounded: no 10 MB body was ever sent whole, the trickle got a byte or so per check.
  const body = endpoints['ten-mb-body'] as Endpoint;
  const trickle = endpoints.trickle as Endpoint;
  // stop() settles once the probe's sockets are closed; the servers see it a moment later.
  const served = Object.values(endpoints).filter((e): e is Endpoint => 'open' in e);
  await waitFor(() => served.every((e) => e.open.size === 0), { what: 'check connections closed after stop()' });
  assert.equal(bodyFinished, 0, 'the 10 MB body was never read to the end');
  t.diagnostic(`10 MB body: at most ${Math.max(...body.written)} bytes left the server per check; trickle: at most ${Math.max(...trickle.written)}`);
  assert.ok(body.written.every((n) => n < TEN_MB), 'each huge-body check hung up well before 10 MB');
  // TLS records add a few dozen bytes around each byte written.
  assert.ok(trickle.written.length >= ROUNDS);
});
