import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  apiKey,
  auditLogs,
  balanceOf,
  type Json,
  type Party,
  type PaymentBody,
  party,
  pay,
  setKycStatus,
} from './support/fixtures.ts';
import { manualClock, startTestApp, type TestApp, type TestResponse } from './support/harness.ts';

/**
 * Every decision POST /v1/payments can reach, through the HTTP API: 201 posted, 202 held for review, 422
 * declined, each with its reason codes, its effect on balances, its stored record and its audit entry.
 * The clock is manual so the 60 s risk windows are exact; every case uses fresh accounts so the velocity and
 * pattern counters of one case never leak into another.
 */
const clock = manualClock();
let t: TestApp;

before(async () => {
  t = await startTestApp({ clock: clock.now });
});
after(async () => {
  await t.destroy();
});

const EVENT_BY_STATUS = {
  posted: 'payment.posted',
  manual_review: 'payment.held_for_review',
  declined: 'payment.declined',
} as const;
const HTTP_BY_STATUS = { posted: 201, manual_review: 202, declined: 422 } as const;
type Status = keyof typeof HTTP_BY_STATUS;

const usd = (from: Party, to: Party, amountCents: number, extra: Partial<PaymentBody> = {}): PaymentBody => ({
  sourceAccountId: from.accountId,
  destinationAccountId: to.accountId,
  amountCents,
  currency: 'USD',
  ...extra,
});

/**
 * The contract's body: `{payment: {...}, ledgerPosted, balances}` for 201, 202 and 422 alike; `balances` are
 * the two accounts' balances right after the write (issue 17), source first.
 */
function assertPaymentShape(res: TestResponse, body: PaymentBody): void {
  assert.deepEqual(Object.keys(res.json).sort(), ['balances', 'ledgerPosted', 'payment']);
  assert.deepEqual(
    res.json.balances.map((b: Json) => b.id),
    [body.sourceAccountId, body.destinationAccountId],
  );
  for (const b of res.json.balances) {
    assert.equal(
      b.availableBalanceCents,
      b.postedBalanceCents - b.heldBalanceCents,
      'available = posted - held',
    );
  }
  const p = res.json.payment;
  for (const field of [
    'id',
    'status',
    'sourceAccountId',
    'destinationAccountId',
    'amountCents',
    'currency',
    'note',
    'reasons',
    'decision',
    'createdAt',
  ]) {
    assert.ok(field in p, `payment.${field} is present`);
  }
  assert.match(p.id, /^pay_[A-Za-z0-9]+$/);
  assert.equal(p.sourceAccountId, body.sourceAccountId);
  assert.equal(p.destinationAccountId, body.destinationAccountId);
  assert.equal(p.amountCents, body.amountCents);
  assert.equal(p.currency, body.currency);
  assert.equal(p.note, body.note ?? null);
  assert.equal(p.createdAt, new Date(clock.now()).toISOString());
  assert.equal(p.decision.outcome, p.status);
  assert.equal(typeof p.decision.policyVersion, 'string');
  assert.ok(p.decision.policyVersion.length > 0);
  assert.deepEqual(p.decision.reasons, p.reasons);
  assert.equal(res.json.ledgerPosted, p.status === 'posted');
  assert.equal(res.headers['idempotency-replayed'], 'false');
}

/**
 * Sends one payment and checks everything a decision implies: status code, body shape, reasons, the
 * balance effect on both accounts, the stored payment and ledger entries, and the audit entry.
 */
