import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { after, before, test } from 'node:test';
import { benchPolicyPath } from '../bench/policy.ts';
import { createApiKey } from '../src/app/api-keys.ts';
import { SYSTEM_ACTOR } from '../src/app/services.ts';
import {
  allPayments,
  apiKey,
  assertBooksValid,
  auditLogs,
  balanceOf,
  type Json,
  listAll,
  type Party,
  party,
  REVIEW_AMOUNT,
  usd,
} from './support/fixtures.ts';
import { backend, startTestApp, type TestApp } from './support/harness.ts';

/**
 * Batch payments (issue 17, docs/decisions/0023-payment-batches.md), through HTTP: an atomic batch posts all
 * or nothing (one bad item moves nothing, and the refusal is stored and replayed), a non-atomic one decides
 * each payment as if made alone, and a batch of 1,000 commits in one transaction without holding the event loop.
 */
let t: TestApp;
let rich: Party;
let poor: Party;
let payee: Party;

before(async () => {
  t = await startTestApp();
  rich = await party(t, { balance: 10_000_000 });
  poor = await party(t, { balance: 1_000 });
  payee = await party(t, { balance: 0 });
});
after(async () => {
  await t.destroy();
});

const batch = (body: unknown, key = `batch-${randomUUID()}`, token?: string) =>
  t.request('POST', '/v1/payment-batches', {
    body,
    idempotencyKey: key,
    ...(token === undefined ? {} : { token }),
  });

/** Everything an atomic refusal must leave as it was: balances, payments, ledger entries, holds. */
async function moneyState(parties: Party[]) {
  return {
    balances: await Promise.all(parties.map((p) => balanceOf(t, p.accountId))),
    payments: (await allPayments(t)).length,
    ledgerEntries: (await listAll(t, '/v1/ledger', 'ledgerEntries')).length,
  };
}

test('an atomic batch with one bad item moves nothing, says why for every item, and is replayed', async () => {
  const parties = [rich, poor, payee];
  const before = await moneyState(parties);
  const auditBefore = (await auditLogs(t)).length;
  const key = `atomic-bad-${randomUUID()}`;
  const body = {
    atomic: true,
    payments: [usd(rich, payee, 1_000), usd(poor, payee, 5_000), usd(rich, payee, 2_000)],
  };
  const res = await batch(body, key);
  assert.equal(res.status, 422, res.body);
  assert.equal(res.headers['idempotency-replayed'], 'false');
  const b = res.json.batch;
  assert.equal(b.status, 'rejected');
  assert.equal(b.atomic, true);
  assert.deepEqual(b.counts, { total: 3, posted: 0, manualReview: 0, declined: 0, failed: 1, notApplied: 2 });
  assert.deepEqual(
    b.items.map((i: Json) => [i.index, i.status, i.error.code, i.payment]),
    [
      [0, 'not_applied', 'BATCH_ITEM_NOT_APPLIED', undefined],
      [1, 'failed', 'PAYMENT_DECLINED', undefined],
      [2, 'not_applied', 'BATCH_ITEM_NOT_APPLIED', undefined],
    ],
  );
  assert.deepEqual(b.items[1].error.reasons, ['insufficient_funds']);
  assert.equal(res.json.balances, undefined, 'nothing moved: no balances to report');

  // Nothing moved: no payment, ledger entry or hold; the books still verify.
  assert.deepEqual(await moneyState(parties), before);
  await assertBooksValid(t);
  // The refusal itself is recorded: one audit entry for the batch, none for its undone payments.
  const audit = await auditLogs(t);
  assert.equal(audit.length, auditBefore + 1);
  const entry = audit[audit.length - 1];
  assert.equal(entry.eventType, 'payment_batch.rejected');
  assert.equal(entry.resourceId, b.id);
  assert.deepEqual(entry.metadata.failedItems, [
    { index: 1, code: 'PAYMENT_DECLINED', reasons: ['insufficient_funds'] },
  ]);

  // Replayed byte for byte; readable by id.
  const replay = await batch(body, key);
  assert.equal(replay.status, 422);
  assert.equal(replay.body, res.body);
  assert.equal(replay.headers['idempotency-replayed'], 'true');
  const read = await t.request('GET', `/v1/payment-batches/${b.id}`);
  assert.equal(read.status, 200, read.body);
  assert.deepEqual(read.json.batch, b);
  assert.equal(read.json.hasMore, false);
  assert.deepEqual(await moneyState(parties), before);
});

