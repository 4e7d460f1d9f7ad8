/**
 * The discovery state file: each source's last good list, written after
 * every apply and read at start so a restart without a reachable source
 * still knows more than the bootstrap list. It only ever adds to the static
 * (bootstrap) backends, never replaces them, and an unreadable or malformed
 * file is ignored with an event, never fatal: a stale file must not brick a
 * node (k3s#11349).
 *
 * @module
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import type { DiscoveredBackend } from './source.js';

/** What the file holds: format version and each source's last good list. */
export interface DiscoveryState {
  readonly version: 1;
  readonly savedAt: number;
  readonly sources: Readonly<Record<string, readonly DiscoveredBackend[]>>;
}

/** Reads a state file; `undefined` when it does not exist. Throws for a malformed one. */
export async function loadState(path: string): Promise<DiscoveryState | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return undefined;
    throw err;
  }
  const data = JSON.parse(text) as Partial<DiscoveryState>;
  if (data === null || typeof data !== 'object' || data.version !== 1 || typeof data.sources !== 'object' || data.sources === null) {
    throw new Error(`not a discovery state file (version 1): ${path}`);
  }
  const sources: Record<string, DiscoveredBackend[]> = {};
  for (const [name, list] of Object.entries(data.sources)) {
    if (!Array.isArray(list)) continue;
    sources[name] = (list as unknown[]).filter(
      (x): x is DiscoveredBackend => {
        const b = x as Partial<DiscoveredBackend> | null;
        return typeof b === 'object' && b !== null && typeof b.host === 'string' && b.host !== '' && Number.isInteger(b.port) && (b.port ?? 0) >= 1 && (b.port ?? 0) <= 65535;
      },
    );
  }
  return { version: 1, savedAt: Number(data.savedAt) || 0, sources };
}

/** Writes a state file atomically (a temporary file renamed over it). */
export async function saveState(path: string, state: DiscoveryState): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  await rename(tmp, path);
}
