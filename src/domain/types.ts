import type { FxTerms } from './fx.ts';

/** The domain's nouns, as the core sees them. Times are epoch milliseconds; money is integer cents. */

export const ROLES = ['admin', 'payments', 'compliance', 'auditor'] as const;
export type Role = (typeof ROLES)[number];

export const KYC_STATUSES = ['verified', 'manual_review', 'rejected'] as const;
export type KycStatus = (typeof KYC_STATUSES)[number];

export const PAYMENT_STATUSES = ['posted', 'manual_review', 'declined'] as const;
export type PaymentStatus = (typeof PAYMENT_STATUSES)[number];

export interface ApiKey {
  id: string;
  name: string;
  role: Role;
  secretHash: string;
  createdAtMs: number;
  revokedAtMs: number | null;
  /** The customers this key is limited to (it sees and moves only their money); null: unscoped. */
  customerIds: string[] | null;
  /** After this instant the key no longer authenticates; null: no expiry. */
  expiresAtMs: number | null;
  /** The secret a rotation replaced, still accepted until `previousSecretExpiresAtMs` (the grace period). */
  previousSecretHash: string | null;
  previousSecretExpiresAtMs: number | null;
}

/**
 * The acting principal of a request: which API key, and the request id to stamp on what it writes. The
 * request id is always the server's own; a client's X-Request-Id is only logged beside it (src/http/request-ids.ts).
 */
export interface Actor {
  apiKeyId: string;
  role: Role;
  requestId: string;
  /** The customers a scoped key is limited to; absent or null: unscoped (sees everything its role allows). */
  customerIds?: readonly string[] | null;
}

export interface Customer {
  id: string;
  name: string;
  country: string;
  kycStatus: KycStatus;
  createdAtMs: number;
}

export type AccountKind = 'customer' | 'system';

/** active: sends and receives; frozen: receives only; closed: neither (and for good). */
export type AccountStatus = 'active' | 'frozen' | 'closed';
export const ACCOUNT_STATUSES: readonly AccountStatus[] = ['active', 'frozen', 'closed'];

/**
 * An account's controls, changed at run time by compliance (POST /v1/accounts/:id/controls) and enforced in the
 * transaction that moves money, under the account's lock. At most one of the two limits is non-zero: the
 * available balance may go down to -overdraftLimitCents, or must stay at or above minimumBalanceCents.
 */
export interface AccountControls {
  status: AccountStatus;
  overdraftLimitCents: number;
  minimumBalanceCents: number;
}

/** A new account's controls: active, no overdraft, no minimum. */
export const OPEN_ACCOUNT_CONTROLS: AccountControls = {
  status: 'active',
  overdraftLimitCents: 0,
  minimumBalanceCents: 0,
};

export interface Account extends AccountControls {
  id: string;
  kind: AccountKind;
  ownerCustomerId: string | null;
  currency: string;
  postedBalanceCents: number;
  heldBalanceCents: number;
  accountNumberLast4: string;
  createdAtMs: number;
  /**
   * The latest instant stamped on the account's ledger entries and hold changes. A new stamp is never earlier
   * (stampFor): the account's history is in time order whatever the clocks of the processes writing it do,
   * which balances in time rely on (docs/decisions/0022-balances-in-time.md).
   */
  stampedAtMs: number;
}

/** The instant to stamp on a change of this account: now, or its latest stamp if a clock is behind it. */
export function stampFor(account: Pick<Account, 'stampedAtMs'>, nowMs: number): number {
  return Math.max(nowMs, account.stampedAtMs);
}

export function availableCents(account: Pick<Account, 'postedBalanceCents' | 'heldBalanceCents'>): number {
  return account.postedBalanceCents - account.heldBalanceCents;
}

/** The lowest the available balance of a customer account may go by a debit or a hold (negative: overdraft). */
export function balanceFloorCents(
  controls: Pick<AccountControls, 'overdraftLimitCents' | 'minimumBalanceCents'>,
): number {
  return controls.minimumBalanceCents - controls.overdraftLimitCents;
}

/** What a debit or hold may take from a customer account now: available down to its floor (never below 0). */
export function spendableCents(account: Account): number {
  return Math.max(0, availableCents(account) - balanceFloorCents(account));
}

