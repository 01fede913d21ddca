import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import {
  apiKey,
  assertBooksValid,
  auditLogs,
  balanceOf,
  type Json,
  listAll,
  type Party,
  party,
  pay,
} from './support/fixtures.ts';
import { startTestApp, type TestApp } from './support/harness.ts';

/**
 * Refunds (issue 6): full or partial reversals of a posted payment, posted as a `refund` posting from the
 * receiver back to the payer, idempotent under Idempotency-Key, never beyond the payment amount and never
 * beyond the receiver's available balance.
 */
let t: TestApp;
let payments: { token: string; id: string };

before(async () => {
  t = await startTestApp();
  payments = await apiKey(t, 'payments');
});

after(async () => {
  await t.destroy();
});

async function postedPayment(
  amountCents = 10_000,
): Promise<{ sender: Party; receiver: Party; payment: Json }> {
  const sender = await party(t, { balance: 100_000 });
  const receiver = await party(t, { balance: 0 });
  const res = await pay(t, {
    sourceAccountId: sender.accountId,
    destinationAccountId: receiver.accountId,
    amountCents,
    currency: 'USD',
  });
  assert.equal(res.status, 201, res.body);
  return { sender, receiver, payment: res.json.payment };
}

function refund(paymentId: string, body: Json = {}, key = `refund-${randomUUID()}`) {
  return t.request('POST', `/v1/payments/${paymentId}/refunds`, {
    token: payments.token,
    body,
    idempotencyKey: key,
  });
}

test('partial refunds add up to the payment; beyond it is 422 REFUND_EXCEEDS_PAYMENT', async () => {
  const { sender, receiver, payment } = await postedPayment(10_000);

  const first = await refund(payment.id, { amountCents: 3_000, reason: 'damaged item' });
  assert.equal(first.status, 201, first.body);
  assert.equal(first.headers['idempotency-replayed'], 'false');
  assert.deepEqual(
    [first.json.refund.paymentId, first.json.refund.amountCents, first.json.refund.reason],
    [payment.id, 3_000, 'damaged item'],
  );
  const second = await refund(payment.id, { amountCents: 5_000 });
  assert.equal(second.status, 201, second.body);

  const over = await refund(payment.id, { amountCents: 2_001 });
  assert.equal(over.status, 422, over.body);
  assert.equal(over.json.error.code, 'REFUND_EXCEEDS_PAYMENT');

  // No amount: the remainder (2,000).
  const rest = await refund(payment.id);
  assert.equal(rest.status, 201, rest.body);
  assert.equal(rest.json.refund.amountCents, 2_000);
  const nothingLeft = await refund(payment.id);
  assert.equal(nothingLeft.status, 422);
  assert.equal(nothingLeft.json.error.code, 'REFUND_EXCEEDS_PAYMENT');

  assert.equal((await balanceOf(t, sender.accountId)).postedBalanceCents, 100_000);
  assert.equal((await balanceOf(t, receiver.accountId)).postedBalanceCents, 0);

  const shown = await t.request('GET', `/v1/payments/${payment.id}`, { token: payments.token });
  assert.equal(shown.status, 200);
  assert.equal(shown.json.payment.status, 'posted');
  assert.equal(shown.json.payment.refundedCents, 10_000);
  assert.deepEqual(
    shown.json.refunds.map((r: Json) => r.amountCents),
    [3_000, 5_000, 2_000],
  );
  // The original debit/credit plus one reversing pair per refund, receiver → payer.
  const reversals = shown.json.ledgerEntries.filter(
    (e: Json) => e.accountId === receiver.accountId && e.direction === 'debit',
  );
  assert.deepEqual(
    reversals.map((e: Json) => e.amountCents),
    [3_000, 5_000, 2_000],
  );

  const audited = (await auditLogs(t)).filter(
    (e: Json) => e.resourceId === payment.id && e.eventType === 'payment.refunded',
  );
  assert.deepEqual(
    audited.map((e: Json) => e.metadata.refundedCents),
    [3_000, 8_000, 10_000],
  );
  assert.ok(!JSON.stringify(audited).includes('damaged item'), 'the reason is not in the audit log');
});

test('a payment refunded 101 times shows 100 refunds and says there are more (a bounded read)', async () => {
  const { payment } = await postedPayment(1_000);
  for (let i = 0; i < 101; i++) assert.equal((await refund(payment.id, { amountCents: 1 })).status, 201);
  const res = await t.request('GET', `/v1/payments/${payment.id}`);
  assert.equal(res.status, 200, res.body);
  assert.equal(res.json.payment.refundedCents, 101);
  assert.equal(res.json.refunds.length, 100);
  assert.equal(res.json.refundsHasMore, true);
  assert.equal(res.json.ledgerEntries.length, 100);
  assert.equal(res.json.ledgerEntriesHasMore, true, '2 + 2 × 101 entries');
  const ledger = await listAll(t, `/v1/ledger?paymentId=${payment.id}`, 'ledgerEntries');
  assert.equal(ledger.length, 2 + 2 * 101, 'the ledger pages through all of them');
});

