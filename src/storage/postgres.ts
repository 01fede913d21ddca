import type { Store } from './store.ts';

export interface PostgresOptions {
  url: string;
  clock: () => number;
  poolMax: number;
}

export async function openPostgresStore(_options: PostgresOptions): Promise<Store> {
  throw new Error('the PostgreSQL adapter is not built yet');
}
