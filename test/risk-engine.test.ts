import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadSanctionsList } from '../src/app/risk-config.ts';
import { DEFAULT_POLICY } from '../src/domain/default-policy.ts';
import { evaluatePolicy } from '../src/domain/policy.ts';
import { apiKey, type Json, type Party, party, pay } from './support/fixtures.ts';
import { manualClock, startTestApp, type TestApp, testEnv } from './support/harness.ts';

/**
 * The risk engine through the HTTP API: sanctions screening of both parties (exact, reordered, fuzzy above
 * and between the thresholds, below them), onboarding screening, KYC decisions and tier limits, structuring,
 * explainable decisions that replay from their recorded features, and the policy file.
 */
// The screening version: the canonicalisation version and the sample list with its aliases (sanctions.ts).
const SAMPLE_LIST_SHA256 = loadSanctionsList(null).sha256;
const MINUTE_MS = 61_000;

let t: TestApp;
const clock = manualClock();
let compliance: { token: string; id: string };

before(async () => {
  t = await startTestApp({ clock: clock.now });
  compliance = await apiKey(t, 'compliance');
});
after(async () => {
  await t.destroy();
});

const usd = (from: Party, to: Party, amountCents: number) => ({
  sourceAccountId: from.accountId,
  destinationAccountId: to.accountId,
  amountCents,
  currency: 'USD',
});

async function kyc(customerId: string, body: Json) {
  return t.request('POST', `/v1/customers/${customerId}/kyc`, { body, token: compliance.token });
}

/** Pays, then moves the clock past the one-minute velocity and pattern windows. */
async function payLater(body: Json) {
  const res = await pay(t, body);
  clock.advance(MINUTE_MS);
  return res;
}

describe('sanctions screening', () => {
  test('a customer created with a listed name starts in manual_review; a clean one is verified', async () => {
    const listed = await party(t, { name: 'Sidorenko, Ivan' });
    assert.equal(listed.customer.kycStatus, 'manual_review');
    const clean = await party(t, { name: 'Alice Carter' });
    assert.equal(clean.customer.kycStatus, 'verified');
  });

  const receiverCases: [string, string, string, string[]][] = [
    ['exact', 'Ivan Sidorenko', 'declined', ['sanctions_match']],
    ['"LAST, First" order', 'Sidorenko, Ivan', 'declined', ['sanctions_match']],
    ['fuzzy, at or above 0.95', 'Ivan Sidorenco', 'declined', ['sanctions_match']],
    ['fuzzy, between 0.85 and 0.95', 'Ivon Sidarenka', 'manual_review', ['possible_sanctions_match']],
    ['below 0.85', 'Ivan', 'posted', []],
  ];
  for (const [label, name, status, reasons] of receiverCases) {
    test(`receiver side, ${label}: ${name} → ${status}`, async () => {
      const sender = await party(t, { balance: 100_000 });
      const receiver = await party(t, { name });
      const res = await payLater(usd(sender, receiver, 1_000));
      assert.equal(res.json.payment.status, status, res.body);
      assert.deepEqual(res.json.payment.reasons, reasons);
      const screening = res.json.payment.decision.sanctions;
      assert.equal(screening.listSha256, SAMPLE_LIST_SHA256, 'the decision records which list it used');
      if (status !== 'posted') {
        assert.equal(screening.receiver.entryId, '1001', 'the matched entry is recorded');
        assert.ok(screening.receiver.scoreBp >= 8500);
      }
      assert.equal(screening.sender.scoreBp < 8500, true);
    });
  }

  test('sender side: a listed sender cleared by compliance is still declined at payment time', async () => {
    const sender = await party(t, { name: 'Sidorenko, Ivan', balance: 100_000 });
    const cleared = await kyc(sender.customerId, { kycStatus: 'verified', note: 'documents checked' });
    assert.equal(cleared.status, 200, cleared.body);
    const receiver = await party(t);
    const res = await payLater(usd(sender, receiver, 1_000));
    assert.equal(res.status, 422);
    assert.deepEqual(res.json.payment.reasons, ['sanctions_match']);
    assert.equal(res.json.payment.decision.sanctions.sender.entryId, '1001');
  });
});

