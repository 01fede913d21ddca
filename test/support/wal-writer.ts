import { randomInt } from 'node:crypto';
import Database from 'better-sqlite3';
import { createApp } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import { sandboxPath } from '../../src/storage/open-store.ts';
import type { SqliteStore, WalLimits } from '../../src/storage/sqlite.ts';
import { party } from './fixtures.ts';
import { inject } from './harness.ts';

/**
 * A child process for test/sqlite-wal.test.ts: the app on the SQLite file of DATABASE_URL, with the WAL
 * limits of WAL_TEST_LIMITS, paying between a few accounts from 16 concurrent clients until it is killed.
 * It prints one line per acknowledged payment (`ack {...}`) and the checkpointer's stats every 50 of them
 * (`wal {...}`). Once the WAL has started over 3 times and 300 payments are acknowledged, it opens a read
 * transaction and keeps it (`pinned`): from then on no commit can be copied into the database file, so the
 * payments acknowledged after it are in the WAL only when the test SIGKILLs it.
 */
const CLIENTS = 16;
const app = await createApp(loadConfig(process.env));
const store = app.services.store as SqliteStore;
if (store.wal === undefined) throw new Error('not a SQLite file database');
store.wal.limits = JSON.parse(process.env['WAL_TEST_LIMITS']!) as WalLimits;
const c = { request: (method: string, url: string, options = {}) => inject(app, method, url, options) };
const accounts: string[] = [];
for (let i = 0; i < 4; i++) accounts.push((await party(c, { balance: 100_000_000 })).accountId);
process.stdout.write(`accounts ${JSON.stringify(accounts)}\n`);

let acked = 0;
let pin: Database.Database | undefined;
async function client(w: number): Promise<void> {
  for (let i = 0; ; i++) {
    const src = randomInt(accounts.length);
    const dst = (src + 1 + randomInt(accounts.length - 1)) % accounts.length;
    const key = `wal-${w}-${i}`;
    const body = {
      sourceAccountId: accounts[src]!,
      destinationAccountId: accounts[dst]!,
      amountCents: 1 + randomInt(1_000),
      currency: 'USD',
      metadata: { clientKey: key },
    };
    const res = await c.request('POST', '/v1/payments', { body, idempotencyKey: key });
    if (![201, 202, 422].includes(res.status)) throw new Error(`unexpected ${res.status}: ${res.body}`);
    const payment = (res.json as { payment: { id: string; status: string } }).payment;
    process.stdout.write(`ack ${JSON.stringify({ key, status: res.status, id: payment.id, body })}\n`);
    if (++acked % 50 === 0) process.stdout.write(`wal ${JSON.stringify(store.wal!.stats)}\n`);
    if (pin === undefined && acked >= 300 && store.wal!.stats.restarts >= 3) {
      pin = new Database(sandboxPath(process.env['DATABASE_URL']!.slice('sqlite:'.length)), {
        readonly: true,
      });
      pin.exec('BEGIN');
      pin.prepare('SELECT COUNT(*) AS n FROM payments').get();
      process.stdout.write(`pinned ${JSON.stringify(store.wal!.stats)}\n`);
    }
  }
}
await Promise.all(Array.from({ length: CLIENTS }, (_, w) => client(w)));
