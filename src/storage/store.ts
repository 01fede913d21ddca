import type { AuditDraft, AuditEntry } from '../domain/audit.ts';
import type { WindowTotals } from '../domain/features.ts';
import type { FxQuote } from '../domain/fx.ts';
import type { IdempotencyRecord, StoredResponse } from '../domain/idempotency.ts';
import type { Posting } from '../domain/ledger.ts';
import type { MerkleNode, NodeId } from '../domain/merkle.ts';
import type { PaymentBatch, PaymentBatchItem } from '../domain/payment-batch.ts';
import type {
  CaseDecision,
  CaseDraft,
  CaseStatus,
  ComplianceCase,
  ReportEntryDraft,
  ReportType,
} from '../domain/reporting.ts';
import type { CounterEvent, CounterPoint, CounterRequest } from '../domain/risk-keys.ts';
import type {
  Account,
  AccountControls,
  Actor,
  ApiKey,
  KycStatus,
  LedgerEntry,
  OutboxEvent,
  Payment,
  PaymentResolution,
  PaymentStatus,
  Refund,
} from '../domain/types.ts';
import type { EncryptedColumn, EncryptedValueChunk, KeySamples } from './key-rotation-sql.ts';
import type { ReportPosition, ReportRowData } from './reports-sql.ts';

/**
 * The storage port, in the domain's own words. Adapters: SQLite (sqlite.ts) and PostgreSQL (postgres.ts),
 * both over the same SQL (sql-store.ts).
 *
 * Writes happen only through `applyBatch`: a batch of commands runs in ONE database transaction and ONE
 * durable commit. A command that throws is undone alone (its queued rows dropped, its direct writes rolled
 * back to its savepoint) and the others still commit. A batch writes its rows behind, a few multi-row
 * statements per batch (docs/decisions/0010). The result of every command is released only after the commit
 * returned. Reads outside a batch (`reads`) see committed data only.
 */
export type CommandRun<R> = (tx: Tx) => Promise<R>;

/**
 * What a command will lock, declared up front. PostgreSQL takes these locks at the start of the batch in one
 * global order (idempotency keys, then accounts, each sorted; the audit head last, when appending), which is
 * what makes batches from many processes deadlock-free. SQLite's single writer needs none of it.
 */
export interface LockHints {
  /** Keys as `idempotencyScope(apiKeyId, key)` (src/domain/idempotency.ts): locked, and their records read up front. */
  idempotencyKeys?: string[];
  accountIds?: string[];
  /**
   * Named things the command may create (a currency's funding account, the demo data). Locked with the
   * idempotency keys, before any row: two batches that could both create one never overlap, so neither
   * waits on the other's new row after the audit head is taken. Names are free text, namespaced apart from
   * idempotency keys.
   */
  names?: string[];
  /**
   * Risk counters the command will read (src/app/risk-assessment.ts): the batch reads all its commands'
   * counters in one statement, instead of one per command. A command that reads others reads them itself.
   */
  counters?: CounterRequest[];
  /**
   * The command may undo its own work part-way and go on (`Tx.discardCommand`: a payment batch, src/app/
   * payment-batches.ts). It then needs its savepoint even when it runs alone, where PostgreSQL saves one.
   */
  discardable?: boolean;
  /**
   * The command runs in a transaction of its own, never batched with others (the sandbox's reset, which
   * empties every table: a payment batched with it would update rows that are gone).
   */
  alone?: boolean;
}

export interface Command<R> {
  run: CommandRun<R>;
  locks?: LockHints;
}
export type CommandOutcome<R> = { ok: true; value: R } | { ok: false; error: unknown };

