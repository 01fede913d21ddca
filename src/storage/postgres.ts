import { createHash } from 'node:crypto';
import pg from 'pg';
import { assert, InvariantViolation } from '../domain/assert.ts';
import { MIGRATIONS, migrationSql } from './migrations.ts';
import { SANDBOX_SCHEMA } from './sandbox-sql.ts';
import { eventLoopSlices, type Row, type SqlExecutor, SqlReads, SqlTx } from './sql-store.ts';
import type { Command, CommandOutcome, Store } from './store.ts';
import { batchRowsFailed } from './write-behind.ts';

/**
 * The PostgreSQL adapter, for several stateless API processes over one database. Concurrency control is
 * pessimistic locking in one global order, which makes batches from any number of processes deadlock-free:
 *
 *   1. advisory locks on the batch's idempotency keys and named resources (sorted): two processes given the
 *      same key at the same moment serialise here, and the second then finds the first's committed record
 *      and replays it; two batches that may both create one thing (a currency's funding account) likewise;
 *   2. row locks on the batch's accounts (SELECT ... ORDER BY id FOR UPDATE, which also reads them for the
 *      batch: SqlTx.prefetch): no lost update, no overdraft;
 *   3. the audit chain head, taken when the batch appends its audit entries just before COMMIT, and held to
 *      commit: one chain, appended in commit order. Taken that late, it lets one process apply several
 *      batches at once (the committer's batchesInFlightMax), each on its own connection.
 *
 * So a command must not wait for any other lock after step 2: every existing row it locks is in its
 * `accountIds`, and every row it may insert that another batch could insert too is covered by a name.
 *
 * Serialisation failures and deadlocks (40001, 40P01) are still retried with jittered backoff, as a safety
 * net and because PostgreSQL-compatible distributed engines (CockroachDB, YugabyteDB) raise them by design.
 * Durability: PostgreSQL's default synchronous_commit=on flushes the WAL before COMMIT returns.
 */
export interface PostgresOptions {
  url: string;
  clock: () => number;
  poolMax: number;
  /**
   * The schema every statement works in (created if missing), else the connection's default. The sandbox's
   * store uses its own (src/storage/open-store.ts): the same tables, apart.
   */
  schema?: string;
}

const RETRYABLE_CODES = new Set(['40001', '40P01']);
const BATCH_ATTEMPTS_MAX = 8;
const RETRY_BACKOFF_BASE_MS = 5;
/** How long a long command runs between turns of the event loop (Tx.pace), as SQLite's BATCH_SLICE_MS. */
const PACE_SLICE_MS = 8;
const MIGRATION_LOCK_KEY = 7_261_114_591; // any constant: one migration runner at a time across processes

interface PreparedText {
  name: string;
  text: string;
}
const prepared = new Map<string, PreparedText>();
const PREPARED_PARAMS_MAX = 64;
/**
 * The statement as a named prepared statement: `?` placeholders rewritten to PostgreSQL's `$1, $2, ...`, and a
 * name derived from the text. node-postgres prepares a named statement once per connection and afterwards
 * only binds and executes it, so PostgreSQL skips parsing and planning, which was most of its CPU per payment.
 * The set of statement texts is bounded (multi-row statements are chunked), so is each connection's cache.
 */
function toPg(sql: string): PreparedText | { text: string } {
  let out = prepared.get(sql);
  if (out === undefined) {
    let n = 0;
    const text = sql.replace(/\?/g, () => `$${++n}`);
    // Multi-row statements come in many sizes: only the small ones are kept prepared, so each connection
    // holds a few hundred statements at most; a large one is parsed each time (once per batch).
    if (n > PREPARED_PARAMS_MAX) return { text };
    out = { name: `s${createHash('sha256').update(text).digest('hex').slice(0, 24)}`, text };
    prepared.set(sql, out);
  }
  return out;
}

function executor(q: pg.Pool | pg.PoolClient): SqlExecutor {
  const query = (sql: string, params: unknown[]) => q.query<Row>({ ...toPg(sql), values: params });
  return {
    all: async (sql, params = []) => (await query(sql, params)).rows,
    get: async (sql, params = []) => (await query(sql, params)).rows[0],
    run: async (sql, params = []) => (await query(sql, params)).rowCount ?? 0,
  };
}

