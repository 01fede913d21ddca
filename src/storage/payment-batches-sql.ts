import { assert } from '../domain/assert.ts';
import {
  PAYMENT_BATCH_ITEMS_MAX,
  type PaymentBatch,
  type PaymentBatchItem,
  type PaymentBatchItemStatus,
  type PaymentBatchStatus,
} from '../domain/payment-batch.ts';
import { num } from './row-values.ts';
import type { Row, SqlExecutor } from './sql-store.ts';
import { insertRows } from './write-behind.ts';

/**
 * The SQL of payment batches (tables payment_batches and payment_batch_items, migration 21), shared by both
 * dialects through SqlTx and SqlReads. A batch and its items are written once, by the command that made them.
 */

function batchFromRow(r: Row): PaymentBatch {
  return {
    id: r['id'] as string,
    atomic: num(r['atomic']) === 1,
    status: r['status'] as PaymentBatchStatus,
    counts: JSON.parse(r['counts'] as string),
    apiKeyId: r['api_key_id'] as string,
    requestId: r['request_id'] as string,
    createdAtMs: num(r['created_at_ms']),
  };
}

function itemFromRow(r: Row): PaymentBatchItem {
  const error = r['error'] as string | null;
  return {
    index: num(r['item_index']),
    status: r['status'] as PaymentBatchItemStatus,
    paymentId: (r['payment_id'] as string | null) ?? null,
    error: error === null ? null : JSON.parse(error),
  };
}

/** Writes the batch and every item: a few multi-row INSERTs (direct writes, undone with the command). */
export async function insertPaymentBatch(
  db: SqlExecutor,
  batch: PaymentBatch,
  items: PaymentBatchItem[],
): Promise<void> {
  assert(
    items.length === batch.counts.total && items.length >= 1 && items.length <= PAYMENT_BATCH_ITEMS_MAX,
    'a batch holds its counted items, within the bound',
  );
  await db.run(
    `INSERT INTO payment_batches (id, atomic, status, item_count, counts, api_key_id, request_id, created_at_ms)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    [
      batch.id,
      batch.atomic ? 1 : 0,
      batch.status,
      items.length,
      JSON.stringify(batch.counts),
      batch.apiKeyId,
      batch.requestId,
      batch.createdAtMs,
    ],
  );
  await insertRows(
    db,
    'payment_batch_items',
    ['batch_id', 'item_index', 'status', 'payment_id', 'error'],
    items.map((item) => [
      batch.id,
      item.index,
      item.status,
      item.paymentId,
      item.error === null ? null : JSON.stringify(item.error),
    ]),
  );
}

export async function getPaymentBatch(db: SqlExecutor, id: string): Promise<PaymentBatch | undefined> {
  const r = await db.get('SELECT * FROM payment_batches WHERE id = ?', [id]);
  return r && batchFromRow(r);
}

/** Up to `limit` items with an index above `afterIndex`, in index order (a range of the primary key). */
export async function listPaymentBatchItems(
  db: SqlExecutor,
  batchId: string,
  afterIndex: number,
  limit: number,
): Promise<PaymentBatchItem[]> {
  const rows = await db.all(
    `SELECT item_index, status, payment_id, error FROM payment_batch_items
      WHERE batch_id = ? AND item_index > ? ORDER BY item_index LIMIT ?`,
    [batchId, afterIndex, limit],
  );
  return rows.map(itemFromRow);
}
