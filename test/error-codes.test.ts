/**
 * docs/errors.md is the list callers match on: every `ErrorCode` in
 * src/errors.ts, every error class in the root export and every
 * `NoHealthyBackendReason` has to be in it, and it lists nothing else.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import ts from 'typescript';
import * as lib from '../src/index.js';

const errorsSource = readFileSync(new URL('../src/errors.ts', import.meta.url), 'utf8');
const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');

/** The string literals of a union type alias in src/errors.ts, read with the compiler rather than a regex. */
function unionMembers(alias: string): string[] {
  const file = ts.createSourceFile('errors.ts', errorsSource, ts.ScriptTarget.Latest, true);
  for (const node of file.statements) {
    if (!ts.isTypeAliasDeclaration(node) || node.name.text !== alias) continue;
    const members = ts.isUnionTypeNode(node.type) ? node.type.types : [node.type];
    return members.map((m) => {
      assert.ok(ts.isLiteralTypeNode(m) && ts.isStringLiteral(m.literal), `${alias} has a member that is not a string literal: ${m.getText()}`);
      return m.literal.text;
    });
  }
  assert.fail(`src/errors.ts declares no type ${alias}`);
}

/** The rows of the table in docs/errors.md: code, class column, extra-fields column. */
const rows = doc
  .split('\n')
  .filter((line) => /^\| `[A-Z_]+` \|/.test(line))
  .map((line) => {
    const cells = line.split('|').slice(1, -1).map((c) => c.trim());
    assert.equal(cells.length, 4, `a row of four cells: ${line}`);
    const [code, cls, , fields] = cells as [string, string, string, string];
    return { code: code.slice(1, -1), cls, fields };
  });

test('every ErrorCode has a row in docs/errors.md, and every row is an ErrorCode', () => {
  const codes = unionMembers('ErrorCode');
  assert.ok(codes.length >= 10, `found ${codes.length} codes`);
  assert.deepEqual(rows.map((r) => r.code).sort(), [...codes].sort());
});

test('every error class in the root export is named in docs/errors.md', () => {
  const classes = Object.entries(lib)
    .filter(([, v]) => typeof v === 'function' && v.prototype instanceof Error && v.prototype instanceof lib.FailoverProxyError)
    .map(([name]) => name);
  assert.ok(classes.length >= 10, `found ${classes.length} classes`);
  const documented = new Set(rows.flatMap((r) => [...r.cls.matchAll(/`(\w+Error)`/g)].map((m) => m[1])));
  assert.deepEqual(classes.filter((c) => c !== 'FailoverProxyError' && !documented.has(c)), []);
  assert.match(doc, /`FailoverProxyError`/);
});

test("NO_HEALTHY_BACKEND's row lists exactly the NoHealthyBackendReason values", () => {
  const reasons = unionMembers('NoHealthyBackendReason');
  const row = rows.find((r) => r.code === 'NO_HEALTHY_BACKEND');
  assert.ok(row !== undefined);
  const listed = [...row.fields.matchAll(/`([a-z-]+)`/g)].map((m) => m[1]);
  assert.deepEqual(listed.filter((r) => r !== 'reason').sort(), [...reasons].sort());
});