test('an atomic batch fails on an item held for review or one that errors, and holds nothing', async () => {
  const parties = [rich, payee];
  const before = await moneyState(parties);
  const res = await batch({
    atomic: true,
    payments: [
      usd(rich, payee, 1_000),
      usd(rich, payee, REVIEW_AMOUNT),
      { ...usd(rich, payee, 10), destinationAccountId: 'acc_does_not_exist' },
    ],
  });
  assert.equal(res.status, 422, res.body);
  assert.deepEqual(
    res.json.batch.items.map((i: Json) => [i.status, i.error.code]),
    [
      ['not_applied', 'BATCH_ITEM_NOT_APPLIED'],
      ['failed', 'PAYMENT_HELD_FOR_REVIEW'],
      ['failed', 'DESTINATION_ACCOUNT_NOT_FOUND'],
    ],
  );
  assert.ok(res.json.batch.items[1].error.reasons.includes('amount_above_review_threshold'));
  // No hold either: the held amount was undone with the rest.
  assert.deepEqual(await moneyState(parties), before);
});

test('an atomic batch that all posts: 201, every payment a normal one that names its batch', async () => {
  const before = await moneyState([rich, payee]);
  const res = await batch({ atomic: true, payments: [usd(rich, payee, 100), usd(rich, payee, 200)] });
  assert.equal(res.status, 201, res.body);
  const b = res.json.batch;
  assert.equal(b.status, 'completed');
  assert.deepEqual(b.counts, { total: 2, posted: 2, manualReview: 0, declined: 0, failed: 0, notApplied: 0 });
  for (const item of b.items) {
    assert.equal(item.status, 'posted');
    assert.equal(item.payment.batchId, b.id);
    assert.equal(item.error, undefined);
    const one = await t.request('GET', `/v1/payments/${item.payment.id}`);
    assert.equal(one.status, 200);
    assert.equal(one.json.payment.batchId, b.id);
    assert.equal(one.json.ledgerEntries.length, 2);
  }
  // The balances after the batch, as a read says them.
  assert.deepEqual(res.json.balances, [
    await balanceOf(t, rich.accountId),
    await balanceOf(t, payee.accountId),
  ]);
  const after = await moneyState([rich, payee]);
  assert.equal(after.balances[0].postedBalanceCents, before.balances[0].postedBalanceCents - 300);
  assert.equal(after.payments, before.payments + 2);
  const audit = await auditLogs(t);
  assert.deepEqual(
    audit.slice(-3).map((e: Json) => e.eventType),
    ['payment.posted', 'payment.posted', 'payment_batch.created'],
  );
  const events = await t.request('GET', '/v1/events?limit=500');
  assert.ok(
    events.json.events.some((e: Json) => e.type === 'payment_batch.created' && e.data.batch.id === b.id),
  );
  await assertBooksValid(t);
});

