import assert from 'node:assert/strict';
import { test } from 'node:test';
import { resolveBackend, type BackendInput } from '../src/backend.js';
import type { FailoverProxyError } from '../src/errors.js';
import { planReconcile, type PlannedEntry } from '../src/reconcile-plan.js';

/** Current records as the plan reads them: no pool, no sockets. */
function entries(...specs: (BackendInput | [BackendInput, 'removing'])[]): PlannedEntry[] {
  return specs.map((spec, i) => {
    const [input, removing] = Array.isArray(spec) ? [spec[0], true] : [spec, false];
    return { backend: resolveBackend(input, `entries[${i}]`), removing };
  });
}

const ids = (list: readonly { id: string }[]): string[] => list.map((b) => b.id);

test('an empty pool and a list: every listed backend is added, in list order', () => {
  const plan = planReconcile(['10.0.0.2:80', '10.0.0.1:80'], []);
  assert.deepEqual(ids(plan.add), ['10.0.0.2:80', '10.0.0.1:80']);
  assert.deepEqual([plan.update, plan.remove, plan.replace, plan.unchanged], [[], [], [], []]);
  assert.deepEqual(plan.steps.map((s) => s.action), ['add', 'add']);
});

test('the same list again plans nothing; a backend no longer listed is removed', () => {
  const current = entries('10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80');
  const plan = planReconcile(['10.0.0.1:80', '10.0.0.3:80'], current);
  assert.deepEqual(plan.unchanged, ['10.0.0.1:80', '10.0.0.3:80']);
  assert.deepEqual(plan.remove, ['10.0.0.2:80']);
  assert.deepEqual([plan.add, plan.update, plan.replace], [[], [], []]);
});

test('changed tunables are an update carrying the wanted tunables; meta is compared as data, not as text', () => {
  const current = entries(
    { host: '10.0.0.1', port: 80, weight: 1, meta: { zone: 'a', tags: ['x'] } },
    { host: '10.0.0.2', port: 80, weight: 1 },
    { host: '10.0.0.3', port: 80, maxConnections: 10 },
  );
  const plan = planReconcile(
    [
      { host: '10.0.0.1', port: 80, weight: 1, meta: { tags: ['x'], zone: 'a' } },
      { host: '10.0.0.2', port: 80, weight: 3 },
      { host: '10.0.0.3', port: 80, maxConnections: 20 },
    ],
    current,
  );
  assert.deepEqual(plan.unchanged, ['10.0.0.1:80']);
  assert.deepEqual(ids(plan.update), ['10.0.0.2:80', '10.0.0.3:80']);
  assert.equal(plan.update[0]!.tunables.weight, 3);
  assert.equal(plan.update[1]!.tunables.maxConnections, 20);
  assert.equal(plan.update[0]!.relisted, false);
  // Planning changed nothing.
  assert.equal(current[1]!.backend.weight, 1);
});

test('a bare host:port resets tunables to their defaults, which is an update when they were set', () => {
  const plan = planReconcile(['10.0.0.1:80'], entries({ host: '10.0.0.1', port: 80, weight: 5 }));
  assert.deepEqual(ids(plan.update), ['10.0.0.1:80']);
  assert.deepEqual(plan.update[0]!.tunables, { weight: 1, maxConnections: Infinity, meta: {} });
});

test('a changed identity (servername, TLS) under the same id is a replace', () => {
  const current = entries({ host: '10.0.0.1', port: 443, id: 'a', servername: 'old.example' });
  const plan = planReconcile([{ host: '10.0.0.1', port: 443, id: 'a', servername: 'new.example' }], current);
  assert.deepEqual(ids(plan.replace), ['a']);
  assert.equal(plan.replace[0]!.servername, 'new.example');
  assert.deepEqual(plan.steps.map((s) => s.action), ['replace']);
});

test('a backend being drained for removal and listed again is an update that calls the removal off', () => {
  const plan = planReconcile(['10.0.0.1:80'], entries(['10.0.0.1:80', 'removing']));
  assert.deepEqual(ids(plan.update), ['10.0.0.1:80']);
  assert.equal(plan.update[0]!.relisted, true);
  assert.deepEqual(plan.unchanged, []);
});

test('steps follow the list order across kinds', () => {
  const current = entries('10.0.0.1:80', { host: '10.0.0.2', port: 80, weight: 2 });
  const plan = planReconcile(['10.0.0.9:80', '10.0.0.2:80', '10.0.0.1:80'], current);
  assert.deepEqual(
    plan.steps.map((s) => `${s.action} ${s.backend.id}`),
    ['add 10.0.0.9:80', 'update 10.0.0.2:80', 'keep 10.0.0.1:80'],
  );
});

test('a bad list throws and plans nothing: a bad spec (INVALID_ARGUMENT), an id listed twice (DUPLICATE_BACKEND)', () => {
  const current = entries('10.0.0.1:80');
  assert.throws(() => planReconcile(['10.0.0.1:80', 'not a backend'], current), (err: FailoverProxyError) => err.code === 'INVALID_ARGUMENT');
  assert.throws(() => planReconcile(['10.0.0.2:80', '10.0.0.2:80'], current), (err: FailoverProxyError) => err.code === 'DUPLICATE_BACKEND');
});
