import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after } from 'node:test';
import Database from 'better-sqlite3';
import pg from 'pg';
import { createApiKey } from '../../src/app/api-keys.ts';
import { SYSTEM_ACTOR } from '../../src/app/services.ts';
import { requestFingerprint } from '../../src/domain/idempotency.ts';
import type { Mode } from '../../src/domain/sandbox.ts';
import type { Role } from '../../src/domain/types.ts';
import { KEY_RECORD_SETTING, KeyMismatchError } from '../../src/security/key-fingerprints.ts';
import { SANDBOX_SCHEMA, sandboxPath } from '../../src/storage/open-store.ts';
import {
  backend,
  createTestDatabase,
  startTestApp,
  type TestApp,
  type TestDatabase,
  type TestResponse,
} from './harness.ts';

/**
 * Set-up helpers shared by the payment tests. Everything goes through the public HTTP API as the demo admin
 * (customers, accounts) except API key creation, which has no route, the raw-database helpers, which
 * exist only for states the API cannot (yet) produce and for tampering, and, at the end, the helpers of tests
 * that start apps on databases of their own (key checks) or line commands up in one batch (the committer).
 */

/** Response JSON: its shape is what the tests assert, so it is not typed ahead of them. */
// biome-ignore lint/suspicious/noExplicitAny: parsed JSON bodies, checked field by field by assertions
export type Json = any;

/** Anything that can send a request: a TestApp (inject) or a spawned server (fetch) wrapped the same way. */
export interface Client {
  request: TestApp['request'];
}

export interface CustomerInput {
  name?: string;
  country?: string;
  documentReference?: string;
}

export async function createCustomer(c: Client, input: CustomerInput = {}): Promise<Json> {
  const body = {
    name: input.name ?? `Test Customer ${randomUUID().slice(0, 8)}`,
    country: input.country ?? 'US',
    documentReference: input.documentReference ?? `DOC-${randomUUID()}`,
  };
  const res = await c.request('POST', '/v1/customers', { body });
  assert.equal(res.status, 201, `create customer: ${res.body}`);
  return res.json.customer;
}

export async function createAccount(
  c: Client,
  customerId: string,
  currency = 'USD',
  initialBalanceCents = 0,
): Promise<Json> {
  const res = await c.request('POST', '/v1/accounts', {
    body: { customerId, currency, initialBalanceCents },
  });
  assert.equal(res.status, 201, `create account: ${res.body}`);
  return res.json.account;
}

export interface Party {
  customer: Json;
  account: Json;
  customerId: string;
  accountId: string;
}

/** A customer with one account holding `balance` (an opening-balance posting from the system account). */
export async function party(
  c: Client,
  options: { country?: string; currency?: string; balance?: number; name?: string } = {},
): Promise<Party> {
  const customer = await createCustomer(c, {
    country: options.country ?? 'US',
    ...(options.name === undefined ? {} : { name: options.name }),
  });
  const account = await createAccount(c, customer.id, options.currency ?? 'USD', options.balance ?? 0);
  return { customer, account, customerId: customer.id, accountId: account.id };
}

export interface PaymentBody {
  sourceAccountId: string;
  destinationAccountId: string;
  amountCents: number;
  currency: string;
  note?: string;
  metadata?: Record<string, string>;
}

/** A payment body in USD from one party's account to another's. */
export const usd = (
  from: Party,
  to: Party,
  amountCents: number,
  extra: Partial<PaymentBody> = {},
): PaymentBody => ({
  sourceAccountId: from.accountId,
  destinationAccountId: to.accountId,
  amountCents,
  currency: 'USD',
  ...extra,
});

/** POST /v1/payments with an Idempotency-Key (a fresh one unless given). */
export async function pay(
  c: Client,
  body: PaymentBody | Record<string, unknown> | string,
  options: { key?: string; token?: string } = {},
): Promise<TestResponse & { key: string }> {
  const key = options.key ?? `key-${randomUUID()}`;
  const res = await c.request('POST', '/v1/payments', {
    body,
    idempotencyKey: key,
    ...(options.token === undefined ? {} : { token: options.token }),
  });
  return { ...res, key };
}

export async function balanceOf(c: Client, accountId: string): Promise<Json> {
  const res = await c.request('GET', `/v1/accounts/${accountId}/balance`);
  assert.equal(res.status, 200, res.body);
  return res.json.account;
}

/** The seed's review threshold: a payment of this amount is held for review (202). */
export const REVIEW_AMOUNT = 250_000;

