/**
 * A fake cluster for discovery tests: the fake API server on 127.0.0.1–3
 * (one port), a YAML kubeconfig with a token and the fixtures' CA.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { certPaths } from '../../examples/support/certs.js';
import { FakeKubeApi } from '../../examples/support/fake-kube-api.js';

export const TOKEN = 'discovery-test-token';

export async function fakeCluster(t: TestContext, hosts = ['127.0.0.1', '127.0.0.2', '127.0.0.3']): Promise<{ api: FakeKubeApi; kubeconfig: string; dir: string }> {
  const api = await FakeKubeApi.start({ hosts, token: TOKEN, bookmarkEvery: 200 });
  t.after(() => api.stop());
  const dir = mkdtempSync(join(tmpdir(), 'fp-kube-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const kubeconfig = join(dir, 'kubelet.conf');
  writeFileSync(
    kubeconfig,
    `apiVersion: v1
kind: Config
clusters:
  - name: test
    cluster:
      server: https://127.0.0.1:${api.port}
      certificate-authority: ${certPaths.ca}
contexts:
  - name: test
    context:
      cluster: test
      user: node
current-context: test
users:
  - name: node
    user:
      token: ${TOKEN}
`,
  );
  return { api, kubeconfig, dir };
}
