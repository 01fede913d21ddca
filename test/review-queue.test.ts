import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sweepOnce } from '../src/app/maintenance.ts';
import {
  apiKey,
  assertBooksValid,
  auditLogs,
  balanceOf,
  heldPayment,
  type Json,
  listAll,
  party,
  pay,
  REVIEW_AMOUNT,
  rawSql,
} from './support/fixtures.ts';
import { manualClock, startTestApp, type TestApp } from './support/harness.ts';

/**
 * The review queue (issue 6): a payment in manual_review holds its amount; approve captures exactly that
 * amount into a posting, reject and expiry release it; each happens once, and concurrent approve and reject
 * of one payment end in exactly one outcome. Amounts of 250,000 cents go to review by the seed's rule.
 */
const HOUR_MS = 3_600_000;

let t: TestApp;
let compliance: { token: string; id: string };
const clock = manualClock();

before(async () => {
  t = await startTestApp({ clock: clock.now });
  compliance = await apiKey(t, 'compliance');
});

after(async () => {
  await t.destroy();
});

const resolve = (id: string, action: 'approve' | 'reject', body: Json = {}) =>
  t.request('POST', `/v1/payments/${id}/${action}`, { token: compliance.token, body });

async function auditOf(paymentId: string): Promise<Json[]> {
  return (await auditLogs(t)).filter((e: Json) => e.resourceId === paymentId);
}

test('compliance sees the held payment in the review queue', async () => {
  const { payment } = await heldPayment(t);
  const queue = await t.request('GET', '/v1/payments?status=manual_review&limit=500', {
    token: compliance.token,
  });
  assert.equal(queue.status, 200, queue.body);
  assert.ok(queue.json.payments.some((p: Json) => p.id === payment.id));
});

test('a held payment says when its hold expires, and each fired rule what it compared with', async () => {
  const { payment } = await heldPayment(t);
  // The 202 body, GET and the list agree: createdAt + REVIEW_HOLD_EXPIRY_HOURS (72 by default).
  const expected = new Date(Date.parse(payment.createdAt) + 72 * HOUR_MS).toISOString();
  assert.equal(payment.holdExpiresAt, expected);
  const read = await t.request('GET', `/v1/payments/${payment.id}`, { token: compliance.token });
  assert.equal(read.json.payment.holdExpiresAt, expected);
  const rule = read.json.payment.decision.rules.find((r: Json) => r.rule === 'aml_amount');
  assert.deepEqual(rule.conditions, {
    all: [{ feature: 'amountCents', op: '>=', value: REVIEW_AMOUNT }],
    any: [],
  });
  assert.equal(rule.observed.amountCents, REVIEW_AMOUNT);
  // Resolved: no hold, no expiry.
  const approved = await resolve(payment.id, 'approve');
  assert.equal(approved.json.payment.holdExpiresAt, null);
});

test('hold → approve posts exactly the held amount, once', async () => {
  const { sender, receiver, payment } = await heldPayment(t);
  const held = await balanceOf(t, sender.accountId);
  assert.equal(held.heldBalanceCents, REVIEW_AMOUNT);
  assert.equal(held.availableBalanceCents, 1_000_000 - REVIEW_AMOUNT);

  const res = await resolve(payment.id, 'approve', { note: 'Called Ms. Example, documents check out' });
  assert.equal(res.status, 201, res.body);
  assert.equal(res.json.ledgerPosted, true);
  assert.equal(res.json.payment.status, 'posted');
  assert.equal(res.json.payment.resolution.outcome, 'approved');
  assert.equal(res.json.payment.resolution.resolvedBy, compliance.id);
  assert.equal(res.json.payment.resolution.noteProvided, true);

  const source = await balanceOf(t, sender.accountId);
  assert.deepEqual(
    [source.postedBalanceCents, source.heldBalanceCents, source.availableBalanceCents],
    [1_000_000 - REVIEW_AMOUNT, 0, 1_000_000 - REVIEW_AMOUNT],
    'the available balance does not move again: the hold had reserved it',
  );
  const destination = await balanceOf(t, receiver.accountId);
  assert.equal(destination.postedBalanceCents, REVIEW_AMOUNT);
  const entries = await listAll(t, `/v1/ledger?paymentId=${payment.id}`, 'ledgerEntries');
  assert.deepEqual(
    entries.map((e: Json) => [e.accountId, e.direction, e.amountCents]).sort(),
    [
      [receiver.accountId, 'credit', REVIEW_AMOUNT],
      [sender.accountId, 'debit', REVIEW_AMOUNT],
    ].sort(),
  );

  // A second approve, or a reject after it: 409, nothing changes.
  for (const action of ['approve', 'reject'] as const) {
    const again = await resolve(payment.id, action);
    assert.equal(again.status, 409, again.body);
    assert.equal(again.json.error.code, 'PAYMENT_NOT_IN_REVIEW');
  }
  assert.deepEqual(await balanceOf(t, sender.accountId), source);
  assert.deepEqual(await balanceOf(t, receiver.accountId), destination);

  const audit = await auditOf(payment.id);
  const approved = audit.filter((e: Json) => e.eventType === 'payment.approved');
  assert.equal(approved.length, 1);
  assert.equal(approved[0].actorId, compliance.id);
  assert.equal(approved[0].metadata.noteProvided, true);
  assert.ok(!JSON.stringify(approved[0]).includes('Example'), 'the note is never in the audit log');
});

