import { performance } from 'node:perf_hooks';
import { assert } from '../domain/assert.ts';
import { type AuditDraft, type AuditEntry, sealAuditEntryCanonical } from '../domain/audit.ts';
import { auditLeafHash } from '../domain/audit-tree.ts';
import { AppError } from '../domain/errors.ts';
import type { FxQuote } from '../domain/fx.ts';
import {
  type IdempotencyRecord,
  idempotencyScope,
  type StoredResponse,
  splitIdempotencyScope,
} from '../domain/idempotency.ts';
import { newId } from '../domain/ids.ts';
import { applyPosting, heldAfter, type Posting } from '../domain/ledger.ts';
import {
  leafHash,
  leftSiblingsOf,
  type MerkleNode,
  type NodeId,
  nodeKey,
  nodesCompletedBy,
} from '../domain/merkle.ts';
import {
  PAYMENT_BATCH_ITEMS_MAX,
  type PaymentBatch,
  type PaymentBatchItem,
} from '../domain/payment-batch.ts';
import type {
  CaseDecision,
  CaseDraft,
  CaseStatus,
  ComplianceCase,
  ReportEntryDraft,
  ReportType,
} from '../domain/reporting.ts';
import {
  type Account,
  type AccountControls,
  type Actor,
  type ApiKey,
  type LedgerEntry,
  type OutboxEvent,
  type Payment,
  type PaymentResolution,
  type PaymentStatus,
  PING_EVENT_TYPE,
  type Refund,
  type ResolutionOutcome,
  stampFor,
} from '../domain/types.ts';
import { AccountCache } from './account-cache.ts';
import * as apiKeysSql from './api-keys-sql.ts';
import * as fxQuotesSql from './fx-quotes-sql.ts';
import * as keyRotationSql from './key-rotation-sql.ts';
import * as ledgerSql from './ledger-sql.ts';
import { ledgerEntryFromRow } from './ledger-sql.ts';
import * as paymentBatchesSql from './payment-batches-sql.ts';
import * as reportsSql from './reports-sql.ts';
import { type CounterReadDialect, RiskCounters } from './risk-counters.ts';
import { nullableNum, nullableStr, num, str } from './row-values.ts';
import { eraseSandboxData } from './sandbox-sql.ts';
import * as scopedSql from './scoped-sql.ts';
import type {
  AccountCheck,
  AccountRow,
  ApiKeyPosition,
  ApiKeyRow,
  AuditCheckpointRow,
  BalanceAt,
  ClaimedDelivery,
  Counters,
  CurrencyTotals,
  CustomerRow,
  CustomerScope,
  DeliveryAttempt,
  DeliveryRetry,
  EventDraft,
  ExpiredHold,
  KeysetPage,
  LedgerFilter,
  LockHints,
  Page,
  PageRequest,
  PaymentFilter,
  ReadScope,
  Reads,
  StaleDocumentIndex,
  StatementPage,
  Tx,
  WebhookDelivery,
  WebhookEndpointRow,
} from './store.ts';
// Bounded verification of the audit log and the ledger (src/app/verification.ts).
import {
  type AccountBalanceCheck,
  type AccountNet,
  AUDIT_NODE_RANGES_MAX,
  type AuditVerificationState,
  type FullAuditVerificationRecord,
  type MerkleNodeRange,
  type SeqRange,
} from './store.ts';
import * as webhooksSql from './webhooks-sql.ts';
import { webhookDeliveryFromRow, webhookEndpointFromRow } from './webhooks-sql.ts';
import {
  type BufferedTable,
  chunks,
  insertRows,
  type SavepointControl,
  WriteBehind,
} from './write-behind.ts';

/**
 * The SQL both adapters share. An executor runs one statement; the adapters differ only in how they connect,
 * open transactions and lock (`forUpdate` is empty on SQLite, whose write transactions are already exclusive).
 * Statements use `?` placeholders; the PostgreSQL executor rewrites them to `$n`.
 */
export type Row = Record<string, unknown>;

export interface SqlExecutor {
  all(sql: string, params?: unknown[]): Promise<Row[]>;
  get(sql: string, params?: unknown[]): Promise<Row | undefined>;
  run(sql: string, params?: unknown[]): Promise<number>;
}

/**
 * Turns of the event loop for a long batch: `pause` lets the loop run (setImmediate) once `sliceMs` of work went
 * by since the last turn (a fraction of it with `share`). SQLite needs it between commands, its statements hold
 * the loop; both engines need it inside a long command (Tx.pace), whose reads may all be served from memory.
 */
export function eventLoopSlices(sliceMs: number, enabled = true) {
  let startMs = performance.now();
  return {
    restart(): void {
      startMs = performance.now();
    },
    async pause(share = 1): Promise<void> {
      if (!enabled || performance.now() - startMs < sliceMs * share) return;
      await new Promise((resolve) => setImmediate(resolve));
      startMs = performance.now();
    },
  };
}

export interface SqlDialectOptions {
  name: 'sqlite' | 'postgres';
  forUpdate: string;
  /** ' FOR UPDATE SKIP LOCKED' on PostgreSQL (several dispatchers); empty on SQLite (one writer). */
  forUpdateSkipLocked: string;
  /** How the batch's one counter read binds its keys: 'arrays' on PostgreSQL, 'json' (the default). */
  counterReads?: CounterReadDialect;
  /**
   * The batch's counters when not the table's (SQLite: the writer's memory, src/storage/counter-memory.ts),
   * given the raw executor and a way to queue a row of `risk_keys_counted`.
   */
  counters?: (raw: SqlExecutor, insertKeyCounted: (key: string) => void) => Counters;
  /** `Tx.pace`: lets the event loop run when the batch's time slice is used up (SQLite); absent: nothing to do. */
  pause?: () => Promise<void>;
}

/**
 * For the ledger verifier, per account `a`: its holds whose running totals (migration 17) are not the running
 * sums of its holds' amounts, placed in (stamp, total) order and resolved in (resolution stamp, total) order (a
 * total only grows, so it orders holds of one millisecond). Only payments held for review have holds.
 */
const HOLD_TOTAL_BREAKS = `(
  (SELECT COUNT(*) FROM (SELECT h.placed_total_after_cents AS total,
                                SUM(h.amount_cents) OVER (ORDER BY h.created_at_ms, h.placed_total_after_cents) AS running
                           FROM holds h WHERE h.account_id = a.id) p WHERE p.total <> p.running)
  + (SELECT COUNT(*) FROM (SELECT h.resolved_total_after_cents AS total,
                                SUM(h.amount_cents) OVER (ORDER BY h.resolved_at_ms, h.resolved_total_after_cents) AS running
                           FROM holds h WHERE h.account_id = a.id AND h.resolved_at_ms IS NOT NULL) r
      WHERE r.total <> r.running))`;

const ACCOUNT_COLUMNS =
  'seq, id, kind, owner_customer_id, currency, number_last4, posted_balance_cents, held_balance_cents, created_at_ms, ' +
  'status, overdraft_limit_cents, minimum_balance_cents, stamped_at_ms';

export function accountFromRow(r: Row): Account {
  return {
    id: str(r['id']),
    kind: str(r['kind']) as Account['kind'],
    ownerCustomerId: nullableStr(r['owner_customer_id']),
    currency: str(r['currency']),
    postedBalanceCents: num(r['posted_balance_cents']),
    heldBalanceCents: num(r['held_balance_cents']),
    accountNumberLast4: str(r['number_last4']),
    createdAtMs: num(r['created_at_ms']),
    status: str(r['status']) as Account['status'],
    overdraftLimitCents: num(r['overdraft_limit_cents']),
    minimumBalanceCents: num(r['minimum_balance_cents']),
    stampedAtMs: num(r['stamped_at_ms']),
  };
}

function customerFromRow(r: Row): CustomerRow {
  return {
    id: str(r['id']),
    nameEnc: str(r['name_enc']),
    country: str(r['country']),
    kycStatus: str(r['kyc_status']) as CustomerRow['kycStatus'],
    documentIndex: str(r['document_index']),
    documentIndexVersion: num(r['document_index_version']),
    documentEnc: str(r['document_enc']),
    kycTier: str(r['kyc_tier']),
    sanctionsListSha256: nullableStr(r['sanctions_list_sha256']),
    sanctionsScoreBp: num(r['sanctions_score_bp']),
    sanctionsEntryId: nullableStr(r['sanctions_entry_id']),
    sanctionsAliasId: nullableStr(r['sanctions_alias_id']),
    createdAtMs: num(r['created_at_ms']),
  };
}

function paymentFromRow(r: Row): Payment {
  return {
    id: str(r['id']),
    status: str(r['status']) as PaymentStatus,
    sourceAccountId: str(r['source_account_id']),
    destinationAccountId: str(r['destination_account_id']),
    amountCents: num(r['amount_cents']),
    currency: str(r['currency']),
    note: nullableStr(r['note']),
    metadata: r['metadata'] === null ? null : JSON.parse(str(r['metadata'])),
    reasons: JSON.parse(str(r['reasons'])),
    decision: JSON.parse(str(r['decision'])),
    refundedCents: num(r['refunded_cents']),
    resolution: resolutionFromRow(r),
    fx: r['fx'] === null || r['fx'] === undefined ? null : JSON.parse(str(r['fx'])),
    batchId: nullableStr(r['batch_id']),
    createdAtMs: num(r['created_at_ms']),
    updatedAtMs: num(r['updated_at_ms']),
  };
}

function resolutionFromRow(r: Row): PaymentResolution | null {
  if (r['resolution'] === null || r['resolution'] === undefined) return null;
  return {
    outcome: str(r['resolution']) as ResolutionOutcome,
    atMs: num(r['resolved_at_ms']),
    actorId: str(r['resolved_by']),
    noteEnc: nullableStr(r['resolution_note_enc']),
  };
}

function refundFromRow(r: Row): Refund {
  return {
    id: str(r['id']),
    paymentId: str(r['payment_id']),
    amountCents: num(r['amount_cents']),
    currency: str(r['currency']),
    reasonEnc: nullableStr(r['reason_enc']),
    ledgerTransactionId: str(r['ledger_transaction_id']),
    createdAtMs: num(r['created_at_ms']),
  };
}

function eventFromRow(r: Row): OutboxEvent {
  return {
    id: str(r['id']),
    type: str(r['type']),
    resourceType: str(r['resource_type']),
    resourceId: str(r['resource_id']),
    data: str(r['data']),
    createdAtMs: num(r['created_at_ms']),
  };
}

