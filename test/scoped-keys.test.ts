import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { createApiKey } from '../src/app/api-keys.ts';
import { SYSTEM_ACTOR } from '../src/app/services.ts';
import type { Role } from '../src/domain/types.ts';
import { hashSecret, newSecret } from '../src/security/api-keys.ts';
import { SCOPED_ROWS_READ_MAX } from '../src/storage/scoped-sql.ts';
import {
  assertBooksValid,
  balanceOf,
  createAccount,
  type Json,
  listAll,
  type Party,
  type PaymentBody,
  party,
  pay,
  rawSql,
} from './support/fixtures.ts';
import { manualClock, startTestApp, type TestApp } from './support/harness.ts';

/**
 * Scoped API keys (issue 13, OWASP API1): a key limited to some customers sees and moves only their money.
 * Two customers A and B (and C, a stranger to both); keys scoped to A: a payments key sees A's accounts, the
 * payments from or to them and only A's side of their ledger postings, pays only from A's accounts, refunds
 * only what A received; a scoped auditor lists only A's events; a scoped compliance key decides only the
 * payments A sends, and A's KYC. What the key does not see is the resource's normal 404 (existence is not
 * revealed); what it sees but may not act on, and global operations, are 403. Lists page by scope in SQL;
 * unscoped keys see everything as before.
 */
const clock = manualClock();
let t: TestApp;
let A: Party;
let A2: string;
let B: Party;
let C: Party;
type Key = { token: string; id: string };
let payA: Key;
let payB: Key;
let audA: Key;
let compA: Key;
let adminA: Key;
let payAll: Key;
let audAll: Key;
const paid: Record<string, Json> = {};

async function key(role: Role, customerIds: string[] | null): Promise<Key> {
  const options = customerIds === null ? {} : { customerIds };
  const { key, secret } = await createApiKey(t.app.services, SYSTEM_ACTOR, role, `scoped ${role}`, options);
  return { token: secret, id: key.id };
}

/**
 * A scoped admin key, which POST /v1/api-keys refuses to create (an admin could unscope itself): written
 * straight into the store, to show that the admin-only operations check the scope all the same.
 */
async function scopedAdminKey(customerIds: string[]): Promise<Key> {
  const secret = newSecret('test');
  const id = `key_scoped_admin_${randomUUID().slice(0, 8)}`;
  await t.app.services.committer.submit((tx) =>
    tx.insertApiKey({
      id,
      name: 'scoped admin (not creatable through the API)',
      role: 'admin',
      secretHash: hashSecret(secret),
      createdAtMs: clock.now(),
      revokedAtMs: null,
      customerIds,
      expiresAtMs: null,
      previousSecretHash: null,
      previousSecretExpiresAtMs: null,
    }),
  );
  return { token: secret, id };
}

/** A payment a minute after the last one: the velocity and repetition rules look back 60 s. */
async function payLater(body: Omit<PaymentBody, 'currency'>, token: string, idempotencyKey?: string) {
  clock.advance(61_000);
  return pay(
    t,
    { ...body, currency: 'USD' },
    { token, ...(idempotencyKey === undefined ? {} : { key: idempotencyKey }) },
  );
}

const get = (url: string, token: string) => t.request('GET', url, { token });
const idsOf = (items: Json[]) => items.map((i) => i.id);
const list = (path: string, listKey: string, token: string, limit = 500) =>
  listAll({ request: (m, url, o = {}) => t.request(m, url, { ...o, token }) }, path, listKey, limit);