async function expectDecision(
  from: Party,
  to: Party,
  body: PaymentBody,
  status: Status,
  reasons: string[],
): Promise<Json> {
  const before = { src: await balanceOf(t, from.accountId), dst: await balanceOf(t, to.accountId) };
  const res = await pay(t, body);
  assert.equal(res.status, HTTP_BY_STATUS[status], res.body);
  assertPaymentShape(res, body);
  const payment = res.json.payment;
  assert.equal(payment.status, status);
  assert.deepEqual(payment.reasons, reasons);

  const src = await balanceOf(t, from.accountId);
  const dst = await balanceOf(t, to.accountId);
  const amount = body.amountCents;
  if (status === 'posted') {
    assert.equal(src.postedBalanceCents, before.src.postedBalanceCents - amount);
    assert.equal(src.availableBalanceCents, before.src.availableBalanceCents - amount);
    assert.equal(dst.postedBalanceCents, before.dst.postedBalanceCents + amount);
    assert.equal(dst.availableBalanceCents, before.dst.availableBalanceCents + amount);
  } else if (status === 'manual_review') {
    // A hold: available drops by the amount, posted does not; the payee sees nothing yet.
    assert.equal(src.postedBalanceCents, before.src.postedBalanceCents);
    assert.equal(src.heldBalanceCents, before.src.heldBalanceCents + amount);
    assert.equal(src.availableBalanceCents, before.src.availableBalanceCents - amount);
    assert.deepEqual(dst, before.dst);
  } else {
    assert.deepEqual(src, before.src, 'a decline moves nothing on the source');
    assert.deepEqual(dst, before.dst, 'a decline moves nothing on the destination');
  }

  // Recorded: GET returns the same payment, with ledger entries only when posted.
  const got = await t.request('GET', `/v1/payments/${payment.id}`);
  assert.equal(got.status, 200);
  assert.deepEqual(got.json.payment, payment);
  if (status === 'posted') {
    const entries = got.json.ledgerEntries.map((e: Json) => ({
      accountId: e.accountId,
      direction: e.direction,
      amountCents: e.amountCents,
      currency: e.currency,
      paymentId: e.paymentId,
    }));
    assert.deepEqual(
      entries.sort((a: Json, b: Json) => a.direction.localeCompare(b.direction)),
      [
        {
          accountId: to.accountId,
          direction: 'credit',
          amountCents: amount,
          currency: body.currency,
          paymentId: payment.id,
        },
        {
          accountId: from.accountId,
          direction: 'debit',
          amountCents: amount,
          currency: body.currency,
          paymentId: payment.id,
        },
      ],
    );
  } else {
    assert.deepEqual(got.json.ledgerEntries, []);
  }

  await assertAudited(payment, [from, to], body.note);
  return payment;
}

/** Exactly one audit entry for the payment, of the right type, with ids and decisions but no personal data. */
async function assertAudited(payment: Json, parties: Party[], note?: string): Promise<void> {
  const entries = (await auditLogs(t)).filter((e) => e.resourceId === payment.id);
  assert.equal(entries.length, 1, 'one audit entry per payment');
  const entry = entries[0];
  assert.equal(entry.eventType, EVENT_BY_STATUS[payment.status as Status]);
  assert.equal(entry.resourceType, 'payment');
  assert.equal(entry.metadata.paymentId, payment.id);
  assert.equal(entry.metadata.status, payment.status);
  assert.equal(entry.metadata.amountCents, payment.amountCents);
  assert.deepEqual(entry.metadata.reasons, payment.reasons);
  // Ids, amounts and decisions only: a new field here must be reviewed for personal data first.
  // The audit entry holds the same explainable decision as the payment (rules, features, scores; no PII).
  assert.deepEqual(entry.metadata.decision, payment.decision);
  assert.deepEqual(Object.keys(entry.metadata).sort(), [
    'amountCents',
    'currency',
    'decision',
    'destinationAccountId',
    'ledgerTransactionId',
    'paymentId',
    'policyVersion',
    'reasons',
    'sourceAccountId',
    'status',
  ]);
  const text = JSON.stringify(entry);
  for (const p of parties) {
    assert.ok(!text.includes(p.customer.name), 'no customer name in the audit entry');
    assert.ok(!text.includes(p.customer.id), 'no customer id either: the accounts identify the parties');
  }
  // A note is free text a client may fill with personal data: it stays out of the audit log.
  if (note !== undefined) assert.ok(!text.includes(note), 'the note is not copied into audit metadata');
}

const funded = (balance = 1_000_000, extra: { country?: string; currency?: string } = {}) =>
  party(t, { balance, ...extra, name: `Person ${Math.random().toString(36).slice(2, 10)}` });

