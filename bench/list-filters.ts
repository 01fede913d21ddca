import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { startTestApp, TEST_DATA_KEY, type TestApp } from '../test/support/harness.ts';
import { preloadSqlite } from './preload.ts';

/**
 * `npm run bench:list-filters`: the filtered payment and ledger lists (issue 17) at N and 10·N payments, to show
 * that a filtered page costs the same whatever the size of the tables. For each size: a SQLite database with
 * 1,000 accounts and N payments bulk-loaded straight into the schema (98 % posted with their two ledger
 * entries, 1 % held, 1 % declined; one in ten with metadata `{invoice, batch}`), then the real app on it
 * (fastify inject: routing, validation, the store, serialisation; no socket), and `--requests` requests per
 * filter with random parameters, one at a time: p50 and p99 in milliseconds. Then the query plans of the
 * statements the filters run (EXPLAIN QUERY PLAN). Balances are not kept consistent with the loaded payments:
 * the ledger verification is not what this measures.
 *
 *   npm run bench:list-filters -- --payments 50000 --requests 200
 */
const { values: args } = parseArgs({
  options: {
    payments: { type: 'string', default: '50000' },
    requests: { type: 'string', default: '200' },
  },
});
const BASE = Number(args.payments);
const REQUESTS = Number(args.requests);
const ACCOUNTS = 1_000;
const DAY_MS = 86_400_000;

interface Loaded {
  dir: string;
  path: string;
  accounts: string[];
  /** When the loaded payments begin and end (they are spread evenly over 20 days, 40 to 20 days ago). */
  fromMs: number;
  toMs: number;
}

function load(payments: number): Loaded {
  const dir = mkdtempSync(join(tmpdir(), 'bench-list-filters-'));
  const path = join(dir, 'payments.db');
  const accounts = preloadSqlite({
    path,
    accounts: ACCOUNTS,
    transfers: 0,
    openingBalanceCents: 1_000_000_000,
    dataKeyBase64: TEST_DATA_KEY,
  });
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = OFF'); // a throwaway fixture
  const fromMs = Date.now() - 40 * DAY_MS;
  const toMs = Date.now() - 20 * DAY_MS;
  const insertPayment = db.prepare(
    `INSERT INTO payments (id, status, source_account_id, destination_account_id, amount_cents, currency, note,
                           metadata, reasons, decision, api_key_id, request_id, created_at_ms, updated_at_ms)
     VALUES (?, ?, ?, ?, ?, 'USD', NULL, ?, '[]', '{"outcome":"posted","policyVersion":"bench","reasons":[]}',
             'key_bench', 'req_bench', ?, ?)`,
  );
  const insertMetadata = db.prepare(
    'INSERT INTO payment_metadata (payment_seq, key, value) VALUES (?, ?, ?)',
  );
  const insertTx = db.prepare(
    `INSERT INTO ledger_transactions (id, kind, payment_id, currency, request_id, created_at_ms)
     VALUES (?, 'payment', ?, 'USD', 'req_bench', ?)`,
  );
  const insertEntry = db.prepare(
    `INSERT INTO ledger_entries (id, transaction_id, payment_id, account_id, direction, amount_cents, currency,
                                 request_id, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, 'USD', 'req_bench', ?)`,
  );
  const CHUNK = 50_000;
  for (let start = 0; start < payments; start += CHUNK) {
    db.transaction(() => {
      for (let i = start; i < Math.min(payments, start + CHUNK); i++) {
        const from = Math.floor(Math.random() * ACCOUNTS);
        const to = (from + 1 + Math.floor(Math.random() * (ACCOUNTS - 1))) % ACCOUNTS;
        const roll = Math.random();
        const status = roll < 0.01 ? 'manual_review' : roll < 0.02 ? 'declined' : 'posted';
        const amount = 1 + Math.floor(Math.random() * 1_000_000);
        const at = fromMs + Math.floor(((toMs - fromMs) * i) / payments);
        const metadata = i % 10 === 0 ? { invoice: `INV-${i}`, batch: `B${(i / 10) % 100}` } : null;
        const id = `pay_bench_${i}`;
        const { lastInsertRowid: seq } = insertPayment.run(
          id,
          status,
          accounts[from],
          accounts[to],
          amount,
          metadata === null ? null : JSON.stringify(metadata),
          at,
          at,
        );
        for (const [key, value] of Object.entries(metadata ?? {})) insertMetadata.run(seq, key, value);
        if (status !== 'posted') continue;
        const txId = `ltx_bench_${i}`;
        insertTx.run(txId, id, at);
        insertEntry.run(`led_bench_${i}d`, txId, id, accounts[from], 'debit', amount, at);
        insertEntry.run(`led_bench_${i}c`, txId, id, accounts[to], 'credit', amount, at);
      }
    })();
  }
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  return { dir, path, accounts, fromMs, toMs };
}

