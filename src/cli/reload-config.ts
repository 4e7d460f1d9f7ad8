/**
 * A reload (SIGHUP, `POST /api/reload`), the same in a single process and in
 * the primary of `--workers`: the config read again, the pool made to match
 * it, one log line either way.
 *
 * @module
 */
import { FailoverProxyError, type BackendSpec, type ReconcileResult } from '../index.js';
import { ConfigError, type BalancerConfig } from './config.js';
import { ReloadError, backendSpecs, restartNeeded, type ReloadSummary } from './reload.js';
import { readToken, type BalancerIo } from './setup.js';

function list(ids: readonly string[]): string {
  return ids.length === 0 ? '-' : ids.join(', ');
}

/** What {@link reloadConfig} works on. */
export interface ReloadTarget {
  /** The config the balancer started with (restart-only settings are compared with it). */
  readonly config: BalancerConfig;
  readonly io: BalancerIo;
  /** Makes the pool match the list; throws (and changes nothing) for a bad one. */
  readonly reconcile: (specs: BackendSpec[], options: { readonly drainTimeout: number }) => ReconcileResult;
  /** One line either way. */
  readonly log: (line: string) => void;
  /** The new config is in force: take its admin token (digest) and drain deadline. */
  readonly applied: (next: BalancerConfig, token: Buffer | undefined) => void;
}

/**
 * A reload (SIGHUP, `POST /api/reload`), the same in a single process and in
 * the primary of `--workers`: re-reads the config and reconciles the pool
 * with it. Throws {@link ReloadError} and changes nothing when there is no
 * config file or it is not valid; logs one line either way.
 */
export function reloadConfig(target: ReloadTarget): ReloadSummary {
  const { config, io, log } = target;
  try {
    if (io.loadConfig === undefined) throw new ReloadError('NO_CONFIG_FILE', 'no config file: start the balancer with --config FILE to reload');
    let next: BalancerConfig;
    let nextToken: Buffer | undefined;
    let result: ReconcileResult;
    try {
      next = io.loadConfig();
      nextToken = next.adminTokenFile === undefined ? undefined : readToken(io, next.adminTokenFile);
      // Validates every spec before it changes anything.
      result = target.reconcile(backendSpecs(next), { drainTimeout: next.drainTimeout });
    } catch (err) {
      if (err instanceof ConfigError) throw new ReloadError('CONFIG_INVALID', err.message);
      if (err instanceof FailoverProxyError && (err.code === 'INVALID_ARGUMENT' || err.code === 'DUPLICATE_BACKEND')) {
        throw new ReloadError('CONFIG_INVALID', err.message);
      }
      throw err;
    }
    target.applied(next, nextToken);
    result.settled.catch((err: unknown) => log(`reload: a drain ended badly: ${err instanceof Error ? err.message : String(err)}`));
    const summary: ReloadSummary = {
      added: result.added,
      updated: result.updated,
      removed: result.removed,
      replaced: result.replaced,
      unchanged: result.unchanged,
      // Compared with the start: these never change while running.
      restartNeeded: restartNeeded(config, next),
    };
    log(
      `reload: added ${list(summary.added)}; updated ${list(summary.updated)}; draining ${list(summary.removed)}` +
        `${summary.removed.length > 0 ? ` (${next.drainTimeout} ms)` : ''}; replaced ${list(summary.replaced)}; unchanged ${list(summary.unchanged)}` +
        `${summary.restartNeeded.length > 0 ? `; needs a restart (running value kept): ${summary.restartNeeded.join(', ')}` : ''}`,
    );
    return summary;
  } catch (err) {
    log(`reload refused, running config kept: ${err instanceof Error ? err.message : String(err)}`);
    throw err;
  }
}