before(async () => {
  t = await startTestApp({ clock: clock.now });
  A = await party(t, { balance: 2_000_000 });
  A2 = (await createAccount(t, A.customerId, 'USD', 0)).id;
  B = await party(t, { balance: 1_000_000 });
  C = await party(t, { balance: 0 });
  payA = await key('payments', [A.customerId]);
  payB = await key('payments', [B.customerId]);
  audA = await key('auditor', [A.customerId]);
  compA = await key('compliance', [A.customerId]);
  adminA = await scopedAdminKey([A.customerId]);
  payAll = await key('payments', null);
  audAll = await key('auditor', null);

  const made: [name: string, from: string, to: string, amountCents: number, by: Key, status: number][] = [
    ['aToB', A.accountId, B.accountId, 5_000, payA, 201],
    ['bToC', B.accountId, C.accountId, 7_000, payB, 201],
    ['bToA', B.accountId, A2, 3_000, payB, 201],
    ['aToA', A.accountId, A2, 1_000, payA, 201],
    ['heldA', A.accountId, B.accountId, 300_000, payA, 202],
    ['heldB', B.accountId, C.accountId, 260_000, payB, 202],
    ['heldBtoA', B.accountId, A2, 270_000, payB, 202],
  ];
  for (const [name, sourceAccountId, destinationAccountId, amountCents, by, status] of made) {
    const res = await payLater({ sourceAccountId, destinationAccountId, amountCents }, by.token);
    assert.equal(res.status, status, `${name}: ${res.body}`);
    paid[name] = res.json.payment;
  }
  // Customer events: a KYC decision on A and one on C (by the unscoped demo admin).
  for (const customerId of [A.customerId, C.customerId]) {
    const res = await t.request('POST', `/v1/customers/${customerId}/kyc`, {
      body: { kycStatus: 'verified' },
    });
    assert.equal(res.status, 200, res.body);
  }
});

after(async () => {
  await t.destroy();
});

/** The accounts, payments, ledger entries and events A's keys may see, derived from the unscoped lists. */
async function expectedForA() {
  const ofA = (await list('/v1/accounts', 'accounts', payAll.token)).filter(
    (a) => a.ownerCustomerId === A.customerId,
  );
  const accounts = new Set(idsOf(ofA));
  const touchesA = (p: Json) => accounts.has(p.sourceAccountId) || accounts.has(p.destinationAccountId);
  const events = await list('/v1/events', 'events', audAll.token);
  return {
    accounts: ofA,
    payments: (await list('/v1/payments', 'payments', payAll.token)).filter(touchesA),
    ledger: (await list('/v1/ledger', 'ledgerEntries', audAll.token)).filter((e) =>
      accounts.has(e.accountId),
    ),
    events: events.filter((e) =>
      e.type.startsWith('customer.') ? e.data.customer.id === A.customerId : touchesA(e.data.payment),
    ),
  };
}

test("a scoped key lists only its customers' accounts; another customer's is a 404 like one that does not exist", async () => {
  const accounts = await list('/v1/accounts', 'accounts', payA.token);
  assert.deepEqual(idsOf(accounts).sort(), [A.accountId, A2].sort());
  assert.ok(accounts.every((a) => a.ownerCustomerId === A.customerId));
  // Filtering on another customer is filtering on one that does not exist: empty.
  const ofB = await get(`/v1/accounts?customerId=${B.customerId}`, payA.token);
  assert.equal(ofB.status, 200, ofB.body);
  assert.deepEqual(ofB.json.accounts, []);
  const ofA = await get(`/v1/accounts?customerId=${A.customerId}`, payA.token);
  assert.equal(ofA.json.accounts.length, 2);

  assert.equal((await get(`/v1/accounts/${A.accountId}`, payA.token)).status, 200);
  assert.equal((await get(`/v1/accounts/${A2}/balance`, payA.token)).status, 200);
  const missing = await get('/v1/accounts/acc_does_not_exist', payA.token);
  for (const url of [`/v1/accounts/${B.accountId}`, `/v1/accounts/${B.accountId}/balance`]) {
    const res = await get(url, payA.token);
    assert.equal(res.status, 404, res.body);
    assert.deepEqual(
      [res.json.error.code, res.json.error.message],
      [missing.json.error.code, missing.json.error.message],
      'the same answer as for an account that does not exist',
    );
    assert.equal(res.json.error.code, 'ACCOUNT_NOT_FOUND');
  }
  // B's own key sees B's account.
  assert.equal((await get(`/v1/accounts/${B.accountId}`, payB.token)).status, 200);
});

