import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import pg from 'pg';
import { createPayment, type PaymentReply, type PaymentRequest } from '../src/app/create-payment.ts';
import type { Actor } from '../src/domain/types.ts';
import { hashSecret } from '../src/security/api-keys.ts';
import { apiKey, holdCommitter, type Party, party, usd } from './support/fixtures.ts';
import { DEMO_TOKEN, manualClock, startTestApp, type TestApp } from './support/harness.ts';

/**
 * A batch reads the risk counters of all its payments in one statement (src/storage/risk-counters.ts,
 * `declare`), and its payments decide exactly as they would one at a time: the batch's earlier payments are
 * counted in memory, a payment running a little after the read still finds its windows' starts in what was
 * read (or reads for itself), and one whose window starts at a point of its own batch flushes and reads.
 *
 * Statements are counted at both drivers (node-postgres' Client#query, better-sqlite3's Statement methods),
 * outside the store. Each payment command is run at a time the test chooses (`tx.nowMs`), so the commands of
 * one batch can be seconds or days apart.
 */
const START = Date.UTC(2026, 0, 1);
const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;

let recording = false;
const statements: string[] = [];
function hookDrivers(): void {
  const query = pg.Client.prototype.query;
  pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
    if (recording) {
      const q = args[0] as string | { text?: string };
      statements.push(typeof q === 'string' ? q : (q.text ?? ''));
    }
    return (query as (...a: unknown[]) => unknown).apply(this, args);
  } as typeof query;
  const probe = new Database(':memory:');
  const statement = Object.getPrototypeOf(probe.prepare('SELECT 1')) as Record<string, unknown>;
  probe.close();
  for (const method of ['all', 'get', 'run', 'iterate']) {
    const original = statement[method] as (...a: unknown[]) => unknown;
    statement[method] = function (this: { source: string }, ...a: unknown[]) {
      if (recording) statements.push(this.source);
      return original.apply(this, a);
    };
  }
}
hookDrivers();

const isCounterRead = (sql: string) =>
  /^\s*(SELECT|WITH)\b/i.test(sql) && /\b(risk_counter_events|risk_keys_counted)\b/.test(sql);
/** A payment's own counter read (the per-command UNION ALL), as opposed to the batch's one read. */
const isCommandRead = (sql: string) => isCounterRead(sql) && /\bUNION ALL\b/.test(sql);

async function recordStatements<T>(run: () => Promise<T>): Promise<{ value: T; sql: string[] }> {
  statements.length = 0;
  recording = true;
  try {
    const value = await run();
    return { value, sql: [...statements] };
  } finally {
    recording = false;
  }
}

interface World {
  t: TestApp;
  parties: Party[];
  actor: Actor;
  /** Queues the times the next payment commands run at, in the order they are applied. */
  runAt(times: number[]): void;
  /** Payment commands submitted so far, and the number in each batch applied. */
  submitted(): number;
  batches: number[];
}

/**
 * An app with the same customers (names decide sanctions scores), balances and tiers each time. Payment
 * commands (those declaring counters) run at the times queued with `runAt`.
 */
async function world(): Promise<World> {
  // One batch in flight (PG_POOL_MAX=2 gives PostgreSQL one writer slot too), so a queue forms one batch.
  const t = await startTestApp({ clock: manualClock(START).now, env: { PG_POOL_MAX: '2' } });
  const compliance = await apiKey(t, 'compliance');
  const parties: Party[] = [];
  const specs = [
    { name: 'Alma Batchreader', balance: 1_500_000, tier: 'basic' },
    { name: 'Bruno Batchreader', balance: 900_000, tier: 'standard' },
    { name: 'Carla Batchreader', balance: 400_000, tier: 'standard' },
    { name: 'Dario Batchreader', balance: 2_000_000, tier: 'basic' },
  ];
  for (const spec of specs) {
    const p = await party(t, { name: spec.name, balance: spec.balance });
    const res = await t.request('POST', `/v1/customers/${p.customerId}/kyc`, {
      body: { kycStatus: 'verified', kycTier: spec.tier },
      token: compliance.token,
    });
    assert.equal(res.status, 200, res.body);
    parties.push(p);
  }
  const key = await t.app.services.store.reads.findApiKeyByHash(hashSecret(DEMO_TOKEN));
  assert.ok(key, 'the demo key exists');
  const times: number[] = [];
  const batches: number[] = [];
  let submitted = 0;
  const { committer, store } = t.app.services;
  const submit = committer.submit.bind(committer);
  committer.submit = (run, locks) => {
    if (locks?.counters !== undefined) submitted += 1;
    return submit(run, locks);
  };
  const apply = store.applyBatch.bind(store);
  store.applyBatch = (commands) => {
    batches.push(commands.filter((c) => c.locks?.counters !== undefined).length);
    return apply(
      commands.map((command) => {
        if (command.locks?.counters === undefined) return command;
        const at = times.shift();
        assert.ok(at !== undefined, 'a time is queued for every payment');
        return {
          ...command,
          run: async (tx) => {
            // The adapter set the clock's time; this command runs at the one the test chose.
            (tx as { nowMs: number }).nowMs = at;
            return command.run(tx);
          },
        };
      }),
    );
  };
  return {
    t,
    parties,
    actor: { apiKeyId: key.id, role: key.role, requestId: 'req_batched_reads' },
    runAt: (at) => void times.push(...at),
    submitted: () => submitted,
    batches,
  };
}

