import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { CounterPoint } from '../domain/risk-keys.ts';
import { CounterMemory } from './counter-memory.ts';

/**
 * The memory of SQLite's risk counters on its own (the pipeline's use of it: test/counters-restart.test.ts and
 * test/batched-counter-reads.test.ts): window totals against a brute-force count, sums past the safe range,
 * and memory that stays bounded while keys come and go.
 */
const MINUTE = 60_000;
const big = BigInt(Number.MAX_SAFE_INTEGER);

/** Commits one point per (key, time, amount) event, each in its own batch, as the adapter would. */
function countAll(
  memory: CounterMemory,
  events: { key: string; atMs: number; amount: number }[],
  windowMaxMs: number,
) {
  let seq = 0;
  for (const e of events) {
    const latest = memory.latest(e.key);
    const point: CounterPoint = {
      atMs: Math.max(e.atMs, latest.atMs),
      count: latest.count + 1,
      sumCents: latest.sumCents + BigInt(e.amount),
    };
    memory.commit(new Map([[e.key, { windowMaxMs, points: [point] }]]), ++seq, e.atMs);
  }
}

test('window totals equal a brute-force count, through compaction and expiry (property)', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          key: fc.constantFrom('a', 'b', 'c'),
          gapMs: fc.nat({ max: 3 * MINUTE }),
          amount: fc.integer({ min: 1, max: 1_000 }),
        }),
        { minLength: 1, maxLength: 200 },
      ),
      fc.integer({ min: 1, max: 10 * MINUTE }),
      (ops, windowMs) => {
        const memory = new CounterMemory();
        let now = 1_000_000;
        const events = ops.map((op) => {
          now += op.gapMs;
          return { key: op.key, atMs: now, amount: op.amount };
        });
        countAll(memory, events, windowMs);
        for (const key of ['a', 'b', 'c']) {
          const start = now - windowMs;
          const inWindow = events.filter((e) => e.key === key && e.atMs > start);
          const latest = memory.latest(key);
          const base = memory.baseAt(key, start);
          assert.equal(latest.count - base.count, inWindow.length);
          assert.equal(latest.sumCents - base.sumCents, BigInt(inWindow.reduce((n, e) => n + e.amount, 0)));
        }
      },
    ),
  );
});

test('running sums past the safe integer range stay exact', () => {
  const memory = new CounterMemory();
  const now = 1_000_000;
  const points = [big - 5n, big, big + 7n, big * 3n].map((sumCents, i) => ({
    atMs: now + i,
    count: i + 1,
    sumCents,
  }));
  memory.commit(new Map([['k', { windowMaxMs: MINUTE, points }]]), 1, now + 10);
  assert.deepEqual(memory.latest('k'), { atMs: now + 3, count: 4, sumCents: big * 3n });
  assert.deepEqual(memory.baseAt('k', now + 1), { atMs: now + 1, count: 2, sumCents: big });
  assert.deepEqual(memory.baseAt('k', now - 1), { atMs: 0, count: 0, sumCents: 0n });
});

test('keys no window can see are forgotten as they fall due: memory follows the rate, not the history', () => {
  const memory = new CounterMemory();
  let now = 1_000_000;
  let seq = 0;
  const sizes: number[] = [];
  // A new 1-minute key for every event (a pattern key), 100 a second, for 20 minutes.
  for (let second = 0; second < 20 * 60; second++) {
    now += 1_000;
    const points = new Map<string, { windowMaxMs: number; points: CounterPoint[] }>();
    for (let i = 0; i < 100; i++)
      points.set(`pat:${++seq}`, { windowMaxMs: MINUTE, points: [{ atMs: now, count: 1, sumCents: 1n }] });
    memory.commit(points, seq, now);
    if (second % 60 === 59) sizes.push(memory.stats(now).keys);
  }
  // A key lives its window and as long again (the slack): about 2 minutes of keys, whatever the run's length.
  assert.ok(Math.max(...sizes) <= 100 * 2 * 60 + 100, `keys held: ${sizes.join(', ')}`);
  assert.ok(sizes.at(-1)! >= 100 * 60, 'and the keys of the last minute are all there');
});
