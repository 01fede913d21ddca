import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { after, before, test } from 'node:test';
import { createApiKey } from '../src/app/api-keys.ts';
import { SYSTEM_ACTOR } from '../src/app/services.ts';
import type { Role } from '../src/domain/types.ts';
import {
  type Client,
  heldPayment,
  type Json,
  type Party,
  party,
  pay,
  REVIEW_AMOUNT,
  usd,
} from './support/fixtures.ts';
import { createRoleKeys } from './support/foundation.ts';
import { DEMO_TOKEN, type RequestOptions, type TestApp, type TestResponse } from './support/harness.ts';
import {
  assertValidOpenApi,
  Contract,
  type RegisteredRoute,
  routeProblems,
  startRecordedApp,
} from './support/openapi.ts';

/**
 * The OpenAPI document is the contract (issue 14): this walks the workshop flow and the whole lifecycle
 * through HTTP, and every response it receives (status, body, content type, headers) is checked against GET
 * /openapi.json by one checker (test/support/openapi.ts). A route or status the document does not list fails
 * the test, and so does a response field or header it does not describe (response objects are closed).
 *
 * One app for the whole file; the tests run in order and build on each other (one area each). Requests made
 * through the fixtures go through the checker too (`client`).
 */

const ENV = {
  // Webhooks go to a receiver on 127.0.0.1, dispatched by hand; a failed attempt is final (for the retry).
  WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true',
  WEBHOOK_DISPATCH_INTERVAL_MS: '60000',
  WEBHOOK_MAX_ATTEMPTS: '1',
  WEBHOOK_TIMEOUT_MS: '5000',
};

let t: TestApp;
let routes: RegisteredRoute[];
let contract: Contract;
let keys: Record<Role, string>;

/** Every request of this file goes through here: sent, then checked against the document. */
const call = (method: string, url: string, options: RequestOptions = {}, expect?: number) =>
  contract.call(t, method, url, options, expect);
const client: Client = { request: (method, url, options) => call(method, url, options) };
const as = (role: Role, options: RequestOptions = {}): RequestOptions => ({ ...options, token: keys[role] });
const key = () => `contract-${randomUUID()}`;
const code = (res: TestResponse) => res.json?.error?.code;

before(async () => {
  ({ t, routes } = await startRecordedApp({ env: ENV }));
  keys = await createRoleKeys(t);
});
after(async () => {
  await t?.destroy();
});

test('GET /openapi.json: a valid OpenAPI 3.1 document, served without a key', async () => {
  const res = await t.request('GET', '/openapi.json', { token: null });
  assert.equal(res.status, 200, res.body);
  assert.equal(await assertValidOpenApi(res.json), '3.1');
  assert.equal(res.json.openapi, '3.1.0');
  contract = new Contract(res.json);
  contract.check('GET', '/openapi.json', res);
  // Examples shown by /docs are valid requests.
  assert.ok(contract.assertExamplesValid() >= 10, 'the request bodies carry examples');
});

test('every route the server registers is in the document, with its request parts and a success response', () => {
  assert.deepEqual(routeProblems(contract, routes), []);
  const documented = new Set(contract.operations());
  const registered = routes
    .filter((r) => !r.hidden && r.method !== 'HEAD')
    .map((r) => `${r.method} ${r.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}')}`);
  // And nothing documented that the server does not serve.
  assert.deepEqual(
    [...documented].filter((op) => !registered.includes(op)),
    [],
  );
  for (const op of documented) {
    const [method, template] = op.split(' ') as [string, string];
    const operation = contract.operation(method, template);
    assert.ok(Array.isArray(operation.tags) && operation.tags.length > 0, `${op} has a tag`);
    assert.ok(Array.isArray(operation.security), `${op} says who may call it`);
    if (operation.security.length > 0) {
      assert.ok(operation['x-roles']?.includes('admin'), `${op}: x-roles names the roles, admin included`);
      assert.ok(operation.responses['401'] && operation.responses['403'], `${op}: 401 and 403`);
    }
  }
});

test('operations: health and readiness, without a key', async () => {
  const health = await call('GET', '/health', { token: null }, 200);
  assert.equal(health.json.status, 'ok');
  await call('GET', '/ready', { token: null }, 200);
});

test('the workshop flow: accounts, a payment, its replay, the same key with another amount', async () => {
  const accounts = await call('GET', '/v1/accounts', {}, 200);
  const ids = accounts.json.accounts.map((a: Json) => a.id);
  assert.ok(ids.includes('acc_demo_alice_usd') && ids.includes('acc_demo_bob_usd'), 'the demo accounts');
  const body = {
    sourceAccountId: 'acc_demo_alice_usd',
    destinationAccountId: 'acc_demo_bob_usd',
    amountCents: 1250,
    currency: 'USD',
  };
  const first = await call('POST', '/v1/payments', { body, idempotencyKey: 'workshop-1' }, 201);
  assert.equal(first.headers['idempotency-replayed'], 'false');
  assert.equal(first.json.payment.status, 'posted');
  const replay = await call('POST', '/v1/payments', { body, idempotencyKey: 'workshop-1' }, 201);
  assert.equal(replay.headers['idempotency-replayed'], 'true');
  assert.equal(replay.body, first.body, 'byte for byte');
  const changed = { ...body, amountCents: 1300 };
  const reused = await call('POST', '/v1/payments', { body: changed, idempotencyKey: 'workshop-1' }, 409);
  assert.equal(code(reused), 'IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD');
  await call('GET', '/v1/accounts/acc_demo_bob_usd/balance', as('payments'), 200);
  const receipt = await call('GET', `/v1/payments/${first.json.payment.id}/receipt`, as('auditor'), 200);
  assert.equal(receipt.json.receipt.entry.resourceId, first.json.payment.id);
  const me = await call('GET', '/v1/me', as('compliance'), 200);
  assert.equal(me.json.apiKey.role, 'compliance');
  assert.ok(me.json.permissions.includes('approvePayment') && !me.json.permissions.includes('createPayment'));
});

