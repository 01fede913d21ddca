import { assert } from '../domain/assert.ts';
import type { AuditEntry } from '../domain/audit.ts';
import {
  type Account,
  type Actor,
  availableCents,
  type Decision,
  type LedgerEntry,
  type OutboxEvent,
  type Payment,
  type Refund,
  type Role,
} from '../domain/types.ts';
import { maskAccountNumber, type PiiCipher } from '../security/pii-cipher.ts';
import type { CustomerRow, StatementPage, WebhookDelivery, WebhookEndpointRow } from '../storage/store.ts';
import { inScope } from './scope.ts';

/**
 * The JSON shapes clients see. Key order is fixed here, which keeps stored idempotent responses and audit
 * hashes stable. Document references are never returned; account numbers only masked.
 */
const iso = (ms: number) => new Date(ms).toISOString();

export function customerView(row: CustomerRow, cipher: PiiCipher) {
  return {
    id: row.id,
    name: cipher.decrypt(row.nameEnc, 'customer.name'),
    country: row.country,
    kycStatus: row.kycStatus,
    kycTier: row.kycTier,
    createdAt: iso(row.createdAtMs),
  };
}

export function accountView(a: Account) {
  return {
    id: a.id,
    ownerCustomerId: a.ownerCustomerId,
    currency: a.currency,
    availableBalanceCents: availableCents(a),
    postedBalanceCents: a.postedBalanceCents,
    heldBalanceCents: a.heldBalanceCents,
    maskedAccountNumber: maskAccountNumber(a.accountNumberLast4),
    status: a.status,
    overdraftLimitCents: a.overdraftLimitCents,
    minimumBalanceCents: a.minimumBalanceCents,
    createdAt: iso(a.createdAtMs),
  };
}

/**
 * What a write that moved (or held) money answers besides its resource: the balances of the customer accounts it
 * touched, as they stand after it, from the accounts the transaction already holds (no extra read), in the
 * order given. A key scoped to customers sees only its customers' accounts. In a stored response they are the
 * balances right after the write, replayed as they were (like the rest of the response).
 */
export function resultingBalances(accounts: Iterable<Account>, actor: Actor) {
  const views = [];
  for (const account of accounts) {
    if (account.kind === 'customer' && inScope(actor, account.ownerCustomerId))
      views.push(balanceView(account));
  }
  return views;
}

export function balanceView(a: Account) {
  return {
    id: a.id,
    currency: a.currency,
    availableBalanceCents: availableCents(a),
    postedBalanceCents: a.postedBalanceCents,
    heldBalanceCents: a.heldBalanceCents,
  };
}

/**
 * How much of a payment's risk decision a caller sees. `full` is the whole explanation: every rule that fired
 * with the feature values it saw, all features, the score, and the sanctions screening (list hash, matched
 * entry ids and scores). `summary` is `{outcome, policyVersion, reasons}`, whose `reasons` equal the payment's
 * top-level `reasons` (both are the decision's reason codes). The full decision shows a client exactly which
 * thresholds and features to stay under, and which list entry a party resembles, so it is for the roles that
 * review and audit decisions.
 */
export type DecisionDetail = 'full' | 'summary';

/**
 * THE place that decides who sees what of a decision: routes (through `req.actor`) and the payment pipeline
 * (for the stored idempotent response) both ask here. A `Record` over every role, so a new role cannot be added
 * without choosing. Events (webhooks and GET /v1/events) are stored once for every receiver: always `summary`.
 * The audit entry is not a view: it keeps the whole decision.
 */
const DECISION_DETAIL_BY_ROLE: Record<Role, DecisionDetail> = {
  admin: 'full',
  compliance: 'full',
  auditor: 'full',
  payments: 'summary',
};

export function decisionDetailFor(actor: Pick<Actor, 'role'>): DecisionDetail {
  return DECISION_DETAIL_BY_ROLE[actor.role];
}

/**
 * The summary is built field by field (never by deleting fields from the full decision), so whatever the
 * decision gains later (e.g. more sanctions screening detail) stays out of it until chosen here.
 */
export function decisionView(d: Decision, detail: DecisionDetail) {
  if (detail === 'full') return d;
  return { outcome: d.outcome, policyVersion: d.policyVersion, reasons: d.reasons };
}

/**
 * `holdExpiryMs` (REVIEW_HOLD_EXPIRY_HOURS) dates a held payment's `holdExpiresAt`: every caller that can see a
 * payment in review passes it; one that cannot (a resolution, a refund) may leave it out, which is asserted.
 */