const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)]!;

/** The filters measured: each a function of the loaded data that gives a fresh request path. */
function workload(l: Loaded, payments: number): Record<string, () => string> {
  const account = () => pick(l.accounts);
  const recent = new Date(l.toMs - (l.toMs - l.fromMs) / 100).toISOString();
  return {
    'payments, no filter': () => '/v1/payments',
    'payments ?accountId': () => `/v1/payments?accountId=${account()}`,
    'payments ?accountId&counterpartyAccountId': () =>
      `/v1/payments?accountId=${account()}&counterpartyAccountId=${account()}`,
    'payments ?accountId&amountMin&amountMax': () =>
      `/v1/payments?accountId=${account()}&amountMin=100000&amountMax=200000`,
    'payments ?status=manual_review': () => '/v1/payments?status=manual_review',
    'payments ?metadata[batch]': () => `/v1/payments?metadata[batch]=B${Math.floor(Math.random() * 100)}`,
    'payments ?metadata[invoice] (one payment)': () =>
      `/v1/payments?metadata[invoice]=INV-${10 * Math.floor((Math.random() * payments) / 10)}`,
    'payments ?createdFrom (last 1 %) &order=desc': () =>
      `/v1/payments?createdFrom=${encodeURIComponent(recent)}&order=desc`,
    'payments ?amountMin (1 % of rows, unindexed)': () => '/v1/payments?amountMin=990000',
    'ledger ?accountId&status=posted': () => `/v1/ledger?accountId=${account()}&status=posted`,
    'ledger ?accountId&createdFrom&order=desc': () =>
      `/v1/ledger?accountId=${account()}&createdFrom=${encodeURIComponent(recent)}&order=desc`,
    'ledger ?counterpartyAccountId (unindexed)': () => `/v1/ledger?counterpartyAccountId=${account()}`,
  };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;
}

async function measure(t: TestApp, path: () => string): Promise<{ p50: number; p99: number; items: number }> {
  const times: number[] = [];
  let items = 0;
  for (let i = 0; i < REQUESTS; i++) {
    const url = path();
    const start = process.hrtime.bigint();
    const res = await t.request('GET', url);
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
    if (res.status !== 200) throw new Error(`${url}: ${res.status} ${res.body}`);
    items += (res.json.payments ?? res.json.ledgerEntries).length;
  }
  times.sort((a, b) => a - b);
  return { p50: percentile(times, 50), p99: percentile(times, 99), items: items / REQUESTS };
}

