/**
 * The program each worker runs when test/workers.test.ts starts the
 * multi-core balancer in its own process (`startWorkers(..., { exec })`):
 * a worker of src/cli/worker.ts and nothing else.
 */
import cluster from 'node:cluster';
import { runWorker } from '../../src/cli/worker.js';

if (cluster.isWorker) runWorker({ log: (line) => process.stdout.write(`${line}\n`) });
