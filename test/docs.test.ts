/**
 * Every code block in docs/ tagged ```ts runnable runs, as a user would paste
 * it, against this checkout's source: `'failover-proxy'` resolves to src/.
 * Snippets use loopback servers only, must exit by themselves, and print
 * exactly what `prints` below says.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { test } from 'node:test';

const root = fileURLToPath(new URL('..', import.meta.url));
const docs = join(root, 'docs');
const scratch = join(root, '.tmp', 'docs');
const entry = pathToFileURL(join(root, 'src', 'index.ts')).href;
const run = promisify(execFile);

/**
 * What each page's runnable snippets print, in page order. A string is the
 * whole output; a RegExp must match the whole output, for what the snippet
 * cannot pin down. A page with a snippet and no entry for it fails, so a new
 * snippet states what it prints.
 */
const prints: Readonly<Record<string, readonly (string | RegExp)[]>> = {
  'balancers.md': ['a2\nb1\nb1\n'],
  'errors.md': ['NO_HEALTHY_BACKEND queue-disabled\nINVALID_ARGUMENT Expected `retries` to be an integer from 0 to 1000, got `-1` (number)\n'],
  // The snippet's checks have a 100 ms timeout (its interval): on a loaded
  // machine the failing check may time out before the 503 is read.
  'health-probe.md': [/^api: up -> down \(probe-failed\)\nlast check failed at layer: (?:protocol|timeout)\napi: down -> up \(probe-passed\)\n$/],
  'http-agent.md': ['watching alpha\nstream cut: BACKEND_DOWN probe-failed\nre-watching on beta\n'],
  'rebalancing.md': ['started\nmoved 1 off a\nbalanced after 1 moves\n'],
  'pinned-connection.md': ['closed: client-closed, 4 B in, 4 B out\nechoed: ping\n'],
  'tls-and-proxy-protocol.md': [
    [
      '"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\\r\\n"',
      '0d 0a 0d 0a 00 0d 0a 51 55 49 54 0a 21 11 00 0c c0 00 02 01 c6 33 64 01 dc 04 01 bb',
      '"PROXY TCP6 2001:db8::1 2001:db8::2 51234 6443\\r\\n"',
      '0d0a0d0a000d0a515549540a20000000',
      '',
    ].join('\n'),
  ],
  'http-proxy.md': ['backend saw {"connection":"keep-alive","xff":"203.0.113.7, 127.0.0.1"}\nwatch complete? false\nthen: 503 NO_HEALTHY_BACKEND\n'],
  'upgrade.md': ['HTTP/1.1 101 Switching Protocols\npinned to b1\ntorn down: probe-failed\n'],
  'upstream-pool.md': [
    'greeted by alpha\nalpha down (probe-failed), 1 torn down\nclient connection closed; teardowns: {"probe-failed":1}\n',
    [
      'drain: up/draining (draining), eligible false',
      'markDown: down/draining (down), eligible false',
      'markUp: up/draining (draining), eligible false',
      'markReady: up/active (up), eligible true',
      'maintenance, then markDown: down/maintenance (maintenance), eligible false',
      'markReady: down/active (down), eligible false',
      '',
    ].join('\n'),
  ],
};

const snippets: { file: string; line: number; code: string; expected: string | RegExp | undefined }[] = [];
for (const name of readdirSync(docs).filter((f) => f.endsWith('.md')).sort()) {
  const text = readFileSync(join(docs, name), 'utf8');
  const re = /^```ts runnable\n([\s\S]*?)^```$/gm;
  let n = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    snippets.push({ file: name, line: text.slice(0, m.index).split('\n').length, code: m[1]!, expected: prints[name]?.[n++] });
  }
}

test('docs have runnable examples, and every expected output belongs to one', () => {
  assert.ok(snippets.length >= 4, `found ${snippets.length}`);
  const found: Record<string, number> = {};
  for (const s of snippets) found[s.file] = (found[s.file] ?? 0) + 1;
  const listed = Object.fromEntries(Object.entries(prints).map(([file, outputs]) => [file, outputs.length]));
  assert.deepEqual(found, listed, 'runnable snippets per page vs outputs listed in `prints`');
});

for (const [i, s] of snippets.entries()) {
  test(`docs/${s.file}:${s.line} runs and prints what it shows`, async () => {
    assert.ok(s.expected !== undefined, `no expected output for this snippet in \`prints\` (docs/${s.file})`);
    mkdirSync(scratch, { recursive: true });
    const file = join(scratch, `${s.file.replace(/\W/g, '_')}-${i}.ts`);
    writeFileSync(file, s.code.replaceAll(`'failover-proxy'`, `'${entry}'`));
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', file], { cwd: root, timeout: 30_000 });
    if (typeof s.expected === 'string') assert.equal(stdout, s.expected);
    else assert.match(stdout, s.expected);
    assert.equal(stderr, '', 'nothing on stderr');
  });
}
