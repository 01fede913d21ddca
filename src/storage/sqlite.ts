import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { assert, InvariantViolation } from '../domain/assert.ts';
import { MIGRATIONS, migrationSql } from './migrations.ts';
import { type Row, type SqlExecutor, SqlReads, SqlTx } from './sql-store.ts';
import type { Command, CommandOutcome, Store } from './store.ts';

/**
 * The embedded adapter. One writer connection (SQLite allows one writer at a time anyway) and, for files, one
 * reader connection: WAL lets it read the last committed state while the writer is inside a batch, so a GET
 * never sees a write that might still roll back.
 *
 * Durability: WAL with synchronous=FULL fsyncs the log on every commit, so an acknowledged write survives
 * kill -9 and power loss. Batches (group commit) share that one fsync.
 */
export interface SqliteOptions {
  path: string | ':memory:';
  clock: () => number;
}

type Statement = Database.Statement<unknown[], Row>;

function executor(db: Database.Database): SqlExecutor {
  const cache = new Map<string, Statement>();
  const prepare = (sql: string): Statement => {
    let stmt = cache.get(sql);
    if (stmt === undefined) {
      stmt = db.prepare<unknown[], Row>(sql);
      cache.set(sql, stmt);
    }
    return stmt;
  };
  return {
    all: async (sql, params = []) => prepare(sql).all(...params),
    get: async (sql, params = []) => prepare(sql).get(...params),
    run: async (sql, params = []) => prepare(sql).run(...params).changes,
  };
}

function openConnection(path: string, readonly: boolean): Database.Database {
  const db = new Database(path, { readonly, fileMustExist: readonly });
  if (!readonly) db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  // 64 MiB of page cache per connection (the default is 2 MiB): the hot indexes (accounts, idempotency keys,
  // risk counters) stay in memory as history grows, so a payment's cost stays flat.
  db.pragma('cache_size = -65536');
  return db;
}

export function migrateSqlite(db: Database.Database, targetVersion = Number.POSITIVE_INFINITY): number[] {
  const applied: number[] = [];
  db.exec('BEGIN IMMEDIATE');
  try {
    db.exec(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)',
    );
    const done = new Set(
      db
        .prepare<[], { version: number }>('SELECT version FROM schema_migrations')
        .all()
        .map((r) => r.version),
    );
    const newest = Math.max(0, ...done);
    const known = MIGRATIONS[MIGRATIONS.length - 1]!.version;
    if (newest > known)
      throw new Error(`database schema version ${newest} is newer than this build (${known})`);
    for (const migration of MIGRATIONS) {
      if (done.has(migration.version) || migration.version > targetVersion) continue;
      db.exec(migrationSql(migration, 'sqlite'));
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?, ?, ?)').run(
        migration.version,
        migration.name,
        Date.now(),
      );
      applied.push(migration.version);
    }
    db.exec('COMMIT');
  } catch (error) {
    db.exec('ROLLBACK');
    throw error;
  }
  return applied;
}

export function openSqliteStore(options: SqliteOptions): Store {
  if (options.path !== ':memory:') mkdirSync(dirname(options.path), { recursive: true });
  const writer = openConnection(options.path, false);
  try {
    migrateSqlite(writer);
  } catch (error) {
    writer.close();
    throw error;
  }
  const reader = options.path === ':memory:' ? writer : openConnection(options.path, true);
  const writeExec = executor(writer);
  const savepoint = {
    savepoints: true,
    control: async (sql: string) => {
      writer.exec(sql);
    },
  };
  let inBatch = false;

  async function applyBatch(commands: Command<unknown>[]): Promise<CommandOutcome<unknown>[]> {
    assert(!inBatch, 'SQLite batches never overlap: the committer runs one at a time');
    inBatch = true;
    const outcomes: CommandOutcome<unknown>[] = [];
    writer.exec('BEGIN IMMEDIATE');
    try {
      const tx = new SqlTx(writeExec, { forUpdate: '', forUpdateSkipLocked: '' }, savepoint);
      await tx.prefetch(commands.flatMap((c) => c.locks ?? []));
      for (const command of commands) {
        tx.nowMs = options.clock();
        let value: unknown;
        try {
          value = await command.run(tx);
        } catch (error) {
          await tx.endCommand(false);
          if (error instanceof InvariantViolation) throw error;
          outcomes.push({ ok: false, error });
          continue;
        }
        await tx.endCommand(true);
        outcomes.push({ ok: true, value });
      }
      tx.nowMs = options.clock();
      await tx.finish();
      writer.exec('COMMIT');
    } catch (error) {
      if (writer.inTransaction) writer.exec('ROLLBACK');
      throw error;
    } finally {
      inBatch = false;
    }
    return outcomes;
  }

  return {
    dialect: 'sqlite',
    reads: new SqlReads(executor(reader)),
    applyBatch,
    async getOrCreateSetting(key, create) {
      writer
        .prepare('INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING')
        .run(key, create());
      return (writer.prepare('SELECT value FROM settings WHERE key = ?').get(key) as { value: string }).value;
    },
    async ping() {
      reader.prepare('SELECT 1').get();
    },
    async close() {
      if (reader !== writer) reader.close();
      writer.close();
    },
  };
}
