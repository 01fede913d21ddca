import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import Database from 'better-sqlite3';
import pg from 'pg';
import { createApiKey } from '../src/app/api-keys.ts';
import { SYSTEM_ACTOR } from '../src/app/services.ts';
import type { Mode } from '../src/domain/sandbox.ts';
import { hashSecret } from '../src/security/api-keys.ts';
import { PiiCipher } from '../src/security/pii-cipher.ts';
import { MIGRATIONS, migrationSql } from '../src/storage/migrations.ts';
import { SANDBOX_SCHEMA, sandboxPath } from '../src/storage/open-store.ts';
import { migrateSqlite } from '../src/storage/sqlite.ts';
import { apiKey, databasesForFile, party, pay, REVIEW_AMOUNT, usd } from './support/fixtures.ts';
import { runMain } from './support/foundation.ts';
import { backend, startTestApp, TEST_DATA_KEY, type TestDatabase, testEnv } from './support/harness.ts';

/**
 * Migrations on an existing database: a database left at schema version 1 (with data in it) is brought to the
 * latest version by a normal start, its data intact and usable; a second start applies nothing; and a database
 * from a newer build (a version this build does not know) is refused with a clear error instead of being
 * served by code that does not understand it.
 */
const LEGACY = {
  apiKeyId: 'key_legacy_auditor',
  secret: 'sk_legacy_auditor_secret_from_schema_v1',
  customerId: 'cus_legacy_v1',
  name: 'Leopoldine Legacy-Vanderbilt',
  documentReference: 'LEGACY-DOC-000017',
  setting: ['legacy.marker', 'kept-from-v1'] as const,
};
const LATEST = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/** Direct access to the test database, bypassing the app (both backends, `?` placeholders). */
interface RawDb {
  migrate(targetVersion?: number): Promise<number[]>;
  run(sql: string, params?: unknown[]): Promise<void>;
  all<T>(sql: string, params?: unknown[]): Promise<T[]>;
  close(): Promise<void>;
}

/** The live store (what an older build wrote: it had no modes), or the sandbox's (the demo key's data). */
async function openRaw(db: TestDatabase, mode: Mode = 'live'): Promise<RawDb> {
  if (backend === 'sqlite') {
    const conn = new Database(mode === 'live' ? db.sqlitePath! : sandboxPath(db.sqlitePath!));
    conn.pragma('journal_mode = WAL');
    return {
      migrate: async (target) => migrateSqlite(conn, target),
      run: async (sql, params = []) => void conn.prepare(sql).run(...params),
      all: async <T>(sql: string, params: unknown[] = []) => conn.prepare(sql).all(...params) as T[],
      close: async () => void conn.close(),
    };
  }
  const { migratePostgres } = await import('../src/storage/postgres.ts');
  const pool = new pg.Pool({
    connectionString: db.url,
    max: 2,
    ...(mode === 'live' ? {} : { options: `-c search_path=${SANDBOX_SCHEMA}` }),
  });
  const numbered = (sql: string) => {
    let n = 0;
    return sql.replace(/\?/g, () => `$${++n}`);
  };
  return {
    migrate: (target) => migratePostgres(pool, target),
    run: async (sql, params = []) => void (await pool.query(numbered(sql), params)),
    all: async <T>(sql: string, params: unknown[] = []) =>
      (await pool.query(numbered(sql), params)).rows as T[],
    close: () => pool.end(),
  };
}

interface MigrationRow {
  version: number;
  name: string;
  applied_at_ms: number | string;
}

async function schemaMigrations(db: TestDatabase): Promise<MigrationRow[]> {
  const raw = await openRaw(db);
  try {
    const rows = await raw.all<MigrationRow>(
      'SELECT version, name, applied_at_ms FROM schema_migrations ORDER BY version',
    );
    return rows.map((r) => ({ ...r, version: Number(r.version), applied_at_ms: String(r.applied_at_ms) }));
  } finally {
    await raw.close();
  }
}

before(() => {
  // Migration versions are consecutive from 1: a gap or a duplicate is a release mistake.
  assert.deepEqual(
    MIGRATIONS.map((m) => m.version),
    MIGRATIONS.map((_, i) => i + 1),
  );
});

const freshDatabase = databasesForFile();