function auditFromRow(r: Row): AuditEntry {
  return {
    id: str(r['id']),
    index: num(r['idx']),
    timestamp: str(r['ts']),
    eventType: str(r['event_type']),
    actorId: str(r['actor_id']),
    requestId: str(r['request_id']),
    resourceType: str(r['resource_type']),
    resourceId: str(r['resource_id']),
    metadata: JSON.parse(str(r['metadata'])),
    prevHash: str(r['prev_hash']),
    hash: str(r['hash']),
  };
}

function idempotencyFromRow(r: Row): IdempotencyRecord {
  return {
    apiKeyId: str(r['api_key_id']),
    key: str(r['idempotency_key']),
    fingerprint: str(r['fingerprint']),
    statusCode: num(r['status_code']),
    body: str(r['response_body']),
    resourceId: nullableStr(r['resource_id']),
    createdAtMs: num(r['created_at_ms']),
    expiresAtMs: num(r['expires_at_ms']),
  };
}

function toPage<T>(rows: Row[], limit: number, map: (r: Row) => T): Page<T> {
  const hasMore = rows.length > limit;
  const kept = hasMore ? rows.slice(0, limit) : rows;
  return { items: kept.map(map), nextAfter: hasMore ? num(kept[kept.length - 1]!['seq']) : null };
}

/**
 * A scoped or filtered list's rows as a page (its limit may be smaller than asked: scoped-sql.ts). When the
 * window it read ended before the page was full, the page is short and the cursor carries on from the window's
 * end (`scannedTo`), even with no items at all.
 */
function scopedPage<T>(scoped: scopedSql.ScopedRows, map: (r: Row) => T): Page<T> {
  const page = toPage(scoped.rows, scoped.limit, map);
  if (page.nextAfter !== null || scoped.scannedTo === null) return page;
  return { items: page.items, nextAfter: scoped.scannedTo };
}

const placeholders = (n: number) => Array.from({ length: n }, () => '?').join(', ');

export class SqlReads implements Reads {
  constructor(private readonly db: SqlExecutor) {}

  // API keys: the SQL lives in api-keys-sql.ts.
  findApiKeyByHash(secretHash: string): Promise<ApiKeyRow | undefined> {
    return apiKeysSql.findApiKeyByHash(this.db, secretHash);
  }

  getApiKey(id: string): Promise<ApiKeyRow | undefined> {
    return apiKeysSql.getApiKey(this.db, id);
  }

  listApiKeys(after: ApiKeyPosition | null, limit: number): Promise<KeysetPage<ApiKeyRow, ApiKeyPosition>> {
    return apiKeysSql.listApiKeys(this.db, after, limit);
  }

  countActiveAdminKeys(nowMs: number, exceptId: string): Promise<number> {
    return apiKeysSql.countActiveAdminKeys(this.db, nowMs, exceptId);
  }

  async getCustomer(id: string): Promise<CustomerRow | undefined> {
    const r = await this.db.get('SELECT * FROM customers WHERE id = ?', [id]);
    return r && customerFromRow(r);
  }

  async listCustomers(page: PageRequest, scope?: CustomerScope | null): Promise<Page<CustomerRow>> {
    if (scope) return scopedPage(await scopedSql.customerRows(this.db, page, scope), customerFromRow);
    const rows = await this.db.all('SELECT * FROM customers WHERE seq > ? ORDER BY seq LIMIT ?', [
      page.after,
      page.limit + 1,
    ]);
    return toPage(rows, page.limit, customerFromRow);
  }

  async getAccount(id: string): Promise<Account | undefined> {
    const r = await this.db.get(
      `SELECT ${ACCOUNT_COLUMNS} FROM accounts WHERE id = ? AND kind = 'customer'`,
      [id],
    );
    return r && accountFromRow(r);
  }

  async listAccounts(
    page: PageRequest,
    ownerCustomerId?: string,
    scope?: CustomerScope | null,
  ): Promise<Page<Account>> {
    if (scope) {
      const scoped = await scopedSql.accountRows(this.db, ACCOUNT_COLUMNS, page, ownerCustomerId, scope);
      return scopedPage(scoped, accountFromRow);
    }
    const byOwner = ownerCustomerId === undefined ? '' : 'AND owner_customer_id = ?';
    const params = ownerCustomerId === undefined ? [] : [ownerCustomerId];
    const rows = await this.db.all(
      `SELECT ${ACCOUNT_COLUMNS} FROM accounts WHERE kind = 'customer' AND seq > ? ${byOwner} ORDER BY seq LIMIT ?`,
      [page.after, ...params, page.limit + 1],
    );
    return toPage(rows, page.limit, accountFromRow);
  }

  getFxQuote(id: string): Promise<FxQuote | undefined> {
    return fxQuotesSql.getFxQuote(this.db, id);
  }

  // Regulatory reporting: the SQL lives in reports-sql.ts.
  listReportRows(
    type: ReportType,
    fromMs: number,
    toMs: number,
    after: reportsSql.ReportPosition | null,
    limit: number,
  ): Promise<reportsSql.ReportRowData[]> {
    return reportsSql.listReportRows(this.db, type, fromMs, toMs, after, limit);
  }

  getCase(id: string): Promise<ComplianceCase | undefined> {
    return reportsSql.getCase(this.db, id);
  }

  listCases(status: CaseStatus | undefined, page: PageRequest): Promise<Page<ComplianceCase>> {
    return reportsSql.listCases(this.db, status, page);
  }

  async getPayment(id: string): Promise<Payment | undefined> {
    const r = await this.db.get('SELECT * FROM payments WHERE id = ?', [id]);
    return r && paymentFromRow(r);
  }

  // Payment batches: the SQL lives in payment-batches-sql.ts.
  getPaymentBatch(id: string): Promise<PaymentBatch | undefined> {
    return paymentBatchesSql.getPaymentBatch(this.db, id);
  }

  async listPaymentBatchItems(batchId: string, afterIndex: number, limit: number) {
    const items = await paymentBatchesSql.listPaymentBatchItems(this.db, batchId, afterIndex, limit);
    const ids = items.flatMap((i) => i.paymentId ?? []);
    const payments = new Map<string, Payment>();
    for (const chunk of chunks(ids, IDS_PER_QUERY)) {
      const rows = await this.db.all(
        `SELECT * FROM payments WHERE id IN (${placeholders(chunk.length)})`,
        chunk,
      );
      for (const row of rows) payments.set(str(row['id']), paymentFromRow(row));
    }
    return items.map((item) => ({
      item,
      payment: item.paymentId === null ? null : (payments.get(item.paymentId) ?? null),
    }));
  }

  // Filtered and scoped lists read bounded windows of index ranges (scoped-sql.ts); an unfiltered, unscoped list
  // is one index range read in seq order, the same statement as always.
  async listPayments(
    page: PageRequest,
    filter: PaymentFilter,
    scope?: ReadScope | null,
  ): Promise<Page<Payment>> {
    return scopedPage(await scopedSql.paymentRows(this.db, page, filter, scope ?? null), paymentFromRow);
  }

  async listLedgerEntries(
    page: PageRequest,
    filter: LedgerFilter,
    scope?: ReadScope | null,
  ): Promise<Page<LedgerEntry>> {
    const rows = await scopedSql.ledgerEntryRows(this.db, page, filter, scope ?? null);
    return scopedPage(rows, ledgerEntryFromRow);
  }

  // Balances in time (SQL in ledger-sql.ts).
  accountStatement(
    accountId: string,
    period: { fromMs: number; toMs: number },
    page: PageRequest,
  ): Promise<StatementPage> {
    return ledgerSql.accountStatement(this.db, accountId, period, page);
  }

  balanceAt(accountId: string, atMs: number): Promise<BalanceAt> {
    return ledgerSql.balanceAt(this.db, accountId, atMs);
  }

  // Scoped keys (src/app/scope.ts): the SQL lives in scoped-sql.ts.
  accountIdsOwnedBy(customerIds: readonly string[], limit: number): Promise<string[]> {
    return scopedSql.accountIdsOwnedBy(this.db, customerIds, limit);
  }

  accountOwners(ids: readonly string[]): Promise<Map<string, string | null>> {
    return scopedSql.accountOwners(this.db, ids);
  }

  async findIdempotencyRecord(apiKeyId: string, key: string): Promise<IdempotencyRecord | undefined> {
    const r = await this.db.get(
      'SELECT * FROM idempotency_records WHERE api_key_id = ? AND idempotency_key = ?',
      [apiKeyId, key],
    );
    return r && idempotencyFromRow(r);
  }

  async listRefunds(paymentId: string, limit: number): Promise<Refund[]> {
    const rows = await this.db.all('SELECT * FROM refunds WHERE payment_id = ? ORDER BY seq LIMIT ?', [
      paymentId,
      limit,
    ]);
    return rows.map(refundFromRow);
  }

  async listExpiredHolds(createdAtOrBeforeMs: number, limit: number): Promise<ExpiredHold[]> {
    const rows = await this.db.all(
      `SELECT payment_id, account_id FROM holds WHERE status = 'active' AND created_at_ms <= ?
        ORDER BY created_at_ms, seq LIMIT ?`,
      [createdAtOrBeforeMs, limit],
    );
    return rows.map((r) => ({ paymentId: str(r['payment_id']), accountId: str(r['account_id']) }));
  }

  async listHeldPaymentsOfSender(customerId: string, limit: number): Promise<ExpiredHold[]> {
    // accounts_owner, then holds_active_account (migration 6): never a scan of every active hold.
    const rows = await this.db.all(
      `SELECT h.payment_id, h.account_id FROM accounts a
         JOIN holds h ON h.account_id = a.id AND h.status = 'active'
        WHERE a.owner_customer_id = ?
        ORDER BY h.created_at_ms, h.seq LIMIT ?`,
      [customerId, limit],
    );
    return rows.map((r) => ({ paymentId: str(r['payment_id']), accountId: str(r['account_id']) }));
  }

  async listEvents(page: PageRequest, scope?: ReadScope | null): Promise<Page<OutboxEvent>> {
    if (scope) return scopedPage(await scopedSql.eventRows(this.db, page, scope), eventFromRow);
    // A ping (POST /v1/webhook-endpoints/:id/test) is for its one endpoint, not a change: not listed.
    const rows = await this.db.all('SELECT * FROM events WHERE seq > ? AND type <> ? ORDER BY seq LIMIT ?', [
      page.after,
      PING_EVENT_TYPE,
      page.limit + 1,
    ]);
    return toPage(rows, page.limit, eventFromRow);
  }

