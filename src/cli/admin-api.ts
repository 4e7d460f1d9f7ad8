/**
 * The balancer's admin API under `/api/`: JSON in, JSON out, on the status
 * listener (loopback by default). Reads are open; every change needs
 * `Authorization: Bearer <token>` with the token of `--admin-token-file`, and
 * without that file the API is read-only (changes get 403). See
 * docs/admin-api.md.
 *
 * This module only routes, authorises and validates; the HTTP plumbing (body
 * limit, timeouts) is the status server's. No message ever carries text from
 * the request: a bad value is named by its field, never quoted.
 *
 * @module
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { FailoverProxyError, type BackendStats, type UpstreamPool } from '../index.js';
import { MAX_WEIGHT, backendNamePattern } from './config.js';
import { formatAddress, parseAddress } from './address.js';
import type { RecentEvents } from './recent-events.js';
import { ReloadError, type ReloadSummary } from './reload.js';
import { MAX_MS } from './limits.js';

/** A request as the status server hands it over: the body already read, within its limit. */
export interface AdminRequest {
  readonly method: string;
  /** The path, without the query. */
  readonly path: string;
  readonly query: URLSearchParams;
  readonly authorization: string | undefined;
  readonly body: Buffer;
  /** Came over the 0600 Unix socket (`--admin-socket`): its permissions stand for the token. */
  readonly local?: boolean | undefined;
}

/** An answer: a status and a JSON document. */
export interface AdminReply {
  readonly status: number;
  readonly body: unknown;
  readonly headers?: Readonly<Record<string, string>>;
}

/**
 * The pool calls the API makes: an {@link UpstreamPool} in a single process;
 * with `--workers`, the primary's control pool, which runs each change on
 * itself and then in every worker.
 */
export type AdminPool = Pick<UpstreamPool, 'stats' | 'has' | 'backends' | 'add' | 'update' | 'remove' | 'drain' | 'markMaintenance' | 'markReady'>;

/** What the API acts on: the running balancer. */
export interface AdminTarget {
  readonly pool: AdminPool;
  readonly events: RecentEvents;
  /** SHA-256 of the admin token, read per request so a reload can change it; `undefined`: read-only. */
  readonly tokenDigest: () => Buffer | undefined;
  /** The drain deadline when a call gives none (`--drain-timeout`). */
  readonly drainTimeout: () => number;
  /** Re-reads the config and reconciles. Throws {@link ReloadError}. */
  readonly reload: () => ReloadSummary;
  /** One audit line per change. */
  readonly log: (line: string) => void;
}

/** The stable `error` codes of the API's answers. */
export type AdminErrorCode =
  | 'NOT_FOUND'
  | 'UNKNOWN_BACKEND'
  | 'METHOD_NOT_ALLOWED'
  | 'READ_ONLY'
  | 'UNAUTHORIZED'
  | 'INVALID_JSON'
  | 'INVALID_ARGUMENT'
  | 'PAYLOAD_TOO_LARGE'
  | 'DUPLICATE_BACKEND'
  | 'NO_CONFIG_FILE'
  | 'CONFIG_INVALID'
  | 'POOL_CLOSED'
  | 'INTERNAL';

/** The SHA-256 digest tokens are compared by. */
export function tokenDigest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/** Fewest characters a token may have: 32 (a random 24-byte value in base64, 192 bits). */
export const MIN_TOKEN_LENGTH = 32;
/** Most characters a token may have. */
export const MAX_TOKEN_LENGTH = 4096;
const tokenPattern = new RegExp(`^[\\x21-\\x7e]{${MIN_TOKEN_LENGTH},${MAX_TOKEN_LENGTH}}$`);

/** A token file's content, checked: printable ASCII without spaces, 32 to 4096 characters (a trailing newline is dropped). */
export function parseToken(content: string): string | undefined {
  const token = content.replace(/\r?\n$/, '');
  return tokenPattern.test(token) ? token : undefined;
}

