import { assert } from '../domain/assert.ts';
import { AppError } from '../domain/errors.ts';
import { newId } from '../domain/ids.ts';
import { transfer } from '../domain/ledger.ts';
import { type Account, type Actor, type Payment, type Refund, spendableCents } from '../domain/types.ts';
import type { Tx } from '../storage/store.ts';
import { appendPaymentEvent } from './events.ts';
import { type IdempotentReply, idempotentRequest, jsonOutcome, runIdempotent } from './idempotent.ts';
import { requireRefundInScope } from './scope.ts';
import type { Services } from './services.ts';
import { refundView, resultingBalances } from './views.ts';

/**
 * POST /v1/payments/:id/refunds. A refund reverses (part of) a posted payment with a posting of kind
 * `refund` from the destination back to the source, in one transaction with the refund row, the payment's
 * refunded total, the audit entry, the outbox event and the idempotency record. Several partial refunds may
 * add up to the payment amount, never beyond it (REFUND_EXCEEDS_PAYMENT); the receiver's available balance
 * must cover the refund (INSUFFICIENT_FUNDS). Rejections are thrown, so they undo the key's claim and are not
 * stored under it: a retry after the receiver is funded can succeed.
 */
export interface RefundRequest {
  amountCents?: number;
  reason?: string;
}

export async function createRefund(
  services: Services,
  actor: Actor,
  idempotencyKey: string,
  paymentId: string,
  request: RefundRequest,
): Promise<IdempotentReply> {
  const path = `/v1/payments/${paymentId}/refunds`;
  const idempotent = idempotentRequest(actor, idempotencyKey, 'POST', path, request);
  const reply = await runIdempotent(services, idempotent, async () => {
    // Committed state names the accounts to lock; the transaction re-reads the payment under those locks.
    const seen = await services.store.reads.getPayment(paymentId);
    if (seen === undefined) throw new AppError('PAYMENT_NOT_FOUND', 'payment not found');
    // A scoped key refunds only what its customers received: the refund debits the destination.
    await requireRefundInScope(services.store.reads, actor, seen);
    const reasonEnc =
      request.reason === undefined ? null : services.cipher.encrypt(request.reason, 'refund.reason');
    return {
      locks: { accountIds: [seen.sourceAccountId, seen.destinationAccountId] },
      execute: async (tx) => {
        const { refund, accounts } = await executeRefund(
          tx,
          actor,
          paymentId,
          request.amountCents,
          reasonEnc,
        );
        const body = {
          refund: refundView(refund, services.cipher),
          balances: resultingBalances(accounts, actor),
        };
        return jsonOutcome(201, body, refund.id);
      },
    };
  });
  // After its commit; a replay refunded nothing now.
  if (reply.replayed === false) services.metrics.refundCreated();
  return reply;
}

async function executeRefund(
  tx: Tx,
  actor: Actor,
  paymentId: string,
  requestedCents: number | undefined,
  reasonEnc: string | null,
): Promise<{ refund: Refund; accounts: Account[] }> {
  const payment = await tx.lockPayment(paymentId);
  // Seen before the command, gone now: only the sandbox's reset deletes payments (from another process).
  if (payment === undefined) throw new AppError('PAYMENT_NOT_FOUND', 'payment not found');
  if (payment.status !== 'posted') {
    throw new AppError(
      'PAYMENT_NOT_REFUNDABLE',
      `only posted payments can be refunded (this one is ${payment.status})`,
    );
  }
  // A refund reverses in the payment's one currency. A cross-currency payment is refused rather than reversed
  // at its old rate (the rate's move since then would fall on the house, and a partial refund would need a
  // rounding rule of its own) or at today's (which is a new quote): the payee sends the money back as a new
  // payment with a quote of its own (docs/decisions/0021-fx-quotes.md).
  if (payment.fx != null) {
    throw new AppError(
      'PAYMENT_NOT_REFUNDABLE',
      'a cross-currency payment is not refunded: the payee can send it back as a new payment with an FX quote',
    );
  }
  const remainingCents = payment.amountCents - payment.refundedCents;
  const amountCents = requestedCents ?? remainingCents;
  if (amountCents > remainingCents || amountCents === 0) {
    throw new AppError(
      'REFUND_EXCEEDS_PAYMENT',
      `the refund would exceed the payment: ${remainingCents} cents remain refundable`,
    );
  }
  const accounts = await tx.lockAccounts([payment.sourceAccountId, payment.destinationAccountId]);
  const receiver = accounts.get(payment.destinationAccountId);
  const payer = accounts.get(payment.sourceAccountId);
  assert(receiver !== undefined && payer !== undefined, 'the accounts of a payment exist');
  // The refund sends from the receiver and pays the payer: their controls apply as to any payment.
  if (receiver.status !== 'active') {
    throw new AppError(
      receiver.status === 'frozen' ? 'ACCOUNT_FROZEN' : 'ACCOUNT_CLOSED',
      `the receiver's account is ${receiver.status}: it cannot send the refund`,
    );
  }
  if (payer.status === 'closed') {
    throw new AppError('ACCOUNT_CLOSED', "the payer's account is closed: it cannot receive the refund");
  }
  if (spendableCents(receiver) < amountCents) {
    throw new AppError('INSUFFICIENT_FUNDS', "the receiver's available balance does not cover the refund");
  }
  // The reversing posting: destination → source, so both balances return by exactly the refund.
  const posting = transfer(
    'refund',
    payment.currency,
    payment.id,
    payment.destinationAccountId,
    payment.sourceAccountId,
    amountCents,
  );
  const ledgerTransactionId = await tx.postLedger(posting, accounts, actor.requestId);
  const refund: Refund = {
    id: newId('ref'),
    paymentId: payment.id,
    amountCents,
    currency: payment.currency,
    reasonEnc,
    ledgerTransactionId,
    createdAtMs: tx.nowMs,
  };
  await tx.insertRefund(refund, actor.apiKeyId, actor.requestId);
  const refundedCents = payment.refundedCents + amountCents;
  await tx.setRefundedCents(payment.id, payment.refundedCents, refundedCents);
  await tx.appendAudit(refundAudit(actor, payment, refund, refundedCents));
  const updated: Payment = { ...payment, refundedCents, updatedAtMs: tx.nowMs };
  await appendPaymentEvent(tx, 'payment.refunded', updated, {
    refund: {
      id: refund.id,
      amountCents,
      currency: refund.currency,
      createdAt: new Date(refund.createdAtMs).toISOString(),
    },
  });
  // Payer first, as the payment's own balances are listed.
  return {
    refund,
    accounts: [payment.sourceAccountId, payment.destinationAccountId].map((id) => accounts.get(id)!),
  };
}

function refundAudit(actor: Actor, payment: Payment, refund: Refund, refundedCents: number) {
  return {
    eventType: 'payment.refunded',
    actorId: actor.apiKeyId,
    requestId: actor.requestId,
    resourceType: 'payment',
    resourceId: payment.id,
    // The reason is free text (it may name people): only whether one was given.
    metadata: {
      paymentId: payment.id,
      refundId: refund.id,
      amountCents: refund.amountCents,
      currency: refund.currency,
      refundedCents,
      paymentAmountCents: payment.amountCents,
      ledgerTransactionId: refund.ledgerTransactionId,
      reasonProvided: refund.reasonEnc !== null,
    },
  };
}
