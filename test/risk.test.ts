import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  COMPLIANCE_RULES,
  decide,
  evaluate,
  FRAUD_RULES,
  FUNDS_RULES,
  type RiskContext,
  type RiskPolicy,
  SEED_POLICY,
} from '../src/domain/risk.ts';

/**
 * The risk rules as pure functions: one context in, one decision out. Each rule is tested at its boundary
 * (the seed's thresholds are inclusive), the decision's precedence (a decline outranks a review; declines are
 * listed first, each reason once), and that thresholds come from the policy, not from the code.
 */
const BASE: RiskContext = {
  amountCents: 10_000,
  currency: 'USD',
  note: null,
  sender: { kycStatus: 'verified', country: 'US' },
  receiver: { kycStatus: 'verified', country: 'US' },
  sourceCurrency: 'USD',
  destinationCurrency: 'USD',
  sourceAvailableCents: 1_000_000,
  earlierAttemptsFromSource: 0,
  earlierSamePattern: 0,
};

function decideFor(ctx: RiskContext, policy: RiskPolicy = SEED_POLICY) {
  const hits = [
    ...evaluate(COMPLIANCE_RULES, ctx, policy),
    ...evaluate(FRAUD_RULES, ctx, policy),
    ...evaluate(FUNDS_RULES, ctx, policy),
  ];
  return decide(hits, policy);
}

const CASES: { name: string; change: Partial<RiskContext>; outcome: string; reasons: string[] }[] = [
  { name: 'a clean payment posts', change: {}, outcome: 'posted', reasons: [] },
  // KYC
  {
    name: 'sender in manual review',
    change: { sender: { kycStatus: 'manual_review', country: 'US' } },
    outcome: 'declined',
    reasons: ['kyc_not_verified'],
  },
  {
    name: 'sender rejected',
    change: { sender: { kycStatus: 'rejected', country: 'US' } },
    outcome: 'declined',
    reasons: ['kyc_not_verified'],
  },
  {
    name: 'receiver rejected',
    change: { receiver: { kycStatus: 'rejected', country: 'US' } },
    outcome: 'declined',
    reasons: ['receiver_kyc_rejected'],
  },
  {
    name: 'receiver in manual review is allowed',
    change: { receiver: { kycStatus: 'manual_review', country: 'US' } },
    outcome: 'posted',
    reasons: [],
  },
  // AML jurisdictions, both parties
  ...['KP', 'IR', 'SY'].flatMap((country) => [
    {
      name: `sender in ${country}`,
      change: { sender: { kycStatus: 'verified' as const, country } },
      outcome: 'declined',
      reasons: ['high_risk_jurisdiction'],
    },
    {
      name: `receiver in ${country}`,
      change: { receiver: { kycStatus: 'verified' as const, country } },
      outcome: 'declined',
      reasons: ['high_risk_jurisdiction'],
    },
  ]),
  {
    name: 'country codes are exact (lower case kp is not KP)',
    change: { sender: { kycStatus: 'verified', country: 'kp' } },
    outcome: 'posted',
    reasons: [],
  },
  // AML amount and note
  { name: 'amount 174999', change: { amountCents: 174_999 }, outcome: 'posted', reasons: [] },
  {
    name: 'amount 175000 (fraud threshold, inclusive)',
    change: { amountCents: 175_000 },
    outcome: 'manual_review',
    reasons: ['amount_above_fraud_review_threshold'],
  },
  {
    name: 'amount 249999',
    change: { amountCents: 249_999 },
    outcome: 'manual_review',
    reasons: ['amount_above_fraud_review_threshold'],
  },
  {
    name: 'amount 250000 (review threshold, inclusive)',
    change: { amountCents: 250_000 },
    outcome: 'manual_review',
    reasons: ['amount_above_review_threshold', 'amount_above_fraud_review_threshold'],
  },
  ...[
    'crypto mixer',
    'money mule',
    'cash pickup',
    'CRYPTO MIXER',
    'Send via Money Mule ltd',
    'xcash pickupx',
  ].map((note) => ({
    name: `note ${JSON.stringify(note)}`,
    change: { note },
    outcome: 'manual_review',
    reasons: ['suspicious_payment_note'],
  })),
  ...['crypto', 'mixer', 'cash  pickup', 'money-mule', ''].map((note) => ({
    name: `harmless note ${JSON.stringify(note)}`,
    change: { note },
    outcome: 'posted',
    reasons: [],
  })),
  // Fraud counters
  { name: '2 earlier attempts', change: { earlierAttemptsFromSource: 2 }, outcome: 'posted', reasons: [] },
  {
    name: '3 earlier attempts (the 4th is reviewed)',
    change: { earlierAttemptsFromSource: 3 },
    outcome: 'manual_review',
    reasons: ['high_velocity_source_account'],
  },
  {
    name: 'one earlier identical payment',
    change: { earlierSamePattern: 1 },
    outcome: 'manual_review',
    reasons: ['repeated_payment_pattern'],
  },
  // Funds and currency
  {
    name: 'payment currency differs from both accounts',
    change: { currency: 'EUR' },
    outcome: 'declined',
    reasons: ['currency_mismatch'],
  },
  {
    name: 'destination account in another currency',
    change: { destinationCurrency: 'EUR' },
    outcome: 'declined',
    reasons: ['currency_mismatch'],
  },
  {
    name: 'source account in another currency: mismatch only (its balance is in another unit)',
    change: { sourceCurrency: 'EUR', sourceAvailableCents: 0 },
    outcome: 'declined',
    reasons: ['currency_mismatch'],
  },
  {
    name: 'exactly the available balance',
    change: { amountCents: 5_000, sourceAvailableCents: 5_000 },
    outcome: 'posted',
    reasons: [],
  },
  {
    name: 'one cent more than available',
    change: { amountCents: 5_001, sourceAvailableCents: 5_000 },
    outcome: 'declined',
    reasons: ['insufficient_funds'],
  },
  // Precedence
  {
    name: 'a decline outranks every review, and declines are listed first',
    change: {
      amountCents: 300_000,
      sourceAvailableCents: 1,
      note: 'cash pickup',
      earlierAttemptsFromSource: 10,
      earlierSamePattern: 2,
    },
    outcome: 'declined',
    reasons: [
      'insufficient_funds',
      'amount_above_review_threshold',
      'suspicious_payment_note',
      'high_velocity_source_account',
      'repeated_payment_pattern',
      'amount_above_fraud_review_threshold',
    ],
  },
  {
    name: 'every decline at once',
    change: {
      sender: { kycStatus: 'rejected', country: 'IR' },
      receiver: { kycStatus: 'rejected', country: 'SY' },
      destinationCurrency: 'GBP',
      sourceAvailableCents: 0,
    },
    outcome: 'declined',
    reasons: [
      'kyc_not_verified',
      'receiver_kyc_rejected',
      'high_risk_jurisdiction',
      'currency_mismatch',
      'insufficient_funds',
    ],
  },
];

