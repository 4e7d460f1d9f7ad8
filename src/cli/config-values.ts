/**
 * One setting's value, read and checked: a {@link Given} is a value as a flag
 * gave it (always text) or as the config file did (any JSON), with the label
 * that names it in messages; each reader returns the typed value or throws a
 * {@link ConfigError} naming the flag or key, what was expected and what was
 * given.
 *
 * @module
 */
import { isIP } from 'node:net';
import { isAbsolute, resolve as resolvePath } from 'node:path';
import { formatAddress, hostnamePattern, parseAddress, type HostPort } from './address.js';
import { ConfigError, MAX_WEIGHT, backendNamePattern, type BackendAddress, type CheckConfig, type DiscoverSpec } from './config.js';

/** A value as given: from a flag (always text) or from the config file (any JSON). */
export interface Given {
  readonly value: unknown;
  /** `--interval` or `cfg.json: "interval"`, for messages. */
  readonly label: string;
  readonly fromFile: boolean;
  /** Directory of the config file, against which relative paths in it resolve. */
  readonly baseDir: string | undefined;
}

/** Shows a value in a message: quoted, shortened, on one line. */
export function show(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    // Too deep (or circular) to print: String() would recurse just as far.
    text = Array.isArray(value) ? '[…]' : Object.prototype.toString.call(value);
  }
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

export function fail(given: Given, expectation: string): never {
  throw new ConfigError(`${given.label}: expected ${expectation}, got ${show(given.value)}`);
}

export function text(given: Given, expectation: string): string {
  if (typeof given.value !== 'string' || given.value === '') fail(given, expectation);
  return given.value;
}

export function integer(given: Given, min: number, max: number, unit: string): number {
  const expectation = `an integer from ${min} to ${max}${unit}`;
  let n: number;
  if (given.fromFile) {
    if (typeof given.value !== 'number') fail(given, expectation);
    n = given.value;
  } else {
    // Digits only: no "1e3", "0x10", " 5" or "10ms" sneaking through Number().
    if (typeof given.value !== 'string' || !/^\d{1,16}$/.test(given.value)) fail(given, expectation);
    n = Number(given.value);
  }
  if (!Number.isSafeInteger(n) || n < min || n > max) fail(given, expectation);
  return n;
}

export function decimal(given: Given, min: number, max: number): number {
  const expectation = `a number from ${min} to ${max}`;
  let n: number;
  if (given.fromFile) {
    if (typeof given.value !== 'number') fail(given, expectation);
    n = given.value;
  } else {
    // Plain decimals only, as for integers: no exponents, signs or units.
    if (typeof given.value !== 'string' || !/^\d{1,9}(?:\.\d{1,9})?$/.test(given.value)) fail(given, expectation);
    n = Number(given.value);
  }
  if (!Number.isFinite(n) || n < min || n > max) fail(given, expectation);
  return n;
}

export function address(given: Given, options: { minPort?: number; loopbackDefault?: boolean }, expectation: string): HostPort {
  const parsed = parseAddress(text(given, expectation), options);
  return parsed ?? fail(given, expectation);
}

/** `--backend [NAME=]HOST:PORT`, or a config file's list of them (strings or objects). */
export function backendList(given: Given): BackendAddress[] {
  const expectation = '[NAME=]HOST:PORT (port 1-65535)';
  const items = given.fromFile && Array.isArray(given.value) ? (given.value as unknown[]) : [given.value];
  if (given.fromFile && Array.isArray(given.value) && items.length === 0) fail(given, 'at least one backend');
  return items.map((value) => {
    const item: Given = { ...given, value };
    if (given.fromFile && typeof value === 'object' && value !== null && !Array.isArray(value)) return backendObject(item, value as Record<string, unknown>);
    const raw = text(item, expectation);
    const eq = raw.indexOf('=');
    const name = eq === -1 ? undefined : raw.slice(0, eq);
    if (name !== undefined && !backendNamePattern.test(name)) {
      fail(item, 'a NAME of letters, digits, ".", "_", ":" or "-" before "="');
    }
    const hostPort = parseAddress(eq === -1 ? raw : raw.slice(eq + 1));
    if (hostPort === undefined) fail(item, expectation);
    const id = name ?? formatAddress(hostPort);
    return Object.freeze({ ...hostPort, id });
  });
}

