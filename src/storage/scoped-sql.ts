import { assert } from '../domain/assert.ts';
import { PAYMENT_STATUSES } from '../domain/types.ts';
import type { Row, SqlExecutor } from './sql-store.ts';
import {
  type CustomerScope,
  type LedgerFilter,
  type ListFilter,
  type PageRequest,
  type PaymentFilter,
  pageOrder,
  type ReadScope,
} from './store.ts';
import { chunks } from './write-behind.ts';

/**
 * The lists of a key scoped to customers (src/app/scope.ts), and the filtered payment and ledger lists (issue 17),
 * in SQL that never scans other customers' history, nor rows that an indexed filter excludes.
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
 * Filters: the most selective filter that has an index drives the page (its arms), in this order: for
 * payments `accountId`, then `counterpartyAccountId` (both: payments_source_status and
 * payments_destination_status), then the first `metadata[key]` (payment_metadata_key_value, migration 18), then
 * the scope, then `status` (payments_status); for ledger entries `paymentId` (ledger_entries_payment), then
 * `accountId` (ledger_entries_account), then the scope. Every other filter (the date and amount ranges, the
 * counterparty, more metadata pairs, the entry's payment's status, the scope when it does not drive) is a
 * condition on the rows of a window: the first FILTER_WINDOW_MAX seqs of the arms (fewer for many arms, never
 * over SCOPED_ROWS_READ_MAX index entries in all). A page holds the window's rows that pass, at most `limit`;
 * when fewer pass and the window was cut, the page is short (even empty) and its cursor starts after the window
 * (`scannedTo`). So every request reads a bounded number of rows, and paging a filtered list reads the driving
 * index range once, never the rest of the table.
 *
 * The customer and account lists need no arms: a scope names at most 100 customers (each a primary-key
 * probe) and their accounts are found through accounts_owner.
 *
 * Each function returns at most `limit + 1` rows in seq order and the `limit` it used; SqlReads maps them to
 * a page (src/storage/sql-store.ts).
 */
export const SCOPED_ROWS_READ_MAX = 20_000;
/** The rows a filtered page checks against its unindexed filters, at most (see above). */
export const FILTER_WINDOW_MAX = 2_000;
const ARMS_PER_STATEMENT = 200;
const IDS_PER_QUERY = 500;

export interface ScopedRows {
  rows: Row[];
  limit: number;
  /**
   * The seq the page's window ended at, when the window was cut and fewer than `limit + 1` of its rows passed
   * the filters: more may follow, and the next page starts after it. Null otherwise.
   */
  scannedTo: number | null;
}

/**
 * One index range of a list: equality terms on the leading columns of one index, then seq. `table` and `seq`
 * name another table whose column holds the list's seq (payment_metadata's payment_seq); by default the list's.
 */
interface Arm {
  where: string;
  params: unknown[];
  table?: string;
  seq?: string;
}

/** Conditions on a window's rows that no arm's index served (AND), with their parameters in order. */
interface Conditions {
  where: string[];
  params: unknown[];
}

const placeholders = (n: number) => Array.from({ length: n }, () => '?').join(', ');
const NOTHING = (page: PageRequest): ScopedRows => ({ rows: [], limit: page.limit, scannedTo: null });
/** The whole list in seq order (the primary key). */
const EVERY_ROW: Arm = { where: '1 = 1', params: [] };

function seqOf(row: Row): number {
  const v = row['seq'];
  const n = typeof v === 'bigint' || typeof v === 'string' ? Number(v) : (v as number);
  assert(Number.isSafeInteger(n), `database returned a non-safe seq: ${String(v)}`);
  return n;
}

function condition(into: Conditions, where: string, params: readonly unknown[]): void {
  into.where.push(where);
  into.params.push(...params);
}

/**
 * A list's conditions to start from: its date and amount ranges. Null when nothing can match: a scope without
 * accounts, or an account filter outside the scope (filtered on as an account that does not exist).
 */
function baseConditions(filter: ListFilter, scope: ReadScope | null): Conditions | null {
  const { accountId } = filter;
  if (
    scope !== null &&
    (scope.accountIds.length === 0 || (accountId !== undefined && !scope.accountIds.includes(accountId)))
  ) {
    return null;
  }
  const into: Conditions = { where: [], params: [] };
  rangeConditions(filter, into);
  return into;
}

