import assert from 'node:assert/strict';
import { test } from 'node:test';
import { requestFlow } from '../console/flow.js';

/**
 * The console's request-flow panel (console/flow.js) says what each of the eight steps decided for a payment,
 * from the payment alone. These are the cases where a plausible reading would be false.
 */
const base = {
  id: 'pay_1',
  status: 'posted',
  sourceAccountId: 'acc_a',
  destinationAccountId: 'acc_b',
  amountCents: 1000,
  currency: 'USD',
  reasons: [] as string[],
  refundedCents: 0,
  resolution: null,
};
const stepNamed = (steps: ReturnType<typeof requestFlow>, prefix: string) => {
  const step = steps.find((s) => s.name.startsWith(prefix));
  assert.ok(step, prefix);
  return step;
};

test('eight steps, in the workshop order, each naming its file', () => {
  const steps = requestFlow({
    payment: { ...base, decision: { outcome: 'posted', policyVersion: 'v', reasons: [] } },
    ledgerEntries: [],
  });
  assert.deepEqual(
    steps.map((s) => s.name.split(' ')[0]),
    ['Validate', 'Idempotency', 'Load', 'Compliance', 'Fraud', 'Funds', 'Decision', 'Audit'],
  );
  for (const step of steps) assert.match(step.file, /^src\//);
});

test('a payments key (summary decision): review reasons of a declined payment are flags, not declines', () => {
  const reasons = [
    'insufficient_funds',
    'amount_above_review_threshold',
    'amount_above_fraud_review_threshold',
  ];
  const steps = requestFlow({
    payment: {
      ...base,
      status: 'declined',
      reasons,
      decision: { outcome: 'declined', policyVersion: 'v', reasons },
    },
    ledgerEntries: [],
  });
  assert.equal(stepNamed(steps, 'Compliance').state, 'review');
  assert.equal(stepNamed(steps, 'Fraud').state, 'review');
  assert.equal(stepNamed(steps, 'Funds').state, 'declined');
  assert.equal(stepNamed(steps, 'Decision').state, 'declined');
});

test('a KYC decline that also tripped a review rule names each for what it did', () => {
  const rules = [
    { rule: 'sender_kyc', outcome: 'decline', reason: 'kyc_not_verified', observed: {} },
    { rule: 'aml_amount', outcome: 'review', reason: 'amount_above_review_threshold', observed: {} },
  ];
  const reasons = ['kyc_not_verified', 'amount_above_review_threshold'];
  const steps = requestFlow({
    payment: {
      ...base,
      status: 'declined',
      reasons,
      decision: { outcome: 'declined', policyVersion: 'v', reasons, rules, features: {} },
    },
    ledgerEntries: [],
  });
  assert.equal(
    stepNamed(steps, 'Compliance').text,
    'declined: kyc_not_verified; flagged for review: amount_above_review_threshold',
  );
});

test("a refunded payment: its posting's entries only, and the refunds named", () => {
  const entries = [
    { paymentId: 'pay_1', transactionId: 'ltx_pay', direction: 'debit' },
    { paymentId: 'pay_1', transactionId: 'ltx_pay', direction: 'credit' },
    { paymentId: 'pay_1', transactionId: 'ltx_ref', direction: 'debit' },
    { paymentId: 'pay_1', transactionId: 'ltx_ref', direction: 'credit' },
  ];
  const steps = requestFlow({
    payment: {
      ...base,
      refundedCents: 400,
      decision: { outcome: 'posted', policyVersion: 'v', reasons: [], rules: [] },
    },
    ledgerEntries: entries,
    refunds: [{ ledgerTransactionId: 'ltx_ref' }],
  });
  assert.match(
    stepNamed(steps, 'Decision').text,
    /2 ledger entries, debits equal credits; later 1 refund\(s\), 400/,
  );
});

test("a custom policy's rule that no step names is listed under the decision", () => {
  const rule = { rule: 'night_owl', outcome: 'review', reason: 'late_night_payment', observed: {} };
  const steps = requestFlow({
    payment: {
      ...base,
      status: 'manual_review',
      reasons: ['late_night_payment'],
      decision: {
        outcome: 'manual_review',
        policyVersion: 'v',
        reasons: ['late_night_payment'],
        rules: [rule],
        features: {},
      },
    },
    ledgerEntries: [],
  });
  assert.match(stepNamed(steps, 'Decision').text, /other rules: night_owl \(review: late_night_payment\)/);
  assert.equal(stepNamed(steps, 'Decision').state, 'review');
});
