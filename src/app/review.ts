import { assert } from '../domain/assert.ts';
import type { AuditValue } from '../domain/audit.ts';
import { AppError } from '../domain/errors.ts';
import { type Recheck, recheckHeldPayment } from '../domain/recheck.ts';
import type { Account, Actor, Payment, PaymentResolution, ResolutionOutcome } from '../domain/types.ts';
import type { CustomerRow, ExpiredHold, Tx } from '../storage/store.ts';
import { appendPaymentEvent, type EventType } from './events.ts';
import { fxAuditMetadata, fxPoolsOf, postPayment } from './fx-quotes.ts';
import { type IdempotentReply, jsonOutcome, optionalIdempotentRequest, runIdempotent } from './idempotent.ts';
import { requireReviewInScope } from './scope.ts';
import { type Services, SYSTEM_ACTOR } from './services.ts';
import { decisionDetailFor, paymentView, resultingBalances } from './views.ts';

/**
 * The review queue's way out. A payment in `manual_review` holds its amount on the source account; it leaves
 * review exactly once:
 *
 *   approve → first re-checked against what may have changed while it waited (both parties' KYC status and
 *             tier, their sanctions screening against the list loaded now, jurisdictions, the accounts; the
 *             current policy: src/domain/recheck.ts). If the policy would now decline it: 409
 *             PAYMENT_NO_LONGER_APPROVABLE with the reason codes, nothing moves, it stays in review for the
 *             reviewer to reject. Otherwise the hold is captured into a posting of exactly the held amount
 *             (one transaction; funds are not re-checked: the held funds are already reserved);
 *   reject  → the hold is released, the payment is declined;
 *   expiry  → a hold older than REVIEW_HOLD_EXPIRY_HOURS is released by the sweep, the payment declined;
 *   KYC     → the sender's KYC set to `rejected` declines its held payments and releases their holds, in the
 *             KYC decision's transaction (resolution `kyc_rejected`; see declineHeldPaymentsOfSender).
 *
 * Every path locks the payment's accounts (declared lock hints) and then the payment row, and re-checks the
 * status inside the transaction, so concurrent approve and reject end in exactly one outcome; the loser gets
 * 409 PAYMENT_NOT_IN_REVIEW. Notes may name people: stored encrypted, never in audit metadata.
 */
export type ReviewAction = 'approve' | 'reject';

export interface ReviewResult {
  payment: Payment;
  ledgerPosted: boolean;
  /** The accounts the resolution changed, as they stand after it (for the response's `balances`). */
  accounts: Account[];
}

const EXPIRY_CHUNK_MAX = 100;

const OUTCOME: Record<ReviewAction, ResolutionOutcome> = { approve: 'approved', reject: 'rejected' };
const STATUS: Record<ReviewAction, number> = { approve: 201, reject: 200 };

/**
 * POST /v1/payments/:id/approve|reject. Under an Idempotency-Key (optional) the resolution's response is
 * stored with it and replayed; a refusal (404, 409 not in review or no longer approvable) is thrown, so it is
 * not stored and a retry is judged on the state it then finds (src/app/idempotent.ts).
 */
