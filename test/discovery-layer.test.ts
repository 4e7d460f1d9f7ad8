/**
 * The discovery layer with a source of its own and an injected clock:
 * debounce (and its ceiling under churn), never empty (a failing or empty
 * source keeps its last good list), static backends always present, the
 * draining state, the state file (used at start, never shadowing static,
 * a malformed one ignored), validation and an idempotent close.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Discovery, DiscoverySourceError, UpstreamPool, type DiscoveredBackend, type DiscoverySink, type DiscoverySource } from '../src/index.js';
import { FakeClock } from './helpers/fake-clock.js';
import { waitFor } from './helpers/net.js';

class ManualSource implements DiscoverySource {
  sink: DiscoverySink | undefined;
  closes = 0;
  constructor(readonly name = 'manual') {}
  start(sink: DiscoverySink): void {
    this.sink = sink;
  }
  close(): void {
    this.closes++;
  }
  update(...hosts: (string | DiscoveredBackend)[]): void {
    this.sink!.update(hosts.map((h) => (typeof h === 'string' ? { host: h, port: 6443 } : h)));
  }
}

function setup(options: { stateFile?: string; static?: string[] } = {}) {
  const clock = new FakeClock();
  const pool = new UpstreamPool({ clock, backends: options.static ?? [] });
  const source = new ManualSource();
  const discovery = new Discovery({ pool, sources: [source], static: options.static ?? ['10.0.0.1:6443'], debounce: 1000, maxDelay: 3000, drainTimeout: 5000, clock, stateFile: options.stateFile });
  return { clock, pool, source, discovery };
}

const ids = (pool: UpstreamPool): string[] => pool.backends().map((b) => b.id).sort();

test('a change is applied after the debounce; churn waits at most maxDelay', async (t) => {
  const { clock, pool, source, discovery } = setup();
  t.after(() => pool.destroy());
  await discovery.start();
  source.update('10.0.0.2');
  clock.advance(999);
  assert.deepEqual(ids(pool), []);
  clock.advance(1);
  assert.deepEqual(ids(pool), ['10.0.0.1:6443', '10.0.0.2:6443']);
  assert.equal(pool.get('10.0.0.2:6443')!.meta.source, 'manual');
  // Flapping every 900 ms: applied at the 3000 ms ceiling anyway.
  for (let i = 0; i < 4; i++) {
    source.update(i % 2 === 0 ? '10.0.0.3' : '10.0.0.4');
    clock.advance(900);
  }
  assert.equal(discovery.stats().applies, 2);
  await discovery.close();
  assert.equal(source.closes, 1);
});

test('never empty: failures and empty answers keep the last good list, with events and stats', async (t) => {
  const { clock, pool, source, discovery } = setup();
  t.after(() => pool.destroy());
  const held: [string, string, number][] = [];
  discovery.on('sourceHeld', (name, reason, kept) => held.push([name, reason, kept]));
  await discovery.start();
  source.update('10.0.0.2', '10.0.0.3');
  clock.advance(1000);
  source.sink!.fail(new DiscoverySourceError('manual', 'timeout', 'no answer'));
  source.update();
  clock.advance(5000);
  assert.deepEqual(ids(pool), ['10.0.0.1:6443', '10.0.0.2:6443', '10.0.0.3:6443']);
  assert.deepEqual(held, [['manual', 'failed', 2], ['manual', 'empty', 2]]);
  const s = discovery.stats().sources.manual!;
  assert.equal(s.state, 'held');
  assert.equal(s.failures, 1);
  assert.equal(s.empties, 1);
  assert.equal(s.lastError?.code, 'DISCOVERY_SOURCE_FAILED');
  assert.equal(s.lastError?.reason, 'timeout');
  // A bad answer is a failure too: nothing changes.
  source.sink!.update([{ host: '', port: 0 }]);
  clock.advance(5000);
  assert.equal(discovery.stats().sources.manual!.failures, 2);
  assert.equal(ids(pool).length, 3);
});

test('removal drains with the deadline; draining state drains and is lifted when active again; static always present', async (t) => {
  const { clock, pool, source, discovery } = setup();
  t.after(() => pool.destroy());
  await discovery.start();
  source.update('10.0.0.2', '10.0.0.3', '10.0.0.1');
  clock.advance(1000);
  assert.equal(pool.get('10.0.0.1:6443')!.meta.source, 'static', 'a static backend is never shadowed by a source');
  source.update({ host: '10.0.0.2', port: 6443, state: 'draining' }, '10.0.0.3');
  clock.advance(1000);
  assert.equal(pool.status('10.0.0.2:6443')!.admin, 'draining');
  assert.equal(pool.status('10.0.0.2:6443')!.health, 'up');
  source.update('10.0.0.2', '10.0.0.3');
  clock.advance(1000);
  assert.equal(pool.status('10.0.0.2:6443')!.admin, 'active', 'active again: the layer lifts its own drain');
  // An operator's drain is not the layer's to lift.
  pool.drain('10.0.0.3:6443').catch(() => {});
  source.update('10.0.0.2', { host: '10.0.0.3', port: 6443, weight: 2 });
  clock.advance(1000);
  assert.equal(pool.status('10.0.0.3:6443')!.admin, 'draining');
  source.update('10.0.0.3');
  clock.advance(1000);
  assert.equal(pool.status('10.0.0.2:6443')!.admin, 'draining', 'left the list: drained, not down');
  assert.ok(pool.has('10.0.0.2:6443'));
  await Promise.resolve();
  assert.ok(!pool.has('10.0.0.2:6443') || pool.status('10.0.0.2:6443')!.members === 0);
  await waitFor(() => !pool.has('10.0.0.2:6443'), { what: 'removed' });
  assert.ok(pool.has('10.0.0.1:6443'));
});

test('the state file: used at start, never shadows static, a malformed one is ignored', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fp-state-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const stateFile = join(dir, 'state.json');
  {
    const { clock, pool, source, discovery } = setup({ stateFile });
    await discovery.start();
    source.update('10.0.0.2', '10.0.0.1');
    clock.advance(1000);
    await discovery.close();
    await pool.destroy();
    const saved = JSON.parse(readFileSync(stateFile, 'utf8')) as { sources: Record<string, unknown[]> };
    assert.equal(saved.sources.manual!.length, 2);
  }
  {
    // Restart with a new bootstrap list and a source that never answers.
    const { clock, pool, discovery } = setup({ stateFile, static: ['10.0.0.9:6443'] });
    t.after(() => pool.destroy());
    await discovery.start();
    clock.advance(1000);
    assert.deepEqual(ids(pool), ['10.0.0.1:6443', '10.0.0.2:6443', '10.0.0.9:6443']);
    assert.equal(pool.get('10.0.0.9:6443')!.meta.source, 'static');
    assert.equal(discovery.stats().sources.manual!.fromStateFile, true);
    await discovery.close();
  }
  writeFileSync(stateFile, '{"version": 7');
  {
    const { clock, pool, discovery } = setup({ stateFile });
    t.after(() => pool.destroy());
    const failed: string[] = [];
    discovery.on('stateFileFailed', (op) => failed.push(op));
    await discovery.start();
    clock.advance(1000);
    assert.deepEqual(failed, ['load']);
    await discovery.close();
  }
});

test('validation, DISCOVERY_CLOSED and an idempotent close', async () => {
  const pool = new UpstreamPool();
  const s = new ManualSource();
  assert.throws(() => new Discovery({ pool, sources: [s, new ManualSource()] }), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => new Discovery({ pool, sources: [new ManualSource('static')] }), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => new Discovery({ pool, sources: [s], debounce: -1 }), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => new Discovery({ pool, sources: [s], bogus: 1 } as never), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => new Discovery({ pool: {} as never, sources: [] }), { code: 'INVALID_ARGUMENT' });
  const d = new Discovery({ pool, sources: [s] });
  const first = d.close();
  assert.equal(d.close(), first);
  await first;
  assert.equal(s.closes, 1);
  await assert.rejects(d.start(), { code: 'DISCOVERY_CLOSED' });
  assert.throws(() => d.setStatic([]), { code: 'DISCOVERY_CLOSED' });
  await pool.destroy();
});
