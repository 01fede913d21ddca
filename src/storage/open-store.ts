import type { Config } from '../config.ts';
import { openSqliteStore } from './sqlite.ts';
import type { Store } from './store.ts';

/** Picks the adapter from DATABASE_URL. */
export async function openStore(config: Config, clock: () => number): Promise<Store> {
  const db = config.database;
  switch (db.kind) {
    case 'sqlite':
      return openSqliteStore({ path: db.path, clock });
    case 'sqlite-memory':
      return openSqliteStore({ path: ':memory:', clock });
    case 'postgres': {
      const { openPostgresStore } = await import('./postgres.ts');
      return openPostgresStore({ url: db.url, clock, poolMax: config.pgPoolMax });
    }
  }
}