test('payments: a scoped key reads the payments from or to its accounts, and only its side of their postings', async () => {
  const expected = await expectedForA();
  const payments = await list('/v1/payments', 'payments', payA.token);
  assert.deepEqual(idsOf(payments), idsOf(expected.payments));
  assert.deepEqual(
    idsOf(payments).sort(),
    [paid['aToB'].id, paid['bToA'].id, paid['aToA'].id, paid['heldA'].id, paid['heldBtoA'].id].sort(),
  );

  // A's payment to B: A sees it (it is A's payment), with the debit on A's account but not B's credit.
  const aToB = await get(`/v1/payments/${paid['aToB'].id}`, payA.token);
  assert.equal(aToB.status, 200, aToB.body);
  assert.deepEqual(
    aToB.json.ledgerEntries.map((e: Json) => [e.accountId, e.direction]),
    [[A.accountId, 'debit']],
  );
  const asB = await get(`/v1/payments/${paid['aToB'].id}`, payB.token);
  assert.deepEqual(
    asB.json.ledgerEntries.map((e: Json) => [e.accountId, e.direction]),
    [[B.accountId, 'credit']],
  );
  const unscoped = await get(`/v1/payments/${paid['aToB'].id}`, payAll.token);
  assert.equal(unscoped.json.ledgerEntries.length, 2);
  // Between two of A's accounts: both sides are A's.
  const aToA = await get(`/v1/payments/${paid['aToA'].id}`, payA.token);
  assert.equal(aToA.json.ledgerEntries.length, 2);

  // B's payment to C does not exist for A's key.
  const missing = await get('/v1/payments/pay_does_not_exist', payA.token);
  const bToC = await get(`/v1/payments/${paid['bToC'].id}`, payA.token);
  assert.equal(bToC.status, 404, bToC.body);
  assert.deepEqual(
    [bToC.json.error.code, bToC.json.error.message],
    [missing.json.error.code, missing.json.error.message],
  );
  assert.equal(bToC.json.error.code, 'PAYMENT_NOT_FOUND');

  // The review queue, filtered by status, is scoped too.
  const held = await list('/v1/payments?status=manual_review', 'payments', payA.token);
  assert.deepEqual(idsOf(held), [paid['heldA'].id, paid['heldBtoA'].id]);
  const declined = await list('/v1/payments?status=declined', 'payments', payA.token);
  assert.deepEqual(declined, []);
});

test("pays only from its customers' accounts: another's source is 404 SOURCE_ACCOUNT_NOT_FOUND, nothing moves or is stored", async () => {
  const bBefore = await balanceOf(t, B.accountId);
  const missing = await payLater(
    { sourceAccountId: 'acc_does_not_exist', destinationAccountId: A.accountId, amountCents: 100 },
    payA.token,
  );
  const idempotencyKey = `scoped-${randomUUID()}`;
  const fromB = await payLater(
    { sourceAccountId: B.accountId, destinationAccountId: A.accountId, amountCents: 2_500 },
    payA.token,
    idempotencyKey,
  );
  assert.equal(fromB.status, 404, fromB.body);
  assert.equal(fromB.json.error.code, 'SOURCE_ACCOUNT_NOT_FOUND');
  assert.deepEqual(
    [fromB.json.error.code, fromB.json.error.message],
    [missing.json.error.code, missing.json.error.message],
    'the same answer as for a source account that does not exist',
  );
  const bAfter = await balanceOf(t, B.accountId);
  assert.deepEqual(bAfter, bBefore, "B's balance did not move");

  // Not stored under the key: the same key with another body runs (a stored 404 would make it a 409).
  const retry = await payLater(
    { sourceAccountId: A.accountId, destinationAccountId: B.accountId, amountCents: 2_500 },
    payA.token,
    idempotencyKey,
  );
  assert.equal(retry.status, 201, retry.body);
  assert.equal(retry.headers['idempotency-replayed'], 'false');
  // The destination may be anyone's: paying others is the point (that was A → B).
  assert.equal((await balanceOf(t, B.accountId)).postedBalanceCents, bBefore.postedBalanceCents + 2_500);

  // A destination that does not exist is still reported as such.
  const noDestination = await payLater(
    { sourceAccountId: A.accountId, destinationAccountId: 'acc_does_not_exist', amountCents: 100 },
    payA.token,
  );
  assert.equal(noDestination.json.error.code, 'DESTINATION_ACCOUNT_NOT_FOUND');
});

