import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { sweepOnce } from '../src/app/maintenance.ts';
import { KYC_CASCADE_CHUNK_MAX } from '../src/app/review.ts';
import { SAMPLE_SANCTIONS_LIST } from '../src/app/risk-config.ts';
import {
  apiKey,
  assertBooksValid,
  auditLogs,
  balanceOf,
  type Client,
  type Json,
  listAll,
  type Party,
  party,
  pay,
} from './support/fixtures.ts';
import { createTestDatabase, manualClock, startTestApp, type TestApp } from './support/harness.ts';

/**
 * Approval re-checks what can change while a payment waits in review (issue 12): both parties' KYC status,
 * their sanctions screening against the list loaded now, jurisdictions and the accounts, replayed against the
 * current policy; a payment that would now be declined is refused (409 PAYMENT_NO_LONGER_APPROVABLE) and
 * nothing moves. A sender's KYC set to rejected declines its held payments, releasing their holds, in the
 * KYC decision's transaction. Amounts of 250,000 cents go to review by the seed's rule.
 */
const REVIEW_AMOUNT = 250_000;
const FUNDS = 1_000_000;

let t: TestApp;
let compliance: { token: string; id: string };
let auditor: { token: string; id: string };
const clock = manualClock();

before(async () => {
  t = await startTestApp({ clock: clock.now });
  compliance = await apiKey(t, 'compliance');
  auditor = await apiKey(t, 'auditor');
});

after(async () => {
  await t.destroy();
});

async function hold(c: Client, sender: Party, receiver: Party, amountCents = REVIEW_AMOUNT): Promise<Json> {
  const res = await pay(c, {
    sourceAccountId: sender.accountId,
    destinationAccountId: receiver.accountId,
    amountCents,
    currency: 'USD',
  });
  assert.equal(res.status, 202, res.body);
  assert.equal(res.json.payment.status, 'manual_review');
  return res.json.payment;
}

async function setKyc(c: Client, token: string, customerId: string, kycStatus: string): Promise<Json> {
  const res = await c.request('POST', `/v1/customers/${customerId}/kyc`, {
    token,
    body: { kycStatus, note: 'Documents re-examined by the compliance desk' },
  });
  assert.equal(res.status, 200, res.body);
  assert.equal(res.json.customer.kycStatus, kycStatus);
  return res.json.customer;
}

const approve = (c: Client, token: string, id: string) =>
  c.request('POST', `/v1/payments/${id}/approve`, { token, body: {} });

async function paymentOf(c: Client, id: string): Promise<Json> {
  const res = await c.request('GET', `/v1/payments/${id}`);
  assert.equal(res.status, 200, res.body);
  return res.json.payment;
}

const balances = async (c: Client, ...parties: Party[]) =>
  Promise.all(parties.map((p) => balanceOf(c, p.accountId)));

/** A refused approval: 409 with exactly these reason codes, the payment still in review, nothing moved. */
async function assertRefused(
  c: Client,
  token: string,
  payment: Json,
  reasons: string[],
  parties: Party[],
): Promise<void> {
  const before = await balances(c, ...parties);
  const res = await approve(c, token, payment.id);
  assert.equal(res.status, 409, res.body);
  assert.equal(res.json.error.code, 'PAYMENT_NO_LONGER_APPROVABLE');
  assert.deepEqual(
    res.json.error.details,
    reasons.map((message) => ({ field: 'reasons', message })),
  );
  assert.equal((await paymentOf(c, payment.id)).status, 'manual_review', 'it stays in review');
  assert.deepEqual(await balances(c, ...parties), before, 'nothing moves: the hold stays');
}