describe('posted (201)', () => {
  test('moves the money, writes a debit and a credit, and is audited as payment.posted', async () => {
    const a = await funded(100_000);
    const b = await funded(5_000);
    const payment = await expectDecision(a, b, usd(a, b, 12_345, { note: 'rent' }), 'posted', []);
    assert.equal((await balanceOf(t, a.accountId)).availableBalanceCents, 100_000 - 12_345);
    assert.equal((await balanceOf(t, b.accountId)).availableBalanceCents, 5_000 + 12_345);
    assert.equal(payment.note, 'rent');
  });

  test('metadata is echoed on the payment', async () => {
    const a = await funded();
    const b = await funded();
    const payment = await expectDecision(
      a,
      b,
      usd(a, b, 700, { metadata: { orderId: 'ord-1', channel: 'web' } }),
      'posted',
      [],
    );
    assert.deepEqual(payment.metadata, { orderId: 'ord-1', channel: 'web' });
  });

  test('a payment that uses exactly the available balance posts and leaves zero', async () => {
    const a = await funded(1_000);
    const b = await funded(0);
    await expectDecision(a, b, usd(a, b, 1_000), 'posted', []);
    assert.equal((await balanceOf(t, a.accountId)).availableBalanceCents, 0);
  });

  test('a receiver whose KYC is still in manual review can be paid (only a rejected receiver blocks)', async () => {
    const a = await funded();
    const b = await funded();
    await setKycStatus(t.db, b.customerId, 'manual_review');
    await expectDecision(a, b, usd(a, b, 2_500), 'posted', []);
  });

  test('a payments-role API key can pay; the audit entry names that key, never its secret', async () => {
    const key = await apiKey(t, 'payments');
    const a = await funded();
    const b = await funded();
    const res = await pay(t, usd(a, b, 999), { token: key.token });
    assert.equal(res.status, 201, res.body);
    const entry = (await auditLogs(t)).find((e) => e.resourceId === res.json.payment.id);
    assert.equal(entry.actorId, key.id);
    assert.ok(!JSON.stringify(entry).includes(key.token));
  });

  test('auditor and compliance keys may not create payments (403)', async () => {
    const a = await funded();
    const b = await funded();
    for (const role of ['auditor', 'compliance'] as const) {
      const key = await apiKey(t, role);
      const res = await pay(t, usd(a, b, 100), { token: key.token });
      assert.equal(res.status, 403);
      assert.equal(res.json.error.code, 'FORBIDDEN');
    }
    assert.equal((await balanceOf(t, a.accountId)).availableBalanceCents, 1_000_000);
  });
});