let alice: Party;
let bob: Party;

test('customers: onboard, replay, duplicate, read, list, KYC decisions', async () => {
  const body = { name: 'Carol Diaz', country: 'US', documentReference: `DOC-${randomUUID()}` };
  const idempotencyKey = key();
  const created = await call('POST', '/v1/customers', { body, idempotencyKey }, 201);
  assert.equal(created.json.customer.kycStatus, 'verified');
  const replay = await call('POST', '/v1/customers', { body, idempotencyKey }, 201);
  assert.equal(replay.headers['idempotency-replayed'], 'true');
  const duplicate = await call('POST', '/v1/customers', { body: { ...body, name: 'Carol D.' } }, 409);
  assert.equal(code(duplicate), 'CUSTOMER_EXISTS');
  // High-risk jurisdiction: onboarded in manual_review.
  const risky = await call(
    'POST',
    '/v1/customers',
    { body: { name: 'Dan Eze', country: 'IR', documentReference: `DOC-${randomUUID()}` } },
    201,
  );
  assert.equal(risky.json.customer.kycStatus, 'manual_review');

  const id = created.json.customer.id;
  await call('GET', `/v1/customers/${id}`, as('compliance'), 200);
  assert.equal(
    code(await call('GET', '/v1/customers/cus_missing', as('auditor'), 404)),
    'CUSTOMER_NOT_FOUND',
  );
  const page1 = await call('GET', '/v1/customers?limit=1', as('auditor'), 200);
  assert.equal(page1.json.hasMore, true);
  await call('GET', `/v1/customers?limit=1&cursor=${page1.json.nextCursor}`, as('auditor'), 200);

  const kyc = { kycStatus: 'verified', kycTier: 'enhanced', note: 'Documents re-examined' };
  const decided = await call(
    'POST',
    `/v1/customers/${id}/kyc`,
    as('compliance', { body: kyc, idempotencyKey }),
    200,
  );
  assert.equal(decided.json.customer.kycTier, 'enhanced');
  await call('POST', `/v1/customers/${id}/kyc`, as('compliance', { body: { kycStatus: 'rejected' } }), 200);
  const missing = await call(
    'POST',
    '/v1/customers/cus_missing/kyc',
    as('compliance', { body: { kycStatus: 'verified' } }),
    404,
  );
  assert.equal(code(missing), 'CUSTOMER_NOT_FOUND');
  const badTier = await call(
    'POST',
    `/v1/customers/${id}/kyc`,
    as('compliance', { body: { kycStatus: 'verified', kycTier: 'platinum' } }),
    400,
  );
  assert.equal(code(badTier), 'VALIDATION_ERROR');
});

test('accounts: open (funded, replayed), list, filter, read, balances', async () => {
  alice = await party(client, { balance: 500_000 });
  bob = await party(client, { balance: 0 });
  const body = { customerId: alice.customerId, currency: 'EUR', initialBalanceCents: 10_000 };
  const idempotencyKey = key();
  const opened = await call('POST', '/v1/accounts', { body, idempotencyKey }, 201);
  const replay = await call('POST', '/v1/accounts', { body, idempotencyKey }, 201);
  assert.equal(replay.body, opened.body);
  assert.equal(replay.headers['idempotency-replayed'], 'true');
  const reused = await call(
    'POST',
    '/v1/accounts',
    { body: { ...body, currency: 'GBP' }, idempotencyKey },
    409,
  );
  assert.equal(code(reused), 'IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD');
  const orphan = await call(
    'POST',
    '/v1/accounts',
    { body: { customerId: 'cus_missing', currency: 'USD' } },
    404,
  );
  assert.equal(code(orphan), 'CUSTOMER_NOT_FOUND');

  const mine = await call('GET', `/v1/accounts?customerId=${alice.customerId}`, as('payments'), 200);
  assert.equal(mine.json.accounts.length, 2);
  await call('GET', '/v1/accounts?limit=2', as('auditor'), 200);
  await call('GET', `/v1/accounts/${alice.accountId}`, as('compliance'), 200);
  const balance = await call('GET', `/v1/accounts/${alice.accountId}/balance`, as('payments'), 200);
  assert.equal(balance.json.account.availableBalanceCents, 500_000);
  assert.equal(code(await call('GET', '/v1/accounts/acc_missing', {}, 404)), 'ACCOUNT_NOT_FOUND');
  assert.equal(code(await call('GET', '/v1/accounts/acc_missing/balance', {}, 404)), 'ACCOUNT_NOT_FOUND');
  const then = await call('GET', `/v1/accounts/${alice.accountId}/balance?at=2026-01-01T00:00:00Z`, {}, 200);
  assert.equal(then.json.account.asOf, '2026-01-01T00:00:00.000Z');
  const statement = await call(
    'GET',
    `/v1/accounts/${alice.accountId}/statement?limit=1`,
    as('auditor'),
    200,
  );
  assert.equal(statement.json.closingBalanceCents, 500_000);
  await call('GET', `/v1/accounts/${alice.accountId}/statement?from=x`, {}, 400);
  assert.equal(code(await call('GET', '/v1/accounts/acc_missing/statement', {}, 404)), 'ACCOUNT_NOT_FOUND');
  const controls = (body: Json) => as('compliance', { body });
  const frozen = await call(
    'POST',
    `/v1/accounts/${alice.accountId}/controls`,
    controls({ status: 'frozen' }),
    200,
  );
  assert.equal(frozen.json.account.status, 'frozen');
  await call('POST', `/v1/accounts/${alice.accountId}/controls`, controls({ status: 'active' }), 200);
  const notEmpty = await call(
    'POST',
    `/v1/accounts/${alice.accountId}/controls`,
    controls({ status: 'closed' }),
    409,
  );
  assert.equal(code(notEmpty), 'ACCOUNT_NOT_EMPTY');
});

