import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createRoleKeys, listAll } from './support/foundation.ts';
import { startTestApp, type TestApp } from './support/harness.ts';

/**
 * The ledger after seeding: opening balances are real double-entry postings from a per-currency system funding
 * account, so the books balance from the first cent. Checked three ways: the auditor's verify endpoint, a
 * recomputation from the raw ledger listing (debits = credits per currency, every account's posted balance =
 * its credits - debits), and the specific seeded postings. The same holds for an account opened over the API
 * with an initial balance.
 */
interface Entry {
  id: string;
  transactionId: string;
  paymentId: string | null;
  accountId: string;
  direction: 'debit' | 'credit';
  amountCents: number;
  currency: string;
}

let t: TestApp;
let auditor: string;

before(async () => {
  t = await startTestApp();
  auditor = (await createRoleKeys(t)).auditor;
});

after(async () => {
  await t.destroy();
});

const ledger = (query = ''): Promise<Entry[]> => listAll(t, `/v1/ledger${query}`, 'ledgerEntries');

/** Credits minus debits: a customer account's posted balance. */
const net = (entries: Entry[]) =>
  entries.reduce((sum, e) => sum + (e.direction === 'credit' ? e.amountCents : -e.amountCents), 0);

function totalsByCurrency(entries: Entry[]): Map<string, { debits: number; credits: number }> {
  const totals = new Map<string, { debits: number; credits: number }>();
  for (const e of entries) {
    const tot = totals.get(e.currency) ?? { debits: 0, credits: 0 };
    if (e.direction === 'debit') tot.debits += e.amountCents;
    else tot.credits += e.amountCents;
    totals.set(e.currency, tot);
  }
  return totals;
}

async function assertBooksBalance(): Promise<void> {
  const res = await t.request('GET', '/v1/ledger/verify', { token: auditor });
  assert.equal(res.status, 200, res.body);
  const v = res.json.verification;
  assert.equal(v.valid, true, JSON.stringify(v));
  assert.deepEqual(v.mismatches, []);
  const recomputed = totalsByCurrency(await ledger());
  assert.deepEqual(
    v.currencies.map((c: { currency: string }) => c.currency).sort(),
    [...recomputed.keys()].sort(),
    'verify reports every currency in the ledger',
  );
  for (const c of v.currencies) {
    assert.equal(c.debitsCents, c.creditsCents, `${c.currency}: debits = credits`);
    assert.deepEqual(
      { debits: c.debitsCents, credits: c.creditsCents },
      recomputed.get(c.currency),
      `${c.currency}: verify agrees with the entries`,
    );
  }
  // Every customer account: posted balance = the sum of its own entries; the balance route agrees.
  const accounts = await listAll(t, '/v1/accounts', 'accounts');
  assert.ok(v.accountsChecked >= accounts.length, 'verify checked at least every customer account');
  for (const account of accounts) {
    const entries = await ledger(`?accountId=${account.id}`);
    assert.ok(
      entries.every((e) => e.accountId === account.id && e.currency === account.currency),
      `${account.id}: the filter returns only its own entries, in its currency`,
    );
    assert.equal(account.postedBalanceCents, net(entries), `${account.id}: posted = credits - debits`);
    assert.equal(account.availableBalanceCents, account.postedBalanceCents - account.heldBalanceCents);
    const balance = await t.request('GET', `/v1/accounts/${account.id}/balance`);
    assert.deepEqual(balance.json.account, {
      id: account.id,
      currency: account.currency,
      availableBalanceCents: account.availableBalanceCents,
      postedBalanceCents: account.postedBalanceCents,
      heldBalanceCents: account.heldBalanceCents,
    });
  }
}

/** The opening posting of `accountId`: its one credit, and the matching debit on a non-customer account. */
async function assertOpeningPosting(accountId: string, currency: string, amountCents: number): Promise<void> {
  const own = await ledger(`?accountId=${accountId}`);
  assert.equal(own.length, 1, `${accountId}: exactly one entry, the opening balance`);
  const credit = own[0]!;
  assert.deepEqual(
    {
      direction: credit.direction,
      amountCents: credit.amountCents,
      currency: credit.currency,
      paymentId: credit.paymentId,
    },
    { direction: 'credit', amountCents, currency, paymentId: null },
  );
  const transaction = (await ledger()).filter((e) => e.transactionId === credit.transactionId);
  assert.equal(transaction.length, 2, `${accountId}: the opening transaction has two legs`);
  const debit = transaction.find((e) => e.id !== credit.id)!;
  assert.equal(debit.direction, 'debit');
  assert.equal(debit.amountCents, amountCents);
  assert.equal(debit.currency, currency);
  // The funding side is a system account, not a customer's: it is not served as an account.
  const customerAccounts = (await listAll(t, '/v1/accounts', 'accounts')).map((a) => a.id);
  assert.ok(!customerAccounts.includes(debit.accountId), `${debit.accountId} is a system account`);
  const funding = await t.request('GET', `/v1/accounts/${debit.accountId}`);
  assert.equal(funding.status, 404, 'system accounts are not exposed as customer accounts');
}