describe('manual review (202): the amount is held on the source', () => {
  const cases: { name: string; amount: number; note?: string; reasons: string[] }[] = [
    {
      name: 'amount at the review threshold (250000) also crosses the fraud threshold',
      amount: 250_000,
      reasons: ['amount_above_review_threshold', 'amount_above_fraud_review_threshold'],
    },
    {
      name: 'amount above the review threshold',
      amount: 400_000,
      reasons: ['amount_above_review_threshold', 'amount_above_fraud_review_threshold'],
    },
    {
      name: 'amount at the fraud review threshold (175000)',
      amount: 175_000,
      reasons: ['amount_above_fraud_review_threshold'],
    },
    {
      name: 'amount just under the review threshold is still a fraud review',
      amount: 249_999,
      reasons: ['amount_above_fraud_review_threshold'],
    },
    {
      name: 'note "crypto mixer"',
      amount: 1_000,
      note: 'crypto mixer',
      reasons: ['suspicious_payment_note'],
    },
    {
      name: 'note "Money Mule" inside a sentence (case-insensitive)',
      amount: 1_000,
      note: 'Paying the Money Mule for Jane Roe',
      reasons: ['suspicious_payment_note'],
    },
    {
      name: 'note "CASH PICKUP" (case-insensitive)',
      amount: 1_000,
      note: 'CASH PICKUP tomorrow',
      reasons: ['suspicious_payment_note'],
    },
    {
      name: 'suspicious note and large amount together',
      amount: 300_000,
      note: 'crypto mixer',
      reasons: [
        'amount_above_review_threshold',
        'suspicious_payment_note',
        'amount_above_fraud_review_threshold',
      ],
    },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const a = await funded(1_000_000);
      const b = await funded(0);
      const body = usd(a, b, c.amount, c.note === undefined ? {} : { note: c.note });
      await expectDecision(a, b, body, 'manual_review', c.reasons);
      const src = await balanceOf(t, a.accountId);
      assert.equal(src.heldBalanceCents, c.amount);
      assert.equal(src.postedBalanceCents, 1_000_000);
      assert.equal(src.availableBalanceCents, 1_000_000 - c.amount);
    });
  }

  test('just under the fraud threshold (174999) posts', async () => {
    const a = await funded();
    const b = await funded();
    await expectDecision(a, b, usd(a, b, 174_999), 'posted', []);
  });

  test('a term written around the rule ("crypto-mixer", "cash pick up") is suspicious; a near miss is not', async () => {
    const a = await funded();
    const b = await funded();
    const held = ['suspicious_payment_note'];
    await expectDecision(a, b, usd(a, b, 100, { note: 'crypto-mixer' }), 'manual_review', held);
    await expectDecision(a, b, usd(a, b, 101, { note: 'cash pick up' }), 'manual_review', held);
    const c = await funded();
    await expectDecision(c, b, usd(c, b, 102, { note: 'crypto mixing desk' }), 'posted', []);
  });

  test('velocity: the 4th attempt from one source within 60 s is reviewed; the window then slides', async () => {
    const a = await funded();
    const [b, c, d] = [await funded(0), await funded(0), await funded(0)];
    // Different destinations and amounts, so only the velocity rule can fire.
    await expectDecision(a, b, usd(a, b, 101), 'posted', []);
    await expectDecision(a, c, usd(a, c, 102), 'posted', []);
    await expectDecision(a, d, usd(a, d, 103), 'posted', []);
    clock.advance(59_999); // the first three are still inside the window
    await expectDecision(a, b, usd(a, b, 104), 'manual_review', ['high_velocity_source_account']);
    // Another source is not affected by a's velocity.
    await expectDecision(b, a, usd(b, a, 50), 'posted', []);
    clock.advance(1); // now exactly 60 s after the first three: they leave the window; one attempt remains
    await expectDecision(a, c, usd(a, c, 105), 'posted', []);
    await expectDecision(a, d, usd(a, d, 106), 'posted', []);
    // Three earlier attempts (t0+59999 held, two just now) inside the window again: reviewed.
    await expectDecision(a, b, usd(a, b, 107), 'manual_review', ['high_velocity_source_account']);
    clock.advance(60_000);
    await expectDecision(a, b, usd(a, b, 108), 'posted', []);
  });

  test('declined attempts count towards velocity; 404s do not', async () => {
    const a = await funded(1_000);
    const b = await funded(0);
    const missing = await pay(t, { ...usd(a, b, 1), destinationAccountId: 'acc_missing00000000' });
    assert.equal(missing.status, 404);
    await expectDecision(a, b, usd(a, b, 5_000), 'declined', ['insufficient_funds']);
    await expectDecision(a, b, usd(a, b, 5_001), 'declined', ['insufficient_funds']);
    await expectDecision(a, b, usd(a, b, 10), 'posted', []);
    await expectDecision(a, b, usd(a, b, 11), 'manual_review', ['high_velocity_source_account']);
    clock.advance(60_000);
  });

  test('repeated pattern: same source, destination and amount within 60 s is reviewed', async () => {
    const a = await funded();
    const b = await funded(0);
    const c = await funded(0);
    await expectDecision(a, b, usd(a, b, 4_242), 'posted', []);
    // A different amount or destination is not a repeat.
    await expectDecision(a, c, usd(a, c, 4_242), 'posted', []);
    clock.advance(59_999);
    await expectDecision(a, b, usd(a, b, 4_242), 'manual_review', ['repeated_payment_pattern']);
    clock.advance(60_000); // both earlier a→b attempts left the window
    await expectDecision(a, b, usd(a, b, 4_242), 'posted', []);
    await expectDecision(a, b, usd(a, b, 4_243), 'posted', []);
    clock.advance(60_000);
  });

  test('funds on hold are not available: a later payment beyond the rest is declined', async () => {
    const a = await funded(200_000);
    const b = await funded(0);
    await expectDecision(a, b, usd(a, b, 180_000), 'manual_review', ['amount_above_fraud_review_threshold']);
    await expectDecision(a, b, usd(a, b, 20_001), 'declined', ['insufficient_funds']);
    await expectDecision(a, b, usd(a, b, 20_000), 'posted', []);
    const src = await balanceOf(t, a.accountId);
    assert.deepEqual(
      [src.postedBalanceCents, src.heldBalanceCents, src.availableBalanceCents],
      [180_000, 180_000, 0],
    );
  });
});

