/**
 * Where the Kubernetes API is and how to authenticate: from a kubeconfig
 * file (the kubelet's, an admin's) or from the in-cluster service account.
 * A kubeconfig in JSON needs nothing; one in YAML (the usual) needs the
 * optional package `yaml`, imported here only, the first time one is read.
 *
 * @module
 */
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { KubeconfigError, OptionalDependencyError } from '../errors.js';

/** The API server and credentials. */
export interface KubeAccess {
  /** `https://host:port`. */
  readonly server: string;
  readonly ca?: Buffer | undefined;
  readonly cert?: Buffer | undefined;
  readonly key?: Buffer | undefined;
  /** A bearer token. */
  readonly token?: string | undefined;
  /** A file holding the bearer token, re-read for every request (projected tokens rotate). */
  readonly tokenFile?: string | undefined;
  /** The name to verify the server certificate against (`tls-server-name`). */
  readonly servername?: string | undefined;
  readonly insecureSkipTlsVerify?: boolean | undefined;
  /** Where it came from, for logs. */
  readonly origin: string;
}

/** Where the service account lives in a pod. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/**
 * The in-cluster access: `KUBERNETES_SERVICE_HOST`/`_PORT` and the mounted
 * service account token and CA.
 *
 * @throws `KUBECONFIG_INVALID` outside a pod.
 */
export async function inClusterAccess(env: NodeJS.ProcessEnv = process.env, dir = SERVICE_ACCOUNT_DIR): Promise<KubeAccess> {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT ?? '443';
  if (host === undefined || host === '') throw new KubeconfigError(dir, 'not in a cluster: KUBERNETES_SERVICE_HOST is not set (give a kubeconfig)');
  const tokenFile = resolve(dir, 'token');
  let ca: Buffer;
  try {
    ca = await readFile(resolve(dir, 'ca.crt'));
    await readFile(tokenFile);
  } catch (err) {
    throw new KubeconfigError(dir, 'cannot read the service account token or CA', { cause: err });
  }
  const h = host.includes(':') ? `[${host}]` : host;
  return { server: `https://${h}:${port}`, ca, tokenFile, origin: 'in-cluster' };
}

interface Named<T> {
  readonly name?: string;
  readonly cluster?: T;
  readonly user?: T;
  readonly context?: T;
}

/** Parses kubeconfig text: JSON directly, YAML through the optional `yaml` package. */
export async function parseKubeconfig(text: string, path: string): Promise<unknown> {
  const trimmed = text.trimStart();
  if (trimmed.startsWith('{')) {
    try {
      return JSON.parse(text) as unknown;
    } catch (err) {
      throw new KubeconfigError(path, 'malformed JSON', { cause: err });
    }
  }
  let yaml: { parse(text: string): unknown };
  try {
    yaml = (await import('yaml'));
  } catch (err) {
    throw new OptionalDependencyError('yaml', 'Reading a YAML kubeconfig', { cause: err });
  }
  try {
    return yaml.parse(text);
  } catch (err) {
    throw new KubeconfigError(path, 'malformed YAML', { cause: err });
  }
}

/**
 * Reads a kubeconfig: the current context (or `context`), its cluster's
 * server and CA, its user's token, token file or client certificate. Paths
 * inside are relative to the file.
 *
 * @throws `KUBECONFIG_INVALID`, `OPTIONAL_DEPENDENCY_MISSING`
 * @example
 * ```ts
 * const access = await loadKubeconfig('/etc/kubernetes/kubelet.conf');
 * ```
 */
export async function loadKubeconfig(path: string, context?: string): Promise<KubeAccess> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new KubeconfigError(path, 'cannot be read', { cause: err });
  }
  const doc = (await parseKubeconfig(text, path)) as Record<string, unknown> | null;
  if (typeof doc !== 'object' || doc === null) throw new KubeconfigError(path, 'not a kubeconfig');
  const contextName = context ?? (doc['current-context'] as string | undefined);
  const contexts = (doc.contexts ?? []) as Named<Record<string, string>>[];
  const clusters = (doc.clusters ?? []) as Named<Record<string, unknown>>[];
  const users = (doc.users ?? []) as Named<Record<string, unknown>>[];
  const ctx = contextName === undefined ? (contexts.length === 1 ? contexts[0]?.context : undefined) : contexts.find((c) => c.name === contextName)?.context;
  if (ctx === undefined) throw new KubeconfigError(path, `no context ${contextName === undefined ? '(and no current-context)' : `\`${contextName}\``}`);
  const cluster = clusters.find((c) => c.name === ctx.cluster)?.cluster;
  if (cluster === undefined || typeof cluster.server !== 'string') throw new KubeconfigError(path, `no cluster \`${ctx.cluster}\` with a server`);
  const user = users.find((u) => u.name === ctx.user)?.user ?? {};
  const base = dirname(path);
  const file = async (v: unknown, what: string): Promise<Buffer | undefined> => {
    if (typeof v !== 'string' || v === '') return undefined;
    try {
      return await readFile(isAbsolute(v) ? v : resolve(base, v));
    } catch (err) {
      throw new KubeconfigError(path, `cannot read ${what} \`${v}\``, { cause: err });
    }
  };
  const data = (v: unknown): Buffer | undefined => (typeof v === 'string' && v !== '' ? Buffer.from(v, 'base64') : undefined);
  const tokenFile = typeof user.tokenFile === 'string' ? (isAbsolute(user.tokenFile) ? user.tokenFile : resolve(base, user.tokenFile)) : undefined;
  const access: KubeAccess = {
    server: cluster.server.replace(/\/+$/, ''),
    ca: data(cluster['certificate-authority-data']) ?? (await file(cluster['certificate-authority'], 'certificate-authority')),
    cert: data(user['client-certificate-data']) ?? (await file(user['client-certificate'], 'client-certificate')),
    key: data(user['client-key-data']) ?? (await file(user['client-key'], 'client-key')),
    token: typeof user.token === 'string' ? user.token : undefined,
    tokenFile,
    servername: typeof cluster['tls-server-name'] === 'string' ? cluster['tls-server-name'] : undefined,
    insecureSkipTlsVerify: cluster['insecure-skip-tls-verify'] === true,
    origin: path,
  };
  if (!/^https:\/\//.test(access.server)) throw new KubeconfigError(path, `server \`${access.server}\` is not https://`);
  return access;
}