test('ledger: a scoped key lists the entries on its accounts only; filters naming other accounts are empty', async () => {
  const expected = await expectedForA();
  const entries = await list('/v1/ledger', 'ledgerEntries', audA.token);
  assert.deepEqual(idsOf(entries), idsOf(expected.ledger));
  assert.ok(entries.length >= 6, 'opening balance, payments and holds-posted entries on A');
  assert.ok(entries.every((e) => e.accountId === A.accountId || e.accountId === A2));

  const ofB = await get(`/v1/ledger?accountId=${B.accountId}`, audA.token);
  assert.equal(ofB.status, 200, ofB.body);
  assert.deepEqual(ofB.json.ledgerEntries, []);
  const ofA2 = await list(`/v1/ledger?accountId=${A2}`, 'ledgerEntries', audA.token);
  assert.deepEqual(idsOf(ofA2), idsOf(expected.ledger.filter((e) => e.accountId === A2)));
  const ofPayment = await get(`/v1/ledger?paymentId=${paid['aToB'].id}`, audA.token);
  assert.deepEqual(
    ofPayment.json.ledgerEntries.map((e: Json) => e.accountId),
    [A.accountId],
  );
  const ofOthersPayment = await get(`/v1/ledger?paymentId=${paid['bToC'].id}`, audA.token);
  assert.deepEqual(ofOthersPayment.json.ledgerEntries, []);
});

test('events: a scoped auditor lists only the events about its customers and their payments', async () => {
  const expected = await expectedForA();
  const events = await list('/v1/events', 'events', audA.token);
  assert.deepEqual(idsOf(events), idsOf(expected.events));
  const types = events.map((e) => e.type);
  assert.ok(types.includes('customer.kyc_updated'), "A's KYC event");
  assert.ok(types.includes('payment.held_for_review'), "A's held payment");
  const aboutOthers = events.filter(
    (e) =>
      (e.type.startsWith('customer.') && e.data.customer.id !== A.customerId) ||
      (e.type.startsWith('payment.') && [paid['bToC'].id, paid['heldB'].id].includes(e.data.payment.id)),
  );
  assert.deepEqual(aboutOthers, []);
  // The unscoped auditor still sees every event.
  assert.ok((await list('/v1/events', 'events', audAll.token)).length > events.length);
});