export interface Store {
  readonly dialect: 'sqlite' | 'postgres';
  readonly reads: Reads;
  applyBatch(commands: Command<unknown>[]): Promise<CommandOutcome<unknown>[]>;
  /** Dev key material kept with the data; created once under a lock, then returned unchanged. */
  getOrCreateSetting(key: string, create: () => string): Promise<string>;
  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface CustomerRow {
  id: string;
  nameEnc: string;
  country: string;
  kycStatus: KycStatus;
  /** Blind index (keyed hash) of the document reference's compact skeleton: duplicate detection. */
  documentIndex: string;
  /** What documentIndex hashes: see DOCUMENT_INDEX_VERSION (src/app/identity-index.ts); 0 = as sent. */
  documentIndexVersion: number;
  /** The document reference exactly as sent, encrypted. */
  documentEnc: string;
  kycTier: string;
  /** The last sanctions screening (at onboarding): list hash, score in basis points, matched entry. No name. */
  sanctionsListSha256: string | null;
  sanctionsScoreBp: number;
  sanctionsEntryId: string | null;
  /** The list alias the screening matched (set by screening; null when none, or not screened for it). */
  sanctionsAliasId: string | null;
  createdAtMs: number;
}

/** A customer whose document blind index is older than the current version: re-keyed at start-up. */
export interface StaleDocumentIndex {
  id: string;
  documentIndex: string;
  documentEnc: string;
}

export interface AccountRow extends Account {
  numberEnc: string;
  numberIndex: string;
}

/** An API key as stored: the domain's ApiKey plus when its secret was last rotated. */
export interface ApiKeyRow extends ApiKey {
  lastRotatedAtMs: number | null;
}

/** Where a page of API keys ends: keys are listed by (createdAtMs, id). */
export interface ApiKeyPosition {
  createdAtMs: number;
  id: string;
}

/** A page over a table without a seq column: the position of the last item when more follow. */
export interface KeysetPage<T, P> {
  items: T[];
  next: P | null;
}

export interface Page<T> {
  items: T[];
  /** Cursor position (seq) of the last item, when more items follow. */
  nextAfter: number | null;
}

export interface PageRequest {
  /**
   * The position the page starts from, exclusive: the seq of the last row of the previous page; 0 for the
   * first page. Oldest first, rows with a greater seq follow; newest first (`descending`), rows with a smaller.
   */
  after: number;
  limit: number;
  /** Newest first (`order=desc`). Only the payment and ledger lists take it. */
  descending?: boolean;
}

/**
 * The seq condition and order of a page: one place, so every list pages both ways alike. `column` names the
 * seq column when it is not `seq` (an index of another table that carries the list's seq, e.g. payment_metadata).
 */
export function pageOrder(
  page: PageRequest,
  column = 'seq',
): {
  where: string;
  param: number;
  orderBy: string;
  /** Compares two seqs in the page's order (for merging rows read apart). */
  compare: (a: number, b: number) => number;
} {
  if (page.descending !== true) {
    return { where: `${column} > ?`, param: page.after, orderBy: column, compare: (a, b) => a - b };
  }
  return {
    where: `${column} < ?`,
    param: page.after === 0 ? Number.MAX_SAFE_INTEGER : page.after,
    orderBy: `${column} DESC`,
    compare: (a, b) => b - a,
  };
}

/** The customers a scoped key is limited to (src/app/scope.ts); a list shows only what they own. */
export interface CustomerScope {
  customerIds: readonly string[];
}

/** A scope with the customer accounts its customers own, resolved once per request. */
export interface ReadScope extends CustomerScope {
  accountIds: readonly string[];
}

/**
 * The filters both the payment and the ledger list take (issue 17), already checked at the edge
 * (src/http/list-filters.ts). All given filters must hold (AND). Absent: no condition.
 */
export interface ListFilter {
  /** Payments: either side is this account. Ledger: the entry is on this account. */
  accountId?: string | undefined;
  /**
   * The other party. Payments: with `accountId`, payments between the two (either direction); alone, payments
   * with this account on either side (for a scoped key: between it and one of the key's accounts). Ledger: the
   * entries of payments (and their refunds) whose other party is this account, i.e. not the entries on it.
   */
  counterpartyAccountId?: string | undefined;
  /** created_at_ms >= createdFromMs (inclusive). */
  createdFromMs?: number | undefined;
  /** created_at_ms < createdToMs (exclusive). */
  createdToMs?: number | undefined;
  /** amount_cents >= amountMin (inclusive), minor units. */
  amountMin?: number | undefined;
  /** amount_cents <= amountMax (inclusive), minor units. */
  amountMax?: number | undefined;
  /** The payment's status (ledger: the status of the entry's payment; entries of no payment never match). */
  status?: PaymentStatus | undefined;
  /** Exact key and value matches on the payment's metadata, all of them (ledger: the entry's payment's). */
  metadata?: readonly (readonly [key: string, value: string])[] | undefined;
}

/** A page of an account's statement, with the period's opening and closing posted balances. */
export interface StatementPage {
  openingBalanceCents: number;
  closingBalanceCents: number;
  entries: Page<LedgerEntry>;
}

export interface BalanceAt {
  postedBalanceCents: number;
  heldBalanceCents: number;
}

export interface LedgerFilter extends ListFilter {
  paymentId?: string | undefined;
}

/** The payment list's filters: every ListFilter; a scoped key's list is still limited to its customers. */
export type PaymentFilter = ListFilter;

export interface CurrencyTotals {
  currency: string;
  debitsCents: bigint;
  creditsCents: bigint;
}

export interface AccountCheck {
  accountId: string;
  postedBalanceCents: number;
  heldBalanceCents: number;
  entriesNetCents: bigint;
  activeHoldsCents: bigint;
  /** Entries whose balanceAfterCents is not the running sum of the account's entries up to them. */
  runningBalanceBreaks: number;
  /** Holds whose running totals (placed, resolved) are not the running sums of the account's holds. */
  holdTotalBreaks: number;
}

/** Rows with afterSeq < seq <= uptoSeq. */
export interface SeqRange {
  afterSeq: number;
  uptoSeq: number;
}

/** A run of one account's ledger entries: credits minus debits, its last seq and how many rows it summed. */
export interface AccountNet {
  accountId: string;
  netCents: bigint;
  lastSeq: number;
  rows: number;
  /** The run's first entry's balanceAfterCents minus its own amount: the balance it claims to start from. */
  firstBalanceBeforeCents: number;
  /** The run's last entry's balanceAfterCents (the next run of the account must start from it). */
  lastBalanceAfterCents: number;
  /** Entries in the run whose balanceAfterCents is not the one before it plus their own amount. */
  runningBalanceBreaks: number;
}

export interface AccountBalanceCheck {
  accountId: string;
  postedBalanceCents: number;
  heldBalanceCents: number;
  activeHoldsCents: bigint;
  /** Credits minus debits of the account's entries after the snapshot seq. */
  netAfterSnapshotCents: bigint;
  /** Holds whose running totals (placed, resolved) are not the running sums of the account's holds. */
  holdTotalBreaks: number;
}

/** An active review hold: the held payment and the (source) account it is on. */
export interface ExpiredHold {
  paymentId: string;
  accountId: string;
}

export interface WebhookEndpointRow {
  id: string;
  url: string;
  eventTypes: string[];
  /** The signing secrets, newest first, space-separated, in one envelope (src/webhooks/secrets.ts). */
  secretEnc: string;
  createdAtMs: number;
  deletedAtMs: number | null;
  /** Until when the previous secret still signs beside the current one; null: there is none. */
  previousSecretExpiresAtMs: number | null;
  secretRotatedAtMs: number | null;
}

export type DeliveryStatus = 'pending' | 'succeeded' | 'failed';

export interface WebhookDelivery {
  id: string;
  eventId: string;
  eventType: string;
  endpointId: string;
  status: DeliveryStatus;
  attempts: number;
  nextAttemptAtMs: number;
  lastStatusCode: number | null;
  lastError: string | null;
  lastAttemptAtMs: number | null;
  createdAtMs: number;
  /** How many times it was re-queued by hand after failing (POST /v1/webhook-deliveries/:id/retry). */
  manualRetries: number;
}

/** A delivery leased to this process, with what it needs to send it (outside any transaction). */
export interface ClaimedDelivery {
  deliveryId: string;
  /** Every attempt so far, manual retries included. */
  attempts: number;
  /** `attempts` when it was last re-queued by hand (0: never): its current budget of attempts starts there. */
  attemptsAtRetry: number;
  endpoint: { id: string; url: string; secretEnc: string; previousSecretExpiresAtMs: number | null };
  event: OutboxEvent;
}

/** What a manual retry found: re-queued, or why not (a delivery of a deleted endpoint is not found). */
export type DeliveryRetry =
  | { outcome: 'requeued'; delivery: WebhookDelivery }
  | { outcome: 'not_retryable'; delivery: WebhookDelivery }
  | { outcome: 'not_found' };

/** The outcome of one delivery attempt; `status` is decided by the dispatcher (retry policy). */
export interface DeliveryAttempt {
  status: DeliveryStatus;
  attemptsAfter: number;
  nextAttemptAtMs: number;
  statusCode: number | null;
  error: string | null;
}

export interface EventDraft {
  type: string;
  resourceType: string;
  resourceId: string;
  /** JSON text; the webhook body embeds it verbatim. */
  data: string;
  /**
   * What the event is about, for keys scoped to customers (src/app/scope.ts): a payment event names its two
   * accounts; a customer event its customer (when absent, a `customer` resource's id is taken).
   */
  sourceAccountId?: string;
  destinationAccountId?: string;
  customerId?: string;
}

export interface Reads {
  // API keys (src/app/api-keys.ts; SQL in api-keys-sql.ts).
  /** The key whose current or previous secret has this hash, whatever its state (auth decides). */
  findApiKeyByHash(secretHash: string): Promise<ApiKeyRow | undefined>;
  getApiKey(id: string): Promise<ApiKeyRow | undefined>;
  /** Oldest first, keyset-paged on (createdAtMs, id); `limit` 1..500. */
  listApiKeys(after: ApiKeyPosition | null, limit: number): Promise<KeysetPage<ApiKeyRow, ApiKeyPosition>>;
  /** Admin keys that authenticate at `nowMs`, other than `exceptId`. */
  countActiveAdminKeys(nowMs: number, exceptId: string): Promise<number>;
  getCustomer(id: string): Promise<CustomerRow | undefined>;
  // A `scope` argument (a key scoped to customers, src/app/scope.ts) filters a list in SQL, index-backed;
  // absent or null: unscoped, the list as it always was (no extra query).
  listCustomers(page: PageRequest, scope?: CustomerScope | null): Promise<Page<CustomerRow>>;
  getAccount(id: string): Promise<Account | undefined>;
  listAccounts(
    page: PageRequest,
    ownerCustomerId?: string,
    scope?: CustomerScope | null,
  ): Promise<Page<Account>>;
  getPayment(id: string): Promise<Payment | undefined>;
  // Payment batches (src/app/payment-batches.ts; SQL in payment-batches-sql.ts).
  getPaymentBatch(id: string): Promise<PaymentBatch | undefined>;
  /** Up to `limit` items after `afterIndex`, in order, each with its payment as it is now (null: none). */
  listPaymentBatchItems(
    batchId: string,
    afterIndex: number,
    limit: number,
  ): Promise<{ item: PaymentBatchItem; payment: Payment | null }[]>;
  /** An FX quote (committed state: which currencies, so which FX pools, a payment with it will lock). */
  getFxQuote(id: string): Promise<FxQuote | undefined>;
  /**
   * With a scope: the payments from or to its accounts. A page may hold fewer than `limit`, even none with
   * more to come: a scoped or filtered page reads a bounded window of index entries (src/storage/scoped-sql.ts).
   */
  listPayments(page: PageRequest, filter: PaymentFilter, scope?: ReadScope | null): Promise<Page<Payment>>;
  /** With a scope: the entries on its accounts only (never the counterparty's side of a posting). */
  listLedgerEntries(
    page: PageRequest,
    filter: LedgerFilter,
    scope?: ReadScope | null,
  ): Promise<Page<LedgerEntry>>;
  /** The customer accounts these customers own (index-backed), at most `limit` of them. */
  accountIdsOwnedBy(customerIds: readonly string[], limit: number): Promise<string[]>;
  /** Balances in time (GET /v1/accounts/:id/statement): entries stamped in [fromMs, toMs), seq order. */
  accountStatement(
    accountId: string,
    period: { fromMs: number; toMs: number },
    page: PageRequest,
  ): Promise<StatementPage>;
  /** Posted and held balance as of the end of millisecond `atMs` (GET /v1/accounts/:id/balance?at=). */
  balanceAt(accountId: string, atMs: number): Promise<BalanceAt>;
  /** The owners of those of `ids` that exist (a system account's owner is null). */
  accountOwners(ids: readonly string[]): Promise<Map<string, string | null>>;
  findIdempotencyRecord(apiKeyId: string, key: string): Promise<IdempotencyRecord | undefined>;
  /** A payment's refunds, oldest first, at most `limit` (index-backed). */
  listRefunds(paymentId: string, limit: number): Promise<Refund[]>;
  /** Active holds created at or before `createdAtOrBeforeMs`, oldest first. */
  listExpiredHolds(createdAtOrBeforeMs: number, limit: number): Promise<ExpiredHold[]>;
  /**
   * Active holds on the accounts a customer owns (the payments held for review with that customer as sender),
   * oldest first, at most `limit` (index-backed: accounts by owner, active holds by account).
   */
  listHeldPaymentsOfSender(customerId: string, limit: number): Promise<ExpiredHold[]>;
  /** With a scope: events about its accounts' payments and about its customers. */
  listEvents(page: PageRequest, scope?: ReadScope | null): Promise<Page<OutboxEvent>>;
  getWebhookEndpoint(id: string): Promise<WebhookEndpointRow | undefined>;
  listWebhookEndpoints(page: PageRequest): Promise<Page<WebhookEndpointRow>>;
  listWebhookDeliveries(endpointId: string, page: PageRequest): Promise<Page<WebhookDelivery>>;
  /** A delivery of a live endpoint (SQL in webhooks-sql.ts). */
  getWebhookDelivery(id: string): Promise<WebhookDelivery | undefined>;
  /** Audit entries with index >= fromIndex, in index order. */
  listAuditEntries(fromIndex: number, limit: number): Promise<AuditEntry[]>;
  auditSize(): Promise<number>;
  /** The chain head as one row: size, last hash and the Merkle size, read together (a consistent snapshot). */
  auditHead(): Promise<{ size: number; lastHash: string; merkleSize: number }>;
  /** Per-currency totals; with a range, of the entries with afterSeq < seq <= uptoSeq only (a key range). */
  ledgerTotals(range?: SeqRange): Promise<CurrencyTotals[]>;
  /**
   * Payments whose lifecycle state disagrees with their rows: in review without exactly one active hold (or an
   * active hold outside review), or a refunded total that is not the sum of its refunds or exceeds the amount.
   */
  paymentChecks(limit: number, range?: SeqRange): Promise<{ paymentId: string; problem: string }[]>;
  /** Accounts whose stored balances disagree with their entries or holds (limit bounds the answer). */
  accountChecks(afterSeq: number, limit: number): Promise<{ checks: AccountCheck[]; lastSeq: number | null }>;

