// Every embedding example must run from a fresh clone (no build) and, with
// --self-test, play its scenario, check it and exit 0 by itself.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

const examples: Record<string, RegExp[]> = {
  'examples/http-gateway.ts': [/watch: re-established on b\d/, /upgrade: torn down/, /upgrade: reconnected to b\d/],
  'examples/custom-balancer.ts': [/teardown: c\d+ \(zone a\) on a\d: probe-failed/, /zone a watches fell back to zone b/, /a new zone-a client lands on \{"a1":1\}/],
  'examples/tls-terminating-proxy.ts': [/backend certificate verified: true/, /torn down: probe-failed/, /watch: re-established on b\d/],
};

for (const [file, expected] of Object.entries(examples)) {
  test(`${file} --self-test exits 0`, { timeout: 60_000 }, async (t) => {
    // What `npx tsx <file>` runs, without npx in between.
    const child = spawn(process.execPath, ['--import', 'tsx', file, '--self-test'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    t.after(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const [code] = (await once(child, 'exit')) as [number | null];
    assert.equal(code, 0, `exit code\n${stdout}\n${stderr}`);
    assert.match(stdout, /done\n$/);
    for (const pattern of expected) assert.match(stdout, pattern);
    assert.equal(stderr, '', 'nothing on stderr');
  });
}
