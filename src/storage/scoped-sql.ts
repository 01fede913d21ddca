import { assert } from '../domain/assert.ts';
import { PAYMENT_STATUSES, type PaymentStatus } from '../domain/types.ts';
import type { Row, SqlExecutor } from './sql-store.ts';
import {
  type CustomerScope,
  type LedgerFilter,
  type PageRequest,
  pageOrder,
  type ReadScope,
} from './store.ts';
import { chunks } from './write-behind.ts';

/**
 * The lists of a key scoped to customers (src/app/scope.ts), in SQL that never scans other customers' history.
 *
 * A scoped list is the union of index ranges ("arms"): for payments, per account, as source and as
 * destination, one per status (all three, or the one filtered on), one per account for ledger entries, two per account and
 * one per customer for events (migration 10). Each arm reads its range in seq order from the cursor, at most
 * `limit + 1` entries (the page can hold no more of its rows); the union keeps the first `limit + 1` seqs, and
 * the rows are then read by primary key. The work of a page is therefore bounded by arms × (limit + 1) index
 * entries, whatever the size of the tables: the page shrinks (never below 1 item) so that all arms together
 * read at most SCOPED_ROWS_READ_MAX entries, and the cursor carries on from there. The arms of a big scope go
 * in statements of ARMS_PER_STATEMENT (SQLite allows 500 terms in a compound SELECT), yielding to the event
 * loop between statements. A scope resolves to at most SCOPE_ACCOUNTS_MAX accounts (src/app/scope.ts).
 *
 * The customer and account lists need no arms: a scope names at most 100 customers (each a primary-key
 * probe) and their accounts are found through accounts_owner.
 *
 * Each function returns at most `limit + 1` rows in seq order and the `limit` it used; SqlReads maps them to
 * a page (src/storage/sql-store.ts).
 */
export const SCOPED_ROWS_READ_MAX = 20_000;
const ARMS_PER_STATEMENT = 200;
const IDS_PER_QUERY = 500;

export interface ScopedRows {
  rows: Row[];
  limit: number;
}

/** One index range of a scoped list: equality terms on the leading columns of one index, then seq. */
interface Arm {
  where: string;
  params: unknown[];
}

const placeholders = (n: number) => Array.from({ length: n }, () => '?').join(', ');
const NOTHING = (page: PageRequest): ScopedRows => ({ rows: [], limit: page.limit });

function seqOf(row: Row): number {
  const v = row['seq'];
  const n = typeof v === 'bigint' || typeof v === 'string' ? Number(v) : (v as number);
  assert(Number.isSafeInteger(n), `database returned a non-safe seq: ${String(v)}`);
  return n;
}

/** The rows of the next page over the union of `arms`, at most `limit + 1` of them, in the page's seq order. */
async function unionPage(
  db: SqlExecutor,
  table: string,
  columns: string,
  arms: Arm[],
  page: PageRequest,
): Promise<ScopedRows> {
  if (arms.length === 0) return NOTHING(page);
  const limit = Math.max(1, Math.min(page.limit, Math.floor(SCOPED_ROWS_READ_MAX / arms.length) - 1));
  const range = pageOrder(page);
  const found = new Set<number>();
  let first = true;
  for (const chunk of chunks(arms, ARMS_PER_STATEMENT)) {
    // SQLite runs a statement on the event loop: a big scope's statements take turns with other requests.
    if (!first) await new Promise((resolve) => setImmediate(resolve));
    first = false;
    // Each arm in a subquery of its own, so that its LIMIT bounds it (PostgreSQL does not merge ordered
    // ranges lazily). The union is merged here: at most SCOPED_ROWS_READ_MAX numbers, cheaper to sort in
    // JavaScript than by a sorter per arm in SQLite.
    const sql = chunk
      .map(
        (arm, i) =>
          `SELECT seq FROM (SELECT seq FROM ${table} WHERE ${arm.where} AND ${range.where} ORDER BY ${range.orderBy} LIMIT ?) arm${i}`,
      )
      .join(' UNION ALL ');
    const params = chunk.flatMap((arm) => [...arm.params, range.param, limit + 1]);
    for (const row of await db.all(sql, params)) found.add(seqOf(row));
  }
  // A row in several arms (a payment between two of the scope's accounts) counts once.
  const seqs = [...found].sort(range.compare).slice(0, limit + 1);
  if (seqs.length === 0) return { rows: [], limit };
  const rows = await db.all(
    `SELECT ${columns} FROM ${table} WHERE seq IN (${placeholders(seqs.length)}) ORDER BY ${range.orderBy}`,
    seqs,
  );
  assert(rows.length === seqs.length, `every listed ${table} row is still there`);
  return { rows, limit };
}

export async function customerRows(
  db: SqlExecutor,
  page: PageRequest,
  scope: CustomerScope,
): Promise<ScopedRows> {
  const ids = scope.customerIds;
  if (ids.length === 0) return NOTHING(page);
  const rows = await db.all(
    `SELECT * FROM customers WHERE id IN (${placeholders(ids.length)}) AND seq > ? ORDER BY seq LIMIT ?`,
    [...ids, page.after, page.limit + 1],
  );
  return { rows, limit: page.limit };
}