test('a non-atomic batch decides each payment as if alone: posted, held, declined, failed', async () => {
  const res = await batch({
    atomic: false,
    payments: [
      usd(rich, payee, 300),
      usd(rich, payee, REVIEW_AMOUNT),
      usd(poor, payee, 5_000),
      { ...usd(rich, payee, 10), sourceAccountId: 'acc_does_not_exist' },
      // The system funding account is no one's to pay from or to: failed, and never locked by the batch.
      { ...usd(rich, payee, 10), sourceAccountId: 'acc_system_funding_usd' },
      { ...usd(rich, payee, 10), destinationAccountId: 'acc_system_funding_usd' },
    ],
  });
  assert.equal(res.status, 201, res.body);
  const b = res.json.batch;
  assert.equal(b.status, 'completed');
  assert.deepEqual(b.counts, { total: 6, posted: 1, manualReview: 1, declined: 1, failed: 3, notApplied: 0 });
  assert.deepEqual(
    b.items.map((i: Json) => [i.status, i.payment?.status ?? i.error.code]),
    [
      ['posted', 'posted'],
      ['manual_review', 'manual_review'],
      ['declined', 'declined'],
      ['failed', 'SOURCE_ACCOUNT_NOT_FOUND'],
      ['failed', 'SOURCE_ACCOUNT_NOT_FOUND'],
      ['failed', 'DESTINATION_ACCOUNT_NOT_FOUND'],
    ],
  );
  // The held one is a normal payment in review: its hold is on the payer, and it can be approved.
  const held = b.items[1].payment;
  assert.equal((await balanceOf(t, rich.accountId)).heldBalanceCents, REVIEW_AMOUNT);
  const compliance = (await apiKey(t, 'compliance')).token;
  const approved = await t.request('POST', `/v1/payments/${held.id}/approve`, {
    token: compliance,
    body: {},
  });
  assert.equal(approved.status, 201, approved.body);
  // Reading the batch shows each payment as it is now.
  const read = await t.request('GET', `/v1/payment-batches/${b.id}`);
  assert.equal(read.json.batch.items[1].payment.status, 'posted');
  assert.equal(read.json.batch.counts.manualReview, 1, 'the counts are the batch as it was made');
  await assertBooksValid(t);
});

test('idempotency: a reused key with another body is a 409; a missing key a 400', async () => {
  const key = `reuse-${randomUUID()}`;
  const first = await batch({ atomic: false, payments: [usd(rich, payee, 1)] }, key);
  assert.equal(first.status, 201, first.body);
  const again = await batch({ atomic: false, payments: [usd(rich, payee, 1)] }, key);
  assert.equal(again.body, first.body);
  const other = await batch({ atomic: true, payments: [usd(rich, payee, 1)] }, key);
  assert.equal(other.status, 409, other.body);
  assert.equal(other.json.error.code, 'IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD');
  const missing = await t.request('POST', '/v1/payment-batches', {
    body: { atomic: false, payments: [usd(rich, payee, 1)] },
  });
  assert.equal(missing.status, 400);
  assert.equal(missing.json.error.code, 'IDEMPOTENCY_KEY_REQUIRED');
});

test('bad input is a 400 naming the item and field, and stores nothing', async () => {
  const before = await moneyState([rich, payee]);
  const ok = usd(rich, payee, 100);
  const cases: { name: string; body: unknown; field?: string }[] = [
    {
      name: '1,001 payments',
      body: { atomic: false, payments: Array.from({ length: 1_001 }, () => ok) },
      field: '/payments',
    },
    { name: 'no payments', body: { atomic: false, payments: [] }, field: '/payments' },
    { name: 'no atomic', body: { payments: [ok] } },
    {
      name: 'a fractional amount',
      body: { atomic: true, payments: [ok, ok, ok, { ...ok, amountCents: 10.5 }] },
      field: '/payments/3/amountCents',
    },
    {
      name: 'an unsafe amount',
      body: { atomic: true, payments: [{ ...ok, amountCents: 2 ** 53 }] },
      field: '/payments/0/amountCents',
    },
    {
      name: 'source = destination',
      body: { atomic: false, payments: [ok, { ...ok, destinationAccountId: rich.accountId }] },
      field: '/payments/1/destinationAccountId',
    },
    {
      name: 'NUL in a note',
      body: { atomic: false, payments: [{ ...ok, note: 'pay\u0000me' }] },
      field: '/payments/0/note',
    },
    {
      name: 'NUL in a metadata value',
      body: { atomic: false, payments: [ok, { ...ok, metadata: { orderId: 'x\u0000' } }] },
      field: '/payments/1/metadata/orderId',
    },
    {
      name: 'one FX quote for two items',
      body: {
        atomic: true,
        payments: [ok, { ...ok, quoteId: 'fxq_0123abc' }, ok, { ...ok, quoteId: 'fxq_0123abc' }],
      },
      field: '/payments/3/quoteId',
    },
    { name: 'an unknown field in an item', body: { atomic: false, payments: [{ ...ok, extra: 1 }] } },
    { name: 'an amount as a string', body: { atomic: false, payments: [{ ...ok, amountCents: '100' }] } },
  ];
  for (const c of cases) {
    const res = await batch(c.body);
    assert.equal(res.status, 400, `${c.name}: ${res.body}`);
    assert.equal(res.json.error.code, 'VALIDATION_ERROR', c.name);
    if (c.field !== undefined) {
      assert.ok(
        res.json.error.details.some((d: Json) => d.field === c.field),
        `${c.name}: ${JSON.stringify(res.json.error.details)}`,
      );
    }
  }
  // `__proto__` as a key, in the body and in an item: an unknown field like any other, never a prototype.
  for (const raw of [
    `{"atomic":false,"payments":[${JSON.stringify(ok)}],"__proto__":{"atomic":true}}`,
    `{"atomic":false,"payments":[${JSON.stringify(ok).slice(0, -1)},"__proto__":{"x":1}}]}`,
    `{"atomic":false,"payments":[${JSON.stringify(ok).slice(0, -1)},"metadata":{"__proto__":"x"}}]}`,
  ]) {
    const res = await batch(raw);
    assert.equal(res.status, 400, res.body);
  }
  assert.deepEqual(await moneyState([rich, payee]), before, 'nothing was stored');
});

