import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import {
  apiKey,
  type Json,
  listAll,
  type Party,
  party,
  pay,
  REVIEW_AMOUNT,
  rawSql,
  usd,
} from './support/fixtures.ts';
import { manualClock, startTestApp, type TestApp } from './support/harness.ts';

/**
 * Balances in time (issue 17): every ledger entry records its account's posted balance after it, and an
 * account's statement and its balance at an instant are read from those running balances.
 *
 * The property test drives random histories through HTTP (payments posted, held, declined; approvals,
 * rejections, refunds; time moving by 0 to 3 s between steps, so several steps share a millisecond), and
 * checks the API against two independent models:
 * - a replay of the ledger: every entry's balanceAfterCents is the running sum of its account's entries in
 *   seq order, and a statement of any period is the replay's slice of it, opening and closing included;
 * - what GET /balance said right after each step: the balance at that step's instant, posted and held.
 */
const clock = manualClock(Date.UTC(2026, 5, 1));
let t: TestApp;
let compliance: string;

before(async () => {
  t = await startTestApp({ clock: clock.now });
  compliance = (await apiKey(t, 'compliance')).token;
});
after(async () => {
  await t.destroy();
});

/** What the random histories did, so the test can show they exercised every kind of change. */
const seen = { held: 0, approved: 0, refunded: 0 };

const iso = (ms: number) => new Date(ms).toISOString();

type Step =
  | { kind: 'pay'; from: number; to: number; amountCents: number }
  | { kind: 'review'; from: number; to: number }
  | { kind: 'resolve'; approve: boolean }
  | { kind: 'refund'; amountCents: number }
  | { kind: 'wait'; ms: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('pay' as const),
      from: fc.nat(2),
      to: fc.nat(2),
      amountCents: fc.integer({ min: 1, max: 400_000 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('review' as const), from: fc.nat(2), to: fc.nat(2) }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('resolve' as const), approve: fc.boolean() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('refund' as const),
      amountCents: fc.integer({ min: 1, max: 50_000 }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 3_000 }) }),
  },
);

/** The balances GET /balance reports, keyed by the instant they were read at. */
type Observed = { atMs: number; balances: Map<string, { posted: number; held: number }> };

async function observe(parties: Party[]): Promise<Observed> {
  const balances = new Map<string, { posted: number; held: number }>();
  for (const p of parties) {
    const res = await t.request('GET', `/v1/accounts/${p.accountId}/balance`);
    assert.equal(res.status, 200, res.body);
    balances.set(p.accountId, {
      posted: res.json.account.postedBalanceCents,
      held: res.json.account.heldBalanceCents,
    });
  }
  return { atMs: clock.now(), balances };
}

async function run(steps: Step[]): Promise<{ parties: Party[]; observed: Observed[] }> {
  const parties = [
    await party(t, { balance: 600_000 }),
    await party(t, { balance: 300_000 }),
    await party(t, { balance: 0 }),
  ];
  const observed = [await observe(parties)];
  const held: string[] = [];
  const posted: string[] = [];
  for (const s of steps) {
    if (s.kind === 'wait') {
      clock.advance(s.ms);
      continue;
    }
    if (s.kind === 'pay' || s.kind === 'review') {
      if (s.from === s.to) continue;
      const res = await pay(t, {
        sourceAccountId: parties[s.from]!.accountId,
        destinationAccountId: parties[s.to]!.accountId,
        amountCents: s.kind === 'review' ? REVIEW_AMOUNT : s.amountCents,
        currency: 'USD',
      });
      assert.ok([201, 202, 422].includes(res.status), res.body);
      if (res.status === 201) posted.push(res.json.payment.id);
      if (res.status === 202) {
        held.push(res.json.payment.id);
        seen.held += 1;
      }
    } else if (s.kind === 'resolve') {
      const id = held.shift();
      if (id === undefined) continue;
      const res = await t.request('POST', `/v1/payments/${id}/${s.approve ? 'approve' : 'reject'}`, {
        token: compliance,
        idempotencyKey: `resolve-${id}`,
        body: {},
      });
      // 200 or 201 (approved: posted), 409/422 (re-checked and refused, or already resolved): never a 5xx.
      assert.ok(res.status < 500, res.body);
      if (res.json.payment?.status === 'posted') {
        posted.push(id);
        seen.approved += 1;
      }
    } else {
      // Partial first (it may exceed what is left: a 422 that changes nothing), then the rest.
      const id = posted[posted.length - 1];
      if (id === undefined) continue;
      for (const body of [{ amountCents: s.amountCents }, {}]) {
        const res = await t.request('POST', `/v1/payments/${id}/refunds`, {
          idempotencyKey: `refund-${id}-${clock.now()}-${JSON.stringify(body)}`,
          body,
        });
        assert.ok(res.status < 500, res.body);
        if (res.status === 201) seen.refunded += 1;
      }
      posted.pop();
    }
    observed.push(await observe(parties));
  }
  return { parties, observed };
}