/** An error answer. `message` is fixed text: it never quotes the request. */
export function errorReply(status: number, error: AdminErrorCode, message: string, headers?: Record<string, string>): AdminReply {
  return { status, body: { error, message }, ...(headers && { headers }) };
}

class BadRequest extends Error {
  constructor(
    readonly reply: AdminReply,
  ) {
    super(String((reply.body as { message: string }).message));
  }
}

function invalid(message: string): BadRequest {
  return new BadRequest(errorReply(400, 'INVALID_ARGUMENT', message));
}

/**
 * A backend as the API shows it: `pool.stats()`'s entry plus its address and
 * where it came from (`static`, or a discovery source such as `kubernetes`,
 * `dns:NAME:PORT`); an uncapped `maxConnections` is `null`.
 */
export type BackendView = BackendStats & { readonly address: string; readonly source: string };

function view(b: BackendStats, pool: AdminPool): BackendView {
  const source = pool.backends().find((x) => x.id === b.id)?.meta.source;
  return { ...b, address: formatAddress(b), source: typeof source === 'string' ? source : 'static' };
}

function findView(pool: AdminPool, id: string): BackendView | undefined {
  const b = pool.stats().backends.find((s) => s.id === id);
  return b === undefined ? undefined : view(b, pool);
}

/** The JSON body of a change: `{}` when empty; only the `allowed` keys. */
function jsonBody(body: Buffer, allowed: readonly string[]): Record<string, unknown> {
  if (body.length === 0) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw new BadRequest(errorReply(400, 'INVALID_JSON', 'the body is not valid JSON'));
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw invalid('the body must be a JSON object');
  const record = parsed as Record<string, unknown>;
  if (Object.keys(record).some((key) => !allowed.includes(key))) {
    throw invalid(allowed.length === 0 ? 'this call takes no fields' : `the fields accepted are ${allowed.map((k) => `"${k}"`).join(', ')}`);
  }
  return record;
}

function timeoutOf(body: Record<string, unknown>, fallback: number): number {
  const value = body['timeoutMs'];
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value > MAX_MS) {
    throw invalid(`"timeoutMs" must be an integer from 0 to ${MAX_MS} (milliseconds)`);
  }
  return value;
}

function weightOf(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > MAX_WEIGHT) {
    throw invalid(`"weight" must be a number from 0 to ${MAX_WEIGHT}`);
  }
  return value;
}

function capOf(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  // JSON has no Infinity: null lifts the cap.
  if (value === null) return Infinity;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) throw invalid('"maxConnections" must be an integer >= 1, or null for no cap');
  return value;
}

/** Whether the request carries the admin token: digests of equal length, compared in constant time. */
function authorised(expected: Buffer, header: string | undefined): boolean {
  const match = header === undefined ? null : /^Bearer +(\S+) *$/i.exec(header);
  const given = tokenDigest(match?.[1] ?? '');
  // Always compare, even without a header, so a missing token costs what a wrong one does.
  return timingSafeEqual(given, expected) && match !== null;
}

type Route =
  | { readonly kind: 'backends' }
  | { readonly kind: 'backend'; readonly id: string }
  | { readonly kind: 'action'; readonly id: string; readonly action: 'drain' | 'maintenance' | 'ready' }
  | { readonly kind: 'events' }
  | { readonly kind: 'reload' };

const allow: Readonly<Record<Route['kind'], readonly string[]>> = {
  backends: ['GET', 'HEAD', 'POST'],
  backend: ['GET', 'HEAD', 'PATCH', 'DELETE'],
  action: ['POST'],
  events: ['GET', 'HEAD'],
  reload: ['POST'],
};

function route(path: string): Route | undefined {
  if (path === '/api/backends') return { kind: 'backends' };
  if (path === '/api/events') return { kind: 'events' };
  if (path === '/api/reload') return { kind: 'reload' };
  const m = /^\/api\/backends\/([^/]+)(?:\/(drain|maintenance|ready))?$/.exec(path);
  if (m === null) return undefined;
  let id: string;
  try {
    id = decodeURIComponent(m[1]!);
  } catch {
    return undefined;
  }
  return m[2] === undefined ? { kind: 'backend', id } : { kind: 'action', id, action: m[2] as 'drain' | 'maintenance' | 'ready' };
}

