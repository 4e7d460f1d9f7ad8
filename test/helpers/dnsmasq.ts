/**
 * A real dnsmasq on a loopback UDP port, authoritative for `.test`
 * (`--local=/test/`: unknown names there get NXDOMAIN), with its A records
 * in a hosts file that `setRecords()` rewrites and reloads with SIGHUP.
 * `pause()` stops the process (SIGSTOP): a resolver that no longer answers.
 * Everything is torn down after the test.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { createServer, type AddressInfo } from 'node:net';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

export const DNSMASQ = ['/usr/sbin/dnsmasq', '/usr/bin/dnsmasq'].find((p) => spawnSync(p, ['--version']).status === 0);

/**
 * A port free for UDP and for TCP on 127.0.0.1 (dnsmasq listens on both):
 * a TCP port from the kernel, then the same number checked for UDP.
 */
async function freeDnsPort(): Promise<number> {
  for (;;) {
    const tcp = createServer();
    tcp.listen(0, '127.0.0.1');
    await once(tcp, 'listening');
    const { port } = tcp.address() as AddressInfo;
    const udp = createSocket('udp4');
    const free = await new Promise<boolean>((resolve) => {
      udp.once('error', () => resolve(false));
      udp.bind(port, '127.0.0.1', () => resolve(true));
    });
    if (free) await new Promise<void>((r) => udp.close(() => r()));
    else udp.close();
    await new Promise<void>((r) => tcp.close(() => r()));
    if (free) return port;
  }
}

export interface Dnsmasq {
  readonly port: number;
  readonly server: string;
  readonly pid: number;
  /** Rewrites the hosts file (name -> addresses) and reloads it (SIGHUP). Resolves once dnsmasq answered with the new set. */
  setRecords(records: Record<string, readonly string[]>): void;
  pause(): void;
  resume(): void;
}

/** Starts dnsmasq; `srv` lines are `--srv-host` values (fixed for the process's life). */
export async function startDnsmasq(t: TestContext, records: Record<string, readonly string[]>, srv: readonly string[] = []): Promise<Dnsmasq> {
  if (DNSMASQ === undefined) throw new Error('dnsmasq is not installed');
  const dir = mkdtempSync(join(tmpdir(), 'fp-dnsmasq-'));
  chmodSync(dir, 0o755); // dnsmasq drops to `nobody` and re-reads the file on SIGHUP
  const hosts = join(dir, 'hosts');
  const write = (r: Record<string, readonly string[]>): void => {
    const lines = Object.entries(r).flatMap(([name, addrs]) => addrs.map((a) => `${a} ${name}`));
    writeFileSync(hosts, lines.join('\n') + '\n', { mode: 0o644 });
  };
  write(records);
  // The port is free when picked, but another test may take it before
  // dnsmasq binds it: then pick another (at most 5 tries).
  let port = 0;
  let child: ChildProcess | undefined;
  let stderr = '';
  let exited = false;
  for (let attempt = 0; child === undefined; attempt++) {
    port = await freeDnsPort();
    const started = await spawnDnsmasq(port, hosts, srv, Object.keys(records)[0]!);
    if (started.child !== undefined) {
      ({ child } = started);
      stderr = started.stderr();
      break;
    }
    if (attempt >= 4 || !/Address already in use/.test(started.error)) throw new Error(started.error);
  }
  const running = child;
  running.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  running.once('exit', () => (exited = true));
  t.after(async () => {
    if (!exited && running.exitCode === null && running.signalCode === null) {
      running.kill('SIGCONT');
      running.kill('SIGTERM');
      await once(running, 'exit');
    }
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    port,
    server: `127.0.0.1:${port}`,
    pid: running.pid!,
    setRecords(r) {
      write(r);
      running.kill('SIGHUP');
    },
    pause() {
      running.kill('SIGSTOP');
    },
    resume() {
      running.kill('SIGCONT');
    },
  };
}

/** Spawns dnsmasq on `port` and waits until it answers for `name`; on failure the process is gone and `error` says why. */
async function spawnDnsmasq(
  port: number,
  hosts: string,
  srv: readonly string[],
  name: string,
): Promise<{ child: ChildProcess; stderr: () => string; error: string } | { child: undefined; stderr: () => string; error: string }> {
  const child: ChildProcess = spawn(
    DNSMASQ!,
    [
      '--keep-in-foreground',
      '--no-resolv',
      '--no-hosts',
      '--no-poll',
      `--addn-hosts=${hosts}`,
      '--local=/test/',
      '--listen-address=127.0.0.1',
      '--bind-interfaces',
      `--port=${port}`,
      '--pid-file=',
      '--local-ttl=0',
      '--cache-size=0',
      ...srv.map((s) => `--srv-host=${s}`),
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  const onData = (d: Buffer): void => {
    stderr += d.toString();
  };
  child.stderr!.on('data', onData);
  let exited = false;
  child.once('exit', () => (exited = true));
  // Ready when it answers a query.
  const { Resolver } = await import('node:dns/promises');
  const r = new Resolver({ timeout: 200, tries: 1 });
  r.setServers([`127.0.0.1:${port}`]);
  for (let i = 0; ; i++) {
    if (exited) return { child: undefined, stderr: () => stderr, error: `dnsmasq exited: ${stderr}` };
    try {
      await r.resolve4(name);
      child.stderr!.off('data', onData);
      return { child, stderr: () => stderr, error: '' };
    } catch {
      if (i > 50) {
        child.kill('SIGKILL');
        await once(child, 'exit');
        return { child: undefined, stderr: () => stderr, error: `dnsmasq did not answer: ${stderr}` };
      }
      await new Promise((res) => setTimeout(res, 100));
    }
  }
}