test('refunds: a scoped key refunds only payments its customers received (a refund debits the receiver)', async () => {
  // A paid B: refunding would debit B's account. A sees the payment, so the answer is 403, not 404.
  const asSender = await t.request('POST', `/v1/payments/${paid['aToB'].id}/refunds`, {
    token: payA.token,
    body: { amountCents: 1_000 },
    idempotencyKey: `refund-${randomUUID()}`,
  });
  assert.equal(asSender.status, 403, asSender.body);
  assert.equal(asSender.json.error.code, 'FORBIDDEN');
  // B paid C: not A's business at all.
  const unrelated = await t.request('POST', `/v1/payments/${paid['bToC'].id}/refunds`, {
    token: payA.token,
    body: {},
    idempotencyKey: `refund-${randomUUID()}`,
  });
  assert.equal(unrelated.status, 404, unrelated.body);
  assert.equal(unrelated.json.error.code, 'PAYMENT_NOT_FOUND');

  // B paid A: A's key may give it back (from A's account).
  const a2Before = await balanceOf(t, A2);
  const asReceiver = await t.request('POST', `/v1/payments/${paid['bToA'].id}/refunds`, {
    token: payA.token,
    body: { amountCents: 1_000 },
    idempotencyKey: `refund-${randomUUID()}`,
  });
  assert.equal(asReceiver.status, 201, asReceiver.body);
  assert.equal((await balanceOf(t, A2)).postedBalanceCents, a2Before.postedBalanceCents - 1_000);
  // And B's key may refund A's payment to B.
  const byB = await t.request('POST', `/v1/payments/${paid['aToB'].id}/refunds`, {
    token: payB.token,
    body: { amountCents: 1_000 },
    idempotencyKey: `refund-${randomUUID()}`,
  });
  assert.equal(byB.status, 201, byB.body);
  // The refund is listed with the payment A sees.
  const seen = await get(`/v1/payments/${paid['bToA'].id}`, payA.token);
  assert.equal(seen.json.refunds.length, 1);
  assert.equal(seen.json.payment.refundedCents, 1_000);
});

test('review and KYC decisions by a scoped compliance key: what its customers send, and their KYC', async () => {
  for (const action of ['approve', 'reject']) {
    // B's payment to C: not visible, 404.
    const res = await t.request('POST', `/v1/payments/${paid['heldB'].id}/${action}`, {
      token: compA.token,
      body: {},
    });
    assert.equal(res.status, 404, res.body);
    assert.equal(res.json.error.code, 'PAYMENT_NOT_FOUND');
    // B's payment to A: visible, but the hold is on B's account: 403.
    const incoming = await t.request('POST', `/v1/payments/${paid['heldBtoA'].id}/${action}`, {
      token: compA.token,
      body: {},
    });
    assert.equal(incoming.status, 403, incoming.body);
    assert.equal(incoming.json.error.code, 'FORBIDDEN');
  }
  const stillHeld = await get(`/v1/payments/${paid['heldBtoA'].id}`, payAll.token);
  assert.equal(stillHeld.json.payment.status, 'manual_review');
  const approved = await t.request('POST', `/v1/payments/${paid['heldA'].id}/approve`, {
    token: compA.token,
    body: {},
  });
  assert.equal(approved.status, 201, approved.body);

  const kycB = await t.request('POST', `/v1/customers/${B.customerId}/kyc`, {
    token: compA.token,
    body: { kycStatus: 'rejected' },
  });
  assert.equal(kycB.status, 404, kycB.body);
  assert.equal(kycB.json.error.code, 'CUSTOMER_NOT_FOUND');
  const still = await get(`/v1/customers/${B.customerId}`, audAll.token);
  assert.equal(still.json.customer.kycStatus, 'verified', "B's KYC did not change");
  const kycA = await t.request('POST', `/v1/customers/${A.customerId}/kyc`, {
    token: compA.token,
    body: { kycStatus: 'verified' },
  });
  assert.equal(kycA.status, 200, kycA.body);

  // Customers: its own only.
  const customers = await list('/v1/customers', 'customers', compA.token);
  assert.deepEqual(idsOf(customers), [A.customerId]);
  const other = await get(`/v1/customers/${B.customerId}`, compA.token);
  assert.equal(other.status, 404, other.body);
  assert.equal(other.json.error.code, 'CUSTOMER_NOT_FOUND');
});