export function paymentView(p: Payment, detail: DecisionDetail, holdExpiryMs?: number) {
  assert(
    p.status !== 'manual_review' || holdExpiryMs !== undefined,
    "a held payment's view says when its hold expires",
  );
  return {
    id: p.id,
    status: p.status,
    sourceAccountId: p.sourceAccountId,
    destinationAccountId: p.destinationAccountId,
    amountCents: p.amountCents,
    currency: p.currency,
    note: p.note,
    metadata: p.metadata,
    reasons: p.reasons,
    decision: decisionView(p.decision, detail),
    refundedCents: p.refundedCents,
    // How a review ended; the reviewer's note stays encrypted at rest and is not echoed (it may name people).
    resolution:
      p.resolution === null
        ? null
        : {
            outcome: p.resolution.outcome,
            resolvedAt: iso(p.resolution.atMs),
            resolvedBy: p.resolution.actorId,
            noteProvided: p.resolution.noteEnc !== null,
          },
    createdAt: iso(p.createdAtMs),
    // When the expiry sweep (src/app/review.ts) would release the hold and decline the payment.
    holdExpiresAt:
      p.status === 'manual_review' && holdExpiryMs !== undefined ? iso(p.createdAtMs + holdExpiryMs) : null,
    // Across currencies: the quote it used, the rate and what the payee gets (src/app/fx-quotes.ts); else null.
    fx: p.fx ?? null,
    // The payment batch it was made in (src/app/payment-batches.ts); null when made alone.
    batchId: p.batchId ?? null,
  };
}

export function refundView(r: Refund, cipher: PiiCipher) {
  return {
    id: r.id,
    paymentId: r.paymentId,
    amountCents: r.amountCents,
    currency: r.currency,
    reason: r.reasonEnc === null ? null : cipher.decrypt(r.reasonEnc, 'refund.reason'),
    ledgerTransactionId: r.ledgerTransactionId,
    createdAt: iso(r.createdAtMs),
  };
}

/**
 * The event as listed and as a webhook receiver gets it: `{id, type, createdAt, data}`. `data` was written
 * with the summary decision (src/app/events.ts), so this listing and every receiver see the same reduced view.
 */
export function eventView(e: OutboxEvent) {
  return { id: e.id, type: e.type, createdAt: iso(e.createdAtMs), data: JSON.parse(e.data) as unknown };
}

/** The webhook body, built from the stored data text so that every attempt sends the same bytes. */
export function webhookBody(e: OutboxEvent): string {
  const head = JSON.stringify({ id: e.id, type: e.type, createdAt: iso(e.createdAtMs) });
  return `${head.slice(0, -1)},"data":${e.data}}`;
}

/**
 * Never includes a signing secret: each is shown once, when the endpoint is created or its secret rotated.
 * `previousSecretExpiresAt`: until when the secret a rotation replaced still signs (a past time: it no longer does;
 * null: no grace period).
 */
export function webhookEndpointView(e: WebhookEndpointRow) {
  return {
    id: e.id,
    url: e.url,
    events: e.eventTypes,
    createdAt: iso(e.createdAtMs),
    secretRotatedAt: e.secretRotatedAtMs === null ? null : iso(e.secretRotatedAtMs),
    previousSecretExpiresAt: e.previousSecretExpiresAtMs === null ? null : iso(e.previousSecretExpiresAtMs),
  };
}

/**
 * `attempts` counts every attempt ever made; `manualRetries` how often a failed delivery was re-queued by hand
 * (each grants a fresh budget of WEBHOOK_MAX_ATTEMPTS).
 */
export function webhookDeliveryView(d: WebhookDelivery) {
  return {
    id: d.id,
    eventId: d.eventId,
    eventType: d.eventType,
    endpointId: d.endpointId,
    status: d.status,
    attempts: d.attempts,
    nextAttemptAt: d.status === 'pending' ? iso(d.nextAttemptAtMs) : null,
    lastStatusCode: d.lastStatusCode,
    lastError: d.lastError,
    lastAttemptAt: d.lastAttemptAtMs === null ? null : iso(d.lastAttemptAtMs),
    manualRetries: d.manualRetries,
    createdAt: iso(d.createdAtMs),
  };
}

/** One page of an account's statement (GET /v1/accounts/:id/statement). */
export function statementView(
  account: Account,
  period: { fromMs: number; toMs: number },
  statement: StatementPage,
  nextCursor: string | null,
) {
  return {
    accountId: account.id,
    currency: account.currency,
    from: iso(period.fromMs),
    to: iso(period.toMs),
    openingBalanceCents: statement.openingBalanceCents,
    closingBalanceCents: statement.closingBalanceCents,
    entries: statement.entries.items.map(ledgerEntryView),
    hasMore: statement.entries.nextAfter !== null,
    nextCursor,
  };
}

export function ledgerEntryView(e: LedgerEntry) {
  return {
    id: e.id,
    transactionId: e.transactionId,
    paymentId: e.paymentId,
    accountId: e.accountId,
    direction: e.direction,
    amountCents: e.amountCents,
    currency: e.currency,
    balanceAfterCents: e.balanceAfterCents,
    requestId: e.requestId,
    timestamp: iso(e.createdAtMs),
  };
}

export function auditEntryView(e: AuditEntry) {
  return {
    id: e.id,
    index: e.index,
    timestamp: e.timestamp,
    eventType: e.eventType,
    actorId: e.actorId,
    requestId: e.requestId,
    resourceType: e.resourceType,
    resourceId: e.resourceId,
    metadata: e.metadata,
    prevHash: e.prevHash,
    hash: e.hash,
  };
}