/** Answers one `/api/` request. Never throws: every failure is an error reply. */
export function handleAdminRequest(target: AdminTarget, req: AdminRequest): AdminReply {
  const r = route(req.path);
  if (r === undefined) return errorReply(404, 'NOT_FOUND', 'no such API path');
  const methods = allow[r.kind];
  if (!methods.includes(req.method)) return errorReply(405, 'METHOD_NOT_ALLOWED', `allowed: ${methods.join(', ')}`, { allow: methods.join(', ') });
  const reading = req.method === 'GET' || req.method === 'HEAD';
  if (!reading && req.local !== true) {
    const expected = target.tokenDigest();
    if (expected === undefined) return errorReply(403, 'READ_ONLY', 'the admin API is read-only: start the balancer with --admin-token-file to allow changes');
    if (!authorised(expected, req.authorization)) {
      return errorReply(401, 'UNAUTHORIZED', 'a valid bearer token is required', { 'www-authenticate': 'Bearer realm="apiserver-balancer"' });
    }
  }
  const { pool } = target;
  try {
    switch (r.kind) {
      case 'backends':
        return reading ? list(target) : add(target, req.body);
      case 'events': {
        const after = Number(req.query.get('after') ?? '0');
        return { status: 200, body: { events: target.events.since(Number.isSafeInteger(after) ? after : 0), teardowns: pool.stats().teardowns } };
      }
      case 'reload':
        jsonBody(req.body, []);
        return reload(target);
      case 'backend':
      case 'action': {
        if (!pool.has(r.id)) return errorReply(404, 'UNKNOWN_BACKEND', 'no backend with that name');
        if (reading) return { status: 200, body: findView(pool, r.id) };
        return change(target, r, req);
      }
    }
  } catch (err) {
    if (err instanceof BadRequest) return err.reply;
    return libraryError(err);
  }
}

function list(target: AdminTarget): AdminReply {
  const stats = target.pool.stats();
  return {
    status: 200,
    body: {
      at: stats.at,
      allDown: stats.allDown,
      active: stats.active,
      waiting: stats.waiting,
      readOnly: target.tokenDigest() === undefined,
      backends: stats.backends.map((b) => view(b, target.pool)),
    },
  };
}

function add(target: AdminTarget, raw: Buffer): AdminReply {
  const body = jsonBody(raw, ['name', 'address', 'weight', 'maxConnections']);
  const name = body['name'];
  if (name !== undefined && (typeof name !== 'string' || !backendNamePattern.test(name))) {
    throw invalid('"name" must be 1 to 63 letters, digits, ".", "_", ":" or "-", starting with a letter or digit');
  }
  const address = typeof body['address'] === 'string' ? parseAddress(body['address']) : undefined;
  if (address === undefined) throw invalid('"address" must be "HOST:PORT" (or "[IPv6]:PORT"), port 1-65535');
  const weight = weightOf(body['weight']);
  const maxConnections = capOf(body['maxConnections']);
  const id = name ?? formatAddress(address);
  const { pool } = target;
  if (pool.has(id)) return errorReply(409, 'DUPLICATE_BACKEND', 'a backend with that name exists');
  if (pool.backends().some((b) => b.host === address.host && b.port === address.port)) {
    return errorReply(409, 'DUPLICATE_BACKEND', 'a backend with that address exists');
  }
  pool.add({ id, host: address.host, port: address.port, ...(weight !== undefined && { weight }), ...(maxConnections !== undefined && { maxConnections }) });
  target.log(`admin: added backend ${id}`);
  return { status: 201, body: findView(pool, id) };
}

