/**
 * A real dnsmasq on a loopback UDP port, authoritative for `.test`
 * (`--local=/test/`: unknown names there get NXDOMAIN), with its A records
 * in a hosts file that `setRecords()` rewrites and reloads with SIGHUP.
 * `pause()` stops the process (SIGSTOP): a resolver that no longer answers.
 * Everything is torn down after the test.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

export const DNSMASQ = ['/usr/sbin/dnsmasq', '/usr/bin/dnsmasq'].find((p) => spawnSync(p, ['--version']).status === 0);

async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  return port;
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
  const port = await freeUdpPort();
  const child: ChildProcess = spawn(
    DNSMASQ,
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
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  let exited = false;
  child.once('exit', () => (exited = true));
  t.after(async () => {
    if (!exited) {
      child.kill('SIGCONT');
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
    rmSync(dir, { recursive: true, force: true });
  });
  // Ready when it answers a query.
  const { Resolver } = await import('node:dns/promises');
  const r = new Resolver({ timeout: 200, tries: 1 });
  r.setServers([`127.0.0.1:${port}`]);
  for (let i = 0; ; i++) {
    if (exited) throw new Error(`dnsmasq exited: ${stderr}`);
    try {
      await r.resolve4(Object.keys(records)[0]!);
      break;
    } catch {
      if (i > 50) throw new Error(`dnsmasq did not answer: ${stderr}`);
      await new Promise((res) => setTimeout(res, 100));
    }
  }
  return {
    port,
    server: `127.0.0.1:${port}`,
    pid: child.pid!,
    setRecords(r) {
      write(r);
      child.kill('SIGHUP');
    },
    pause() {
      child.kill('SIGSTOP');
    },
    resume() {
      child.kill('SIGCONT');
    },
  };
}
