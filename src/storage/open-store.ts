import { extname } from 'node:path';
import type { Config } from '../config.ts';
import type { Mode } from '../domain/sandbox.ts';
import { SANDBOX_SCHEMA } from './sandbox-sql.ts';
import { openSqliteStore } from './sqlite.ts';
import type { Store } from './store.ts';

/**
 * Picks the adapter from DATABASE_URL. `riskCounters: false` (the key-management CLI): SQLite skips rebuilding its
 * in-memory risk counters, and the store cannot decide payments.
 *
 * Each mode has a store of its own (docs/decisions/0026-sandbox.md): live data where DATABASE_URL says, test
 * data beside it, in a SQLite file of its own (`sandboxPath`) or a PostgreSQL schema of its own
 * (`SANDBOX_SCHEMA`) with its own connection pool. Nothing joins or copies across the two.
 */
export async function openStore(
  config: Config,
  clock: () => number,
  options: { riskCounters?: boolean; mode?: Mode } = {},
): Promise<Store> {
  const db = config.database;
  const riskCounters = options.riskCounters ?? true;
  const test = options.mode === 'test';
  switch (db.kind) {
    case 'sqlite':
      return openSqliteStore({ path: test ? sandboxPath(db.path) : db.path, clock, riskCounters });
    case 'sqlite-memory':
      return openSqliteStore({ path: ':memory:', clock, riskCounters });
    case 'postgres': {
      const { openPostgresStore } = await import('./postgres.ts');
      return openPostgresStore({
        url: db.url,
        clock,
        poolMax: poolMaxFor(config, options.mode ?? 'live'),
        ...(test ? { schema: SANDBOX_SCHEMA } : {}),
      });
    }
  }
}

export { SANDBOX_SCHEMA };

/** A mode's PostgreSQL pool: the sandbox gets a quarter, so partners' tests never take live payments' connections. */
export function poolMaxFor(config: Config, mode: Mode): number {
  return mode === 'test' ? Math.max(2, Math.floor(config.pgPoolMax / 4)) : config.pgPoolMax;
}

/** The test data's SQLite file, beside the live one: `data/payments.db` → `data/payments.sandbox.db`. */
export function sandboxPath(livePath: string): string {
  const extension = extname(livePath);
  return `${livePath.slice(0, livePath.length - extension.length)}.sandbox${extension}`;
}