/** A 64-bit advisory lock key from a string (collisions only cost a little extra serialisation). */
function advisoryKey(value: string): string {
  return createHash('sha256').update(value).digest().readBigInt64BE(0).toString();
}

/**
 * Where the store's tables are must be what its mode says: the sandbox's schema for test data, never it for
 * live data (a database role named like it, or a search_path in DATABASE_URL, could otherwise make the two
 * modes one). Checked once at open; the reset checks again before it empties anything (sandbox-sql.ts).
 */
async function checkSchema(pool: pg.Pool, schema: string | undefined): Promise<void> {
  // Before the migrations: the sandbox's schema may not exist yet, but where the connection looks first does.
  const path =
    (await pool.query<{ p: string }>("SELECT current_setting('search_path') AS p")).rows[0]?.p ?? '';
  const current = (await pool.query<{ s: string | null }>('SELECT current_schema() AS s')).rows[0]?.s ?? null;
  const user = (await pool.query<{ u: string }>('SELECT current_user AS u')).rows[0]?.u ?? '';
  const named = path.split(',')[0]?.trim().replace(/^"|"$/g, '') ?? '';
  const first = named === '$user' ? user : named;
  const expected =
    schema === undefined ? current !== SANDBOX_SCHEMA && first !== SANDBOX_SCHEMA : first === schema;
  if (!expected) {
    throw new Error(
      `the ${schema === undefined ? 'live' : 'sandbox'} store's schema is ${current}: DATABASE_URL's search_path (or a role named ${SANDBOX_SCHEMA}) must not put live data in the sandbox's schema`,
    );
  }
}

/**
 * A pooled connection for a transaction. A connection that drops mid-query fails the query (the caller's
 * error) and also emits 'error' on the client, which the pool only listens to while the client is idle: without
 * a listener of ours that second report would be an uncaught exception, ending the process.
 */
async function checkOut(pool: pg.Pool): Promise<pg.PoolClient> {
  const client = await pool.connect();
  client.on('error', ignoreReported);
  const release = client.release.bind(client);
  client.release = (destroy?: boolean | Error) => {
    client.off('error', ignoreReported);
    release(destroy);
  };
  return client;
}

function ignoreReported(): void {
  // Already reported to the caller through the failed query.
}

/** `schema`: created first when missing (the pool's connections already have it as their search_path). */
export async function migratePostgres(
  pool: pg.Pool,
  targetVersion = Number.POSITIVE_INFINITY,
  schema?: string,
): Promise<number[]> {
  const client = await checkOut(pool);
  const applied: number[] = [];
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
    if (schema !== undefined) {
      assert(/^[a-z_][a-z0-9_]{0,62}$/.test(schema), 'a schema name is a plain identifier');
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    }
    await client.query(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)',
    );
    const done = new Set(
      (await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map(
        (r) => r.version,
      ),
    );
    const newest = Math.max(0, ...done);
    const known = MIGRATIONS[MIGRATIONS.length - 1]!.version;
    if (newest > known)
      throw new Error(`database schema version ${newest} is newer than this build (${known})`);
    for (const migration of MIGRATIONS) {
      if (done.has(migration.version) || migration.version > targetVersion) continue;
      const sql = migrationSql(migration, 'postgres');
      if (sql.trim() !== '') await client.query(sql);
      await client.query('INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES ($1, $2, $3)', [
        migration.version,
        migration.name,
        Date.now(),
      ]);
      applied.push(migration.version);
    }
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  } finally {
    client.release();
  }
  return applied;
}

