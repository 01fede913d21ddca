import { assert } from '../domain/assert.ts';
import type { AuditValue } from '../domain/audit.ts';
import { AppError } from '../domain/errors.ts';
import { newId } from '../domain/ids.ts';
import {
  countItems,
  PAYMENT_BATCH_ITEMS_MAX,
  type PaymentBatch,
  type PaymentBatchItem,
  type PaymentBatchItemError,
} from '../domain/payment-batch.ts';
import type { CounterRequest } from '../domain/risk-keys.ts';
import type { Account, Actor, Payment } from '../domain/types.ts';
import type { LockHints, Tx } from '../storage/store.ts';
import {
  type ExecutedPayment,
  type PaymentRequest,
  type PreparedPayment,
  paymentLocks,
  preparePayment,
  recordPayment,
  validatePayment,
} from './create-payment.ts';
import type { EventType } from './events.ts';
import {
  type IdempotentOutcome,
  type IdempotentReply,
  idempotentRequest,
  jsonOutcome,
  runIdempotent,
} from './idempotent.ts';
import { inScope, scopeOf } from './scope.ts';
import type { Services } from './services.ts';
import { paymentView, resultingBalances } from './views.ts';

/**
 * POST /v1/payment-batches (docs/decisions/0023-payment-batches.md): up to PAYMENT_BATCH_ITEMS_MAX payments in
 * ONE command of the committer, so one transaction, under one Idempotency-Key. Each payment goes through the
 * single payment's pipeline (src/app/create-payment.ts: steps 3 to 8, audit and event included) in order, each
 * seeing the ones before it.
 *
 *   atomic: false  every payment is decided on its own, exactly as if posted alone: posted, held for review or
 *                  declined; one that a single payment would answer with an error (an unknown account, a bad FX
 *                  quote) is a `failed` item with that error. 201.
 *   atomic: true   all post, or none: a payment that is declined, held for review or fails makes the whole
 *                  batch `rejected`. Everything its payments did is discarded (Tx.discardCommand: no payment,
 *                  ledger entry, hold, quote use or risk count survives), and then the refusal itself is
 *                  recorded in the same transaction: the batch with each item's reason, its audit entry and
 *                  event, and the response under the key, which a retry replays. 422.
 */
export interface PaymentBatchRequest {
  atomic: boolean;
  payments: PaymentRequest[];
}

/**
 * A payment whose error comes after it started writing (steps 4 to 8: e.g. BALANCE_LIMIT_EXCEEDED) cannot be
 * undone alone; the batch is then run again from the start with that payment failed. At most this many times
 * (each needs one such payment more); beyond, the error is the batch's answer and nothing is stored.
 */
const RESTARTS_MAX = 8;

/** What a payment of the batch came to: recorded (with its accounts after it), or the error it met. */
type ItemOutcome = ExecutedPayment | { error: AppError };

export async function createPaymentBatch(
  services: Services,
  actor: Actor,
  idempotencyKey: string,
  request: PaymentBatchRequest,
): Promise<IdempotentReply> {
  const count = request.payments.length;
  assert(count >= 1 && count <= PAYMENT_BATCH_ITEMS_MAX, 'the route schema bounds a batch');
  // Step 1 for every payment, with where it sits: `/payments/3/destinationAccountId`. One bad item is a 400
  // for the request, as any invalid field of a body is.
  const quoteUsers = new Map<string, number>();
  for (const [i, payment] of request.payments.entries()) {
    validatePayment(payment, `/payments/${i}`);
    // A quote pays for one payment: a second item with it could only fail, and (in an atomic batch, whose
    // payments are discarded) its error would name a payment that never came to exist.
    if (payment.quoteId !== undefined) {
      const first = quoteUsers.get(payment.quoteId);
      if (first !== undefined) {
        throw new AppError('VALIDATION_ERROR', 'an FX quote can be used by one payment of a batch', [
          { field: `/payments/${i}/quoteId`, message: `the same quote as /payments/${first}/quoteId` },
        ]);
      }
      quoteUsers.set(payment.quoteId, i);
    }
  }
  const idempotent = idempotentRequest(actor, idempotencyKey, 'POST', '/v1/payment-batches', request);
  // The payments the command recorded (its last run, if a failed committer batch was split and re-run).
  let decided: Payment[] = [];
  const reply = await runIdempotent(services, idempotent, async () => {
    const unpayable = await unpayableItems(services, actor, request.payments);
    return {
      locks: await batchLocks(services, request.payments, unpayable),
      execute: async (tx, discard) => {
        const applied = await applyBatch(tx, services, actor, request, discard, unpayable);
        decided = applied.decided;
        return applied.outcome;
      },
    };
  });
  if (reply.replayed === false) {
    for (const payment of decided) services.metrics.paymentDecided(payment.status, payment.reasons);
  }
  return reply;
}

