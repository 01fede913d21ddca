import type { Config } from '../config.ts';
import { openSqliteStore } from './sqlite.ts';
import type { Store } from './store.ts';

/**
 * Picks the adapter from DATABASE_URL. `riskCounters: false` (the key-management CLI): SQLite skips rebuilding its
 * in-memory risk counters, and the store cannot decide payments.
 */
export async function openStore(
  config: Config,
  clock: () => number,
  options: { riskCounters?: boolean } = {},
): Promise<Store> {
  const db = config.database;
  const riskCounters = options.riskCounters ?? true;
  switch (db.kind) {
    case 'sqlite':
      return openSqliteStore({ path: db.path, clock, riskCounters });
    case 'sqlite-memory':
      return openSqliteStore({ path: ':memory:', clock, riskCounters });
    case 'postgres': {
      const { openPostgresStore } = await import('./postgres.ts');
      return openPostgresStore({ url: db.url, clock, poolMax: config.pgPoolMax });
    }
  }
}