/** The replay: each account's entries in seq order (the ledger lists oldest first) with running sums. */
async function replay(accountId: string): Promise<{ entry: Json; runningCents: number }[]> {
  const entries = await listAll(t, `/v1/ledger?accountId=${accountId}`, 'ledgerEntries');
  let runningCents = 0;
  return entries.map((entry) => {
    runningCents += entry.direction === 'credit' ? entry.amountCents : -entry.amountCents;
    return { entry, runningCents };
  });
}

async function statement(accountId: string, fromMs: number, toMs: number): Promise<Json> {
  const pages: Json[] = [];
  let cursor: string | null = null;
  do {
    const query = `from=${iso(fromMs)}&to=${iso(toMs)}&limit=3${cursor === null ? '' : `&cursor=${cursor}`}`;
    const res = await t.request('GET', `/v1/accounts/${accountId}/statement?${query}`);
    assert.equal(res.status, 200, res.body);
    pages.push(res.json);
    cursor = res.json.nextCursor;
  } while (cursor !== null);
  for (const p of pages) {
    assert.equal(p.openingBalanceCents, pages[0].openingBalanceCents, 'every page states the same opening');
    assert.equal(p.closingBalanceCents, pages[0].closingBalanceCents, 'and the same closing');
  }
  return { ...pages[0], entries: pages.flatMap((p) => p.entries) };
}

test('statements and balances at an instant agree with a replay of the ledger and with what was observed', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(step, { minLength: 5, maxLength: 25 }),
      fc.array(fc.nat(), { minLength: 4, maxLength: 4 }),
      async (steps, picks) => {
        const { parties, observed } = await run(steps);
        clock.advance(1);
        for (const p of parties) {
          const replayed = await replay(p.accountId);
          for (const { entry, runningCents } of replayed)
            assert.equal(entry.balanceAfterCents, runningCents, entry.id);

          // Balance at each observed instant: what GET /balance said after that millisecond's last step.
          const lastOfEach = observed.filter((o, i) => observed[i + 1]?.atMs !== o.atMs);
          for (const o of lastOfEach) {
            const res = await t.request('GET', `/v1/accounts/${p.accountId}/balance?at=${iso(o.atMs)}`);
            assert.equal(res.status, 200, res.body);
            const then = o.balances.get(p.accountId)!;
            assert.equal(res.json.account.postedBalanceCents, then.posted, `posted at ${iso(o.atMs)}`);
            assert.equal(res.json.account.heldBalanceCents, then.held, `held at ${iso(o.atMs)}`);
            assert.equal(res.json.account.asOf, iso(o.atMs));
          }

          // A statement between two observed instants (from inclusive, to exclusive) is the replay's slice.
          const instants = observed.map((o) => o.atMs);
          const a = instants[picks[0]! % instants.length]!;
          const b = instants[picks[1]! % instants.length]!;
          const [fromMs, toMs] = a < b ? [a, b] : a > b ? [b, a] : [a, a + 1];
          const got = await statement(p.accountId, fromMs, toMs);
          const stamped = (x: { entry: Json }) => Date.parse(x.entry.timestamp);
          const before = replayed.filter((x) => stamped(x) < fromMs);
          const within = replayed.filter((x) => stamped(x) >= fromMs && stamped(x) < toMs);
          const openingCents = before.length === 0 ? 0 : before[before.length - 1]!.runningCents;
          assert.equal(got.openingBalanceCents, openingCents, 'opening');
          assert.deepEqual(
            got.entries.map((e: Json) => e.id),
            within.map((x) => x.entry.id),
            'the period’s entries, in order',
          );
          const closingCents = within.length === 0 ? openingCents : within[within.length - 1]!.runningCents;
          assert.equal(got.closingBalanceCents, closingCents, 'closing');
        }
      },
    ),
    {
      numRuns: 12,
      includeErrorInReport: true,
      // One history that surely holds, approves and refunds (the random ones may not, by chance).
      examples: [
        [
          [
            { kind: 'pay', from: 0, to: 1, amountCents: 1_000 },
            { kind: 'review', from: 0, to: 2 },
            { kind: 'wait', ms: 5 },
            { kind: 'resolve', approve: true },
            { kind: 'refund', amountCents: 100 },
            { kind: 'wait', ms: 0 },
          ],
          [0, 1, 2, 3],
        ],
      ],
    },
  );
  assert.ok(seen.held > 0 && seen.approved > 0 && seen.refunded > 0, JSON.stringify(seen));
});

