import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import Database from 'better-sqlite3';
import pg from 'pg';
import { createApiKey } from '../../src/app/api-keys.ts';
import { SYSTEM_ACTOR } from '../../src/app/services.ts';
import type { Role } from '../../src/domain/types.ts';
import { backend, type TestApp, type TestDatabase, type TestResponse } from './harness.ts';

/**
 * Set-up helpers shared by the payment tests. Everything goes through the public HTTP API as the demo admin
 * (customers, accounts) except API key creation, which has no route, and the raw-database helpers, which
 * exist only for states the API cannot (yet) produce and for tampering.
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
 * a tamper test closes the app first so the change is seen as data at rest.
 */
export async function rawSql(db: TestDatabase, sql: string, params: unknown[] = []): Promise<number> {
  return onRawDb(
    db,
    (conn) => conn.prepare(sql).run(...params).changes,
    async (client) => (await client.query(numbered(sql), params)).rowCount ?? 0,
  );
}

/** Rows from the test database, bypassing the app (both backends, `?` placeholders). */
export async function rawRows(db: TestDatabase, sql: string, params: unknown[] = []): Promise<Json[]> {
  return onRawDb(
    db,
    (conn) => conn.prepare(sql).all(...params) as Json[],
    async (client) => (await client.query(numbered(sql), params)).rows,
  );
}

/** A connection of the test's backend of its own, opened for one call and closed after it. */
async function onRawDb<T>(
  db: TestDatabase,
  onSqlite: (conn: Database.Database) => T,
  onPostgres: (client: pg.Client) => Promise<T>,
): Promise<T> {
  if (backend === 'sqlite') {
    const conn = new Database(db.sqlitePath!);
    try {
      conn.pragma('busy_timeout = 5000');
      return onSqlite(conn);
    } finally {
      conn.close();
    }
  }
  const client = new pg.Client({ connectionString: db.url });
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

export async function setKycStatus(
  db: TestDatabase,
  customerId: string,
  status: 'verified' | 'manual_review' | 'rejected',
): Promise<void> {
  const changed = await rawSql(db, 'UPDATE customers SET kyc_status = ? WHERE id = ?', [status, customerId]);
  assert.equal(changed, 1);
}

export const sum = (values: number[]): number => values.reduce((a, b) => a + b, 0);