test('hold → reject releases the hold and declines the payment', async () => {
  const { sender, receiver, payment } = await heldPayment(t);
  const res = await resolve(payment.id, 'reject', { note: 'Customer could not confirm' });
  assert.equal(res.status, 200, res.body);
  assert.equal(res.json.ledgerPosted, false);
  assert.equal(res.json.payment.status, 'declined');
  assert.equal(res.json.payment.resolution.outcome, 'rejected');

  const source = await balanceOf(t, sender.accountId);
  assert.deepEqual(
    [source.postedBalanceCents, source.heldBalanceCents, source.availableBalanceCents],
    [1_000_000, 0, 1_000_000],
  );
  assert.equal((await balanceOf(t, receiver.accountId)).postedBalanceCents, 0);
  const again = await resolve(payment.id, 'reject');
  assert.equal(again.status, 409);
  assert.equal(again.json.error.code, 'PAYMENT_NOT_IN_REVIEW');

  const stored = await t.request('GET', `/v1/payments/${payment.id}`);
  assert.equal(stored.json.payment.status, 'declined');
  assert.deepEqual(stored.json.ledgerEntries, []);
  const rejected = (await auditOf(payment.id)).filter((e: Json) => e.eventType === 'payment.rejected');
  assert.equal(rejected.length, 1);
  assert.equal(rejected[0].actorId, compliance.id);
});

test('resolving an unknown payment is 404; a posted or declined one is 409', async () => {
  // No body at all is fine (the note is optional): the 404 comes from the lookup, not validation.
  const missing = await t.request('POST', '/v1/payments/pay_doesnotexist/approve', {
    token: compliance.token,
  });
  assert.equal(missing.status, 404);
  assert.equal(missing.json.error.code, 'PAYMENT_NOT_FOUND');
  const sender = await party(t, { balance: 10_000 });
  const receiver = await party(t);
  const posted = await pay(t, {
    sourceAccountId: sender.accountId,
    destinationAccountId: receiver.accountId,
    amountCents: 100,
    currency: 'USD',
  });
  assert.equal(posted.status, 201);
  const res = await resolve(posted.json.payment.id, 'reject');
  assert.equal(res.status, 409);
  assert.equal(res.json.error.code, 'PAYMENT_NOT_IN_REVIEW');
});

test('concurrent approve and reject of one payment end in exactly one outcome', async () => {
  const cases = await Promise.all(Array.from({ length: 5 }, () => heldPayment(t)));
  for (const { sender, receiver, payment } of cases) {
    const results = await Promise.all([resolve(payment.id, 'approve'), resolve(payment.id, 'reject')]);
    const winners = results.filter((r) => r.status === 200 || r.status === 201);
    const losers = results.filter((r) => r.status === 409);
    assert.equal(winners.length, 1, results.map((r) => r.body).join('\n'));
    assert.equal(losers.length, 1);
    assert.equal(losers[0]!.json.error.code, 'PAYMENT_NOT_IN_REVIEW');

    const approved = winners[0]!.status === 201;
    const stored = await t.request('GET', `/v1/payments/${payment.id}`);
    assert.equal(stored.json.payment.status, approved ? 'posted' : 'declined');
    const source = await balanceOf(t, sender.accountId);
    assert.equal(source.heldBalanceCents, 0);
    assert.equal(source.postedBalanceCents, approved ? 1_000_000 - REVIEW_AMOUNT : 1_000_000);
    assert.equal((await balanceOf(t, receiver.accountId)).postedBalanceCents, approved ? REVIEW_AMOUNT : 0);
    const resolutions = (await auditOf(payment.id)).filter((e: Json) =>
      ['payment.approved', 'payment.rejected'].includes(e.eventType),
    );
    assert.equal(resolutions.length, 1, 'one resolution audited');
  }
  await assertBooksValid(t);
});