/** The plans of the statements the filters run, with sample parameters. */
function plans(path: string, accounts: string[]): Record<string, string[]> {
  const db = new Database(path, { readonly: true });
  const statements: Record<string, [string, unknown[]]> = {
    'payments arm: account, side, status': [
      'SELECT seq FROM payments WHERE source_account_id = ? AND status = ? AND seq > ? ORDER BY seq LIMIT ?',
      [accounts[0], 'posted', 0, 2000],
    ],
    'payments arm: status': [
      'SELECT seq FROM payments WHERE status = ? AND seq < ? ORDER BY seq DESC LIMIT ?',
      ['manual_review', Number.MAX_SAFE_INTEGER, 51],
    ],
    'payments arm: metadata': [
      'SELECT payment_seq AS seq FROM payment_metadata WHERE key = ? AND value = ? AND payment_seq > ? ORDER BY payment_seq LIMIT ?',
      ['batch', 'B1', 0, 2000],
    ],
    'payments window: rows by seq, filtered': [
      `SELECT * FROM payments WHERE seq IN (1, 2, 3) AND created_at_ms >= ? AND amount_cents <= ?
         AND EXISTS (SELECT 1 FROM payment_metadata m WHERE m.payment_seq = payments.seq AND m.key = ? AND m.value = ?)
       ORDER BY seq LIMIT ?`,
      [0, 10, 'invoice', 'x', 51],
    ],
    'ledger arm: account': [
      'SELECT seq FROM ledger_entries WHERE account_id = ? AND seq > ? ORDER BY seq LIMIT ?',
      [accounts[0], 0, 2000],
    ],
    'ledger window: the entry’s payment': [
      `SELECT * FROM ledger_entries WHERE seq IN (1, 2, 3) AND account_id <> ?
         AND EXISTS (SELECT 1 FROM payments p WHERE p.id = ledger_entries.payment_id AND p.status = ?
                     AND (p.source_account_id = ? OR p.destination_account_id = ?))
       ORDER BY seq LIMIT ?`,
      [accounts[0], 'posted', accounts[0], accounts[0], 51],
    ],
  };
  const out: Record<string, string[]> = {};
  for (const [name, [sql, params]] of Object.entries(statements)) {
    out[name] = (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as { detail: string }[]).map(
      (r) => r.detail,
    );
  }
  db.close();
  return out;
}

const results: Record<string, Record<string, { p50: number; p99: number; items: number }>> = {};
let lastPath = '';
let lastAccounts: string[] = [];
for (const payments of [BASE, 10 * BASE]) {
  const started = Date.now();
  const loaded = load(payments);
  console.log(`loaded ${payments} payments in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const t = await startTestApp({
    db: { url: `sqlite:${loaded.path}`, sqlitePath: loaded.path, drop: async () => {} },
    env: { LOG_LEVEL: 'warn', SEED_DEMO_DATA: 'false' },
  });
  const filters = workload(loaded, payments);
  for (const [name, path] of Object.entries(filters)) {
    await measure(t, path); // warm-up: statement caches, pages in memory
    const row = await measure(t, path);
    results[name] = { ...results[name], [String(payments)]: row };
    console.log(
      `${String(payments).padStart(8)}  ${name.padEnd(46)} p50 ${row.p50.toFixed(2).padStart(6)} ms  p99 ${row.p99
        .toFixed(2)
        .padStart(6)} ms  ${row.items.toFixed(1)} items/page`,
    );
  }
  await t.destroy();
  if (lastPath !== '') rmSync(lastPath, { recursive: true, force: true });
  lastPath = loaded.dir;
  lastAccounts = loaded.accounts;
  if (payments === 10 * BASE) {
    for (const [name, lines] of Object.entries(plans(loaded.path, lastAccounts))) {
      console.log(`plan, ${name}:\n  ${lines.join('\n  ')}`);
    }
  }
}
rmSync(lastPath, { recursive: true, force: true });
console.log('\n| filter | p50 / p99 at N | p50 / p99 at 10·N |\n|---|---|---|');
for (const [name, bySize] of Object.entries(results)) {
  const [n, tenN] = [bySize[String(BASE)]!, bySize[String(10 * BASE)]!];
  console.log(
    `| ${name} | ${n.p50.toFixed(2)} / ${n.p99.toFixed(2)} ms | ${tenN.p50.toFixed(2)} / ${tenN.p99.toFixed(2)} ms |`,
  );
}