/**
 * Every payment's lock hints together: PostgreSQL locks all their accounts (FX pools included) and names in its
 * one global order at the start of the transaction, so two batches over the same accounts, in any process,
 * wait for each other and never deadlock. The counters are read in one statement with the batch's.
 */
async function batchLocks(
  services: Services,
  payments: PaymentRequest[],
  unpayable: Map<number, AppError>,
): Promise<LockHints> {
  const accountIds = new Set<string>();
  const names = new Set<string>();
  const counters: CounterRequest[] = [];
  for (const [index, payment] of payments.entries()) {
    if (unpayable.has(index)) continue;
    const locks = await paymentLocks(services, payment);
    for (const id of locks.accountIds ?? []) accountIds.add(id);
    for (const name of locks.names ?? []) names.add(name);
    counters.push(...(locks.counters ?? []));
  }
  return { accountIds: [...accountIds], names: [...names], counters, discardable: true };
}

/**
 * The items whose accounts this key cannot pay from or to, known before the transaction (an account's owner and
 * kind never change): a source that does not exist, is a system account or (for a scoped key) is not its
 * customers'; a destination that does not exist or is a system account. They fail with the errors a single
 * payment would get, and their accounts are not locked: a batch cannot hold, for its whole run, the locks of
 * accounts it has no right to use (other customers' accounts, the funding accounts).
 */
async function unpayableItems(
  services: Services,
  actor: Actor,
  payments: PaymentRequest[],
): Promise<Map<number, AppError>> {
  const ids = payments.flatMap((p) => [p.sourceAccountId, p.destinationAccountId]);
  const owners = await services.store.reads.accountOwners(ids);
  const unpayable = new Map<number, AppError>();
  for (const [index, payment] of payments.entries()) {
    const source = owners.get(payment.sourceAccountId);
    const destination = owners.get(payment.destinationAccountId);
    // null: a system account (it has no owner); undefined: no such account.
    if (source == null || !inScope(actor, source)) {
      unpayable.set(index, new AppError('SOURCE_ACCOUNT_NOT_FOUND', 'source account not found'));
    } else if (destination == null) {
      unpayable.set(index, new AppError('DESTINATION_ACCOUNT_NOT_FOUND', 'destination account not found'));
    }
  }
  return unpayable;
}

async function applyBatch(
  tx: Tx,
  services: Services,
  actor: Actor,
  request: PaymentBatchRequest,
  discard: () => Promise<void>,
  unpayable: Map<number, AppError>,
): Promise<{ outcome: IdempotentOutcome; decided: Payment[] }> {
  const batchId = newId('pbt');
  // Payments that met an error after they started writing, in an earlier run: failed, not run again.
  const failedLate = new Map<number, AppError>();
  let outcomes: ItemOutcome[] | null = null;
  while (outcomes === null) {
    outcomes = await runPayments(tx, services, actor, request.payments, batchId, { unpayable, failedLate });
    if (outcomes === null) await discard();
  }
  const allPosted = outcomes.every((o) => 'payment' in o && o.payment.status === 'posted');
  if (request.atomic && !allPosted) {
    // Nothing of the payments may survive: undone, then the refusal is recorded in their place.
    await discard();
    return {
      outcome: await recordBatch(tx, services, actor, request, batchId, outcomes, 'rejected'),
      decided: [],
    };
  }
  const decided = outcomes.flatMap((o) => ('payment' in o ? [o.payment] : []));
  return {
    outcome: await recordBatch(tx, services, actor, request, batchId, outcomes, 'completed'),
    decided,
  };
}