function change(target: AdminTarget, r: Extract<Route, { kind: 'backend' | 'action' }>, req: AdminRequest): AdminReply {
  const { pool } = target;
  const { id } = r;
  if (r.kind === 'backend' && req.method === 'PATCH') {
    const body = jsonBody(req.body, ['weight', 'maxConnections']);
    const weight = weightOf(body['weight']);
    const maxConnections = capOf(body['maxConnections']);
    if (weight === undefined && maxConnections === undefined) throw invalid('give "weight", "maxConnections" or both');
    pool.update(id, { ...(weight !== undefined && { weight }), ...(maxConnections !== undefined && { maxConnections }) });
    target.log(`admin: updated backend ${id}${weight === undefined ? '' : ` weight ${weight}`}${maxConnections === undefined ? '' : ` maxConnections ${maxConnections}`}`);
    return { status: 200, body: findView(pool, id) };
  }
  if (r.kind === 'backend') {
    // DELETE: drain, then remove.
    const timeout = timeoutOf(jsonBody(req.body, ['timeoutMs']), target.drainTimeout());
    target.log(`admin: removing backend ${id} (drain deadline ${timeout} ms)`);
    pool.remove(id, { drain: true, timeout }).then(
      (result) =>
        target.log(result.removed ? `admin: backend ${id} drained and removed` : `admin: removal of ${id} called off (${result.reason}); backend ${id} stays`),
      (err: unknown) => target.log(`admin: removal of ${id} ended: ${err instanceof Error ? err.message : String(err)}`),
    );
    // The backend stays listed (draining) until its drain ends.
    return { status: 202, body: findView(pool, id) ?? { id, removed: true } };
  }
  switch (r.action) {
    case 'drain': {
      const timeout = timeoutOf(jsonBody(req.body, ['timeoutMs']), target.drainTimeout());
      const already = findView(pool, id)?.admin === 'draining';
      // A second drain only brings the deadline forward (the pool keeps the sooner one).
      target.log(already ? `admin: backend ${id} already draining (deadline ${timeout} ms applies if sooner)` : `admin: draining backend ${id} (deadline ${timeout} ms)`);
      pool.drain(id, { timeout }).then(
        () => undefined,
        (err: unknown) => target.log(`admin: drain of ${id} ended: ${err instanceof Error ? err.message : String(err)}`),
      );
      return { status: 202, body: findView(pool, id) };
    }
    case 'maintenance': {
      jsonBody(req.body, []);
      const tornDown = pool.markMaintenance(id, 'maintenance');
      target.log(`admin: backend ${id} in maintenance`);
      return { status: 200, body: { ...findView(pool, id), tornDown } };
    }
    case 'ready':
      jsonBody(req.body, []);
      pool.markReady(id, 'ready');
      target.log(`admin: backend ${id} ready`);
      return { status: 200, body: findView(pool, id) };
  }
}

function reload(target: AdminTarget): AdminReply {
  try {
    return { status: 200, body: target.reload() };
  } catch (err) {
    if (err instanceof ReloadError) {
      return err.code === 'NO_CONFIG_FILE' ? errorReply(409, 'NO_CONFIG_FILE', err.message) : errorReply(422, 'CONFIG_INVALID', err.message);
    }
    throw err;
  }
}

/** A library error we did not prevent by validating first: its code, never its message (which may quote a value). */
function libraryError(err: unknown): AdminReply {
  const code = err instanceof FailoverProxyError ? err.code : undefined;
  switch (code) {
    case 'UNKNOWN_BACKEND':
      return errorReply(404, 'UNKNOWN_BACKEND', 'no backend with that name');
    case 'DUPLICATE_BACKEND':
      return errorReply(409, 'DUPLICATE_BACKEND', 'a backend with that name exists');
    case 'INVALID_ARGUMENT':
      return errorReply(400, 'INVALID_ARGUMENT', 'the pool refused a value');
    case 'POOL_CLOSED':
      return errorReply(503, 'POOL_CLOSED', 'the balancer is shutting down');
    default:
      return errorReply(500, 'INTERNAL', 'internal error');
  }
}
