/**
 * PROXY protocol headers (HAProxy's `proxy-protocol.txt`, versions 1 and 2),
 * so a backend behind the pool learns the client's address.
 *
 * Only the sending side, and only what a TCP proxy sends: `TCP4`/`TCP6` (or
 * `UNKNOWN`/`LOCAL` when the connection is our own), no TLVs.
 *
 * @module
 */
import { isIPv4, isIPv6 } from 'node:net';
import * as v from './validate.js';

/** PROXY protocol version: `'v1'` (text) or `'v2'` (binary). */
export type ProxyProtocolVersion = 'v1' | 'v2';

/**
 * The four addresses a PROXY header carries: the client's (source) and the
 * one it connected to on the proxy (destination).
 */
export interface ProxyAddresses {
  readonly sourceAddress: string;
  readonly sourcePort: number;
  readonly destinationAddress: string;
  readonly destinationPort: number;
}

/** The addresses of a connected socket, as `net.Socket` has them (`undefined` once closed). */
export interface SocketAddresses {
  readonly remoteAddress?: string | undefined;
  readonly remotePort?: number | undefined;
  readonly localAddress?: string | undefined;
  readonly localPort?: number | undefined;
}

/** The 12-byte signature that opens every v2 header: `\r\n\r\n\0\r\nQUIT\n`. */
export const PROXY_V2_SIGNATURE: Buffer = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

// v2 byte 13: version 2 in the high nibble, command in the low one.
const V2_LOCAL = 0x20;
const V2_PROXY = 0x21;
// v2 byte 14: address family in the high nibble, transport in the low one.
const V2_UNSPEC = 0x00;
const V2_TCP4 = 0x11;
const V2_TCP6 = 0x21;

const V1_UNKNOWN = 'PROXY UNKNOWN\r\n';

/**
 * The addresses of a client socket as seen by the proxy, or `undefined` when
 * they cannot be told (the socket is closed, or is not a TCP socket).
 *
 * IPv4 clients of a dual-stack listener show up as IPv4-mapped IPv6
 * (`::ffff:192.0.2.1`); they are reported as plain IPv4, so the header says
 * `TCP4`, as it would behind an IPv4-only listener.
 */
export function proxyAddressesOf(socket: SocketAddresses): ProxyAddresses | undefined {
  const { remoteAddress, remotePort, localAddress, localPort } = socket;
  if (remoteAddress === undefined || remotePort === undefined || localAddress === undefined || localPort === undefined) return undefined;
  let source = remoteAddress;
  let destination = localAddress;
  const mappedSource = unmapIPv4(source);
  const mappedDestination = unmapIPv4(destination);
  if (mappedSource !== undefined && mappedDestination !== undefined) {
    source = mappedSource;
    destination = mappedDestination;
  }
  return { sourceAddress: source, sourcePort: remotePort, destinationAddress: destination, destinationPort: localPort };
}

function unmapIPv4(address: string): string | undefined {
  if (address.length > 7 && address.slice(0, 7).toLowerCase() === '::ffff:') {
    const v4 = address.slice(7);
    if (isIPv4(v4)) return v4;
  }
  return undefined;
}

/** `4`, `6`, or `0` when the pair is not one family (the header then says UNKNOWN/LOCAL). */
function familyOf(addresses: ProxyAddresses): 0 | 4 | 6 {
  const { sourceAddress: s, destinationAddress: d } = addresses;
  if (isIPv4(s) && isIPv4(d)) return 4;
  if (isIPv6(s) && isIPv6(d)) return 6;
  return 0;
}

function validPorts(addresses: ProxyAddresses): boolean {
  const { sourcePort: s, destinationPort: d } = addresses;
  return Number.isInteger(s) && s >= 0 && s <= 65535 && Number.isInteger(d) && d >= 0 && d <= 65535;
}

/**
 * A version 1 (text) header: `PROXY TCP4 <src> <dst> <sport> <dport>\r\n`,
 * `PROXY TCP6 …`, or `PROXY UNKNOWN\r\n` when `addresses` is `undefined` or
 * mixes families (as the spec asks of a proxy that cannot tell).
 */