let posted: Json;
let held: Json;
let declined: Json;

test('payments: posted (201), held (202), declined (422), receipts, replays, as each role sees them', async () => {
  // A payments key sees the decision's summary; the stored response is that view, replayed as it is.
  const postedRes = await pay(client, usd(alice, bob, 1_000), { token: keys.payments });
  assert.equal(postedRes.status, 201);
  posted = postedRes.json.payment;
  assert.deepEqual(Object.keys(posted.decision).sort(), ['outcome', 'policyVersion', 'reasons']);

  // Held for review, with a receipt: the audit entry and its proof, and Preference-Applied.
  const heldRes = await call(
    'POST',
    '/v1/payments',
    { body: usd(alice, bob, REVIEW_AMOUNT), idempotencyKey: key(), headers: { prefer: 'receipt' } },
    202,
  );
  held = heldRes.json.payment;
  assert.equal(heldRes.headers['preference-applied'], 'receipt');
  assert.equal(heldRes.json.receipt.entry.resourceId, held.id);
  assert.ok('rules' in held.decision, 'the admin sees the full decision');

  // Declined: more than the balance. Stored and replayed like the others.
  const declinedKey = key();
  const declinedRes = await pay(client, usd(bob, alice, 5_000), { key: declinedKey });
  assert.equal(declinedRes.status, 422);
  declined = declinedRes.json.payment;
  assert.deepEqual(declined.reasons, ['insufficient_funds']);
  const again = await pay(client, usd(bob, alice, 5_000), { key: declinedKey });
  assert.equal(again.status, 422);
  assert.equal(again.body, declinedRes.body);
  // A replay with `Prefer: receipt`: the stored bytes, then the receipt.
  const withReceipt = await call(
    'POST',
    '/v1/payments',
    { body: usd(bob, alice, 5_000), idempotencyKey: declinedKey, headers: { prefer: 'receipt' } },
    422,
  );
  assert.equal(withReceipt.headers['idempotency-replayed'], 'true');
  assert.ok(withReceipt.json.receipt.inclusionProof.length >= 0);

  // Refusals before a payment exists.
  const noKey = await call('POST', '/v1/payments', { body: usd(alice, bob, 100) }, 400);
  assert.equal(code(noKey), 'IDEMPOTENCY_KEY_REQUIRED');
  const same = await pay(client, usd(alice, alice, 100));
  assert.equal(same.status, 400);
  assert.equal(code(same), 'VALIDATION_ERROR');
  const unknownSource = await pay(client, { ...usd(alice, bob, 100), sourceAccountId: 'acc_missing' });
  assert.equal(code(unknownSource), 'SOURCE_ACCOUNT_NOT_FOUND');
  const unknownDestination = await pay(client, {
    ...usd(alice, bob, 100),
    destinationAccountId: 'acc_missing',
  });
  assert.equal(code(unknownDestination), 'DESTINATION_ACCOUNT_NOT_FOUND');

  // Reads: the list (the review queue), one payment, as each reading role.
  const queue = await call('GET', '/v1/payments?status=manual_review', as('compliance'), 200);
  assert.ok(queue.json.payments.some((p: Json) => p.id === held.id));
  await call('GET', '/v1/payments?limit=2', as('payments'), 200);
  await call('GET', '/v1/payments', as('auditor'), 200);
  const one = await call('GET', `/v1/payments/${posted.id}`, as('auditor'), 200);
  assert.equal(one.json.ledgerEntries.length, 2);
  const summary = await call('GET', `/v1/payments/${posted.id}`, as('payments'), 200);
  assert.deepEqual(Object.keys(summary.json.payment.decision).sort(), [
    'outcome',
    'policyVersion',
    'reasons',
  ]);
  assert.equal(code(await call('GET', '/v1/payments/pay_missing', {}, 404)), 'PAYMENT_NOT_FOUND');
});

test('the review queue: approve, reject, a second decision, a stale approval', async () => {
  const note = { note: 'Source of funds verified' };
  const approvalKey = key();
  const approved = await call(
    'POST',
    `/v1/payments/${held.id}/approve`,
    as('compliance', { body: note, idempotencyKey: approvalKey }),
    201,
  );
  assert.equal(approved.json.payment.status, 'posted');
  assert.equal(approved.json.payment.resolution.noteProvided, true);
  const replay = await call(
    'POST',
    `/v1/payments/${held.id}/approve`,
    as('compliance', { body: note, idempotencyKey: approvalKey }),
    201,
  );
  assert.equal(replay.headers['idempotency-replayed'], 'true');
  const twice = await call('POST', `/v1/payments/${held.id}/approve`, as('compliance'), 409);
  assert.equal(code(twice), 'PAYMENT_NOT_IN_REVIEW');

  // Reject, with no body at all.
  const toReject = await heldPayment(client);
  const rejected = await call('POST', `/v1/payments/${toReject.payment.id}/reject`, as('compliance'), 200);
  assert.equal(rejected.json.payment.status, 'declined');
  assert.equal(rejected.json.ledgerPosted, false);
  const again = await call('POST', `/v1/payments/${toReject.payment.id}/reject`, as('compliance'), 409);
  assert.equal(code(again), 'PAYMENT_NOT_IN_REVIEW');
  const missing = await call('POST', '/v1/payments/pay_missing/approve', as('compliance', { body: {} }), 404);
  assert.equal(code(missing), 'PAYMENT_NOT_FOUND');

  // Stale: the sender's KYC went back to review while the payment waited.
  const stale = await heldPayment(client);
  await call(
    'POST',
    `/v1/customers/${stale.sender.customerId}/kyc`,
    as('compliance', { body: { kycStatus: 'manual_review' } }),
    200,
  );
  const refused = await call('POST', `/v1/payments/${stale.payment.id}/approve`, as('compliance'), 409);
  assert.equal(code(refused), 'PAYMENT_NO_LONGER_APPROVABLE');
  assert.ok(refused.json.error.details.some((d: Json) => d.message === 'kyc_not_verified'));
  await call('POST', `/v1/payments/${stale.payment.id}/reject`, as('compliance', { body: {} }), 200);
});

