import { expireReviewHolds } from './review.ts';
import type { Services } from './services.ts';

/**
 * Background sweeps: expired idempotency records (kept at least the retention, 24 h by default), risk
 * counter rows older than the counters' retention (35 days; see src/storage/risk-counters.ts), and review
 * holds older than REVIEW_HOLD_EXPIRY_HOURS (declined and released, src/app/review.ts). Each tick deletes in bounded chunks through the committer,
 * so a sweep never holds the writer for long and never races a payment.
 */
const CHUNK_ROWS = 1000;
const CHUNKS_PER_TICK_MAX = 20;

export async function sweepOnce(
  services: Services,
): Promise<{ idempotencyRecords: number; attempts: number; holdsExpired: number }> {
  let idempotencyRecords = 0;
  let attempts = 0;
  let holdsExpired = 0;
  for (let chunk = 0; chunk < CHUNKS_PER_TICK_MAX; chunk++) {
    const removed = await services.committer.submit(async (tx) => ({
      records: await tx.purgeExpiredIdempotencyRecords(CHUNK_ROWS),
      attempts: await tx.counters.purge(tx.nowMs, CHUNK_ROWS),
    }));
    idempotencyRecords += removed.records;
    attempts += removed.attempts;
    if (removed.records < CHUNK_ROWS && removed.attempts < CHUNK_ROWS) break;
  }
  for (let chunk = 0; chunk < CHUNKS_PER_TICK_MAX; chunk++) {
    const expired = await expireReviewHolds(services);
    holdsExpired += expired;
    if (expired === 0) break;
  }
  return { idempotencyRecords, attempts, holdsExpired };
}

export function startSweeper(
  services: Services,
  intervalMs: number,
  onError: (error: unknown) => void,
): () => void {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    sweepOnce(services)
      .catch(onError)
      .finally(() => {
        running = false;
      });
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