test('a statement chains: opening + each entry = its balanceAfterCents, the last one = closing', async () => {
  const [a, b] = [await party(t, { balance: 50_000 }), await party(t, { balance: 0 })];
  const fromMs = clock.now();
  for (const amountCents of [1_000, 2_000, 3_000]) {
    clock.advance(10);
    const res = await pay(t, {
      sourceAccountId: a.accountId,
      destinationAccountId: b.accountId,
      amountCents,
      currency: 'USD',
    });
    assert.equal(res.status, 201, res.body);
  }
  clock.advance(10);
  const res = await t.request('GET', `/v1/accounts/${a.accountId}/statement?from=${iso(fromMs + 1)}`);
  assert.equal(res.status, 200, res.body);
  const s = res.json;
  assert.equal(s.accountId, a.accountId);
  assert.equal(s.currency, 'USD');
  assert.equal(s.openingBalanceCents, 50_000);
  assert.deepEqual(
    s.entries.map((e: Json) => e.balanceAfterCents),
    [49_000, 47_000, 44_000],
  );
  assert.equal(s.closingBalanceCents, 44_000);
  assert.equal(s.hasMore, false);
  assert.equal(s.nextCursor, null);
  // Before the account's first entry: nothing, and zero balances.
  const early = await t.request('GET', `/v1/accounts/${a.accountId}/balance?at=${iso(Date.UTC(2020, 0, 1))}`);
  assert.equal(early.status, 200, early.body);
  assert.equal(early.json.account.postedBalanceCents, 0);
  assert.equal(early.json.account.availableBalanceCents, 0);
});

test('a statement cursor is bound to its period; bad instants and periods are 400s', async () => {
  const a = await party(t, { balance: 10_000 });
  for (let i = 0; i < 3; i++) {
    const res = await pay(t, {
      sourceAccountId: a.accountId,
      destinationAccountId: (await party(t)).accountId,
      amountCents: 100,
      currency: 'USD',
    });
    assert.equal(res.status, 201, res.body);
  }
  const to = iso(clock.now() + 1);
  const first = await t.request('GET', `/v1/accounts/${a.accountId}/statement?to=${to}&limit=2`);
  assert.equal(first.status, 200, first.body);
  assert.equal(first.json.hasMore, true);
  const cursor = first.json.nextCursor;
  const second = await t.request(
    'GET',
    `/v1/accounts/${a.accountId}/statement?to=${to}&limit=2&cursor=${cursor}`,
  );
  assert.equal(second.status, 200, second.body);
  assert.equal(second.json.entries.length, 2);
  const other = await t.request('GET', `/v1/accounts/${a.accountId}/statement?limit=2&cursor=${cursor}`);
  assert.equal(other.status, 400, other.body);
  assert.equal(other.json.error.code, 'VALIDATION_ERROR');

  const bad = [
    'statement?from=2026-02-30T00:00:00Z',
    'statement?from=2026-06-01T00:00:00',
    'statement?from=2026-06-01',
    'statement?from=yesterday',
    'statement?from=2026-06-01T00:00:00Z&to=2026-06-01T00:00:00Z',
    'statement?from=2026-06-02T00:00:00Z&to=2026-06-01T00:00:00Z',
    'statement?to=%EF%BC%92026-06-01T00:00:00Z',
    'statement?from=2026-06-01T00:00:00Z%00',
    `balance?at=${iso(clock.now() + 60_000)}`,
    'balance?at=2026-06-01T24:00:00Z',
    'balance?at=2026-06-01T00:00:00.1234Z',
    'balance?__proto__=x',
  ];
  for (const path of bad) {
    const res = await t.request('GET', `/v1/accounts/${a.accountId}/${path}`);
    assert.equal(res.status, 400, `${path}: ${res.body}`);
    assert.equal(res.json.error.code, 'VALIDATION_ERROR', path);
  }
  const offset = await t.request('GET', `/v1/accounts/${a.accountId}/balance?at=2026-06-01T02:00:00%2B02:00`);
  assert.equal(offset.status, 200, offset.body);
  assert.equal(offset.json.account.asOf, '2026-06-01T00:00:00.000Z');
});

