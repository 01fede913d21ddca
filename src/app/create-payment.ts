import { assert } from '../domain/assert.ts';
import type { AuditValue } from '../domain/audit.ts';
import { AppError } from '../domain/errors.ts';
import type { FxTerms } from '../domain/fx.ts';
import { newId } from '../domain/ids.ts';
import { testTriggerFor } from '../domain/sandbox.ts';
import type { Account, Actor, Payment } from '../domain/types.ts';
import type { CustomerRow, LockHints, Tx } from '../storage/store.ts';
import { appendPaymentEvent, CREATED_EVENT_TYPE } from './events.ts';
import { fxAuditMetadata, fxPaymentLocks, postPayment, takeFxQuote, useFxQuote } from './fx-quotes.ts';
import {
  type IdempotentOutcome,
  type IdempotentReply,
  idempotentRequest,
  jsonOutcome,
  runIdempotent,
} from './idempotent.ts';
import { recordReporting } from './reports.ts';
import { assessRisk, paymentCounterReads, recordAttempt } from './risk-assessment.ts';
import { inScope } from './scope.ts';
import type { Services } from './services.ts';
import { decisionDetailFor, paymentView, resultingBalances } from './views.ts';

/**
 * POST /v1/payments, following the workshop's request flow:
 *
 *   1 validate → ┌ one database transaction ─────────────────────────────────────────────────────────┐
 *                │ 2 idempotency gate → 3 load accounts → 4 compliance → 5 fraud → 6 funds & currency │
 *                │ → 7 decision, ledger post or hold → 8 audit + idempotency record                  │
 *                └───────────────────────────────────────────────────────────────────────────────────┘
 *   → respond (201 posted, 202 manual_review, 422 declined; the same bytes on every replay)
 *
 * Everything from step 2 on is one command in the committer, so it commits (and fsyncs) together or not at
 * all. The gate is inside, under the key's lock, and reads the record the batch already fetched: a replay
 * costs no extra query, and two requests with one key can never both pass it. The rules are pure functions
 * (src/domain/policy.ts); this file does the I/O around them.
 */
export interface PaymentRequest {
  sourceAccountId: string;
  destinationAccountId: string;
  amountCents: number;
  currency: string;
  note?: string;
  metadata?: Record<string, string>;
  /** Required between accounts of two currencies: a live FX quote of this key (src/app/fx-quotes.ts). */
  quoteId?: string;
}

export type PaymentReply = IdempotentReply;

const STATUS_BY_OUTCOME = { posted: 201, manual_review: 202, declined: 422 } as const;

export async function createPayment(
  services: Services,
  actor: Actor,
  idempotencyKey: string,
  request: PaymentRequest,
): Promise<PaymentReply> {
  // Step 1: validate. The route schema checked every field's shape; this is what a schema cannot say.
  validatePayment(request);

  // Steps 2 to 8: one transaction. The lock hints name what the batch reads (and locks) up front: the
  // accounts here, the key in runIdempotent, which also runs step 2 and stores the response of step 8.
  // No fast path (`readFirst: false`): the batch reads the key's record with the accounts, so a replay costs
  // no query, and a fresh payment none extra.
  const idempotent = idempotentRequest(actor, idempotencyKey, 'POST', '/v1/payments', request);
  // The payment the command decided (its last run, if a failed batch was split and re-run), for the metrics.
  let decided = null as Payment | null;
  const locks = await paymentLocks(services, request);
  const reply = await runIdempotent(
    services,
    idempotent,
    () => ({
      locks,
      execute: async (tx) => {
        const executed = await executePayment(tx, services, actor, request);
        decided = executed.payment;
        return paymentOutcome(services, actor, executed);
      },
    }),
    { readFirst: false },
  );
  // Counted once, after its commit; a replay (`replayed: true`) executed nothing and counts nothing.
  if (reply.replayed === false && decided !== null) {
    services.metrics.paymentDecided(decided.status, decided.reasons);
  }
  return reply;
}

/**
 * Step 1's check of what a schema cannot say. `at` is where the payment sits in the body (a batch's
 * `/payments/3`), so the error names the field exactly.
 */
export function validatePayment(request: PaymentRequest, at = ''): void {
  if (request.sourceAccountId === request.destinationAccountId) {
    throw new AppError('VALIDATION_ERROR', 'source and destination must be different accounts', [
      { field: `${at}/destinationAccountId`, message: 'must differ from sourceAccountId' },
    ]);
  }
}

/**
 * What a payment's transaction locks and reads up front: its two accounts, its risk counters (read with every
 * other payment's of the batch in one statement) and, with a quote, the FX pools and the quote's name.
 */
