/**
 * Kernel-level faults in a private network namespace, shared by the partition
 * test, the failover bench and `failover-proxy-verify`: nftables rulesets that
 * make one address silent (a cut: every packet dropped both ways) or answer
 * every packet with a reset (a host that rebooted and lost its connection
 * state), the namespace's loopback set up with the addresses the scenario
 * uses, and the check that all of it can run here.
 *
 * Apply these only inside a network namespace of your own (`unshare -n`): a
 * ruleset applied in the host's namespace would cut the host.
 *
 * @module
 */
import { execFile, spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The table the rulesets create; `nft delete table inet <name>` lifts the fault. */
export const NFT_CUT_TABLE = 'cut';

/**
 * An `nft -f -` ruleset dropping everything to and from `host`. On loopback a
 * packet crosses both the input and the output hook, so both drop: nothing
 * leaks either way.
 */
export function nftCutRuleset(host: string): string {
  return `
table inet ${NFT_CUT_TABLE} {
  chain input {
    type filter hook input priority 0; policy accept;
    ip saddr ${host} drop
    ip daddr ${host} drop
  }
  chain output {
    type filter hook output priority 0; policy accept;
    ip saddr ${host} drop
    ip daddr ${host} drop
  }
}
`;
}

/** Applies a ruleset with `nft -f -`. */
export async function applyNftRuleset(ruleset: string): Promise<void> {
  const child = execFile('nft', ['-f', '-']);
  const done = new Promise<void>((resolve, reject) => {
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`nft -f - exited ${code}: ${stderr.trim()}`))));
  });
  child.stdin!.end(ruleset);
  await done;
}

/** Lifts whatever fault {@link applyNftRuleset} applied (deletes the table). */
export async function liftNftFault(): Promise<void> {
  await run('nft', ['delete', 'table', 'inet', NFT_CUT_TABLE]);
}

/**
 * Sets up a fresh namespace's loopback: `lo` up, each of `hosts` (127.x
 * addresses) added and checked to be local, and an empty ruleset, which a
 * fresh namespace has (anything else means this is not a private one).
 */
export async function setUpLoopback(hosts: readonly string[]): Promise<void> {
  await run('ip', ['link', 'set', 'lo', 'up']);
  for (const host of hosts) {
    // 127.0.0.0/8 is routed to lo once lo is up; the /32s make the addresses explicit.
    await run('ip', ['addr', 'add', `${host}/32`, 'dev', 'lo']).catch(() => undefined);
    const { stdout } = await run('ip', ['route', 'get', host]);
    if (!stdout.startsWith('local ')) throw new Error(`${host} is not local in this namespace: ${stdout.trim()}`);
  }
  const { stdout } = await run('nft', ['list', 'ruleset']);
  if (stdout.trim() !== '') throw new Error(`expected an empty ruleset in a fresh namespace (is this really a private one?), got: ${stdout.trim()}`);
}

function onPath(command: string): boolean {
  for (const dir of (process.env['PATH'] ?? '').split(delimiter).concat(['/usr/sbin', '/sbin'])) {
    if (dir === '') continue;
    try {
      accessSync(join(dir, command), constants.X_OK);
      return true;
    } catch {
      // Not in this one.
    }
  }
  return false;
}

/**
 * `undefined` when a private network namespace with nftables can be made
 * here, else exactly what is missing (root, a command, or the capability:
 * root in a container may still lack CAP_SYS_ADMIN / CAP_NET_ADMIN).
 */
export function netnsMissing(): string | undefined {
  const missing: string[] = [];
  const uid = process.getuid?.();
  if (uid !== 0) missing.push(`root (running as uid ${uid ?? 'unknown'})`);
  for (const command of ['unshare', 'ip', 'nft']) if (!onPath(command)) missing.push(`\`${command}\` on PATH`);
  if (missing.length > 0) return `needs ${missing.join(', ')}`;
  const probe = spawnSync('unshare', ['-n', '--', 'nft', 'list', 'ruleset'], { encoding: 'utf8', timeout: 10_000 });
  if (probe.status !== 0) {
    return `needs a network namespace with nftables: \`unshare -n -- nft list ruleset\` failed (${(probe.stderr || probe.error?.message || `exit ${probe.status}`).trim()})`;
  }
  return undefined;
}
