import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createApiKey } from '../src/app/api-keys.ts';
import { SYSTEM_ACTOR } from '../src/app/services.ts';
import { type Json, listAll, type Party, party, pay } from './support/fixtures.ts';
import { startTestApp, type TestApp } from './support/harness.ts';

/**
 * `order=desc` on the payment and ledger lists (issue 17): newest first, paged with the same cursors, for
 * unscoped and scoped keys alike; and a cursor is bound to the list, order and filters it was made for.
 */
let t: TestApp;
let a: Party;
let b: Party;
let scoped: string;

before(async () => {
  t = await startTestApp();
  a = await party(t, { balance: 1_000_000 });
  b = await party(t, { balance: 1_000_000 });
  for (let i = 0; i < 7; i++) {
    const [from, to] = i % 2 === 0 ? [a, b] : [b, a];
    const res = await pay(t, {
      sourceAccountId: from.accountId,
      destinationAccountId: to.accountId,
      amountCents: 100 + i,
      currency: 'USD',
    });
    assert.ok([201, 202].includes(res.status), res.body);
  }
  scoped = (
    await createApiKey(t.app.services, SYSTEM_ACTOR, 'auditor', 'a only', { customerIds: [a.customerId] })
  ).secret;
});
after(async () => {
  await t.destroy();
});

/** Every id of a list, page by page (`limit` 3, so several pages), with the given key or the demo one. */
async function all(path: string, key: string, token?: string): Promise<string[]> {
  const client = {
    request: ((method, url, options = {}) =>
      t.request(method, url, token === undefined ? options : { ...options, token })) as TestApp['request'],
  };
  return (await listAll(client, path, key, 3)).map((item: Json) => item.id);
}

test('payments: order=desc is the reverse of the default order, page after page', async () => {
  for (const filter of ['', '?status=posted']) {
    const asc = await all(`/v1/payments${filter}`, 'payments');
    const desc = await all(`/v1/payments${filter}${filter === '' ? '?' : '&'}order=desc`, 'payments');
    assert.ok(asc.length > 3, `more than one page (${asc.length})`);
    assert.deepEqual(desc, [...asc].reverse());
  }
});

test('ledger entries: order=desc by account and by payment, unscoped and scoped', async () => {
  for (const token of [undefined, scoped]) {
    const asc = await all(`/v1/ledger?accountId=${a.accountId}`, 'ledgerEntries', token);
    const desc = await all(`/v1/ledger?accountId=${a.accountId}&order=desc`, 'ledgerEntries', token);
    assert.ok(asc.length >= 7, `${asc.length} entries`);
    assert.deepEqual(desc, [...asc].reverse());
  }
  const scopedAsc = await all('/v1/payments', 'payments', scoped);
  const scopedDesc = await all('/v1/payments?order=desc', 'payments', scoped);
  assert.deepEqual(scopedDesc, [...scopedAsc].reverse());
});

test('a cursor is refused (400) with another order or filter than it was made for', async () => {
  const first = await t.request('GET', '/v1/payments?limit=2&order=desc');
  const cursor = first.json.nextCursor;
  assert.equal((await t.request('GET', `/v1/payments?limit=2&order=desc&cursor=${cursor}`)).status, 200);
  for (const url of [
    `/v1/payments?limit=2&cursor=${cursor}`,
    `/v1/payments?limit=2&order=desc&status=posted&cursor=${cursor}`,
    `/v1/ledger?limit=2&order=desc&cursor=${cursor}`,
  ]) {
    const res = await t.request('GET', url);
    assert.equal(res.status, 400, `${url}: ${res.body}`);
    assert.equal(res.json.error.code, 'VALIDATION_ERROR');
  }
  assert.equal((await t.request('GET', '/v1/payments?order=newest')).status, 400);
  // The accounts list by customer is bound too.
  const accounts = await t.request('GET', '/v1/accounts?limit=1');
  assert.equal(accounts.json.hasMore, true);
  const other = await t.request(
    'GET',
    `/v1/accounts?limit=1&customerId=${a.customerId}&cursor=${accounts.json.nextCursor}`,
  );
  assert.equal(other.status, 400, other.body);
});