export async function paymentLocks(services: Services, request: PaymentRequest): Promise<LockHints> {
  const fxLocks = await fxPaymentLocks(services, request.quoteId);
  return {
    accountIds: [request.sourceAccountId, request.destinationAccountId, ...(fxLocks.accountIds ?? [])],
    ...(fxLocks.names === undefined ? {} : { names: fxLocks.names }),
    counters: paymentCounterReads(request.sourceAccountId, request.destinationAccountId, request.amountCents),
  };
}

/** A payment as decided and recorded, and its accounts as they stand after it. */
export interface ExecutedPayment {
  payment: Payment;
  accounts: Map<string, Account>;
}

/**
 * Steps 3 to 8, run once step 2 (the idempotency gate: src/app/idempotent.ts, under the key's lock) found no
 * stored response under the key and claimed it: a stored one is replayed byte for byte, or the key's reuse
 * with another payload refused, before this runs. A payment batch (src/app/payment-batches.ts) runs it for
 * each of its payments, in its one command, with the batch's id (`batchId`); the response is the caller's.
 */
export async function executePayment(
  tx: Tx,
  services: Services,
  actor: Actor,
  request: PaymentRequest,
  batchId: string | null = null,
): Promise<ExecutedPayment> {
  return recordPayment(tx, services, actor, request, await preparePayment(tx, actor, request), batchId);
}

/** What step 3 found: the two accounts, their owners, and across currencies the quote's terms. */
export interface PreparedPayment {
  source: Account;
  destination: Account;
  sender: CustomerRow;
  receiver: CustomerRow;
  fx: FxTerms | null;
}

/**
 * Step 3, which only reads: a payment that cannot be made (an unknown account, a bad quote) throws here, before
 * anything is written or counted. A payment batch relies on that: such an item fails alone, at no cost to the
 * others (src/app/payment-batches.ts).
 */
export async function preparePayment(
  tx: Tx,
  actor: Actor,
  request: PaymentRequest,
): Promise<PreparedPayment> {
  // Step 3: load both accounts (locked on PostgreSQL). A 404 throws, which undoes the claim: not stored.
  const { source, destination } = await loadAccounts(tx, actor, request);
  const parties = await tx.getCustomers([source.ownerCustomerId!, destination.ownerCustomerId!]);
  const sender = parties.get(source.ownerCustomerId!);
  const receiver = parties.get(destination.ownerCustomerId!);
  assert(sender !== undefined && receiver !== undefined, 'every customer account has an owner');
  // Across currencies, the quote (under its lock): a bad one is a 422, thrown, so nothing is stored or moves.
  const quoteId = request.quoteId;
  const fx =
    quoteId === undefined ? null : await takeFxQuote(tx, actor, { ...request, quoteId }, source, destination);
  return { source, destination, sender, receiver, fx };
}

/** Steps 4 to 8: decide, and record the decision and its effects. */
export async function recordPayment(
  tx: Tx,
  services: Services,
  actor: Actor,
  request: PaymentRequest,
  prepared: PreparedPayment,
  batchId: string | null,
): Promise<ExecutedPayment> {
  const { source, destination, sender, receiver, fx } = prepared;
  // Steps 4 to 6: compliance (KYC, jurisdictions, sanctions, limits), fraud (windowed counters), funds and
  // currency, decided by the risk policy (src/domain/policy.ts). Counters are read before this attempt counts.
  const trigger = services.mode === 'test' ? testTriggerFor(request.amountCents) : undefined;
  const riskInput = {
    amountCents: request.amountCents,
    currency: request.currency,
    note: request.note ?? null,
    source,
    destination,
    sender,
    receiver,
    // With a quote the destination is paid in the quote's currency; without one the currency check stands.
    fxDestinationCurrency: fx?.destinationCurrency ?? null,
    // Test mode only: a magic amount forces its documented outcome (src/domain/sandbox.ts).
    ...(trigger === undefined ? {} : { testTrigger: trigger }),
  };
  const assessment = await assessRisk(tx.counters, tx.nowMs, services.policy, services.screening, riskInput);
  await recordAttempt(tx.counters, tx.nowMs, services.policy, riskInput, assessment);

  // Step 7: decision and its effects: post, hold, or move nothing.
  const decision = assessment.decision;
  const payment: Payment = {
    id: newId('pay'),
    status: decision.outcome,
    sourceAccountId: source.id,
    destinationAccountId: destination.id,
    amountCents: request.amountCents,
    currency: request.currency,
    note: request.note ?? null,
    metadata: request.metadata ?? null,
    reasons: decision.reasons,
    decision,
    refundedCents: 0,
    resolution: null,
    fx,
    batchId,
    createdAtMs: tx.nowMs,
    updatedAtMs: tx.nowMs,
  };
  await tx.insertPayment(payment, actor.apiKeyId, actor.requestId);
  // The quote is used by this payment whatever the decision: one quote, at most one payment.
  if (fx !== null) await useFxQuote(tx, payment);
  const accounts = new Map([
    [source.id, source],
    [destination.id, destination],
  ]);
  let ledgerTransactionIds: string[] = [];
  if (payment.status === 'posted') {
    // One transfer, or across currencies two (one per currency) through the FX pools (src/app/fx-quotes.ts).
    ledgerTransactionIds = await postPayment(tx, payment, accounts, actor.requestId);
  } else if (payment.status === 'manual_review') {
    accounts.set(source.id, await tx.placeHold(payment.id, source, payment.amountCents));
  }

  // Step 8: audit entry (the whole decision) and outbox event (the summary); the response follows
  // (paymentOutcome). The regulatory report rows and compliance cases the payment falls under are written in
  // this transaction too, each naming this audit entry (src/app/reports.ts).
  const audit = paymentAudit(actor, payment, ledgerTransactionIds);
  await tx.appendAudit(audit);
  await recordReporting(tx, services.reporting, payment, audit, {
    senderCountry: sender.country,
    receiverCountry: receiver.country,
    senderOutgoing24hCents: assessment.senderOutgoing24hCents,
  });
  await appendPaymentEvent(tx, CREATED_EVENT_TYPE[payment.status], payment, {}, services.reviewHoldExpiryMs);
  return { payment, accounts };
}

