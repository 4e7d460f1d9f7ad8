/**
 * The reference balancer in this process, with its admin API, and a small
 * HTTP client for that API.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { startBalancer, type RunningBalancer } from '../../src/cli/balancer.js';
import { type BalancerConfig } from '../../src/cli/config.js';
import { parseBalancerArgs } from '../../src/cli/parse-balancer-args.js';
import { HOST } from './net.js';

/** A token as `--admin-token-file` wants it: 32+ printable characters, in a file of mode 0600. */
export const TOKEN = 'test-admin-token-0123456789abcdefghij';

/** A directory removed after the test. */
export function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'balancer-admin-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Parses balancer flags (the pure parser, reading real files). */
export function configOf(argv: readonly string[]): BalancerConfig {
  const parsed = parseBalancerArgs(argv, { readFile: (path) => readFileSync(path, 'utf8') });
  if (parsed.kind !== 'run') throw new Error('expected a config');
  return parsed.config;
}

export interface StartedBalancer {
  readonly balancer: RunningBalancer;
  /** The status listener's port. */
  readonly status: number;
  readonly lines: string[];
}

/**
 * Starts the balancer on loopback with a tcp check (quick to rise, slow to
 * fall: a check that times out on a loaded machine must not take a backend
 * down under a test) and the status listener,
 * the admin token when `token` (default true), `extra` flags after the
 * backends; with `reloadable`, a reload parses the same flags again (as the
 * CLI does). Destroyed after the test.
 */
export async function startAdminBalancer(
  t: TestContext,
  backends: readonly string[],
  { token = true, extra = [], reloadable = false }: { token?: boolean; extra?: readonly string[]; reloadable?: boolean } = {},
): Promise<StartedBalancer> {
  const argv = ['--listen', `${HOST}:0`, '--check', 'tcp', '--interval', '300', '--rise', '1', '--fall', '3', '--status', '0', '--drain-timeout', '300'];
  for (const b of backends) argv.push('--backend', b);
  if (token) {
    const file = join(tempDir(t), 'admin.token');
    writeFileSync(file, `${TOKEN}\n`, { mode: 0o600 });
    argv.push('--admin-token-file', file);
  }
  argv.push(...extra);
  const lines: string[] = [];
  const balancer = await startBalancer(configOf(argv), {
    log: (line) => lines.push(line),
    readFile: (path) => readFileSync(path),
    loadConfig: reloadable ? () => configOf(argv) : undefined,
  });
  t.after(() => balancer.destroy());
  return { balancer, status: balancer.statusAddress!.port, lines };
}

/** A backend as the API shows it (the fields tests read). */
export interface BackendDoc {
  readonly id: string;
  readonly host: string;
  readonly port: number;
  readonly address: string;
  readonly health: string;
  readonly admin: string;
  readonly state: string;
  readonly cause: { readonly source: string; readonly code: string; readonly message: string };
  readonly eligible: boolean;
  readonly members: number;
  readonly weight: number;
  readonly effectiveWeight: number;
  readonly maxConnections: number | null;
  readonly tornDown: number;
  /** `static`, or the discovery source that listed it. */
  readonly source: string;
}

export interface EventDoc {
  readonly seq: number;
  readonly backend: string;
  readonly kind: string;
  readonly axis: string;
  readonly to: string;
}

/**
 * Every document the API answers, merged: a test knows which one it asked
 * for and asserts on it; a field that is not there reads `undefined`.
 */
export type Doc = BackendDoc & {
  readonly readOnly: boolean;
  readonly allDown: boolean;
  readonly backends: BackendDoc[];
  readonly events: EventDoc[];
  readonly error: string;
  readonly message: string;
  readonly added: string[];
};

export interface ApiReply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
  /** The body parsed (`undefined` when it is not JSON). */
  readonly json: Doc;
}

export interface ApiCall {
  readonly token?: string | undefined;
  /** An object is sent as JSON; a string or Buffer as is. */
  readonly body?: unknown;
  readonly headers?: Record<string, string>;
}

/** One request to the status listener, on a fresh connection. */
export function api(port: number, method: string, path: string, call: ApiCall = {}): Promise<ApiReply> {
  const body = call.body === undefined ? undefined : typeof call.body === 'string' || Buffer.isBuffer(call.body) ? call.body : JSON.stringify(call.body);
  const headers: Record<string, string> = { ...call.headers };
  if (call.token !== undefined) headers['authorization'] = `Bearer ${call.token}`;
  if (body !== undefined) {
    headers['content-type'] ??= 'application/json';
    // Node's client neither frames nor chunks a DELETE body by default.
    headers['content-length'] = String(Buffer.byteLength(body));
  }
  return new Promise((resolve, reject) => {
    const req = request({ host: HOST, port, path, method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: Doc;
        try {
          json = (text === '' ? undefined : JSON.parse(text)) as Doc;
        } catch {
          json = undefined as unknown as Doc;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}
