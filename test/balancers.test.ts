import assert from 'node:assert/strict';
import { test } from 'node:test';
import { resolveBackend, type BackendSpec } from '../src/backend.js';
import type { Balancer, PickCandidate, PickContext } from '../src/balancers/balancer.js';
import { balancerNames, createBalancer } from '../src/balancers/create-balancer.js';
import { HashBalancer } from '../src/balancers/hash.js';
import { LeastConnectionsBalancer } from '../src/balancers/least-connections.js';
import { RandomTwoBalancer } from '../src/balancers/random-two.js';
import { RoundRobinBalancer } from '../src/balancers/round-robin.js';
import { FailoverProxyError } from '../src/errors.js';

/** A mutable candidate, so tests can simulate connections opening and closing. */
interface TestCandidate extends PickCandidate {
  active: number;
}

function candidates(...specs: Array<Partial<BackendSpec> & { active?: number }>): TestCandidate[] {
  return specs.map(({ active = 0, ...spec }, i) => ({
    backend: resolveBackend({ host: '127.0.0.1', port: 10001 + i, id: `b${i}`, ...spec }),
    active,
  }));
}

function ids(list: readonly (PickCandidate | undefined)[]): string[] {
  return list.map((c) => c?.backend.id ?? 'none');
}

/** Counts picks per backend id. */
function tally(balancer: Balancer, list: readonly PickCandidate[], picks: number, context: PickContext = {}, open = false): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const c of list) counts[c.backend.id] = 0;
  for (let i = 0; i < picks; i++) {
    const chosen = balancer.pick(list, context) as TestCandidate | undefined;
    assert.ok(chosen, 'a candidate is picked');
    counts[chosen.backend.id]!++;
    if (open) chosen.active++;
  }
  return counts;
}

/** mulberry32: a tiny seeded PRNG, so random-two runs are reproducible. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A `random` that plays back fixed values, and records how many it handed out. */
function scripted(values: number[]): (() => number) & { calls: number } {
  const fn = Object.assign(
    () => {
      const value = values[fn.calls % values.length]!;
      fn.calls++;
      return value;
    },
    { calls: 0 },
  );
  return fn;
}

const allBalancers = (): Array<[string, Balancer]> => [
  ['least-connections', new LeastConnectionsBalancer()],
  ['round-robin', new RoundRobinBalancer()],
  ['random-two', new RandomTwoBalancer({ random: seeded(1) })],
  ['hash (keyed)', new HashBalancer()],
  ['hash (keyless)', new HashBalancer()],
];

test('every built-in picker', async (t) => {
  for (const [name, balancer] of allBalancers()) {
    const context: PickContext = name === 'hash (keyed)' ? { key: 'k' } : {};

    await t.test(`${name}: weight 0 is never picked`, () => {
      const list = candidates({ weight: 0 }, { weight: 1 }, { weight: 0 }, { weight: 2 });
      for (let i = 0; i < 300; i++) {
        const chosen = balancer.pick(list, name === 'hash (keyed)' ? { key: `k${i}` } : {});
        assert.ok(chosen && chosen.backend.weight > 0, `pick ${i} chose ${chosen?.backend.id}`);
      }
    });

    await t.test(`${name}: every candidate at weight 0 picks none`, () => {
      assert.equal(balancer.pick(candidates({ weight: 0 }, { weight: 0 }), context), undefined);
    });

    await t.test(`${name}: a single candidate is picked`, () => {
      const list = candidates({ active: 7 });
      assert.equal(balancer.pick(list, context), list[0]);
    });
  }
});

