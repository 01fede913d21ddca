import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { DOCUMENT_INDEX_VERSION, documentIndexOf } from '../src/app/identity-index.ts';
import { PiiCipher } from '../src/security/pii-cipher.ts';
import { openSqliteStore } from '../src/storage/sqlite.ts';

/**
 * Bulk-loads a SQLite database for the benchmark, straight into the schema (no HTTP): `accounts` funded
 * customer accounts, each with an opening-balance posting from the USD funding account, plus `transfers`
 * extra two-line postings between random accounts, so the ledger holds 2 × (accounts + transfers) entries.
 * Balances are kept consistent, so GET /v1/ledger/verify stays valid.
 */
export interface PreloadOptions {
  path: string;
  accounts: number;
  transfers: number;
  openingBalanceCents: number;
  dataKeyBase64: string;
}

const ROWS_PER_TRANSACTION = 50_000;

export function preloadSqlite(options: PreloadOptions): string[] {
  // Run the real migrations first, then close and bulk-insert with one connection.
  const store = openSqliteStore({ path: options.path, clock: Date.now });
  void store.close();
  const db = new Database(options.path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = OFF'); // a throwaway benchmark fixture: durability is the server's job, not the loader's
  const cipher = new PiiCipher([Buffer.from(options.dataKeyBase64, 'base64')]);
  const run = randomBytes(4).toString('hex');
  const nowMs = Date.now();
  const ids: string[] = [];
  const balances = new Float64Array(options.accounts);

  const insertCustomer = db.prepare(
    `INSERT INTO customers (id, name_enc, country, kyc_status, document_index, document_index_version, document_enc,
                            created_at_ms, updated_at_ms)
     VALUES (?, ?, 'US', 'verified', ?, ?, ?, ?, ?)`,
  );
  const insertAccount = db.prepare(
    `INSERT INTO accounts (id, kind, owner_customer_id, currency, number_enc, number_index, number_last4,
                           posted_balance_cents, held_balance_cents, created_at_ms)
     VALUES (?, ?, ?, 'USD', ?, ?, ?, 0, 0, ?)`,
  );
  const insertTx = db.prepare(
    `INSERT INTO ledger_transactions (id, kind, payment_id, currency, request_id, created_at_ms)
     VALUES (?, ?, NULL, 'USD', 'req_preload', ?)`,
  );
  const insertEntry = db.prepare(
    `INSERT INTO ledger_entries (id, transaction_id, payment_id, account_id, direction, amount_cents, currency,
                                 request_id, created_at_ms) VALUES (?, ?, NULL, ?, ?, ?, 'USD', 'req_preload', ?)`,
  );
  const setBalance = db.prepare('UPDATE accounts SET posted_balance_cents = ? WHERE id = ?');
  const systemId = 'acc_system_funding_usd';
  let seq = 0;
  const posting = (kind: string, from: string, to: string, amount: number) => {
    const txId = `ltx_${run}_${++seq}`;
    insertTx.run(txId, kind, nowMs);
    insertEntry.run(`led_${run}_${seq}d`, txId, from, 'debit', amount, nowMs);
    insertEntry.run(`led_${run}_${seq}c`, txId, to, 'credit', amount, nowMs);
  };

  db.transaction(() => {
    const label = 'system-funding-USD';
    insertAccount.run(
      systemId,
      'system',
      null,
      cipher.encrypt(label, 'account.number'),
      cipher.blindIndex(label, 'account.number'),
      '0000',
      nowMs,
    );
  })();
  for (let start = 0; start < options.accounts; start += ROWS_PER_TRANSACTION) {
    db.transaction(() => {
      for (let i = start; i < Math.min(options.accounts, start + ROWS_PER_TRANSACTION); i++) {
        const customerId = `cus_${run}_${i}`;
        const accountId = `acc_${run}_${i}`;
        const number = `45${String(i).padStart(14, '0')}`;
        const doc = `BENCH-${run}-${i}`;
        insertCustomer.run(
          customerId,
          cipher.encrypt(`Bench Customer ${i}`, 'customer.name'),
          // Keyed as the server keys them, so its start-up has nothing to re-index (src/app/identity-index.ts).
          documentIndexOf(cipher, doc),
          DOCUMENT_INDEX_VERSION,
          cipher.encrypt(doc, 'customer.documentReference'),
          nowMs,
          nowMs,
        );
        insertAccount.run(
          accountId,
          'customer',
          customerId,
          cipher.encrypt(number, 'account.number'),
          cipher.blindIndex(number, 'account.number'),
          number.slice(-4),
          nowMs,
        );
        posting('opening_balance', systemId, accountId, options.openingBalanceCents);
        balances[i] = options.openingBalanceCents;
        ids.push(accountId);
      }
    })();
  }
  for (let start = 0; start < options.transfers; start += ROWS_PER_TRANSACTION) {
    db.transaction(() => {
      for (let n = start; n < Math.min(options.transfers, start + ROWS_PER_TRANSACTION); n++) {
        const from = Math.floor(Math.random() * options.accounts);
        const to = (from + 1 + Math.floor(Math.random() * (options.accounts - 1))) % options.accounts;
        const amount = 1 + Math.floor(Math.random() * 100);
        if (balances[from]! < amount) continue;
        balances[from]! -= amount;
        balances[to]! += amount;
        posting('payment', ids[from]!, ids[to]!, amount);
      }
    })();
  }
  db.transaction(() => {
    for (let i = 0; i < options.accounts; i++) setBalance.run(balances[i], ids[i]);
    setBalance.run(-options.accounts * options.openingBalanceCents, systemId);
  })();
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  return ids;
}
