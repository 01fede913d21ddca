import { createHash } from 'node:crypto';
import { assert } from '../domain/assert.ts';
import type { WindowTotals } from '../domain/features.ts';
import {
  type CounterEvent,
  type CounterPoint,
  type CounterRequest,
  windowTotals,
  ZERO_POINT,
} from '../domain/risk-keys.ts';
import type { Row, SqlExecutor } from './sql-store.ts';
import type { Counters } from './store.ts';

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

/** The dialect of the batch's one counter statement: keys bound as arrays (PostgreSQL) or as JSON text (SQLite). */
export type CounterReadDialect = 'arrays' | 'json';

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

/**
 * The batch's counters, read in one statement when its first payment reads its own (see `declare`). A command
 * runs at its own `nowMs`, a little later than the read, so each window's start moves on a little: with the
 * base (the last point at or before the read's window start) come up to `AFTER_POINTS_MAX` points after it,
 * within `AFTER_HORIZON_MS`. Where the window starts, for a later command, is then known exactly, as long as
 * it lies before the first point not read (else that command reads its counters itself, as before).
 */
const AFTER_POINTS_MAX = 4;
const AFTER_HORIZON_MS = 1_000;
/** A bound above every stored time: the window of a key's latest point. */
const NO_BOUND = Number.MAX_SAFE_INTEGER;

/** One window of a key as the batch read it, at the first reader's window start (`lo`). */
interface ReadWindow {
  /** The newest point at or before `lo` (none: no point), and the first points after it, oldest first. */
  base: CounterPoint | undefined;
  after: CounterPoint[];
  /** Every stored point at or before this time is the base or in `after`. */
  knownThroughMs: number;
}

interface ReadKey {
  latest: CounterPoint;
  windows: Map<number, ReadWindow>;
}

/**
 * One statement for all the batch's counters, one row per (key, bound): the newest point at or before `lo`
 * (`lo` above every time gives the latest point), and, when `hi > lo`, the first points in (lo, hi] as JSON.
 * Each part is an index seek on (counter_key, at_ms, seq), as in the per-payment read.
 */
const BATCH_READ_SQL: Record<CounterReadDialect, string> = {
  arrays: `SELECT r.i - 1 AS i, b.at_ms, b.cum_count, b.cum_sum_cents, a.after
     FROM unnest(CAST(? AS BIGINT[]), CAST(? AS BIGINT[]), CAST(? AS BIGINT[])) WITH ORDINALITY AS r(k, lo, hi, i)
     LEFT JOIN LATERAL (SELECT at_ms, cum_count, cum_sum_cents FROM risk_counter_events
                         WHERE counter_key = r.k AND at_ms <= r.lo ORDER BY at_ms DESC, seq DESC LIMIT 1) b ON TRUE
     LEFT JOIN LATERAL (SELECT json_agg(json_build_array(x.at_ms, x.cum_count, x.cum_sum_cents) ORDER BY x.at_ms, x.seq) AS after
                          FROM (SELECT at_ms, cum_count, cum_sum_cents, seq FROM risk_counter_events
                                 WHERE r.hi > r.lo AND counter_key = r.k AND at_ms > r.lo AND at_ms <= r.hi
                                 ORDER BY at_ms, seq LIMIT ${AFTER_POINTS_MAX}) x) a ON TRUE`,
  json: `WITH r AS (SELECT key AS i, value ->> 0 AS k, value ->> 1 AS lo, value ->> 2 AS hi FROM json_each(?))
     SELECT r.i, b.at_ms, b.cum_count, b.cum_sum_cents,
            CASE WHEN r.hi > r.lo THEN (
              SELECT json_group_array(json_array(x.at_ms, x.cum_count, x.cum_sum_cents) ORDER BY x.at_ms, x.seq)
                FROM (SELECT at_ms, cum_count, cum_sum_cents, seq FROM risk_counter_events
                       WHERE counter_key = r.k AND at_ms > r.lo AND at_ms <= r.hi
                       ORDER BY at_ms, seq LIMIT ${AFTER_POINTS_MAX}) x) END AS after
       FROM r LEFT JOIN risk_counter_events b ON b.seq = (
              SELECT seq FROM risk_counter_events WHERE counter_key = r.k AND at_ms <= r.lo
               ORDER BY at_ms DESC, seq DESC LIMIT 1)`,
};

