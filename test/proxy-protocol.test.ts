import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import tls from 'node:tls';
import { loadCerts } from '../examples/support/certs.js';
import {
  proxyAddressesOf,
  proxyHeader,
  proxyHeaderV1,
  proxyHeaderV2,
  UpstreamPool,
  type FailoverProxyError,
  type UpstreamPoolOptions,
} from '../src/index.js';
import { PROXY_V2_SIGNATURE } from '../src/proxy-protocol.js';
import { HOST, listen, waitFor } from './helpers/net.js';

const hex = (text: string): Buffer => Buffer.from(text.replace(/\s+/g, ''), 'hex');
const SIG = '0d0a0d0a 000d0a51 5549540a';

// ------------------------------------------------------------ byte-exact

test('v1: TCP4 and TCP6 lines as in the spec, UNKNOWN when the addresses are not known or mix families', () => {
  assert.equal(
    proxyHeaderV1({ sourceAddress: '192.168.0.1', sourcePort: 56324, destinationAddress: '192.168.0.11', destinationPort: 443 }).toString('latin1'),
    'PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n',
  );
  assert.equal(
    proxyHeaderV1({ sourceAddress: '2001:db8::1', sourcePort: 51234, destinationAddress: '::1', destinationPort: 6443 }).toString('latin1'),
    'PROXY TCP6 2001:db8::1 ::1 51234 6443\r\n',
  );
  assert.equal(proxyHeaderV1(undefined).toString('latin1'), 'PROXY UNKNOWN\r\n');
  assert.equal(
    proxyHeaderV1({ sourceAddress: '192.0.2.1', sourcePort: 1, destinationAddress: '::1', destinationPort: 2 }).toString('latin1'),
    'PROXY UNKNOWN\r\n',
  );
  // The longest possible line fits the spec's 107-byte bound.
  const longest = proxyHeaderV1({
    sourceAddress: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
    sourcePort: 65535,
    destinationAddress: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
    destinationPort: 65535,
  });
  assert.equal(longest.length, 104);
  assert.ok(longest.length <= 107);
});

test('v2: signature, 0x21, family, big-endian length, then addresses and ports in network order', () => {
  assert.deepEqual(PROXY_V2_SIGNATURE, hex(SIG));
  assert.deepEqual(PROXY_V2_SIGNATURE.toString('latin1'), '\r\n\r\n\0\r\nQUIT\n');

  const v4 = proxyHeaderV2({ sourceAddress: '192.168.0.1', sourcePort: 56324, destinationAddress: '192.168.0.11', destinationPort: 443 });
  assert.deepEqual(v4, hex(`${SIG} 21 11 000c  c0a80001  c0a8000b  dc04 01bb`));
  assert.equal(v4.length, 28);

  const v6 = proxyHeaderV2({ sourceAddress: '2001:db8::1', sourcePort: 51234, destinationAddress: '::1', destinationPort: 6443 });
  assert.deepEqual(
    v6,
    hex(`${SIG} 21 21 0024
      20010db8 00000000 00000000 00000001
      00000000 00000000 00000000 00000001
      c822 192b`),
  );
  assert.equal(v6.length, 52);

  // Uncompressed, embedded-IPv4 and zoned forms encode to the same bytes.
  assert.deepEqual(
    proxyHeaderV2({ sourceAddress: '2001:db8:0:0:0:0:0:1', sourcePort: 51234, destinationAddress: '0:0:0:0:0:0:0:1', destinationPort: 6443 }),
    v6,
  );
  assert.deepEqual(
    proxyHeaderV2({ sourceAddress: '::ffff:192.0.2.1', sourcePort: 80, destinationAddress: 'fe80::1%eth0', destinationPort: 8080 }),
    hex(`${SIG} 21 21 0024
      00000000 00000000 0000ffff c0000201
      fe800000 00000000 00000000 00000001
      0050 1f90`),
  );
});

test('v2: LOCAL (0x20, family 0x00, length 0) when the connection is the proxy\'s own or the families mix', () => {
  const local = hex(`${SIG} 20 00 0000`);
  assert.deepEqual(proxyHeaderV2(undefined), local);
  assert.deepEqual(proxyHeaderV2({ sourceAddress: '192.0.2.1', sourcePort: 1, destinationAddress: '::1', destinationPort: 2 }), local);
  assert.deepEqual(proxyHeader('v2', undefined), local);
  assert.deepEqual(proxyHeader('v1', undefined).toString(), 'PROXY UNKNOWN\r\n');
  assert.throws(() => proxyHeader('v3' as 'v1', undefined), (err: FailoverProxyError) => err.code === 'INVALID_ARGUMENT');
});