/** The date and amount ranges, on the list's own columns: created from (inclusive) to (exclusive), amounts inclusive. */
function rangeConditions(filter: ListFilter, into: Conditions): void {
  if (filter.createdFromMs !== undefined) condition(into, 'created_at_ms >= ?', [filter.createdFromMs]);
  if (filter.createdToMs !== undefined) condition(into, 'created_at_ms < ?', [filter.createdToMs]);
  if (filter.amountMin !== undefined) condition(into, 'amount_cents >= ?', [filter.amountMin]);
  if (filter.amountMax !== undefined) condition(into, 'amount_cents <= ?', [filter.amountMax]);
}

/** Each pair as a probe of payment_metadata's primary key (payment_seq, key) for the payment whose seq is `seq`. */
function metadataConditions(pairs: ListFilter['metadata'], seq: string, into: Conditions): void {
  for (const [key, value] of pairs ?? []) {
    condition(
      into,
      `EXISTS (SELECT 1 FROM payment_metadata m WHERE m.payment_seq = ${seq} AND m.key = ? AND m.value = ?)`,
      [key, value],
    );
  }
}

/**
 * The rows of the next page over the union of `arms`, at most `limit + 1` of them, in the page's seq order;
 * with `filters`, those of the window's rows that pass them (see the comment at the top).
 */
async function unionPage(
  db: SqlExecutor,
  table: string,
  columns: string,
  arms: Arm[],
  page: PageRequest,
  filters: Conditions = { where: [], params: [] },
): Promise<ScopedRows> {
  if (arms.length === 0) return NOTHING(page);
  const limit = Math.max(1, Math.min(page.limit, Math.floor(SCOPED_ROWS_READ_MAX / arms.length) - 1));
  const range = pageOrder(page);
  const filtered = filters.where.length > 0;
  const only = arms[0]!;
  if (!filtered && arms.length === 1 && only.table === undefined) {
    // One range of the list's own table and nothing else to check: the page is the range's next rows.
    const rows = await db.all(
      `SELECT ${columns} FROM ${table} WHERE ${only.where} AND ${range.where} ORDER BY ${range.orderBy} LIMIT ?`,
      [...only.params, range.param, limit + 1],
    );
    return { rows, limit, scannedTo: null };
  }
  // Unfiltered, the window is the page and one more row (whether more follow); filtered, it is wider, since
  // only some of its rows may pass.
  const window = filtered
    ? Math.max(limit + 1, Math.min(FILTER_WINDOW_MAX, Math.floor(SCOPED_ROWS_READ_MAX / arms.length)))
    : limit + 1;
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
      .map((arm, i) => {
        const seq = arm.seq ?? 'seq';
        const armRange = pageOrder(page, seq);
        return `SELECT seq FROM (SELECT ${seq} AS seq FROM ${arm.table ?? table} WHERE ${arm.where} AND ${armRange.where} ORDER BY ${armRange.orderBy} LIMIT ?) arm${i}`;
      })
      .join(' UNION ALL ');
    const params = chunk.flatMap((arm) => [...arm.params, range.param, window]);
    for (const row of await db.all(sql, params)) found.add(seqOf(row));
  }
  // A row in several arms (a payment between two of the scope's accounts) counts once.
  const seqs = [...found].sort(range.compare).slice(0, window);
  if (seqs.length === 0) return { rows: [], limit, scannedTo: null };
  const rows = await db.all(
    `SELECT ${columns} FROM ${table} WHERE seq IN (${placeholders(seqs.length)})${filtered ? ` AND ${filters.where.join(' AND ')}` : ''}
      ORDER BY ${range.orderBy} LIMIT ?`,
    [...seqs, ...filters.params, limit + 1],
  );
  if (!filtered) assert(rows.length === seqs.length, `every listed ${table} row is still there`);
  // A full window may have been cut short of its range: what follows it is the next page's.
  const cut = seqs.length === window && rows.length <= limit;
  return { rows, limit, scannedTo: cut ? seqs[seqs.length - 1]! : null };
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
  return { rows, limit: page.limit, scannedTo: null };
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
  return { rows, limit: page.limit, scannedTo: null };
}

