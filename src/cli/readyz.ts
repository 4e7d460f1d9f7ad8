/**
 * What a kube-apiserver's `/readyz` answer means. A failing `/readyz` lists
 * each check, one per line (`[+]ping ok`, `[-]etcd failed: reason
 * withheld`). Two failures call for opposite actions:
 *
 * - `[-]shutdown`: the server is shutting down gracefully. It still serves
 *   for `--shutdown-delay-duration` and then ends its own watches at a
 *   limited rate: it is `leaving`, and its connections are left for it to
 *   close.
 * - anything else (`[-]etcd failed`: it lost its storage): its watches stop
 *   receiving events while their connections look healthy, so its clients
 *   must move now: `down`.
 *
 * @module
 */
import type { HttpClassification } from '../index.js';

/** Whether a check path is the apiserver's readiness endpoint (`/readyz`, `/readyz?verbose`). */
export function isReadyz(path: string): boolean {
  return path === '/readyz' || path.startsWith('/readyz?');
}

const shutdownLine = /^\[-\]shutdown\b.*$/m;
const failedLine = /^\[-\].*$/m;

/**
 * The `https:/readyz` check's classifier: 2xx and 3xx pass at once (the body
 * is not read); a failure is read (bounded by the check's `maxBodyBytes`) and
 * is `leaving` when a line starts with `[-]shutdown`, else `fail`. The
 * deciding line is the cause's message.
 *
 * @example
 * ```ts
 * new HealthProbe({ check: { type: 'https', path: '/readyz', ca, classify: classifyReadyz } });
 * ```
 */
export function classifyReadyz(status: number, body: string | undefined): HttpClassification {
  if (status >= 200 && status < 400) return 'pass';
  if (body === undefined) return 'body';
  const shutdown = shutdownLine.exec(body);
  if (shutdown !== null) return { outcome: 'leaving', message: shutdown[0].slice(0, 200) };
  const failed = failedLine.exec(body);
  return { outcome: 'fail', message: failed === null ? undefined : failed[0].slice(0, 200) };
}