test('scoped keys pay only from their customers’ accounts and read only their own batches', async () => {
  const services = t.app.services;
  // A payer of its own: `rich` has paid often this minute, and the velocity rule would hold its payment.
  const mine = await party(t, { balance: 1_000 });
  const scoped = await createApiKey(services, SYSTEM_ACTOR, 'payments', 'scoped batch', {
    customerIds: [mine.customerId],
  });
  const other = await createApiKey(services, SYSTEM_ACTOR, 'payments', 'scoped other', {
    customerIds: [poor.customerId],
  });
  const res = await batch(
    { atomic: false, payments: [usd(mine, payee, 5), usd(poor, payee, 5)] },
    undefined,
    scoped.secret,
  );
  assert.equal(res.status, 201, res.body);
  assert.deepEqual(
    res.json.batch.items.map((i: Json) => i.payment?.status ?? i.error.code),
    ['posted', 'SOURCE_ACCOUNT_NOT_FOUND'],
  );
  // Its balances: only its own customers' accounts.
  assert.deepEqual(
    res.json.balances.map((a: Json) => a.id),
    [mine.accountId],
  );
  const id = res.json.batch.id;
  assert.equal((await t.request('GET', `/v1/payment-batches/${id}`, { token: scoped.secret })).status, 200);
  const hidden = await t.request('GET', `/v1/payment-batches/${id}`, { token: other.secret });
  assert.equal(hidden.status, 404);
  assert.equal(hidden.json.error.code, 'PAYMENT_BATCH_NOT_FOUND');
});

