/**
 * HAProxy and nginx as benchmark peers: detected on PATH (nginx with its
 * stream module, tried with `nginx -t`), started as child processes with a
 * generated config in a temp directory, stopped by pid. A peer that is not
 * installed is reported as skipped with the reason; nothing here installs
 * anything or pretends.
 *
 * Both run one worker thread/process unless asked otherwise (`threads`):
 * Node serves a proxy from one thread, and the machines these figures come
 * from have two cores shared by client, proxy and server. The multi-core
 * bench runs them with one per CPU against `--workers`.
 *
 * @module
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchContext } from './context.js';
import { cpuSeconds, freePort, minorFaults, rssBytes, sleep, startChild, systemSeconds, type Child } from './proc.js';

/** A peer's name. */
export type PeerName = 'haproxy' | 'nginx';

/** Whether a peer can run here. */
export interface PeerInfo {
  readonly name: PeerName;
  readonly available: boolean;
  /** e.g. `HAProxy 2.6.12`, when installed. */
  readonly version: string | undefined;
  /** Why it is skipped, when not available. */
  readonly reason: string | undefined;
}

/** A backend server of a generated config. */
export interface Upstream {
  readonly host: string;
  readonly port: number;
}

/** A running peer. */
export interface RunningPeer {
  readonly name: PeerName;
  readonly host: string;
  readonly port: number;
  /** The main pid (nginx: the master; its worker is a child). */
  readonly pid: number;
  readonly child: Child;
  /** CPU seconds of the whole process tree. */
  cpuSeconds(): number;
  /** System (kernel) CPU seconds of the whole process tree. */
  systemSeconds(): number;
  /** Minor page faults of the whole process tree. */
  minorFaults(): number;
  /** RSS of the whole process tree, in bytes. */
  rss(): number;
  /** RSS of the worker only (nginx's worker, HAProxy's single process). */
  workerRss(): number;
  stop(): Promise<void>;
}

const NGINX_MODULE_DIRS = ['/usr/lib/nginx/modules', '/usr/share/nginx/modules', '/usr/lib64/nginx/modules'];

function which(binary: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(':').concat(['/usr/sbin', '/sbin'])) {
    if (dir !== '' && existsSync(join(dir, binary))) return join(dir, binary);
  }
  return undefined;
}

let haproxyInfo: PeerInfo | undefined;
let nginxInfo: (PeerInfo & { binary?: string; module?: string | undefined }) | undefined;

