/**
 * Addresses as the balancer reads and prints them: `HOST:PORT`, with
 * brackets around an IPv6 host (`[::1]:6443`). Printing is the library's rule
 * ({@link backendId}), so a backend's default id, a listener in the log and an
 * address in the admin API always read the same.
 *
 * @module
 */
import { isIP } from 'node:net';
import { backendId } from '../index.js';

/** A host and a port. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** `host:port`, brackets around IPv6: the one way the balancer prints an address. */
export function formatAddress(address: HostPort): string {
  return backendId(address.host, address.port);
}

/** A DNS name: labels of letters, digits and `-`, at most 253 characters, an optional root dot. */
export const hostnamePattern = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/** An IP address or a DNS name. */
export function validHost(host: string): boolean {
  return isIP(host) !== 0 || hostnamePattern.test(host);
}

/**
 * Parses `HOST:PORT` or `[IPv6]:PORT`. With `loopbackDefault`, a bare `PORT`
 * or `:PORT` means 127.0.0.1. `minPort` 0 lets a listener pick a free port.
 */
export function parseAddress(input: string, { minPort = 1, loopbackDefault = false } = {}): HostPort | undefined {
  let host: string | undefined;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]+)\]:(\d{1,5})$/.exec(input);
  if (bracketed) {
    host = bracketed[1];
    portText = bracketed[2];
    if (host === undefined || isIP(host) !== 6) return undefined;
  } else {
    const plain = /^([^:[\]\s]*):(\d{1,5})$/.exec(input) ?? (loopbackDefault ? /^()(\d{1,5})$/.exec(input) : null);
    if (!plain) return undefined;
    host = plain[1] === '' ? (loopbackDefault ? '127.0.0.1' : undefined) : plain[1];
    portText = plain[2];
    if (host === undefined || !validHost(host)) return undefined;
  }
  const port = Number(portText);
  if (!Number.isInteger(port) || port < minPort || port > 65535) return undefined;
  return { host, port };
}