describe('KYC decisions and tier limits', () => {
  test('compliance changes status and tier; audited with the actor; bad input is a 4xx', async () => {
    const p = await party(t);
    const res = await kyc(p.customerId, {
      kycStatus: 'manual_review',
      kycTier: 'basic',
      note: 'Adverse media hit',
    });
    assert.equal(res.status, 200, res.body);
    assert.equal(res.json.customer.kycStatus, 'manual_review');
    assert.equal(res.json.customer.kycTier, 'basic');
    const logs = await t.request('GET', '/v1/audit-logs?limit=500');
    const entry = logs.json.logs.findLast((e: Json) => e.eventType === 'customer.kyc_updated');
    assert.equal(entry.actorId, compliance.id);
    assert.equal(entry.metadata.kycTierTo, 'basic');
    assert.ok(!JSON.stringify(entry).includes('Adverse media'), 'the note stays out of the audit log');
    assert.equal((await kyc(p.customerId, { kycStatus: 'verified', kycTier: 'gold' })).status, 400);
    assert.equal((await kyc(p.customerId, { kycStatus: 'approved' })).status, 400);
    assert.equal((await kyc('cus_doesnotexist', { kycStatus: 'verified' })).status, 404);
    const payments = await apiKey(t, 'payments');
    const forbidden = await t.request('POST', `/v1/customers/${p.customerId}/kyc`, {
      body: { kycStatus: 'verified' },
      token: payments.token,
    });
    assert.equal(forbidden.status, 403);
  });

  test('the same amount is over the basic tier limit but within standard and enhanced', async () => {
    const receiver = await party(t);
    const outcomes: Record<string, string> = {};
    for (const tier of ['basic', 'standard', 'enhanced']) {
      const sender = await party(t, { balance: 10_000_000 });
      assert.equal((await kyc(sender.customerId, { kycStatus: 'verified', kycTier: tier })).status, 200);
      outcomes[tier] = (await payLater(usd(sender, receiver, 150_000))).json.payment.status;
    }
    assert.deepEqual(outcomes, { basic: 'declined', standard: 'posted', enhanced: 'posted' });
  });

  test('per-payment, daily and monthly limits of the basic tier', async () => {
    const sender = await party(t, { balance: 10_000_000 });
    const receiver = await party(t);
    assert.equal((await kyc(sender.customerId, { kycStatus: 'verified', kycTier: 'basic' })).status, 200);
    // Per payment: 100,000 cents.
    assert.equal(
      (await payLater(usd(sender, receiver, 100_001))).json.payment.reasons[0],
      'kyc_limit_exceeded',
    );
    assert.equal((await payLater(usd(sender, receiver, 100_000))).json.payment.status, 'posted');
    // Daily: 250,000 cents over 24 hours (the declined attempt above does not count).
    assert.equal((await payLater(usd(sender, receiver, 100_000))).json.payment.status, 'posted');
    const overDaily = await payLater(usd(sender, receiver, 60_000));
    assert.equal(overDaily.json.payment.status, 'declined');
    assert.equal(overDaily.json.payment.decision.features.kycDailyLimitExceeded, true);
    clock.advance(24 * 3_600_000);
    assert.equal((await payLater(usd(sender, receiver, 60_000))).json.payment.status, 'posted');
    // Monthly: 1,000,000 cents over 30 days.
    for (let day = 0; day < 7; day++) {
      clock.advance(24 * 3_600_000);
      assert.equal((await payLater(usd(sender, receiver, 100_000))).json.payment.status, 'posted');
    }
    clock.advance(24 * 3_600_000);
    const overMonthly = await payLater(usd(sender, receiver, 100_000));
    assert.equal(overMonthly.json.payment.status, 'declined', overMonthly.body);
    assert.equal(overMonthly.json.payment.decision.features.kycMonthlyLimitExceeded, true);
  });
});

