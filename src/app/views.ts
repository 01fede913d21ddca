import type { AuditEntry } from '../domain/audit.ts';
import {
  type Account,
  availableCents,
  type LedgerEntry,
  type OutboxEvent,
  type Payment,
  type Refund,
} from '../domain/types.ts';
import { maskAccountNumber, type PiiCipher } from '../security/pii-cipher.ts';
import type { CustomerRow, WebhookDelivery, WebhookEndpointRow } from '../storage/store.ts';

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
    createdAt: iso(a.createdAtMs),
  };
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

export function paymentView(p: Payment) {
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
    decision: p.decision,
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

/** The event as listed and as a webhook receiver gets it: `{id, type, createdAt, data}`. */
export function eventView(e: OutboxEvent) {
  return { id: e.id, type: e.type, createdAt: iso(e.createdAtMs), data: JSON.parse(e.data) as unknown };
}

/** The webhook body, built from the stored data text so that every attempt sends the same bytes. */
export function webhookBody(e: OutboxEvent): string {
  const head = JSON.stringify({ id: e.id, type: e.type, createdAt: iso(e.createdAtMs) });
  return `${head.slice(0, -1)},"data":${e.data}}`;
}

/** Never includes the signing secret: it is shown once, when the endpoint is created. */
export function webhookEndpointView(e: WebhookEndpointRow) {
  return { id: e.id, url: e.url, events: e.eventTypes, createdAt: iso(e.createdAtMs) };
}

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
    createdAt: iso(d.createdAtMs),
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
