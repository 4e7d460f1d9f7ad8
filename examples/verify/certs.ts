/**
 * A throwaway CA and server certificate for the scenario's backends, made
 * with `openssl` in the run's directory (and removed with it). The package
 * ships no key material, and the certificate names exactly the addresses the
 * backends listen on, so a balancer that checks them with `{ca}` can verify
 * them as it would verify real apiservers.
 *
 * @module
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Paths of the PEM files made by {@link makeThrowawayCerts}. */
export interface ScenarioCerts {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

/**
 * Makes an EC P-256 CA and a server certificate for 127.0.0.1–4, ::1 and
 * `localhost`, valid for a day, in `dir`.
 */
export async function makeThrowawayCerts(dir: string): Promise<ScenarioCerts> {
  const p = (name: string): string => join(dir, name);
  const openssl = async (args: string[]): Promise<void> => {
    try {
      await run('openssl', args);
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { stderr?: string };
      if (e.code === 'ENOENT') throw new Error('needs `openssl` on PATH to make the backends\' throwaway certificates (apt-get install openssl)', { cause: err });
      throw new Error(`openssl ${args[0]} failed: ${(e.stderr ?? e.message).trim()}`, { cause: err });
    }
  };
  const key = (file: string): Promise<void> => openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', p(file)]);
  await key('ca.key');
  writeFileSync(p('ca.cnf'), '[req]\ndistinguished_name=dn\n[dn]\n[v3]\nbasicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n');
  await openssl(['req', '-new', '-x509', '-key', p('ca.key'), '-out', p('ca.crt'), '-days', '1', '-sha256', '-subj', '/O=failover-proxy-verify/CN=throwaway CA', '-extensions', 'v3', '-config', p('ca.cnf')]);
  await key('server.key');
  await openssl(['req', '-new', '-key', p('server.key'), '-out', p('server.csr'), '-subj', '/O=failover-proxy-verify/CN=apiserver.test']);
  writeFileSync(
    p('server.ext'),
    'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,IP:127.0.0.2,IP:127.0.0.3,IP:127.0.0.4,IP:::1,DNS:localhost,DNS:apiserver.test\n',
  );
  await openssl(['x509', '-req', '-in', p('server.csr'), '-CA', p('ca.crt'), '-CAkey', p('ca.key'), '-CAcreateserial', '-out', p('server.crt'), '-days', '1', '-sha256', '-extfile', p('server.ext')]);
  return { ca: p('ca.crt'), cert: p('server.crt'), key: p('server.key') };
}
