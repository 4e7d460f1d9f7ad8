/**
 * What the balancer's command line says about itself: the name it was
 * invoked by (for `--help` and the error prefix) and the package version
 * (for `--version`).
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The name the package's `bin` installs the balancer under. */
export const binName = 'failover-proxy-apiserver';

/**
 * The command as the user typed it, from its script path (`process.argv[1]`):
 * the bin's name when run through npm's symlink (`failover-proxy-apiserver`, also under
 * `npx`), else the script's name without its extension (`apiserver-balancer`
 * for both `examples/apiserver-balancer.ts` and `dist/apiserver-balancer.js`).
 *
 * @example
 * ```ts
 * programName('/usr/lib/node_modules/.bin/failover-proxy-apiserver'); // 'failover-proxy-apiserver'
 * programName('/src/examples/apiserver-balancer.ts');                  // 'apiserver-balancer'
 * ```
 */
export function programName(script: string | undefined): string {
  if (script === undefined || script === '') return binName;
  const name = basename(script).replace(/\.(?:[cm]?js|[cm]?ts)$/, '');
  // Whatever reaches stderr stays printable and on one line.
  return /^[\w.@+-]{1,64}$/.test(name) ? name : binName;
}

/**
 * The version in the package's `package.json`, found by walking up from this
 * module's file: `dist/` in the build (the bin is one bundled file there),
 * `src/cli/` in a checkout, `node_modules/failover-proxy/dist/`
 * when installed (Node resolves the bin's symlink to that real path). Only a
 * `package.json` named `failover-proxy` counts, so a project that vendors the
 * file does not report its own version. `undefined` when none is found.
 */
export function packageVersion(from: string = fileURLToPath(import.meta.url)): string | undefined {
  let dir = dirname(from);
  for (let depth = 0; depth < 6; depth++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'failover-proxy' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      /* none here (or unreadable): keep looking */
    }
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return undefined;
}