export async function accountRows(
  db: SqlExecutor,
  columns: string,
  page: PageRequest,
  ownerCustomerId: string | undefined,
  scope: CustomerScope,
): Promise<ScopedRows> {
  // A customer outside the scope is listed as one that does not exist: no accounts.
  const owners =
    ownerCustomerId === undefined
      ? scope.customerIds
      : scope.customerIds.filter((id) => id === ownerCustomerId);
  if (owners.length === 0) return NOTHING(page);
  const rows = await db.all(
    `SELECT ${columns} FROM accounts WHERE kind = 'customer' AND owner_customer_id IN (${placeholders(owners.length)})
        AND seq > ? ORDER BY seq LIMIT ?`,
    [...owners, page.after, page.limit + 1],
  );
  return { rows, limit: page.limit };
}

export function paymentRows(
  db: SqlExecutor,
  page: PageRequest,
  status: PaymentStatus | undefined,
  scope: ReadScope,
): Promise<ScopedRows> {
  // payments_source_status and payments_destination_status (migration 10): (account, status, seq). Unfiltered,
  // one range per status (migration 15 dropped the (account, seq) indexes); filtered, the status's range.
  const statuses = status === undefined ? PAYMENT_STATUSES : [status];
  const arms = scope.accountIds.flatMap((accountId) =>
    statuses.flatMap((s) => [
      { where: 'source_account_id = ? AND status = ?', params: [accountId, s] },
      { where: 'destination_account_id = ? AND status = ?', params: [accountId, s] },
    ]),
  );
  return unionPage(db, 'payments', '*', arms, page);
}

export async function ledgerEntryRows(
  db: SqlExecutor,
  page: PageRequest,
  filter: LedgerFilter,
  scope: ReadScope,
): Promise<ScopedRows> {
  // An account outside the scope is filtered on as one that does not exist: no entries.
  const accountIds =
    filter.accountId === undefined
      ? scope.accountIds
      : scope.accountIds.filter((id) => id === filter.accountId);
  if (accountIds.length === 0) return NOTHING(page);
  const range = pageOrder(page);
  if (filter.paymentId !== undefined) {
    // ledger_entries_payment: a payment has a handful of entries (its posting and its refunds' postings);
    // those on the scope's accounts are kept.
    const kept: Row[] = [];
    for (const ids of chunks([...accountIds], IDS_PER_QUERY)) {
      kept.push(
        ...(await db.all(
          `SELECT * FROM ledger_entries WHERE payment_id = ? AND account_id IN (${placeholders(ids.length)})
              AND ${range.where} ORDER BY ${range.orderBy} LIMIT ?`,
          [filter.paymentId, ...ids, range.param, page.limit + 1],
        )),
      );
    }
    kept.sort((a, b) => range.compare(seqOf(a), seqOf(b)));
    return { rows: kept.slice(0, page.limit + 1), limit: page.limit };
  }
  // ledger_entries_account: (account_id, seq).
  const arms = accountIds.map((accountId) => ({ where: 'account_id = ?', params: [accountId] }));
  return unionPage(db, 'ledger_entries', '*', arms, page);
}

export function eventRows(db: SqlExecutor, page: PageRequest, scope: ReadScope): Promise<ScopedRows> {
  // events_source_account, events_destination_account, events_customer (migration 10).
  const arms: Arm[] = [
    ...scope.accountIds.flatMap((accountId) => [
      { where: 'source_account_id = ?', params: [accountId] },
      { where: 'destination_account_id = ?', params: [accountId] },
    ]),
    ...scope.customerIds.map((customerId) => ({ where: 'customer_id = ?', params: [customerId] })),
  ];
  return unionPage(db, 'events', '*', arms, page);
}

export async function accountIdsOwnedBy(
  db: SqlExecutor,
  customerIds: readonly string[],
  limit: number,
): Promise<string[]> {
  const ids: string[] = [];
  for (const owners of chunks([...customerIds], IDS_PER_QUERY)) {
    const rows = await db.all(
      `SELECT id FROM accounts WHERE kind = 'customer' AND owner_customer_id IN (${placeholders(owners.length)})
        ORDER BY id LIMIT ?`,
      [...owners, limit - ids.length],
    );
    ids.push(...rows.map((r) => r['id'] as string));
    if (ids.length >= limit) break;
  }
  return ids;
}

export async function accountOwners(
  db: SqlExecutor,
  accountIds: readonly string[],
): Promise<Map<string, string | null>> {
  const owners = new Map<string, string | null>();
  for (const ids of chunks([...new Set(accountIds)], IDS_PER_QUERY)) {
    const rows = await db.all(
      `SELECT id, owner_customer_id FROM accounts WHERE id IN (${placeholders(ids.length)})`,
      ids,
    );
    for (const r of rows) owners.set(r['id'] as string, (r['owner_customer_id'] as string | null) ?? null);
  }
  return owners;
}