describe('declined (422): nothing moves', () => {
  test('kyc_not_verified: the sender is in manual review', async () => {
    const a = await funded();
    const b = await funded();
    await setKycStatus(t.db, a.customerId, 'manual_review');
    await expectDecision(a, b, usd(a, b, 1_000), 'declined', ['kyc_not_verified']);
  });

  test('kyc_not_verified: the sender is rejected', async () => {
    const a = await funded();
    const b = await funded();
    await setKycStatus(t.db, a.customerId, 'rejected');
    await expectDecision(a, b, usd(a, b, 1_000), 'declined', ['kyc_not_verified']);
  });

  test('a sender onboarded from KP starts in manual review: kyc_not_verified and high_risk_jurisdiction', async () => {
    const a = await funded(1_000_000, { country: 'KP' });
    assert.equal(a.customer.kycStatus, 'manual_review');
    const b = await funded();
    await expectDecision(a, b, usd(a, b, 1_000), 'declined', ['kyc_not_verified', 'high_risk_jurisdiction']);
  });

  test('high_risk_jurisdiction for the SENDER alone (verified, but in IR)', async () => {
    const a = await funded(1_000_000, { country: 'IR' });
    await setKycStatus(t.db, a.customerId, 'verified');
    const b = await funded();
    const p = await expectDecision(a, b, usd(a, b, 1_000), 'declined', ['high_risk_jurisdiction']);
    const rule = p.decision.rules.find((r: Json) => r.reason === 'high_risk_jurisdiction');
    assert.deepEqual(rule.observed, {
      senderHighRiskJurisdiction: true,
      receiverHighRiskJurisdiction: false,
    });
  });

  test('high_risk_jurisdiction for the RECEIVER alone (both-party screening)', async () => {
    const a = await funded();
    const b = await funded(0, { country: 'SY' });
    const p = await expectDecision(a, b, usd(a, b, 1_000), 'declined', ['high_risk_jurisdiction']);
    const rule = p.decision.rules.find((r: Json) => r.reason === 'high_risk_jurisdiction');
    assert.deepEqual(rule.observed, {
      senderHighRiskJurisdiction: false,
      receiverHighRiskJurisdiction: true,
    });
  });

  test('receiver_kyc_rejected', async () => {
    const a = await funded();
    const b = await funded();
    await setKycStatus(t.db, b.customerId, 'rejected');
    await expectDecision(a, b, usd(a, b, 1_000), 'declined', ['receiver_kyc_rejected']);
  });

  test('currency_mismatch: a USD payment to a EUR account', async () => {
    const a = await funded();
    const b = await funded(0, { currency: 'EUR' });
    await expectDecision(a, b, usd(a, b, 1_000), 'declined', ['currency_mismatch']);
  });

  test('currency_mismatch: a EUR payment between two USD accounts', async () => {
    const a = await funded();
    const b = await funded();
    await expectDecision(a, b, usd(a, b, 1_000, { currency: 'EUR' }), 'declined', ['currency_mismatch']);
  });

  test('currency_mismatch: a USD payment out of a EUR account', async () => {
    const a = await funded(1_000_000, { currency: 'EUR' });
    const b = await funded();
    await expectDecision(a, b, usd(a, b, 1_000), 'declined', ['currency_mismatch']);
  });

  test('insufficient_funds: one cent more than available', async () => {
    const a = await funded(1_000);
    const b = await funded(0);
    await expectDecision(a, b, usd(a, b, 1_001), 'declined', ['insufficient_funds']);
  });

  test('insufficient_funds from an empty account, and for the largest safe amount', async () => {
    const a = await funded(0);
    const b = await funded(0);
    await expectDecision(a, b, usd(a, b, 1), 'declined', ['insufficient_funds']);
    // The risk engine's KYC tier limit (a policy decline) is listed before the funds check.
    await expectDecision(a, b, usd(a, b, Number.MAX_SAFE_INTEGER), 'declined', [
      'kyc_limit_exceeded',
      'insufficient_funds',
      'amount_above_review_threshold',
      'amount_above_fraud_review_threshold',
    ]);
  });

  test('a decline outranks a review: insufficient funds on a large amount', async () => {
    const a = await funded(100_000);
    const b = await funded(0);
    await expectDecision(a, b, usd(a, b, 300_000), 'declined', [
      'insufficient_funds',
      'amount_above_review_threshold',
      'amount_above_fraud_review_threshold',
    ]);
  });

  test('a decline outranks a review: receiver in a high-risk country, suspicious note', async () => {
    const a = await funded();
    const b = await funded(0, { country: 'KP' });
    await expectDecision(a, b, usd(a, b, 1_000, { note: 'cash pickup' }), 'declined', [
      'high_risk_jurisdiction',
      'suspicious_payment_note',
    ]);
  });

  test('several declines together are each listed once', async () => {
    const a = await funded(10, { country: 'KP' });
    const b = await funded(0, { currency: 'EUR', country: 'IR' });
    await setKycStatus(t.db, b.customerId, 'rejected');
    await expectDecision(a, b, usd(a, b, 20), 'declined', [
      'kyc_not_verified',
      'receiver_kyc_rejected',
      'high_risk_jurisdiction',
      'currency_mismatch',
      'insufficient_funds',
    ]);
  });
});