  // The ledger check in bounded windows (src/app/verification.ts), where seq order is commit order (SQLite).
  /** The highest seq of ledger entries and of payments (0 when none): the window the check covers. */
  ledgerCheckBounds(): Promise<{ ledgerSeq: number; paymentSeq: number }>;
  /**
   * At most `limit` ledger entries with seq <= uptoSeq that follow `after` in (account id, seq) order, up to
   * account `lastAccountId`, summed per account in that order (an index range of ledger_entries_account).
   */
  ledgerNetsByAccount(
    after: { accountId: string; seq: number },
    lastAccountId: string,
    uptoSeq: number,
    limit: number,
  ): Promise<AccountNet[]>;
  /**
   * Up to `limit` accounts after `afterId` in id order: their balances, open holds and, read in the same
   * statement, the net of their entries after `snapshotSeq` (so the balances compare with a fixed history).
   */
  accountBalancesAfter(afterId: string, limit: number, snapshotSeq: number): Promise<AccountBalanceCheck[]>;

  // Verifiable audit log (src/app/audit-log.ts): Merkle nodes, checkpoints, and an entry by its resource.
  /** Leaves that have their Merkle nodes stored (equals auditSize() except right after migration 3). */
  auditMerkleSize(): Promise<number>;
  auditMerkleNodes(ids: NodeId[]): Promise<MerkleNode[]>;
  latestAuditCheckpoint(): Promise<AuditCheckpointRow | undefined>;
  /** The index of the first audit entry about a resource (index-backed). */
  findAuditIndex(resourceType: string, resourceId: string): Promise<number | undefined>;

