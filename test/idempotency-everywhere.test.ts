import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { requestFingerprint } from '../src/domain/idempotency.ts';
import {
  apiKey,
  assertBooksValid,
  balanceOf,
  createCustomer,
  heldPayment,
  idempotencyRecordOwner,
  insertIdempotencyRecord,
  type Json,
  type Party,
  party,
  pay,
  rawRows,
  setKycStatus,
  usd,
} from './support/fixtures.ts';
import { manualClock, startTestApp, type TestApp, type TestResponse } from './support/harness.ts';

/**
 * Idempotency-Key on every state-changing POST (issue 13), with the payments semantics: a retry under the
 * same key replays the first status and bytes with `Idempotency-Replayed: true` and changes nothing; another
 * payload under it is a 409; concurrent duplicates execute once. Optional on these routes: without the
 * header they behave as before. Stored responses are sealed: no plaintext name, reason or secret at rest.
 */
const CONCURRENT = 12;
const clock = manualClock();
let t: TestApp;

before(async () => {
  t = await startTestApp({ clock: clock.now, env: { WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true' } });
});
after(async () => {
  await t.destroy();
});

const newKey = () => `key-${randomUUID()}`;

function post(path: string, body: unknown, key?: string, token?: string): Promise<TestResponse> {
  return t.request('POST', path, {
    body,
    ...(key === undefined ? {} : { idempotencyKey: key }),
    ...(token === undefined ? {} : { token }),
  });
}

async function countRows(table: string): Promise<number> {
  const rows = await rawRows(t.db, `SELECT COUNT(*) AS n FROM ${table}`);
  return Number(rows[0].n);
}

/** What a route's execution leaves behind: its rows and the audit log's length. */
async function footprint(table: string): Promise<{ rows: number; audit: number }> {
  return { rows: await countRows(table), audit: await countRows('audit_entries') };
}

/** A held payment (202) of a fresh sender with 1,000,000 cents; the clock leaves the earlier risk windows. */
async function newHeldPayment(): Promise<{ sender: Party; receiver: Party; payment: Json }> {
  clock.advance(61_000);
  return heldPayment(t);
}

async function postedPayment(): Promise<{ sender: Party; receiver: Party; payment: Json }> {
  clock.advance(61_000);
  const sender = await party(t, { balance: 100_000 });
  const receiver = await party(t, { balance: 50_000 });
  const res = await pay(t, usd(sender, receiver, 10_000));
  assert.equal(res.status, 201, res.body);
  return { sender, receiver, payment: res.json.payment };
}

/**
 * One route under test: `make` prepares a fresh target and returns the request, another payload for the
 * same target, and the table whose rows an execution adds.
 */
interface RouteCase {
  name: string;
  status: number;
  table: string;
  make(): Promise<{ path: string; body: Json; otherBody: Json }>;
}

const ROUTES: RouteCase[] = [
  {
    name: 'POST /v1/customers',
    status: 201,
    table: 'customers',
    make: async () => {
      const documentReference = `DOC-${randomUUID()}`;
      return {
        path: '/v1/customers',
        body: { name: 'Ada Idempotent-Lovelace', country: 'GB', documentReference },
        otherBody: { name: 'Ada Idempotent-Lovelace', country: 'FR', documentReference },
      };
    },
  },
  {
    name: 'POST /v1/customers/:id/kyc',
    status: 200,
    table: 'kyc_decisions',
    make: async () => {
      const customer = await createCustomer(t);
      return {
        path: `/v1/customers/${customer.id}/kyc`,
        body: { kycStatus: 'manual_review', note: 'asked for a second document' },
        otherBody: { kycStatus: 'manual_review', note: 'another note' },
      };
    },
  },
  {
    name: 'POST /v1/accounts',
    status: 201,
    table: 'accounts',
    make: async () => {
      const customer = await createCustomer(t);
      return {
        path: '/v1/accounts',
        body: { customerId: customer.id, currency: 'USD', initialBalanceCents: 12_345 },
        otherBody: { customerId: customer.id, currency: 'USD', initialBalanceCents: 12_346 },
      };
    },
  },
  {
    name: 'POST /v1/payments/:id/approve',
    status: 201,
    table: 'ledger_entries',
    make: async () => {
      const { payment } = await newHeldPayment();
      return {
        path: `/v1/payments/${payment.id}/approve`,
        body: { note: 'checked the invoice' },
        otherBody: {},
      };
    },
  },
  {
    name: 'POST /v1/payments/:id/reject',
    status: 200,
    table: 'events',
    make: async () => {
      const { payment } = await newHeldPayment();
      return { path: `/v1/payments/${payment.id}/reject`, body: {}, otherBody: { note: 'changed my mind' } };
    },
  },
  {
    name: 'POST /v1/webhook-endpoints',
    status: 201,
    table: 'webhook_endpoints',
    make: async () => ({
      path: '/v1/webhook-endpoints',
      body: { url: `http://127.0.0.1:9/hooks/${randomUUID()}`, events: ['payment.refunded'] },
      otherBody: { url: 'http://127.0.0.1:9/hooks/other', events: ['payment.refunded'] },
    }),
  },
  {
    name: 'POST /v1/payments/:id/refunds',
    status: 201,
    table: 'refunds',
    make: async () => {
      const { payment } = await postedPayment();
      return {
        path: `/v1/payments/${payment.id}/refunds`,
        body: { amountCents: 1_000, reason: 'duplicate order' },
        otherBody: { amountCents: 1_001, reason: 'duplicate order' },
      };
    },
  },
];

for (const route of ROUTES) {
  describe(route.name, () => {
    test('a retry replays the same status and bytes, and executes nothing again', async () => {
      const { path, body } = await route.make();
      const key = newKey();
      const before = await footprint(route.table);
      const first = await post(path, body, key);
      assert.equal(first.status, route.status, first.body);
      assert.equal(first.headers['idempotency-replayed'], 'false');
      const once = await footprint(route.table);
      assert.ok(once.rows > before.rows && once.audit > before.audit, 'the first request executed');

      clock.advance(5_000); // a replay must not restamp anything
      for (let i = 0; i < 3; i++) {
        const again = await post(path, body, key);
        assert.equal(again.status, first.status);
        assert.equal(again.body, first.body);
        assert.equal(again.headers['idempotency-replayed'], 'true');
        assert.match(String(again.headers['content-type']), /^application\/json/);
      }
      assert.deepEqual(await footprint(route.table), once, 'no second row, no second audit entry');
    });

    test('another payload under a used key is 409 and changes nothing', async () => {
      const { path, body, otherBody } = await route.make();
      const key = newKey();
      const first = await post(path, body, key);
      assert.equal(first.status, route.status, first.body);
      const before = await footprint(route.table);
      const other = await post(path, otherBody, key);
      assert.equal(other.status, 409, other.body);
      assert.equal(other.json.error.code, 'IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD');
      assert.equal(other.headers['idempotency-replayed'], undefined);
      assert.deepEqual(await footprint(route.table), before);
      // The original still replays after the conflict.
      assert.equal((await post(path, body, key)).body, first.body);
    });

    test('concurrent duplicates execute once: one fresh answer, the rest replay it', async () => {
      // What one execution of this route leaves behind, measured on a target of its own.
      const single = await route.make();
      const start = await footprint(route.table);
      assert.equal((await post(single.path, single.body, newKey())).status, route.status);
      const end = await footprint(route.table);

      const { path, body } = await route.make();
      const key = newKey();
      const before = await footprint(route.table);
      const responses = await Promise.all(Array.from({ length: CONCURRENT }, () => post(path, body, key)));
      for (const r of responses) assert.equal(r.status, route.status, r.body);
      assert.equal(new Set(responses.map((r) => r.body)).size, 1, 'every answer has the same bytes');
      const fresh = responses.filter((r) => r.headers['idempotency-replayed'] === 'false');
      assert.equal(fresh.length, 1);
      const after = await footprint(route.table);
      assert.equal(after.rows - before.rows, end.rows - start.rows, 'the rows of exactly one execution');
      assert.equal(after.audit - before.audit, end.audit - start.audit, 'the audit entries of one execution');
    });
  });
}

describe('POST /v1/accounts with an opening balance', () => {
  async function ledgerOf(accountId: string): Promise<Json[]> {
    const res = await t.request('GET', `/v1/ledger?accountId=${accountId}`);
    assert.equal(res.status, 200, res.body);
    return res.json.ledgerEntries;
  }

  async function accountsOf(customerId: string): Promise<Json[]> {
    const res = await t.request('GET', `/v1/accounts?customerId=${customerId}`);
    assert.equal(res.status, 200, res.body);
    return res.json.accounts;
  }

  test('a retried opening with the same key opens one account and funds it once', async () => {
    const customer = await createCustomer(t);
    const body = { customerId: customer.id, currency: 'USD', initialBalanceCents: 75_000 };
    const key = newKey();
    const first = await post('/v1/accounts', body, key);
    assert.equal(first.status, 201, first.body);
    const again = await post('/v1/accounts', body, key);
    assert.equal(again.body, first.body);
    assert.equal(again.headers['idempotency-replayed'], 'true');

    const accounts = await accountsOf(customer.id);
    assert.equal(accounts.length, 1);
    assert.equal((await balanceOf(t, first.json.account.id)).postedBalanceCents, 75_000);
    const entries = await ledgerOf(first.json.account.id);
    assert.equal(entries.length, 1, 'one opening-balance credit');
    assert.equal(entries[0].amountCents, 75_000);
    await assertBooksValid(t);
  });

  test('the same opening sent concurrently also opens one account, funded once', async () => {
    const customer = await createCustomer(t);
    const body = { customerId: customer.id, currency: 'USD', initialBalanceCents: 40_000 };
    const key = newKey();
    const responses = await Promise.all(Array.from({ length: 20 }, () => post('/v1/accounts', body, key)));
    for (const r of responses) assert.equal(r.status, 201, r.body);
    assert.equal(new Set(responses.map((r) => r.body)).size, 1);
    assert.equal(responses.filter((r) => r.headers['idempotency-replayed'] === 'false').length, 1);

    const accounts = await accountsOf(customer.id);
    assert.equal(accounts.length, 1);
    assert.equal(accounts[0].postedBalanceCents, 40_000);
    const entries = await ledgerOf(accounts[0].id);
    assert.equal(entries.length, 1);
    assert.equal(entries[0].amountCents, 40_000);
    await assertBooksValid(t);
  });

  test('an omitted initialBalanceCents and an explicit 0 are one request', async () => {
    const customer = await createCustomer(t);
    const key = newKey();
    const first = await post('/v1/accounts', { customerId: customer.id, currency: 'USD' }, key);
    assert.equal(first.status, 201, first.body);
    const again = await post(
      '/v1/accounts',
      { customerId: customer.id, currency: 'USD', initialBalanceCents: 0 },
      key,
    );
    assert.equal(again.headers['idempotency-replayed'], 'true');
    assert.equal(again.body, first.body);
  });
});

describe('optional, scoped, and what is stored', () => {
  test('without the header nothing changes: each request executes, no Idempotency-Replayed header', async () => {
    const customer = await createCustomer(t);
    const body = { customerId: customer.id, currency: 'USD', initialBalanceCents: 100 };
    const one = await post('/v1/accounts', body);
    const two = await post('/v1/accounts', body);
    for (const r of [one, two]) {
      assert.equal(r.status, 201, r.body);
      assert.equal(r.headers['idempotency-replayed'], undefined);
    }
    assert.notEqual(one.json.account.id, two.json.account.id);
    const created = await post('/v1/customers', {
      name: 'No Key Person',
      country: 'US',
      documentReference: `DOC-${randomUUID()}`,
    });
    assert.equal(created.status, 201, created.body);
    assert.equal(created.headers['idempotency-replayed'], undefined);
  });

  test('a malformed key is 400 on the optional routes too (an empty one included)', async () => {
    const customer = await createCustomer(t);
    const before = await countRows('accounts');
    for (const key of ['', 'k'.repeat(256), 'clé', 'tab\there']) {
      const res = await post('/v1/accounts', { customerId: customer.id, currency: 'USD' }, key);
      assert.equal(res.status, 400, `${JSON.stringify(key)}: ${res.body}`);
      assert.equal(res.json.error.code, 'VALIDATION_ERROR');
    }
    assert.equal(await countRows('accounts'), before);
  });

  test('a key is one request: reused on another route it is a 409', async () => {
    const customer = await createCustomer(t);
    const key = newKey();
    const kyc = await post(`/v1/customers/${customer.id}/kyc`, { kycStatus: 'verified' }, key);
    assert.equal(kyc.status, 200, kyc.body);
    const account = await post('/v1/accounts', { customerId: customer.id, currency: 'USD' }, key);
    assert.equal(account.status, 409, account.body);
    assert.equal(account.json.error.code, 'IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD');
    // The same body for another resource is another request too (the path carries the id).
    const other = await createCustomer(t);
    const kycOther = await post(`/v1/customers/${other.id}/kyc`, { kycStatus: 'verified' }, key);
    assert.equal(kycOther.status, 409, kycOther.body);
  });

  test('keys are scoped per API key: another client with the same key string executes', async () => {
    const { payment } = await newHeldPayment();
    const first = await apiKey(t, 'compliance', 'reviewer one');
    const second = await apiKey(t, 'compliance', 'reviewer two');
    const path = `/v1/payments/${payment.id}/reject`;
    const one = await post(path, {}, 'review-key', first.token);
    assert.equal(one.status, 200, one.body);
    // Not a replay of the first client's answer: executed, and refused as the payment left review.
    const two = await post(path, {}, 'review-key', second.token);
    assert.equal(two.status, 409, two.body);
    assert.equal(two.json.error.code, 'PAYMENT_NOT_IN_REVIEW');
    assert.equal((await post(path, {}, 'review-key', first.token)).body, one.body);
  });

  test('a refusal is not stored: once the state allows it, the same key executes', async () => {
    const { sender, payment } = await newHeldPayment();
    const key = newKey();
    const path = `/v1/payments/${payment.id}/approve`;
    await setKycStatus(t.db, sender.customerId, 'manual_review');
    const refused = await post(path, {}, key);
    assert.equal(refused.status, 409, refused.body);
    assert.equal(refused.json.error.code, 'PAYMENT_NO_LONGER_APPROVABLE');
    const stored = await rawRows(t.db, 'SELECT 1 FROM idempotency_records WHERE idempotency_key = ?', [key]);
    assert.equal(stored.length, 0, 'no record under the key');
    await setKycStatus(t.db, sender.customerId, 'verified');
    const approved = await post(path, {}, key);
    assert.equal(approved.status, 201, approved.body);
    assert.equal(approved.headers['idempotency-replayed'], 'false');
    assert.equal((await post(path, {}, key)).body, approved.body);
  });

  test('a KYC rejection replayed still answers as the first time and declines held payments once', async () => {
    const { sender, payment } = await newHeldPayment();
    const key = newKey();
    const path = `/v1/customers/${sender.customerId}/kyc`;
    const first = await post(path, { kycStatus: 'rejected', note: 'forged passport' }, key);
    assert.equal(first.status, 200, first.body);
    const declined = await t.request('GET', `/v1/payments/${payment.id}`);
    assert.equal(declined.json.payment.status, 'declined');
    const auditBefore = await countRows('audit_entries');
    const again = await post(path, { kycStatus: 'rejected', note: 'forged passport' }, key);
    assert.equal(again.body, first.body);
    assert.equal(again.headers['idempotency-replayed'], 'true');
    assert.equal(await countRows('audit_entries'), auditBefore);
  });
});

describe('stored responses at rest', () => {
  test('records hold sealed bodies: no name, refund reason, note or webhook secret in plaintext', async () => {
    const name = `Zebulon Plaintext-${randomUUID().slice(0, 8)}`;
    const customerKey = newKey();
    const customerBody = { name, country: 'US', documentReference: `DOC-${randomUUID()}` };
    const customer = await post('/v1/customers', customerBody, customerKey);
    assert.equal(customer.status, 201, customer.body);
    assert.equal(customer.json.customer.name, name);

    const reason = `refund reason ${randomUUID()}`;
    const { payment } = await postedPayment();
    const refundKey = newKey();
    const refund = await post(`/v1/payments/${payment.id}/refunds`, { amountCents: 500, reason }, refundKey);
    assert.equal(refund.status, 201, refund.body);
    assert.equal(refund.json.refund.reason, reason);

    const hookKey = newKey();
    const hook = await post(
      '/v1/webhook-endpoints',
      { url: 'http://127.0.0.1:9/hooks/sealed', events: ['payment.refunded'] },
      hookKey,
    );
    assert.equal(hook.status, 201, hook.body);
    const secret: string = hook.json.webhookEndpoint.secret;

    const rows = await rawRows(
      t.db,
      'SELECT idempotency_key, response_body FROM idempotency_records WHERE idempotency_key IN (?, ?, ?)',
      [customerKey, refundKey, hookKey],
    );
    assert.equal(rows.length, 3);
    for (const row of rows) {
      assert.match(row.response_body, /^v1\./, 'a sealed envelope');
      for (const secretText of [name, reason, secret]) {
        assert.ok(!String(row.response_body).includes(secretText), `no plaintext in ${row.idempotency_key}`);
      }
    }
    // The fingerprint is keyed: the plain digest of the request (which a copy of the database could test
    // guesses of a name or document reference against) is not what is stored.
    const [stored] = await rawRows(
      t.db,
      'SELECT fingerprint FROM idempotency_records WHERE idempotency_key = ?',
      [customerKey],
    );
    assert.notEqual(stored.fingerprint, requestFingerprint('POST', '/v1/customers', customerBody));
    assert.match(stored.fingerprint, /^[0-9a-f]{64}$/);

    // And nowhere in the whole table.
    const all = await rawRows(t.db, 'SELECT response_body FROM idempotency_records');
    const text = all.map((r) => r.response_body).join('\n');
    for (const secretText of [name, reason, secret]) assert.ok(!text.includes(secretText));

    // Replays open them again, byte for byte.
    const customerAgain = await post('/v1/customers', customerBody, customerKey);
    assert.equal(customerAgain.body, customer.body);
    assert.equal(customerAgain.headers['idempotency-replayed'], 'true');
    const hookAgain = await post(
      '/v1/webhook-endpoints',
      { url: 'http://127.0.0.1:9/hooks/sealed', events: ['payment.refunded'] },
      hookKey,
    );
    assert.equal(hookAgain.body, hook.body);
    const refundAgain = await post(
      `/v1/payments/${payment.id}/refunds`,
      { amountCents: 500, reason },
      refundKey,
    );
    assert.equal(refundAgain.body, refund.body);
    assert.equal(refundAgain.headers['idempotency-replayed'], 'true');
  });

  test('a record written before sealing (plaintext JSON) still replays as it is', async () => {
    const customer = await createCustomer(t);
    const body = { customerId: customer.id, currency: 'USD', initialBalanceCents: 0 };
    const key = newKey();
    const legacy = '{"account":{"id":"acc_legacy","note":"written before bodies were sealed"}}';
    // The demo admin's key id: read from a record it wrote.
    const probe = newKey();
    assert.equal(
      (await post(`/v1/customers/${customer.id}/kyc`, { kycStatus: 'verified' }, probe)).status,
      200,
    );
    await insertIdempotencyRecord(t.db, {
      apiKeyId: await idempotencyRecordOwner(t.db, probe),
      key,
      request: { method: 'POST', path: '/v1/accounts', body },
      statusCode: 201,
      responseBody: legacy,
      resourceId: 'acc_legacy',
      createdAtMs: clock.now(),
      expiresAtMs: clock.now() + 3_600_000,
    });
    const before = await countRows('accounts');
    const replay = await post('/v1/accounts', body, key);
    assert.equal(replay.status, 201);
    assert.equal(replay.body, legacy);
    assert.equal(replay.headers['idempotency-replayed'], 'true');
    assert.equal(await countRows('accounts'), before);
  });

  test('events carry no field their table keeps encrypted (reasons, notes, names)', async () => {
    const reason = `event reason ${randomUUID()}`;
    const note = `event note ${randomUUID()}`;
    const { payment } = await postedPayment();
    assert.equal(
      (await post(`/v1/payments/${payment.id}/refunds`, { amountCents: 100, reason }, newKey())).status,
      201,
    );
    const held = await newHeldPayment();
    assert.equal((await post(`/v1/payments/${held.payment.id}/reject`, { note }, newKey())).status, 200);
    const kycNote = `kyc note ${randomUUID()}`;
    assert.equal(
      (await post(`/v1/customers/${held.sender.customerId}/kyc`, { kycStatus: 'verified', note: kycNote }))
        .status,
      200,
    );
    const events = await rawRows(t.db, 'SELECT data FROM events');
    const text = events.map((e) => e.data).join('\n');
    for (const secretText of [reason, note, kycNote, held.sender.customer.name]) {
      assert.ok(!text.includes(secretText), 'no plaintext of an encrypted field in the outbox');
    }
  });
});