test('global operations are 403 for a scoped key; opening accounts for customers outside it is 404', async () => {
  for (const [url, token] of [
    ['/v1/audit-logs', audA.token],
    ['/v1/audit-logs/verify', audA.token],
    ['/v1/audit-logs/checkpoint', audA.token],
    ['/v1/audit-logs/entries/0', audA.token],
    ['/v1/ledger/verify', audA.token],
    ['/v1/webhook-endpoints', adminA.token],
  ] as const) {
    const res = await get(url, token);
    assert.equal(res.status, 403, `${url}: ${res.body}`);
    assert.equal(res.json.error.code, 'FORBIDDEN');
    assert.match(res.json.error.message, /a key scoped to customers may not/);
  }
  // The verifier key is public by nature: a scoped key reads it too (the console signs in with it).
  assert.equal((await get('/v1/audit-logs/public-key', audA.token)).status, 200);
  const hook = await t.request('POST', '/v1/webhook-endpoints', {
    token: adminA.token,
    body: { url: 'https://example.com/hooks', events: ['payment.posted'] },
  });
  assert.equal(hook.status, 403, hook.body);
  const customer = await t.request('POST', '/v1/customers', {
    token: adminA.token,
    body: { name: 'Scoped Creation', country: 'US', documentReference: `DOC-${randomUUID()}` },
  });
  assert.equal(customer.status, 403, customer.body);

  const forB = await t.request('POST', '/v1/accounts', {
    token: adminA.token,
    body: { customerId: B.customerId, currency: 'USD', initialBalanceCents: 100 },
  });
  assert.equal(forB.status, 404, forB.body);
  assert.equal(forB.json.error.code, 'CUSTOMER_NOT_FOUND');
  const forA = await t.request('POST', '/v1/accounts', {
    token: adminA.token,
    body: { customerId: A.customerId, currency: 'EUR' },
  });
  assert.equal(forA.status, 201, forA.body);
  assert.equal(forA.json.account.ownerCustomerId, A.customerId);
  // The unscoped auditor still reads the audit log.
  assert.equal((await get('/v1/audit-logs?limit=1', audAll.token)).status, 200);
});

test('paging: scoped lists equal the unscoped lists filtered, page by page, also over many accounts', async () => {
  // Many accounts for A (each a few index ranges) and traffic around them, some of it other customers'.
  const extra: string[] = [];
  for (let i = 0; i < 40; i++) extra.push((await createAccount(t, A.customerId, 'USD', 0)).id);
  for (let i = 0; i < 12; i++) {
    const toA = await payLater(
      { sourceAccountId: B.accountId, destinationAccountId: extra[i]!, amountCents: 100 + i },
      payB.token,
    );
    assert.equal(toA.status, 201, toA.body);
    const other = await payLater(
      { sourceAccountId: B.accountId, destinationAccountId: C.accountId, amountCents: 200 + i },
      payB.token,
    );
    assert.equal(other.status, 201, other.body);
  }
  const accounts = new Set([A.accountId, A2, ...extra]);
  const touchesA = (p: Json) => accounts.has(p.sourceAccountId) || accounts.has(p.destinationAccountId);
  const allPayments = (await list('/v1/payments', 'payments', payAll.token)).filter(touchesA);
  const allEntries = (await list('/v1/ledger', 'ledgerEntries', audAll.token)).filter((e) =>
    accounts.has(e.accountId),
  );
  const allAccounts = (await list('/v1/accounts', 'accounts', payAll.token)).filter(
    (a) => a.ownerCustomerId === A.customerId,
  );
  for (const limit of [1, 3, 7, 500]) {
    assert.deepEqual(idsOf(await list('/v1/payments', 'payments', payA.token, limit)), idsOf(allPayments));
    assert.deepEqual(idsOf(await list('/v1/ledger', 'ledgerEntries', audA.token, limit)), idsOf(allEntries));
    assert.deepEqual(idsOf(await list('/v1/accounts', 'accounts', payA.token, limit)), idsOf(allAccounts));
  }
  const { events } = await expectedForA();
  assert.deepEqual(idsOf(await list('/v1/events', 'events', audA.token, 5)), idsOf(events));

  // A scope of a thousand accounts more (the most a key's customers may own, to reach the bound): 2 index
  // ranges per account, in statements of 200; the page shrinks so that all ranges together read at most
  // SCOPED_ROWS_READ_MAX entries, and the cursor carries on from there until every payment is listed.
  const reads = t.app.services.store.reads;
  const fakes = Array.from({ length: 1_000 }, (_, i) => `acc_none_${String(i).padStart(4, '0')}`);
  const scope = { customerIds: [A.customerId], accountIds: [...accounts, ...fakes] };
  const arms = scope.accountIds.length * 2;
  const pageMax = Math.floor(SCOPED_ROWS_READ_MAX / arms) - 1;
  const seen: string[] = [];
  let after = 0;
  for (let pages = 0; ; pages++) {
    assert.ok(pages <= allPayments.length, 'the cursor moves on');
    const page = await reads.listPayments({ after, limit: 500 }, {}, scope);
    assert.ok(page.items.length <= pageMax, `${page.items.length} items, at most ${pageMax}`);
    seen.push(...idsOf(page.items));
    if (page.nextAfter === null) break;
    after = page.nextAfter;
  }
  assert.deepEqual(seen, idsOf(allPayments));
});