/** A sender with 1,000,000 cents, a receiver with none, and a payment of theirs held for review. */
export async function heldPayment(c: Client): Promise<{ sender: Party; receiver: Party; payment: Json }> {
  const sender = await party(c, { balance: 1_000_000 });
  const receiver = await party(c, { balance: 0 });
  const res = await pay(c, usd(sender, receiver, REVIEW_AMOUNT));
  assert.equal(res.status, 202, res.body);
  assert.equal(res.json.payment.status, 'manual_review');
  return { sender, receiver, payment: res.json.payment };
}

/**
 * What a refused payment request must leave unchanged: the number of payments and of audit entries, and the
 * balances of the given parties' accounts.
 */
export async function paymentsState(c: Client, parties: Party[]): Promise<Json> {
  return {
    payments: (await allPayments(c)).length,
    audit: (await auditLogs(c)).length,
    balances: await Promise.all(parties.map((p) => balanceOf(c, p.accountId))),
  };
}

/** A new API key with the given role; returns the secret to use as a bearer token, and the key id. */
export async function apiKey(
  t: TestApp,
  role: Role,
  name = `test ${role} key`,
): Promise<{ token: string; id: string }> {
  const { key, secret } = await createApiKey(t.app.services, SYSTEM_ACTOR, role, name);
  return { token: secret, id: key.id };
}

/** Follows `nextCursor` until `hasMore` is false; returns every item under `listKey`. */
export async function listAll(c: Client, path: string, listKey: string, limit = 500): Promise<Json[]> {
  const items: Json[] = [];
  let cursor: string | null = null;
  for (;;) {
    const sep = path.includes('?') ? '&' : '?';
    const url: string = `${path}${sep}limit=${limit}${cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`}`;
    const res = await c.request('GET', url);
    assert.equal(res.status, 200, `${url}: ${res.body}`);
    items.push(...res.json[listKey]);
    if (!res.json.hasMore) return items;
    cursor = res.json.nextCursor;
    assert.ok(cursor, 'hasMore without nextCursor');
  }
}

export const auditLogs = (c: Client) => listAll(c, '/v1/audit-logs', 'logs');
export const allPayments = (c: Client) => listAll(c, '/v1/payments', 'payments');
export const allAccounts = (c: Client) => listAll(c, '/v1/accounts', 'accounts');

export async function ledgerVerify(c: Client): Promise<Json> {
  const res = await c.request('GET', '/v1/ledger/verify');
  assert.equal(res.status, 200, res.body);
  return res.json.verification;
}

export async function auditVerify(c: Client): Promise<{ status: number; verification: Json }> {
  const res = await c.request('GET', '/v1/audit-logs/verify');
  return { status: res.status, verification: res.json?.verification };
}

/** Asserts both verifiers report a consistent ledger and an intact audit chain. */
export async function assertBooksValid(c: Client): Promise<void> {
  const ledger = await ledgerVerify(c);
  assert.equal(ledger.valid, true, `ledger: ${JSON.stringify(ledger)}`);
  const audit = await auditVerify(c);
  assert.equal(audit.status, 200, `audit verify: ${JSON.stringify(audit)}`);
  assert.equal(audit.verification.valid, true);
}

/**
 * Raw SQL on the test database, for what the API cannot do (set a KYC status before the KYC route exists)
 * and for tampering. `?` placeholders on both backends. On SQLite the statement runs on its own connection;
 * a tamper test closes the app first so the change is seen as data at rest. It works on the test mode's store
 * (the sandbox file or schema), where the demo key's data is.
 */
export async function rawSql(
  db: TestDatabase,
  sql: string,
  params: unknown[] = [],
  mode: Mode = 'test',
): Promise<number> {
  return onRawDb(
    db,
    mode,
    (conn) => conn.prepare(sql).run(...params).changes,
    async (client) => (await client.query(numbered(sql), params)).rowCount ?? 0,
  );
}

/** Rows from the test database, bypassing the app (both backends, `?` placeholders). */
export async function rawRows(
  db: TestDatabase,
  sql: string,
  params: unknown[] = [],
  mode: Mode = 'test',
): Promise<Json[]> {
  return onRawDb(
    db,
    mode,
    (conn) => conn.prepare(sql).all(...params) as Json[],
    async (client) => (await client.query(numbered(sql), params)).rows,
  );
}

/** A connection of the test's backend of its own, opened for one call and closed after it. */
async function onRawDb<T>(
  db: TestDatabase,
  mode: Mode,
  onSqlite: (conn: Database.Database) => T,
  onPostgres: (client: pg.Client) => Promise<T>,
): Promise<T> {
  if (backend === 'sqlite') {
    const conn = new Database(mode === 'test' ? sandboxPath(db.sqlitePath!) : db.sqlitePath!);
    try {
      conn.pragma('busy_timeout = 5000');
      return onSqlite(conn);
    } finally {
      conn.close();
    }
  }
  const client = new pg.Client({
    connectionString: db.url,
    ...(mode === 'test' ? { options: `-c search_path=${SANDBOX_SCHEMA}` } : {}),
  });
  await client.connect();
  try {
    return await onPostgres(client);
  } finally {
    await client.end();
  }
}

/** `?` placeholders as PostgreSQL's `$1, $2, ...`. */
function numbered(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}

/**
 * Writes an idempotency record straight into the database, as an older build left it (a plaintext response
 * body, from before bodies were sealed): the request it answers is `method path` with `body`.
 */
export async function insertIdempotencyRecord(
  db: TestDatabase,
  record: {
    apiKeyId: string;
    key: string;
    request: { method: string; path: string; body: unknown };
    statusCode: number;
    responseBody: string;
    resourceId: string;
    createdAtMs: number;
    expiresAtMs: number;
  },
): Promise<void> {
  const { method, path, body } = record.request;
  const changed = await rawSql(
    db,
    `INSERT INTO idempotency_records (api_key_id, idempotency_key, fingerprint, status_code, response_body,
       resource_id, created_at_ms, expires_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    [
      record.apiKeyId,
      record.key,
      requestFingerprint(method, path, body),
      record.statusCode,
      record.responseBody,
      record.resourceId,
      record.createdAtMs,
      record.expiresAtMs,
    ],
  );
  assert.equal(changed, 1);
}

