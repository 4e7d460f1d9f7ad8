/**
 * The program each worker runs when test/workers.test.ts starts the
 * multi-core balancer in its own process (`startWorkers(..., { exec })`):
 * a worker of examples/balancer/workers.ts and nothing else.
 */
import cluster from 'node:cluster';
import { runWorker } from '../../examples/balancer/workers.js';

if (cluster.isWorker) runWorker({ log: (line) => process.stdout.write(`${line}\n`) });