export function paymentRows(
  db: SqlExecutor,
  page: PageRequest,
  filter: PaymentFilter,
  scope: ReadScope | null,
): Promise<ScopedRows> {
  // payments_source_status and payments_destination_status (migration 10): (account, status, seq). Unfiltered
  // by status, one range per status (migration 15 dropped the (account, seq) indexes); filtered, the status's.
  const statuses = filter.status === undefined ? PAYMENT_STATUSES : [filter.status];
  const accountArms = (accountId: string): Arm[] =>
    statuses.flatMap((s) => [
      { where: 'source_account_id = ? AND status = ?', params: [accountId, s] },
      { where: 'destination_account_id = ? AND status = ?', params: [accountId, s] },
    ]);
  const filters = baseConditions(filter, scope);
  if (filters === null) return Promise.resolve(NOTHING(page));
  const { accountId, counterpartyAccountId: other } = filter;
  let metadata = filter.metadata ?? [];
  const scopeIds = scope?.accountIds ?? [];
  let arms: Arm[];
  if (accountId !== undefined) {
    arms = accountArms(accountId);
    if (other !== undefined) {
      condition(
        filters,
        '((source_account_id = ? AND destination_account_id = ?) OR (source_account_id = ? AND destination_account_id = ?))',
        [accountId, other, other, accountId],
      );
    }
  } else if (other !== undefined) {
    // Alone, the counterparty is the other party of the key's own side: any side when unscoped; for a scoped
    // key, payments between it and one of the scope's accounts.
    arms = accountArms(other);
    if (scope !== null) {
      const ids = placeholders(scopeIds.length);
      condition(
        filters,
        `((source_account_id = ? AND destination_account_id IN (${ids})) OR (destination_account_id = ? AND source_account_id IN (${ids})))`,
        [other, ...scopeIds, other, ...scopeIds],
      );
    }
  } else if (metadata.length > 0) {
    // payment_metadata_key_value (migration 18): the payments with the first pair, in seq order.
    const [key, value] = metadata[0]!;
    arms = [
      { table: 'payment_metadata', seq: 'payment_seq', where: 'key = ? AND value = ?', params: [key, value] },
    ];
    metadata = metadata.slice(1);
    if (filter.status !== undefined) condition(filters, 'status = ?', [filter.status]);
    if (scope !== null) {
      const ids = placeholders(scopeIds.length);
      condition(filters, `(source_account_id IN (${ids}) OR destination_account_id IN (${ids}))`, [
        ...scopeIds,
        ...scopeIds,
      ]);
    }
  } else if (scope !== null) {
    arms = scopeIds.flatMap(accountArms);
  } else {
    // payments_status (migration 2), or the whole list by seq.
    arms = [filter.status === undefined ? EVERY_ROW : { where: 'status = ?', params: [filter.status] }];
  }
  metadataConditions(metadata, 'payments.seq', filters);
  return unionPage(db, 'payments', '*', arms, page, filters);
}

export function ledgerEntryRows(
  db: SqlExecutor,
  page: PageRequest,
  filter: LedgerFilter,
  scope: ReadScope | null,
): Promise<ScopedRows> {
  const filters = baseConditions(filter, scope);
  if (filters === null) return Promise.resolve(NOTHING(page));
  const { paymentId, accountId, counterpartyAccountId: other } = filter;
  const scopeIds = scope?.accountIds ?? [];
  let arms: Arm[];
  if (paymentId !== undefined) {
    // ledger_entries_payment: a payment has a handful of entries (its posting and its refunds' postings);
    // those on the account asked for, or on the scope's accounts, are kept.
    arms = [{ where: 'payment_id = ?', params: [paymentId] }];
    if (accountId !== undefined) condition(filters, 'account_id = ?', [accountId]);
    else if (scope !== null) condition(filters, `account_id IN (${placeholders(scopeIds.length)})`, scopeIds);
  } else if (accountId !== undefined) {
    arms = [{ where: 'account_id = ?', params: [accountId] }]; // ledger_entries_account: (account_id, seq)
  } else if (scope !== null) {
    arms = scopeIds.map((id) => ({ where: 'account_id = ?', params: [id] }));
  } else {
    arms = [EVERY_ROW];
  }
  // The counterparty's own entries are its side, not the other party's.
  if (other !== undefined) condition(filters, 'account_id <> ?', [other]);
  // What the entry's payment must be: a probe of payments.id (unique) per row of the window. An entry of no
  // payment (an opening balance) passes none of these.
  const ofPayment: Conditions = { where: [], params: [] };
  if (filter.status !== undefined) condition(ofPayment, 'p.status = ?', [filter.status]);
  if (other !== undefined) {
    condition(ofPayment, '(p.source_account_id = ? OR p.destination_account_id = ?)', [other, other]);
  }
  metadataConditions(filter.metadata, 'p.seq', ofPayment);
  if (ofPayment.where.length > 0) {
    condition(
      filters,
      `EXISTS (SELECT 1 FROM payments p WHERE p.id = ledger_entries.payment_id AND ${ofPayment.where.join(' AND ')})`,
      ofPayment.params,
    );
  }
  return unionPage(db, 'ledger_entries', '*', arms, page, filters);
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