test('sender KYC rejected: its held payments are declined, holds released, audited and evented', async () => {
  const sender = await party(t, { balance: FUNDS });
  const receiver = await party(t);
  const bystander = await party(t, { balance: FUNDS });
  const posted = await pay(t, {
    sourceAccountId: sender.accountId,
    destinationAccountId: receiver.accountId,
    amountCents: 100,
    currency: 'USD',
  });
  assert.equal(posted.status, 201, posted.body);
  const held = [
    await hold(t, sender, receiver),
    await hold(t, sender, receiver),
    await hold(t, sender, receiver),
  ];
  const untouched = await hold(t, bystander, receiver);
  const heldBalance = await balanceOf(t, sender.accountId);
  assert.equal(heldBalance.heldBalanceCents, 3 * REVIEW_AMOUNT);

  await setKyc(t, compliance.token, sender.customerId, 'rejected');

  for (const payment of held) {
    const stored = await paymentOf(t, payment.id);
    assert.equal(stored.status, 'declined');
    assert.equal(stored.resolution.outcome, 'kyc_rejected');
    assert.equal(stored.resolution.resolvedBy, compliance.id);
    assert.equal(stored.resolution.noteProvided, false, 'the KYC note is not the payment note');
  }
  const source = await balanceOf(t, sender.accountId);
  assert.deepEqual(
    [source.postedBalanceCents, source.heldBalanceCents, source.availableBalanceCents],
    [FUNDS - 100, 0, FUNDS - 100],
    'every hold is released; the posted payment stands',
  );
  assert.equal((await balanceOf(t, receiver.accountId)).postedBalanceCents, 100);
  assert.equal((await paymentOf(t, posted.json.payment.id)).status, 'posted');
  assert.equal((await paymentOf(t, untouched.id)).status, 'manual_review', "another sender's hold stays");

  const audit = await auditLogs(t);
  for (const payment of held) {
    const rejected = audit.filter(
      (e: Json) => e.resourceId === payment.id && e.eventType === 'payment.rejected',
    );
    assert.equal(rejected.length, 1);
    assert.equal(rejected[0].actorId, compliance.id);
    assert.equal(rejected[0].metadata.resolution, 'kyc_rejected');
    assert.equal(rejected[0].metadata.releasedCents, REVIEW_AMOUNT);
    assert.equal(rejected[0].metadata.senderCustomerId, sender.customerId);
  }
  const kyc = audit.filter(
    (e: Json) => e.resourceId === sender.customerId && e.eventType === 'customer.kyc_updated',
  );
  assert.equal(kyc.length, 1);
  assert.equal(kyc[0].metadata.heldPaymentsDeclined, 3);
  assert.ok(!JSON.stringify(kyc).includes('compliance desk'), 'the note is never in the audit log');

  const events = await listAll(
    { request: (m, u, o) => t.request(m, u, { ...o, token: auditor.token }) },
    '/v1/events',
    'events',
  );
  for (const payment of held) {
    const rejected = events.filter(
      (e: Json) => e.type === 'payment.rejected' && e.data.payment.id === payment.id,
    );
    assert.equal(rejected.length, 1, `one payment.rejected event for ${payment.id}`);
    assert.equal(rejected[0].data.payment.status, 'declined');
    assert.equal(rejected[0].data.payment.resolution.outcome, 'kyc_rejected');
  }

  for (const payment of held) {
    const late = await approve(t, compliance.token, payment.id);
    assert.equal(late.status, 409, late.body);
    assert.equal(late.json.error.code, 'PAYMENT_NOT_IN_REVIEW');
  }
  assert.equal((await balanceOf(t, receiver.accountId)).postedBalanceCents, 100);
  await assertBooksValid(t);
});

test('sender KYC set to manual_review: approve is 409 PAYMENT_NO_LONGER_APPROVABLE, nothing moves', async () => {
  const sender = await party(t, { balance: FUNDS });
  const receiver = await party(t);
  const payment = await hold(t, sender, receiver);
  await setKyc(t, compliance.token, sender.customerId, 'manual_review');
  assert.equal((await paymentOf(t, payment.id)).status, 'manual_review', 'only a rejection declines holds');

  await assertRefused(t, compliance.token, payment, ['kyc_not_verified'], [sender, receiver]);
  const audit = (await auditLogs(t)).filter((e: Json) => e.resourceId === payment.id);
  assert.deepEqual(
    audit.map((e: Json) => e.eventType),
    ['payment.held_for_review'],
    'a refused approval writes nothing',
  );

  // Verified again: the same payment can be approved, for exactly the held amount.
  await setKyc(t, compliance.token, sender.customerId, 'verified');
  const res = await approve(t, compliance.token, payment.id);
  assert.equal(res.status, 201, res.body);
  assert.equal(res.json.payment.status, 'posted');
  const [source, destination] = await balances(t, sender, receiver);
  assert.deepEqual([source.postedBalanceCents, source.heldBalanceCents], [FUNDS - REVIEW_AMOUNT, 0]);
  assert.equal(destination.postedBalanceCents, REVIEW_AMOUNT);
});

test('receiver KYC rejected: approve is 409 (receiver_kyc_rejected); the reviewer can still reject', async () => {
  const sender = await party(t, { balance: FUNDS });
  const receiver = await party(t);
  const payment = await hold(t, sender, receiver);
  await setKyc(t, compliance.token, receiver.customerId, 'rejected');
  assert.equal(
    (await paymentOf(t, payment.id)).status,
    'manual_review',
    "the cascade declines the rejected customer's payments as sender only",
  );
  await assertRefused(t, compliance.token, payment, ['receiver_kyc_rejected'], [sender, receiver]);

  const rejected = await t.request('POST', `/v1/payments/${payment.id}/reject`, {
    token: compliance.token,
    body: {},
  });
  assert.equal(rejected.status, 200, rejected.body);
  assert.equal(rejected.json.payment.resolution.outcome, 'rejected');
  const source = await balanceOf(t, sender.accountId);
  assert.deepEqual([source.heldBalanceCents, source.availableBalanceCents], [0, FUNDS]);
});