test('1,000 payments: one transaction, paged back, and the event loop keeps answering', async (ctx) => {
  // The seed policy's per-minute rules (velocity, repeated pattern) would hold most of 1,000 payments from a
  // few accounts for review; this app runs the bench policy, where every rule runs but those never fire.
  const big = await startTestApp({ db: t.db, env: { RISK_POLICY_PATH: benchPolicyPath() } });
  try {
    const payers: Party[] = [];
    for (let i = 0; i < 10; i++) payers.push(await party(big, { balance: 1_000_000 }));
    const payees: Party[] = [];
    for (let i = 0; i < 10; i++) payees.push(await party(big, { balance: 0 }));
    const payments = Array.from({ length: 1_000 }, (_, i) =>
      usd(payers[i % 10]!, payees[(i * 7) % 10]!, 100 + i),
    );

    const loop = monitorEventLoopDelay({ resolution: 1 });
    loop.enable();
    const startedMs = performance.now();
    const pending = big.request('POST', '/v1/payment-batches', {
      body: { atomic: true, payments },
      idempotencyKey: `big-${randomUUID()}`,
    });
    // While the batch runs, the server keeps answering: /health is served between its slices.
    let healthAnswers = 0;
    let done = false;
    void pending.finally(() => {
      done = true;
    });
    while (!done) {
      // A timer between polls, as requests arriving over a socket would: the batch's own turns of the loop
      // (setImmediate) run in between, and every poll waits for the batch's slice in progress to end.
      await new Promise((resolve) => setTimeout(resolve, 2));
      const health = await big.request('GET', '/health');
      assert.equal(health.status, 200);
      healthAnswers += 1;
    }
    const res = await pending;
    const elapsedMs = performance.now() - startedMs;
    loop.disable();
    assert.equal(res.status, 201, res.body.slice(0, 2000));
    assert.equal(res.json.batch.counts.posted, 1_000);
    ctx.diagnostic(
      `${backend}: 1,000-payment batch in ${elapsedMs.toFixed(0)} ms; longest event-loop block ${(
        loop.max / 1e6
      ).toFixed(
        1,
      )} ms (p99 ${(loop.percentile(99) / 1e6).toFixed(1)} ms); /health answered ${healthAnswers} times; ` +
        `response ${res.body.length} bytes`,
    );
    if (backend === 'sqlite') assert.ok(healthAnswers > 1, 'the event loop ran while the batch did');

    // One transaction: every payment carries the same instant, and their audit entries and the batch's are
    // contiguous in the chain (the batch's last).
    const ids = new Set(res.json.batch.items.map((i: Json) => i.payment.id));
    const createdAt = new Set(res.json.batch.items.map((i: Json) => i.payment.createdAt));
    assert.equal(ids.size, 1_000);
    assert.equal(createdAt.size, 1, 'one transaction, one instant');
    const entries = await listAll(big, '/v1/audit-logs', 'logs');
    const ours = entries.filter((e: Json) => e.metadata.batchId === res.json.batch.id);
    assert.equal(ours.length, 1_001);
    const first = ours[0].index;
    assert.deepEqual(
      ours.map((e: Json) => e.index),
      Array.from({ length: 1_001 }, (_, i) => first + i),
    );
    assert.equal(ours[1_000].eventType, 'payment_batch.created');

    // Paged back: 500 at a time, in order.
    const read = [];
    let cursor: string | null = null;
    for (let page = 0; page < 5; page++) {
      const url: string = `/v1/payment-batches/${res.json.batch.id}?limit=500${cursor === null ? '' : `&cursor=${cursor}`}`;
      const got = await big.request('GET', url);
      assert.equal(got.status, 200, got.body.slice(0, 500));
      read.push(...got.json.batch.items);
      if (!got.json.hasMore) break;
      cursor = got.json.nextCursor;
    }
    assert.deepEqual(
      read.map((i: Json) => i.index),
      Array.from({ length: 1_000 }, (_, i) => i),
    );
    await assertBooksValid(big);
  } finally {
    await big.close();
  }
});

test('two batches over the same accounts at once, from two app instances: no deadlock, no overdraft', async () => {
  const policy = { RISK_POLICY_PATH: benchPolicyPath() };
  const one = await startTestApp({ db: t.db, env: policy });
  const two = await startTestApp({ db: t.db, env: policy });
  try {
    const a = await party(one, { balance: 10_000 });
    const b = await party(one, { balance: 10_000 });
    // Opposite directions over the same two accounts, each asking for more than the payer holds.
    const post = (app: TestApp, from: Party, to: Party) =>
      app.request('POST', '/v1/payment-batches', {
        body: { atomic: false, payments: Array.from({ length: 15 }, () => usd(from, to, 1_000)) },
        idempotencyKey: `race-${randomUUID()}`,
      });
    const results = await Promise.all([post(one, a, b), post(two, b, a), post(one, b, a), post(two, a, b)]);
    for (const res of results) assert.equal(res.status, 201, res.body.slice(0, 500));
    const balances = [await balanceOf(one, a.accountId), await balanceOf(one, b.accountId)];
    for (const balance of balances) assert.ok(balance.availableBalanceCents >= 0, JSON.stringify(balance));
    assert.equal(balances[0].postedBalanceCents + balances[1].postedBalanceCents, 20_000);
    const posted = results
      .flatMap((r) => r.json.batch.items)
      .filter((i: Json) => i.status === 'posted').length;
    const declined = results.flatMap((r) => r.json.batch.items).filter((i: Json) => i.status === 'declined');
    assert.equal(posted + declined.length, 60);
    for (const item of declined) assert.deepEqual(item.payment.reasons, ['insufficient_funds']);
    await assertBooksValid(one);
  } finally {
    await one.close();
    await two.close();
  }
});
