import { assert } from '../domain/assert.ts';
import { AppError } from '../domain/errors.ts';
import { inclusionProofOf } from './audit-log.ts';
import type { Services } from './services.ts';
import { auditEntryView } from './views.ts';

/**
 * Payment receipts (`Prefer: receipt` on POST /v1/payments): proof that the payment's decision was logged.
 * `{index, entry, inclusionProof, checkpoint}` lets the payer check offline, with only the log's public key,
 * that `entry` is leaf `index` of the tree the signed `checkpoint` commits to; later checkpoints must stay
 * consistent with that one, so the entry can never be removed or changed without detection.
 *
 * The receipt is computed on the way out and appended AFTER the stored response bytes: the idempotency
 * record is untouched, a replay without the preference is byte-identical to the first response, and a
 * replay with it is the same bytes plus a receipt (possibly against a newer checkpoint).
 *
 * The stored body carries the decision as the caller's role may see it (src/app/views.ts); the receipt's
 * `entry` is the audit entry itself, whole decision included, because the leaf hash is computed over all of it
 * and a payer must be able to recompute it. So a `payments` key that asks for a receipt does see the full
 * decision there: reducing it would break the proof; keeping it out needs a change to what the leaf commits to.
 */
export interface Receipt {
  index: number;
  entry: ReturnType<typeof auditEntryView>;
  inclusionProof: string[];
  checkpoint: string;
}

/** RFC 7240: `Prefer: receipt` (case-insensitive token, possibly among other preferences). */
export function prefersReceipt(header: string | string[] | undefined): boolean {
  const values = Array.isArray(header) ? header : header === undefined ? [] : [header];
  return values
    .flatMap((value) => value.split(','))
    .some((preference) => preference.split(';')[0]!.split('=')[0]!.trim().toLowerCase() === 'receipt');
}

export async function paymentReceipt(services: Services, paymentId: string): Promise<Receipt> {
  const reads = services.store.reads;
  const index = await reads.findAuditIndex('payment', paymentId);
  if (index === undefined) {
    throw new AppError('AUDIT_LOG_INCONSISTENT', 'the payment has no audit entry; the audit log was altered');
  }
  // Any signed checkpoint that covers the entry proves it: reading a receipt cuts (writes) a new one only when
  // none does yet, so reads stay reads (GET /v1/payments/:id/receipt, the console).
  const checkpoint = await services.auditLog.checkpointCovering(index + 1);
  const [entry] = await reads.listAuditEntries(index, 1);
  // Found a moment ago and gone now: only the sandbox's reset empties a log, between these reads.
  if (entry === undefined || entry.index !== index)
    throw new AppError('PAYMENT_NOT_FOUND', 'payment not found');
  const proof = await inclusionProofOf(reads, index, checkpoint.treeSize);
  return {
    index,
    entry: auditEntryView(entry),
    inclusionProof: proof.map((hash) => hash.toString('base64')),
    checkpoint: checkpoint.note,
  };
}

/** The stored response body with `"receipt": ...` appended as its last field; null when it holds no payment. */
export async function withReceipt(services: Services, storedBody: string): Promise<string | null> {
  const paymentId = (JSON.parse(storedBody) as { payment?: { id?: unknown } }).payment?.id;
  if (typeof paymentId !== 'string') return null;
  assert(storedBody.endsWith('}'), 'a stored payment response is a JSON object');
  const receipt = await paymentReceipt(services, paymentId);
  return `${storedBody.slice(0, -1)},"receipt":${JSON.stringify(receipt)}}`;
}