/** The id of the API key that wrote the idempotency record under `key`. */
export async function idempotencyRecordOwner(db: TestDatabase, key: string): Promise<string> {
  const [row] = await rawRows(db, 'SELECT api_key_id FROM idempotency_records WHERE idempotency_key = ?', [
    key,
  ]);
  assert.ok(row, `an idempotency record under ${key}`);
  return row.api_key_id;
}

export async function setKycStatus(
  db: TestDatabase,
  customerId: string,
  status: 'verified' | 'manual_review' | 'rejected',
): Promise<void> {
  const changed = await rawSql(db, 'UPDATE customers SET kyc_status = ? WHERE id = ?', [status, customerId]);
  assert.equal(changed, 1);
}

export const sum = (values: number[]): number => values.reduce((a, b) => a + b, 0);

/**
 * Fresh test databases for a file whose tests start apps of their own on them: call once at the top of the
 * file; each call of the function it returns creates one, and all are dropped after the file's tests.
 */
export function databasesForFile(): () => Promise<TestDatabase> {
  const databases: TestDatabase[] = [];
  after(async () => {
    for (const db of databases) await db.drop();
  });
  return async () => {
    const db = await createTestDatabase();
    databases.push(db);
    return db;
  };
}

/** The record of the keys the database's data was written with (undefined before a first start). */
export async function keyRecord(db: TestDatabase): Promise<Json> {
  const [row] = await rawRows(db, 'SELECT value FROM settings WHERE key = ?', [KEY_RECORD_SETTING]);
  return row === undefined ? undefined : JSON.parse(row.value);
}

/** Starts the app on `db` with `env`, expecting it to refuse with a one-line KeyMismatchError, which it returns. */
export async function refusedStart(db: TestDatabase, env: Record<string, string>): Promise<KeyMismatchError> {
  let app: TestApp | undefined;
  try {
    app = await startTestApp({ db, env });
  } catch (error) {
    assert.ok(error instanceof KeyMismatchError, `a KeyMismatchError, got ${String(error)}`);
    assert.ok(!error.message.includes('\n'), 'one line');
    return error;
  }
  await app.close();
  assert.fail('the start was expected to be refused');
}

/**
 * Holds the app's committer with a command alone in its batch, so that what is submitted next queues up behind
 * it and forms ONE batch when `release` lets the blocker finish. `queued(n)` waits until `n` commands wait
 * behind the blocker (a command that reads before it submits is queued only later), and asserts they do.
 */
export async function holdCommitter(
  t: TestApp,
): Promise<{ release: () => Promise<void>; queued: (n: number) => Promise<void> }> {
  const { committer } = t.app.services;
  let open!: () => void;
  const gate = new Promise<void>((resolve) => {
    open = resolve;
  });
  let running!: () => void;
  const started = new Promise<void>((resolve) => {
    running = resolve;
  });
  const blocker = committer.submit(async () => {
    running();
    await gate;
  });
  await started;
  return {
    release: async () => {
      open();
      await blocker;
    },
    queued: async (n) => {
      for (let i = 0; i < 2_000 && committer.queuedCommands < n; i++)
        await new Promise((r) => setTimeout(r, 2));
      // At least n: a background job (the audit checkpointer, the sweep) may queue one of its own meanwhile.
      assert.ok(committer.queuedCommands >= n, `${n} commands wait behind the blocker`);
    },
  };
}
