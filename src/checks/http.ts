/**
 * The HTTP and HTTPS checks: one request, a status check, and an optional
 * body predicate over a body read up to a byte limit. Under a probe, the
 * connection is kept for the backend's next check (keep-alive); otherwise each
 * check has a connection of its own.
 *
 * @module
 */
import { request, validateHeaderName, validateHeaderValue, type ClientRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { Backend } from '../backend.js';
import { CheckError, InvalidArgumentError } from '../errors.js';
import * as v from '../validate.js';
import type { CheckOutcome } from '../health-state.js';
import { abortError, type CheckContext, type CheckFunction, type LeavingAnswer } from './check.js';
import type { ConnectionSlot } from './connection-slot.js';
import { socketError, superviseSocket, type SocketSupervision } from './socket-supervision.js';
import { dialTls, resolveTlsOptions, tlsOptionKeys, tlsServername, type ResolvedTlsOptions, type TlsCheckOptions } from './tls.js';

/**
 * What a {@link HttpClassifier} returns: an outcome, optionally with a
 * message for the cause (the line of the body that decided, say), or
 * `'body'` to be called again with the body.
 *
 * @example
 * ```ts
 * const decision: HttpClassification = { outcome: 'leaving', message: '[-]shutdown failed' };
 * ```
 */
export type HttpClassification = CheckOutcome | { readonly outcome: CheckOutcome; readonly message?: string | undefined } | 'body';

/**
 * Decides an HTTP check from the status and, when it asks, the body. Called
 * first with `body` `undefined`; returning `'body'` asks for the body, read
 * up to `maxBodyBytes` (longer fails the check) and decoded as UTF-8, and the
 * classifier is called again with it (where `'body'` again counts as `fail`).
 *
 * @example
 * ```ts
 * const classify: HttpClassifier = (status, body) =>
 *   status === 200 ? 'pass' : body === undefined ? 'body' : /^\[-\]shutdown/m.test(body) ? 'leaving' : 'fail';
 * ```
 */
export type HttpClassifier = (status: number, body: string | undefined) => HttpClassification;

/**
 * Options of the `http` and `https` checks.
 */
export interface HttpCheckOptions {
  /**
   * Request method.
   * @default 'GET'
   */
  readonly method?: string | undefined;
  /**
   * Request target: a path with an optional query.
   * @default '/readyz'
   */
  readonly path?: string | undefined;
  /**
   * Status codes that pass: one code or a list.
   * @default any 2xx or 3xx, as HAProxy's `option httpchk`
   */
  readonly expect?: number | readonly number[] | undefined;
  /** Extra request headers (`Host` may be overridden here). */
  readonly headers?: Readonly<Record<string, string>> | undefined;
  /**
   * Decides on the response body (decoded as UTF-8) once the status passed;
   * only `true` passes. A body longer than `maxBodyBytes` fails without
   * calling it. Without a predicate the body is never read: the status decides.
   */
  readonly body?: ((text: string) => boolean) | undefined;
  /**
   * Decides the outcome, `pass`, `leaving` (answered, not ready, still
   * serving) or `fail`, from the status and, when it asks, the body (see
   * {@link HttpClassifier}). It decides alone: not combined with `expect` or
   * `body`. A classifier that throws fails the check.
   * @default `expect` and `body` decide: pass or fail
   */
  readonly classify?: HttpClassifier | undefined;
  /**
   * Bytes of body read at most, for the `body` predicate or a classifier. Reading stops there
   * and the check fails, so a huge or endless body never sits in memory.
   * @default 65536
   */
  readonly maxBodyBytes?: number | undefined;
  /**
   * Keep the connection for the backend's next check (HTTP keep-alive, as
   * Envoy's `reuse_connection`), when the check is given a place to keep it
   * (a {@link HealthProbe} gives one per backend). A check that fails on a
   * kept connection is a failed check like any other, and the next check
   * dials a fresh one. With `false`, every check dials, sends
   * `Connection: close` and closes.
   * @default true
   */
  readonly reuseConnection?: boolean | undefined;
}

/**
 * Options of the `https` check: the HTTP options and the TLS options.
 */
export interface HttpsCheckOptions extends HttpCheckOptions, TlsCheckOptions {}

/**
 * An HTTP check as written in options.
 */
export interface HttpCheckSpec extends HttpCheckOptions {
  readonly type: 'http';
}

/**
 * An HTTPS check as written in options.
 */
export interface HttpsCheckSpec extends HttpsCheckOptions {
  readonly type: 'https';
}

const httpOptionKeys = ['method', 'path', 'expect', 'headers', 'body', 'classify', 'maxBodyBytes', 'reuseConnection'] as const;

interface ResolvedHttpOptions {
  readonly method: string;
  readonly path: string;
  /** `undefined`: any 2xx or 3xx. */
  readonly expect: readonly number[] | undefined;
  readonly headers: OutgoingHttpHeaders;
  /** `headers`, asking for keep-alive unless they set `Connection` themselves. */
  readonly keepAliveHeaders: OutgoingHttpHeaders;
  readonly body: ((text: string) => boolean) | undefined;
  readonly classify: HttpClassifier | undefined;
  readonly maxBodyBytes: number;
  readonly reuseConnection: boolean;
}

// RFC 9110 token characters.
const methodPattern = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// An origin-form request target: no whitespace, no control characters.
const pathPattern = /^\/[^\s\p{Cc}]*$/u;

function statusCode(name: string, value: unknown): number {
  return v.integer(name, value, 100, 599);
}

function resolveHttpOptions(options: HttpCheckOptions, name: string): ResolvedHttpOptions {
  const method = options.method === undefined ? 'GET' : v.string(`${name}.method`, options.method);
  if (!methodPattern.test(method)) throw v.invalid(`${name}.method`, 'an HTTP method token', method);
  const path = options.path ?? '/readyz';
  if (typeof path !== 'string' || !pathPattern.test(path)) throw v.invalid(`${name}.path`, "a path starting with '/' without spaces", path);
  let expect: readonly number[] | undefined;
  if (typeof options.expect === 'number') {
    expect = [statusCode(`${name}.expect`, options.expect)];
  } else if (options.expect !== undefined) {
    if (!Array.isArray(options.expect) || options.expect.length === 0) {
      throw v.invalid(`${name}.expect`, 'a status code or a non-empty array of status codes', options.expect);
    }
    expect = Object.freeze(options.expect.map((code, i) => statusCode(`${name}.expect[${i}]`, code)));
  }
  const headers: OutgoingHttpHeaders = {};
  if (options.headers !== undefined) {
    for (const [key, value] of Object.entries(v.object(`${name}.headers`, options.headers))) {
      const text = v.string(`${name}.headers.${key}`, value, { empty: true });
      try {
        validateHeaderName(key);
        validateHeaderValue(key, text);
      } catch {
        throw new InvalidArgumentError(`Expected \`${name}.headers\` to hold valid HTTP header names and values, got \`${key}\``);
      }
      headers[key] = text;
    }
  }
  const body = options.body === undefined ? undefined : v.func<(text: string) => boolean>(`${name}.body`, options.body);
  const classify = options.classify === undefined ? undefined : v.func<HttpClassifier>(`${name}.classify`, options.classify);
  if (classify !== undefined && (options.expect !== undefined || body !== undefined)) {
    throw new InvalidArgumentError(`Expected \`${name}.classify\` alone: it decides the outcome, so \`expect\` and \`body\` cannot be given with it`);
  }
  const maxBodyBytes = v.integer(`${name}.maxBodyBytes`, options.maxBodyBytes ?? 65536, 0);
  const reuseConnection = v.boolean(`${name}.reuseConnection`, options.reuseConnection ?? true);
  // Without an agent Node sends `Connection: close` unless asked otherwise.
  const setsConnection = Object.keys(headers).some((key) => key.toLowerCase() === 'connection');
  const keepAliveHeaders = setsConnection ? headers : { ...headers, connection: 'keep-alive' };
  return Object.freeze({
    method,
    path,
    expect,
    headers: Object.freeze(headers),
    keepAliveHeaders: Object.freeze(keepAliveHeaders),
    body,
    classify,
    maxBodyBytes,
    reuseConnection,
  });
}

function describeExpect(expect: readonly number[] | undefined): string {
  if (expect === undefined) return '2xx or 3xx';
  return expect.length === 1 ? String(expect[0]) : `one of ${expect.join(', ')}`;
}

/**
 * Creates the HTTP check: one request to `http://backend/path`, on the
 * backend's kept connection when the context has one (see
 * `reuseConnection`), else on a fresh connection. It fails at layer `connect`, `protocol` (a status not in
 * `expect`, a body the predicate refuses or longer than `maxBodyBytes`, a
 * malformed or cut-short response) or `timeout`.
 *
 * @example
 * ```ts
 * const check = httpCheck({ path: '/healthz', expect: 200 });
 * await check(backend, { signal: AbortSignal.timeout(1000) });
 * ```
 */
export function httpCheck(options: HttpCheckOptions = {}): CheckFunction {
  const raw = v.object('check', options);
  v.knownKeys('check', raw, httpOptionKeys);
  const http = resolveHttpOptions(options, 'check');
  return (backend: Backend, context: CheckContext): Promise<void | LeavingAnswer> => runHttpCheck(backend, context, http, undefined);
}

/**
 * Creates the HTTPS check: the HTTP check over TLS, with the certificate
 * verified unless `rejectUnauthorized: false`. It also fails at layer `tls`
 * (handshake, certificate, name, a refused client certificate).
 *
 * @example
 * ```ts
 * const check = httpsCheck({ ca: readFileSync('ca.crt'), path: '/readyz' });
 * await check(backend, { signal: AbortSignal.timeout(1000) });
 * ```
 */
export function httpsCheck(options: HttpsCheckOptions = {}): CheckFunction {
  const raw = v.object('check', options);
  v.knownKeys('check', raw, [...httpOptionKeys, ...tlsOptionKeys]);
  const http = resolveHttpOptions(options, 'check');
  const tls = resolveTlsOptions(options, 'check');
  return (backend: Backend, context: CheckContext): Promise<void | LeavingAnswer> => runHttpCheck(backend, context, http, tls);
}

function runHttpCheck(backend: Backend, { signal, connection }: CheckContext, http: ResolvedHttpOptions, tls: ResolvedTlsOptions | undefined): Promise<void | LeavingAnswer> {
  if (signal.aborted) return Promise.reject(abortError(signal));
  // Set by a classifier that said `leaving`: the exchange ends as a pass would
  // (the connection may be kept), and the check resolves with the answer.
  const answer: { leaving?: LeavingAnswer } = {};
  const slot = http.reuseConnection ? connection : undefined;
  // `http` stands for this check: a slot gives a socket back only to the check that kept it.
  const kept = slot?.take(http);
  const socket: Socket = kept ?? (tls === undefined ? connect({ host: backend.host, port: backend.port }) : dialTls(backend, tls, ['http/1.1']));
  const target = backend.id;
  return superviseSocket(
    socket,
    signal,
    target,
    (supervision) => {
      // Our own socket through `createConnection` and no agent: the socket's
      // lifecycle stays in our hands.
      const req = request({
        method: http.method,
        path: http.path,
        host: tls === undefined ? backend.host : (tlsServername(backend, tls) ?? backend.host),
        port: backend.port,
        defaultPort: tls === undefined ? 80 : 443,
        headers: slot === undefined ? http.headers : http.keepAliveHeaders,
        createConnection: () => socket,
      });
      // Parser errors (HPE_*) and hang-ups arrive here, blamed on the layer reached.
      req.on('error', (err) => supervision.finish(socketError(target, supervision.phase, err)));
      req.on('response', (res) => {
        if (http.classify === undefined) onResponse(res, req, socket, http, supervision, slot);
        else onClassified(res, req, socket, http, supervision, slot, answer);
      });
      req.end();
    },
    kept === undefined ? 'connect' : 'open',
  ).then(() => answer.leaving);
}

/** The check passed: the socket goes to the slot when there is one, else it is closed. */
function pass(supervision: SocketSupervision, slot: ConnectionSlot | undefined, http: ResolvedHttpOptions, socket: Socket): boolean {
  if (slot === undefined || !supervision.keep()) {
    supervision.finish();
    return false;
  }
  slot.keep(http, socket);
  return true;
}

/** Once the answer was read to its end: reusable if the server allows keep-alive (else Node is already closing it). */
function settleKept(req: ClientRequest, res: IncomingMessage, socket: Socket, slot: ConnectionSlot): void {
  const keepAlive = res.headers['keep-alive'];
  if (req.shouldKeepAlive && res.complete && !socket.destroyed) slot.ready(socket, typeof keepAlive === 'string' ? keepAlive : undefined);
  else slot.discard(socket);
}

function onResponse(
  res: IncomingMessage,
  req: ClientRequest,
  socket: Socket,
  http: ResolvedHttpOptions,
  supervision: SocketSupervision,
  slot: ConnectionSlot | undefined,
): void {
  const target = supervision.target;
  // Once the verdict is in, the socket is destroyed under the response; its
  // "aborted" error then means nothing.
  res.on('error', () => undefined);
  const status = res.statusCode ?? 0;
  const passes = http.expect === undefined ? status >= 200 && status < 400 : http.expect.includes(status);
  if (!passes) {
    supervision.finish(new CheckError('protocol', `\`${target}\` answered ${status}, expected ${describeExpect(http.expect)}`));
    return;
  }
  const predicate = http.body;
  if (predicate === undefined) {
    // The status decides, at once. A kept connection reads the rest of the
    // body in the background, up to maxBodyBytes, before it can be reused.
    if (pass(supervision, slot, http, socket) && slot !== undefined) drainKept(req, res, socket, slot, http);
    return;
  }
  readBody(res, http, supervision, (text) => {
    let verdict: unknown;
    try {
      verdict = predicate(text);
    } catch (err) {
      supervision.finish(new CheckError('protocol', `The body predicate threw on the answer of \`${target}\``, { cause: err }));
      return;
    }
    if (verdict !== true) {
      supervision.finish(new CheckError('protocol', `The body predicate refused the answer of \`${target}\``));
      return;
    }
    if (pass(supervision, slot, http, socket) && slot !== undefined) settleKept(req, res, socket, slot);
  });
}

/** A classifier's decision, normalised; `'body'` when it asks for the body. */
function decide(classify: HttpClassifier, status: number, body: string | undefined, target: string): { outcome: CheckOutcome; message?: string | undefined } | 'body' | CheckError {
  let decision: unknown;
  try {
    decision = classify(status, body);
  } catch (err) {
    return new CheckError('protocol', `The classifier threw on the answer of \`${target}\``, { cause: err });
  }
  if (decision === 'body') return body === undefined ? 'body' : { outcome: 'fail' };
  if (decision === 'pass' || decision === 'leaving' || decision === 'fail') return { outcome: decision };
  if (typeof decision === 'object' && decision !== null) {
    const { outcome, message } = decision as { outcome?: unknown; message?: unknown };
    if (outcome === 'pass' || outcome === 'leaving' || outcome === 'fail') return { outcome, message: typeof message === 'string' ? message : undefined };
  }
  return new CheckError('protocol', `The classifier returned no outcome for the answer of \`${target}\``);
}

/** The check is decided by a classifier: the status first, the body only when it asks. */
function onClassified(
  res: IncomingMessage,
  req: ClientRequest,
  socket: Socket,
  http: ResolvedHttpOptions,
  supervision: SocketSupervision,
  slot: ConnectionSlot | undefined,
  answer: { leaving?: LeavingAnswer },
): void {
  const target = supervision.target;
  res.on('error', () => undefined);
  const status = res.statusCode ?? 0;
  const classify = http.classify!;
  const conclude = (decision: ReturnType<typeof decide>, read: boolean): void => {
    if (decision instanceof CheckError) {
      supervision.finish(decision);
      return;
    }
    if (decision === 'body') return;
    const detail = decision.message === undefined ? '' : `: ${decision.message}`;
    if (decision.outcome === 'fail') {
      supervision.finish(new CheckError('protocol', `\`${target}\` answered ${status}${detail}`));
      return;
    }
    if (decision.outcome === 'leaving') answer.leaving = { outcome: 'leaving', message: `\`${target}\` answered ${status}, leaving${detail}` };
    if (!pass(supervision, slot, http, socket) || slot === undefined) return;
    // Decided on the status alone: the rest of the body is drained, bounded, before the socket is reused.
    if (read) settleKept(req, res, socket, slot);
    else drainKept(req, res, socket, slot, http);
  };
  const first = decide(classify, status, undefined, target);
  if (first !== 'body') {
    conclude(first, false);
    return;
  }
  readBody(res, http, supervision, (text) => conclude(decide(classify, status, text, target), true));
}

/**
 * Reads the body, at most `maxBodyBytes` (a longer one, declared or sent,
 * fails the check at layer `protocol`), and hands it over as text.
 */
function readBody(res: IncomingMessage, http: ResolvedHttpOptions, supervision: SocketSupervision, onBody: (text: string) => void): void {
  const tooLong = (): CheckError => new CheckError('protocol', `\`${supervision.target}\` sent a body longer than maxBodyBytes (${http.maxBodyBytes})`);
  if (Number(res.headers['content-length']) > http.maxBodyBytes) {
    supervision.finish(tooLong());
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let done = false;
  res.on('data', (chunk: Buffer) => {
    if (done) return;
    size += chunk.length;
    if (size > http.maxBodyBytes) {
      done = true;
      supervision.finish(tooLong());
      return;
    }
    chunks.push(chunk);
  });
  res.on('end', () => {
    if (done) return;
    done = true;
    onBody(Buffer.concat(chunks).toString('utf8'));
  });
}

/**
 * The check passed on the status alone: a kept connection reads the rest of
 * the body in the background, up to `maxBodyBytes` (past that the socket is
 * discarded), before it can be reused.
 */
function drainKept(req: ClientRequest, res: IncomingMessage, socket: Socket, slot: ConnectionSlot, http: ResolvedHttpOptions): void {
  if (Number(res.headers['content-length']) > http.maxBodyBytes) {
    slot.discard(socket);
    return;
  }
  let drained = 0;
  res.on('data', (chunk: Buffer) => {
    drained += chunk.length;
    if (drained > http.maxBodyBytes) slot.discard(socket);
  });
  res.on('end', () => settleKept(req, res, socket, slot));
}