test('hold → expiry: the sweep declines holds older than REVIEW_HOLD_EXPIRY_HOURS (72) and releases them', async () => {
  const { sender, payment } = await heldPayment(t);
  // Resolve every older hold first, so this test only sees its own.
  clock.advance(71 * HOUR_MS);
  await sweepOnce(t.app.services);
  const young = await t.request('GET', `/v1/payments/${payment.id}`);
  assert.equal(young.json.payment.status, 'manual_review', 'a 71-hour-old hold stays');

  clock.advance(2 * HOUR_MS);
  const swept = await sweepOnce(t.app.services);
  assert.ok(swept.holdsExpired >= 1);
  const expired = await t.request('GET', `/v1/payments/${payment.id}`);
  assert.equal(expired.json.payment.status, 'declined');
  assert.equal(expired.json.payment.resolution.outcome, 'hold_expired');
  assert.equal(expired.json.payment.resolution.resolvedBy, 'system');
  const source = await balanceOf(t, sender.accountId);
  assert.deepEqual([source.heldBalanceCents, source.availableBalanceCents], [0, 1_000_000]);

  const audited = (await auditOf(payment.id)).filter((e: Json) => e.eventType === 'payment.hold_expired');
  assert.equal(audited.length, 1);
  const late = await resolve(payment.id, 'approve');
  assert.equal(late.status, 409, 'an expired hold cannot be approved');
  assert.equal((await sweepOnce(t.app.services)).holdsExpired, 0, 'nothing left to expire');
  assert.equal(
    await rawSql(t.db, `UPDATE holds SET status = status WHERE status = 'active'`),
    0,
    'no hold is left active',
  );
});

test('past holdExpiresAt, before the sweep: approve is refused (409 PAYMENT_HOLD_EXPIRED), reject still works', async () => {
  const { sender, payment } = await heldPayment(t);
  clock.advance(72 * HOUR_MS); // exactly holdExpiresAt; the sweep has not run
  const late = await resolve(payment.id, 'approve');
  assert.equal(late.status, 409, late.body);
  assert.equal(late.json.error.code, 'PAYMENT_HOLD_EXPIRED');
  const held = await t.request('GET', `/v1/payments/${payment.id}`);
  assert.equal(held.json.payment.status, 'manual_review', 'nothing changed');
  const rejected = await resolve(payment.id, 'reject');
  assert.equal(rejected.status, 200, rejected.body);
  assert.equal((await balanceOf(t, sender.accountId)).heldBalanceCents, 0);
});

test('every resolution wrote its outbox event, and the books verify', async () => {
  const auditor = await apiKey(t, 'auditor');
  const events = await listAll(
    { request: (m, u, o) => t.request(m, u, { ...o, token: auditor.token }) },
    '/v1/events',
    'events',
  );
  const types = new Set(events.map((e: Json) => e.type));
  for (const type of [
    'payment.held_for_review',
    'payment.approved',
    'payment.rejected',
    'payment.hold_expired',
  ]) {
    assert.ok(types.has(type), `an event of type ${type}`);
  }
  await assertBooksValid(t);
});

test('ledger verify catches a review without its hold (tampering), and passes again once repaired', async () => {
  const { payment } = await heldPayment(t);
  assert.equal((await resolve(payment.id, 'reject')).status, 200);
  await rawSql(t.db, `UPDATE payments SET status = 'manual_review' WHERE id = ?`, [payment.id]);
  const broken = await t.request('GET', '/v1/ledger/verify');
  assert.equal(broken.json.verification.valid, false);
  assert.deepEqual(broken.json.verification.mismatches, [
    { accountId: payment.id, problem: 'review status and active hold disagree' },
  ]);
  await rawSql(t.db, `UPDATE payments SET status = 'declined' WHERE id = ?`, [payment.id]);
  await assertBooksValid(t);
});