/** A config file's `{"name", "address", "weight", "maxConnections"}`: a backend with tunables. */
function backendObject(item: Given, value: Record<string, unknown>): BackendAddress {
  const expectation = '{"name"?, "address": "HOST:PORT", "weight"?, "maxConnections"?}';
  for (const key of Object.keys(value)) {
    if (!['name', 'address', 'weight', 'maxConnections'].includes(key)) fail(item, `${expectation} (unknown key ${show(key)})`);
  }
  const name = value['name'];
  if (name !== undefined && (typeof name !== 'string' || !backendNamePattern.test(name))) {
    fail(item, 'a "name" of letters, digits, ".", "_", ":" or "-"');
  }
  const hostPort = typeof value['address'] === 'string' ? parseAddress(value['address']) : undefined;
  if (hostPort === undefined) fail(item, expectation);
  const weight = value['weight'];
  if (weight !== undefined && (typeof weight !== 'number' || !Number.isFinite(weight) || weight < 0 || weight > MAX_WEIGHT)) {
    fail(item, `a "weight" from 0 to ${MAX_WEIGHT}`);
  }
  const cap = value['maxConnections'];
  if (cap !== undefined && (typeof cap !== 'number' || !Number.isSafeInteger(cap) || cap < 1)) fail(item, 'a "maxConnections" integer >= 1');
  const id = name ?? formatAddress(hostPort);
  return Object.freeze({ ...hostPort, id, ...(weight !== undefined && { weight }), ...(cap !== undefined && { maxConnections: cap }) });
}

/** `--check`. */
export function check(given: Given): CheckConfig {
  const expectation = 'https:/PATH, http:/PATH, https, http, tls or tcp';
  const raw = text(given, expectation);
  if (raw === 'tls' || raw === 'tcp') return Object.freeze({ type: raw });
  if (raw === 'https' || raw === 'http') return Object.freeze({ type: raw, path: '/readyz' });
  const match = /^(https?):(\/[\x21-\x7e]*)$/.exec(raw);
  if (!match) fail(given, expectation);
  return Object.freeze({ type: match[1] as 'https' | 'http', path: match[2]! });
}

/** A file path; one from a config file is taken relative to the file's directory. */
export function file(given: Given): string {
  const path = text(given, 'a file path');
  if (path.includes('\0')) fail(given, 'a file path');
  return given.baseDir !== undefined && !isAbsolute(path) ? resolvePath(given.baseDir, path) : path;
}

/** Longest Unix socket path Linux takes (`sun_path` is 108 bytes with its NUL). */
const MAX_SOCKET_PATH = 107;

export function socketPath(given: Given): string {
  const path = file(given);
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) fail(given, `a socket path of at most ${MAX_SOCKET_PATH} bytes`);
  return path;
}

/** `a.example,b.example` (a flag) or `["a.example"]` (a config file): DNS names, stored lower case. */
export function hostList(given: Given): string[] {
  const expectation = 'DNS names separated by commas';
  let items: unknown[];
  if (given.fromFile && Array.isArray(given.value)) items = given.value as unknown[];
  else items = text(given, expectation).split(',');
  return items.map((item) => {
    if (typeof item !== 'string' || !hostnamePattern.test(item) || isIP(item) !== 0) fail(given, expectation);
    return item.toLowerCase().replace(/\.$/, '');
  });
}

/** A switch: given on the command line, or `true`/`false` in a config file. */
export function flag(given: Given): boolean {
  if (given.fromFile) {
    if (typeof given.value !== 'boolean') fail(given, 'true or false');
    return given.value;
  }
  return true;
}

/** `dns:NAME:PORT`, `srv:_SERVICE._PROTO.NAME` or `kubernetes`; a config file may give a list. */
export function discoverList(given: Given): DiscoverSpec[] {
  const expectation = 'dns:NAME:PORT, srv:_SERVICE._PROTO.NAME or kubernetes';
  const items = given.fromFile && Array.isArray(given.value) ? (given.value as unknown[]) : [given.value];
  return items.map((value) => {
    const item: Given = { ...given, value };
    const raw = text(item, expectation);
    if (raw === 'kubernetes') return Object.freeze({ kind: 'kubernetes' as const });
    const dns = /^dns:([^:]+):(\d{1,5})$/.exec(raw);
    if (dns) {
      const port = Number(dns[2]);
      if (!hostnamePattern.test(dns[1]!) || isIP(dns[1]!) !== 0 || port < 1 || port > 65535) fail(item, expectation);
      return Object.freeze({ kind: 'dns' as const, name: dns[1]!, port });
    }
    const srv = /^srv:(_[A-Za-z0-9-]+\._(?:tcp|udp)\..+)$/.exec(raw);
    if (srv && hostnamePattern.test(srv[1]!.replace(/^_([^.]+)\._([^.]+)\./, 'a.b.'))) return Object.freeze({ kind: 'srv' as const, name: srv[1]! });
    return fail(item, expectation);
  });
}
