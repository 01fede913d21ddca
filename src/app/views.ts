import type { AuditEntry } from '../domain/audit.ts';
import { type Account, availableCents, type LedgerEntry, type Payment } from '../domain/types.ts';
import { maskAccountNumber, type PiiCipher } from '../security/pii-cipher.ts';
import type { CustomerRow } from '../storage/store.ts';

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
    createdAt: iso(p.createdAtMs),
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
