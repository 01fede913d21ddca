import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { findPlaintext, listAll, rawDatabaseBytes } from './support/foundation.ts';
import { backend, startTestApp, type TestApp, type TestResponse } from './support/harness.ts';

/**
 * Personal data at rest: customer names, document references and account numbers never appear in the
 * database in plaintext (SQLite: the raw bytes of the .db, -wal and -shm files; PostgreSQL: every column of
 * every row), and the API returns account numbers only masked and document references never.
 */
const CUSTOMERS = [
  { name: 'Zephyrine Quackenbush-Ortega', country: 'US', documentReference: 'PASSPORT-ZQO-55120934' },
  { name: 'Þórhildur Ænæs-Łukasiewicz', country: 'IS', documentReference: 'IDCARD-ÞÆŁ-00912377' },
  { name: 'Maximilian Oberstdorfer', country: 'DE', documentReference: 'PERSO-MAXOB-77310042' },
];

// The seeded demo PII, plus ours, with fragments: a partially encrypted value must not leak either.
const NAMES = ['Alice Carter', 'Bob Chen', ...CUSTOMERS.map((c) => c.name), 'Quackenbush', 'Łukasiewicz'];
const DOCUMENT_REFERENCES = [
  'DEMO-PASSPORT-ALICE-001',
  'DEMO-PASSPORT-BOB-001',
  ...CUSTOMERS.map((c) => c.documentReference),
  '55120934',
  '77310042',
];
const ACCOUNT_NUMBERS = ['4400000012345678', '4400000098765432'];
/** Never returned by the API at all (names are returned, decrypted, to authorised readers). */
const NEVER_RETURNED = [...DOCUMENT_REFERENCES, ...ACCOUNT_NUMBERS];
const PLAINTEXT_PII = [...NAMES, ...NEVER_RETURNED];

/** The needles in a JSON text, raw or JSON-escaped (non-ASCII may come back as \\u escapes). */
const foundIn = (text: string, needles: string[]) =>
  needles.filter((s) => text.includes(s) || text.includes(JSON.stringify(s).slice(1, -1)));

let t: TestApp;
const customerIds: string[] = [];
const accountIds: string[] = ['acc_demo_alice_usd', 'acc_demo_bob_usd'];
/** Every response body the test saw, to check what the API ever returned. */
const responses: TestResponse[] = [];

async function call(method: string, url: string, body?: unknown): Promise<TestResponse> {
  const res = await t.request(method, url, body === undefined ? {} : { body });
  responses.push(res);
  return res;
}

before(async () => {
  t = await startTestApp();
  for (const customer of CUSTOMERS) {
    const res = await call('POST', '/v1/customers', customer);
    assert.equal(res.status, 201, res.body);
    customerIds.push(res.json.customer.id);
    for (const [currency, initialBalanceCents] of [
      ['USD', 125_000],
      ['EUR', 0],
    ] as const) {
      const account = await call('POST', '/v1/accounts', {
        customerId: res.json.customer.id,
        currency,
        initialBalanceCents,
      });
      assert.equal(account.status, 201, account.body);
      accountIds.push(account.json.account.id);
    }
  }
});

after(async () => {
  await t.destroy();
});

async function assertNoPlaintextAtRest(when: string): Promise<void> {
  const raw = await rawDatabaseBytes(t.db);
  // Positive control: the reader sees the data (ids are stored in clear), so "not found" means something.
  for (const id of [...customerIds, 'cus_demo_alice', 'acc_demo_bob_usd']) {
    assert.ok(raw.includes(Buffer.from(id)), `${when}: the raw ${backend} data contains the id ${id}`);
  }
  assert.deepEqual(findPlaintext(raw, PLAINTEXT_PII), [], `${when}: plaintext PII found at rest`);
}

test('no name, document reference or account number is stored in plaintext (app running)', async () => {
  // While the app runs, recent writes may live only in the SQLite WAL: it is read too.
  await assertNoPlaintextAtRest('while running');
});

test('the API returns names (decrypted), but never a document reference', async () => {
  for (const [i, id] of customerIds.entries()) {
    const res = await call('GET', `/v1/customers/${id}`);
    assert.equal(res.status, 200);
    assert.deepEqual(Object.keys(res.json.customer).sort(), [
      'country',
      'createdAt',
      'id',
      'kycStatus',
      'kycTier',
      'name',
    ]);
    assert.equal(res.json.customer.name, CUSTOMERS[i]!.name);
  }
  const all = await listAll(t, '/v1/customers', 'customers');
  for (const c of all) assert.ok(!('documentReference' in c), `customer ${c.id} has no documentReference`);
});

test('account numbers come back only masked, on every account route', async () => {
  for (const id of accountIds) {
    const res = await call('GET', `/v1/accounts/${id}`);
    assert.equal(res.status, 200);
    assert.match(res.json.account.maskedAccountNumber, /^\*\*\*\* \*\*\*\* \*\*\*\* \d{4}$/);
    for (const key of Object.keys(res.json.account)) {
      assert.ok(!/^(accountNumber|number)$/i.test(key), `account ${id} exposes ${key}`);
    }
    const balance = await call('GET', `/v1/accounts/${id}/balance`);
    assert.equal(balance.status, 200);
  }
  const alice = await call('GET', '/v1/accounts/acc_demo_alice_usd');
  assert.equal(alice.json.account.maskedAccountNumber, '**** **** **** 5678');
  const bob = await call('GET', '/v1/accounts/acc_demo_bob_usd');
  assert.equal(bob.json.account.maskedAccountNumber, '**** **** **** 5432');
  responses.push(await call('GET', '/v1/accounts?limit=500'));
});

test('no response ever carried a document reference or a full account number; audit metadata carries no PII', async () => {
  responses.push(await call('GET', '/v1/customers?limit=500'));
  responses.push(await call('GET', '/v1/ledger?limit=500'));
  responses.push(await call('GET', '/v1/audit-logs?limit=500'));
  for (const res of responses) {
    assert.deepEqual(foundIn(res.body, NEVER_RETURNED), [], `a response leaked: ${res.body.slice(0, 200)}`);
  }
  // The audit log is read by auditors who must not see personal data: ids, amounts and decisions only.
  const audit = await listAll(t, '/v1/audit-logs', 'logs');
  assert.ok(audit.length > 0);
  const auditText = JSON.stringify(audit);
  assert.deepEqual(foundIn(auditText, PLAINTEXT_PII), [], 'PII in the audit log');
});

test('nothing in plaintext after a clean shutdown either (WAL checkpointed into the main file)', async () => {
  await t.close();
  await assertNoPlaintextAtRest('after close');
});
