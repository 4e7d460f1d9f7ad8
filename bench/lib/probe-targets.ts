/**
 * The probe-cost bench's targets: N apiserver-like HTTPS backends
 * (examples/support/apiserver-backend.ts, fixture certificates) in one child
 * process, each on its own loopback port.
 *
 * ```sh
 * node --import tsx bench/lib/probe-targets.ts --count 1000
 * # prints "ports P1,P2,...", then "ready"; exits on SIGTERM
 * ```
 *
 * @module
 */
import { parseArgs } from 'node:util';
import { ApiserverBackend } from '../../examples/support/apiserver-backend.js';
import { loadCerts } from '../../examples/support/certs.js';

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { count: { type: 'string', default: '1000' } }, strict: true });
  const count = Number(values.count);
  if (!Number.isInteger(count) || count < 1) throw new TypeError(`Expected \`--count\` to be an integer >= 1, got \`${values.count}\``);
  const certs = loadCerts();
  const tls = { cert: certs.serverCert, key: certs.serverKey, ca: certs.ca };
  const servers: ApiserverBackend[] = [];
  for (let i = 0; i < count; i++) servers.push(await ApiserverBackend.start({ name: `t${i}`, host: '127.0.0.1', port: 0, tls }));
  process.stdout.write(`ports ${servers.map((s) => s.port).join(',')}\n`);
  process.stdout.write('ready\n');
  const stop = (): void => {
    Promise.all(servers.map((s) => s.close())).then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`probe-targets: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