test('a database at schema version 1 is migrated to the latest on start, its data intact', async (t) => {
  const db = await freshDatabase();
  const raw = await openRaw(db);
  assert.deepEqual(await raw.migrate(1), [1], 'only version 1 is applied');
  // Rows written by a version-1 build: an API key, a setting, a customer with encrypted PII.
  const cipher = new PiiCipher([Buffer.from(TEST_DATA_KEY, 'base64')]);
  const now = Date.now();
  await raw.run(
    'INSERT INTO api_keys (id, name, role, secret_hash, created_at_ms, revoked_at_ms) VALUES (?, ?, ?, ?, ?, NULL)',
    [LEGACY.apiKeyId, 'legacy auditor', 'auditor', hashSecret(LEGACY.secret), now],
  );
  await raw.run('INSERT INTO settings (key, value) VALUES (?, ?)', [...LEGACY.setting]);
  await raw.run(
    'INSERT INTO customers (id, name_enc, country, kyc_status, document_index, document_enc, created_at_ms, updated_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    [
      LEGACY.customerId,
      cipher.encrypt(LEGACY.name, 'customer.name'),
      'NL',
      'verified',
      cipher.blindIndex(LEGACY.documentReference, 'customer.documentReference'),
      cipher.encrypt(LEGACY.documentReference, 'customer.documentReference'),
      now,
      now,
    ],
  );
  await raw.close();
  assert.deepEqual(
    (await schemaMigrations(db)).map((r) => r.version),
    [1],
  );

  const app = await startTestApp({ db });
  // What an older build wrote is live data (it had no modes): a live admin key reads and writes it.
  const admin = (await createApiKey(app.app.modes.live, SYSTEM_ACTOR, 'admin', 'live admin')).secret;
  try {
    // The old key still authenticates, and reads tables that only the later migrations created.
    for (const path of ['/v1/audit-logs', '/v1/payments', '/v1/ledger/verify']) {
      const res = await app.request('GET', path, { token: LEGACY.secret });
      assert.equal(res.status, 200, `${path} with the v1 key: ${res.body.slice(0, 200)}`);
    }
    // The old customer decrypts, and its blind index still finds duplicates.
    const customer = await app.request('GET', `/v1/customers/${LEGACY.customerId}`, { token: admin });
    assert.equal(customer.status, 200, customer.body);
    assert.equal(customer.json.customer.name, LEGACY.name);
    const duplicate = await app.request('POST', '/v1/customers', {
      token: admin,
      body: { name: 'Someone', country: 'NL', documentReference: LEGACY.documentReference },
    });
    assert.equal(duplicate.status, 409, duplicate.body);
    // And the migrated database takes new writes: an account with an opening balance, a payment.
    const account = await app.request('POST', '/v1/accounts', {
      token: admin,
      body: { customerId: LEGACY.customerId, currency: 'EUR', initialBalanceCents: 10_000 },
    });
    assert.equal(account.status, 201, account.body);
    const verify = await app.request('GET', '/v1/ledger/verify', { token: admin });
    assert.equal(verify.json.verification.valid, true);
  } finally {
    await app.close();
  }

  const migrated = await schemaMigrations(db);
  assert.deepEqual(
    migrated.map((r) => [r.version, r.name]),
    MIGRATIONS.map((m) => [m.version, m.name]),
    'schema_migrations lists every version exactly once, in order',
  );
  const reopened = await openRaw(db);
  try {
    const setting = await reopened.all<{ value: string }>('SELECT value FROM settings WHERE key = ?', [
      LEGACY.setting[0],
    ]);
    assert.deepEqual(
      setting.map((r) => r.value),
      [LEGACY.setting[1]],
      'the v1 settings row is intact',
    );
  } finally {
    await reopened.close();
  }

  await t.test('starting again applies nothing new', async () => {
    const again = await startTestApp({ db });
    const res = await again.request('GET', `/v1/customers/${LEGACY.customerId}`, { token: admin });
    assert.equal(res.status, 200);
    await again.close();
    assert.deepEqual(
      await schemaMigrations(db),
      migrated,
      'schema_migrations unchanged, applied_at_ms included',
    );
  });
});