test('a full refund by default returns the whole amount', async () => {
  const { sender, receiver, payment } = await postedPayment(7_777);
  const res = await refund(payment.id);
  assert.equal(res.status, 201, res.body);
  assert.equal(res.json.refund.amountCents, 7_777);
  assert.equal((await balanceOf(t, sender.accountId)).availableBalanceCents, 100_000);
  assert.equal((await balanceOf(t, receiver.accountId)).availableBalanceCents, 0);
});

test('a retry with the same Idempotency-Key replays the refund byte for byte and moves no money', async () => {
  const { receiver, payment } = await postedPayment(10_000);
  const key = `refund-${randomUUID()}`;
  const first = await refund(payment.id, { amountCents: 4_000 }, key);
  assert.equal(first.status, 201, first.body);
  const again = await refund(payment.id, { amountCents: 4_000 }, key);
  assert.equal(again.status, 201);
  assert.equal(again.body, first.body);
  assert.equal(again.headers['idempotency-replayed'], 'true');
  assert.equal((await balanceOf(t, receiver.accountId)).postedBalanceCents, 6_000);

  const different = await refund(payment.id, { amountCents: 1_000 }, key);
  assert.equal(different.status, 409);
  assert.equal(different.json.error.code, 'IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD');

  // Concurrent retries of one new key: one refund.
  const key2 = `refund-${randomUUID()}`;
  const burst = await Promise.all(
    Array.from({ length: 10 }, () => refund(payment.id, { amountCents: 1_000 }, key2)),
  );
  assert.ok(
    burst.every((r) => r.status === 201 && r.body === burst[0]!.body),
    burst.map((r) => r.body).join('\n'),
  );
  assert.equal((await balanceOf(t, receiver.accountId)).postedBalanceCents, 5_000);

  const missing = await t.request('POST', `/v1/payments/${payment.id}/refunds`, {
    token: payments.token,
    body: {},
  });
  assert.equal(missing.status, 400);
  assert.equal(missing.json.error.code, 'IDEMPOTENCY_KEY_REQUIRED');
});

test("the receiver's available balance must cover the refund: 422 INSUFFICIENT_FUNDS", async () => {
  const { receiver, payment } = await postedPayment(10_000);
  const elsewhere = await party(t);
  const spent = await pay(t, {
    sourceAccountId: receiver.accountId,
    destinationAccountId: elsewhere.accountId,
    amountCents: 9_000,
    currency: 'USD',
  });
  assert.equal(spent.status, 201, spent.body);
  const key = `refund-${randomUUID()}`;
  const res = await refund(payment.id, { amountCents: 5_000 }, key);
  assert.equal(res.status, 422, res.body);
  assert.equal(res.json.error.code, 'INSUFFICIENT_FUNDS');
  assert.equal((await balanceOf(t, receiver.accountId)).postedBalanceCents, 1_000);
  // A rejection is not stored under its key; a refund the balance covers goes through.
  const smaller = await refund(payment.id, { amountCents: 1_000 });
  assert.equal(smaller.status, 201, smaller.body);
});

test('only posted payments can be refunded: 409 PAYMENT_NOT_REFUNDABLE; unknown: 404', async () => {
  const sender = await party(t, { balance: 1_000_000 });
  const receiver = await party(t);
  const held = await pay(t, {
    sourceAccountId: sender.accountId,
    destinationAccountId: receiver.accountId,
    amountCents: 250_000,
    currency: 'USD',
  });
  assert.equal(held.status, 202);
  const res = await refund(held.json.payment.id);
  assert.equal(res.status, 409, res.body);
  assert.equal(res.json.error.code, 'PAYMENT_NOT_REFUNDABLE');
  const declined = await pay(t, {
    sourceAccountId: receiver.accountId,
    destinationAccountId: sender.accountId,
    amountCents: 10,
    currency: 'USD',
  });
  assert.equal(declined.status, 422);
  assert.equal((await refund(declined.json.payment.id)).json.error.code, 'PAYMENT_NOT_REFUNDABLE');
  const missing = await refund('pay_doesnotexist');
  assert.equal(missing.status, 404);
  assert.equal(missing.json.error.code, 'PAYMENT_NOT_FOUND');
});

test('refunds wrote payment.refunded events, and the books verify', async () => {
  const events = await listAll(t, '/v1/events', 'events');
  const refunded = events.filter((e: Json) => e.type === 'payment.refunded');
  assert.ok(refunded.length >= 5);
  assert.ok(refunded.every((e: Json) => typeof e.data.refund.amountCents === 'number'));
  await assertBooksValid(t);
});