test("a scoped key reads its own customers' statements and balances in time, and no one else's", async () => {
  const mine = await party(t, { balance: 5_000 });
  const theirs = await party(t, { balance: 5_000 });
  const created = await t.request('POST', '/v1/api-keys', {
    idempotencyKey: `scoped-${mine.customerId}`,
    body: { name: 'scoped', role: 'payments', customerIds: [mine.customerId] },
  });
  assert.equal(created.status, 201, created.body);
  const token = created.json.secret;
  for (const path of ['statement', `balance?at=${iso(clock.now())}`]) {
    const own = await t.request('GET', `/v1/accounts/${mine.accountId}/${path}`, { token });
    assert.equal(own.status, 200, own.body);
    const other = await t.request('GET', `/v1/accounts/${theirs.accountId}/${path}`, { token });
    assert.equal(other.status, 404, other.body);
  }
});

test('the ledger verifier checks running balances', async () => {
  const res = await t.request('GET', '/v1/ledger/verify');
  assert.equal(res.status, 200, res.body);
  assert.equal(res.json.verification.valid, true, res.body);
});

test('the ledger verifier finds an entry whose running balance was altered at rest', async () => {
  const own = await startTestApp();
  const a = await party(own, { balance: 9_000 });
  const b = await party(own, { balance: 0 });
  for (const amountCents of [100, 200, 300]) {
    const res = await pay(own, {
      sourceAccountId: a.accountId,
      destinationAccountId: b.accountId,
      amountCents,
      currency: 'USD',
    });
    assert.equal(res.status, 201, res.body);
  }
  const entries = await listAll(own, `/v1/ledger?accountId=${b.accountId}`, 'ledgerEntries');
  assert.deepEqual(
    entries.map((e) => e.balanceAfterCents),
    [100, 300, 600],
  );
  await own.close();
  const changed = await rawSql(
    own.db,
    'UPDATE ledger_entries SET balance_after_cents = balance_after_cents + 1 WHERE id = ?',
    [entries[1]!.id],
  );
  assert.equal(changed, 1);
  const restarted = await startTestApp({ db: own.db });
  try {
    const res = await restarted.request('GET', '/v1/ledger/verify');
    assert.equal(res.status, 200, res.body);
    assert.equal(res.json.verification.valid, false);
    assert.deepEqual(res.json.verification.mismatches, [
      {
        accountId: b.accountId,
        problem: 'an entry’s balanceAfterCents differs from the running sum of its entries',
      },
    ]);
  } finally {
    await restarted.destroy();
  }
});

test('balance at an instant finds the right entry among many, interleaved with other accounts', async () => {
  // 120 payments from a, each followed by one between two other accounts, so a's entries are sparse in seq: the
  // search over seq (src/storage/ledger-sql.ts) must land on a's last entry at or before each instant.
  const [a, b, c, d] = [
    await party(t, { balance: 1_000_000 }),
    await party(t),
    await party(t, { balance: 1_000_000 }),
    await party(t),
  ];
  const stamps: { atMs: number; postedCents: number }[] = [];
  for (let i = 1; i <= 120; i++) {
    // 61 s apart (out of the fraud rules' 60 s windows), but every third in the same millisecond as the last.
    clock.advance(i % 3 === 0 ? 0 : 61_000);
    const mine = await pay(t, usd(a, b, i));
    assert.equal(mine.status, 201, mine.body);
    assert.equal((await pay(t, usd(c, d, i))).status, 201);
    stamps.push({ atMs: clock.now(), postedCents: mine.json.balances[0].postedBalanceCents });
  }
  for (const [i, s] of stamps.entries()) {
    // The last payment of each millisecond is what the balance at that millisecond shows.
    if (stamps[i + 1]?.atMs === s.atMs) continue;
    const res = await t.request('GET', `/v1/accounts/${a.accountId}/balance?at=${iso(s.atMs)}`);
    assert.equal(res.json.account.postedBalanceCents, s.postedCents, `at ${iso(s.atMs)}`);
    const justBefore = await t.request('GET', `/v1/accounts/${a.accountId}/balance?at=${iso(s.atMs - 1)}`);
    const previous = stamps.findLast((p) => p.atMs < s.atMs);
    assert.equal(justBefore.json.account.postedBalanceCents, previous?.postedCents ?? 1_000_000);
  }
});