export async function resolveReview(
  services: Services,
  actor: Actor,
  idempotencyKey: string | undefined,
  paymentId: string,
  action: ReviewAction,
  note: string | undefined,
): Promise<IdempotentReply> {
  await requireReviewInScope(services.store.reads, actor, paymentId); // scoped key: src/app/scope.ts
  const path = `/v1/payments/${paymentId}/${action}`;
  const request = optionalIdempotentRequest(actor, idempotencyKey, 'POST', path, { note });
  const reply = await runIdempotent(services, request, async () => {
    // Read committed state to learn which accounts to lock; the transaction re-checks everything. The status
    // is judged there only, after the key's claim: a concurrent duplicate that committed between the fast
    // path and this read has resolved the payment, and this request must replay it, not get a 409.
    const seen = await services.store.reads.getPayment(paymentId);
    if (seen === undefined) throw new AppError('PAYMENT_NOT_FOUND', 'payment not found');
    const noteEnc = note === undefined ? null : services.cipher.encrypt(note, 'payment.resolutionNote');
    return {
      // A cross-currency payment's approval posts through the FX pools: locked with its accounts.
      locks: { accountIds: [seen.sourceAccountId, seen.destinationAccountId, ...fxPoolsOf(seen)] },
      execute: async (tx) => {
        const payment = await tx.lockPayment(paymentId);
        if (payment?.status !== 'manual_review') throw notInReview();
        const resolution = { outcome: OUTCOME[action], atMs: tx.nowMs, actorId: actor.apiKeyId, noteEnc };
        const result =
          action === 'approve'
            ? await approve(tx, services, actor, payment, resolution)
            : await reject(tx, actor, payment, resolution);
        const view = paymentView(result.payment, decisionDetailFor(actor), services.reviewHoldExpiryMs);
        const body = {
          payment: view,
          ledgerPosted: result.ledgerPosted,
          balances: resultingBalances(result.accounts, actor),
        };
        return jsonOutcome(STATUS[action], body, paymentId);
      },
    };
  });
  // After its commit; a replay (`true`) resolved nothing now (`null`: executed without an Idempotency-Key).
  if (reply.replayed !== true) {
    services.metrics.reviewResolved(action === 'approve' ? 'approved' : 'rejected');
  }
  return reply;
}

async function approve(
  tx: Tx,
  services: Services,
  actor: Actor,
  payment: Payment,
  resolution: PaymentResolution,
): Promise<ReviewResult> {
  // Past `holdExpiresAt` the hold is the sweep's to release, even if the sweep has not run yet: an approval
  // must not capture what the API already said was due for release.
  if (tx.nowMs >= payment.createdAtMs + services.reviewHoldExpiryMs) {
    throw new AppError(
      'PAYMENT_HOLD_EXPIRED',
      'the hold expired (holdExpiresAt has passed): the payment can only be rejected, or declined by the sweep',
    );
  }
  const accounts = await tx.lockAccounts([payment.sourceAccountId, payment.destinationAccountId]);
  // Throws (the command is undone: the hold stays, the payment stays in review) if it would now be declined.
  const recheck = await recheckApproval(tx, services, payment, accounts);
  const source = accounts.get(payment.sourceAccountId);
  assert(source !== undefined, 'the source account of a payment exists');
  // Capture: the hold ends first, so the posting's overdraft floor sees the funds it reserved.
  const hold = await tx.endHold(payment.id, source, 'captured');
  assert(hold.amountCents === payment.amountCents, 'a review hold is for exactly the payment amount');
  accounts.set(source.id, hold.account);
  // At the recorded amounts: across currencies, the quote's, locked in when the payment was made (however long
  // the review took; src/app/fx-quotes.ts).
  const ledgerTransactionIds = await postPayment(tx, payment, accounts, actor.requestId);
  const resolved = await finishResolution(tx, actor, payment, 'posted', resolution, 'payment.approved', {
    ledgerTransactionId: ledgerTransactionIds[0]!,
    ...fxAuditMetadata(payment, ledgerTransactionIds),
    // What the approval was re-checked against (the re-check's features are the recorded ones, updated).
    recheckPolicyVersion: services.policy.version,
    recheckSanctionsListSha256: services.screening.list.sha256,
    recheckScore: recheck.evaluation.score,
  });
  const touched = [payment.sourceAccountId, payment.destinationAccountId].map((id) => accounts.get(id)!);
  return { payment: resolved, ledgerPosted: true, accounts: touched };
}

/**
 * The approval's re-check, under the accounts' locks: the accounts still exist and are customer accounts,
 * and the current policy, replayed on the recorded features with the parties as they are now (KYC status and
 * tier, jurisdiction, sanctions screening against the current list), would not decline the payment. The
 * windowed counters are not read again: they already count this payment.
 */
