import { createHash } from 'node:crypto';
import { assert } from '../domain/assert.ts';
import type { WindowTotals } from '../domain/features.ts';
import type { Row, SqlExecutor } from './sql-store.ts';

/**
 * Exact sliding-window counters that never scan history. Every counted event appends a row holding the
 * key's running totals (cumulative count and sum) at that time. The totals inside a window (t - w, t] are the
 * latest totals minus the totals of the last row at or before t - w: two index seeks on
 * (counter_key, at_ms, seq), whatever the history's length. Per key, `at_ms` and the totals only grow (an
 * event is stamped no earlier than the key's last one), and writers of one key are serialised by the row
 * locks the payment already holds (every key is scoped to a locked account).
 *
 * Old rows are purged, except the newest row older than the retention per key, which remains the base for
 * the longest window.
 *
 * Keys are stored as a 64-bit hash of their text (an 8-byte index key instead of ~50 bytes of text: a
 * smaller, faster index); a collision, at odds of 2^-64 per pair, would merely merge two counters.
 *
 * Running sums are BigInt, stored as decimal text: attempts are counted before funds are checked, so a key
 * can accumulate many absurd amounts; a window's sum is reported clamped to the safe integer range.
 */
export const COUNTER_RETENTION_MS = 35 * 24 * 3_600_000;

export interface CounterPoint {
  atMs: number;
  count: number;
  sumCents: bigint;
}

const ZERO: CounterPoint = { atMs: 0, count: 0, sumCents: 0n };
const SAFE_MAX = BigInt(Number.MAX_SAFE_INTEGER);
const clampToSafe = (v: bigint): number => Number(v > SAFE_MAX ? SAFE_MAX : v);

const num = (v: unknown) => {
  const n = typeof v === 'number' ? v : Number(v);
  assert(Number.isSafeInteger(n), 'counter totals are safe integers');
  return n;
};

/** The stored key: the first 8 bytes of SHA-256 of the key's text, as a signed 64-bit decimal. */
export function counterKeyHash(key: string): string {
  return createHash('sha256').update(key).digest().readBigInt64BE(0).toString();
}

const LATEST = `SELECT at_ms, cum_count, cum_sum_cents FROM risk_counter_events
                 WHERE counter_key = ? ORDER BY at_ms DESC, seq DESC LIMIT 1`;
const AT_OR_BEFORE = `SELECT at_ms, cum_count, cum_sum_cents FROM risk_counter_events
                       WHERE counter_key = ? AND at_ms <= ? ORDER BY at_ms DESC, seq DESC LIMIT 1`;

/**
 * In a batch, counter points are queued (the write-behind), not written at once. `raw` reads without
 * flushing them, and the queued points are merged in memory: a key's newest point is the one with the larger
 * count, and a window's base is unaffected as long as every queued point is younger than the window's start
 * (windows are a minute or more; a batch lasts milliseconds). Otherwise the read flushes and goes to the table.
 */
export interface CounterQueue {
  raw: SqlExecutor;
  insert(row: unknown[]): void;
}

const HASHES_CACHED_MAX = 10_000;

interface Pending extends CounterPoint {
  oldestAtMs: number;
}

export class RiskCounters {
  private readonly pendingOfBatch = new Map<string, Pending>();
  private readonly pendingOfCommand = new Map<string, Pending>();
  private readonly hashes = new Map<string, string>();

  /** Without `queue`, points are inserted at once and every read goes to the table. */
  constructor(
    private readonly db: SqlExecutor,
    private readonly queue?: CounterQueue,
  ) {}

  /** The running command ended: its queued points join the batch's, or are dropped with its rows. */
  endCommand(committed: boolean): void {
    // A command's point already carries the oldest queued time of its key (see addMany).
    if (committed) for (const [key, p] of this.pendingOfCommand) this.pendingOfBatch.set(key, p);
    this.pendingOfCommand.clear();
  }

  /** A payment reads and then counts the same keys: each is hashed once per batch. */
  private hashOf(key: string): string {
    let hash = this.hashes.get(key);
    if (hash === undefined) {
      if (this.hashes.size >= HASHES_CACHED_MAX) this.hashes.clear();
      hash = counterKeyHash(key);
      this.hashes.set(key, hash);
    }
    return hash;
  }

  private pending(keyHash: string): Pending | undefined {
    return this.pendingOfCommand.get(keyHash) ?? this.pendingOfBatch.get(keyHash);
  }