test('refunds: partial, the rest, too much, not refundable, not covered', async () => {
  const partial = await call(
    'POST',
    `/v1/payments/${posted.id}/refunds`,
    as('payments', { body: { amountCents: 300, reason: 'One item returned' }, idempotencyKey: key() }),
    201,
  );
  assert.equal(partial.json.refund.amountCents, 300);
  const tooMuch = await call(
    'POST',
    `/v1/payments/${posted.id}/refunds`,
    as('payments', { body: { amountCents: 701 }, idempotencyKey: key() }),
    422,
  );
  assert.equal(code(tooMuch), 'REFUND_EXCEEDS_PAYMENT');
  // No body: the rest.
  const rest = await call(
    'POST',
    `/v1/payments/${posted.id}/refunds`,
    as('payments', { idempotencyKey: key() }),
    201,
  );
  assert.equal(rest.json.refund.amountCents, 700);
  const withRefunds = await call('GET', `/v1/payments/${posted.id}`, as('compliance'), 200);
  assert.equal(withRefunds.json.payment.refundedCents, 1_000);
  assert.equal(withRefunds.json.refunds.length, 2);

  const notPosted = await call(
    'POST',
    `/v1/payments/${declined.id}/refunds`,
    as('payments', { idempotencyKey: key() }),
    409,
  );
  assert.equal(code(notPosted), 'PAYMENT_NOT_REFUNDABLE');
  const noKey = await call('POST', `/v1/payments/${posted.id}/refunds`, as('payments', { body: {} }), 400);
  assert.equal(code(noKey), 'IDEMPOTENCY_KEY_REQUIRED');
  const missing = await call(
    'POST',
    '/v1/payments/pay_missing/refunds',
    as('payments', { idempotencyKey: key() }),
    404,
  );
  assert.equal(code(missing), 'PAYMENT_NOT_FOUND');

  // The receiver spent the money: a refund it cannot cover.
  const payer = await party(client, { balance: 10_000 });
  const receiver = await party(client, { balance: 0 });
  const third = await party(client, { balance: 0 });
  const paid = await pay(client, usd(payer, receiver, 2_000));
  assert.equal(paid.status, 201);
  assert.equal((await pay(client, usd(receiver, third, 2_000))).status, 201);
  const uncovered = await call(
    'POST',
    `/v1/payments/${paid.json.payment.id}/refunds`,
    as('payments', { idempotencyKey: key() }),
    422,
  );
  assert.equal(code(uncovered), 'INSUFFICIENT_FUNDS');
});

test('foreign exchange: a quote, a payment with it, its replay, the refusals', async () => {
  const body = { sourceCurrency: 'USD', destinationCurrency: 'EUR', sourceAmountCents: 2_000 };
  const quoteKey = key();
  const quoted = await call('POST', '/v1/fx-quotes', as('payments', { body, idempotencyKey: quoteKey }), 201);
  await call('POST', '/v1/fx-quotes', as('payments', { body, idempotencyKey: quoteKey }), 201);
  const q = quoted.json.quote;
  const unoffered = await call(
    'POST',
    '/v1/fx-quotes',
    as('payments', { body: { ...body, destinationCurrency: 'CHF' } }),
    422,
  );
  assert.equal(code(unoffered), 'FX_PAIR_NOT_OFFERED');
  const tiny = await call(
    'POST',
    '/v1/fx-quotes',
    as('payments', { body: { sourceCurrency: 'JPY', destinationCurrency: 'USD', sourceAmountCents: 1 } }),
    422,
  );
  assert.equal(code(tiny), 'FX_AMOUNT_OUT_OF_RANGE');
  await call('POST', '/v1/fx-quotes', as('payments', { body: { ...body, destinationCurrency: 'USD' } }), 400);

  const payer = await party(client, { balance: 10_000 });
  const payee = await party(client, { balance: 0, currency: 'EUR' });
  const fx = { ...usd(payer, payee, 2_000), quoteId: q.id };
  const paid = await pay(client, fx, { token: keys.payments });
  assert.equal(paid.status, 201, paid.body);
  assert.equal(paid.json.payment.fx.destinationAmountCents, q.destinationAmountCents);
  const read = await call('GET', `/v1/payments/${paid.json.payment.id}`, as('compliance'), 200);
  assert.equal(read.json.ledgerEntries.length, 4, 'two legs per currency');
  const used = await pay(client, fx, { token: keys.payments });
  assert.equal(used.status, 422);
  assert.equal(code(used), 'FX_QUOTE_USED');
  const other = await call('POST', '/v1/fx-quotes', as('payments', { body }), 201);
  const mismatch = await pay(
    client,
    { ...fx, amountCents: 2_001, quoteId: other.json.quote.id },
    { token: keys.payments },
  );
  assert.equal(code(mismatch), 'FX_QUOTE_MISMATCH');
  const missing = await pay(client, { ...fx, quoteId: 'fxq_missing' }, { token: keys.payments });
  assert.equal(missing.status, 404);
  assert.equal(code(missing), 'FX_QUOTE_NOT_FOUND');
});