async function recheckApproval(
  tx: Tx,
  services: Services,
  payment: Payment,
  accounts: Map<string, Account>,
): Promise<Recheck> {
  const source = accounts.get(payment.sourceAccountId);
  const destination = accounts.get(payment.destinationAccountId);
  const unavailable = [
    ...(source?.kind === 'customer' ? [] : ['source_account_unavailable']),
    ...(destination?.kind === 'customer' ? [] : ['destination_account_unavailable']),
  ];
  if (unavailable.length > 0) throw noLongerApprovable(unavailable);
  // The accounts' controls as they are now (POST /v1/accounts/:id/controls): a source frozen since, or a
  // destination closed since. (The source cannot have been closed: its hold keeps its balance above zero. Its
  // floor cannot have been raised above what the hold leaves available: controls refuse that.)
  const controls = [
    ...(source!.status === 'active' ? [] : [`source_account_${source!.status}`]),
    ...(destination!.status === 'closed' ? ['destination_account_closed'] : []),
  ];
  if (controls.length > 0) throw noLongerApprovable(controls);
  const owners = [source!.ownerCustomerId!, destination!.ownerCustomerId!];
  const parties = await tx.getCustomers(owners);
  const sender = parties.get(owners[0]!);
  const receiver = parties.get(owners[1]!);
  assert(sender !== undefined && receiver !== undefined, 'every customer account has an owner');
  const recheck = recheckHeldPayment(services.policy, {
    amountCents: payment.amountCents,
    note: payment.note,
    recorded: payment.decision.features,
    sender: { ...partyNow(services, sender), kycTier: sender.kycTier },
    receiver: partyNow(services, receiver),
  });
  if (!recheck.approvable) throw noLongerApprovable(recheck.reasons);
  return recheck;
}

function partyNow(services: Services, customer: CustomerRow) {
  return {
    kycStatus: customer.kycStatus,
    country: customer.country,
    sanctionsScoreBp: services.screening.screen(customer).scoreBp,
  };
}

function noLongerApprovable(reasons: string[]): AppError {
  return new AppError(
    'PAYMENT_NO_LONGER_APPROVABLE',
    'the payment would now be declined; it stays in review and can be rejected',
    reasons.map((reason) => ({ field: 'reasons', message: reason })),
  );
}

async function reject(
  tx: Tx,
  actor: Actor,
  payment: Payment,
  resolution: PaymentResolution,
): Promise<ReviewResult> {
  const released = await releaseHold(tx, payment, 'released');
  const resolved = await finishResolution(tx, actor, payment, 'declined', resolution, 'payment.rejected', {
    releasedCents: released.amountCents,
  });
  return { payment: resolved, ledgerPosted: false, accounts: [released.account] };
}

async function releaseHold(
  tx: Tx,
  payment: Payment,
  status: 'released' | 'expired',
): Promise<{ amountCents: number; account: Account }> {
  const source = (await tx.lockAccounts([payment.sourceAccountId])).get(payment.sourceAccountId);
  assert(source !== undefined, 'the source account of a payment exists');
  return tx.endHold(payment.id, source, status);
}

/**
 * Declines a held payment without a reviewer's note (expiry, KYC rejection): the hold is released (`expired`
 * for an expiry, else `released`), and the resolution audited and evented with `releasedCents`.
 */
async function declineHeld(
  tx: Tx,
  actor: Actor,
  payment: Payment,
  outcome: 'hold_expired' | 'kyc_rejected',
  eventType: EventType,
  effects: Record<string, string | number>,
): Promise<void> {
  const resolution: PaymentResolution = { outcome, atMs: tx.nowMs, actorId: actor.apiKeyId, noteEnc: null };
  const { amountCents: releasedCents } = await releaseHold(
    tx,
    payment,
    outcome === 'hold_expired' ? 'expired' : 'released',
  );
  await finishResolution(tx, actor, payment, 'declined', resolution, eventType, {
    releasedCents,
    ...effects,
  });
}