  /**
   * Totals of each key inside each of its windows ending at `nowMs` (events with at_ms > nowMs - window), and
   * each key's latest point. One statement, a UNION ALL of index seeks: a payment reads all its counters in
   * one round trip, which matters on PostgreSQL.
   */
  async windowsMany(
    requests: { key: string; windowsMs: number[] }[],
    nowMs: number,
  ): Promise<{ latest: CounterPoint; totals: WindowTotals[] }[]> {
    const parts: string[] = [];
    const params: unknown[] = [];
    requests.forEach((r, i) => {
      const key = this.hashOf(r.key);
      parts.push(`SELECT ${i} AS k, -1 AS w, at_ms, cum_count, cum_sum_cents FROM (${LATEST}) AS l${i}`);
      params.push(key);
      r.windowsMs.forEach((windowMs, j) => {
        parts.push(
          `SELECT ${i} AS k, ${j} AS w, at_ms, cum_count, cum_sum_cents FROM (${AT_OR_BEFORE}) AS b${i}_${j}`,
        );
        params.push(key, nowMs - windowMs);
      });
    });
    const hashes = requests.map((r) => this.hashOf(r.key));
    const mergeable = requests.every((r, i) => {
      const p = this.pending(hashes[i]!);
      return p === undefined || r.windowsMs.every((w) => p.oldestAtMs > nowMs - w);
    });
    const executor = this.queue !== undefined && mergeable ? this.queue.raw : this.db;
    const rows = await executor.all(parts.join(' UNION ALL '), params);
    const found = new Map(rows.map((row) => [`${num(row['k'])}:${num(row['w'])}`, point(row)]));
    return requests.map((r, i) => {
      const stored = found.get(`${i}:-1`) ?? ZERO;
      const queued = this.pending(hashes[i]!);
      const latest = queued !== undefined && queued.count > stored.count ? queued : stored;
      const totals = r.windowsMs.map((_, j) => {
        const base = found.get(`${i}:${j}`) ?? ZERO;
        return { count: latest.count - base.count, sumCents: clampToSafe(latest.sumCents - base.sumCents) };
      });
      return { latest, totals };
    });
  }

  /** Counts one event per key, in one statement; each `latest` is the key's point read in this transaction. */
  async addMany(
    events: { key: string; amountCents: number; latest: CounterPoint }[],
    nowMs: number,
  ): Promise<void> {
    if (events.length === 0) return;
    const points = events.map(({ key, amountCents, latest }) => {
      assert(
        Number.isSafeInteger(amountCents) && amountCents > 0,
        'counted amounts are positive safe integers',
      );
      return {
        keyHash: this.hashOf(key),
        atMs: Math.max(nowMs, latest.atMs),
        count: latest.count + 1,
        sumCents: latest.sumCents + BigInt(amountCents),
      };
    });
    const rows = points.map((p) => [p.keyHash, p.atMs, p.count, p.sumCents.toString()]);
    if (this.queue !== undefined) {
      points.forEach((p, i) => {
        const before = this.pending(p.keyHash);
        this.pendingOfCommand.set(p.keyHash, { ...p, oldestAtMs: before?.oldestAtMs ?? p.atMs });
        this.queue!.insert(rows[i]!);
      });
      return;
    }
    await this.db.run(
      `INSERT INTO risk_counter_events (counter_key, at_ms, cum_count, cum_sum_cents) VALUES ${rows.map(() => '(?, ?, ?, ?)').join(', ')}`,
      rows.flat(),
    );
  }

  async purge(nowMs: number, limit: number): Promise<number> {
    const cutoff = nowMs - COUNTER_RETENTION_MS;
    return this.db.run(
      `DELETE FROM risk_counter_events WHERE seq IN (
         SELECT e.seq FROM risk_counter_events e
          WHERE e.at_ms < ? AND EXISTS (
            SELECT 1 FROM risk_counter_events n WHERE n.counter_key = e.counter_key AND n.at_ms < ? AND n.seq > e.seq)
          LIMIT ?)`,
      [cutoff, cutoff, limit],
    );
  }
}

function point(r: Row | undefined): CounterPoint {
  if (r === undefined) return ZERO;
  return { atMs: num(r['at_ms']), count: num(r['cum_count']), sumCents: BigInt(String(r['cum_sum_cents'])) };
}
