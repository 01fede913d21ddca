import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  backend,
  createTestDatabase,
  startTestApp,
  type TestApp,
  type TestDatabase,
  type TestResponse,
} from './support/harness.ts';
import { deadlocksDetected } from './support/pg-deadlocks.ts';

/**
 * Concurrency properties of POST /v1/payments, on whichever backend the runner selected (SQLite, then
 * PostgreSQL): opposite transfers are deadlock-free, no overdraft, no lost update, one payment per
 * Idempotency-Key. On PostgreSQL also across two app instances (two pools, two committers) on one database,
 * which is what several API processes do.
 *
 * The fraud rules (velocity: >= 3 earlier attempts from a source in 60 s; same source, destination and
 * amount in 60 s) would otherwise send most of these bursts to manual_review. The app therefore runs on a
 * clock that moves 61 s forward on every reading: every request happens "61 s after" the one before, so
 * those windows never contain an earlier attempt and the outcomes depend on balances alone. (Two instances
 * share one such clock; there a transaction that commits out of clock order can still see a "future"
 * attempt, so the two-instance tests count holds instead of expecting none.)
 */
const INITIAL = 1_000_000;

function tickingClock(stepMs = 61_000): () => number {
  let t = Date.UTC(2026, 0, 1);
  return () => (t += stepMs);
}

interface Party {
  customerId: string;
  accountId: string;
}

async function party(t: TestApp, balanceCents: number, label: string): Promise<Party> {
  const customer = await t.request('POST', '/v1/customers', {
    body: { name: `Concurrency ${label}`, country: 'US', documentReference: `CONC-${randomUUID()}` },
  });
  assert.equal(customer.status, 201, customer.body);
  const account = await t.request('POST', '/v1/accounts', {
    body: { customerId: customer.json.customer.id, currency: 'USD', initialBalanceCents: balanceCents },
  });
  assert.equal(account.status, 201, account.body);
  return { customerId: customer.json.customer.id, accountId: account.json.account.id };
}

function pay(
  t: TestApp,
  source: string,
  destination: string,
  amountCents: number,
  key: string = randomUUID(),
): Promise<TestResponse> {
  return t.request('POST', '/v1/payments', {
    body: { sourceAccountId: source, destinationAccountId: destination, amountCents, currency: 'USD' },
    idempotencyKey: key,
  });
}

interface Balance {
  availableBalanceCents: number;
  postedBalanceCents: number;
  heldBalanceCents: number;
}

async function balance(t: TestApp, accountId: string): Promise<Balance> {
  const res = await t.request('GET', `/v1/accounts/${accountId}/balance`);
  assert.equal(res.status, 200, res.body);
  return res.json.account;
}

function assertSane(b: Balance, label: string): void {
  assert.ok(b.postedBalanceCents >= 0, `${label}: posted ${b.postedBalanceCents} < 0`);
  assert.ok(b.heldBalanceCents >= 0, `${label}: held ${b.heldBalanceCents} < 0`);
  assert.ok(b.availableBalanceCents >= 0, `${label}: available ${b.availableBalanceCents} < 0`);
  assert.equal(b.availableBalanceCents, b.postedBalanceCents - b.heldBalanceCents, `${label}: available`);
}

interface PaymentView {
  id: string;
  sourceAccountId: string;
}