/**
 * Step 8's response, the bytes every replay will repeat (runIdempotent stores them, sealed, under the key in
 * this transaction): the view of the decision this caller's role may see, as the key is the caller's own
 * (src/app/views.ts).
 */
function paymentOutcome(services: Services, actor: Actor, executed: ExecutedPayment): IdempotentOutcome {
  const { payment, accounts } = executed;
  const view = paymentView(payment, decisionDetailFor(actor), services.reviewHoldExpiryMs);
  const body = {
    payment: view,
    ledgerPosted: payment.status === 'posted',
    balances: resultingBalances(accounts.values(), actor),
  };
  return jsonOutcome(STATUS_BY_OUTCOME[payment.status], body, payment.id);
}

async function loadAccounts(
  tx: Tx,
  actor: Actor,
  request: PaymentRequest,
): Promise<{ source: Account; destination: Account }> {
  const accounts = await tx.lockAccounts([request.sourceAccountId, request.destinationAccountId]);
  // System (funding) accounts are internal: to a client they do not exist. Nor, to a key scoped to customers,
  // does a source account they do not own (src/app/scope.ts): it pays only from its customers' accounts, to
  // any account. The owner is on the row already loaded: no extra read.
  const source = accounts.get(request.sourceAccountId);
  if (source === undefined || source.kind !== 'customer' || !inScope(actor, source.ownerCustomerId)) {
    throw new AppError('SOURCE_ACCOUNT_NOT_FOUND', 'source account not found');
  }
  const destination = accounts.get(request.destinationAccountId);
  if (destination === undefined || destination.kind !== 'customer') {
    throw new AppError('DESTINATION_ACCOUNT_NOT_FOUND', 'destination account not found');
  }
  return { source, destination };
}

function paymentAudit(actor: Actor, payment: Payment, ledgerTransactionIds: string[]) {
  const eventType = {
    posted: 'payment.posted',
    manual_review: 'payment.held_for_review',
    declined: 'payment.declined',
  }[payment.status];
  return {
    eventType,
    actorId: actor.apiKeyId,
    requestId: actor.requestId,
    resourceType: 'payment',
    resourceId: payment.id,
    metadata: {
      paymentId: payment.id,
      status: payment.status,
      sourceAccountId: payment.sourceAccountId,
      destinationAccountId: payment.destinationAccountId,
      amountCents: payment.amountCents,
      currency: payment.currency,
      reasons: payment.reasons,
      policyVersion: payment.decision.policyVersion,
      // The whole explainable decision: rule ids, reason codes, feature values and scores (no personal data).
      decision: payment.decision as unknown as AuditValue,
      ledgerTransactionId: ledgerTransactionIds[0] ?? null,
      ...fxAuditMetadata(payment, ledgerTransactionIds),
      // Made in a payment batch (src/app/payment-batches.ts): which one.
      ...(payment.batchId == null ? {} : { batchId: payment.batchId }),
    },
  };
}