test('proxyAddressesOf: the client is the source, the proxy\'s listening address the destination; v4-mapped clients are TCP4', () => {
  assert.deepEqual(
    proxyAddressesOf({ remoteAddress: '::ffff:10.0.0.7', remotePort: 40000, localAddress: '::ffff:10.0.0.1', localPort: 6443 }),
    { sourceAddress: '10.0.0.7', sourcePort: 40000, destinationAddress: '10.0.0.1', destinationPort: 6443 },
  );
  assert.deepEqual(
    proxyAddressesOf({ remoteAddress: '2001:db8::7', remotePort: 40000, localAddress: '2001:db8::1', localPort: 6443 }),
    { sourceAddress: '2001:db8::7', sourcePort: 40000, destinationAddress: '2001:db8::1', destinationPort: 6443 },
  );
  assert.equal(proxyAddressesOf({ remoteAddress: undefined, remotePort: undefined, localAddress: undefined, localPort: undefined }), undefined);
});

// ------------------------------------------------------------ end to end

/** A backend that records every byte each connection sends and answers `ok\n` once it has seen `until`. */
async function recordingBackend(t: TestContext, until: string): Promise<{ port: number; received: Buffer[] }> {
  const received: Buffer[] = [];
  const { port } = await listen(t, (socket) => {
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      const all = Buffer.concat(chunks);
      if (all.includes(until)) {
        received.push(all);
        socket.end('ok\n');
      }
    });
  });
  return { port, received };
}

async function pinThrough(t: TestContext, options: UpstreamPoolOptions, host = HOST): Promise<{ client: Socket; frontPort: number; pool: UpstreamPool }> {
  const pool = new UpstreamPool(options);
  t.after(() => pool.destroy());
  const { port: frontPort } = await listen(t, (s) => pool.accept(s), { pauseOnConnect: true });
  const client = net.connect({ host, port: frontPort, allowHalfOpen: true });
  client.on('error', () => {});
  t.after(() => {
    client.destroy();
  });
  await once(client, 'connect');
  return { client, frontPort, pool };
}

for (const version of ['v1', 'v2'] as const) {
  test(`pin() sends the ${version} header with the client's addresses before the client's first byte`, async (t) => {
    const backend = await recordingBackend(t, 'hello\n');
    const { client, frontPort } = await pinThrough(t, { backends: [{ host: HOST, port: backend.port }], proxyProtocol: version });
    client.write('hello\n');
    await waitFor(() => backend.received.length === 1, { what: 'the backend to receive the header and data' });
    const addresses = { sourceAddress: HOST, sourcePort: client.localPort!, destinationAddress: HOST, destinationPort: frontPort };
    const expected = Buffer.concat([version === 'v1' ? proxyHeaderV1(addresses) : proxyHeaderV2(addresses), Buffer.from('hello\n')]);
    const [got] = backend.received;
    assert.deepEqual(got, expected);
    if (version === 'v1') assert.equal(String(got), `PROXY TCP4 127.0.0.1 127.0.0.1 ${client.localPort} ${frontPort}\r\nhello\n`);
  });
}

test('pin() over IPv6 sends a TCP6 header', async (t) => {
  const probe = net.createServer();
  const ipv6 = await new Promise<boolean>((resolve) => {
    probe.once('error', () => resolve(false));
    probe.listen(0, '::1', () => resolve(true));
  });
  probe.close();
  if (!ipv6) {
    t.skip('no IPv6 loopback here');
    return;
  }
  const backend = await recordingBackend(t, 'hi\n');
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: backend.port }], proxyProtocol: 'v2' });
  t.after(() => pool.destroy());
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => pool.accept(s));
  server.listen(0, '::1');
  await once(server, 'listening');
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const frontPort = (server.address() as AddressInfo).port;
  const client = net.connect({ host: '::1', port: frontPort });
  client.on('error', () => {});
  t.after(() => {
    client.destroy();
  });
  await once(client, 'connect');
  client.write('hi\n');
  await waitFor(() => backend.received.length === 1, { what: 'the header' });
  const header = backend.received[0]!.subarray(0, 52);
  assert.deepEqual(header.subarray(12, 16), hex('21 21 0024'));
  assert.deepEqual(header, proxyHeaderV2({ sourceAddress: '::1', sourcePort: client.localPort!, destinationAddress: '::1', destinationPort: frontPort }));
  assert.equal(backend.received[0]!.subarray(52).toString(), 'hi\n');
});