export async function openPostgresStore(options: PostgresOptions): Promise<Store> {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolMax,
    lock_timeout: 10_000,
    idle_in_transaction_session_timeout: 60_000,
    // A server that cannot be reached fails the request (503) instead of queueing it for ever.
    connectionTimeoutMillis: 5_000,
    // Every connection of the pool works in the schema, so no statement needs to name it. (An `options` in
    // DATABASE_URL would replace this: checkSchema below refuses to start then.)
    ...(options.schema === undefined ? {} : { options: `-c search_path=${options.schema}` }),
  });
  // A dropped idle connection must not crash the process; the pool replaces it.
  pool.on('error', () => {});
  await checkSchema(pool, options.schema);
  await migratePostgres(pool, Number.POSITIVE_INFINITY, options.schema);

  async function applyBatch(commands: Command<unknown>[]): Promise<CommandOutcome<unknown>[]> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await applyBatchOnce(pool, options.clock, commands);
      } catch (error) {
        const code = (error as { code?: string }).code;
        if (code === undefined || !RETRYABLE_CODES.has(code) || attempt >= BATCH_ATTEMPTS_MAX) throw error;
        const backoffMs = RETRY_BACKOFF_BASE_MS * 2 ** attempt * (0.5 + Math.random());
        await new Promise((r) => setTimeout(r, backoffMs));
      }
    }
  }

  return {
    dialect: 'postgres',
    reads: new SqlReads(executor(pool)),
    applyBatch,
    async getOrCreateSetting(key, create) {
      await pool.query('INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING', [
        key,
        create(),
      ]);
      return (await pool.query<{ value: string }>('SELECT value FROM settings WHERE key = $1', [key]))
        .rows[0]!.value;
    },
    async ping() {
      await pool.query('SELECT 1');
    },
    async close() {
      await pool.end();
    },
  };
}

async function applyBatchOnce(
  pool: pg.Pool,
  clock: () => number,
  commands: Command<unknown>[],
): Promise<CommandOutcome<unknown>[]> {
  const client = await checkOut(pool);
  // A batch of one needs no savepoint: if its command fails, the whole transaction rolls back. Unless the
  // command may undo part of its work and go on (LockHints.discardable): that needs its savepoint.
  const savepoints = commands.length > 1 || commands.some((c) => c.locks?.discardable === true);
  // A long command whose reads were all prefetched runs without I/O for a while: Tx.pace gives the event loop
  // a turn every slice, as on SQLite.
  const slices = eventLoopSlices(PACE_SLICE_MS);
  const tx = new SqlTx(
    executor(client),
    {
      name: 'postgres',
      forUpdate: ' FOR UPDATE',
      forUpdateSkipLocked: ' FOR UPDATE SKIP LOCKED',
      counterReads: 'arrays',
      pause: () => slices.pause(),
    },
    { savepoints, control: async (sql) => void (await client.query(sql)) },
  );
  const outcomes: CommandOutcome<unknown>[] = [];
  try {
    await client.query('BEGIN');
    await takeAdvisoryLocks(client, commands);
    // Step 2 of the lock order: the batch's accounts, sorted, read and locked in one statement.
    await tx.prefetch(commands.flatMap((c) => c.locks ?? []));
    for (const command of commands) {
      tx.nowMs = clock();
      let value: unknown;
      try {
        value = await command.run(tx);
      } catch (error) {
        await tx.endCommand(false);
        const code = (error as { code?: string }).code;
        // Invariant violations stop everything; serialisation failures retry the whole batch; a row of an
        // earlier command that failed to be written fails the whole attempt (write-behind.ts batchRowsFailed).
        if (
          error instanceof InvariantViolation ||
          (code !== undefined && RETRYABLE_CODES.has(code)) ||
          batchRowsFailed(error)
        )
          throw error;
        outcomes.push({ ok: false, error });
        continue;
      }
      await tx.endCommand(true);
      outcomes.push({ ok: true, value });
    }
    if (!savepoints && !outcomes[0]!.ok) {
      await client.query('ROLLBACK');
      return outcomes;
    }
    tx.nowMs = clock();
    await tx.finish();
    await client.query('COMMIT');
    return outcomes;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

/** Step 1 of the lock order (see the header comment): advisory locks on keys and names, sorted. */
async function takeAdvisoryLocks(client: pg.PoolClient, commands: Command<unknown>[]): Promise<void> {
  const keys = new Set<string>();
  for (const command of commands) {
    for (const key of command.locks?.idempotencyKeys ?? []) keys.add(advisoryKey(key));
    for (const name of command.locks?.names ?? []) keys.add(advisoryKey(`name:${name}`));
  }
  if (keys.size === 0) return;
  const sorted = [...keys].sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : BigInt(a) > BigInt(b) ? 1 : 0));
  await client.query('SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k', [sorted]);
}
