import type { ErrorDetail } from './errors.ts';
import type { PaymentStatus } from './types.ts';

/**
 * Batch payments (POST /v1/payment-batches, docs/decisions/0023-payment-batches.md): up to
 * PAYMENT_BATCH_ITEMS_MAX payments in one request and one transaction, all or none (`atomic`) or each on its own.
 */

/** The most payments one batch may hold: what one transaction applies, and what the storage bounds allow. */
export const PAYMENT_BATCH_ITEMS_MAX = 1_000;

/**
 * `completed`: every item was decided (atomic: every one posted). `rejected`: an atomic batch with an item that
 * did not post; nothing of any item was kept.
 */
export const PAYMENT_BATCH_STATUSES = ['completed', 'rejected'] as const;
export type PaymentBatchStatus = (typeof PAYMENT_BATCH_STATUSES)[number];

/**
 * An item's fate. The first three are a stored payment's status (the item has its payment). `failed`: the item
 * could not be made (the error a single payment would have answered) or, in an atomic batch, did not post.
 * `not_applied`: an atomic batch's item that would have posted, undone because another item failed.
 */
export const PAYMENT_BATCH_ITEM_STATUSES = [
  'posted',
  'manual_review',
  'declined',
  'failed',
  'not_applied',
] as const;
export type PaymentBatchItemStatus = (typeof PAYMENT_BATCH_ITEM_STATUSES)[number];

/** Why an item has no payment: an error code of the catalogue, and for a decision that did not post, its reasons. */
export interface PaymentBatchItemError {
  code: string;
  message: string;
  details?: ErrorDetail[];
  /** The decision's reason codes (an atomic batch's declined or held item). */
  reasons?: string[];
}

export interface PaymentBatchItem {
  index: number;
  status: PaymentBatchItemStatus;
  /** The item's payment: set exactly when the status is a payment status. */
  paymentId: string | null;
  error: PaymentBatchItemError | null;
}

export interface PaymentBatchCounts {
  total: number;
  posted: number;
  manualReview: number;
  declined: number;
  failed: number;
  notApplied: number;
}

export interface PaymentBatch {
  id: string;
  atomic: boolean;
  status: PaymentBatchStatus;
  counts: PaymentBatchCounts;
  /** The API key that made it: a key scoped to customers reads only the batches it made. */
  apiKeyId: string;
  requestId: string;
  createdAtMs: number;
}

export function isPaymentStatus(status: PaymentBatchItemStatus): status is PaymentStatus {
  return status === 'posted' || status === 'manual_review' || status === 'declined';
}

export function countItems(items: readonly Pick<PaymentBatchItem, 'status'>[]): PaymentBatchCounts {
  const counts: PaymentBatchCounts = {
    total: items.length,
    posted: 0,
    manualReview: 0,
    declined: 0,
    failed: 0,
    notApplied: 0,
  };
  const key = {
    posted: 'posted',
    manual_review: 'manualReview',
    declined: 'declined',
    failed: 'failed',
    not_applied: 'notApplied',
  } as const;
  for (const item of items) counts[key[item.status]] += 1;
  return counts;
}