test('a database from a newer build (unknown schema version) is refused with a clear error', async () => {
  const db = await freshDatabase();
  const raw = await openRaw(db);
  await raw.migrate();
  await raw.run('INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?, ?, ?)', [
    LATEST + 1,
    'from the future',
    Date.now(),
  ]);
  await raw.close();
  const before = await schemaMigrations(db);

  await assert.rejects(startTestApp({ db }), (error: Error) => {
    assert.match(
      error.message,
      new RegExp(`schema version ${LATEST + 1} is newer than this build \\(${LATEST}\\)`),
    );
    return true;
  });

  // As a real process: a non-zero exit, and the reason on stderr.
  const result = await runMain({ ...process.env, ...testEnv(db.url), PORT: '0', HOST: '127.0.0.1' });
  assert.equal(result.signal, null, `exited by itself:\n${result.stderr}`);
  assert.notEqual(result.status, 0, result.stderr);
  assert.match(result.stderr, /newer than this build/);

  assert.deepEqual(await schemaMigrations(db), before, 'the refused database is left as it was');
});

test('two starts on an empty database: every version recorded once', async () => {
  const db = await freshDatabase();
  for (let i = 0; i < 2; i++) {
    const app = await startTestApp({ db });
    await app.close();
  }
  const rows = await schemaMigrations(db);
  assert.deepEqual(
    rows.map((r) => r.version),
    MIGRATIONS.map((m) => m.version),
  );
});

test("migration 17's backfill computes the running balances and hold totals the live code writes", async () => {
  const db = await freshDatabase();
  const app = await startTestApp({ db });
  const compliance = (await apiKey(app, 'compliance')).token;
  const [a, b] = [await party(app, { balance: 900_000 }), await party(app, { balance: 10_000 })];
  const held: string[] = [];
  for (const [from, to, amountCents] of [
    [a, b, 1_000],
    [b, a, 500],
    [a, b, REVIEW_AMOUNT],
    [a, b, REVIEW_AMOUNT],
    [b, a, 2_000],
    [a, b, REVIEW_AMOUNT],
  ] as const) {
    const res = await pay(app, usd(from, to, amountCents));
    assert.ok(res.status === 201 || res.status === 202, res.body);
    if (res.status === 202) held.push(res.json.payment.id);
  }
  for (const [id, action] of [
    [held[0], 'approve'],
    [held[1], 'reject'],
  ] as const) {
    const res = await app.request('POST', `/v1/payments/${id}/${action}`, {
      token: compliance,
      idempotencyKey: `${action}-${id}`,
      body: {},
    });
    assert.ok(res.status === 200 || res.status === 201, res.body);
  }
  await app.close();

  const raw = await openRaw(db, 'test');
  try {
    const snapshot = async () => ({
      entries: await raw.all<Record<string, unknown>>(
        'SELECT id, balance_after_cents FROM ledger_entries ORDER BY seq',
      ),
      holds: await raw.all<Record<string, unknown>>(
        'SELECT id, placed_total_after_cents, resolved_total_after_cents FROM holds ORDER BY seq',
      ),
    });
    const written = await snapshot();
    assert.ok(written.entries.length >= 10 && written.holds.length === 3);
    if (backend === 'postgres') {
      // The state the migration found: the columns added, nullable, and empty.
      await raw.run('ALTER TABLE ledger_entries ALTER COLUMN balance_after_cents DROP NOT NULL');
      await raw.run('ALTER TABLE holds ALTER COLUMN placed_total_after_cents DROP NOT NULL');
    }
    await raw.run('UPDATE ledger_entries SET balance_after_cents = NULL');
    await raw.run('UPDATE holds SET placed_total_after_cents = NULL, resolved_total_after_cents = NULL');
    const sql = migrationSql(MIGRATIONS.find((m) => m.version === 17)!, backend);
    const backfills = sql.split(';').filter((s) => s.trim().startsWith('UPDATE'));
    assert.equal(backfills.length, 3);
    for (const statement of backfills) await raw.run(statement);
    if (backend === 'postgres') {
      await raw.run('ALTER TABLE ledger_entries ALTER COLUMN balance_after_cents SET NOT NULL');
      await raw.run('ALTER TABLE holds ALTER COLUMN placed_total_after_cents SET NOT NULL');
    }
    const normalise = (rows: Record<string, unknown>[]) =>
      rows.map((r) => Object.values(r).map((v) => (v === null ? null : String(v))));
    const backfilled = await snapshot();
    assert.deepEqual(normalise(backfilled.entries), normalise(written.entries));
    assert.deepEqual(normalise(backfilled.holds), normalise(written.holds));
  } finally {
    await raw.close();
  }
  await (await startTestApp({ db })).destroy();
});