export interface RuleHit {
  rule: string;
  outcome: 'decline' | 'review' | 'allow';
  reason: string;
  observed: Record<string, number | string | boolean | null>;
  /**
   * What `observed` was compared with: the policy rule's conditions as they stood when it fired (every one of
   * `all`, and at least one of `any`, held). Absent for the system checks (currency, funds), whose comparison is
   * their name, and for decisions recorded before issue 16.
   */
  conditions?: { all: RuleCondition[]; any: RuleCondition[] };
}

export interface RuleCondition {
  feature: string;
  op: string;
  value: number | string | boolean | (number | string)[];
}

export interface SanctionsScreening {
  /**
   * The screening version the parties were screened under: SHA-256 over the canonicalisation version and
   * the sanctions list files (src/domain/sanctions.ts).
   */
  listSha256: string;
  /** The best match of each party: its score, the list entry, and the alias (alt.csv) it matched, if any. */
  sender: { scoreBp: number; entryId: string | null; aliasId: string | null };
  receiver: { scoreBp: number; entryId: string | null; aliasId: string | null };
}

/**
 * An explainable decision: the outcome, the policy version it was made under, every rule that fired with the
 * feature values it saw, a 0-100 score, and all features (ids' properties and numbers, no personal data), so
 * the decision can be replayed from what was recorded.
 */
export interface Decision {
  outcome: PaymentStatus;
  policyVersion: string;
  reasons: string[];
  rules: RuleHit[];
  score: number;
  features: Record<string, number | string | boolean>;
  sanctions: SanctionsScreening;
}

export interface Payment {
  id: string;
  status: PaymentStatus;
  sourceAccountId: string;
  destinationAccountId: string;
  amountCents: number;
  currency: string;
  note: string | null;
  metadata: Record<string, string> | null;
  reasons: string[];
  decision: Decision;
  /** Sum of the refunds of a posted payment; at most amountCents. */
  refundedCents: number;
  /** How a review ended (null while in review, and for payments never held). */
  resolution: PaymentResolution | null;
  /** A cross-currency payment's quote terms (src/domain/fx.ts); absent or null: one currency. */
  fx?: FxTerms | null;
  /** The payment batch it was made in (src/app/payment-batches.ts); absent or null: made alone. */
  batchId?: string | null;
  createdAtMs: number;
  updatedAtMs: number;
}

/** `kyc_rejected`: declined because the sender's KYC was set to rejected while the payment was held. */
export const RESOLUTION_OUTCOMES = ['approved', 'rejected', 'hold_expired', 'kyc_rejected'] as const;
export type ResolutionOutcome = (typeof RESOLUTION_OUTCOMES)[number];

export interface PaymentResolution {
  outcome: ResolutionOutcome;
  atMs: number;
  /** The API key that decided (for `kyc_rejected`, the one that rejected the KYC), or `system` for an expiry. */
  actorId: string;
  /** The reviewer's note, encrypted (it may name people); never in the audit metadata. */
  noteEnc: string | null;
}

export interface Refund {
  id: string;
  paymentId: string;
  amountCents: number;
  currency: string;
  /** The client's free-text reason, encrypted like other notes. */
  reasonEnc: string | null;
  ledgerTransactionId: string;
  createdAtMs: number;
}

/**
 * The type of the test event POST /v1/webhook-endpoints/:id/test queues, to that endpoint only: not a
 * subscribable type, and not listed by GET /v1/events (it changes nothing).
 */
export const PING_EVENT_TYPE = 'ping';

/** A row of the outbox: what happened, as the JSON `data` a webhook receiver gets. */
export interface OutboxEvent {
  id: string;
  type: string;
  resourceType: string;
  resourceId: string;
  /** The JSON text of `data`, stored once so every delivery sends the same bytes. */
  data: string;
  createdAtMs: number;
}

export type Direction = 'debit' | 'credit';

export interface LedgerEntry {
  id: string;
  transactionId: string;
  paymentId: string | null;
  accountId: string;
  direction: Direction;
  amountCents: number;
  currency: string;
  requestId: string;
  createdAtMs: number;
  /** The account's posted balance right after this entry (its running balance), written with it. */
  balanceAfterCents: number;
}