test('payment batches: completed (201, replayed), rejected (422), read back paged, the refusals', async () => {
  const payer = await party(client, { balance: 10_000 });
  const payee = await party(client, { balance: 0 });
  const batchKey = key();
  const body = { atomic: false, payments: [usd(payer, payee, 100), usd(payer, payee, 1_000_000)] };
  const made = await call(
    'POST',
    '/v1/payment-batches',
    as('payments', { body, idempotencyKey: batchKey }),
    201,
  );
  assert.deepEqual(
    made.json.batch.items.map((i: Json) => i.status),
    ['posted', 'declined'],
  );
  await call('POST', '/v1/payment-batches', as('payments', { body, idempotencyKey: batchKey }), 201);
  const reused = await call(
    'POST',
    '/v1/payment-batches',
    as('payments', { body: { ...body, atomic: true }, idempotencyKey: batchKey }),
    409,
  );
  assert.equal(code(reused), 'IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD');
  const rejected = await call(
    'POST',
    '/v1/payment-batches',
    as('payments', { body: { ...body, atomic: true }, idempotencyKey: key() }),
    422,
  );
  assert.equal(rejected.json.batch.status, 'rejected');
  await call('POST', '/v1/payment-batches', as('payments', { body: { atomic: true, payments: [] } }), 400);
  const page1 = await call('GET', `/v1/payment-batches/${made.json.batch.id}?limit=1`, as('compliance'), 200);
  assert.equal(page1.json.hasMore, true);
  const page2 = await call(
    'GET',
    `/v1/payment-batches/${made.json.batch.id}?limit=1&cursor=${page1.json.nextCursor}`,
    as('auditor'),
    200,
  );
  assert.equal(page2.json.batch.items[0].index, 1);
  await call('GET', '/v1/payment-batches/pbt_missing', as('payments'), 404);
});

test('regulatory reporting: reports as JSON and CSV (paged), cases listed, read and decided, the refusals', async () => {
  const from = new Date(Date.now() - 60_000).toISOString();
  const payer = await party(client, { balance: 1_000_000 });
  const payee = await party(client, { balance: 0 });
  const listed = await party(client, { name: 'Ivan Sidorenko' });
  await pay(client, usd(payer, payee, 300_000));
  await pay(client, usd(payer, listed, 100));
  const to = new Date(Date.now() + 60_000).toISOString();
  const period = `from=${from}&to=${to}`;
  const json = await call('GET', `/v1/reports/travel_rule?${period}&limit=1`, as('compliance'), 200);
  assert.equal(json.json.rows.length, 1);
  await call('GET', `/v1/reports/travel_rule?${period}&format=csv`, as('auditor'), 200);
  await call('GET', `/v1/reports/large_transaction?${period}&format=csv&limit=1`, as('admin'), 200);
  const sar = await call('GET', `/v1/reports/suspicious_activity?${period}`, as('admin'), 200);
  assert.ok(sar.json.rows.length >= 1, sar.body);
  assert.equal(sar.json.personalData, 'masked');
  await call('GET', `/v1/reports/ctr?${period}`, as('compliance'), 404);
  await call('GET', `/v1/reports/travel_rule?from=${to}&to=${from}`, as('compliance'), 400);
  const cases = await call('GET', '/v1/cases?status=open&limit=1', as('auditor'), 200);
  const caseId = cases.json.cases[0].id;
  await call('GET', `/v1/cases/${caseId}`, as('compliance'), 200);
  await call('GET', '/v1/cases/case_missing', as('compliance'), 404);
  const decideKey = key();
  const body = { decision: 'dismissed', note: 'Name match only; date of birth differs' };
  await call(
    'POST',
    `/v1/cases/${caseId}/decide`,
    as('compliance', { body, idempotencyKey: decideKey }),
    200,
  );
  await call(
    'POST',
    `/v1/cases/${caseId}/decide`,
    as('compliance', { body, idempotencyKey: decideKey }),
    200,
  );
  const again = await call('POST', `/v1/cases/${caseId}/decide`, as('compliance', { body }), 409);
  assert.equal(code(again), 'CASE_ALREADY_DECIDED');
  await call('POST', '/v1/cases/case_missing/decide', as('compliance', { body }), 404);
});

test('the ledger: entries by payment and by account, and its verification', async () => {
  const byPayment = await call('GET', `/v1/ledger?paymentId=${posted.id}`, as('compliance'), 200);
  assert.ok(byPayment.json.ledgerEntries.length >= 2);
  await call('GET', `/v1/ledger?accountId=${alice.accountId}&limit=1`, as('auditor'), 200);
  const verified = await call('GET', '/v1/ledger/verify', as('auditor'), 200);
  assert.equal(verified.json.verification.valid, true);
});

test('the audit log: entries, checkpoint, verifier key, proofs, verification and its jobs', async () => {
  const page1 = await call('GET', '/v1/audit-logs?limit=2', as('auditor'), 200);
  assert.equal(page1.json.hasMore, true);
  await call('GET', `/v1/audit-logs?limit=2&cursor=${page1.json.nextCursor}`, as('auditor'), 200);
  await call('GET', '/v1/audit-logs/entries/0', as('auditor'), 200);
  const noEntry = await call('GET', '/v1/audit-logs/entries/9999999', as('auditor'), 404);
  assert.equal(code(noEntry), 'AUDIT_ENTRY_NOT_FOUND');

  const checkpoint = await call('GET', '/v1/audit-logs/checkpoint', as('auditor'), 200);
  const treeSize = Number(checkpoint.body.split('\n')[1]);
  assert.ok(treeSize > 2, checkpoint.body);
  await call('GET', '/v1/audit-logs/public-key', as('auditor'), 200);
  await call('GET', `/v1/audit-logs/proofs/inclusion?index=1&treeSize=${treeSize}`, as('auditor'), 200);
  await call('GET', `/v1/audit-logs/proofs/consistency?from=1&to=${treeSize}`, as('auditor'), 200);
  const outside = await call(
    'GET',
    `/v1/audit-logs/proofs/inclusion?index=${treeSize}&treeSize=${treeSize}`,
    {},
    400,
  );
  assert.equal(code(outside), 'VALIDATION_ERROR');
  await call('GET', '/v1/audit-logs/proofs/consistency?from=2&to=1', {}, 400);

  const verified = await call('GET', '/v1/audit-logs/verify', as('auditor'), 200);
  assert.equal(verified.json.verification.valid, true);
  const waited = await call(
    'GET',
    '/v1/audit-logs/verify',
    as('auditor', { headers: { prefer: 'wait=5' } }),
    200,
  );
  assert.equal(waited.headers['preference-applied'], 'wait=5');
  const respondAsync = await call(
    'GET',
    '/v1/audit-logs/verify',
    as('auditor', { headers: { prefer: 'respond-async' } }),
  );
  assert.ok([200, 202].includes(respondAsync.status), respondAsync.body);

  // The full re-verification: 202 at once, then poll the job where Location says.
  const full = await call('GET', '/v1/audit-logs/verify?full=true', as('auditor'), 202);
  const location = String(full.headers['location']);
  for (let i = 0; ; i++) {
    const job = await call('GET', location, as('auditor'), 200);
    if (job.json.job.status !== 'running') {
      assert.equal(job.json.job.status, 'completed', job.body);
      assert.equal(job.json.job.verification.valid, true);
      break;
    }
    assert.ok(i < 200, 'the full verification finishes');
    await new Promise((r) => setTimeout(r, 50));
  }
  const noJob = await call('GET', `/v1/audit-logs/verify-jobs/avj_${'0'.repeat(24)}`, as('auditor'), 404);
  assert.equal(code(noJob), 'NOT_FOUND');
});