test('a clock that steps back: the account history stays in time order, and balances in time stay exact', async () => {
  // Another process's clock behind this one's, or a clock stepped back: each change is stamped no earlier than
  // the account's latest stamp, so held and posted balances at any instant still add up.
  const own = manualClock(Date.UTC(2026, 8, 1));
  const app = await startTestApp({ clock: own.now });
  try {
    const reviewer = (await apiKey(app, 'compliance')).token;
    const [a, b] = [await party(app, { balance: 2_000_000 }), await party(app)];
    const held: string[] = [];
    for (const stepMs of [0, -5_000, 1, 61_000]) {
      own.advance(stepMs);
      const res = await pay(app, usd(a, b, REVIEW_AMOUNT - held.length));
      assert.equal(res.status, 202, res.body);
      held.push(res.json.payment.id);
    }
    own.advance(-30_000);
    const fifth = await pay(app, usd(a, b, 1_000)); // posted, or held by the velocity rule: stamped either way
    assert.ok(fifth.status === 201 || fifth.status === 202, fifth.body);
    if (fifth.status === 202) held.push(fifth.json.payment.id);
    own.advance(100_000);
    const now = iso(own.now());
    const current = (await app.request('GET', `/v1/accounts/${a.accountId}/balance`)).json.account;
    const atNow = (await app.request('GET', `/v1/accounts/${a.accountId}/balance?at=${now}`)).json.account;
    assert.equal(atNow.heldBalanceCents, current.heldBalanceCents);
    assert.equal(atNow.postedBalanceCents, current.postedBalanceCents);
    const entries = await listAll(app, `/v1/ledger?accountId=${a.accountId}`, 'ledgerEntries');
    const stamps = entries.map((e) => Date.parse(e.timestamp));
    assert.deepEqual(
      stamps,
      [...stamps].sort((x, y) => x - y),
      'entries in seq order are in time order',
    );
    for (const id of held) {
      own.advance(-1_000);
      const res = await app.request('POST', `/v1/payments/${id}/reject`, {
        token: reviewer,
        idempotencyKey: `reject-${id}`,
        body: {},
      });
      assert.equal(res.status, 200, res.body);
    }
    own.advance(10_000);
    const later = await app.request('GET', `/v1/accounts/${a.accountId}/balance?at=${iso(own.now())}`);
    assert.equal(later.status, 200, later.body);
    assert.equal(later.json.account.heldBalanceCents, 0);
    const verify = await app.request('GET', '/v1/ledger/verify');
    assert.equal(verify.json.verification.valid, true, verify.body);
  } finally {
    await app.destroy();
  }
});

test('the ledger verifier finds a hold whose running total was altered at rest', async () => {
  const own = await startTestApp();
  const reviewer = (await apiKey(own, 'compliance')).token;
  const [a, b] = [await party(own, { balance: 1_000_000 }), await party(own)];
  const held = await pay(own, usd(a, b, REVIEW_AMOUNT));
  assert.equal(held.status, 202, held.body);
  const rejected = await own.request('POST', `/v1/payments/${held.json.payment.id}/reject`, {
    token: reviewer,
    idempotencyKey: randomUUID(),
    body: {},
  });
  assert.equal(rejected.status, 200, rejected.body);
  await own.close();
  await rawSql(own.db, 'UPDATE holds SET placed_total_after_cents = 1 WHERE account_id = ?', [a.accountId]);
  const restarted = await startTestApp({ db: own.db });
  try {
    const res = await restarted.request('GET', '/v1/ledger/verify');
    assert.deepEqual(res.json.verification.mismatches, [
      { accountId: a.accountId, problem: 'a hold’s running total differs from the running sum of its holds' },
    ]);
    // Reading the bad totals is a 500 for that request, not a stopped process.
    const at = await restarted.request('GET', `/v1/accounts/${a.accountId}/balance?at=${iso(Date.now())}`);
    assert.equal(at.status, 500, at.body);
    assert.equal((await restarted.request('GET', '/health')).status, 200);
  } finally {
    await restarted.destroy();
  }
});
