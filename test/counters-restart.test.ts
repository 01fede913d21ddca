import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { sweepOnce } from '../src/app/maintenance.ts';
import { sandboxPath } from '../src/storage/open-store.ts';
import type { SqliteStore } from '../src/storage/sqlite.ts';
import { apiKey, type Party, party, usd } from './support/fixtures.ts';
import { backend, manualClock, startTestApp, type TestApp } from './support/harness.ts';

/**
 * On SQLite the risk counters live in the writer's memory and are rebuilt from the stored payments when the
 * store opens (src/storage/counter-memory.ts). This test runs a history of payments over seven weeks, copies
 * the database as it stands (what a restart would find), opens the copy (a restarted server: its counters
 * rebuilt), and then sends the same payments at the same times to both: every decision, with its features
 * (counts and sums in each window), must be the same with and without the restart.
 *
 * PostgreSQL keeps its counters in a table, read in each transaction: nothing to rebuild.
 */
const START = Date.UTC(2026, 0, 1);
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const NAMES = ['Alma Restarter', 'Bruno Restarter', 'Carla Restarter', 'Dario Restarter', 'Elena Restarter'];

interface Planned {
  from: number;
  offset: number;
  amountCents: number;
  gapMs: number;
}

const planned = fc.record({
  from: fc.nat({ max: NAMES.length - 1 }),
  offset: fc.integer({ min: 1, max: NAMES.length - 1 }),
  amountCents: fc.oneof(
    { weight: 6, arbitrary: fc.integer({ min: 1, max: 60_000 }) },
    { weight: 2, arbitrary: fc.constantFrom(10_000, 20_000, 50_000) },
    // The structuring band of the default policy, and amounts past the KYC tiers' limits.
    { weight: 2, arbitrary: fc.integer({ min: 900_000, max: 999_999 }) },
    { weight: 1, arbitrary: fc.integer({ min: 1_000_000, max: 3_000_000 }) },
  ),
  // Mostly minutes to hours apart (about 30 days for 400 payments), some on the windows' edges.
  gapMs: fc.oneof(
    { weight: 12, arbitrary: fc.integer({ min: 0, max: 2 * MINUTE }) },
    { weight: 6, arbitrary: fc.integer({ min: 0, max: 8 * HOUR }) },
    { weight: 2, arbitrary: fc.constantFrom(MINUTE, HOUR, HOUR + 1, DAY - 1, DAY) },
  ),
});

let original: TestApp;
let copyDir: string;
let restarted: TestApp | undefined;
let parties: Party[];
const clock = manualClock(START);
const env = { SWEEP_INTERVAL_MS: '86400000', RATE_LIMIT_PER_SECOND: '0' };

before(async () => {
  if (backend !== 'sqlite') return;
  original = await startTestApp({ clock: clock.now, env });
  const compliance = await apiKey(original, 'compliance');
  parties = [];
  for (const [i, name] of NAMES.entries()) {
    const p = await party(original, { name, balance: 5_000_000 + i * 1_000_000 });
    const res = await original.request('POST', `/v1/customers/${p.customerId}/kyc`, {
      body: { kycStatus: 'verified', kycTier: i % 2 === 0 ? 'basic' : 'standard' },
      token: compliance.token,
    });
    assert.equal(res.status, 200, res.body);
    parties.push(p);
  }
});

after(async () => {
  if (backend !== 'sqlite') return;
  await restarted?.close();
  if (copyDir !== undefined) rmSync(copyDir, { recursive: true, force: true });
  await original.destroy();
});

let keySeq = 0;
/** Sends one planned payment to an app at the clock's time; returns what it decided, without ids. */
async function send(t: TestApp, p: Planned, key: string) {
  const body = usd(parties[p.from]!, parties[(p.from + p.offset) % NAMES.length]!, p.amountCents);
  const res = await t.request('POST', '/v1/payments', { body, idempotencyKey: key });
  assert.ok([201, 202, 422].includes(res.status), res.body);
  const { status, reasons, decision } = res.json.payment;
  assert.ok(decision.features, 'the full decision, features included');
  return { statusCode: res.status, status, reasons, decision };
}

