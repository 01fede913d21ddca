import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { DEFAULT_POLICY } from './default-policy.ts';
import { type CounterSnapshot, computeFeatures, EMPTY_COUNTERS, type FeatureInput } from './features.ts';
import { evaluatePolicy, parsePolicy } from './policy.ts';

const quiet: CounterSnapshot = EMPTY_COUNTERS;
const base: FeatureInput = {
  amountCents: 1000,
  note: null,
  sender: { kycStatus: 'verified', country: 'US', kycTier: 'standard', sanctionsScoreBp: 0 },
  receiver: { kycStatus: 'verified', country: 'US', sanctionsScoreBp: 0 },
  counters: quiet,
};
const decide = (input: FeatureInput) =>
  evaluatePolicy(DEFAULT_POLICY, computeFeatures(input, DEFAULT_POLICY));

test('the default policy reproduces the seed outcomes', () => {
  const cases: [string, FeatureInput, string, string[]][] = [
    ['plain', base, 'posted', []],
    [
      'review threshold',
      { ...base, amountCents: 250_000 },
      'manual_review',
      ['amount_above_review_threshold', 'amount_above_fraud_review_threshold'],
    ],
    [
      'fraud threshold',
      { ...base, amountCents: 175_000 },
      'manual_review',
      ['amount_above_fraud_review_threshold'],
    ],
    ['note', { ...base, note: 'for the Cash Pickup' }, 'manual_review', ['suspicious_payment_note']],
    [
      'velocity',
      {
        ...base,
        counters: { ...quiet, sourceAttempts: { ...quiet.sourceAttempts, m1: { count: 3, sumCents: 3 } } },
      },
      'manual_review',
      ['high_velocity_source_account'],
    ],
    [
      'pattern',
      { ...base, counters: { ...quiet, samePattern1m: 1 } },
      'manual_review',
      ['repeated_payment_pattern'],
    ],
    [
      'kyc',
      { ...base, sender: { ...base.sender, kycStatus: 'manual_review' } },
      'declined',
      ['kyc_not_verified'],
    ],
    [
      'receiver jurisdiction',
      { ...base, receiver: { ...base.receiver, country: 'IR' } },
      'declined',
      ['high_risk_jurisdiction'],
    ],
    [
      'decline outranks review',
      { ...base, amountCents: 300_000, sender: { ...base.sender, country: 'KP' } },
      'declined',
      ['high_risk_jurisdiction', 'amount_above_review_threshold', 'amount_above_fraud_review_threshold'],
    ],
  ];
  for (const [name, input, outcome, reasons] of cases) {
    const result = decide(input);
    assert.equal(result.outcome, outcome, name);
    assert.deepEqual(result.reasons, reasons, name);
  }
});

test('sanctions, KYC tier limits and structuring', () => {
  assert.deepEqual(decide({ ...base, receiver: { ...base.receiver, sanctionsScoreBp: 9700 } }).reasons, [
    'sanctions_match',
  ]);
  assert.deepEqual(decide({ ...base, sender: { ...base.sender, sanctionsScoreBp: 9000 } }).reasons, [
    'possible_sanctions_match',
  ]);
  assert.equal(decide({ ...base, sender: { ...base.sender, sanctionsScoreBp: 8400 } }).outcome, 'posted');
  const basic = { ...base, sender: { ...base.sender, kycTier: 'basic' } };
  assert.deepEqual(decide({ ...basic, amountCents: 100_001 }).reasons, ['kyc_limit_exceeded']);
  assert.equal(decide({ ...basic, amountCents: 100_000 }).outcome, 'posted');
  const spentToday = {
    ...quiet,
    senderOutgoing: { h24: { count: 3, sumCents: 200_000 }, d30: { count: 3, sumCents: 200_000 } },
  };
  assert.deepEqual(decide({ ...basic, amountCents: 60_000, counters: spentToday }).reasons, [
    'kyc_limit_exceeded',
  ]);
  const twoNear = { ...quiet, nearThreshold24h: 2 };
  assert.deepEqual(decide({ ...base, amountCents: 240_000, counters: twoNear }).reasons, [
    'amount_above_fraud_review_threshold',
    'structuring_suspected',
  ]);
  assert.equal(decide({ ...base, amountCents: 100_000, counters: twoNear }).outcome, 'posted');
});

test('a decision replays identically from its recorded features', () => {
  const features = computeFeatures({ ...base, amountCents: 250_000, note: 'money mule' }, DEFAULT_POLICY);
  const first = evaluatePolicy(DEFAULT_POLICY, features);
  const replayed = evaluatePolicy(DEFAULT_POLICY, JSON.parse(JSON.stringify(features)));
  assert.deepEqual(replayed, first);
  assert.ok(first.score > 0 && first.score <= 100);
});

test('policy files are validated with clear errors', () => {
  assert.throws(() => parsePolicy({}, 'x.json'), /risk policy x.json is invalid: .*version/);
  assert.throws(
    () => parsePolicy({ ...DEFAULT_POLICY, defaultKycTier: 'gold' }, 'x.json'),
    /defaultKycTier "gold"/,
  );
  const twice = { ...DEFAULT_POLICY, rules: [...DEFAULT_POLICY.rules, DEFAULT_POLICY.rules[0]!] };
  assert.throws(() => parsePolicy(twice, 'x.json'), /used twice/);
  const bad = { ...DEFAULT_POLICY, rules: [{ id: 'r', outcome: 'block', reason: 'x', all: [] }] };
  assert.throws(() => parsePolicy(bad, 'x.json'), /invalid/);
  assert.deepEqual(parsePolicy(JSON.parse(JSON.stringify(DEFAULT_POLICY)), 'copy'), DEFAULT_POLICY);
});

test('the shipped example policy file is the built-in default', () => {
  const file = JSON.parse(readFileSync('config/risk-policy.example.json', 'utf8'));
  assert.deepEqual(parsePolicy(file, 'config/risk-policy.example.json'), DEFAULT_POLICY);
});