export class RiskCounters implements Counters {
  private readonly pendingOfBatch = new Map<string, Pending>();
  private readonly pendingOfCommand = new Map<string, Pending>();
  private readonly hashes = new Map<string, string>();
  /** Keys the batch's commands declared (by hash, with their windows), not read yet. */
  private readonly declared = new Map<string, Set<number>>();
  /** What the batch read in one statement, by key hash. */
  private readonly read = new Map<string, ReadKey>();
  /** False once a direct write changed the table (a purge): from then on each command reads for itself. */
  private batchReadUsable = true;

  /**
   * Without `queue`, points are inserted at once and every read goes to the table. With it, the keys declared
   * (`declare`) are read for the whole batch in one statement, in `dialect`.
   */
  constructor(
    private readonly db: SqlExecutor,
    private readonly queue?: CounterQueue,
    private readonly dialect: CounterReadDialect = 'json',
  ) {}

  /**
   * The counters the batch's commands will read (declared with their locks: `LockHints.counters`). They are
   * read together, in one statement, when the first command reads its counters: on PostgreSQL one round trip
   * per batch instead of one per payment. Every key is scoped to an account the batch has locked, so no
   * other transaction writes them until COMMIT, and the batch's own points are merged in memory as before.
   */
  declare(requests: CounterRequest[]): void {
    if (this.queue === undefined) return;
    for (const r of requests) {
      const hash = this.hashOf(r.key);
      const windows = this.declared.get(hash) ?? new Set<number>();
      for (const w of r.windowsMs) windows.add(w);
      this.declared.set(hash, windows);
    }
  }

  /** A direct write to the table (the purge): what the batch read may no longer be what is stored. */
  tableWritten(): void {
    this.batchReadUsable = false;
    this.read.clear();
  }

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
   * each key's latest point. Served from the batch's one read when it holds them (see `declare`); otherwise
   * one statement for this command, a UNION ALL of index seeks.
   *
   * The batch's earlier payments are counted in memory: their points are queued (not written), and merged
   * here: a key's latest point is the newer of the stored and the queued one, and a window's base (the point
   * at or before its start) is unaffected while every queued point of the key is younger than the window's
   * start. When one is not, the read flushes the queue and reads the table, as it always did.
   */
  async windowsMany(
    requests: CounterRequest[],
    nowMs: number,
  ): Promise<{ latest: CounterPoint; totals: WindowTotals[] }[]> {
    const hashes = requests.map((r) => this.hashOf(r.key));
    const mergeable = requests.every((r, i) => {
      const p = this.pending(hashes[i]!);
      return p === undefined || r.windowsMs.every((w) => p.oldestAtMs > nowMs - w);
    });
    if (this.queue !== undefined && mergeable) {
      await this.readDeclared(nowMs);
      const served = this.fromBatchRead(requests, hashes, nowMs);
      if (served !== undefined) return served;
    }
    const parts: string[] = [];
    const params: unknown[] = [];
    requests.forEach((r, i) => {
      const key = hashes[i]!;
      parts.push(`SELECT ${i} AS k, -1 AS w, at_ms, cum_count, cum_sum_cents FROM (${LATEST}) AS l${i}`);
      params.push(key);
      r.windowsMs.forEach((windowMs, j) => {
        parts.push(
          `SELECT ${i} AS k, ${j} AS w, at_ms, cum_count, cum_sum_cents FROM (${AT_OR_BEFORE}) AS b${i}_${j}`,
        );
        params.push(key, nowMs - windowMs);
      });
    });
    const executor = this.queue !== undefined && mergeable ? this.queue.raw : this.db;
    const rows = await executor.all(parts.join(' UNION ALL '), params);
    const found = new Map(rows.map((row) => [`${num(row['k'])}:${num(row['w'])}`, point(row)]));
    return requests.map((r, i) => {
      const stored = found.get(`${i}:-1`) ?? ZERO_POINT;
      const latest = this.newer(stored, hashes[i]!);
      const totals = r.windowsMs.map((_, j) => windowTotals(latest, found.get(`${i}:${j}`) ?? ZERO_POINT));
      return { latest, totals };
    });
  }

  /** The key's latest point: the stored one, or the batch's queued one when it is newer (a larger count). */
  private newer(stored: CounterPoint, keyHash: string): CounterPoint {
    const queued = this.pending(keyHash);
    return queued !== undefined && queued.count > stored.count ? queued : stored;
  }