test('API keys: create (replayed), list, read, rotate with grace, revoke, the refusals', async () => {
  const body = { role: 'auditor', name: 'contract auditor' };
  const idempotencyKey = key();
  const created = await call('POST', '/v1/api-keys', { body, idempotencyKey }, 201);
  const replay = await call('POST', '/v1/api-keys', { body, idempotencyKey }, 201);
  assert.equal(replay.body, created.body, 'the same secret, not a second key');
  const { apiKey, secret } = created.json;
  const page1 = await call('GET', '/v1/api-keys?limit=2', {}, 200);
  await call('GET', `/v1/api-keys?limit=2&cursor=${page1.json.nextCursor}`, {}, 200);
  await call('GET', `/v1/api-keys/${apiKey.id}`, {}, 200);
  assert.equal(code(await call('GET', '/v1/api-keys/key_missing', {}, 404)), 'API_KEY_NOT_FOUND');

  const rotated = await call(
    'POST',
    `/v1/api-keys/${apiKey.id}/rotate`,
    { body: { gracePeriodSeconds: 60 } },
    200,
  );
  assert.notEqual(rotated.json.secret, secret);
  await call('GET', '/v1/audit-logs?limit=1', { token: secret }, 200); // the old secret, in its grace period
  await call('GET', '/v1/audit-logs?limit=1', { token: rotated.json.secret }, 200);
  const revoked = await call('POST', `/v1/api-keys/${apiKey.id}/revoke`, { idempotencyKey: key() }, 200);
  assert.equal(revoked.json.apiKey.status, 'revoked');
  await call('POST', `/v1/api-keys/${apiKey.id}/revoke`, { body: {} }, 200);
  const gone = await call('GET', '/v1/audit-logs', { token: rotated.json.secret }, 401);
  assert.equal(code(gone), 'AUTH_INVALID');
  const inactive = await call('POST', `/v1/api-keys/${apiKey.id}/rotate`, {}, 409);
  assert.equal(code(inactive), 'API_KEY_NOT_ACTIVE');
  const demo = await call('POST', '/v1/api-keys/key_demo_admin/rotate', {}, 409);
  assert.equal(code(demo), 'API_KEY_NOT_ROTATABLE');
  const unknownCustomer = await call(
    'POST',
    '/v1/api-keys',
    { body: { role: 'payments', name: 'nobody', customerIds: ['cus_missing'] } },
    404,
  );
  assert.equal(code(unknownCustomer), 'CUSTOMER_NOT_FOUND');

  // A key scoped to Alice: the global audit log is forbidden, another customer's payment does not exist,
  // and `Prefer: receipt` is not applied (nor announced).
  const scoped = await call(
    'POST',
    '/v1/api-keys',
    { body: { role: 'payments', name: 'partner: Alice only', customerIds: [alice.customerId] } },
    201,
  );
  const partner = scoped.json.secret;
  const other = await heldPayment(client);
  assert.equal(code(await call('GET', '/v1/audit-logs', { token: partner }, 403)), 'FORBIDDEN');
  assert.equal(
    code(await call('GET', `/v1/payments/${other.payment.id}`, { token: partner }, 404)),
    'PAYMENT_NOT_FOUND',
  );
  const scopedPayment = await call(
    'POST',
    '/v1/payments',
    { token: partner, body: usd(alice, bob, 100), idempotencyKey: key(), headers: { prefer: 'receipt' } },
    201,
  );
  assert.equal(scopedPayment.headers['preference-applied'], undefined);
  assert.equal(scopedPayment.json.receipt, undefined);
});

// ---------------------------------------------------------------------------------------------------------
// Webhooks and events (src/http/routes/webhooks.ts): every endpoint of the lifecycle, with a receiver on
// 127.0.0.1 that fails the first delivery (for the manual retry) and accepts the rest.