async function allPayments(t: TestApp): Promise<PaymentView[]> {
  const out: PaymentView[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 1000; page++) {
    const res: TestResponse = await t.request(
      'GET',
      `/v1/payments?limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
    );
    assert.equal(res.status, 200, res.body);
    out.push(...res.json.payments);
    if (!res.json.hasMore) return out;
    cursor = res.json.nextCursor;
  }
  throw new Error('payment paging did not end');
}

async function assertBooksBalance(t: TestApp): Promise<void> {
  const ledger = await t.request('GET', '/v1/ledger/verify');
  assert.equal(ledger.status, 200, ledger.body);
  assert.equal(ledger.json.verification.valid, true, ledger.body);
  for (const c of ledger.json.verification.currencies) assert.equal(c.debitsCents, c.creditsCents);
  const audit = await t.request('GET', '/v1/audit-logs/verify');
  assert.equal(audit.status, 200, audit.body);
  assert.equal(audit.json.verification.valid, true, audit.body);
}

function statusCounts(responses: TestResponse[]): Record<number, number> {
  const counts: Record<number, number> = {};
  for (const r of responses) counts[r.status] = (counts[r.status] ?? 0) + 1;
  return counts;
}

function assertNoServerErrors(responses: TestResponse[], label: string): void {
  const bad = responses.filter((r) => r.status >= 500);
  assert.equal(bad.length, 0, `${label}: ${bad.length} server errors, first: ${bad[0]?.body}`);
}

describe(`concurrent payments on one app instance (${backend})`, () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp({ clock: tickingClock() });
  });
  after(async () => {
    await t?.destroy();
  });

  test('200 opposite-direction transfers between two accounts: no errors, no deadlock, money conserved', async () => {
    const a = await party(t, INITIAL, 'A');
    const b = await party(t, INITIAL, 'B');
    const requests = Array.from({ length: 200 }, (_, i) => {
      const amount = 1 + ((i * 37) % 1000);
      return i % 2 === 0
        ? { from: a.accountId, to: b.accountId, amount }
        : { from: b.accountId, to: a.accountId, amount };
    });
    const responses = await Promise.all(requests.map((r) => pay(t, r.from, r.to, r.amount)));
    assertNoServerErrors(responses, 'opposite transfers');
    // Each side sends at most 100 x 1000 cents out of 1,000,000: every transfer must post.
    assert.deepEqual(statusCounts(responses), { 201: 200 });
    let aExpected = INITIAL;
    for (const r of requests) aExpected += r.from === a.accountId ? -r.amount : r.amount;
    const [ba, bb] = [await balance(t, a.accountId), await balance(t, b.accountId)];
    assertSane(ba, 'A');
    assertSane(bb, 'B');
    assert.equal(ba.postedBalanceCents, aExpected);
    assert.equal(ba.postedBalanceCents + bb.postedBalanceCents, 2 * INITIAL);
    assert.equal(ba.heldBalanceCents + bb.heldBalanceCents, 0);
    await assertBooksBalance(t);
  });

  test('no overdraft: 50 concurrent payments of 1,000 from 10,000 cents post exactly 10', async () => {
    const source = await party(t, 10_000, 'poor source');
    const destination = await party(t, 0, 'destination');
    const samples: Balance[] = [];
    const payments = Array.from({ length: 50 }, () => pay(t, source.accountId, destination.accountId, 1_000));
    // Balance reads interleaved with the burst: no reader ever sees a negative balance.
    const reads = Array.from({ length: 10 }, async () => samples.push(await balance(t, source.accountId)));
    const [responses] = await Promise.all([Promise.all(payments), Promise.all(reads)]);
    assertNoServerErrors(responses, 'overdraft burst');
    assert.deepEqual(statusCounts(responses), { 201: 10, 422: 40 });
    for (const r of responses) {
      if (r.status === 422) {
        assert.equal(r.json.payment.status, 'declined');
        assert.deepEqual(r.json.payment.reasons, ['insufficient_funds']);
        assert.equal(r.json.ledgerPosted, false);
      } else {
        assert.equal(r.json.payment.status, 'posted');
      }
    }
    for (const s of samples) assertSane(s, 'source during the burst');
    const after = await balance(t, source.accountId);
    assert.deepEqual(after, {
      id: source.accountId,
      currency: 'USD',
      availableBalanceCents: 0,
      postedBalanceCents: 0,
      heldBalanceCents: 0,
    });
    assert.equal((await balance(t, destination.accountId)).postedBalanceCents, 10_000);
    await assertBooksBalance(t);
  });

  test('no lost update: 120 concurrent payments from 40 sources into one destination', async () => {
    const destination = await party(t, 0, 'sink');
    const sources = await Promise.all(Array.from({ length: 40 }, (_, i) => party(t, 100_000, `src ${i}`)));
    const requests = Array.from({ length: 120 }, (_, i) => ({
      source: sources[i % sources.length]!.accountId,
      amount: 100 + i * 7,
    }));
    const responses = await Promise.all(
      requests.map((r) => pay(t, r.source, destination.accountId, r.amount)),
    );
    assertNoServerErrors(responses, 'fan-in');
    assert.deepEqual(statusCounts(responses), { 201: 120 });
    const postedTotal = responses.reduce((sum, r) => sum + r.json.payment.amountCents, 0);
    assert.equal(
      postedTotal,
      requests.reduce((sum, r) => sum + r.amount, 0),
    );
    const sink = await balance(t, destination.accountId);
    assertSane(sink, 'destination');
    assert.equal(sink.postedBalanceCents, postedTotal);
    const sentBy = new Map<string, number>();
    for (const r of requests) sentBy.set(r.source, (sentBy.get(r.source) ?? 0) + r.amount);
    for (const s of sources) {
      const b = await balance(t, s.accountId);
      assertSane(b, s.accountId);
      assert.equal(b.postedBalanceCents, 100_000 - sentBy.get(s.accountId)!, `${s.accountId} balance`);
    }
    await assertBooksBalance(t);
  });

  test('50 concurrent identical requests under one Idempotency-Key create one payment', async () => {
    const source = await party(t, 50_000, 'idem source');
    const destination = await party(t, 0, 'idem destination');
    const key = `conc-${randomUUID()}`;
    const responses = await Promise.all(
      Array.from({ length: 50 }, () => pay(t, source.accountId, destination.accountId, 1_234, key)),
    );
    assertNoServerErrors(responses, 'same key');
    const executed = responses.filter(
      (r) => r.status === 201 && r.headers['idempotency-replayed'] === 'false',
    );
    const replayed = responses.filter(
      (r) => r.status === 201 && r.headers['idempotency-replayed'] === 'true',
    );
    const inUse = responses.filter((r) => r.status === 409);
    assert.equal(executed.length, 1, `statuses: ${JSON.stringify(statusCounts(responses))}`);
    assert.equal(replayed.length + inUse.length, 49);
    for (const r of inUse) assert.equal(r.json.error.code, 'IDEMPOTENCY_KEY_IN_USE');
    for (const r of replayed) assert.equal(r.body, executed[0]!.body, 'a replay repeats the bytes');
    const paymentId = executed[0]!.json.payment.id;
    const mine = (await allPayments(t)).filter((p) => p.sourceAccountId === source.accountId);
    assert.deepEqual(
      mine.map((p) => p.id),
      [paymentId],
    );
    assert.equal((await balance(t, source.accountId)).postedBalanceCents, 50_000 - 1_234);
    assert.equal((await balance(t, destination.accountId)).postedBalanceCents, 1_234);
  });
});

describe('two app instances on one PostgreSQL database', () => {
  const skip = backend !== 'postgres' ? 'needs PostgreSQL (runs in the PostgreSQL pass)' : false;
  let db: TestDatabase | undefined;
  let one: TestApp | undefined;
  let two: TestApp | undefined;
  before(async () => {
    if (skip) return;
    db = await createTestDatabase();
    const clock = tickingClock();
    one = await startTestApp({ db, clock });
    two = await startTestApp({ db, clock });
  });
  after(async () => {
    await one?.close();
    await two?.close();
    await db?.drop();
  });

  test('the same Idempotency-Key and body at both instances at once: exactly one payment', {
    skip,
  }, async () => {
    const source = await party(one!, INITIAL, 'two-instance idem source');
    const destination = await party(one!, 0, 'two-instance idem destination');
    const rounds = 20;
    const pairs = await Promise.all(
      Array.from({ length: rounds }, async (_, i) => {
        const key = `pair-${i}-${randomUUID()}`;
        const amount = 1_000 + i;
        return Promise.all([
          pay(one!, source.accountId, destination.accountId, amount, key),
          pay(two!, source.accountId, destination.accountId, amount, key),
        ]);
      }),
    );
    const created = new Set<string>();
    for (const pair of pairs) {
      assertNoServerErrors(pair, 'pair');
      const acked = pair.filter((r) => r.status === 201 || r.status === 202 || r.status === 422);
      const conflicts = pair.filter((r) => r.status === 409);
      for (const r of conflicts) assert.equal(r.json.error.code, 'IDEMPOTENCY_KEY_IN_USE', r.body);
      assert.equal(acked.length + conflicts.length, 2, pair.map((r) => r.body).join('\n'));
      assert.ok(acked.length >= 1, 'at least one of the pair is answered with the payment');
      const fresh = acked.filter((r) => r.headers['idempotency-replayed'] === 'false');
      assert.equal(fresh.length, 1, 'exactly one of the pair executed');
      for (const r of acked) assert.equal(r.body, fresh[0]!.body, 'the other replays the same bytes');
      created.add(fresh[0]!.json.payment.id);
    }
    assert.equal(created.size, rounds);
    const mine = (await allPayments(two!)).filter((p) => p.sourceAccountId === source.accountId);
    assert.equal(mine.length, rounds, 'one payment per key, across both instances');
    assert.deepEqual(new Set(mine.map((p) => p.id)), created);
    const [s, d] = [await balance(two!, source.accountId), await balance(two!, destination.accountId)];
    assertSane(s, 'source');
    assert.equal(s.postedBalanceCents + d.postedBalanceCents, INITIAL);
    await assertBooksBalance(one!);
  });

  test('opposite transfers split across both instances: no deadlock errors, money conserved', {
    skip,
  }, async () => {
    const a = await party(one!, INITIAL, 'two-instance A');
    const b = await party(two!, INITIAL, 'two-instance B');
    const requests = Array.from({ length: 200 }, (_, i) => ({
      app: i % 4 < 2 ? one! : two!,
      from: i % 2 === 0 ? a.accountId : b.accountId,
      to: i % 2 === 0 ? b.accountId : a.accountId,
      amount: 1 + ((i * 53) % 2_000),
    }));
    const responses = await Promise.all(requests.map((r) => pay(r.app, r.from, r.to, r.amount)));
    assertNoServerErrors(responses, 'two-instance opposite transfers');
    const counts = statusCounts(responses);
    // Ample funds: only a (rare) fraud review can keep a transfer from posting; nothing is declined.
    assert.equal((counts[201] ?? 0) + (counts[202] ?? 0), 200, JSON.stringify(counts));
    let aPosted = INITIAL;
    let aHeld = 0;
    let bHeld = 0;
    responses.forEach((r, i) => {
      const req = requests[i]!;
      if (r.status === 201) aPosted += req.from === a.accountId ? -req.amount : req.amount;
      else if (req.from === a.accountId) aHeld += req.amount;
      else bHeld += req.amount;
    });
    const [ba, bb] = [await balance(one!, a.accountId), await balance(two!, b.accountId)];
    assertSane(ba, 'A');
    assertSane(bb, 'B');
    assert.equal(ba.postedBalanceCents, aPosted);
    assert.equal(ba.postedBalanceCents + bb.postedBalanceCents, 2 * INITIAL);
    assert.equal(ba.heldBalanceCents, aHeld);
    assert.equal(bb.heldBalanceCents, bHeld);
    await assertBooksBalance(two!);
  });

  test('account openings (in a currency new to the database) race payments on both instances', {
    skip,
  }, async () => {
    const a = await party(one!, INITIAL, 'racing A');
    const b = await party(two!, INITIAL, 'racing B');
    const customers = await Promise.all(
      Array.from({ length: 12 }, async (_, i) => {
        const app = i % 2 === 0 ? one! : two!;
        const res = await app.request('POST', '/v1/customers', {
          body: { name: `Racing ${i}`, country: 'US', documentReference: `RACE-${randomUUID()}` },
        });
        assert.equal(res.status, 201, res.body);
        return res.json.customer.id as string;
      }),
    );
    // Both instances open the first EUR accounts at once: both try to create the EUR funding account.
    const openings = customers.flatMap((customerId, i) =>
      ['EUR', 'USD'].map((currency) =>
        (i % 2 === 0 ? one! : two!).request('POST', '/v1/accounts', {
          body: { customerId, currency, initialBalanceCents: 5_000 },
        }),
      ),
    );
    const payments = Array.from({ length: 60 }, (_, i) =>
      i % 2 === 0
        ? pay(i % 4 === 0 ? one! : two!, a.accountId, b.accountId, 10 + i)
        : pay(i % 4 === 1 ? one! : two!, b.accountId, a.accountId, 10 + i),
    );
    const [opened, paid] = await Promise.all([Promise.all(openings), Promise.all(payments)]);
    assertNoServerErrors(opened, 'account openings');
    assertNoServerErrors(paid, 'payments during account openings');
    assert.deepEqual(statusCounts(opened), { 201: 24 });
    for (const r of opened) assert.equal(r.json.account.postedBalanceCents, 5_000);
    const ledger = await one!.request('GET', '/v1/ledger/verify');
    const eur = ledger.json.verification.currencies.find((c: { currency: string }) => c.currency === 'EUR');
    assert.deepEqual(eur, { currency: 'EUR', debitsCents: 12 * 5_000, creditsCents: 12 * 5_000 });
    await assertBooksBalance(two!);
  });

  test('PostgreSQL never had to break a deadlock between the two instances', { skip }, async () => {
    // The adapter retries 40P01 silently; the database's own counter shows whether the lock order held.
    await one!.close();
    await two!.close();
    assert.equal(await deadlocksDetected(db!.url), 0);
  });
});