  async getWebhookEndpoint(id: string): Promise<WebhookEndpointRow | undefined> {
    const r = await this.db.get('SELECT * FROM webhook_endpoints WHERE id = ? AND deleted_at_ms IS NULL', [
      id,
    ]);
    return r && webhookEndpointFromRow(r);
  }

  async listWebhookEndpoints(page: PageRequest): Promise<Page<WebhookEndpointRow>> {
    const rows = await this.db.all(
      'SELECT * FROM webhook_endpoints WHERE seq > ? AND deleted_at_ms IS NULL ORDER BY seq LIMIT ?',
      [page.after, page.limit + 1],
    );
    return toPage(rows, page.limit, webhookEndpointFromRow);
  }

  async listWebhookDeliveries(endpointId: string, page: PageRequest): Promise<Page<WebhookDelivery>> {
    const rows = await this.db.all(
      `SELECT d.*, e.type AS event_type FROM webhook_deliveries d JOIN events e ON e.id = d.event_id
        WHERE d.endpoint_id = ? AND d.seq > ? ORDER BY d.seq LIMIT ?`,
      [endpointId, page.after, page.limit + 1],
    );
    return toPage(rows, page.limit, webhookDeliveryFromRow);
  }

  getWebhookDelivery(id: string): Promise<WebhookDelivery | undefined> {
    return webhooksSql.getWebhookDelivery(this.db, id);
  }

  async listAuditEntries(fromIndex: number, limit: number): Promise<AuditEntry[]> {
    const rows = await this.db.all('SELECT * FROM audit_entries WHERE idx >= ? ORDER BY idx LIMIT ?', [
      fromIndex,
      limit,
    ]);
    return rows.map(auditFromRow);
  }

  async auditSize(): Promise<number> {
    const r = await this.db.get('SELECT size FROM audit_head WHERE id = 1');
    return num(r!['size']);
  }

  async auditHead(): Promise<{ size: number; lastHash: string; merkleSize: number }> {
    const r = await this.db.get('SELECT size, last_hash, merkle_size FROM audit_head WHERE id = 1');
    return { size: num(r!['size']), lastHash: str(r!['last_hash']), merkleSize: num(r!['merkle_size']) };
  }

  async ledgerTotals(range?: SeqRange): Promise<CurrencyTotals[]> {
    // Sums are returned as text so totals beyond 2^53 stay exact; BigInt does the arithmetic.
    const rows = await this.db.all(
      `SELECT currency,
              CAST(COALESCE(SUM(CASE WHEN direction = 'debit' THEN amount_cents ELSE 0 END), 0) AS TEXT) AS debits,
              CAST(COALESCE(SUM(CASE WHEN direction = 'credit' THEN amount_cents ELSE 0 END), 0) AS TEXT) AS credits
         FROM ledger_entries ${range === undefined ? '' : 'WHERE seq > ? AND seq <= ?'}
        GROUP BY currency ORDER BY currency`,
      range === undefined ? [] : [range.afterSeq, range.uptoSeq],
    );
    return rows.map((r) => ({
      currency: str(r['currency']),
      debitsCents: BigInt(str(r['debits'])),
      creditsCents: BigInt(str(r['credits'])),
    }));
  }

  async accountChecks(
    afterSeq: number,
    limit: number,
  ): Promise<{ checks: AccountCheck[]; lastSeq: number | null }> {
    const rows = await this.db.all(
      `SELECT a.seq, a.id, a.posted_balance_cents, a.held_balance_cents,
              CAST((SELECT COALESCE(SUM(CASE WHEN e.direction = 'credit' THEN e.amount_cents ELSE -e.amount_cents END), 0)
                      FROM ledger_entries e WHERE e.account_id = a.id) AS TEXT) AS entries_net,
              CAST((SELECT COALESCE(SUM(h.amount_cents), 0)
                      FROM holds h WHERE h.account_id = a.id AND h.status = 'active') AS TEXT) AS holds_total,
              (SELECT COUNT(*) FROM (SELECT e.balance_after_cents,
                                            SUM(CASE WHEN e.direction = 'credit' THEN e.amount_cents ELSE -e.amount_cents END)
                                              OVER (ORDER BY e.seq) AS running
                                       FROM ledger_entries e WHERE e.account_id = a.id) r
                WHERE r.balance_after_cents <> r.running) AS running_breaks,
              ${HOLD_TOTAL_BREAKS} AS hold_breaks
         FROM accounts a WHERE a.seq > ? ORDER BY a.seq LIMIT ?`,
      [afterSeq, limit],
    );
    const checks = rows.map((r) => ({
      accountId: str(r['id']),
      postedBalanceCents: num(r['posted_balance_cents']),
      heldBalanceCents: num(r['held_balance_cents']),
      entriesNetCents: BigInt(str(r['entries_net'])),
      activeHoldsCents: BigInt(str(r['holds_total'])),
      runningBalanceBreaks: num(r['running_breaks']),
      holdTotalBreaks: num(r['hold_breaks']),
    }));
    return { checks, lastSeq: rows.length === 0 ? null : num(rows[rows.length - 1]!['seq']) };
  }

  async paymentChecks(limit: number, range?: SeqRange): Promise<{ paymentId: string; problem: string }[]> {
    const within = range === undefined ? '' : 'AND p.seq > ? AND p.seq <= ?';
    const bounds = range === undefined ? [] : [range.afterSeq, range.uptoSeq];
    const holds = await this.db.all(
      `SELECT p.id FROM payments p
         LEFT JOIN holds h ON h.payment_id = p.id AND h.status = 'active'
        WHERE (p.status = 'manual_review') <> (h.id IS NOT NULL) ${within} ORDER BY p.seq LIMIT ?`,
      [...bounds, limit],
    );
    const refunds = await this.db.all(
      `SELECT p.id FROM payments p
        WHERE (p.refunded_cents > p.amount_cents
           OR p.refunded_cents <> (SELECT COALESCE(SUM(r.amount_cents), 0) FROM refunds r WHERE r.payment_id = p.id))
          ${within}
        ORDER BY p.seq LIMIT ?`,
      [...bounds, limit],
    );
    return [
      ...holds.map((r) => ({ paymentId: str(r['id']), problem: 'review status and active hold disagree' })),
      ...refunds.map((r) => ({
        paymentId: str(r['id']),
        problem: 'refunded total differs from its refunds',
      })),
    ];
  }

  async ledgerCheckBounds(): Promise<{ ledgerSeq: number; paymentSeq: number }> {
    const r = await this.db.get(
      `SELECT (SELECT COALESCE(MAX(seq), 0) FROM ledger_entries) AS ledger_seq,
              (SELECT COALESCE(MAX(seq), 0) FROM payments) AS payment_seq`,
    );
    return { ledgerSeq: num(r!['ledger_seq']), paymentSeq: num(r!['payment_seq']) };
  }

  async ledgerNetsByAccount(
    after: { accountId: string; seq: number },
    lastAccountId: string,
    uptoSeq: number,
    limit: number,
  ): Promise<AccountNet[]> {
    // Two plain ranges of ledger_entries_account (account_id, seq), each bounded by LIMIT: the rest of the
    // current account, then the accounts after it. (A row-value bound would make SQLite scan the current
    // account from its first entry on every call.)
    // Each run also checks its entries' running balances (migration 17) against each other; the first and
    // last let the caller chain one run to the next.
    const sum = (where: string) =>
      `SELECT account_id, CAST(SUM(signed) AS TEXT) AS net, MAX(seq) AS last_seq, COUNT(*) AS n,
              SUM(CASE WHEN previous IS NOT NULL AND balance_after_cents <> previous + signed THEN 1 ELSE 0 END)
                AS breaks,
              MAX(first_before) AS first_before, MAX(last_after) AS last_after
         FROM (SELECT account_id, seq, signed, balance_after_cents,
                      LAG(balance_after_cents) OVER (PARTITION BY account_id ORDER BY seq) AS previous,
                      FIRST_VALUE(balance_after_cents - signed) OVER (PARTITION BY account_id ORDER BY seq) AS first_before,
                      FIRST_VALUE(balance_after_cents) OVER (PARTITION BY account_id ORDER BY seq DESC) AS last_after
                 FROM (SELECT account_id, seq, balance_after_cents,
                              CASE WHEN direction = 'credit' THEN amount_cents ELSE -amount_cents END AS signed
                         FROM ledger_entries
                        WHERE ${where} AND seq <= ? ORDER BY account_id, seq LIMIT ?) window_rows) run_rows
        GROUP BY account_id ORDER BY account_id`;
    const toNet = (r: Row): AccountNet => ({
      accountId: str(r['account_id']),
      netCents: BigInt(str(r['net'])),
      lastSeq: num(r['last_seq']),
      rows: num(r['n']),
      firstBalanceBeforeCents: num(r['first_before']),
      lastBalanceAfterCents: num(r['last_after']),
      runningBalanceBreaks: num(r['breaks']),
    });
    const current = (
      await this.db.all(sum('account_id = ? AND seq > ?'), [after.accountId, after.seq, uptoSeq, limit])
    ).map(toNet);
    const left = limit - current.reduce((n, run) => n + run.rows, 0);
    if (left === 0) return current;
    const next = await this.db.all(sum('account_id > ? AND account_id <= ?'), [
      after.accountId,
      lastAccountId,
      uptoSeq,
      left,
    ]);
    return [...current, ...next.map(toNet)];
  }

  async accountBalancesAfter(
    afterId: string,
    limit: number,
    snapshotSeq: number,
  ): Promise<AccountBalanceCheck[]> {
    const rows = await this.db.all(
      `SELECT a.id, a.posted_balance_cents, a.held_balance_cents,
              CAST((SELECT COALESCE(SUM(CASE WHEN e.direction = 'credit' THEN e.amount_cents ELSE -e.amount_cents END), 0)
                      FROM ledger_entries e WHERE e.account_id = a.id AND e.seq > ?) AS TEXT) AS net_after,
              CAST((SELECT COALESCE(SUM(h.amount_cents), 0)
                      FROM holds h WHERE h.account_id = a.id AND h.status = 'active') AS TEXT) AS holds_total,
              ${HOLD_TOTAL_BREAKS} AS hold_breaks
         FROM accounts a WHERE a.id > ? ORDER BY a.id LIMIT ?`,
      [snapshotSeq, afterId, limit],
    );
    return rows.map((r) => ({
      accountId: str(r['id']),
      postedBalanceCents: num(r['posted_balance_cents']),
      heldBalanceCents: num(r['held_balance_cents']),
      activeHoldsCents: BigInt(str(r['holds_total'])),
      netAfterSnapshotCents: BigInt(str(r['net_after'])),
      holdTotalBreaks: num(r['hold_breaks']),
    }));
  }