/** Is HAProxy installed? (cached) */
export function detectHaproxy(): PeerInfo {
  if (haproxyInfo) return haproxyInfo;
  const binary = which('haproxy');
  if (binary === undefined) {
    haproxyInfo = { name: 'haproxy', available: false, version: undefined, reason: 'not installed (apt-get install haproxy)' };
    return haproxyInfo;
  }
  try {
    const out = execFileSync(binary, ['-v'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const m = /HAProxy version (\S+)/.exec(out);
    haproxyInfo = { name: 'haproxy', available: true, version: `HAProxy ${m?.[1] ?? '?'}`, reason: undefined };
  } catch (err) {
    haproxyInfo = { name: 'haproxy', available: false, version: undefined, reason: `haproxy -v failed: ${String(err)}` };
  }
  return haproxyInfo;
}

/** Is nginx installed, with the stream module? (cached; tries a stream config with `nginx -t`) */
export function detectNginx(): PeerInfo {
  if (nginxInfo) return nginxInfo;
  const binary = which('nginx');
  if (binary === undefined) {
    nginxInfo = { name: 'nginx', available: false, version: undefined, reason: 'not installed (apt-get install nginx libnginx-mod-stream)' };
    return nginxInfo;
  }
  let version = '?';
  let configure = '';
  try {
    // nginx -V writes to stderr.
    const res = execFileSync('sh', ['-c', `"${binary}" -V 2>&1`], { encoding: 'utf8' });
    version = /nginx\/(\S+)/.exec(res)?.[1] ?? '?';
    configure = res;
  } catch {
    /* keep '?' */
  }
  const staticStream = /--with-stream(?!=dynamic)(\s|$)/.test(configure);
  const module = staticStream ? undefined : NGINX_MODULE_DIRS.map((d) => join(d, 'ngx_stream_module.so')).find((p) => existsSync(p));
  if (!staticStream && module === undefined) {
    nginxInfo = { name: 'nginx', available: false, version: `nginx ${version}`, reason: 'stream module not installed (apt-get install libnginx-mod-stream)' };
    return nginxInfo;
  }
  const dir = mkdtempSync(join(tmpdir(), 'bench-nginx-t-'));
  try {
    writeFileSync(join(dir, 'nginx.conf'), nginxConfig({ dir, module, port: 1, upstreams: [{ host: '127.0.0.1', port: 1 }] }));
    execFileSync(binary, ['-t', '-q', '-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { stdio: ['ignore', 'pipe', 'pipe'] });
    nginxInfo = { name: 'nginx', available: true, version: `nginx ${version} (stream)`, reason: undefined, binary, module };
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString() ?? String(err);
    nginxInfo = { name: 'nginx', available: false, version: `nginx ${version}`, reason: `a stream config does not load: ${stderr.trim().split('\n')[0] ?? ''}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return nginxInfo;
}

/** The peers this run may use: installed, and allowed by `BENCH_PEERS`. Skipped ones come with a reason. */
export function peersFor(ctx: BenchContext): { run: PeerName[]; skipped: Map<PeerName, string> } {
  const run: PeerName[] = [];
  const skipped = new Map<PeerName, string>();
  for (const info of [detectHaproxy(), detectNginx()]) {
    if (!ctx.peers.has(info.name)) skipped.set(info.name, 'skipped: excluded by BENCH_PEERS');
    else if (!info.available) skipped.set(info.name, `skipped: ${info.reason ?? 'not installed'}`);
    else run.push(info.name);
  }
  return { run, skipped };
}

/** Options of a generated HAProxy config. */
export interface HaproxyConfigOptions {
  readonly port: number;
  readonly upstreams: readonly Upstream[];
  /** Appended to every `server` line (e.g. `check inter 1000`). */
  readonly serverOptions?: string | undefined;
  /** Extra lines in the backend section (e.g. `option httpchk GET /readyz`). */
  readonly backendLines?: readonly string[] | undefined;
  /** @default 9000 (fits a 20,000 file-descriptor limit: two per proxied connection) */
  readonly maxconn?: number | undefined;
  /** `timeout connect`, in ms. @default 5000 */
  readonly connectTimeoutMs?: number | undefined;
  /** `nbthread`; `'auto'` leaves it out (HAProxy's default: one thread per CPU it may run on). @default 1 */
  readonly threads?: number | 'auto' | undefined;
}

/** A TCP-mode HAProxy config: one frontend on 127.0.0.1, leastconn over the upstreams, 30-minute timeouts. */
export function haproxyConfig(o: HaproxyConfigOptions): string {
  const maxconn = o.maxconn ?? 9000;
  return [
    'global',
    `  maxconn ${maxconn}`,
    ...(o.threads === 'auto' ? [] : [`  nbthread ${o.threads ?? 1}`]),
    'defaults',
    '  mode tcp',
    `  timeout connect ${o.connectTimeoutMs ?? 5000}ms`,
    '  timeout client 30m',
    '  timeout server 30m',
    'frontend fe',
    `  bind 127.0.0.1:${o.port}`,
    `  maxconn ${maxconn}`,
    '  default_backend be',
    'backend be',
    '  balance leastconn',
    ...(o.backendLines ?? []).map((l) => `  ${l}`),
    ...o.upstreams.map((u, i) => `  server s${i} ${u.host}:${u.port}${o.serverOptions ? ` ${o.serverOptions}` : ''}`),
    '',
  ].join('\n');
}

/** Options of a generated nginx config. */
export interface NginxConfigOptions {
  readonly dir: string;
  /** Path of ngx_stream_module.so, unless built in. */
  readonly module: string | undefined;
  readonly port: number;
  readonly upstreams: readonly Upstream[];
  /** Extra lines in the `server {}` block. */
  readonly serverLines?: readonly string[] | undefined;
  /** @default 19000 */
  readonly workerConnections?: number | undefined;
  /** `proxy_connect_timeout`, in ms. @default 5000 */
  readonly connectTimeoutMs?: number | undefined;
  /** `worker_processes`; `'auto'`: one per CPU, as the stock nginx.conf of distributions sets it. @default 1 */
  readonly threads?: number | 'auto' | undefined;
}

/** An nginx `stream` config: one server on 127.0.0.1, least_conn over the upstreams, 30-minute timeouts. */
export function nginxConfig(o: NginxConfigOptions): string {
  const wc = o.workerConnections ?? 19000;
  return [
    ...(o.module ? [`load_module ${o.module};`] : []),
    'daemon off;',
    'master_process on;',
    `worker_processes ${o.threads ?? 1};`,
    'worker_rlimit_nofile 20000;',
    `pid ${join(o.dir, 'nginx.pid')};`,
    `error_log ${join(o.dir, 'error.log')} warn;`,
    `events { worker_connections ${wc}; }`,
    'stream {',
    `  upstream be { least_conn; ${o.upstreams.map((u) => `server ${u.host}:${u.port};`).join(' ')} }`,
    '  server {',
    `    listen 127.0.0.1:${o.port} backlog=4096;`,
    '    proxy_pass be;',
    '    proxy_timeout 30m;',
    `    proxy_connect_timeout ${o.connectTimeoutMs ?? 5000}ms;`,
    ...(o.serverLines ?? []).map((l) => `    ${l}`),
    '  }',
    '}',
    '',
  ].join('\n');
}

/** Polls until `host:port` accepts a connection. */
export async function waitForPort(host: string, port: number, timeoutMs = 10_000, child?: Child): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host, port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (child && (child.process.exitCode !== null || child.process.signalCode !== null)) {
      throw new Error(`peer exited before listening on ${host}:${port}: ${child.stderr().slice(-2000)}`);
    }
    if (Date.now() > deadline) throw new Error(`nothing listening on ${host}:${port} after ${timeoutMs} ms`);
    await sleep(20);
  }
}

/** Options of {@link startPeer}. */
export interface StartPeerOptions {
  readonly upstreams: readonly Upstream[];
  /** Listen port. @default a free one */
  readonly port?: number | undefined;
  /** HAProxy: appended to every server line. */
  readonly haproxyServerOptions?: string | undefined;
  /** HAProxy: extra backend lines. */
  readonly haproxyBackendLines?: readonly string[] | undefined;
  readonly maxconn?: number | undefined;
  /** nginx: extra lines in the server block. */
  readonly nginxServerLines?: readonly string[] | undefined;
  /** Both: time to connect to an upstream, in ms. @default 5000 */
  readonly connectTimeoutMs?: number | undefined;
  /** Both: HAProxy's `nbthread`, nginx's `worker_processes`; `'auto'`: one per CPU. @default 1 */
  readonly threads?: number | 'auto' | undefined;
}

/**
 * Starts a peer with a generated config and resolves once it accepts
 * connections. Its temp directory is removed when it stops.
 */
export async function startPeer(name: PeerName, o: StartPeerOptions): Promise<RunningPeer> {
  const port = o.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), `bench-${name}-`));
  let child: Child;
  if (name === 'haproxy') {
    const cfg = join(dir, 'haproxy.cfg');
    writeFileSync(
      cfg,
      haproxyConfig({
        port,
        upstreams: o.upstreams,
        serverOptions: o.haproxyServerOptions,
        backendLines: o.haproxyBackendLines,
        maxconn: o.maxconn,
        connectTimeoutMs: o.connectTimeoutMs,
        threads: o.threads,
      }),
    );
    // -db: foreground, no daemon; one process, whose pid we hold.
    child = startChild(which('haproxy') ?? 'haproxy', ['-db', '-f', cfg]);
  } else {
    const info = detectNginx() as PeerInfo & { binary?: string; module?: string };
    const cfg = join(dir, 'nginx.conf');
    // Every proxied connection takes two of nginx's worker_connections.
    const workerConnections = o.maxconn === undefined ? undefined : Math.min(19_990, 2 * o.maxconn + 20);
    writeFileSync(
      cfg,
      nginxConfig({
        dir,
        module: info.module,
        port,
        upstreams: o.upstreams,
        serverLines: o.nginxServerLines,
        workerConnections,
        connectTimeoutMs: o.connectTimeoutMs,
        threads: o.threads,
      }),
    );
    child = startChild(info.binary ?? 'nginx', ['-p', dir, '-c', cfg, '-e', join(dir, 'error.log')]);
  }
  try {
    await waitForPort('127.0.0.1', port, 10_000, child);
  } catch (err) {
    await child.stop();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const workerPid = (): number => {
    if (name === 'haproxy') return child.pid;
    try {
      const kids = execFileSync('sh', ['-c', `cat /proc/${child.pid}/task/*/children`], { encoding: 'utf8' }).trim().split(/\s+/);
      return Number(kids[0]) || child.pid;
    } catch {
      return child.pid;
    }
  };
  return {
    name,
    host: '127.0.0.1',
    port,
    pid: child.pid,
    child,
    cpuSeconds: () => cpuSeconds(child.pid, true),
    systemSeconds: () => systemSeconds(child.pid, true),
    minorFaults: () => minorFaults(child.pid, true),
    rss: () => rssBytes(child.pid, true),
    workerRss: () => rssBytes(workerPid()),
    async stop() {
      // nginx: SIGTERM to the master is a fast shutdown of master and workers.
      await child.stop(5000);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