  // Regulatory reporting (src/app/reports.ts, src/app/cases.ts); the SQL lives in reports-sql.ts.
  /**
   * Up to `limit` rows of a report with fromMs <= createdAtMs < toMs after `after`, in (createdAtMs, seq)
   * order (an index range), each with its payment and both parties (personal fields still encrypted).
   */
  listReportRows(
    type: ReportType,
    fromMs: number,
    toMs: number,
    after: ReportPosition | null,
    limit: number,
  ): Promise<ReportRowData[]>;
  getCase(id: string): Promise<ComplianceCase | undefined>;
  /** Oldest first; with a status, only cases in it (index-backed). */
  listCases(status: CaseStatus | undefined, page: PageRequest): Promise<Page<ComplianceCase>>;

  // Key management (src/app/key-rotation.ts); the SQL lives in key-rotation-sql.ts.
  getSetting(key: string): Promise<string | undefined>;
  /** A few of the newest encrypted values and blind indexes (a database that never recorded its keys). */
  keySamples(perColumn: number): Promise<KeySamples>;

  // Bounded audit verification (src/app/verification.ts).
  /** The verified prefix of the log and the last full verification, shared by every process. */
  auditVerificationState(): Promise<AuditVerificationState>;
  /**
   * Stored Merkle nodes in the given ranges of one level each (inclusive index bounds), for comparing the
   * stored tree with one recomputed from the entries. At most AUDIT_NODE_RANGES_MAX ranges per call.
   */
  auditMerkleNodeRanges(ranges: MerkleNodeRange[]): Promise<MerkleNode[]>;
}

/** Nodes `level:firstIndex` .. `level:lastIndex` of the stored Merkle tree. */
export interface MerkleNodeRange {
  level: number;
  firstIndex: number;
  lastIndex: number;
}
export const AUDIT_NODE_RANGES_MAX = 64;

export interface AuditVerificationState {
  /** Entries [0, verifiedSize) were verified; verifiedHash is the hash of entry verifiedSize - 1 (or GENESIS). */
  verifiedSize: number;
  verifiedHash: string;
  verifiedAtMs: number;
  /** The last full verification that finished, in any process (null: none yet). */
  lastFull: { size: number; atMs: number; brokenAtIndex: number | null; reason: string | null } | null;
  /** MACs under the audit key over the prefix and over lastFull (src/app/verification.ts): null when absent. */
  verifiedMac: string | null;
  fullMac: string | null;
}

export interface FullAuditVerificationRecord {
  size: number;
  brokenAtIndex: number | null;
  reason: string | null;
  prefixSize: number;
  prefixHash: string;
  /** The MAC of this outcome (with the transaction's time) and of the prefix it leaves. */
  fullMac: string;
  prefixMac: string;
}

export interface AuditCheckpointRow {
  treeSize: number;
  rootHash: Buffer;
  /** The signed note exactly as served. */
  note: string;
  createdAtMs: number;
}

/**
 * Exact windowed risk counters, as one batch's transaction sees them: in a table on PostgreSQL
 * (src/storage/risk-counters.ts), in the single writer's memory on SQLite (src/storage/counter-memory.ts).
 */
export interface Counters {
  /** The counters the batch's commands will read (their `LockHints.counters`): read together, once. */
  declare(requests: CounterRequest[]): void;
  /** Totals of each key inside each of its windows ending at `nowMs`, and each key's latest point. */
  windowsMany(
    requests: CounterRequest[],
    nowMs: number,
  ): Promise<{ latest: CounterPoint; totals: WindowTotals[] }[]>;
  /** Counts one event per key; each `latest` is the key's point read in this transaction. */
  addMany(events: CounterEvent[], nowMs: number): Promise<void>;
  /** The running command ended: what it counted joins the batch, or is forgotten with its rollback. */
  endCommand(committed: boolean): void;
  /** A direct write to the counters' table happened (the purge): what the batch read may be stale. */
  tableWritten(): void;
  /** Forgets history no window can see any more, `limit` rows or keys at a time; returns how many went. */
  purge(nowMs: number, limit: number): Promise<number>;
}

export interface Tx {
  readonly nowMs: number;
  /**
   * Test store only (src/app/sandbox.ts): empties every data table (src/storage/sandbox-sql.ts). The command
   * must run alone (LockHints.alone). What the batch read before is forgotten.
   */
  eraseSandboxData(): Promise<void>;
  /** Exact windowed risk counters. */
  readonly counters: Counters;
  /** Records a KYC decision (status/tier change, encrypted note) and updates the customer. */
  recordKycDecision(
    before: CustomerRow,
    after: CustomerRow,
    noteEnc: string | null,
    actor: Actor,
  ): Promise<void>;
  /** Loads (and on PostgreSQL locks, in id order) the accounts that exist among `ids`. */
  lockAccounts(ids: string[]): Promise<Map<string, Account>>;
  getCustomers(ids: string[]): Promise<Map<string, CustomerRow>>;
  customerExistsWithDocument(documentIndex: string): Promise<boolean>;
  /** The customers holding these document blind indexes: index -> customer id (absent when none). */
  customerIdsWithDocuments(documentIndexes: string[]): Promise<Map<string, string>>;
  /**
   * Up to `limit` customers whose document index version is below `version`, oldest first (index-backed; on
   * PostgreSQL locked).
   */
  customersWithDocumentIndexBefore(version: number, limit: number): Promise<StaleDocumentIndex[]>;
  /** Re-keys customers' document blind indexes to `version` (each only while its version is below it). */
  setCustomerDocumentIndexes(rows: { id: string; documentIndex: string }[], version: number): Promise<void>;

