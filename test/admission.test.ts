import assert from 'node:assert/strict';
import { test } from 'node:test';
import { refusal, type PoolGate } from '../src/admission.js';
import type { ReadonlyBackendEntry } from '../src/backend-entry.js';
import { resolveBackend } from '../src/backend.js';

/** A backend's record as the rule reads it: no pool, no sockets. */
function entry(state: Partial<{ health: string; admin: string; removed: boolean; weight: number; maxConnections: number; active: number }> = {}): ReadonlyBackendEntry {
  const { health = 'up', admin = 'active', removed = false, weight = 1, maxConnections = Infinity, active = 0 } = state;
  const backend = resolveBackend({ host: '10.0.0.1', port: 80, weight, maxConnections }, 'backend');
  return {
    backend,
    health,
    admin,
    removed,
    active,
    eligible: health === 'up' && admin === 'active' && !removed && weight > 0,
  } as unknown as ReadonlyBackendEntry;
}

const open: PoolGate = { closing: false, failOpen: false, active: 0, maxConnections: 10 };

test('the pool part: closing refuses every stage; the pool-wide cap refuses only a new pick', () => {
  const closing = { ...open, closing: true };
  for (const stage of ['pick', 'dialled', 'register'] as const) assert.equal(refusal(undefined, stage, closing), 'pool-closed');
  const full = { ...open, active: 10 };
  assert.equal(refusal(undefined, 'pick', full), 'pool-full');
  assert.equal(refusal(undefined, 'dialled', full), undefined);
  assert.equal(refusal(undefined, 'register', full), undefined);
  assert.equal(refusal(undefined, 'pick', open), undefined);
});

test('pick and dialled: only an eligible backend (up, active, not removed, weight above 0)', () => {
  for (const stage of ['pick', 'dialled'] as const) {
    assert.equal(refusal(entry(), stage, open), undefined);
    assert.equal(refusal(entry({ health: 'down' }), stage, open), 'unavailable');
    assert.equal(refusal(entry({ health: 'leaving' }), stage, open), 'unavailable');
    assert.equal(refusal(entry({ admin: 'draining' }), stage, open), 'unavailable');
    assert.equal(refusal(entry({ admin: 'maintenance' }), stage, open), 'unavailable');
    assert.equal(refusal(entry({ removed: true }), stage, open), 'unavailable');
    assert.equal(refusal(entry({ weight: 0 }), stage, open), 'unavailable');
  }
});

test('failing open: an unhealthy but active backend with weight is admitted, never a drained, removed or weightless one', () => {
  const failOpen = { ...open, failOpen: true };
  assert.equal(refusal(entry({ health: 'down' }), 'pick', failOpen), undefined);
  assert.equal(refusal(entry({ health: 'unknown' }), 'dialled', failOpen), undefined);
  assert.equal(refusal(entry({ health: 'down', admin: 'draining' }), 'pick', failOpen), 'unavailable');
  assert.equal(refusal(entry({ health: 'down', removed: true }), 'pick', failOpen), 'unavailable');
  assert.equal(refusal(entry({ health: 'down', weight: 0 }), 'pick', failOpen), 'unavailable');
});

test("the backend's own cap refuses a new pick only: a dialled connection already holds its slot", () => {
  const full = entry({ maxConnections: 2, active: 2 });
  assert.equal(refusal(full, 'pick', open), 'backend-full');
  assert.equal(refusal(full, 'dialled', open), undefined);
  assert.equal(refusal(entry({ maxConnections: 2, active: 1 }), 'pick', open), undefined);
});

test('register: refused only when the backend no longer serves (not up, maintenance, removed); a drain, weight 0 or a cap do not refuse it', () => {
  assert.equal(refusal(entry(), 'register', open), undefined);
  assert.equal(refusal(entry({ admin: 'draining' }), 'register', open), undefined);
  assert.equal(refusal(entry({ weight: 0 }), 'register', open), undefined);
  assert.equal(refusal(entry({ maxConnections: 1, active: 5 }), 'register', open), undefined);
  assert.equal(refusal(entry({ health: 'down' }), 'register', open), 'unavailable');
  assert.equal(refusal(entry({ health: 'leaving' }), 'register', open), 'unavailable');
  assert.equal(refusal(entry({ admin: 'maintenance' }), 'register', open), 'unavailable');
  assert.equal(refusal(entry({ removed: true }), 'register', open), 'unavailable');
  // Failing open does not widen what register accepts.
  assert.equal(refusal(entry({ health: 'down' }), 'register', { ...open, failOpen: true }), 'unavailable');
});
