import { assert } from '../domain/assert.ts';
import type { SqlExecutor } from './sql-store.ts';

/**
 * The sandbox's reset (POST /v1/test/reset): every row of the test store's data goes, in one transaction.
 * What stays is what is not test data: the schema's version, the settings (the key fingerprints the data is
 * checked against, the development keys) and the API keys, so the partner's test keys keep working.
 *
 * The tables are listed from the database itself, so a table a later migration adds is reset too without
 * anyone remembering to name it here. Sequences are not restarted: seqs keep growing, so a cursor from
 * before the reset can never point into the new data.
 *
 * Only ever run against the test store (src/app/sandbox.ts, which holds the only call): it is what makes the
 * sandbox's data disposable. A live store has no route that reaches it.
 */
/** The PostgreSQL schema of the test data (live data stays in the connection's default schema). */
export const SANDBOX_SCHEMA = 'sandbox';

const KEPT_TABLES = new Set(['schema_migrations', 'settings', 'api_keys', 'sqlite_sequence']);

/** The single-row state tables and the row each starts with (as their migrations insert it). */
const INITIAL_ROWS = [
  "INSERT INTO audit_head (id, size, last_hash) VALUES (1, 0, 'GENESIS')",
  "INSERT INTO audit_verification (id, verified_size, verified_hash, verified_at_ms) VALUES (1, 0, 'GENESIS', 0)",
];

export async function eraseSandboxData(db: SqlExecutor, dialect: 'sqlite' | 'postgres'): Promise<string[]> {
  const listed =
    dialect === 'sqlite'
      ? await db.all("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
      : await db.all(
          "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
        );
  const tables = listed.map((row) => String(row['name'])).filter((name) => !KEPT_TABLES.has(name));
  if (dialect === 'postgres') {
    // Checked when the store opened (postgres.ts checkSchema), and again here, where a mistake would erase.
    const schema = await db.get('SELECT current_schema() AS s');
    assert(schema?.['s'] === SANDBOX_SCHEMA, 'the sandbox is reset in its own schema only');
    // One statement, all tables: TRUNCATE waits for the transactions using them and holds them to COMMIT, so
    // a payment in flight in another process either commits before the reset or runs after it, whole.
    await db.run(`TRUNCATE ${tables.map((t) => `"${t}"`).join(', ')}`);
  } else {
    // The single writer runs this batch alone (LockHints.alone): nothing else is half-written. Foreign keys
    // are checked at COMMIT, when every table is empty, so the order of the deletes does not matter.
    await db.run('PRAGMA defer_foreign_keys = ON');
    for (const table of tables) await db.run(`DELETE FROM "${table}"`);
  }
  for (const sql of INITIAL_ROWS) await db.run(sql);
  return tables;
}