/**
 * Runs the payments in order: each one's outcome, or null when one met an error after it started writing (it
 * is then in `failedLate`, and the caller discards this run and starts again).
 */
async function runPayments(
  tx: Tx,
  services: Services,
  actor: Actor,
  payments: PaymentRequest[],
  batchId: string,
  failed: { unpayable: Map<number, AppError>; failedLate: Map<number, AppError> },
): Promise<ItemOutcome[] | null> {
  const { unpayable, failedLate } = failed;
  const outcomes: ItemOutcome[] = [];
  for (const [index, payment] of payments.entries()) {
    // Bounded: one iteration per payment, at most PAYMENT_BATCH_ITEMS_MAX. Between payments the event loop
    // runs when the batch's slice is used up (SQLite), and queued rows are written when many wait.
    await tx.pace();
    const known = unpayable.get(index) ?? failedLate.get(index);
    if (known !== undefined) {
      outcomes.push({ error: known });
      continue;
    }
    let prepared: PreparedPayment;
    try {
      // Step 3 only reads: an error here leaves nothing behind, and the next payment goes on.
      prepared = await preparePayment(tx, actor, payment);
    } catch (error) {
      outcomes.push({ error: clientError(error) });
      continue;
    }
    try {
      outcomes.push(await recordPayment(tx, services, actor, payment, prepared, batchId));
    } catch (error) {
      const appError = clientError(error);
      if (failedLate.size >= RESTARTS_MAX) throw appError;
      failedLate.set(index, appError);
      return null;
    }
  }
  return outcomes;
}

/** A client-facing error is an item's outcome; anything else (a bug, the database) fails the whole batch. */
function clientError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  throw error;
}

async function recordBatch(
  tx: Tx,
  services: Services,
  actor: Actor,
  request: PaymentBatchRequest,
  batchId: string,
  outcomes: ItemOutcome[],
  status: PaymentBatch['status'],
): Promise<IdempotentOutcome> {
  const failedCount = outcomes.filter((o) => !('payment' in o) || o.payment.status !== 'posted').length;
  const items: PaymentBatchItem[] = outcomes.map((o, index) =>
    status === 'rejected' ? rejectedItem(o, index, failedCount) : completedItem(o, index),
  );
  const batch: PaymentBatch = {
    id: batchId,
    atomic: request.atomic,
    status,
    counts: countItems(items),
    apiKeyId: actor.apiKeyId,
    requestId: actor.requestId,
    createdAtMs: tx.nowMs,
  };
  // The queued rows of the last payments are written in a slice of their own, then the batch's.
  await tx.pace();
  await tx.insertPaymentBatch(batch, items);
  const type: EventType = status === 'completed' ? 'payment_batch.created' : 'payment_batch.rejected';
  await tx.appendAudit({
    eventType: type,
    actorId: actor.apiKeyId,
    requestId: actor.requestId,
    resourceType: 'payment_batch',
    resourceId: batch.id,
    metadata: {
      batchId: batch.id,
      atomic: batch.atomic,
      status: batch.status,
      counts: { ...batch.counts },
      // Each payment has an entry of its own; what has none is said here: the items that failed, and why.
      failedItems: items.flatMap((item) =>
        item.error === null || item.status === 'not_applied'
          ? []
          : [{ index: item.index, code: item.error.code, reasons: item.error.reasons ?? [] }],
      ) as AuditValue,
    },
  });
  // The batch's own event carries the summary; each payment's event was written with it (summary decision).
  await tx.appendEvent({
    type,
    resourceType: 'payment_batch',
    resourceId: batch.id,
    data: JSON.stringify({ batch: batchSummaryView(batch) }),
  });
  // The balances after the batch of every customer account it touched (none moved in a rejected one).
  const accounts = new Map<string, Account>();
  for (const o of outcomes) if ('accounts' in o) for (const a of o.accounts.values()) accounts.set(a.id, a);
  const byIndex = new Map(outcomes.flatMap((o, i) => ('payment' in o ? [[i, o.payment] as const] : [])));
  // The response (about 0.5 MB for 1,000 payments) is built, sealed and stored in a slice of its own.
  await tx.pace();
  const body = {
    batch: {
      ...batchSummaryView(batch),
      items: items.map((item) =>
        itemView(item, status === 'completed' ? (byIndex.get(item.index) ?? null) : null, services),
      ),
    },
    ...(status === 'completed' ? { balances: resultingBalances(accounts.values(), actor) } : {}),
  };
  return jsonOutcome(status === 'completed' ? 201 : 422, body, batch.id);
}