test('structuring: the third payment within 24 h just under the threshold is reviewed', async () => {
  const sender = await party(t, { balance: 10_000_000 });
  const receivers = [await party(t), await party(t), await party(t)];
  const reasons: string[][] = [];
  for (const receiver of receivers) {
    const res = await payLater(usd(sender, receiver, 230_000));
    reasons.push(res.json.payment.reasons);
  }
  assert.ok(!reasons[0]!.includes('structuring_suspected'));
  assert.ok(!reasons[1]!.includes('structuring_suspected'));
  assert.ok(reasons[2]!.includes('structuring_suspected'), JSON.stringify(reasons));
  const outside = await payLater(usd(sender, receivers[0]!, 100_000));
  assert.ok(!outside.json.payment.reasons.includes('structuring_suspected'));
});

test('decisions are explainable and replay identically from their recorded features', async () => {
  const sender = await party(t, { balance: 1_000_000 });
  const receiver = await party(t);
  const res = await payLater({ ...usd(sender, receiver, 260_000), note: 'cash pickup tomorrow' });
  const { decision } = (await t.request('GET', `/v1/payments/${res.json.payment.id}`)).json.payment;
  assert.equal(decision.policyVersion, DEFAULT_POLICY.version);
  assert.ok(decision.score > 0 && decision.score <= 100);
  for (const rule of decision.rules) {
    assert.ok(rule.rule && rule.reason && rule.outcome && rule.observed, 'every fired rule explains itself');
  }
  const replayed = evaluatePolicy(DEFAULT_POLICY, decision.features);
  assert.equal(replayed.outcome, decision.outcome);
  assert.deepEqual(replayed.reasons, decision.reasons);
  assert.deepEqual(replayed.rules, decision.rules);
  assert.equal(replayed.score, decision.score);
  const text = JSON.stringify(decision);
  assert.ok(!text.includes(sender.customer.name) && !text.includes(receiver.customer.name), 'no names');
});

describe('the policy file', () => {
  test('a custom policy replaces the default, and its version is recorded', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'policy-'));
    const path = join(dir, 'policy.json');
    const custom = {
      ...DEFAULT_POLICY,
      version: 'custom-2026-11',
      rules: [
        ...DEFAULT_POLICY.rules,
        {
          id: 'new_payee',
          outcome: 'review',
          reason: 'new_beneficiary_large',
          all: [
            { feature: 'newBeneficiary', op: '==', value: true },
            { feature: 'amountCents', op: '>=', value: 50_000 },
          ],
        },
      ],
    };
    writeFileSync(path, JSON.stringify(custom));
    const app = await startTestApp({ env: { RISK_POLICY_PATH: path } });
    try {
      const sender = await party(app, { balance: 1_000_000 });
      const receiver = await party(app);
      const first = await pay(app, usd(sender, receiver, 50_000));
      assert.equal(first.json.payment.decision.policyVersion, 'custom-2026-11');
      assert.deepEqual(first.json.payment.reasons, ['new_beneficiary_large']);
    } finally {
      await app.destroy();
    }
  });

  test('a bad policy file stops start-up with one line naming RISK_POLICY_PATH', () => {
    const dir = mkdtempSync(join(tmpdir(), 'policy-'));
    const cases: [string, string][] = [
      ['not json', '{oops'],
      ['schema', JSON.stringify({ ...DEFAULT_POLICY, rules: [{ id: 'x', outcome: 'block', reason: 'y' }] })],
      ['unknown tier', JSON.stringify({ ...DEFAULT_POLICY, defaultKycTier: 'gold' })],
    ];
    for (const [label, content] of cases) {
      const path = join(dir, `${label.replace(/\s/g, '-')}.json`);
      writeFileSync(path, content);
      const run = spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
        env: {
          ...process.env,
          ...testEnv(`sqlite:${join(dir, `${label}.db`)}`),
          RISK_POLICY_PATH: path,
          PORT: '0',
        },
        encoding: 'utf8',
        timeout: 60_000,
      });
      assert.notEqual(run.status, 0, label);
      const lines = run.stderr.trim().split('\n');
      assert.equal(lines.length, 1, `${label}: ${run.stderr}`);
      assert.match(lines[0]!, /^Configuration error: RISK_POLICY_PATH: /, label);
    }
  });
});