test('decisions after a restart equal decisions without one', {
  skip: backend !== 'sqlite' && 'PostgreSQL reads its counters from a table: nothing to rebuild',
  timeout: 300_000,
}, async () => {
  // A month and more of history: windows of every length hold some of it, and some of it is past them all.
  const history = fc.sample(planned, { numRuns: 450, seed: 1501 });
  for (const p of history) {
    clock.advance(p.gapMs);
    await send(original, p, `history-${++keySeq}`);
  }
  assert.ok(clock.now() - START > 31 * DAY, `the history spans more than the longest window`);

  // What a restart finds: the committed database, copied while the original keeps running.
  copyDir = mkdtempSync(join(tmpdir(), 'payments-restart-'));
  const copyPath = join(copyDir, 'payments.db');
  // Both modes' files: the history is test data (the demo key's), in the sandbox's file.
  for (const [from, to] of [
    [original.db.sqlitePath!, copyPath],
    [sandboxPath(original.db.sqlitePath!), sandboxPath(copyPath)],
  ]) {
    const source = new Database(from!, { readonly: true });
    await source.backup(to!);
    source.close();
  }
  // And the development keys kept beside it (src/security/dev-keys.ts), as a restart would.
  copyFileSync(join(dirname(original.db.sqlitePath!), 'dev-keys.json'), join(copyDir, 'dev-keys.json'));
  const restartedClock = manualClock(clock.now());
  restarted = await startTestApp({
    db: { url: `sqlite:${copyPath}`, sqlitePath: copyPath, drop: async () => {} },
    clock: restartedClock.now,
    env,
  });
  // The rebuilt memory holds every point a window can see, as the original's does. (The original may keep an
  // older base point that the rebuild, starting a day before the longest window, did not replay: the
  // totals above either are the same.)
  const memoryOf = (t: TestApp) => (t.app.services.store as SqliteStore).counters;
  memoryOf(original).expire(clock.now(), Number.MAX_SAFE_INTEGER, () => false);
  const rebuilt = memoryOf(restarted).stats(clock.now());
  const kept = memoryOf(original).stats(clock.now());
  assert.ok(rebuilt.inWindows > 200, `the restarted store counted the payments again: ${rebuilt.inWindows}`);
  assert.deepEqual([rebuilt.keys, rebuilt.inWindows], [kept.keys, kept.inWindows]);

  // The same payments at the same times, to both. Both sweep now and then (expired review holds are
  // released in both; counters drop what no window sees, which must not change a decision).
  const next = fc.sample(planned, { numRuns: 150, seed: 1502 });
  const kinds = new Set<string>();
  for (const [i, p] of next.entries()) {
    clock.advance(p.gapMs);
    restartedClock.advance(p.gapMs);
    const key = `next-${++keySeq}`;
    const without = await send(original, p, key);
    const withRestart = await send(restarted, p, key);
    assert.deepEqual(withRestart, without, `payment ${i} decided the same after the restart`);
    kinds.add(without.status);
    if (i % 25 === 24) {
      await sweepOnce(original.app.services);
      await sweepOnce(restarted.app.services);
    }
  }
  // The comparison meant something: payments were posted, held and declined, on counted history.
  assert.deepEqual([...kinds].sort(), ['declined', 'manual_review', 'posted']);
});

/** A new app on the original's database file (a second process, or the new one of a rolling restart). */
async function secondOn(t: TestApp, now: () => number): Promise<TestApp> {
  return startTestApp({ db: { ...t.db, drop: async () => {} }, clock: now, env });
}

test('a payment stamped by a clock that stepped back does not cut the rebuild short', {
  skip: backend !== 'sqlite' && 'PostgreSQL reads its counters from a table: nothing to rebuild',
}, async () => {
  // Found by the review of 0019: the rebuild went back from the newest payment to the first one stamped
  // before the month, so this one payment hid every payment before it. It starts by time now (migration 16).
  const steps = { key: 0 };
  const p: Planned = { from: 0, offset: 1, amountCents: 12_345, gapMs: 0 };
  for (let i = 0; i < 10; i++) {
    clock.advance(6 * HOUR);
    await send(original, p, `stepped-${++steps.key}`);
  }
  const good = clock.now();
  clock.advance(-40 * DAY);
  await send(original, p, `stepped-${++steps.key}`);
  clock.advance(40 * DAY + MINUTE);
  const second = await secondOn(original, clock.now);
  try {
    const withRestart = await send(second, p, `stepped-${++steps.key}`);
    const without = await send(original, p, `stepped-${++steps.key}`);
    assert.ok(clock.now() > good);
    assert.ok((without.decision.features.sourceAttempts7d as number) >= 11, 'the history counts');
    // The second app counted one payment more (the first app's last one): everything else is the same.
    assert.equal(
      without.decision.features.sourceAttempts7d,
      withRestart.decision.features.sourceAttempts7d + 1,
    );
    assert.equal(
      without.decision.features.sourceAttempts24h,
      withRestart.decision.features.sourceAttempts24h + 1,
    );
  } finally {
    await second.close();
  }
});

test('two processes on one SQLite file each count the payments the other wrote', {
  skip: backend !== 'sqlite' && 'PostgreSQL reads its counters from a table: nothing to rebuild',
}, async () => {
  // Also from the review: each process kept its own memory, so a rolling restart (old and new process on
  // one file) decided on half the history. A batch now counts, first, payments it finds it has not counted.
  const second = await secondOn(original, clock.now);
  try {
    const p: Planned = { from: 2, offset: 1, amountCents: 777, gapMs: 0 };
    for (let i = 0; i < 5; i++) {
      clock.advance(1_000);
      await send(original, p, `first-process-${i}`);
    }
    clock.advance(1_000);
    const seen = await send(second, p, 'second-process-0');
    assert.equal(
      seen.decision.features.sourceAttempts1m,
      5,
      "the second process counted the first's payments",
    );
    assert.equal(seen.decision.features.samePattern1m, 5);
    clock.advance(1_000);
    const back = await send(original, p, 'first-process-5');
    assert.equal(back.decision.features.sourceAttempts1m, 6, "and the first process the second's");
  } finally {
    await second.close();
  }
});
