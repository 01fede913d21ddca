import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startTestApp, type TestApp } from './support/harness.ts';

let t: TestApp;
before(async () => {
  t = await startTestApp();
});
after(async () => {
  await t.destroy();
});

test('the workshop steps: health and the two seeded accounts', async () => {
  const health = await t.request('GET', '/health', { token: null });
  assert.equal(health.status, 200);
  assert.equal(health.json.status, 'ok');
  const accounts = await t.request('GET', '/v1/accounts');
  assert.equal(accounts.status, 200);
  const byId = Object.fromEntries(accounts.json.accounts.map((a: { id: string }) => [a.id, a]));
  assert.equal(byId.acc_demo_alice_usd.availableBalanceCents, 300000);
  assert.equal(byId.acc_demo_alice_usd.maskedAccountNumber, '**** **** **** 5678');
  assert.equal(byId.acc_demo_bob_usd.availableBalanceCents, 50000);
  assert.equal(byId.acc_demo_bob_usd.maskedAccountNumber, '**** **** **** 5432');
});
