import pg from 'pg';

/**
 * How many deadlocks PostgreSQL detected in one database (pg_stat_database.deadlocks). The adapter retries a
 * deadlock (40P01) transparently, so an API-level test cannot see one; this can. Call it after every client
 * of the database has disconnected: a backend reports its statistics when it exits, so the count is waited
 * for until the database has no other sessions (at most `timeoutMs`).
 */
export async function deadlocksDetected(databaseUrl: string, timeoutMs = 10_000): Promise<number> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const others = await client.query<{ n: string }>(
        'SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()',
      );
      if (Number(others.rows[0]!.n) === 0) break;
      if (Date.now() > deadline) throw new Error('other sessions are still connected to the test database');
      await new Promise((r) => setTimeout(r, 50));
    }
    const stats = await client.query<{ deadlocks: string }>(
      'SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()',
    );
    return Number(stats.rows[0]!.deadlocks);
  } finally {
    await client.end();
  }
}