/** SQLite keeps the windows in its writer's memory and reads only `risk_keys_counted`, once per batch. */
const inMemory = (w: World) => w.t.app.services.store.dialect === 'sqlite';

/** A payment between two of the world's parties (by index), at a time. */
interface Planned {
  from: number;
  to: number;
  amountCents: number;
  atMs: number;
}

const requestIn = (w: World, p: Planned): PaymentRequest =>
  usd(w.parties[p.from]!, w.parties[p.to]!, p.amountCents);

/** What a payment decided, without its ids: the status and the full decision (features included). */
function decided(reply: { statusCode: number; body: string }) {
  const { payment } = JSON.parse(reply.body) as {
    payment: { status: string; reasons: string[]; decision: { features?: Record<string, unknown> } };
  };
  assert.ok(payment.decision.features, 'the full decision, features included');
  return { statusCode: reply.statusCode, status: payment.status, decision: payment.decision };
}

let keySeq = 0;
/**
 * The payments lined up behind a held committer, so they run as ONE batch, in this order. (Background jobs
 * may queue commands of their own meanwhile: they read no counters.)
 */
async function inOneBatch(w: World, planned: Planned[]) {
  const { release } = await holdCommitter(w.t);
  const replies: Promise<PaymentReply>[] = [];
  let batchesBefore: number;
  try {
    w.runAt(planned.map((p) => p.atMs));
    for (const [i, p] of planned.entries()) {
      const before = w.submitted();
      replies.push(createPayment(w.t.app.services, w.actor, `batched-${++keySeq}`, requestIn(w, p)));
      // createPayment reads before it submits: wait for each to queue, so the batch runs in this order.
      for (let n = 0; w.submitted() === before; n++) {
        assert.ok(n < 2_000, `payment ${i} was queued`);
        await new Promise((r) => setTimeout(r, 2));
      }
    }
    batchesBefore = w.batches.length;
  } catch (error) {
    await release();
    throw error;
  }
  const { value, sql } = await recordStatements(async () => {
    await release();
    return Promise.all(replies);
  });
  assert.ok(
    w.batches.slice(batchesBefore).includes(planned.length),
    `the payments made one batch: ${w.batches.slice(batchesBefore)}`,
  );
  return { decisions: value.map(decided), sql };
}

/** The same payments, each in its own batch (its own transaction), one after another. */
async function oneAtATime(w: World, planned: Planned[]) {
  const decisions = [];
  for (const p of planned) {
    w.runAt([p.atMs]);
    decisions.push(
      decided(await createPayment(w.t.app.services, w.actor, `single-${++keySeq}`, requestIn(w, p))),
    );
  }
  return decisions;
}

let grouped: World;
let single: World;
before(async () => {
  grouped = await world();
  single = await world();
});
after(async () => {
  await grouped.t.destroy();
  await single.t.destroy();
});

test('a batch of payments reads all their counters in one statement', async () => {
  // Keys repeat within the batch (same source, same pair, same amount), and the commands run 40 ms apart.
  const pairs = [
    [0, 1],
    [0, 1],
    [1, 2],
    [2, 0],
    [0, 1],
    [3, 0],
    [1, 0],
    [2, 3],
    [0, 2],
    [3, 1],
    [0, 1],
    [1, 3],
  ] as const;
  const planned = pairs.map(([from, to], i) => ({
    from,
    to,
    amountCents: i % 3 === 0 ? 2_000 : 1_000 + i,
    atMs: START + 10 * MINUTE + 40 * i,
  }));
  const { decisions, sql } = await inOneBatch(grouped, planned);
  assert.equal(decisions.length, 12);
  assert.equal(sql.filter(isCounterRead).length, 1, `one counter read for 12 payments:\n${sql.join('\n')}`);
  assert.ok(
    decisions.some((d) => d.status === 'manual_review'),
    "the batch's earlier payments count: a later one trips the velocity or pattern rule",
  );
  // And the same payments one at a time decide the same.
  assert.deepEqual(await oneAtATime(single, planned), decisions);
});