test('LeastConnectionsBalancer', async (t) => {
  await t.test('picks the least loaded', () => {
    const list = candidates({ active: 3 }, { active: 1 }, { active: 2 });
    assert.equal(new LeastConnectionsBalancer().pick(list, {}), list[1]);
  });

  await t.test('compares load per unit of weight', () => {
    // 4/4 = 1 beats 2/1 = 2, although b0 has more connections.
    const list = candidates({ active: 4, weight: 4 }, { active: 2, weight: 1 });
    assert.equal(new LeastConnectionsBalancer().pick(list, {}), list[0]);
  });

  await t.test('ties rotate instead of always choosing the first', () => {
    const balancer = new LeastConnectionsBalancer();
    const list = candidates({}, {}, {});
    assert.deepEqual(ids(Array.from({ length: 6 }, () => balancer.pick(list, {}))), ['b0', 'b1', 'b2', 'b0', 'b1', 'b2']);
  });

  await t.test('ties between two of three alternate, skipping the busier one', () => {
    const balancer = new LeastConnectionsBalancer();
    const list = candidates({}, { active: 5 }, {});
    assert.deepEqual(ids(Array.from({ length: 4 }, () => balancer.pick(list, {}))), ['b0', 'b2', 'b0', 'b2']);
  });

  await t.test('300 long-lived connections over 3 backends spread exactly evenly', () => {
    const list = candidates({}, {}, {});
    assert.deepEqual(tally(new LeastConnectionsBalancer(), list, 300, {}, true), { b0: 100, b1: 100, b2: 100 });
  });

  await t.test('uneven starting loads are evened out', () => {
    const list = candidates({ active: 10 }, {}, { active: 4 });
    tally(new LeastConnectionsBalancer(), list, 286, {}, true); // 14 already open + 286 = 300
    assert.deepEqual(list.map((c) => c.active), [100, 100, 100]);
  });

  await t.test('weights 1,2,3 over 600 long-lived connections give 100/200/300', () => {
    const list = candidates({ weight: 1 }, { weight: 2 }, { weight: 3 });
    assert.deepEqual(tally(new LeastConnectionsBalancer(), list, 600, {}, true), { b0: 100, b1: 200, b2: 300 });
  });

  await t.test('a shorter candidate list than last time does not break the cursor', () => {
    const balancer = new LeastConnectionsBalancer();
    const list = candidates({}, {}, {}, {});
    balancer.pick(list, {});
    balancer.pick(list, {});
    balancer.pick(list, {}); // cursor now past index 2
    const short = list.slice(0, 2);
    const chosen = new Set(ids(Array.from({ length: 4 }, () => balancer.pick(short, {}))));
    assert.deepEqual([...chosen].sort(), ['b0', 'b1']);
  });
});