  async auditMerkleSize(): Promise<number> {
    const r = await this.db.get('SELECT merkle_size FROM audit_head WHERE id = 1');
    return num(r!['merkle_size']);
  }

  auditMerkleNodes(ids: NodeId[]): Promise<MerkleNode[]> {
    return selectMerkleNodes(this.db, ids);
  }

  latestAuditCheckpoint(): Promise<AuditCheckpointRow | undefined> {
    return selectLatestCheckpoint(this.db);
  }

  async auditVerificationState(): Promise<AuditVerificationState> {
    const r = await this.db.get('SELECT * FROM audit_verification WHERE id = 1');
    assert(r !== undefined, 'the audit verification row exists (migration 11)');
    return {
      verifiedSize: num(r['verified_size']),
      verifiedHash: str(r['verified_hash']),
      verifiedAtMs: num(r['verified_at_ms']),
      lastFull:
        r['full_size'] === null || r['full_size'] === undefined
          ? null
          : {
              size: num(r['full_size']),
              atMs: num(r['full_at_ms']),
              brokenAtIndex: nullableNum(r['full_broken_index']),
              reason: nullableStr(r['full_reason']),
            },
      verifiedMac: nullableStr(r['verified_mac']),
      fullMac: nullableStr(r['full_mac']),
    };
  }

  async auditMerkleNodeRanges(ranges: MerkleNodeRange[]): Promise<MerkleNode[]> {
    assert(ranges.length <= AUDIT_NODE_RANGES_MAX, 'a bounded number of node ranges per query');
    if (ranges.length === 0) return [];
    // One primary-key range scan per level; UNION ALL keeps each one a plain index range on both engines.
    const scan = 'SELECT level, idx, hash FROM audit_merkle_nodes WHERE level = ? AND idx >= ? AND idx <= ?';
    const rows = await this.db.all(
      ranges.map(() => scan).join(' UNION ALL '),
      ranges.flatMap((r) => [r.level, r.firstIndex, r.lastIndex]),
    );
    return rows.map((r) => ({
      level: num(r['level']),
      index: num(r['idx']),
      hash: Buffer.from(str(r['hash']), 'hex'),
    }));
  }

  async findAuditIndex(resourceType: string, resourceId: string): Promise<number | undefined> {
    const r = await this.db.get(
      'SELECT idx FROM audit_entries WHERE resource_type = ? AND resource_id = ? ORDER BY idx LIMIT 1',
      [resourceType, resourceId],
    );
    return r === undefined ? undefined : num(r['idx']);
  }

  // Key management: the SQL lives in key-rotation-sql.ts.
  getSetting(key: string): Promise<string | undefined> {
    return keyRotationSql.getSetting(this.db, key);
  }

  keySamples(perColumn: number): Promise<keyRotationSql.KeySamples> {
    return keyRotationSql.keySamples(this.db, perColumn);
  }
}

/**
 * One batch's transaction. Created per batch by the adapter, which calls `prefetch` first, `endCommand` after
 * each command and `finish` before COMMIT. The rows a payment writes go through the write-behind
 * (write-behind.ts); the accounts, customers and idempotency records the batch's commands declared are read
 * once, up front, and served from memory.
 */
export class SqlTx implements Tx {
  nowMs = 0;
  readonly counters: Counters;
  private readonly db: SqlExecutor;
  private readonly writes: WriteBehind;
  private readonly accounts = new AccountCache();
  private readonly customers = new Map<string, CustomerRow>();
  /** Declared idempotency keys (`apiKeyId:key`): the stored record, or null when there is none. */
  private readonly idempotency = new Map<string, IdempotencyRecord | null>();
  private readonly idempotencyOfCommand = new Map<string, IdempotencyRecord | Claim>();
  private webhookEndpoints: Row[] | undefined;
  private auditQueuedForCommand: AuditDraft[] = [];
  private auditQueuedForBatch: AuditDraft[] = [];
  /** Report entries and cases (queueReporting), written after the audit entries they name, like them per command. */
  private reportingQueuedForCommand: QueuedReporting[] = [];
  private reportingQueuedForBatch: QueuedReporting[] = [];
  /** The index each of the batch's audit drafts got (flushAudit), for the report rows that name it. */
  private readonly auditIndexOf = new Map<AuditDraft, number>();

  constructor(
    private readonly raw: SqlExecutor,
    private readonly dialect: SqlDialectOptions,
    private readonly savepoint: SavepointControl,
  ) {
    this.writes = new WriteBehind(
      raw,
      savepoint,
      [...BUFFERED_BEFORE_ACCOUNTS, this.accounts, ...BUFFERED_AFTER_ACCOUNTS],
      (sql) => this.forgetWrittenTables(sql),
    );
    this.db = this.writes.db;
    this.counters =
      dialect.counters?.(raw, (key) => this.writes.insert('risk_keys_counted', [key])) ??
      new RiskCounters(
        this.db,
        { raw, insert: (row) => this.writes.insert('risk_counter_events', row) },
        dialect.counterReads ?? 'json',
      );
  }

  /** Reads, in a few statements, what the batch's commands declared: their accounts (locked), owners, keys. */
  async prefetch(hints: LockHints[]): Promise<void> {
    const accountIds = [...new Set(hints.flatMap((h) => h.accountIds ?? []))].sort();
    for (const ids of chunks(accountIds, IDS_PER_QUERY)) {
      const rows = await this.raw.all(
        `SELECT ${ACCOUNT_COLUMNS} FROM accounts WHERE id IN (${placeholders(ids.length)}) ORDER BY id${this.dialect.forUpdate}`,
        ids,
      );
      for (const row of rows) this.accounts.loaded(accountFromRow(row));
    }
    // The risk counters the commands declared are read together when the first one needs its own.
    this.counters.declare(hints.flatMap((h) => h.counters ?? []));
    const owners = accountIds.flatMap((id) => this.accounts.get(id)?.ownerCustomerId ?? []);
    await this.loadCustomers([...new Set(owners)]);
    const keys = [...new Set(hints.flatMap((h) => h.idempotencyKeys ?? []))];
    for (const chunk of chunks(keys, IDS_PER_QUERY)) {
      for (const key of chunk) this.idempotency.set(key, null);
      const rows = await this.raw.all(
        `SELECT * FROM idempotency_records WHERE (api_key_id, idempotency_key) IN (${chunk.map(() => '(?, ?)').join(', ')})`,
        chunk.flatMap(splitIdempotencyScope),
      );
      for (const row of rows) {
        const record = idempotencyFromRow(row);
        this.idempotency.set(idempotencyScope(record.apiKeyId, record.key), record);
      }
    }
  }

  /** Whether this batch emptied the store (the sandbox's reset): the adapter then forgets what it keeps in memory. */
  erased = false;

  async eraseSandboxData(): Promise<void> {
    assert(!this.erased, 'a batch resets the sandbox once');
    // Through the write-behind's executor: anything queued is written first, then goes with the rest.
    await eraseSandboxData(this.db, this.dialect.name);
    this.accounts.clear();
    this.customers.clear();
    this.idempotency.clear();
    this.webhookEndpoints = undefined;
    this.auditQueuedForBatch = [];
    this.erased = true;
  }

  async discardCommand(): Promise<void> {
    // Without a savepoint (PostgreSQL's lone command that did not declare itself discardable) a direct write
    // could not be undone: the declaration is a contract, checked.
    assert(this.savepoint.savepoints, 'a command that discards its work declared itself discardable');
    await this.endCommand(false);
  }

  async pace(): Promise<void> {
    // Written a thousand at a time (on SQLite about 10 ms of the slice), not all at once before COMMIT.
    await this.writes.flushWhenOver(ROWS_QUEUED_BEFORE_FLUSH);
    await this.dialect.pause?.();
  }

  /** Ends a command: its queued rows, balance changes and audit entries join the batch, or are dropped. */
  async endCommand(committed: boolean): Promise<void> {
    const hadSavepoint = await this.writes.endCommand(committed);
    this.accounts.endCommand(committed);
    this.counters.endCommand(committed);
    if (committed) {
      for (const [key, value] of this.idempotencyOfCommand) {
        assert(!isClaim(value), 'a claimed idempotency key is completed by the command that claimed it');
        this.idempotency.set(key, value);
      }
      this.auditQueuedForBatch.push(...this.auditQueuedForCommand);
      this.reportingQueuedForBatch.push(...this.reportingQueuedForCommand);
    } else if (hadSavepoint) {
      // Rows read after this command's direct writes may be gone with the rollback: read them again.
      this.forgetWrittenTables('accounts customers webhook_endpoints');
    }
    this.idempotencyOfCommand.clear();
    this.auditQueuedForCommand = [];
    this.reportingQueuedForCommand = [];
  }

  /** Writes everything queued, then the batch's audit entries: the last statements before COMMIT. */
  async finish(): Promise<void> {
    await this.writes.flushAll();
    await this.flushAudit();
    await this.flushReporting();
  }

  /** After a direct write (all queued rows were written first): cached copies of what it touched are stale. */
  private forgetWrittenTables(sql: string): void {
    if (/\baccounts\b/.test(sql)) this.accounts.clear();
    if (/\bcustomers\b/.test(sql)) this.customers.clear();
    if (/\bwebhook_endpoints\b/.test(sql)) this.webhookEndpoints = undefined;
    if (/\brisk_counter_events\b/.test(sql)) this.counters.tableWritten();
  }

  private async loadCustomers(ids: string[]): Promise<void> {
    for (const chunk of chunks(ids, IDS_PER_QUERY)) {
      const rows = await this.raw.all(
        `SELECT * FROM customers WHERE id IN (${placeholders(chunk.length)})`,
        chunk,
      );
      for (const row of rows) this.customers.set(str(row['id']), customerFromRow(row));
    }
  }