describe('rules at their boundaries', () => {
  for (const c of CASES) {
    test(c.name, () => {
      const decision = decideFor({ ...BASE, ...c.change });
      assert.equal(decision.outcome, c.outcome);
      assert.deepEqual(decision.reasons, c.reasons);
      assert.equal(decision.policyVersion, SEED_POLICY.version);
      // The recorded rule hits explain exactly the reasons given.
      assert.deepEqual(new Set(decision.rules.map((r) => r.reason)), new Set(c.reasons));
    });
  }
});

describe('decide', () => {
  test('no hits: posted with no reasons and no rules', () => {
    assert.deepEqual(decide([], SEED_POLICY), {
      outcome: 'posted',
      policyVersion: SEED_POLICY.version,
      reasons: [],
      rules: [],
    });
  });

  test('a reason hit by two rules is listed once; the rules keep both hits', () => {
    const hit = (outcome: 'decline' | 'review', reason: string) => ({
      rule: reason,
      outcome,
      reason,
      observed: {},
    });
    const d = decide(
      [hit('review', 'x'), hit('decline', 'y'), hit('review', 'x'), hit('decline', 'y')],
      SEED_POLICY,
    );
    assert.equal(d.outcome, 'declined');
    assert.deepEqual(d.reasons, ['y', 'x']);
    assert.equal(d.rules.length, 4);
  });

  test('jurisdiction hits say which party is high-risk', () => {
    const d = decideFor({ ...BASE, receiver: { kycStatus: 'verified', country: 'KP' } });
    assert.deepEqual(d.rules[0]!.observed, { senderHighRisk: false, receiverHighRisk: true });
  });

  test('observed values never carry a note or a name, only counts and flags', () => {
    const d = decideFor({ ...BASE, note: 'crypto mixer for John Smith', amountCents: 300_000 });
    assert.ok(!JSON.stringify(d).includes('John Smith'));
  });
});