test('RoundRobinBalancer', async (t) => {
  await t.test('equal weights cycle in order', () => {
    const balancer = new RoundRobinBalancer();
    const list = candidates({}, {}, {});
    assert.deepEqual(ids(Array.from({ length: 6 }, () => balancer.pick(list, {}))), ['b0', 'b1', 'b2', 'b0', 'b1', 'b2']);
  });

  await t.test('weights 1,2,3 over 600 picks give exactly 100/200/300', () => {
    const list = candidates({ weight: 1 }, { weight: 2 }, { weight: 3 });
    assert.deepEqual(tally(new RoundRobinBalancer(), list, 600), { b0: 100, b1: 200, b2: 300 });
  });

  await t.test('is smooth: a heavy backend is interleaved, not bursted (nginx 5,1,1)', () => {
    const balancer = new RoundRobinBalancer();
    const list = candidates({ id: 'a', weight: 5 }, { id: 'b', weight: 1 }, { id: 'c', weight: 1 });
    assert.deepEqual(ids(Array.from({ length: 7 }, () => balancer.pick(list, {}))), ['a', 'a', 'b', 'a', 'c', 'a', 'a']);
  });

  await t.test('fractional weights are honoured', () => {
    const list = candidates({ weight: 0.5 }, { weight: 1.5 });
    assert.deepEqual(tally(new RoundRobinBalancer(), list, 400), { b0: 100, b1: 300 });
  });

  await t.test('state is keyed by id: reordered and filtered lists keep the proportions', () => {
    const balancer = new RoundRobinBalancer();
    const list = candidates({ weight: 1 }, { weight: 2 }, { weight: 3 });
    const counts: Record<string, number> = { b0: 0, b1: 0, b2: 0 };
    for (let i = 0; i < 600; i++) {
      // Reverse the order every other pick; the result must not care.
      const view = i % 2 === 0 ? list : [...list].reverse();
      counts[balancer.pick(view, {})!.backend.id]!++;
    }
    assert.deepEqual(counts, { b0: 100, b1: 200, b2: 300 });
  });

  await t.test('a backend that was absent for a while rejoins the rotation', () => {
    const balancer = new RoundRobinBalancer();
    const list = candidates({}, {}, {});
    tally(balancer, list.slice(0, 2), 1000);
    assert.deepEqual(tally(balancer, list, 300), { b0: 100, b1: 100, b2: 100 });
  });

  await t.test('remembers a backend that is briefly absent', () => {
    const balancer = new RoundRobinBalancer();
    const [a, b, c] = candidates({}, {}, {}) as [TestCandidate, TestCandidate, TestCandidate];
    assert.equal(balancer.pick([a, b], {}), a); // now a.current = -1, b.current = 1
    tally(balancer, [c], 10);
    assert.equal(balancer.pick([a, b], {}), b, 'b kept its credit');
  });

  await t.test('forgets ids that stop appearing, so churn cannot grow its state', () => {
    const balancer = new RoundRobinBalancer();
    const [a, b, c] = candidates({}, {}, {}) as [TestCandidate, TestCandidate, TestCandidate];
    assert.equal(balancer.pick([a, b], {}), a); // now a.current = -1, b.current = 1
    // Long enough for two sweeps: a and b are dropped, as any churned-out id would be.
    tally(balancer, [c], 1000);
    assert.equal(balancer.pick([a, b], {}), a, 'a and b start afresh, so the tie goes to the first');
  });
});

test('RandomTwoBalancer', async (t) => {
  await t.test('picks the less loaded of its two draws', () => {
    // Draws are weighted by cumulative weight; with weights 1 each and 3
    // candidates, 0.0 draws b0 and then 0.6 of the remaining two draws b2.
    const list = candidates({ active: 5 }, { active: 0 }, { active: 1 });
    const random = scripted([0.0, 0.6]);
    const balancer = new RandomTwoBalancer({ random });
    assert.equal(balancer.pick(list, {}), list[2], 'b2 (1 active) beats b0 (5 active); b1 was not drawn');
    assert.equal(random.calls, 2);
  });

  await t.test('the two draws are distinct', () => {
    // The same random value twice must not draw the same candidate twice.
    const list = candidates({ active: 0 }, { active: 3 });
    const balancer = new RandomTwoBalancer({ random: scripted([0.1]) });
    // First draw b0; second draw is from {b1} only, b0 (0 active) still wins.
    assert.equal(balancer.pick(list, {}), list[0]);
    list[0]!.active = 9;
    assert.equal(balancer.pick(list, {}), list[1], 'b1 is the only possible second draw and is now lighter');
  });

  await t.test('with a seeded random, never picks the single most loaded backend', () => {
    const list = candidates({ active: 1 }, { active: 9 }, { active: 2 }, { active: 3 });
    const counts = tally(new RandomTwoBalancer({ random: seeded(42) }), list, 2000);
    assert.equal(counts['b1'], 0);
    // The least loaded wins whenever it is drawn: in 3 of every 6 pairs.
    assert.ok(counts['b0']! > 900 && counts['b0']! < 1100, JSON.stringify(counts));
  });

  await t.test('long-lived connections even out', () => {
    const list = candidates({}, {}, {}, {});
    const counts = tally(new RandomTwoBalancer({ random: seeded(7) }), list, 400, {}, true);
    for (const n of Object.values(counts)) assert.ok(n >= 95 && n <= 105, JSON.stringify(counts));
  });

  await t.test('draws are weighted when every backend is idle', () => {
    // Short-lived connections: everyone is always at 0 active, so only the draw decides.
    const list = candidates({ weight: 1 }, { weight: 3 });
    const counts = tally(new RandomTwoBalancer({ random: seeded(3) }), list, 4000);
    // The first draw wins ties, and it is b1 three times in four.
    assert.ok(counts['b1']! > 2800 && counts['b1']! < 3200, JSON.stringify(counts));
  });

  await t.test('a random returning 1 (out of contract) still yields a candidate', () => {
    const list = candidates({}, {}, {});
    assert.ok(new RandomTwoBalancer({ random: () => 1 }).pick(list, {}));
  });

  await t.test('rejects a non-function random', () => {
    assert.throws(() => new RandomTwoBalancer({ random: 3 as unknown as () => number }), { code: 'INVALID_ARGUMENT' });
  });
});