  insertApiKey(key: ApiKey): Promise<void>;
  /** Inserts the key unless one with its id exists (then false; concurrent inserters wait for the winner). */
  insertApiKeyIfAbsent(key: ApiKey): Promise<boolean>;
  /** Loads (and on PostgreSQL locks) an API key. */
  lockApiKey(id: string): Promise<ApiKeyRow | undefined>;
  /** Writes every mutable column of a key the command has locked. */
  saveApiKey(key: ApiKeyRow): Promise<void>;
  countActiveAdminKeys(nowMs: number, exceptId: string): Promise<number>;
  insertCustomer(row: CustomerRow): Promise<void>;
  insertAccount(row: AccountRow): Promise<void>;

  /** Writes a balanced posting and the new balances; throws AppError BALANCE_LIMIT_EXCEEDED on overflow. */
  postLedger(posting: Posting, accounts: Map<string, Account>, requestId: string): Promise<string>;
  /** Sets an account's status and limits (src/app/account-controls.ts), under the lock the batch holds on it. */
  setAccountControls(before: Account, after: AccountControls): Promise<void>;
  /** Returns the account with the hold added. */
  placeHold(paymentId: string, account: Account, amountCents: number): Promise<Account>;
  /**
   * Ends a payment's active hold (captured by an approval, released by a rejection, expired by the sweep) and
   * lowers the account's held balance. Returns the held amount and the account as it now is.
   */
  endHold(
    paymentId: string,
    account: Account,
    status: 'captured' | 'released' | 'expired',
  ): Promise<{ amountCents: number; account: Account }>;
  /** Loads a payment (and on PostgreSQL locks its row; callers hold its accounts' locks already). */
  lockPayment(id: string): Promise<Payment | undefined>;
  /** Moves a payment out of manual_review; throws (an invariant) if it was not in review. */
  resolvePayment(id: string, status: PaymentStatus, resolution: PaymentResolution): Promise<void>;
  insertRefund(refund: Refund, apiKeyId: string, requestId: string): Promise<void>;
  /** Raises a payment's refunded total, guarded by the total the caller read. */
  setRefundedCents(paymentId: string, beforeCents: number, afterCents: number): Promise<void>;