test('unscoped keys see everything, as before', async () => {
  const accounts = idsOf(await list('/v1/accounts', 'accounts', payAll.token));
  for (const id of [A.accountId, A2, B.accountId, C.accountId]) assert.ok(accounts.includes(id));
  assert.equal((await get(`/v1/payments/${paid['bToC'].id}`, payAll.token)).status, 200);
  assert.equal((await get(`/v1/accounts/${C.accountId}`, payAll.token)).status, 200);
  const customers = idsOf(await list('/v1/customers', 'customers', audAll.token));
  for (const id of [A.customerId, B.customerId, C.customerId]) assert.ok(customers.includes(id));
  await assertBooksValid(t);
});

test('events written before migration 10 are attributed to their accounts and customers when it runs', async () => {
  const before = idsOf(await list('/v1/events', 'events', audA.token));
  assert.ok(before.length > 0);
  // Take the database back to before migration 10 (its columns and indexes gone, the version unrecorded)...
  await t.close();
  for (const index of [
    'payments_destination',
    'payments_source_status',
    'payments_destination_status',
    'events_source_account',
    'events_destination_account',
    'events_customer',
  ]) {
    // IF EXISTS: migration 15 dropped payments_destination (it comes back with 10 and goes again with 15).
    await rawSql(t.db, `DROP INDEX IF EXISTS ${index}`);
  }
  for (const column of ['source_account_id', 'destination_account_id', 'customer_id']) {
    await rawSql(t.db, `ALTER TABLE events DROP COLUMN ${column}`);
  }
  await rawSql(t.db, 'DELETE FROM schema_migrations WHERE version IN (10, 15)');
  // ...and start again: the migration runs and fills them in from the payments and the resource ids.
  t = await startTestApp({ db: t.db, clock: clock.now });
  assert.deepEqual(idsOf(await list('/v1/events', 'events', audA.token)), before);
});

test('Prefer: receipt is not applied for a scoped key (its audit entry holds the counterparty features)', async () => {
  clock.advance(61_000);
  const body = {
    sourceAccountId: A.accountId,
    destinationAccountId: B.accountId,
    amountCents: 1_234,
    currency: 'USD',
  };
  const scoped = await t.request('POST', '/v1/payments', {
    body,
    token: payA.token,
    idempotencyKey: `receipt-${randomUUID()}`,
    headers: { prefer: 'receipt' },
  });
  assert.equal(scoped.status, 201, scoped.body);
  assert.equal(scoped.headers['preference-applied'], undefined);
  assert.equal(scoped.json.receipt, undefined);
  clock.advance(61_000);
  const unscoped = await t.request('POST', '/v1/payments', {
    body: { ...body, amountCents: 1_235 },
    token: payAll.token,
    idempotencyKey: `receipt-${randomUUID()}`,
    headers: { prefer: 'receipt' },
  });
  assert.equal(unscoped.status, 201, unscoped.body);
  assert.equal(unscoped.headers['preference-applied'], 'receipt');
});