describe('unknown accounts (404) are not stored under the key', () => {
  const cases = [
    { side: 'source', code: 'SOURCE_ACCOUNT_NOT_FOUND' },
    { side: 'destination', code: 'DESTINATION_ACCOUNT_NOT_FOUND' },
  ] as const;
  for (const c of cases) {
    test(`${c.code}`, async () => {
      const a = await funded();
      const b = await funded(0);
      const body = usd(a, b, 1_000);
      if (c.side === 'source') body.sourceAccountId = 'acc_doesnotexist0000000000';
      else body.destinationAccountId = 'acc_doesnotexist0000000000';
      const key = `missing-${c.side}-${Math.random()}`;
      const first = await pay(t, body, { key });
      assert.equal(first.status, 404);
      assert.equal(first.json.error.code, c.code);
      // Retrying the same request is evaluated again (still 404), not replayed from a stored record.
      const second = await pay(t, body, { key });
      assert.equal(second.status, 404);
      assert.equal(second.json.error.code, c.code);
      assert.notEqual(second.json.error.requestId, first.json.error.requestId);
      // The key is still free: a different (valid) body under it executes instead of answering 409.
      const valid = await pay(t, usd(a, b, 1_000), { key });
      assert.equal(valid.status, 201, valid.body);
      assert.equal(valid.headers['idempotency-replayed'], 'false');
      assert.equal((await balanceOf(t, b.accountId)).availableBalanceCents, 1_000);
    });
  }

  test('a system funding account is not a payable account (404)', async () => {
    const a = await funded();
    const res = await pay(t, { ...usd(a, a, 1), sourceAccountId: 'acc_system_funding_usd' });
    assert.equal(res.status, 404);
    assert.equal(res.json.error.code, 'SOURCE_ACCOUNT_NOT_FOUND');
    const res2 = await pay(t, { ...usd(a, a, 1), destinationAccountId: 'acc_system_funding_usd' });
    assert.equal(res2.status, 404);
    assert.equal(res2.json.error.code, 'DESTINATION_ACCOUNT_NOT_FOUND');
    assert.equal((await balanceOf(t, a.accountId)).availableBalanceCents, 1_000_000);
  });
});