  /** Writes an outbox event and one pending delivery per active endpoint subscribed to its type. */
  appendEvent(draft: EventDraft): Promise<OutboxEvent>;
  insertWebhookEndpoint(row: WebhookEndpointRow): Promise<void>;
  /** Marks an endpoint deleted; false when there is no such (live) endpoint. */
  deleteWebhookEndpoint(id: string): Promise<boolean>;
  // Standard Webhooks (docs/decisions/0015; SQL in webhooks-sql.ts).
  /** Loads (and on PostgreSQL locks) a live endpoint. */
  lockWebhookEndpoint(id: string): Promise<WebhookEndpointRow | undefined>;
  /** Replaces a locked endpoint's signing secrets (a rotation at `tx.nowMs`). */
  saveWebhookEndpointSecrets(
    id: string,
    secretEnc: string,
    previousSecretExpiresAtMs: number | null,
  ): Promise<void>;
  /** A `ping` event (not listed by GET /v1/events) and its one delivery, to this endpoint only, due now. */
  insertPingEvent(
    endpointId: string,
    data: string,
  ): Promise<{ event: OutboxEvent; delivery: WebhookDelivery }>;
  /**
   * Re-queues a failed delivery of a live endpoint, due now, with a fresh budget of attempts: one conditional
   * UPDATE, so concurrent retries re-queue it once. Otherwise says what it found.
   */
  /** Re-queues a `failed` delivery created at or after `createdSinceMs` (older ones are not retryable). */
  retryWebhookDelivery(id: string, createdSinceMs: number): Promise<DeliveryRetry>;
  /**
   * Leases up to `limit` due deliveries of live endpoints to `leaseToken` until `leaseUntilMs`. On PostgreSQL
   * rows another transaction is claiming are skipped (SKIP LOCKED), so this never waits for a lock.
   */
  claimWebhookDeliveries(leaseToken: string, leaseUntilMs: number, limit: number): Promise<ClaimedDelivery[]>;
  /** Records an attempt if this lease still holds the delivery; false when the lease was lost. */
  recordWebhookAttempt(deliveryId: string, leaseToken: string, attempt: DeliveryAttempt): Promise<boolean>;