describe('the policy is configuration', () => {
  const custom: RiskPolicy = {
    ...SEED_POLICY,
    version: 'test-policy-1',
    highRiskCountries: ['XX'],
    reviewThresholdCents: 1_000,
    fraudReviewThresholdCents: 500,
    suspiciousNoteTerms: ['Gift Cards'],
    velocityEarlierAttemptsMax: 1,
  };

  test('thresholds, countries and the version come from the policy', () => {
    assert.deepEqual(decideFor({ ...BASE, amountCents: 499 }, custom).reasons, []);
    assert.deepEqual(decideFor({ ...BASE, amountCents: 500 }, custom).reasons, [
      'amount_above_fraud_review_threshold',
    ]);
    assert.deepEqual(decideFor({ ...BASE, amountCents: 1_000 }, custom).reasons, [
      'amount_above_review_threshold',
      'amount_above_fraud_review_threshold',
    ]);
    assert.deepEqual(decideFor({ ...BASE, amountCents: 1, earlierAttemptsFromSource: 1 }, custom).reasons, [
      'high_velocity_source_account',
    ]);
    const kp = decideFor(
      { ...BASE, amountCents: 1, sender: { kycStatus: 'verified', country: 'KP' } },
      custom,
    );
    assert.equal(kp.outcome, 'posted');
    const xx = decideFor(
      { ...BASE, amountCents: 1, receiver: { kycStatus: 'verified', country: 'XX' } },
      custom,
    );
    assert.deepEqual(xx.reasons, ['high_risk_jurisdiction']);
    assert.equal(xx.policyVersion, 'test-policy-1');
  });

  test('a configured note term matches case-insensitively, whatever case it is configured in', () => {
    assert.deepEqual(decideFor({ ...BASE, amountCents: 1, note: 'buy gift cards now' }, custom).reasons, [
      'suspicious_payment_note',
    ]);
  });
});

describe('properties over random contexts', () => {
  const DECLINES = new Set([
    'kyc_not_verified',
    'receiver_kyc_rejected',
    'high_risk_jurisdiction',
    'currency_mismatch',
    'insufficient_funds',
  ]);
  const party = fc.record({
    kycStatus: fc.constantFrom('verified', 'manual_review', 'rejected' as const),
    country: fc.constantFrom('US', 'DE', 'KP', 'IR', 'SY', 'GB'),
  });
  const ctxArb: fc.Arbitrary<RiskContext> = fc.record({
    amountCents: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    currency: fc.constantFrom('USD', 'EUR'),
    note: fc.option(fc.oneof(fc.string(), fc.constantFrom('crypto mixer', 'Money Mule', 'CASH PICKUP'))),
    sender: party,
    receiver: party,
    sourceCurrency: fc.constantFrom('USD', 'EUR'),
    destinationCurrency: fc.constantFrom('USD', 'EUR'),
    sourceAvailableCents: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
    earlierAttemptsFromSource: fc.nat({ max: 10 }),
    earlierSamePattern: fc.nat({ max: 3 }),
  });

  test('outcome follows from the hits: declined iff a decline, review iff only reviews, posted iff none', () => {
    fc.assert(
      fc.property(ctxArb, (ctx) => {
        const d = decideFor(ctx);
        const declines = d.reasons.filter((r) => DECLINES.has(r));
        assert.equal(new Set(d.reasons).size, d.reasons.length, 'each reason once');
        if (declines.length > 0) assert.equal(d.outcome, 'declined');
        else if (d.reasons.length > 0) assert.equal(d.outcome, 'manual_review');
        else assert.equal(d.outcome, 'posted');
        // Declines come first.
        assert.deepEqual(d.reasons.slice(0, declines.length), declines);
        // Deterministic: the same context gives the same decision.
        assert.deepEqual(decideFor(structuredClone(ctx)), d);
        // A posted payment is always affordable, in the accounts' currency, between eligible parties.
        if (d.outcome === 'posted') {
          assert.ok(ctx.amountCents <= ctx.sourceAvailableCents);
          assert.ok(ctx.currency === ctx.sourceCurrency && ctx.currency === ctx.destinationCurrency);
          assert.equal(ctx.sender.kycStatus, 'verified');
          assert.ok(ctx.amountCents < SEED_POLICY.fraudReviewThresholdCents);
        }
      }),
      { numRuns: 2_000 },
    );
  });
});