  async recordKycDecision(
    before: CustomerRow,
    after: CustomerRow,
    noteEnc: string | null,
    actor: Actor,
  ): Promise<void> {
    await this.db.run(
      `INSERT INTO kyc_decisions (id, customer_id, kyc_status_from, kyc_status_to, kyc_tier_from, kyc_tier_to, note_enc,
                                  actor_id, request_id, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [
        newId('kyc'),
        after.id,
        before.kycStatus,
        after.kycStatus,
        before.kycTier,
        after.kycTier,
        noteEnc,
        actor.apiKeyId,
        actor.requestId,
        this.nowMs,
      ],
    );
    const changed = await this.db.run(
      'UPDATE customers SET kyc_status = ?, kyc_tier = ?, updated_at_ms = ? WHERE id = ?',
      [after.kycStatus, after.kycTier, this.nowMs, after.id],
    );
    assert(changed === 1, 'the customer of a KYC decision exists');
  }

  async lockAccounts(ids: string[]): Promise<Map<string, Account>> {
    // Sorted, so every transaction takes row locks in the same order: no deadlock between opposite transfers.
    const unique = [...new Set(ids)].sort();
    const missing = unique.filter((id) => this.accounts.get(id) === undefined);
    if (missing.length > 0) {
      const rows = await this.db.all(
        `SELECT ${ACCOUNT_COLUMNS} FROM accounts WHERE id IN (${placeholders(missing.length)}) ORDER BY id${this.dialect.forUpdate}`,
        missing,
      );
      for (const row of rows) this.accounts.loaded(accountFromRow(row));
    }
    return presentIn(unique, (id) => this.accounts.get(id));
  }

  async getCustomers(ids: string[]): Promise<Map<string, CustomerRow>> {
    const unique = [...new Set(ids)];
    await this.loadCustomers(unique.filter((id) => !this.customers.has(id)));
    return presentIn(unique, (id) => this.customers.get(id));
  }

  async customerExistsWithDocument(documentIndex: string): Promise<boolean> {
    return (
      (await this.db.get('SELECT 1 AS found FROM customers WHERE document_index = ?', [documentIndex])) !==
      undefined
    );
  }

  async customerIdsWithDocuments(documentIndexes: string[]): Promise<Map<string, string>> {
    const holders = new Map<string, string>();
    for (const chunk of chunks([...new Set(documentIndexes)], IDS_PER_QUERY)) {
      const rows = await this.db.all(
        `SELECT id, document_index FROM customers WHERE document_index IN (${placeholders(chunk.length)})`,
        chunk,
      );
      for (const r of rows) holders.set(str(r['document_index']), str(r['id']));
    }
    return holders;
  }

  async customersWithDocumentIndexBefore(version: number, limit: number): Promise<StaleDocumentIndex[]> {
    // customers_document_index_version (migration 7): an index range, empty once every row is current.
    const rows = await this.db.all(
      `SELECT id, document_index, document_enc FROM customers WHERE document_index_version < ?
        ORDER BY document_index_version, seq LIMIT ?${this.dialect.forUpdate}`,
      [version, limit],
    );
    return rows.map((r) => ({
      id: str(r['id']),
      documentIndex: str(r['document_index']),
      documentEnc: str(r['document_enc']),
    }));
  }

  async setCustomerDocumentIndexes(
    rows: { id: string; documentIndex: string }[],
    version: number,
  ): Promise<void> {
    // Small statements: the CASE is evaluated by comparison per row, so its cost grows with the square.
    for (const chunk of chunks(rows, CUSTOMER_UPDATES_PER_STATEMENT)) {
      const changed = await this.db.run(
        `UPDATE customers SET document_index = CASE id ${chunk.map(() => 'WHEN ? THEN ?').join(' ')} END,
                              document_index_version = ?
          WHERE id IN (${placeholders(chunk.length)}) AND document_index_version < ?`,
        [...chunk.flatMap((r) => [r.id, r.documentIndex]), version, ...chunk.map((r) => r.id), version],
      );
      assert(changed === chunk.length, 'every re-keyed customer had an older document index');
    }
  }

  // API keys: the SQL lives in api-keys-sql.ts.
  async insertApiKey(key: ApiKey): Promise<void> {
    await apiKeysSql.insertApiKey(this.db, key);
  }

  insertApiKeyIfAbsent(key: ApiKey): Promise<boolean> {
    return apiKeysSql.insertApiKey(this.db, key, true);
  }

  lockApiKey(id: string): Promise<ApiKeyRow | undefined> {
    return apiKeysSql.getApiKey(this.db, id, this.dialect.forUpdate);
  }

  saveApiKey(key: ApiKeyRow): Promise<void> {
    return apiKeysSql.saveApiKey(this.db, key);
  }

  countActiveAdminKeys(nowMs: number, exceptId: string): Promise<number> {
    return apiKeysSql.countActiveAdminKeys(this.db, nowMs, exceptId);
  }

  async insertCustomer(c: CustomerRow): Promise<void> {
    await this.db.run(
      `INSERT INTO customers (id, name_enc, country, kyc_status, document_index, document_index_version, document_enc,
                             kyc_tier, sanctions_list_sha256, sanctions_score_bp, sanctions_entry_id, sanctions_alias_id,
                             created_at_ms, updated_at_ms)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [
        c.id,
        c.nameEnc,
        c.country,
        c.kycStatus,
        c.documentIndex,
        c.documentIndexVersion,
        c.documentEnc,
        c.kycTier,
        c.sanctionsListSha256,
        c.sanctionsScoreBp,
        c.sanctionsEntryId,
        c.sanctionsAliasId,
        c.createdAtMs,
        c.createdAtMs,
      ],
    );
  }

  async insertAccount(a: AccountRow): Promise<void> {
    assert(
      a.postedBalanceCents === 0 && a.heldBalanceCents === 0,
      'accounts open empty; money comes by posting',
    );
    // The controls columns' defaults (migration 20) are the open account's controls.
    assert(
      a.status === 'active' &&
        a.overdraftLimitCents === 0 &&
        a.minimumBalanceCents === 0 &&
        a.stampedAtMs === 0,
      'accounts open active, without limits, with nothing stamped yet',
    );
    // The first accounts in a new currency, opened by two processes at once, both create its system funding
    // account: the loser waits for the winner's commit, inserts nothing, and then reads the winner's row.
    const onConflict = a.kind === 'system' ? ' ON CONFLICT DO NOTHING' : '';
    await this.db.run(
      `INSERT INTO accounts (id, kind, owner_customer_id, currency, number_enc, number_index, number_last4,
                             posted_balance_cents, held_balance_cents, created_at_ms)
       VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, ?)${onConflict}`,
      [
        a.id,
        a.kind,
        a.ownerCustomerId,
        a.currency,
        a.numberEnc,
        a.numberIndex,
        a.accountNumberLast4,
        a.createdAtMs,
      ],
    );
  }

  async postLedger(posting: Posting, accounts: Map<string, Account>, requestId: string): Promise<string> {
    const result = applyPosting(posting, accounts);
    if (!result.ok) {
      throw new AppError(
        'BALANCE_LIMIT_EXCEEDED',
        'the resulting balance would exceed the largest supported amount',
      );
    }
    const transactionId = newId('ltx');
    this.writes.insert('ledger_transactions', [
      transactionId,
      posting.kind,
      posting.paymentId,
      posting.currency,
      requestId,
      this.nowMs,
    ]);
    // Each entry is stamped in its account's time order (stampFor): now, unless the account's history already
    // holds a later instant (another process's clock ahead of this one's).
    const stamps = new Map(
      posting.lines.map((l) => [l.accountId, stampFor(accounts.get(l.accountId)!, this.nowMs)]),
    );
    posting.lines.forEach((line, i) => {
      this.writes.insert('ledger_entries', [
        newId('led'),
        transactionId,
        posting.paymentId,
        line.accountId,
        line.direction,
        line.amountCents,
        posting.currency,
        requestId,
        stamps.get(line.accountId)!,
        result.lineBalancesAfter[i]!,
      ]);
    });
    for (const change of result.changes) {
      const account = accounts.get(change.accountId)!;
      const after = {
        ...account,
        postedBalanceCents: change.postedBalanceCents,
        stampedAtMs: stamps.get(change.accountId)!,
      };
      this.accounts.update(account, after);
      accounts.set(change.accountId, after);
    }
    return transactionId;
  }

  async setAccountControls(before: Account, after: AccountControls): Promise<void> {
    // A direct write: the write-behind writes the queued balances first, and the batch's cached accounts are
    // dropped after it (forgetWrittenTables), so the next command reads the new controls.
    const changed = await this.db.run(
      `UPDATE accounts SET status = ?, overdraft_limit_cents = ?, minimum_balance_cents = ?
        WHERE id = ? AND status = ?`,
      [after.status, after.overdraftLimitCents, after.minimumBalanceCents, before.id, before.status],
    );
    assert(changed === 1, `account ${before.id} changed under its lock`);
  }

  async placeHold(paymentId: string, account: Account, amountCents: number): Promise<Account> {
    const held = heldAfter(account, amountCents);
    // The account's running total of holds placed (for its held balance at an instant: migration 17). Only
    // a payment held for review pays this read, from the end of holds_account_placed.
    const placedAfter = await this.holdTotalWith('placed', account.id, amountCents);
    const stampMs = stampFor(account, this.nowMs);
    this.writes.insert('holds', [
      newId('hold'),
      paymentId,
      account.id,
      amountCents,
      'active',
      stampMs,
      placedAfter,
    ]);
    const after = { ...account, heldBalanceCents: held, stampedAtMs: stampMs };
    this.accounts.update(account, after);
    return after;
  }

  async endHold(
    paymentId: string,
    account: Account,
    status: 'captured' | 'released' | 'expired',
  ): Promise<{ amountCents: number; account: Account }> {
    const hold = await this.db.get(
      `SELECT amount_cents FROM holds WHERE payment_id = ? AND account_id = ? AND status = 'active'`,
      [paymentId, account.id],
    );
    assert(hold !== undefined, `payment ${paymentId} in review has an active hold`);
    const amountCents = num(hold['amount_cents']);
    const held = heldAfter(account, -amountCents);
    const resolvedAfter = await this.holdTotalWith('resolved', account.id, amountCents);
    const stampMs = stampFor(account, this.nowMs);
    await this.db.run(
      `UPDATE holds SET status = ?, resolved_at_ms = ?, resolved_total_after_cents = ?
        WHERE payment_id = ? AND status = 'active'`,
      [status, stampMs, resolvedAfter, paymentId],
    );
    const after = { ...account, heldBalanceCents: held, stampedAtMs: stampMs };
    this.accounts.update(account, after);
    return { amountCents, account: after };
  }