  insertPayment(payment: Payment, apiKeyId: string, requestId: string): Promise<void>;
  /** Writes a payment batch and its items (src/app/payment-batches.ts). */
  insertPaymentBatch(batch: PaymentBatch, items: PaymentBatchItem[]): Promise<void>;

  /**
   * Undoes everything the running command has done so far (its rows, direct writes, balance changes, counted
   * risk events, audit entries, idempotency claims), as if it had failed, and lets it go on from a clean
   * start: in the same transaction, under the same locks. Only for a command declared `discardable`.
   */
  discardCommand(): Promise<void>;
  /**
   * Between the parts of a long command (a batch's payments): lets the event loop run once the batch's time
   * slice is used up (SQLite, whose statements hold the loop), and writes the queued rows once many are queued.
   */
  pace(): Promise<void>;

  // FX quotes (src/app/fx-quotes.ts); the SQL lives in fx-quotes-sql.ts.
  insertFxQuote(quote: FxQuote): Promise<void>;
  /** Loads (and on PostgreSQL locks) a quote; callers also hold its name lock (src/app/fx-quotes.ts). */
  lockFxQuote(id: string): Promise<FxQuote | undefined>;
  /** Marks an unused quote used by a payment; false when it was already used. */
  useFxQuote(id: string, paymentId: string): Promise<boolean>;
  /** Queues an audit entry; the batch appends its entries together, last, before COMMIT (see SqlTx.flushAudit). */
  appendAudit(draft: AuditDraft): Promise<void>;
  /**
   * Queues a payment's report entries and compliance cases (src/app/reports.ts). `audit` is the payment's audit
   * draft, appended by this command: the rows are written after the batch's audit entries, each with that
   * entry's index. Like audit entries, they join the batch only if the command commits.
   */
  queueReporting(audit: AuditDraft, entries: ReportEntryDraft[], cases: CaseDraft[]): Promise<void>;
  /** Loads (and on PostgreSQL locks) a compliance case. */
  lockCase(id: string): Promise<ComplianceCase | undefined>;
  /** Decides an open case the command holds locked; throws (an invariant) if it was not open. */
  decideCase(id: string, decision: CaseDecision, actorId: string, noteEnc: string | null): Promise<void>;

