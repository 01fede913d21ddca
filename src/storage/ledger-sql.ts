import { assert } from '../domain/assert.ts';
import type { LedgerEntry } from '../domain/types.ts';
import { num } from './row-values.ts';
import type { Row, SqlExecutor } from './sql-store.ts';
import type { BalanceAt, Page, StatementPage } from './store.ts';

/**
 * The SQL of balances in time (docs/decisions/0022-balances-in-time.md): an account's statement and its
 * balance at an instant. Both read one entry or hold per bound from an index (migration 17) and never sum
 * history: each entry records its account's posted balance after it, each hold the running totals of holds
 * placed and resolved on its account.
 */

export function ledgerEntryFromRow(r: Row): LedgerEntry {
  return {
    id: r['id'] as string,
    transactionId: r['transaction_id'] as string,
    paymentId: (r['payment_id'] as string | null) ?? null,
    accountId: r['account_id'] as string,
    direction: r['direction'] as LedgerEntry['direction'],
    amountCents: num(r['amount_cents']),
    currency: r['currency'] as string,
    requestId: r['request_id'] as string,
    createdAtMs: num(r['created_at_ms']),
    balanceAfterCents: num(r['balance_after_cents']),
  };
}

type EntryPoint = { seq: number; createdAtMs: number; balanceAfterCents: number };

const NO_ENTRY: EntryPoint = { seq: 0, createdAtMs: 0, balanceAfterCents: 0 };
/** A binary search over 2^53 seq values ends within 54 probes; more would be a bug. */
const SEARCH_PROBES_MAX = 64;

async function entryPoint(db: SqlExecutor, sql: string, params: unknown[]): Promise<EntryPoint | undefined> {
  const r = await db.get(
    `SELECT seq, created_at_ms, balance_after_cents FROM ledger_entries WHERE ${sql}`,
    params,
  );
  return r === undefined
    ? undefined
    : {
        seq: num(r['seq']),
        createdAtMs: num(r['created_at_ms']),
        balanceAfterCents: num(r['balance_after_cents']),
      };
}

/**
 * The account's last entry stamped at or before `atMs` (none: seq 0, balance 0), by binary search over seq
 * along ledger_entries_account (account_id, seq): about log2(seq range) index probes (30 for a billion entries),
 * with no index on time, which every entry would pay for on the hot path. An account's entries are stamped in
 * seq order (written under its lock, by the clock read after the lock: docs/decisions/0022-balances-in-time.md).
 */
async function lastEntryAtOrBefore(db: SqlExecutor, accountId: string, atMs: number): Promise<EntryPoint> {
  const last = await entryPoint(db, 'account_id = ? ORDER BY seq DESC LIMIT 1', [accountId]);
  if (last === undefined || last.createdAtMs <= atMs) return last ?? NO_ENTRY;
  const first = await entryPoint(db, 'account_id = ? ORDER BY seq LIMIT 1', [accountId]);
  assert(first !== undefined, 'an account with a last entry has a first');
  if (first.createdAtMs > atMs) return NO_ENTRY;
  // Invariant: `found` is stamped at or before atMs, and no entry with seq >= `above` is. Each probe halves the
  // seq range (found.seq, above) that may still hold a later such entry.
  let found = first;
  let above = last.seq;
  for (let probes = 0; found.seq + 1 < above; probes++) {
    assert(probes < SEARCH_PROBES_MAX, 'the binary search over seq ends');
    const mid = found.seq + Math.floor((above - found.seq) / 2);
    const probe = await entryPoint(db, 'account_id = ? AND seq >= ? AND seq < ? ORDER BY seq LIMIT 1', [
      accountId,
      mid,
      above,
    ]);
    if (probe !== undefined && probe.createdAtMs <= atMs) found = probe;
    else above = mid; // none in [mid, above), or the first of them is stamped after atMs
  }
  return found;
}

/** The account's running total of holds placed (or resolved) at or before `atMs` (the largest: totals grow). */
async function holdTotalAt(
  db: SqlExecutor,
  which: 'placed' | 'resolved',
  accountId: string,
  atMs: number,
): Promise<number> {
  const [time, total] =
    which === 'placed'
      ? ['created_at_ms', 'placed_total_after_cents']
      : ['resolved_at_ms', 'resolved_total_after_cents'];
  const r = await db.get(
    `SELECT ${total} AS total FROM holds WHERE account_id = ? AND ${time} IS NOT NULL AND ${time} <= ?
      ORDER BY ${time} DESC, ${total} DESC LIMIT 1`,
    [accountId, atMs],
  );
  return r === undefined ? 0 : num(r['total']);
}

/** Posted and held balance as of the end of millisecond `atMs`: four index probes, whatever the history. */
export async function balanceAt(db: SqlExecutor, accountId: string, atMs: number): Promise<BalanceAt> {
  const posted = await lastEntryAtOrBefore(db, accountId, atMs);
  const placed = await holdTotalAt(db, 'placed', accountId, atMs);
  const resolved = await holdTotalAt(db, 'resolved', accountId, atMs);
  const heldBalanceCents = placed - resolved;
  // Stored data, not this process's state: a bad total is the ledger verifier's to report (a 500 here), not a
  // reason to stop the process.
  if (heldBalanceCents < 0)
    throw new Error(`the hold totals of ${accountId} disagree: GET /v1/ledger/verify`);
  return { postedBalanceCents: posted.balanceAfterCents, heldBalanceCents };
}

/**
 * The account's entries stamped in [fromMs, toMs), in seq order, a page at a time, with the posted balance
 * before the first (opening) and after the last (closing). The period's bounds become a seq range first (the
 * last entry before each bound, from the time index), then the page is a plain range of
 * ledger_entries_account (account_id, seq): no sort, however long the period. Entries in that seq range
 * chain exactly: opening + each entry = its balanceAfterCents, the last one's = closing.
 */
export async function accountStatement(
  db: SqlExecutor,
  accountId: string,
  period: { fromMs: number; toMs: number },
  page: { after: number; limit: number },
): Promise<StatementPage> {
  assert(period.fromMs < period.toMs, 'a statement period is not empty');
  const opening = await lastEntryAtOrBefore(db, accountId, period.fromMs - 1);
  const closing = await lastEntryAtOrBefore(db, accountId, period.toMs - 1);
  const rows = await db.all(
    `SELECT * FROM ledger_entries WHERE account_id = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?`,
    [accountId, Math.max(page.after, opening.seq), closing.seq, page.limit + 1],
  );
  const hasMore = rows.length > page.limit;
  const kept = hasMore ? rows.slice(0, page.limit) : rows;
  const entries: Page<LedgerEntry> = {
    items: kept.map(ledgerEntryFromRow),
    nextAfter: hasMore ? num(kept[kept.length - 1]!['seq']) : null,
  };
  return {
    openingBalanceCents: opening.balanceAfterCents,
    closingBalanceCents: closing.seq >= opening.seq ? closing.balanceAfterCents : opening.balanceAfterCents,
    entries,
  };
}