test('a window start moved past the points read with the batch: found in them, or read by the payment', async () => {
  for (const c of [
    // Three points close together: all came with the read, so the later payment finds its window's start.
    { day: 2, points: 3, secondAfterMs: 2, expected: [3, 1], commandReads: 0 },
    // Five: four came with the read, and the later payment's window starts past the fourth: it reads itself.
    { day: 4, points: 5, secondAfterMs: 3, expected: [5, 2], commandReads: 1 },
  ]) {
    const base = START + c.day * DAY;
    const history = Array.from({ length: c.points }, (_, i) => ({
      from: 0,
      to: 1,
      amountCents: 100 + i,
      atMs: base + i,
    }));
    await oneAtATime(grouped, history);
    await oneAtATime(single, history);
    // The first payment reads a minute after the history began: its 1-minute window starts just before it.
    const planned = [
      { from: 0, to: 1, amountCents: 7_001, atMs: base + MINUTE - 1 },
      { from: 0, to: 1, amountCents: 7_002, atMs: base + MINUTE + c.secondAfterMs },
    ];
    const { decisions, sql } = await inOneBatch(grouped, planned);
    assert.deepEqual(
      decisions.map((d) => d.decision.features!['sourceAttempts1m']),
      c.expected,
      'attempts in the minute: the history, then what is left of it plus the first payment',
    );
    // On SQLite the windows are in memory (src/storage/counter-memory.ts): a payment never reads for itself.
    const commandReads = inMemory(grouped) ? 0 : c.commandReads;
    assert.equal(sql.filter(isCounterRead).length, 1 + commandReads, sql.join('\n'));
    assert.equal(sql.filter(isCommandRead).length, commandReads);
    assert.deepEqual(await oneAtATime(single, planned), decisions);
  }
});

const amounts = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 1, max: 60_000 }) },
  { weight: 2, arbitrary: fc.constantFrom(10_000, 20_000, 50_000, 100_000) },
  { weight: 2, arbitrary: fc.integer({ min: 225_000, max: 260_000 }) },
  { weight: 1, arbitrary: fc.integer({ min: 100_000, max: 400_000 }) },
);
// Gaps on and around the windows' edges (1 min, 1 h, 24 h, 7 d, 30 d) and the read's look-ahead (1 s).
const gaps = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(0, 1, 2, 499, 500, 999, 1_000, 1_001) },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      MINUTE - 1_000,
      MINUTE - 1,
      MINUTE,
      MINUTE + 1,
      MINUTE + 999,
      60 * MINUTE,
      DAY - 1,
      DAY,
      DAY + 1,
      7 * DAY,
      30 * DAY,
    ),
  },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 2 * MINUTE }) },
  // A clock that steps back (the system clock may).
  { weight: 1, arbitrary: fc.constantFrom(-1, -2, -1_000, -MINUTE + 1, -MINUTE - 1) },
);

test('decisions within one batch equal decisions made one at a time (property)', {
  timeout: 600_000,
}, async () => {
  let now = START + 40 * DAY;
  let batchReads = 0;
  let commandReads = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(
        fc.record({
          from: fc.nat({ max: 3 }),
          offset: fc.integer({ min: 1, max: 3 }),
          amountCents: amounts,
          gapMs: gaps,
        }),
        { minLength: 1, maxLength: 20 },
      ),
      async (ops) => {
        let at = now;
        const planned = ops.map((op) => {
          at += op.gapMs;
          return { from: op.from, to: (op.from + op.offset) % 4, amountCents: op.amountCents, atMs: at };
        });
        const batched = await inOneBatch(grouped, planned);
        assert.deepEqual(await oneAtATime(single, planned), batched.decisions);
        batchReads += batched.sql.filter((s) => isCounterRead(s) && !isCommandRead(s)).length;
        commandReads += batched.sql.filter(isCommandRead).length;
        now = at + MINUTE;
      },
    ),
    { numRuns: 25 },
  );
  assert.ok(batchReads > 0, 'batches read their counters together');
  if (inMemory(grouped)) assert.equal(commandReads, 0, 'on SQLite no payment reads for itself');
  else
    assert.ok(
      commandReads > 0,
      'and some payments, whose windows start inside their own batch, read for themselves',
    );
});