test('HashBalancer', async (t) => {
  const keys = Array.from({ length: 10_000 }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
  const assign = (balancer: Balancer, list: readonly PickCandidate[]): Map<string, string> =>
    new Map(keys.map((key) => [key, balancer.pick(list, { key })!.backend.id]));

  await t.test('the same key always maps to the same backend', () => {
    const list = candidates({}, {}, {}, {});
    const a = new HashBalancer();
    const b = new HashBalancer(); // a second instance (another process) agrees
    for (const key of ['alpha', 'beta', '10.0.0.1', '', 'ключ']) {
      const first = a.pick(list, { key });
      for (let i = 0; i < 5; i++) assert.equal(a.pick(list, { key }), first);
      assert.equal(b.pick(list, { key }), first);
    }
  });

  await t.test('does not depend on candidate order', () => {
    const list = candidates({}, {}, {}, {});
    const reversed = [...list].reverse();
    const balancer = new HashBalancer();
    for (const key of keys.slice(0, 500)) assert.equal(balancer.pick(list, { key }), balancer.pick(reversed, { key }));
  });

  await t.test('10,000 keys over 4 backends spread roughly evenly', () => {
    const list = candidates({}, {}, {}, {});
    const counts: Record<string, number> = {};
    for (const id of assign(new HashBalancer(), list).values()) counts[id] = (counts[id] ?? 0) + 1;
    for (const c of list) {
      const share = (counts[c.backend.id] ?? 0) / keys.length;
      assert.ok(share >= 0.2 && share <= 0.3, `${c.backend.id}: ${share} (${JSON.stringify(counts)})`);
    }
  });

  await t.test('weights are honoured', () => {
    const list = candidates({ weight: 1 }, { weight: 3 });
    let heavy = 0;
    for (const id of assign(new HashBalancer(), list).values()) if (id === 'b1') heavy++;
    assert.ok(heavy / keys.length > 0.71 && heavy / keys.length < 0.79, String(heavy));
  });

  await t.test('removing a backend moves only its keys; adding it back restores them', () => {
    const balancer = new HashBalancer();
    const list = candidates({}, {}, {}, {});
    const before = assign(balancer, list);
    const without = assign(
      balancer,
      list.filter((c) => c.backend.id !== 'b2'),
    );
    let moved = 0;
    for (const [key, id] of before) {
      if (id === 'b2') {
        assert.notEqual(without.get(key), 'b2');
        moved++;
      } else {
        assert.equal(without.get(key), id, `key ${key} moved off ${id} although ${id} stayed`);
      }
    }
    assert.ok(moved > 0);
    assert.deepEqual(assign(balancer, list), before);
  });

  await t.test('weight 0 behaves like removal for the other keys', () => {
    const balancer = new HashBalancer();
    const list = candidates({}, {}, {});
    const zeroed = candidates({}, { weight: 0 }, {});
    const before = assign(balancer, list);
    const after = assign(balancer, zeroed);
    for (const [key, id] of before) if (id !== 'b1') assert.equal(after.get(key), id);
  });

  await t.test('falls back to the client remote address', () => {
    const list = candidates({}, {}, {}, {});
    const balancer = new HashBalancer();
    const client = { remoteAddress: '192.0.2.7' } as unknown as NonNullable<PickContext['client']>;
    assert.equal(balancer.pick(list, { client }), balancer.pick(list, { key: '192.0.2.7' }));
    // An explicit key wins over the address.
    assert.equal(balancer.pick(list, { client, key: 'tenant' }), balancer.pick(list, { key: 'tenant' }));
  });

  await t.test('without any key, spreads by weighted round-robin', () => {
    const list = candidates({ weight: 1 }, { weight: 2 }, { weight: 1 });
    const client = { remoteAddress: undefined } as unknown as NonNullable<PickContext['client']>;
    assert.deepEqual(tally(new HashBalancer(), list, 400), { b0: 100, b1: 200, b2: 100 });
    assert.deepEqual(tally(new HashBalancer(), list, 400, { client }), { b0: 100, b1: 200, b2: 100 });
  });
});

test('createBalancer', async (t) => {
  await t.test('builds each named strategy as a fresh instance', () => {
    assert.ok(createBalancer('least-connections') instanceof LeastConnectionsBalancer);
    assert.ok(createBalancer('round-robin') instanceof RoundRobinBalancer);
    assert.ok(createBalancer('random-two') instanceof RandomTwoBalancer);
    assert.ok(createBalancer('hash') instanceof HashBalancer);
    assert.notEqual(createBalancer('round-robin'), createBalancer('round-robin'));
    assert.deepEqual(balancerNames, ['least-connections', 'round-robin', 'random-two', 'hash']);
    assert.ok(Object.isFrozen(balancerNames));
  });

  await t.test('passes random through to random-two', () => {
    const random = scripted([0.0, 0.6]);
    const list = candidates({ active: 5 }, { active: 0 }, { active: 1 });
    assert.equal(createBalancer('random-two', { random }).pick(list, {}), list[2]);
    assert.equal(random.calls, 2);
  });

  await t.test('wraps a plain function, called unbound with the same arguments', () => {
    const list = candidates({}, {});
    const seen: unknown[] = [];
    const context: PickContext = { key: 'k', meta: { zone: 'a' } };
    const balancer = createBalancer(function (this: unknown, c, ctx) {
      seen.push(this, c, ctx);
      return c[1];
    });
    assert.equal(balancer.pick(list, context), list[1]);
    assert.deepEqual(seen, [undefined, list, context]);
  });

  await t.test('passes a Balancer object through unchanged', () => {
    const custom: Balancer = { pick: (c) => c[0] };
    assert.equal(createBalancer(custom), custom);
  });

  for (const bad of ['least_conn', '', 'LEAST-CONNECTIONS', 42, null, undefined, {}, { pick: 'no' }, [], true]) {
    await t.test(`rejects ${JSON.stringify(bad) ?? 'undefined'} with INVALID_ARGUMENT naming \`balancer\``, () => {
      assert.throws(
        () => createBalancer(bad as never),
        (err: unknown) => {
          assert.ok(err instanceof FailoverProxyError);
          assert.equal(err.code, 'INVALID_ARGUMENT');
          assert.match(err.message, /`balancer`/);
          return true;
        },
      );
    });
  }

  await t.test('rejects bad options', () => {
    assert.throws(() => createBalancer('random-two', { random: 'x' as never }), { code: 'INVALID_ARGUMENT', message: /`random`/ });
    assert.throws(() => createBalancer('hash', { seed: 1 } as never), { code: 'INVALID_ARGUMENT', message: /`seed`/ });
    assert.throws(() => createBalancer('hash', null as never), { code: 'INVALID_ARGUMENT' });
  });
});