/** A receiver answering each request with the next scripted status, then 200. */
async function startReceiver(
  script: number[],
): Promise<{ url: string; received: number; stop(): Promise<void> }> {
  const statuses = [...script];
  const state = { received: 0 };
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      state.received++;
      res.writeHead(statuses.shift() ?? 200).end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  assert.ok(address !== null && typeof address === 'object');
  return {
    url: `http://127.0.0.1:${address.port}/hooks`,
    get received() {
      return state.received;
    },
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

async function deliveryOnceSettled(id: string): Promise<Json> {
  for (let i = 0; ; i++) {
    await t.app.dispatcher.dispatchOnce();
    const res = await call('GET', `/v1/webhook-deliveries/${id}`, {}, 200);
    if (res.json.delivery.status !== 'pending') return res.json.delivery;
    assert.ok(i < 100, 'the delivery settles');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * The webhook session owns these routes and their statuses: this area asserts only success or the documented
 * error code, and leaves the exact status to the document (the checker holds every answer to it).
 */
async function webhooksArea(): Promise<void> {
  const success = async (method: string, url: string, options: RequestOptions = {}) => {
    const res = await call(method, url, options);
    assert.ok(
      res.status >= 200 && res.status < 300,
      `${method} ${url} -> ${res.status} ${res.body.slice(0, 300)}`,
    );
    return res;
  };
  const receiver = await startReceiver([500]);
  try {
    const body = { url: receiver.url, events: ['payment.refunded'] };
    const idempotencyKey = key();
    const created = await success('POST', '/v1/webhook-endpoints', { body, idempotencyKey });
    const replay = await success('POST', '/v1/webhook-endpoints', { body, idempotencyKey });
    assert.equal(replay.body, created.body);
    const endpoint = created.json.webhookEndpoint;
    await success('GET', '/v1/webhook-endpoints?limit=1');
    await success('GET', `/v1/webhook-endpoints/${endpoint.id}`);

    // A ping, failed (500, one attempt allowed), retried by hand, delivered.
    const queued = await success('POST', `/v1/webhook-endpoints/${endpoint.id}/test`);
    const failed = await deliveryOnceSettled(queued.json.delivery.id);
    assert.equal(failed.status, 'failed');
    const retried = await success('POST', `/v1/webhook-deliveries/${failed.id}/retry`, {
      idempotencyKey: key(),
    });
    assert.equal(retried.json.delivery.status, 'pending');
    const delivered = await deliveryOnceSettled(failed.id);
    assert.equal(delivered.status, 'succeeded');
    assert.equal(receiver.received, 2);
    await success('GET', `/v1/webhook-endpoints/${endpoint.id}/deliveries`);
    const notRetryable = await call('POST', `/v1/webhook-deliveries/${failed.id}/retry`, {}, 409);
    assert.equal(code(notRetryable), 'WEBHOOK_DELIVERY_NOT_RETRYABLE');

    await success('POST', `/v1/webhook-endpoints/${endpoint.id}/rotate-secret`, {
      body: { gracePeriodSeconds: 60 },
    });
    // A DELETE's body is parsed like any other: a malformed one is refused, as the document says.
    const badBody = await call(
      'DELETE',
      `/v1/webhook-endpoints/${endpoint.id}`,
      { body: '{bad', headers: { 'content-type': 'application/json' } },
      400,
    );
    assert.equal(code(badBody), 'INVALID_JSON');
    await success('DELETE', `/v1/webhook-endpoints/${endpoint.id}`);
    const deleted = await call('GET', `/v1/webhook-endpoints/${endpoint.id}`, {}, 404);
    assert.equal(code(deleted), 'WEBHOOK_ENDPOINT_NOT_FOUND');
    const noDelivery = await call('GET', '/v1/webhook-deliveries/whd_missing', {}, 404);
    assert.equal(code(noDelivery), 'WEBHOOK_DELIVERY_NOT_FOUND');
  } finally {
    await receiver.stop();
  }
  // The outbox, as the auditor lists it.
  const events = await success('GET', '/v1/events?limit=5', as('auditor'));
  assert.ok(events.json.events.length > 0);
}

test('webhooks and events: endpoints, a failed delivery retried, rotation, deletion, the outbox', async () => {
  await webhooksArea();
});

// ---------------------------------------------------------------------------------------------------------
// Metrics (src/http/routes/metrics.ts).

async function metricsArea(): Promise<void> {
  const metrics = await call('GET', '/metrics', as('auditor'), 200);
  assert.match(metrics.body, /# TYPE /);
  assert.equal(code(await call('GET', '/metrics', as('payments'), 403)), 'FORBIDDEN');
}

test('metrics: the Prometheus exposition for an auditor', async () => {
  await metricsArea();
});

test('errors at the edge: 401 (both), 403, 400, invalid JSON, 404, 405, 413, 414, 415, request ids', async () => {
  assert.equal(code(await call('GET', '/v1/accounts', { token: null }, 401)), 'AUTH_REQUIRED');
  assert.equal(code(await call('GET', '/v1/accounts', { token: 'sk_not_a_key' }, 401)), 'AUTH_INVALID');
  assert.equal(code(await call('GET', '/v1/customers', as('payments'), 403)), 'FORBIDDEN');
  const invalid = await call('POST', '/v1/customers', { body: { name: '', country: 'us' } }, 400);
  assert.equal(code(invalid), 'VALIDATION_ERROR');
  assert.ok(invalid.json.error.details.length > 0);
  assert.equal(code(await call('GET', '/v1/payments?limit=501', {}, 400)), 'VALIDATION_ERROR');
  assert.equal(code(await call('GET', '/v1/payments?cursor=nonsense', {}, 400)), 'VALIDATION_ERROR');
  const json = await call(
    'POST',
    '/v1/customers',
    { body: '{"name":', headers: { 'content-type': 'application/json' } },
    400,
  );
  assert.equal(code(json), 'INVALID_JSON');
  const text = await call(
    'POST',
    '/v1/customers',
    { body: 'name=x', headers: { 'content-type': 'text/plain' } },
    415,
  );
  assert.equal(code(text), 'UNSUPPORTED_CONTENT_TYPE');
  const big = await call('POST', '/v1/customers', { body: { name: 'x'.repeat(1_000_001) } }, 413);
  assert.equal(code(big), 'PAYLOAD_TOO_LARGE');
  assert.equal(code(await call('GET', `/v1/payments?cursor=${'a'.repeat(8200)}`, {}, 414)), 'URI_TOO_LONG');
  // Unmatched: a path no operation has, a trailing slash, a method the path does not have (Allow).
  assert.equal(code(await call('GET', '/v1/nothing-here', {}, 404)), 'NOT_FOUND');
  assert.equal(code(await call('GET', '/v1/payments/', {}, 404)), 'NOT_FOUND');
  const method = await call('DELETE', '/v1/payments', {}, 405);
  assert.equal(code(method), 'METHOD_NOT_ALLOWED');
  // The client's correlation id is echoed, and in the envelope.
  const correlated = await call(
    'GET',
    '/v1/payments/pay_missing',
    { headers: { 'x-request-id': 'contract-1' } },
    404,
  );
  assert.equal(correlated.headers['x-request-id'], 'contract-1');
  assert.equal(correlated.json.error.requestId, 'contract-1');
});

test('the last admin key cannot be revoked over HTTP (409)', async () => {
  const admins = (await call('GET', '/v1/api-keys?limit=500', {}, 200)).json.apiKeys.filter(
    (k: Json) => k.role === 'admin' && k.status === 'active' && k.id !== 'key_demo_admin',
  );
  for (const admin of admins) await call('POST', `/v1/api-keys/${admin.id}/revoke`, {}, 200);
  const last = await call('POST', '/v1/api-keys/key_demo_admin/revoke', { token: DEMO_TOKEN }, 409);
  assert.equal(code(last), 'API_KEY_LAST_ADMIN');
});

test('429: per API key (with the bucket headers) and per address for failed authentication', async () => {
  const limited = await startRecordedApp({
    env: { RATE_LIMIT_PER_SECOND: '1', RATE_LIMIT_BURST: '1', AUTH_FAILURE_LIMIT_PER_MINUTE: '1' },
  });
  try {
    const first = await contract.call(limited.t, 'GET', '/v1/accounts', {}, 200);
    assert.equal(first.headers['ratelimit-limit'], '1');
    let res = first;
    for (let i = 0; i < 5 && res.status !== 429; i++)
      res = await contract.call(limited.t, 'GET', '/v1/accounts');
    assert.equal(res.status, 429, res.body);
    assert.equal(code(res), 'RATE_LIMITED');
    assert.match(String(res.headers['retry-after']), /^[0-9]+$/);
    assert.equal(res.headers['ratelimit-remaining'], '0');

    await contract.call(limited.t, 'GET', '/v1/accounts', { token: 'sk_wrong' }, 401);
    const gate = await contract.call(limited.t, 'GET', '/v1/accounts', { token: 'sk_wrong' }, 429);
    assert.equal(code(gate), 'RATE_LIMITED');
    assert.equal(gate.headers['ratelimit-limit'], undefined, 'no key, no bucket');
  } finally {
    await limited.t.destroy();
  }
});

test('the checker has teeth: an undocumented field, status, header or route fails', async () => {
  const real = await call('GET', `/v1/payments/${posted.id}`, as('compliance'), 200);
  const altered = (change: (r: TestResponse) => void): TestResponse => {
    const copy = structuredClone(real);
    change(copy);
    return copy;
  };
  const fails = (res: TestResponse, message: RegExp, method = 'GET', url = `/v1/payments/${posted.id}`) =>
    assert.throws(() => contract.check(method, url, res), message);
  const withBody = (mutate: (body: Json) => void) =>
    altered((r) => {
      const body = JSON.parse(r.body);
      mutate(body);
      r.body = JSON.stringify(body);
    });
  fails(
    withBody((b) => {
      b.payment.internalScore = 1;
    }),
    /does not match its schema/,
  );
  fails(
    withBody((b) => {
      b.payment.decision.rules[0] = { ...b.payment.decision.rules[0], hidden: true };
    }),
    /does not match its schema/,
  );
  fails(
    withBody((b) => {
      b.payment.createdAt = 'yesterday';
    }),
    /does not match its schema/,
  );
  fails(
    withBody((b) => {
      delete b.refundsHasMore;
    }),
    /does not match its schema/,
  );
  fails(
    altered((r) => {
      r.status = 418;
    }),
    /status 418 is not documented/,
  );
  fails(
    altered((r) => {
      r.headers['x-debug'] = '1';
    }),
    /x-debug is sent but not documented/,
  );
  fails(
    altered((r) => {
      r.headers['ratelimit-remaining'] = 'many';
    }),
    /header ratelimit-remaining/,
  );
  fails(
    altered((r) => {
      r.headers['content-type'] = 'text/html';
    }),
    /content type text\/html is not documented/,
  );
  fails(real, /no operation of the document matches/, 'GET', '/v1/payments-archive');
  fails(real, /no PATCH operation/, 'PATCH', `/v1/payments/${posted.id}`);
});

test('the sandbox: the test clock, its advance (replayed), the reset; a live key is refused', async () => {
  const clock = await call('GET', '/v1/test/clock', as('payments'), 200);
  assert.equal(typeof clock.json.testClock.offsetSeconds, 'number');
  const idempotencyKey = key();
  await call('POST', '/v1/test/clock/advance', { body: { seconds: 61 }, idempotencyKey }, 200);
  const replay = await call('POST', '/v1/test/clock/advance', { body: { seconds: 61 }, idempotencyKey }, 200);
  assert.equal(replay.headers['idempotency-replayed'], 'true');
  const live = (await createApiKey(t.app.modes.live, SYSTEM_ACTOR, 'admin', 'live admin')).secret;
  assert.equal(code(await call('GET', '/v1/test/clock', { token: live }, 403)), 'TEST_MODE_ONLY');
  // Last: it erases the test data the areas above made (the keys stay).
  const reset = await call('POST', '/v1/test/reset', {}, 200);
  assert.equal(reset.json.sandbox.demoDataSeeded, true);
});

test('every operation of the document was exercised with a success status', () => {
  const missing = contract
    .operations()
    .filter((op) => ![...(contract.seen.get(op) ?? [])].some((status) => status >= 200 && status < 300));
  assert.deepEqual(missing, []);
});
