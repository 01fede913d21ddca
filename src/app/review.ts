import { assert } from '../domain/assert.ts';
import { AppError } from '../domain/errors.ts';
import { transfer } from '../domain/ledger.ts';
import type { Actor, Payment, PaymentResolution, ResolutionOutcome } from '../domain/types.ts';
import type { Tx } from '../storage/store.ts';
import { appendPaymentEvent, type EventType } from './events.ts';
import { type Services, SYSTEM_ACTOR } from './services.ts';

/**
 * The review queue's way out. A payment in `manual_review` holds its amount on the source account; it leaves
 * review exactly once:
 *
 *   approve → the hold is captured into a posting of exactly the held amount (one transaction; nothing is
 *             re-checked that could make money appear or vanish: the held funds are already reserved);
 *   reject  → the hold is released, the payment is declined;
 *   expiry  → a hold older than REVIEW_HOLD_EXPIRY_HOURS is released by the sweep, the payment declined.
 *
 * Every path locks the payment's accounts (declared lock hints) and then the payment row, and re-checks the
 * status inside the transaction, so concurrent approve and reject end in exactly one outcome; the loser gets
 * 409 PAYMENT_NOT_IN_REVIEW. Notes may name people: stored encrypted, never in audit metadata.
 */
export type ReviewAction = 'approve' | 'reject';

export interface ReviewResult {
  payment: Payment;
  ledgerPosted: boolean;
}

const EXPIRY_CHUNK_MAX = 100;

const OUTCOME: Record<ReviewAction, ResolutionOutcome> = { approve: 'approved', reject: 'rejected' };

export async function resolveReview(
  services: Services,
  actor: Actor,
  paymentId: string,
  action: ReviewAction,
  note: string | undefined,
): Promise<ReviewResult> {
  // Read committed state to learn which accounts to lock; the transaction re-checks everything.
  const seen = await services.store.reads.getPayment(paymentId);
  if (seen === undefined) throw new AppError('PAYMENT_NOT_FOUND', 'payment not found');
  if (seen.status !== 'manual_review') throw notInReview();
  const noteEnc = note === undefined ? null : services.cipher.encrypt(note, 'payment.resolutionNote');
  return services.committer.submit(
    async (tx) => {
      const payment = await tx.lockPayment(paymentId);
      if (payment?.status !== 'manual_review') throw notInReview();
      const resolution = { outcome: OUTCOME[action], atMs: tx.nowMs, actorId: actor.apiKeyId, noteEnc };
      return action === 'approve'
        ? approve(tx, actor, payment, resolution)
        : reject(tx, actor, payment, resolution);
    },
    { accountIds: [seen.sourceAccountId, seen.destinationAccountId] },
  );
}

async function approve(
  tx: Tx,
  actor: Actor,
  payment: Payment,
  resolution: PaymentResolution,
): Promise<ReviewResult> {
  const accounts = await tx.lockAccounts([payment.sourceAccountId, payment.destinationAccountId]);
  const source = accounts.get(payment.sourceAccountId);
  assert(source !== undefined, 'the source account of a payment exists');
  // Capture: the hold ends first, so the posting's overdraft floor sees the funds it reserved.
  const hold = await tx.endHold(payment.id, source, 'captured');
  assert(hold.amountCents === payment.amountCents, 'a review hold is for exactly the payment amount');
  accounts.set(source.id, hold.account);
  const posting = transfer(
    'payment',
    payment.currency,
    payment.id,
    payment.sourceAccountId,
    payment.destinationAccountId,
    hold.amountCents,
  );
  const ledgerTransactionId = await tx.postLedger(posting, accounts, actor.requestId);
  const resolved = await finishResolution(tx, actor, payment, 'posted', resolution, 'payment.approved', {
    ledgerTransactionId,
  });
  return { payment: resolved, ledgerPosted: true };
}

async function reject(
  tx: Tx,
  actor: Actor,
  payment: Payment,
  resolution: PaymentResolution,
): Promise<ReviewResult> {
  const releasedCents = await releaseHold(tx, payment, 'released');
  const resolved = await finishResolution(tx, actor, payment, 'declined', resolution, 'payment.rejected', {
    releasedCents,
  });
  return { payment: resolved, ledgerPosted: false };
}

async function releaseHold(tx: Tx, payment: Payment, status: 'released' | 'expired'): Promise<number> {
  const source = (await tx.lockAccounts([payment.sourceAccountId])).get(payment.sourceAccountId);
  assert(source !== undefined, 'the source account of a payment exists');
  return (await tx.endHold(payment.id, source, status)).amountCents;
}

/** The status change, its audit entry (with the actor, without the note) and its outbox event. */
async function finishResolution(
  tx: Tx,
  actor: Actor,
  payment: Payment,
  status: Payment['status'],
  resolution: PaymentResolution,
  eventType: EventType,
  effects: Record<string, string | number>,
): Promise<Payment> {
  await tx.resolvePayment(payment.id, status, resolution);
  const resolved: Payment = { ...payment, status, resolution, updatedAtMs: tx.nowMs };
  await tx.appendAudit({
    eventType,
    actorId: actor.apiKeyId,
    requestId: actor.requestId,
    resourceType: 'payment',
    resourceId: payment.id,
    metadata: {
      paymentId: payment.id,
      statusFrom: payment.status,
      statusTo: status,
      resolution: resolution.outcome,
      amountCents: payment.amountCents,
      currency: payment.currency,
      sourceAccountId: payment.sourceAccountId,
      destinationAccountId: payment.destinationAccountId,
      noteProvided: resolution.noteEnc !== null,
      ...effects,
    },
  });
  await appendPaymentEvent(tx, eventType, resolved);
  return resolved;
}

/**
 * One sweep step: declines up to a chunk of payments whose hold is older than the expiry and releases their
 * holds, in one command. Returns how many expired (0 when none are due). A payment resolved meanwhile is
 * skipped: the status is re-checked under the lock.
 */
export async function expireReviewHolds(services: Services): Promise<number> {
  const cutoffMs = services.clock() - services.reviewHoldExpiryMs;
  const due = await services.store.reads.listExpiredHolds(cutoffMs, EXPIRY_CHUNK_MAX);
  if (due.length === 0) return 0;
  return services.committer.submit(
    async (tx) => {
      let expired = 0;
      for (const { paymentId } of due) {
        const payment = await tx.lockPayment(paymentId);
        if (payment?.status !== 'manual_review' || payment.createdAtMs > cutoffMs) continue;
        const resolution: PaymentResolution = {
          outcome: 'hold_expired',
          atMs: tx.nowMs,
          actorId: SYSTEM_ACTOR.apiKeyId,
          noteEnc: null,
        };
        const releasedCents = await releaseHold(tx, payment, 'expired');
        await finishResolution(tx, SYSTEM_ACTOR, payment, 'declined', resolution, 'payment.hold_expired', {
          releasedCents,
        });
        expired += 1;
      }
      return expired;
    },
    { accountIds: due.map((h) => h.accountId) },
  );
}

function notInReview(): AppError {
  return new AppError('PAYMENT_NOT_IN_REVIEW', 'the payment is not awaiting review');
}