  /**
   * The account's running total of holds placed or resolved, with this one: its latest total (0 before its
   * first) plus `amountCents`. Its holds are stamped in time order (stampFor), so the latest is the largest. A
   * total beyond the safe integers is refused like a balance beyond them (BALANCE_LIMIT_EXCEEDED), not
   * asserted: a client's amounts reach it.
   */
  private async holdTotalWith(
    which: 'placed' | 'resolved',
    accountId: string,
    amountCents: number,
  ): Promise<number> {
    const [time, total] =
      which === 'placed'
        ? ['created_at_ms', 'placed_total_after_cents']
        : ['resolved_at_ms', 'resolved_total_after_cents'];
    const r = await this.db.get(
      `SELECT ${total} AS total FROM holds WHERE account_id = ? AND ${time} IS NOT NULL
        ORDER BY ${time} DESC, ${total} DESC LIMIT 1`,
      [accountId],
    );
    const after = (r === undefined ? 0 : num(r['total'])) + amountCents;
    if (!Number.isSafeInteger(after)) {
      throw new AppError('BALANCE_LIMIT_EXCEEDED', "the account's running total of holds is at its limit");
    }
    return after;
  }

  async lockPayment(id: string): Promise<Payment | undefined> {
    const r = await this.db.get(`SELECT * FROM payments WHERE id = ?${this.dialect.forUpdate}`, [id]);
    return r && paymentFromRow(r);
  }

  async resolvePayment(id: string, status: PaymentStatus, resolution: PaymentResolution): Promise<void> {
    const changed = await this.db.run(
      `UPDATE payments SET status = ?, resolution = ?, resolved_at_ms = ?, resolved_by = ?, resolution_note_enc = ?,
                           updated_at_ms = ?
        WHERE id = ? AND status = 'manual_review'`,
      [status, resolution.outcome, resolution.atMs, resolution.actorId, resolution.noteEnc, this.nowMs, id],
    );
    assert(changed === 1, `payment ${id} was in review when resolved`);
  }

