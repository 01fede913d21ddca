import { assert } from '../domain/assert.ts';
import type { FxQuote } from '../domain/fx.ts';
import { num } from './row-values.ts';
import type { Row, SqlExecutor } from './sql-store.ts';

/**
 * The SQL of FX quotes (table fx_quotes, migration 19), shared by both dialects through SqlTx and SqlReads.
 * Statements use `?` placeholders; `forUpdate` is the dialect's row lock (empty on SQLite's single writer).
 */

function quoteFromRow(r: Row): FxQuote {
  return {
    id: r['id'] as string,
    apiKeyId: r['api_key_id'] as string,
    sourceCurrency: r['source_currency'] as string,
    destinationCurrency: r['destination_currency'] as string,
    sourceAmountCents: num(r['source_amount_cents']),
    rate: r['rate'] as string,
    destinationAmountCents: num(r['destination_amount_cents']),
    requestId: r['request_id'] as string,
    createdAtMs: num(r['created_at_ms']),
    expiresAtMs: num(r['expires_at_ms']),
    paymentId: (r['payment_id'] as string | null) ?? null,
    usedAtMs: r['used_at_ms'] === null || r['used_at_ms'] === undefined ? null : num(r['used_at_ms']),
  };
}

export async function insertFxQuote(db: SqlExecutor, q: FxQuote): Promise<void> {
  assert(q.paymentId === null && q.usedAtMs === null, 'a quote is created unused');
  await db.run(
    `INSERT INTO fx_quotes (id, api_key_id, source_currency, destination_currency, source_amount_cents, rate,
                            destination_amount_cents, request_id, created_at_ms, expires_at_ms)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    [
      q.id,
      q.apiKeyId,
      q.sourceCurrency,
      q.destinationCurrency,
      q.sourceAmountCents,
      q.rate,
      q.destinationAmountCents,
      q.requestId,
      q.createdAtMs,
      q.expiresAtMs,
    ],
  );
}

/** A quote by id; with `forUpdate`, its row locked until the transaction ends. */
export async function getFxQuote(db: SqlExecutor, id: string, forUpdate = ''): Promise<FxQuote | undefined> {
  const r = await db.get(`SELECT * FROM fx_quotes WHERE id = ?${forUpdate}`, [id]);
  return r && quoteFromRow(r);
}

/**
 * Marks a quote used by a payment, only if it is still unused: false when another transaction used it first
 * (the caller holds the quote's lock, so that is a bug there, but the guard keeps single use true regardless).
 */
export async function useFxQuote(
  db: SqlExecutor,
  id: string,
  paymentId: string,
  nowMs: number,
): Promise<boolean> {
  const changed = await db.run(
    'UPDATE fx_quotes SET payment_id = ?, used_at_ms = ? WHERE id = ? AND payment_id IS NULL',
    [paymentId, nowMs, id],
  );
  return changed === 1;
}