  /**
   * Reads every declared key not read yet, in one statement, without flushing the queue (like a mergeable
   * read: the batch's queued points are merged in memory). Not while the running command has points of its
   * own queued: if they were written and it then failed, the read would hold rows its rollback removed.
   */
  private async readDeclared(nowMs: number): Promise<void> {
    if (this.declared.size === 0 || !this.batchReadUsable || this.pendingOfCommand.size > 0) return;
    const entries: { hash: string; windowMs: number | null; lo: number; hi: number }[] = [];
    for (const [hash, windows] of this.declared) {
      entries.push({ hash, windowMs: null, lo: NO_BOUND, hi: NO_BOUND });
      for (const w of windows)
        entries.push({ hash, windowMs: w, lo: nowMs - w, hi: nowMs - w + AFTER_HORIZON_MS });
    }
    this.declared.clear();
    const params =
      this.dialect === 'arrays'
        ? [entries.map((e) => e.hash), entries.map((e) => e.lo), entries.map((e) => e.hi)]
        : [`[${entries.map((e) => `[${e.hash},${e.lo},${e.hi}]`).join(',')}]`];
    const rows = await this.queue!.raw.all(BATCH_READ_SQL[this.dialect], params);
    assert(rows.length === entries.length, 'the batch read answers one row per key and bound');
    for (const row of rows) {
      const e = entries[num(row['i'])]!;
      const base = row['at_ms'] === null || row['at_ms'] === undefined ? undefined : point(row);
      let key = this.read.get(e.hash);
      if (key === undefined) {
        key = { latest: ZERO_POINT, windows: new Map() };
        this.read.set(e.hash, key);
      }
      if (e.windowMs === null) {
        key.latest = base ?? ZERO_POINT;
        continue;
      }
      const raw = row['after'];
      const list = (
        raw === null || raw === undefined ? [] : typeof raw === 'string' ? JSON.parse(raw) : raw
      ) as [unknown, unknown, unknown][];
      const after = list.map(([atMs, count, sum]) => ({
        atMs: num(atMs),
        count: num(count),
        sumCents: BigInt(String(sum)),
      }));
      // Fewer points than asked for: all of (lo, hi] came back. As many: only those before the last one's time.
      const knownThroughMs = after.length < AFTER_POINTS_MAX ? e.hi : after[after.length - 1]!.atMs - 1;
      key.windows.set(e.windowMs, { base, after, knownThroughMs });
    }
  }

  /** The command's counters from the batch's read, or undefined when it does not hold them all exactly. */
  private fromBatchRead(
    requests: CounterRequest[],
    hashes: string[],
    nowMs: number,
  ): { latest: CounterPoint; totals: WindowTotals[] }[] | undefined {
    const out: { latest: CounterPoint; totals: WindowTotals[] }[] = [];
    for (let i = 0; i < requests.length; i++) {
      const key = this.read.get(hashes[i]!);
      if (key === undefined) return undefined;
      const latest = this.newer(key.latest, hashes[i]!);
      const totals: WindowTotals[] = [];
      for (const windowMs of requests[i]!.windowsMs) {
        const window = key.windows.get(windowMs);
        const base = window === undefined ? null : baseAt(window, nowMs - windowMs);
        if (base === null) return undefined;
        totals.push(windowTotals(latest, base));
      }
      out.push({ latest, totals });
    }
    return out;
  }

  /** Counts one event per key, in one statement; each `latest` is the key's point read in this transaction. */
  async addMany(events: CounterEvent[], nowMs: number): Promise<void> {
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

/**
 * The last stored point at or before `bound` (ZERO_POINT when none), from a window the batch read at another
 * bound; null when the read cannot tell (a point it did not fetch may lie at or before `bound`).
 */
function baseAt(window: ReadWindow, bound: number): CounterPoint | null {
  // The read's base is the newest point at or before its own bound: a bound before it says nothing more.
  if (window.base !== undefined && window.base.atMs > bound) return null;
  if (bound > window.knownThroughMs) return null;
  let base = window.base ?? ZERO_POINT;
  for (const p of window.after) if (p.atMs <= bound) base = p;
  return base;
}

function point(r: Row | undefined): CounterPoint {
  if (r === undefined) return ZERO_POINT;
  return { atMs: num(r['at_ms']), count: num(r['cum_count']), sumCents: BigInt(String(r['cum_sum_cents'])) };
}
