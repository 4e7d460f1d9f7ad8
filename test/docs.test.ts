/**
 * Every code block in docs/ tagged ```ts runnable runs, as a user would paste
 * it, against this checkout's source: `'failover-proxy'` resolves to src/.
 * Snippets use loopback servers only and must exit by themselves.
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

const snippets: { file: string; line: number; code: string }[] = [];
for (const name of readdirSync(docs).filter((f) => f.endsWith('.md')).sort()) {
  const text = readFileSync(join(docs, name), 'utf8');
  const re = /^```ts runnable\n([\s\S]*?)^```$/gm;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    snippets.push({ file: name, line: text.slice(0, m.index).split('\n').length, code: m[1]! });
  }
}

test('docs have runnable examples', () => {
  assert.ok(snippets.length >= 4, `found ${snippets.length}`);
});

for (const [i, s] of snippets.entries()) {
  test(`docs/${s.file}:${s.line} runs`, async () => {
    mkdirSync(scratch, { recursive: true });
    const file = join(scratch, `${s.file.replace(/\W/g, '_')}-${i}.ts`);
    writeFileSync(file, s.code.replaceAll(`'failover-proxy'`, `'${entry}'`));
    const { stdout } = await run(process.execPath, ['--import', 'tsx', file], { cwd: root, timeout: 30_000 });
    assert.ok(stdout.length > 0, 'a runnable example prints what it shows');
  });
}