  /**
   * Claims an idempotency key for this transaction, or returns the record already stored under it. On
   * PostgreSQL a concurrent claim of the same key by another process waits here until that transaction ends.
   */
  claimIdempotencyKey(
    apiKeyId: string,
    key: string,
    fingerprint: string,
    expiresAtMs: number,
  ): Promise<IdempotencyRecord | 'claimed'>;
  completeIdempotencyKey(
    apiKeyId: string,
    key: string,
    response: StoredResponse,
    resourceId: string | null,
  ): Promise<void>;

  purgeExpiredIdempotencyRecords(limit: number): Promise<number>;

  // Verifiable audit log. A batch's audit entries are appended with the Merkle nodes each new leaf completes.
  /** Takes the audit head lock (PostgreSQL), which pins the log, and returns the Merkle size. */
  lockAuditMerkleHead(): Promise<number>;
  /** Writes the Merkle nodes of up to `leavesMax` entries that lack them (start-up backfill). */
  extendAuditMerkle(leavesMax: number): Promise<{ merkleSize: number; size: number }>;
  auditMerkleNodes(ids: NodeId[]): Promise<MerkleNode[]>;
  latestAuditCheckpoint(): Promise<AuditCheckpointRow | undefined>;
  insertAuditCheckpoint(checkpoint: AuditCheckpointRow): Promise<void>;

  // Key management (src/app/key-rotation.ts); the SQL lives in key-rotation-sql.ts.
  getSetting(key: string): Promise<string | undefined>;
  putSetting(key: string, value: string): Promise<void>;
  /** A bounded slice of a column's values that are not under the key with envelope prefix `primaryPrefix`. */
  staleEncryptedValues(
    column: EncryptedColumn,
    primaryPrefix: string,
    after: string | null,
    limit: number,
  ): Promise<EncryptedValueChunk>;
  /** Guarded replacement (only where the row still holds `before`); returns how many rows changed. */
  replaceEncryptedValues(
    column: EncryptedColumn,
    rows: { rowKey: string; before: string; after: string }[],
  ): Promise<number>;

  // Audit verification state (src/app/verification.ts); commands lock the name AUDIT_VERIFICATION_LOCK.
  /** Moves the verified prefix forward to `size` (never back): an incremental verification succeeded. */
  advanceAuditVerified(size: number, hash: string, mac: string): Promise<void>;
  /**
   * Records a finished full verification. Valid: the prefix moves forward to its size. Broken: the prefix
   * is set to the entries before the break (`prefixSize`, `prefixHash`), backwards if need be, so that
   * incremental verification no longer starts beyond a known break.
   */
  recordFullAuditVerification(result: FullAuditVerificationRecord): Promise<void>;
}
