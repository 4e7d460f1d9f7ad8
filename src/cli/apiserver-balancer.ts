/**
 * The `failover-proxy-apiserver` bin (built to dist/apiserver-balancer.js):
 * runs the reference balancer with this process's command line. A worker of
 * `--workers N` runs this same file (`node:cluster` forks `process.argv[1]`).
 * The program itself is main.ts; this file only starts it.
 *
 * @module
 */
import { die, main } from './main.js';

main(process.argv.slice(2)).catch((err: unknown) => die(`unexpected error: ${err instanceof Error ? err.message : String(err)}`, 1));