test('a normal approval still works, and its audit entry names what it was re-checked against', async () => {
  const sender = await party(t, { balance: FUNDS });
  const receiver = await party(t);
  const payment = await hold(t, sender, receiver);
  const res = await approve(t, compliance.token, payment.id);
  assert.equal(res.status, 201, res.body);
  assert.equal(res.json.ledgerPosted, true);
  assert.equal(res.json.payment.resolution.outcome, 'approved');
  assert.equal((await balanceOf(t, receiver.accountId)).postedBalanceCents, REVIEW_AMOUNT);
  const approved = (await auditLogs(t)).filter(
    (e: Json) => e.resourceId === payment.id && e.eventType === 'payment.approved',
  );
  assert.equal(approved.length, 1);
  assert.equal(approved[0].metadata.recheckPolicyVersion, 'seed-2025-02');
  assert.match(approved[0].metadata.recheckSanctionsListSha256, /^[0-9a-f]{64}$/);
});

test(`more held payments than one transaction declines (${KYC_CASCADE_CHUNK_MAX}): the rejection declines them all`, async () => {
  const count = KYC_CASCADE_CHUNK_MAX + 5;
  const sender = await party(t, { balance: FUNDS });
  const receiver = await party(t);
  // The same small payment repeated within a minute is held (repeated pattern, velocity).
  const first = await pay(t, {
    sourceAccountId: sender.accountId,
    destinationAccountId: receiver.accountId,
    amountCents: 100,
    currency: 'USD',
  });
  assert.equal(first.status, 201, first.body);
  for (let done = 0; done < count; done += 50) {
    const group = await Promise.all(
      Array.from({ length: Math.min(50, count - done) }, () =>
        pay(t, {
          sourceAccountId: sender.accountId,
          destinationAccountId: receiver.accountId,
          amountCents: 100,
          currency: 'USD',
        }),
      ),
    );
    for (const res of group) assert.equal(res.status, 202, res.body);
  }
  assert.equal((await balanceOf(t, sender.accountId)).heldBalanceCents, count * 100);

  await setKyc(t, compliance.token, sender.customerId, 'rejected');
  const source = await balanceOf(t, sender.accountId);
  assert.deepEqual([source.heldBalanceCents, source.availableBalanceCents], [0, FUNDS - 100]);
  const queue = await listAll(t, '/v1/payments?status=manual_review', 'payments');
  assert.ok(!queue.some((p: Json) => p.sourceAccountId === sender.accountId), 'none of them is left held');
  const kyc = (await auditLogs(t)).filter(
    (e: Json) => e.resourceId === sender.customerId && e.eventType === 'customer.kyc_updated',
  );
  assert.equal(kyc[0].metadata.heldPaymentsDeclined, KYC_CASCADE_CHUNK_MAX, 'the first chunk, atomically');
  await assertBooksValid(t);
});

test('a party now on the sanctions list (restart with a new list): approve is 409 sanctions_match', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sanctions-recheck-'));
  const db = await createTestDatabase();
  let first: TestApp | undefined;
  let second: TestApp | undefined;
  try {
    first = await startTestApp({ db });
    const officer = await apiKey(first, 'compliance');
    const sender = await party(first, { balance: FUNDS, name: 'Peregrine Wolstenholme' });
    const receiver = await party(first, { name: 'Ottoline Brackenbury-Vask' });
    assert.equal(receiver.customer.kycStatus, 'verified', 'not listed when onboarded');
    const payment = await hold(first, sender, receiver);
    const other = await hold(first, sender, await party(first));
    await first.close();

    // The list is updated: the receiver is now on it (OFAC "LAST, First" order).
    const listPath = join(dir, 'sdn.csv');
    writeFileSync(
      listPath,
      `${readFileSync(SAMPLE_SANCTIONS_LIST, 'utf8').trimEnd()}\n` +
        '9001,"BRACKENBURY-VASK, Ottoline","individual","SYNTH-9",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,"Synthetic test entry; not a real person."\n',
    );
    second = await startTestApp({ db, env: { SANCTIONS_LIST_PATH: listPath } });
    await assertRefused(second, officer.token, payment, ['sanctions_match'], [sender, receiver]);

    // A payment between unlisted parties is approved under the new list.
    const ok = await approve(second, officer.token, other.id);
    assert.equal(ok.status, 201, ok.body);
    await assertBooksValid(second);
  } finally {
    await first?.close();
    await second?.close();
    await db.drop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the expiry sweep releases what a cascade left held, many holds in one chunk', async () => {
  // Held payments outliving REVIEW_HOLD_EXPIRY_HOURS (72) are declined by the sweep, up to 100 in one
  // command, one audit entry each (a command was once refused its 17th entry, so the sweep never progressed).
  const funds = 20 * REVIEW_AMOUNT;
  const sender = await party(t, { balance: funds });
  const receiver = await party(t);
  const held = [];
  for (let i = 0; i < 20; i++) held.push(await hold(t, sender, receiver));
  clock.advance(73 * 3_600_000);
  const swept = await sweepOnce(t.app.services);
  assert.ok(swept.holdsExpired >= held.length, JSON.stringify(swept));
  for (const payment of held) {
    assert.equal((await paymentOf(t, payment.id)).resolution.outcome, 'hold_expired');
  }
  const source = await balanceOf(t, sender.accountId);
  assert.deepEqual([source.heldBalanceCents, source.availableBalanceCents], [0, funds]);
  await assertBooksValid(t);
});