test('with TLS to the backend, the header goes in clear before the ClientHello', async (t) => {
  const certs = loadCerts();
  const headers: Buffer[] = [];
  const sockets = new Set<Socket>();
  // Reads the 28-byte v2 header off the raw TCP stream, then speaks TLS on the rest.
  const server = net.createServer((raw) => {
    sockets.add(raw);
    raw.on('error', () => {});
    raw.once('close', () => sockets.delete(raw));
    const onReadable = (): void => {
      const header = raw.read(28) as Buffer | null;
      if (header === null) return;
      raw.off('readable', onReadable);
      headers.push(header);
      const secure = new tls.TLSSocket(raw, { isServer: true, cert: certs.serverCert, key: certs.serverKey });
      secure.on('error', () => {});
      secure.end('tls ok\n');
    };
    raw.on('readable', onReadable);
  });
  server.listen(0, HOST);
  await once(server, 'listening');
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const { client, frontPort } = await pinThrough(t, {
    backends: [{ host: HOST, port: (server.address() as AddressInfo).port }],
    tls: { ca: certs.ca },
    proxyProtocol: 'v2',
  });
  let answer = '';
  client.setEncoding('latin1');
  client.on('data', (c: string) => (answer += c));
  await waitFor(() => answer === 'tls ok\n', { what: 'the TLS answer' });
  assert.deepEqual(headers, [proxyHeaderV2({ sourceAddress: HOST, sourcePort: client.localPort!, destinationAddress: HOST, destinationPort: frontPort })]);
});

test("an agent's connections are the proxy's own: UNKNOWN (v1) or LOCAL (v2)", async (t) => {
  for (const version of ['v1', 'v2'] as const) {
    const backend = await recordingBackend(t, '\r\n\r\n');
    const pool = new UpstreamPool({ backends: [{ host: HOST, port: backend.port }], proxyProtocol: version });
    t.after(() => pool.destroy());
    const agent = pool.createAgent({ keepAlive: false });
    t.after(() => agent.destroy());
    const req = http.get({ host: 'x', path: '/', agent });
    req.on('error', () => {}); // the recording backend does not speak HTTP
    await waitFor(() => backend.received.length === 1, { what: 'the request' });
    const expected = version === 'v1' ? Buffer.from('PROXY UNKNOWN\r\n') : hex(`${SIG} 20 00 0000`);
    assert.deepEqual(backend.received[0]!.subarray(0, expected.length), expected);
    assert.match(backend.received[0]!.subarray(expected.length).toString('latin1'), /^GET \/ HTTP\/1\.1\r\n/);
    req.destroy();
  }
});

test('PROXY header with TLS options the TLS layer refuses: the dial fails and leaves no TCP socket to the backend, nor an uncaught error', async (t) => {
  const uncaught: unknown[] = [];
  const onUncaught = (e: unknown): void => void uncaught.push(e);
  process.on('uncaughtException', onUncaught);
  t.after(() => process.off('uncaughtException', onUncaught));
  // The backend closes its side when the dialler's socket closes (a FIN).
  const { port, sockets } = await listen(t, (s) => s.once('end', () => s.end()));
  // The PROXY header is written on a TCP socket before TLS is layered over it; then tls.connect() throws.
  const pool = new UpstreamPool({ backends: [{ host: HOST, port }], tls: { minVersion: 'TLSv9' } as never, proxyProtocol: 'v1', retries: 0 });
  t.after(() => pool.destroy());
  const { port: frontPort, server } = await listen(t, () => {}, { pauseOnConnect: true });
  const accepted = once(server, 'connection');
  const peer = net.connect({ host: HOST, port: frontPort });
  peer.on('error', () => {});
  t.after(() => peer.destroy());
  const [client] = (await accepted) as [Socket];
  const error = await pool.pin(client).then(
    () => assert.fail('pinned'),
    (e: { code: string }) => e,
  );
  assert.equal(error.code, 'CONNECT_FAILED');
  await pool.close();
  // A connection of ours, opened after the dial's: once the backend has
  // accepted it, it has accepted the dial's TCP socket too, if that one was
  // ever connected (loopback handshakes complete in order).
  const marker = net.connect({ host: HOST, port });
  marker.on('error', () => {});
  await waitFor(() => [...sockets].some((s) => s.remotePort === marker.localPort), { what: 'the backend to accept our marker' });
  marker.destroy();
  await waitFor(() => sockets.size === 0, { timeout: 5000, what: 'no connection left at the backend (the dial leaked its TCP socket)' });
  for (const s of sockets) s.resetAndDestroy();
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.deepEqual(uncaught.map(String), []);
});