test('the seeded books balance: verify is valid, debits = credits, balances = entries', async () => {
  await assertBooksBalance();
  const usd = totalsByCurrency(await ledger()).get('USD');
  assert.deepEqual(usd, { debits: 350_000, credits: 350_000 }, 'the two demo opening balances, nothing else');
});

test('the demo opening balances came from the system funding account', async () => {
  await assertOpeningPosting('acc_demo_alice_usd', 'USD', 300_000);
  await assertOpeningPosting('acc_demo_bob_usd', 'USD', 50_000);
  // Both demo openings came from the same USD funding account.
  const alice = (await ledger('?accountId=acc_demo_alice_usd'))[0]!;
  const bob = (await ledger('?accountId=acc_demo_bob_usd'))[0]!;
  const all = await ledger();
  const fundingOf = (credit: Entry) =>
    all.find((e) => e.transactionId === credit.transactionId && e.id !== credit.id)!.accountId;
  assert.equal(fundingOf(alice), fundingOf(bob));
  const funding = await ledger(`?accountId=${fundingOf(alice)}`);
  assert.equal(net(funding), -350_000, 'the funding account is short exactly what it funded');
});

test('POST /v1/accounts with initialBalanceCents posts the opening balance; without it, no entry', async () => {
  const customer = await t.request('POST', '/v1/customers', {
    body: { name: 'Opening Balance Person', country: 'FR', documentReference: 'LEDGER-SEED-DOC-1' },
  });
  assert.equal(customer.status, 201, customer.body);
  const customerId = customer.json.customer.id;

  const funded = await t.request('POST', '/v1/accounts', {
    body: { customerId, currency: 'EUR', initialBalanceCents: 12_345 },
  });
  assert.equal(funded.status, 201, funded.body);
  assert.equal(funded.json.account.postedBalanceCents, 12_345);
  assert.equal(funded.json.account.availableBalanceCents, 12_345);
  await assertOpeningPosting(funded.json.account.id, 'EUR', 12_345);

  // A second USD account draws on the same USD funding account as the seed.
  const usd = await t.request('POST', '/v1/accounts', {
    body: { customerId, currency: 'USD', initialBalanceCents: 1_000 },
  });
  assert.equal(usd.status, 201, usd.body);
  await assertOpeningPosting(usd.json.account.id, 'USD', 1_000);

  for (const body of [
    { customerId, currency: 'GBP' },
    { customerId, currency: 'GBP', initialBalanceCents: 0 },
  ]) {
    const empty = await t.request('POST', '/v1/accounts', { body });
    assert.equal(empty.status, 201, empty.body);
    assert.equal(empty.json.account.postedBalanceCents, 0);
    assert.deepEqual(
      await ledger(`?accountId=${empty.json.account.id}`),
      [],
      'no posting for a zero balance',
    );
  }

  await assertBooksBalance();
  const totals = totalsByCurrency(await ledger());
  assert.deepEqual(totals.get('EUR'), { debits: 12_345, credits: 12_345 });
  assert.deepEqual(totals.get('USD'), { debits: 351_000, credits: 351_000 });
  assert.equal(totals.get('GBP'), undefined, 'zero balances post nothing');
});

test('the audit log records each account opening with its opening balance', async () => {
  const logs = await listAll(t, '/v1/audit-logs', 'logs', auditor);
  const opened = logs.filter((l) => l.eventType === 'account.created');
  const byAccount = new Map(opened.map((l) => [l.resourceId, l]));
  assert.equal(byAccount.get('acc_demo_alice_usd')?.metadata.openingBalanceCents, 300_000);
  assert.equal(byAccount.get('acc_demo_bob_usd')?.metadata.openingBalanceCents, 50_000);
  const verify = await t.request('GET', '/v1/audit-logs/verify', { token: auditor });
  assert.equal(verify.status, 200, verify.body);
  assert.equal(verify.json.verification.valid, true);
});
