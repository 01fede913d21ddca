import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createApiKey } from '../src/app/api-keys.ts';
import { SYSTEM_ACTOR } from '../src/app/services.ts';
import { apiKey, type Json, type Party, party, pay, REVIEW_AMOUNT } from './support/fixtures.ts';
import { startTestApp, type TestApp } from './support/harness.ts';

/**
 * Every write that moves or holds money answers with the resulting balances of the accounts it touched (issue
 * 17), from the accounts its transaction already holds: they must equal what GET /v1/accounts/:id/balance says
 * right after, and a replay repeats them as they were.
 */
let t: TestApp;
let compliance: string;
let payer: Party;
let payee: Party;

before(async () => {
  t = await startTestApp();
  compliance = (await apiKey(t, 'compliance')).token;
  payer = await party(t, { balance: 1_000_000 });
  payee = await party(t, { balance: 0 });
});
after(async () => {
  await t.destroy();
});

async function balancesNow(...accountIds: string[]): Promise<Json[]> {
  const views = [];
  for (const id of accountIds)
    views.push((await t.request('GET', `/v1/accounts/${id}/balance`)).json.account);
  return views;
}

const body = (amountCents: number) => ({
  sourceAccountId: payer.accountId,
  destinationAccountId: payee.accountId,
  amountCents,
  currency: 'USD',
});

test('posted, held and declined payments answer the two balances after them; a replay repeats them', async () => {
  for (const [amountCents, status] of [
    [1_234, 201],
    [REVIEW_AMOUNT, 202],
    [999_999_999, 422],
  ] as const) {
    const res = await pay(t, body(amountCents));
    assert.equal(res.status, status, res.body);
    assert.deepEqual(res.json.balances, await balancesNow(payer.accountId, payee.accountId));
    // Money moves after it; the replay still says what the balances were right after this write.
    await pay(t, body(1));
    const replay = await pay(t, body(amountCents), { key: res.key });
    assert.equal(replay.body, res.body);
  }
});

test('approve, reject and refund answer the balances they changed', async () => {
  const held = await pay(t, body(REVIEW_AMOUNT));
  const approved = await t.request('POST', `/v1/payments/${held.json.payment.id}/approve`, {
    token: compliance,
    body: {},
  });
  assert.equal(approved.status, 201, approved.body);
  assert.deepEqual(approved.json.balances, await balancesNow(payer.accountId, payee.accountId));

  const other = await pay(t, body(REVIEW_AMOUNT + 1));
  const rejected = await t.request('POST', `/v1/payments/${other.json.payment.id}/reject`, {
    token: compliance,
    body: {},
  });
  assert.equal(rejected.status, 200, rejected.body);
  // A rejection releases the payer's hold and touches no other account.
  assert.deepEqual(rejected.json.balances, await balancesNow(payer.accountId));

  const refund = await t.request('POST', `/v1/payments/${held.json.payment.id}/refunds`, {
    body: { amountCents: 500 },
    idempotencyKey: 'refund-balances',
  });
  assert.equal(refund.status, 201, refund.body);
  assert.deepEqual(refund.json.balances, await balancesNow(payer.accountId, payee.accountId));
});

test("a key scoped to the payer's customer sees only the payer's balance", async () => {
  // A fresh payer: the one above has paid often enough in the last minute to be held for velocity.
  const own = await party(t, { balance: 10_000 });
  const { secret } = await createApiKey(t.app.services, SYSTEM_ACTOR, 'payments', 'payer only', {
    customerIds: [own.customerId],
  });
  const res = await pay(t, { ...body(777), sourceAccountId: own.accountId }, { token: secret });
  assert.equal(res.status, 201, res.body);
  assert.deepEqual(
    res.json.balances.map((b: Json) => b.id),
    [own.accountId],
  );
});