  async insertRefund(r: Refund, apiKeyId: string, requestId: string): Promise<void> {
    await this.db.run(
      `INSERT INTO refunds (id, payment_id, amount_cents, currency, reason_enc, ledger_transaction_id, api_key_id,
                            request_id, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [
        r.id,
        r.paymentId,
        r.amountCents,
        r.currency,
        r.reasonEnc,
        r.ledgerTransactionId,
        apiKeyId,
        requestId,
        r.createdAtMs,
      ],
    );
  }

  async setRefundedCents(paymentId: string, beforeCents: number, afterCents: number): Promise<void> {
    const changed = await this.db.run(
      `UPDATE payments SET refunded_cents = ?, updated_at_ms = ?
        WHERE id = ? AND refunded_cents = ? AND status = 'posted' AND amount_cents >= ?`,
      [afterCents, this.nowMs, paymentId, beforeCents, afterCents],
    );
    assert(changed === 1, `refunded total of ${paymentId} changed under the transaction`);
  }

  async appendEvent(draft: EventDraft): Promise<OutboxEvent> {
    const { sourceAccountId, destinationAccountId, customerId, ...described } = draft;
    const event: OutboxEvent = { id: newId('evt'), ...described, createdAtMs: this.nowMs };
    this.writes.insert('events', [
      event.id,
      event.type,
      event.resourceType,
      event.resourceId,
      event.data,
      event.createdAtMs,
      // Who may see it with a scoped key (migration 10; src/app/scope.ts).
      sourceAccountId ?? null,
      destinationAccountId ?? null,
      customerId ?? (draft.resourceType === 'customer' ? draft.resourceId : null),
    ]);
    // Fan-out in the same transaction: a delivery exists for every subscriber the moment the event does.
    // Endpoints are few (read once per batch); subscriptions are filtered here, not in SQL over JSON.
    this.webhookEndpoints ??= await this.db.all(
      'SELECT id, event_types FROM webhook_endpoints WHERE deleted_at_ms IS NULL ORDER BY seq',
    );
    for (const endpoint of this.webhookEndpoints) {
      if (!(JSON.parse(str(endpoint['event_types'])) as string[]).includes(event.type)) continue;
      this.writes.insert('webhook_deliveries', [
        newId('whd'),
        event.id,
        str(endpoint['id']),
        'pending',
        0,
        this.nowMs,
        this.nowMs,
      ]);
    }
    return event;
  }

  async insertWebhookEndpoint(e: WebhookEndpointRow): Promise<void> {
    await this.db.run(
      `INSERT INTO webhook_endpoints (id, url, event_types, secret_enc, created_at_ms, deleted_at_ms)
       VALUES (?, ?, ?, ?, ?, NULL)`,
      [e.id, e.url, JSON.stringify(e.eventTypes), e.secretEnc, e.createdAtMs],
    );
  }

  async deleteWebhookEndpoint(id: string): Promise<boolean> {
    const changed = await this.db.run(
      'UPDATE webhook_endpoints SET deleted_at_ms = ? WHERE id = ? AND deleted_at_ms IS NULL',
      [this.nowMs, id],
    );
    return changed === 1;
  }

  lockWebhookEndpoint(id: string): Promise<WebhookEndpointRow | undefined> {
    return webhooksSql.lockWebhookEndpoint(this.db, id, this.dialect.forUpdate);
  }

  saveWebhookEndpointSecrets(
    id: string,
    secretEnc: string,
    previousSecretExpiresAtMs: number | null,
  ): Promise<void> {
    return webhooksSql.saveWebhookEndpointSecrets(
      this.db,
      id,
      secretEnc,
      previousSecretExpiresAtMs,
      this.nowMs,
    );
  }

  insertPingEvent(
    endpointId: string,
    data: string,
  ): Promise<{ event: OutboxEvent; delivery: WebhookDelivery }> {
    return webhooksSql.insertPingEvent(this.db, this.nowMs, endpointId, data);
  }

  retryWebhookDelivery(id: string, createdSinceMs: number): Promise<DeliveryRetry> {
    return webhooksSql.retryWebhookDelivery(this.db, id, this.nowMs, createdSinceMs);
  }

  async claimWebhookDeliveries(
    leaseToken: string,
    leaseUntilMs: number,
    limit: number,
  ): Promise<ClaimedDelivery[]> {
    await this.db.run(
      `UPDATE webhook_deliveries SET locked_until_ms = ?, lease_token = ?
        WHERE id IN (SELECT d.id FROM webhook_deliveries d
                      WHERE d.status = 'pending' AND d.next_attempt_at_ms <= ? AND d.locked_until_ms <= ?
                        AND EXISTS (SELECT 1 FROM webhook_endpoints w
                                     WHERE w.id = d.endpoint_id AND w.deleted_at_ms IS NULL)
                      ORDER BY d.next_attempt_at_ms, d.seq LIMIT ?${this.dialect.forUpdateSkipLocked})`,
      [leaseUntilMs, leaseToken, this.nowMs, this.nowMs, limit],
    );
    const rows = await this.db.all(
      `SELECT d.id AS delivery_id, d.attempts, d.attempts_at_retry,
              w.id AS endpoint_id, w.url, w.secret_enc, w.previous_secret_expires_at_ms,
              e.id, e.type, e.resource_type, e.resource_id, e.data, e.created_at_ms
         FROM webhook_deliveries d
         JOIN webhook_endpoints w ON w.id = d.endpoint_id
         JOIN events e ON e.id = d.event_id
        WHERE d.lease_token = ? AND d.status = 'pending' ORDER BY d.seq`,
      [leaseToken],
    );
    return rows.map((r) => ({
      deliveryId: str(r['delivery_id']),
      attempts: num(r['attempts']),
      attemptsAtRetry: num(r['attempts_at_retry']),
      endpoint: {
        id: str(r['endpoint_id']),
        url: str(r['url']),
        secretEnc: str(r['secret_enc']),
        previousSecretExpiresAtMs: nullableNum(r['previous_secret_expires_at_ms']),
      },
      event: eventFromRow(r),
    }));
  }

  async recordWebhookAttempt(deliveryId: string, leaseToken: string, a: DeliveryAttempt): Promise<boolean> {
    const changed = await this.db.run(
      `UPDATE webhook_deliveries SET status = ?, attempts = ?, next_attempt_at_ms = ?, last_status_code = ?,
                                     last_error = ?, last_attempt_at_ms = ?, locked_until_ms = 0, lease_token = NULL
        WHERE id = ? AND lease_token = ? AND attempts = ?`,
      [
        a.status,
        a.attemptsAfter,
        a.nextAttemptAtMs,
        a.statusCode,
        a.error,
        this.nowMs,
        deliveryId,
        leaseToken,
        a.attemptsAfter - 1,
      ],
    );
    return changed === 1;
  }

  // FX quotes: the SQL lives in fx-quotes-sql.ts.
  insertFxQuote(quote: FxQuote): Promise<void> {
    return fxQuotesSql.insertFxQuote(this.db, quote);
  }

  lockFxQuote(id: string): Promise<FxQuote | undefined> {
    return fxQuotesSql.getFxQuote(this.db, id, this.dialect.forUpdate);
  }

  useFxQuote(id: string, paymentId: string): Promise<boolean> {
    return fxQuotesSql.useFxQuote(this.db, id, paymentId, this.nowMs);
  }

  insertPaymentBatch(batch: PaymentBatch, items: PaymentBatchItem[]): Promise<void> {
    return paymentBatchesSql.insertPaymentBatch(this.db, batch, items);
  }

  async insertPayment(p: Payment, apiKeyId: string, requestId: string): Promise<void> {
    this.writes.insert('payments', [
      p.id,
      p.status,
      p.sourceAccountId,
      p.destinationAccountId,
      p.amountCents,
      p.currency,
      p.note,
      p.metadata === null ? null : JSON.stringify(p.metadata),
      JSON.stringify(p.reasons),
      JSON.stringify(p.decision),
      apiKeyId,
      requestId,
      p.createdAtMs,
      p.updatedAtMs,
      p.fx == null ? null : JSON.stringify(p.fx),
      p.batchId ?? null,
    ]);
    // The metadata filter's index (migration 18): a row per key, for payments that carry metadata only.
    // Own keys only (Object.entries), so a key such as `__proto__` is a key like any other.
    for (const [key, value] of Object.entries(p.metadata ?? {})) {
      this.writes.insert('payment_metadata', [p.id, key, value]);
    }
  }

  /**
   * Queues the entry: the adapter appends a batch's entries together, last in its transaction (`flushAudit`).
   * A command's entries join the batch only if the command commits (`endCommand`).
   */
  async appendAudit(draft: AuditDraft): Promise<void> {
    assert(this.auditQueuedForCommand.length < AUDIT_DRAFTS_PER_COMMAND_MAX, 'a command appends few entries');
    this.auditQueuedForCommand.push(draft);
  }

  async queueReporting(audit: AuditDraft, entries: ReportEntryDraft[], cases: CaseDraft[]): Promise<void> {
    assert(
      this.auditQueuedForCommand.includes(audit),
      'report rows name an audit entry of their own command',
    );
    this.reportingQueuedForCommand.push({ audit, entries, cases });
  }

  /** The batch's report entries and cases, each with the index its payment's audit entry got: after flushAudit. */
  private async flushReporting(): Promise<void> {
    const queued = this.reportingQueuedForBatch;
    this.reportingQueuedForBatch = [];
    const indexOf = (audit: AuditDraft): number => {
      const index = this.auditIndexOf.get(audit);
      assert(index !== undefined, 'a report row names an audit entry appended by its batch');
      return index;
    };
    const entries = queued.flatMap((q) =>
      q.entries.map((draft) => ({ draft, auditIndex: indexOf(q.audit) })),
    );
    const cases = queued.flatMap((q) => q.cases.map((draft) => ({ draft, auditIndex: indexOf(q.audit) })));
    this.auditIndexOf.clear();
    if (cases.length > 0) await reportsSql.insertCases(this.raw, cases);
    if (entries.length > 0) await reportsSql.insertReportEntries(this.raw, entries);
  }

  lockCase(id: string): Promise<ComplianceCase | undefined> {
    return reportsSql.getCase(this.db, id, this.dialect.forUpdate);
  }

  async decideCase(
    id: string,
    decision: CaseDecision,
    actorId: string,
    noteEnc: string | null,
  ): Promise<void> {
    const decided = await reportsSql.decideCase(this.db, id, decision, this.nowMs, actorId, noteEnc);
    assert(decided, 'a case is decided once, under its lock, while open');
  }

  /**
   * Appends the batch's audit entries, in command order, just before COMMIT. The chain head is the
   * serialisation point of the log: read (and on PostgreSQL locked) here, as late as possible, so concurrent
   * batches hold it only for these few statements and the commit; the chain never forks. Entries carry the
   * time they join the log (`nowMs`, set by the adapter), so timestamps follow the chain order.
   */
  private async flushAudit(): Promise<void> {
    const drafts = this.auditQueuedForBatch;
    this.auditQueuedForBatch = [];
    if (drafts.length === 0) return;
    const head = await this.raw.get(
      `SELECT size, last_hash, merkle_size FROM audit_head WHERE id = 1${this.dialect.forUpdate}`,
    );
    assert(head !== undefined, 'audit head row exists');
    const size = num(head['size']);
    // Entries appended by a build without Merkle nodes (a rolling upgrade) get theirs first.
    await this.addMerkleLeaves(this.raw, num(head['merkle_size']), size);
    const entries: AuditEntry[] = [];
    const leaves: Buffer[] = [];
    let prevHash = str(head['last_hash']);
    for (const draft of drafts) {
      // A payment batch appends a thousand entries: on SQLite the loop runs between slices of the sealing
      // (the head is this batch's until COMMIT; see Tx.pace).
      if (entries.length % AUDIT_SEALS_PER_PAUSE === AUDIT_SEALS_PER_PAUSE - 1) await this.dialect.pause?.();
      // The canonical bytes the chain hash covers are the Merkle leaf's too: computed once.
      const { entry, canonical } = sealAuditEntryCanonical(
        draft,
        { index: size + entries.length, prevHash },
        newId('aud'),
        this.nowMs,
      );
      entries.push(entry);
      // Only the drafts report rows name are remembered (queueReporting): usually none.
      if (this.reportingQueuedForBatch.length > 0) this.auditIndexOf.set(draft, entry.index);
      leaves.push(leafHash(canonical));
      prevHash = entry.hash;
    }
    await this.dialect.pause?.();
    await insertRows(this.raw, 'audit_entries', AUDIT_COLUMNS, entries.map(auditRow));
    await this.dialect.pause?.();
    await this.writeMerkleLeaves(this.raw, size, leaves);
    const changed = await this.raw.run(
      'UPDATE audit_head SET size = ?, last_hash = ?, merkle_size = ? WHERE id = 1 AND size = ?',
      [size + entries.length, prevHash, size + entries.length, size],
    );
    assert(changed === 1, 'audit head moved under the transaction');
  }

  async claimIdempotencyKey(
    apiKeyId: string,
    key: string,
    fingerprint: string,
    expiresAtMs: number,
  ): Promise<IdempotencyRecord | 'claimed'> {
    const id = idempotencyScope(apiKeyId, key);
    const seen = this.idempotencyOfCommand.get(id) ?? this.idempotency.get(id);
    // Read in `prefetch`, under the key's lock: a key must be declared in the command's LockHints.
    assert(seen !== undefined, 'an idempotency key is declared before it is claimed');
    assert(!isClaim(seen), 'an idempotency key is claimed once per command');
    if (seen !== null && seen.expiresAtMs > this.nowMs) return seen;
    if (seen !== null) {
      // An expired record no longer protects anything: make room for the new request under the same key.
      // Through `db`: a direct write, undone with the command if it fails.
      await this.db.run('DELETE FROM idempotency_records WHERE api_key_id = ? AND idempotency_key = ?', [
        apiKeyId,
        key,
      ]);
    }
    this.idempotencyOfCommand.set(id, { claim: true, fingerprint, createdAtMs: this.nowMs, expiresAtMs });
    return 'claimed';
  }

  async completeIdempotencyKey(
    apiKeyId: string,
    key: string,
    response: StoredResponse,
    resourceId: string | null,
  ): Promise<void> {
    const id = idempotencyScope(apiKeyId, key);
    const claim = this.idempotencyOfCommand.get(id);
    assert(claim !== undefined && isClaim(claim), 'completing an idempotency key this command claimed');
    const record: IdempotencyRecord = {
      apiKeyId,
      key,
      fingerprint: claim.fingerprint,
      statusCode: response.statusCode,
      body: response.body,
      resourceId,
      createdAtMs: claim.createdAtMs,
      expiresAtMs: claim.expiresAtMs,
    };
    this.writes.insert('idempotency_records', [
      apiKeyId,
      key,
      record.fingerprint,
      record.statusCode,
      record.body,
      resourceId,
      record.createdAtMs,
      record.expiresAtMs,
    ]);
    this.idempotencyOfCommand.set(id, record);
  }

  async purgeExpiredIdempotencyRecords(limit: number): Promise<number> {
    return this.db.run(
      `DELETE FROM idempotency_records WHERE (api_key_id, idempotency_key) IN (
         SELECT api_key_id, idempotency_key FROM idempotency_records WHERE expires_at_ms <= ? LIMIT ?)`,
      [this.nowMs, limit],
    );
  }

  async lockAuditMerkleHead(): Promise<number> {
    const r = await this.db.get(`SELECT merkle_size FROM audit_head WHERE id = 1${this.dialect.forUpdate}`);
    return num(r!['merkle_size']);
  }

  async extendAuditMerkle(leavesMax: number): Promise<{ merkleSize: number; size: number }> {
    const head = await this.db.get(
      `SELECT size, merkle_size FROM audit_head WHERE id = 1${this.dialect.forUpdate}`,
    );
    const size = num(head!['size']);
    const from = num(head!['merkle_size']);
    const to = Math.min(size, from + leavesMax);
    await this.addMerkleLeaves(this.db, from, to);
    return { merkleSize: to, size };
  }

  auditMerkleNodes(ids: NodeId[]): Promise<MerkleNode[]> {
    return selectMerkleNodes(this.db, ids);
  }

  latestAuditCheckpoint(): Promise<AuditCheckpointRow | undefined> {
    return selectLatestCheckpoint(this.db);
  }

  async advanceAuditVerified(size: number, hash: string, mac: string): Promise<void> {
    await this.db.run(
      `UPDATE audit_verification SET verified_size = ?, verified_hash = ?, verified_at_ms = ?, verified_mac = ?
        WHERE id = 1 AND verified_size < ?`,
      [size, hash, this.nowMs, mac, size],
    );
  }

  async recordFullAuditVerification(result: FullAuditVerificationRecord): Promise<void> {
    assert(
      (result.brokenAtIndex === null) === (result.reason === null) && result.prefixSize <= result.size,
      'a full verification is valid or broken somewhere inside what it checked',
    );
    await this.db.run(
      `UPDATE audit_verification SET full_size = ?, full_at_ms = ?, full_broken_index = ?, full_reason = ?,
              full_mac = ? WHERE id = 1`,
      [result.size, this.nowMs, result.brokenAtIndex, result.reason, result.fullMac],
    );
    if (result.brokenAtIndex === null) {
      await this.advanceAuditVerified(result.prefixSize, result.prefixHash, result.prefixMac);
      return;
    }
    // A break below the verified prefix moves it back: incremental runs must not start beyond it.
    await this.db.run(
      `UPDATE audit_verification SET verified_size = ?, verified_hash = ?, verified_at_ms = ?, verified_mac = ?
        WHERE id = 1`,
      [result.prefixSize, result.prefixHash, this.nowMs, result.prefixMac],
    );
  }

  async insertAuditCheckpoint(c: AuditCheckpointRow): Promise<void> {
    await this.db.run(
      'INSERT INTO audit_checkpoints (tree_size, root_hash, note, created_at_ms) VALUES (?, ?, ?, ?)',
      [c.treeSize, c.rootHash.toString('hex'), c.note, c.createdAtMs],
    );
  }

  // Key management: the SQL lives in key-rotation-sql.ts.
  getSetting(key: string): Promise<string | undefined> {
    return keyRotationSql.getSetting(this.db, key);
  }

  putSetting(key: string, value: string): Promise<void> {
    return keyRotationSql.putSetting(this.db, key, value);
  }

  staleEncryptedValues(
    column: keyRotationSql.EncryptedColumn,
    primaryPrefix: string,
    after: string | null,
    limit: number,
  ): Promise<keyRotationSql.EncryptedValueChunk> {
    return keyRotationSql.staleEncryptedValues(this.db, column, primaryPrefix, after, limit);
  }

  replaceEncryptedValues(
    column: keyRotationSql.EncryptedColumn,
    rows: { rowKey: string; before: string; after: string }[],
  ): Promise<number> {
    return keyRotationSql.replaceEncryptedValues(this.db, column, rows);
  }

  /** Writes the Merkle nodes of entries [from, to) from their stored rows and moves merkle_size to `to`. */
  private async addMerkleLeaves(db: SqlExecutor, from: number, to: number): Promise<void> {
    for (let start = from; start < to; start += MERKLE_BACKFILL_PAGE) {
      const end = Math.min(to, start + MERKLE_BACKFILL_PAGE);
      const rows = await db.all('SELECT * FROM audit_entries WHERE idx >= ? AND idx < ? ORDER BY idx', [
        start,
        end,
      ]);
      assert(rows.length === end - start, `audit entries ${start}..${end - 1} exist for their Merkle leaves`);
      const entries = rows.map(auditFromRow);
      entries.forEach((entry, offset) => {
        assert(entry.index === start + offset, `audit entry ${start + offset} exists for its Merkle leaf`);
      });
      await this.writeMerkleLeaves(db, start, entries.map(auditLeafHash));
    }
    if (to > from) {
      const changed = await db.run('UPDATE audit_head SET merkle_size = ? WHERE id = 1 AND merkle_size = ?', [
        to,
        from,
      ]);
      assert(changed === 1, 'Merkle size moved under the transaction');
    }
  }

  /**
   * Stores leaves `first`, `first + 1`, ... and every perfect subtree they complete (on average one more node
   * per leaf). Left siblings completed by an earlier leaf of this call are already in memory; the others were
   * stored before, and are read in one query per chunk.
   */
  private async writeMerkleLeaves(db: SqlExecutor, first: number, leaves: Buffer[]): Promise<void> {
    const storedIds = new Map<string, NodeId>();
    leaves.forEach((_, offset) => {
      for (const id of leftSiblingsOf(first + offset)) {
        if (lastLeafOf(id) < first) storedIds.set(nodeKey(id), id);
      }
    });
    const known = new Map<string, Buffer>();
    for (const chunk of chunks([...storedIds.values()], MERKLE_IDS_PER_QUERY)) {
      for (const node of await selectMerkleNodes(db, chunk)) known.set(nodeKey(node), node.hash);
    }
    const written: MerkleNode[] = [];
    leaves.forEach((leaf, offset) => {
      const index = first + offset;
      const completed = nodesCompletedBy(index, leaf, (id) => {
        const hash = known.get(nodeKey(id));
        assert(hash !== undefined, `Merkle node ${nodeKey(id)} exists before leaf ${index}`);
        return hash;
      });
      for (const node of completed) known.set(nodeKey(node), node.hash);
      written.push(...completed);
    });
    await insertRows(
      db,
      'audit_merkle_nodes',
      ['level', 'idx', 'hash'],
      written.map((n) => [n.level, n.index, n.hash.toString('hex')]),
    );
  }
}

/** The ids among `ids` that `get` finds, with what it found. */
function presentIn<T>(ids: string[], get: (id: string) => T | undefined): Map<string, T> {
  const found = new Map<string, T>();
  for (const id of ids) {
    const value = get(id);
    if (value !== undefined) found.set(id, value);
  }
  return found;
}

/** The last leaf a perfect subtree covers: a left sibling ending before a new run of leaves is stored. */
function lastLeafOf(id: NodeId): number {
  return (id.index + 1) * 2 ** id.level - 1;
}

/**
 * A sanity bound, not a tuning knob. The largest command is a payment batch: an entry per payment and one for
 * the batch (src/app/payment-batches.ts). Before it, the review paths' chunks, one entry per payment: a KYC
 * rejection declining up to 100 held payments plus its own entry (src/app/review.ts, KYC_CASCADE_CHUNK_MAX)
 * and the hold-expiry sweep's 100 (which 16 made fail on its 17th hold).
 */
const AUDIT_DRAFTS_PER_COMMAND_MAX = PAYMENT_BATCH_ITEMS_MAX + 1;
/** While sealing a batch's audit entries, how often to offer the event loop a turn (`dialect.pause`). */
const AUDIT_SEALS_PER_PAUSE = 64;
/**
 * `Tx.pace` writes the queued rows once this many wait: a payment batch queues about 10 rows per payment (more
 * with metadata and webhook endpoints). On SQLite writing them holds the event loop (about 10 ms per thousand),
 * and the write-behind's bound is 100,000 rows for the whole batch.
 */
const ROWS_QUEUED_BEFORE_FLUSH = 1_000;
const MERKLE_IDS_PER_QUERY = 100;
const AUDIT_COLUMNS = [
  'idx',
  'id',
  'ts',
  'event_type',
  'actor_id',
  'request_id',
  'resource_type',
  'resource_id',
  'metadata',
  'prev_hash',
  'hash',
];

function auditRow(entry: AuditEntry): unknown[] {
  return [
    entry.index,
    entry.id,
    entry.timestamp,
    entry.eventType,
    entry.actorId,
    entry.requestId,
    entry.resourceType,
    entry.resourceId,
    JSON.stringify(entry.metadata),
    entry.prevHash,
    entry.hash,
  ];
}

const MERKLE_BACKFILL_PAGE = 500;
const IDS_PER_QUERY = 500;
const CUSTOMER_UPDATES_PER_STATEMENT = 100;

/**
 * The tables a payment's rows are queued for (write-behind.ts), in foreign-key order around the accounts'
 * balances: a flush writes a table's parents before it. Counter points have no parents; they come first, so
 * reading a counter flushes only them.
 */
/**
 * Payment metadata by key and value (migration 18), keyed by the payment's seq, which the database assigns when
 * the payments are written: queued with the payment's id and written after the payments, with the seq looked
 * up by id (payments.id is unique, so one index probe a row) in the same statement.
 */
const PAYMENT_METADATA: BufferedTable = {
  table: 'payment_metadata',
  columns: ['payment_id', 'key', 'value'],
  insertSql: (values) =>
    `WITH v (payment_id, key, value) AS (VALUES ${values})
     INSERT INTO payment_metadata (payment_seq, key, value)
       SELECT p.seq, v.key, v.value FROM v JOIN payments p ON p.id = v.payment_id`,
};
const BUFFERED_BEFORE_ACCOUNTS: BufferedTable[] = [
  { table: 'risk_counter_events', columns: ['counter_key', 'at_ms', 'cum_count', 'cum_sum_cents'] },
  { table: 'risk_keys_counted', columns: ['counter_key'] },
];
const BUFFERED_AFTER_ACCOUNTS: BufferedTable[] = [
  {
    table: 'payments',
    columns: [
      'id',
      'status',
      'source_account_id',
      'destination_account_id',
      'amount_cents',
      'currency',
      'note',
      'metadata',
      'reasons',
      'decision',
      'api_key_id',
      'request_id',
      'created_at_ms',
      'updated_at_ms',
      // The quote terms of a cross-currency payment (migration 19); null for one currency.
      'fx',
      // The batch it was made in (migration 21); null for a single payment.
      'batch_id',
    ],
  },
  PAYMENT_METADATA,
  {
    table: 'ledger_transactions',
    columns: ['id', 'kind', 'payment_id', 'currency', 'request_id', 'created_at_ms'],
  },
  {
    table: 'ledger_entries',
    columns: [
      'id',
      'transaction_id',
      'payment_id',
      'account_id',
      'direction',
      'amount_cents',
      'currency',
      'request_id',
      'created_at_ms',
      'balance_after_cents',
    ],
  },
  {
    table: 'holds',
    columns: [
      'id',
      'payment_id',
      'account_id',
      'amount_cents',
      'status',
      'created_at_ms',
      'placed_total_after_cents',
    ],
  },
  {
    table: 'events',
    columns: [
      'id',
      'type',
      'resource_type',
      'resource_id',
      'data',
      'created_at_ms',
      'source_account_id',
      'destination_account_id',
      'customer_id',
    ],
  },
  {
    table: 'webhook_deliveries',
    columns: ['id', 'event_id', 'endpoint_id', 'status', 'attempts', 'next_attempt_at_ms', 'created_at_ms'],
  },
  {
    table: 'idempotency_records',
    columns: [
      'api_key_id',
      'idempotency_key',
      'fingerprint',
      'status_code',
      'response_body',
      'resource_id',
      'created_at_ms',
      'expires_at_ms',
    ],
  },
];

/** A payment's report entries and cases, and the audit draft whose index they carry. */
interface QueuedReporting {
  audit: AuditDraft;
  entries: ReportEntryDraft[];
  cases: CaseDraft[];
}

/** A key claimed by the running command, before it completes it. */
interface Claim {
  claim: true;
  fingerprint: string;
  createdAtMs: number;
  expiresAtMs: number;
}

function isClaim(value: IdempotencyRecord | Claim | null): value is Claim {
  return value !== null && 'claim' in value;
}

/** One round trip for all the nodes a proof needs (each lookup is a primary-key probe). */
async function selectMerkleNodes(db: SqlExecutor, ids: NodeId[]): Promise<MerkleNode[]> {
  if (ids.length === 0) return [];
  const rows = await db.all(
    `SELECT level, idx, hash FROM audit_merkle_nodes WHERE ${ids.map(() => '(level = ? AND idx = ?)').join(' OR ')}`,
    ids.flatMap((id) => [id.level, id.index]),
  );
  return rows.map((r) => ({
    level: num(r['level']),
    index: num(r['idx']),
    hash: Buffer.from(str(r['hash']), 'hex'),
  }));
}

async function selectLatestCheckpoint(db: SqlExecutor): Promise<AuditCheckpointRow | undefined> {
  const r = await db.get('SELECT * FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1');
  return (
    r && {
      treeSize: num(r['tree_size']),
      rootHash: Buffer.from(str(r['root_hash']), 'hex'),
      note: str(r['note']),
      createdAtMs: num(r['created_at_ms']),
    }
  );
}
