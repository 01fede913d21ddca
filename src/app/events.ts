import { type Payment, PING_EVENT_TYPE } from '../domain/types.ts';
import type { Tx } from '../storage/store.ts';
import { paymentView } from './views.ts';

/**
 * The transactional outbox: every state change a client may want pushed writes an event in the same
 * transaction as the change (and, through Tx.appendEvent, one delivery row per subscribed endpoint), so an
 * event exists exactly when its change committed. The dispatcher (src/webhooks/dispatcher.ts) sends them.
 */
export const EVENT_TYPES = [
  'payment.posted',
  'payment.held_for_review',
  'payment.declined',
  'payment.approved',
  'payment.rejected',
  'payment.hold_expired',
  'payment.refunded',
  'customer.kyc_updated',
  'account.controls_updated',
  // A payment batch (src/app/payment-batches.ts): applied, or (atomic) refused with nothing applied.
  'payment_batch.created',
  'payment_batch.rejected',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** What a webhook delivery can carry: every event type, and the ping (PING_EVENT_TYPE). */
export const DELIVERED_EVENT_TYPES = [...EVENT_TYPES, PING_EVENT_TYPE] as const;

/** The event of a newly created payment, by its decided status (the same names as its audit entry). */
export const CREATED_EVENT_TYPE = {
  posted: 'payment.posted',
  manual_review: 'payment.held_for_review',
  declined: 'payment.declined',
} as const satisfies Record<Payment['status'], EventType>;

/**
 * `data` is `{payment}` plus anything the event adds, e.g. `{refund}`. An event is stored once and sent as is
 * to every subscribed receiver (and listed by GET /v1/events), whoever caused it, so the payment carries the
 * `summary` decision (`{outcome, policyVersion, reasons}`); the full explanation stays in the audit entry and
 * behind the API for the roles that may see it (src/app/views.ts, decisionDetailFor).
 */
export async function appendPaymentEvent(
  tx: Tx,
  type: EventType,
  payment: Payment,
  extra: Record<string, unknown> = {},
  holdExpiryMs?: number,
): Promise<void> {
  await tx.appendEvent({
    type,
    resourceType: 'payment',
    resourceId: payment.id,
    data: JSON.stringify({ payment: paymentView(payment, 'summary', holdExpiryMs), ...extra }),
    // A key scoped to either party's customer sees the event (src/app/scope.ts).
    sourceAccountId: payment.sourceAccountId,
    destinationAccountId: payment.destinationAccountId,
  });
}