function completedItem(o: ItemOutcome, index: number): PaymentBatchItem {
  if ('payment' in o) return { index, status: o.payment.status, paymentId: o.payment.id, error: null };
  return { index, status: 'failed', paymentId: null, error: itemError(o.error, index) };
}

/** An atomic batch's item once the batch is refused: why it failed, or that it was undone because others did. */
function rejectedItem(o: ItemOutcome, index: number, failedCount: number): PaymentBatchItem {
  const failed = (error: PaymentBatchItemError): PaymentBatchItem => ({
    index,
    status: 'failed',
    paymentId: null,
    error,
  });
  if (!('payment' in o)) return failed(itemError(o.error, index));
  const { status, reasons } = o.payment;
  if (status === 'declined') {
    return failed({ code: 'PAYMENT_DECLINED', message: 'the payment would be declined', reasons });
  }
  if (status === 'manual_review') {
    // A held payment has not posted, and an atomic batch cannot wait for a review: it fails the batch.
    return failed({
      code: 'PAYMENT_HELD_FOR_REVIEW',
      message: 'the payment would be held for review, and an atomic batch posts all its payments at once',
      reasons,
    });
  }
  return {
    index,
    status: 'not_applied',
    paymentId: null,
    error: {
      code: 'BATCH_ITEM_NOT_APPLIED',
      message: `not applied: ${failedCount} of the batch's payments did not post, so none did`,
    },
  };
}

/** The error a single payment would have answered, its fields named where the item sits in the body. */
function itemError(error: AppError, index: number): PaymentBatchItemError {
  return {
    code: error.code,
    message: error.message,
    ...(error.details === undefined
      ? {}
      : {
          details: error.details.map((d) => ({
            ...d,
            ...(d.field === undefined ? {} : { field: `/payments/${index}${d.field}` }),
          })),
        }),
  };
}

export function batchSummaryView(batch: PaymentBatch) {
  return {
    id: batch.id,
    atomic: batch.atomic,
    status: batch.status,
    counts: batch.counts,
    createdAt: new Date(batch.createdAtMs).toISOString(),
  };
}

/**
 * An item as answered: its payment, or its error. The payment carries the summary decision whatever the role:
 * a thousand full decisions would triple the answer (about 1.4 MB, stored again under the key); the whole
 * explanation is one GET /v1/payments/:id away, for the roles that may see it.
 */
function itemView(item: PaymentBatchItem, payment: Payment | null, services: Services) {
  return {
    index: item.index,
    status: item.status,
    ...(payment === null ? {} : { payment: paymentView(payment, 'summary', services.reviewHoldExpiryMs) }),
    ...(item.error === null ? {} : { error: item.error }),
  };
}

/**
 * GET /v1/payment-batches/:id: the batch and a page of its items, each item's payment as it is now (a held one
 * may have been approved since). A key scoped to customers reads only the batches it made itself; to it any
 * other is not found.
 */
export async function readPaymentBatch(
  services: Services,
  actor: Actor,
  id: string,
  afterIndex: number,
  limit: number,
) {
  const reads = services.store.reads;
  const batch = await reads.getPaymentBatch(id);
  if (batch === undefined || (scopeOf(actor) !== null && batch.apiKeyId !== actor.apiKeyId)) {
    throw new AppError('PAYMENT_BATCH_NOT_FOUND', 'payment batch not found');
  }
  const rows = await reads.listPaymentBatchItems(id, afterIndex, limit + 1);
  const page = rows.slice(0, limit);
  return {
    batch: {
      ...batchSummaryView(batch),
      items: page.map(({ item, payment }) => itemView(item, payment, services)),
    },
    lastIndex: rows.length > limit ? page[page.length - 1]!.item.index : null,
  };
}