/** The status change, its audit entry (with the actor, without the note) and its outbox event. */
async function finishResolution(
  tx: Tx,
  actor: Actor,
  payment: Payment,
  status: Payment['status'],
  resolution: PaymentResolution,
  eventType: EventType,
  effects: Record<string, AuditValue>,
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
  const expired = await services.committer.submit(
    async (tx) => {
      let expired = 0;
      for (const { paymentId } of due) {
        const payment = await tx.lockPayment(paymentId);
        if (payment?.status !== 'manual_review' || payment.createdAtMs > cutoffMs) continue;
        await declineHeld(tx, SYSTEM_ACTOR, payment, 'hold_expired', 'payment.hold_expired', {});
        expired += 1;
      }
      return expired;
    },
    { accountIds: due.map((h) => h.accountId) },
  );
  services.metrics.reviewResolved('hold_expired', expired);
  return expired;
}

/**
 * A KYC rejection's cascade: up to this many of the sender's held payments are declined in the KYC decision's
 * own transaction; the rest (and any held while it ran) by follow-up commands of the same size, up to
 * KYC_CASCADE_COMMANDS_MAX of them per decision. Beyond that a payment stays held: approving it is refused by
 * the re-check (its sender is not verified), and the expiry sweep releases it after REVIEW_HOLD_EXPIRY_HOURS;
 * posting the rejection again continues the cascade.
 */
export const KYC_CASCADE_CHUNK_MAX = 100;
const KYC_CASCADE_COMMANDS_MAX = 20;

/** The sender's held payments to decline in the KYC decision's transaction, and the accounts to lock for them. */
export async function heldPaymentsOfSender(
  services: Services,
  customerId: string,
): Promise<{ held: ExpiredHold[]; accountIds: string[] }> {
  const held = await services.store.reads.listHeldPaymentsOfSender(customerId, KYC_CASCADE_CHUNK_MAX);
  return { held, accountIds: [...new Set(held.map((h) => h.accountId))] };
}

/**
 * Inside a command that declared the holds' accounts (heldPaymentsOfSender's `accountIds`): declines each
 * payment still in review and releases its hold, audited and evented as `payment.rejected` with resolution
 * `kyc_rejected` and the compliance officer who rejected the KYC. Locks as every review path does: the
 * accounts (declared, taken first), then each payment row. Returns how many were declined.
 */
export async function declineHeldPaymentsOfSender(
  tx: Tx,
  actor: Actor,
  customerId: string,
  held: ExpiredHold[],
): Promise<number> {
  let declined = 0;
  for (const { paymentId } of held) {
    const payment = await tx.lockPayment(paymentId);
    if (payment?.status !== 'manual_review') continue;
    await declineHeld(tx, actor, payment, 'kyc_rejected', 'payment.rejected', {
      senderCustomerId: customerId,
    });
    declined += 1;
  }
  return declined;
}

/**
 * After the KYC decision committed: declines the sender's held payments its transaction did not (beyond the
 * first chunk, or held while it ran), a chunk per command, while the customer is still rejected. Bounded
 * (KYC_CASCADE_COMMANDS_MAX); returns how many were declined.
 */
export async function declineRemainingHeldPaymentsOfSender(
  services: Services,
  actor: Actor,
  customerId: string,
): Promise<number> {
  let declined = 0;
  for (let round = 0; round < KYC_CASCADE_COMMANDS_MAX; round++) {
    const { held, accountIds } = await heldPaymentsOfSender(services, customerId);
    if (held.length === 0) break;
    const count = await services.committer.submit(
      async (tx) => {
        const customer = (await tx.getCustomers([customerId])).get(customerId);
        if (customer?.kycStatus !== 'rejected') return null;
        return declineHeldPaymentsOfSender(tx, actor, customerId, held);
      },
      { accountIds },
    );
    if (count === null) break;
    declined += count;
  }
  return declined;
}

function notInReview(): AppError {
  return new AppError('PAYMENT_NOT_IN_REVIEW', 'the payment is not awaiting review');
}