export function proxyHeaderV1(addresses: ProxyAddresses | undefined): Buffer {
  if (addresses === undefined || !validPorts(addresses)) return Buffer.from(V1_UNKNOWN, 'latin1');
  const family = familyOf(addresses);
  if (family === 0) return Buffer.from(V1_UNKNOWN, 'latin1');
  const { sourceAddress, destinationAddress, sourcePort, destinationPort } = addresses;
  return Buffer.from(`PROXY TCP${family} ${withoutZone(sourceAddress)} ${withoutZone(destinationAddress)} ${sourcePort} ${destinationPort}\r\n`, 'latin1');
}

/**
 * A version 2 (binary) header: the signature, `0x21` (v2, PROXY), `0x11`
 * (TCP over IPv4) or `0x21` (TCP over IPv6), the address block length
 * (12 or 36, big-endian), then source address, destination address, source
 * port and destination port in network byte order. When `addresses` is
 * `undefined` or mixes families it is a `LOCAL` header (`0x20`, family
 * `0x00`, length 0): the spec's way to say the connection is the proxy's own.
 */
export function proxyHeaderV2(addresses: ProxyAddresses | undefined): Buffer {
  const family = addresses === undefined || !validPorts(addresses) ? 0 : familyOf(addresses);
  if (addresses === undefined || family === 0) {
    const header = Buffer.alloc(16);
    PROXY_V2_SIGNATURE.copy(header, 0);
    header[12] = V2_LOCAL;
    header[13] = V2_UNSPEC;
    header.writeUInt16BE(0, 14);
    return header;
  }
  const addressLength = family === 4 ? 4 : 16;
  const blockLength = 2 * addressLength + 4;
  const header = Buffer.alloc(16 + blockLength);
  PROXY_V2_SIGNATURE.copy(header, 0);
  header[12] = V2_PROXY;
  header[13] = family === 4 ? V2_TCP4 : V2_TCP6;
  header.writeUInt16BE(blockLength, 14);
  writeAddress(header, 16, addresses.sourceAddress, family);
  writeAddress(header, 16 + addressLength, addresses.destinationAddress, family);
  header.writeUInt16BE(addresses.sourcePort, 16 + 2 * addressLength);
  header.writeUInt16BE(addresses.destinationPort, 16 + 2 * addressLength + 2);
  return header;
}

/**
 * The header of the given version (see {@link proxyHeaderV1} and
 * {@link proxyHeaderV2}).
 *
 * @throws `INVALID_ARGUMENT` for a version other than `'v1'` or `'v2'`.
 * @example
 * ```ts
 * upstream.write(proxyHeader('v2', proxyAddressesOf(client)));
 * ```
 */
export function proxyHeader(version: ProxyProtocolVersion, addresses: ProxyAddresses | undefined): Buffer {
  return v.oneOf('version', version, ['v1', 'v2']) === 'v1' ? proxyHeaderV1(addresses) : proxyHeaderV2(addresses);
}

/** A link-local zone (`fe80::1%eth0`) means nothing to the backend and has no place in either header. */
function withoutZone(address: string): string {
  const zone = address.indexOf('%');
  return zone === -1 ? address : address.slice(0, zone);
}

function writeAddress(out: Buffer, offset: number, address: string, family: 4 | 6): void {
  if (family === 4) {
    const parts = address.split('.');
    for (let i = 0; i < 4; i++) out[offset + i] = Number(parts[i]);
    return;
  }
  const groups = expandIPv6(address);
  for (let i = 0; i < 8; i++) out.writeUInt16BE(groups[i]!, offset + 2 * i);
}

/** The eight 16-bit groups of an IPv6 address (already checked with `isIPv6`). */
function expandIPv6(address: string): number[] {
  let text = withoutZone(address);
  // An embedded IPv4 tail (`::ffff:192.0.2.1`) is two groups.
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    const [a, b, c, d] = tail.split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const gap = text.indexOf('::');
  let head: string[];
  let rest: string[];
  if (gap === -1) {
    head = text.split(':');
    rest = [];
  } else {
    head = gap === 0 ? [] : text.slice(0, gap).split(':');
    rest = gap + 2 === text.length ? [] : text.slice(gap + 2).split(':');
  }
  const zeros = 8 - head.length - rest.length;
  const groups = [...head, ...Array<string>(zeros).fill('0'), ...rest];
  return groups.map((g) => parseInt(g, 16));
}
