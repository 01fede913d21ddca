import { assert } from '../domain/assert.ts';
import type { WindowTotals } from '../domain/features.ts';
import {
  attemptCounts,
  COUNTER_WINDOW_MAX_MS,
  type CounterEvent,
  type CounterPoint,
  type CounterRequest,
  counterKeys,
  windowTotals,
  ZERO_POINT,
} from '../domain/risk-keys.ts';
import type { SqlExecutor } from './sql-store.ts';
import type { Counters } from './store.ts';

/**
 * SQLite's risk counters, in the memory of its single writer (docs/decisions/0019-counters-in-memory.md).
 *
 * The counters are the same exact sliding windows as PostgreSQL's table (src/storage/risk-counters.ts): per
 * key, points holding its running totals, and a window's totals are the latest point minus the newest point
 * at or before the window's start. Here the points are arrays in memory (a binary search instead of two
 * index seeks), and nothing is written for them: each payment row already records what its attempt counted
 * (its accounts, amount, time, and its decision's outcome and structuring band), so at start-up the points
 * are rebuilt from the payments of the last 30 days (`replay`), exactly as the payments counted them.
 *
 * One fact is not in a window: whether a source ever paid a destination (`everOnly` keys). That is kept in
 * the `risk_keys_counted` table, one row written by the first payment of each pair, read per batch in one
 * statement.
 *
 * Memory is bounded by the windows: a key keeps its points of its longest window (plus a slack, for a clock
 * that steps back), and the newest point before that as the base; older points are dropped when the key is
 * counted, and a key with nothing left in any window is forgotten when it falls due (`expire`, a queue per
 * window length, a bounded number per commit). See decision 0019 for the figures.
 */

/**
 * A window may start this much before the longest window's start (a clock stepped back) and stay exact: an
 * hour, or the window's own length when shorter (a 1-minute key lives 2 minutes, not an hour: there is about
 * one per payment).
 */
const SLACK_MS_MAX = 3_600_000;
const slackMs = (windowMaxMs: number) => Math.min(SLACK_MS_MAX, windowMaxMs);
/** Due keys looked at per commit: more than a commit creates, so expiry keeps up with any rate. */
const EXPIRE_PER_COMMIT = 4_096;
/** A key's history drops its old points once this many (or half of them) are past every window. */
const COMPACT_POINTS_MIN = 32;
const SAFE_MAX = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * One key's points, oldest first: times and running sums; the count of point i is `droppedCount + 1 + i`
 * (each point counts one event). `dropped*`: the totals of the newest point dropped, the base of a window that
 * starts before the first point kept.
 */
class KeyHistory {
  private atMs: number[] = [];
  /**
   * Running sums as numbers (8 bytes each in a packed array) while they are safe integers, which is nearly
   * always; a key whose sum passes that (attempts of absurd amounts count too) keeps BigInts from then on.
   */
  private sums: number[] = [];
  private bigSums: bigint[] | undefined;
  droppedCount = 0;
  droppedSumCents = 0n;

  constructor(public windowMaxMs: number) {}

  /** Before this time nothing a window can see at `nowMs` is older than it. */
  cutoffMs(nowMs: number): number {
    return nowMs - this.windowMaxMs - slackMs(this.windowMaxMs);
  }

  /** When every point will be past every window: then the key can be forgotten. */
  dueAtMs(): number {
    return (this.size === 0 ? 0 : this.atMs[this.size - 1]!) + this.windowMaxMs + slackMs(this.windowMaxMs);
  }

  get size(): number {
    return this.atMs.length;
  }

  point(i: number): CounterPoint {
    const sumCents = this.bigSums === undefined ? BigInt(this.sums[i]!) : this.bigSums[i]!;
    return { atMs: this.atMs[i]!, count: this.droppedCount + 1 + i, sumCents };
  }

  latest(): CounterPoint {
    if (this.size === 0) return { atMs: 0, count: this.droppedCount, sumCents: this.droppedSumCents };
    return this.point(this.size - 1);
  }

  /** The newest point at or before `boundMs` (the base of a window starting there). */
  baseAt(boundMs: number): CounterPoint {
    // Binary search for the last index with atMs <= boundMs.
    let lo = 0;
    let hi = this.size;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.atMs[mid]! <= boundMs) lo = mid + 1;
      else hi = mid;
    }
    if (lo === 0) return { atMs: 0, count: this.droppedCount, sumCents: this.droppedSumCents };
    return this.point(lo - 1);
  }

  append(p: CounterPoint): void {
    const before = this.latest();
    assert(p.count === before.count + 1, 'a counter point counts one event more than the one before');
    assert(p.atMs >= before.atMs || this.size === 0, 'a key is never counted earlier than its last point');
    assert(p.sumCents > before.sumCents, 'a counted amount is positive');
    if (this.size === 0 && this.bigSums === undefined && p.sumCents <= SAFE_MAX) {
      // Array literals of one element: most keys (a pattern's, a quiet account's) never get a second point,
      // and a first push would reserve room for 17.
      this.atMs = [p.atMs];
      this.sums = [Number(p.sumCents)];
      return;
    }
    this.atMs.push(p.atMs);
    if (this.bigSums === undefined && p.sumCents > SAFE_MAX) {
      this.bigSums = this.sums.map((v) => BigInt(v));
      this.sums = [];
    }
    if (this.bigSums === undefined) this.sums.push(Number(p.sumCents));
    else this.bigSums.push(p.sumCents);
  }

  /** Drops the points no window can need at `nowMs`, keeping the newest one before them as the base. */
  compact(nowMs: number, force: boolean): void {
    const cutoffMs = this.cutoffMs(nowMs);
    // Points at or before the cutoff: all but the newest of them can go.
    let stale = 0;
    while (stale < this.size && this.atMs[stale]! <= cutoffMs) stale++;
    const drop = stale - 1;
    if (drop <= 0 || (!force && drop < COMPACT_POINTS_MIN && drop * 2 < this.size)) return;
    const last = this.point(drop - 1);
    this.droppedCount = last.count;
    this.droppedSumCents = last.sumCents;
    this.atMs.splice(0, drop);
    (this.bigSums ?? this.sums).splice(0, drop);
  }

  /** How many points a window can see at `nowMs`. */
  inWindows(nowMs: number): number {
    const cutoffMs = this.cutoffMs(nowMs);
    let n = 0;
    for (let i = this.size - 1; i >= 0 && this.atMs[i]! > cutoffMs; i--) n++;
    return n;
  }

  /** Nothing left that any window could see: every point is before the longest window's start. */
  expired(nowMs: number): boolean {
    return this.size === 0 || this.atMs[this.size - 1]! <= this.cutoffMs(nowMs);
  }
}

/**
 * Keys in the order they fall due: a FIFO per longest window, each key in one queue once, with the time it
 * was due when queued. A key still counted when its turn comes goes to the back with its new due time, so
 * each queue stays about in order, and expiring costs what expires, not a scan of every key.
 */
class ExpiryQueue {
  private keys: string[] = [];
  private dueAtMs: number[] = [];
  private head = 0;

  push(key: string, dueAtMs: number): void {
    this.keys.push(key);
    this.dueAtMs.push(dueAtMs);
  }

  /** The front key, if it is due at `nowMs`; removed from the queue. */
  shiftDue(nowMs: number): string | undefined {
    if (this.head === this.keys.length || this.dueAtMs[this.head]! > nowMs) return undefined;
    const key = this.keys[this.head]!;
    this.head++;
    // Drop the consumed front now and then: amortised O(1), and the arrays never hold more than twice the keys.
    if (this.head > 1024 && this.head * 2 > this.keys.length) {
      this.keys = this.keys.slice(this.head);
      this.dueAtMs = this.dueAtMs.slice(this.head);
      this.head = 0;
    }
    return key;
  }
}

/** A payment row as the rebuild reads it. */
export interface CountedPayment {
  sourceAccountId: string;
  destinationAccountId: string;
  amountCents: number;
  createdAtMs: number;
  /** The decision's outcome when it was made, and its structuring-band feature (> 0: in the band). */
  outcome: string;
  structuringCount24h: number;
}

/** The committed counters of one SQLite store: owned by its single writer, changed only after a COMMIT. */
export class CounterMemory {
  private readonly keys = new Map<string, KeyHistory>();
  /** By longest window (a handful of lengths): the keys in the order they fall due. */
  private readonly expiry = new Map<number, ExpiryQueue>();
  /**
   * The newest payment counted (its seq). A batch that finds a newer one in the table (another process wrote
   * to the file, or a COMMIT reported an error but was durable) counts those first (`catchUp`).
   */
  seenSeq = 0;
  /** False in a store opened without its counters (the key-management CLI): it must never decide a payment. */
  usable = true;

  /**
   * Keys and points kept, and of those the points a window can see at `nowMs` (the others are the bases kept
   * before them): for the metrics, the bench and the tests.
   */
  stats(nowMs: number): { keys: number; points: number; inWindows: number } {
    let points = 0;
    let inWindows = 0;
    for (const h of this.keys.values()) {
      points += h.size;
      inWindows += h.inWindows(nowMs);
    }
    return { keys: this.keys.size, points, inWindows };
  }

  /** Payments from this time on are replayed at start-up: the longest window, its slack, and a day more. */
  /** Forgets every key (the sandbox's reset emptied the payments); seqs keep growing, so `seenSeq` stays. */
  clear(): void {
    this.keys.clear();
    this.expiry.clear();
  }

  static rebuildFromMs(nowMs: number): number {
    return nowMs - COUNTER_WINDOW_MAX_MS - SLACK_MS_MAX - 24 * 3_600_000;
  }

  /**
   * Counts stored payments again, oldest first (in the order they were written, which is the order they were
   * counted in), as `recordAttempt` counted them: at start-up the last month's, later those another writer
   * added. An event no window can see at `nowMs` on a key with nothing kept is skipped: the windows are
   * differences, so it changes no total, and a month of 1-minute keys is never held at once.
   */
  replay(payments: Iterable<CountedPayment & { seq: number }>, nowMs: number): number {
    let replayed = 0;
    for (const p of payments) {
      assert(p.seq > this.seenSeq, 'payments are counted once, in the order they were written');
      const keys = counterKeys(p.sourceAccountId, p.destinationAccountId, p.amountCents);
      const counted = attemptCounts(keys, {
        inStructuringBand: p.structuringCount24h > 0,
        declined: p.outcome === 'declined',
      });
      for (const { key, windowMaxMs: windowMs, everOnly } of counted) {
        if (everOnly === true) continue;
        const kept = this.keys.get(key);
        if (kept === undefined && p.createdAtMs <= nowMs - windowMs - slackMs(windowMs)) continue;
        const history = kept ?? this.history(key, windowMs, p.createdAtMs);
        const latest = history.latest();
        history.append({
          atMs: Math.max(p.createdAtMs, latest.atMs),
          count: latest.count + 1,
          sumCents: latest.sumCents + BigInt(p.amountCents),
        });
        history.compact(nowMs, false);
      }
      this.seenSeq = p.seq;
      replayed++;
    }
    return replayed;
  }

  latest(key: string): CounterPoint {
    return this.keys.get(key)?.latest() ?? ZERO_POINT;
  }

  baseAt(key: string, boundMs: number): CounterPoint {
    return this.keys.get(key)?.baseAt(boundMs) ?? ZERO_POINT;
  }

  /** A committed batch's points, in the order counted; `seq`: its newest payment's. */
  commit(
    points: Map<string, { windowMaxMs: number; points: CounterPoint[] }>,
    seq: number,
    nowMs: number,
  ): void {
    assert(seq >= this.seenSeq, 'a batch commits after the payments counted before it');
    for (const [key, added] of points) {
      const history = this.history(key, added.windowMaxMs, added.points[0]!.atMs);
      history.windowMaxMs = Math.max(history.windowMaxMs, added.windowMaxMs);
      for (const p of added.points) history.append(p);
      history.compact(nowMs, false);
    }
    this.seenSeq = seq;
    this.expire(nowMs, EXPIRE_PER_COMMIT, () => false);
  }

  /**
   * Forgets up to `limit` keys that fell due and that no window can see any more; a due key still counted is
   * queued again, its old points dropped. `skip`: keys a running batch counted (kept whole until it commits).
   * Returns how many due keys it looked at: fewer than `limit` when none is left.
   */
  expire(nowMs: number, limit: number, skip: (key: string) => boolean): number {
    let seen = 0;
    for (const queue of this.expiry.values()) {
      while (seen < limit) {
        const key = queue.shiftDue(nowMs);
        if (key === undefined) break;
        seen++;
        const history = this.keys.get(key);
        assert(history !== undefined, 'a queued key is kept until it leaves its queue');
        if (history.expired(nowMs) && !skip(key)) {
          this.keys.delete(key);
          continue;
        }
        history.compact(nowMs, true);
        this.queueOf(history.windowMaxMs).push(key, Math.max(history.dueAtMs(), nowMs + 1));
      }
    }
    return seen;
  }

  /** The key's history; a new one is queued to fall due when its first point (at `firstAtMs`) is past every window. */
  private history(key: string, windowMaxMs: number, firstAtMs: number): KeyHistory {
    let history = this.keys.get(key);
    if (history === undefined) {
      history = new KeyHistory(windowMaxMs);
      this.keys.set(key, history);
      this.queueOf(windowMaxMs).push(key, firstAtMs + windowMaxMs + slackMs(windowMaxMs));
    }
    return history;
  }

  private queueOf(windowMaxMs: number): ExpiryQueue {
    let queue = this.expiry.get(windowMaxMs);
    if (queue === undefined) {
      queue = new ExpiryQueue();
      this.expiry.set(windowMaxMs, queue);
    }
    return queue;
  }
}

/** A key's points counted by the batch, not yet committed, and the longest window it was read over. */
interface Added {
  windowMaxMs: number;
  points: CounterPoint[];
}

const EVER_READ_SQL = `SELECT counter_key FROM risk_keys_counted WHERE counter_key IN (SELECT value FROM json_each(?))`;

/**
 * One batch's view of the counters: the committed memory, then the points of the batch's committed commands,
 * then those of the running command. Nothing reaches the memory before the batch's COMMIT (`committed`), so
 * a rolled-back command or batch leaves it as it was.
 */
export class MemoryCounterTx implements Counters {
  private readonly addedOfBatch = new Map<string, Added>();
  private readonly addedOfCommand = new Map<string, Added>();
  /** `everOnly` keys: counted by the batch or the running command, declared, and as read from the table. */
  private readonly everOfBatch = new Set<string>();
  private readonly everOfCommand = new Set<string>();
  private readonly everDeclared = new Set<string>();
  private readonly everStored = new Map<string, boolean>();
  /** The longest window each key was read over in this batch: how long its points must be kept. */
  private readonly windowMaxMs = new Map<string, number>();

  /**
   * `raw` reads `risk_keys_counted` without flushing the batch's queued rows (the batch's own keys are in
   * `everOfBatch`); `insertEver` queues a row for it, written with the batch and undone with its command.
   */
  constructor(
    private readonly memory: CounterMemory,
    private readonly raw: SqlExecutor,
    private readonly insertEver: (key: string) => void,
  ) {}

  declare(requests: CounterRequest[]): void {
    for (const r of requests) if (r.everOnly === true) this.everDeclared.add(r.key);
  }

  /** Nothing is read from a table for windows: no direct write can make this view stale. */
  tableWritten(): void {}

  async windowsMany(
    requests: CounterRequest[],
    nowMs: number,
  ): Promise<{ latest: CounterPoint; totals: WindowTotals[] }[]> {
    assert(this.memory.usable, 'risk counters are read only in a store opened with them (not the CLI)');
    const out: { latest: CounterPoint; totals: WindowTotals[] }[] = [];
    for (const r of requests) {
      if (r.everOnly === true) {
        assert(r.windowsMs.length === 0, 'a key counted only as ever or never has no windows');
        const count = (await this.ever(r.key)) ? 1 : 0;
        out.push({ latest: { atMs: 0, count, sumCents: 0n }, totals: [] });
        continue;
      }
      this.windowMaxMs.set(r.key, Math.max(this.windowMaxMs.get(r.key) ?? 0, ...r.windowsMs));
      const latest = this.latest(r.key);
      out.push({
        latest,
        totals: r.windowsMs.map((w) => windowTotals(latest, this.baseAt(r.key, nowMs - w))),
      });
    }
    return out;
  }

  async addMany(events: CounterEvent[], nowMs: number): Promise<void> {
    for (const { key, amountCents, latest, everOnly } of events) {
      assert(
        Number.isSafeInteger(amountCents) && amountCents > 0,
        'counted amounts are positive safe integers',
      );
      if (everOnly === true) {
        if (latest.count > 0) continue;
        assert(!this.everOfCommand.has(key) && !this.everOfBatch.has(key), 'a key is first counted once');
        this.everOfCommand.add(key);
        this.insertEver(key);
        continue;
      }
      const before = this.latest(key);
      assert(before.count === latest.count, "the caller's latest point is the key's latest point");
      const point = {
        atMs: Math.max(nowMs, before.atMs),
        count: before.count + 1,
        sumCents: before.sumCents + BigInt(amountCents),
      };
      let added = this.addedOfCommand.get(key);
      if (added === undefined) {
        added = { windowMaxMs: this.windowMaxMs.get(key) ?? COUNTER_WINDOW_MAX_MS, points: [] };
        this.addedOfCommand.set(key, added);
      }
      added.points.push(point);
      assert(this.latest(key) === point, 'the point counted is the key latest point now');
    }
  }

  endCommand(committed: boolean): void {
    if (committed) {
      for (const [key, added] of this.addedOfCommand) {
        const batch = this.addedOfBatch.get(key);
        if (batch === undefined) this.addedOfBatch.set(key, added);
        else batch.points.push(...added.points);
      }
      for (const key of this.everOfCommand) this.everOfBatch.add(key);
    }
    this.addedOfCommand.clear();
    this.everOfCommand.clear();
  }

  /**
   * The batch committed: its points join the memory. Called once, by the adapter, after COMMIT; `seq`: the
   * newest payment in the table when the batch had written its rows.
   */
  committed(seq: number, nowMs: number): void {
    assert(this.addedOfCommand.size === 0, 'every command ended before the batch committed');
    this.memory.commit(this.addedOfBatch, seq, nowMs);
    this.addedOfBatch.clear();
  }

  /** The sweep: keys fallen due (each commit expires some too, so this mostly finds nothing left). */
  async purge(nowMs: number, limit: number): Promise<number> {
    return this.memory.expire(
      nowMs,
      limit,
      (key) => this.addedOfBatch.has(key) || this.addedOfCommand.has(key),
    );
  }

  private latest(key: string): CounterPoint {
    const mine = this.addedOfCommand.get(key)?.points ?? this.addedOfBatch.get(key)?.points;
    if (mine !== undefined && mine.length > 0) return mine[mine.length - 1]!;
    return this.memory.latest(key);
  }

  /** The newest point at or before `boundMs`: the batch's points are newer than the memory's, the command's newest. */
  private baseAt(key: string, boundMs: number): CounterPoint {
    for (const added of [this.addedOfCommand.get(key), this.addedOfBatch.get(key)]) {
      if (added === undefined) continue;
      for (let i = added.points.length - 1; i >= 0; i--) {
        if (added.points[i]!.atMs <= boundMs) return added.points[i]!;
      }
    }
    return this.memory.baseAt(key, boundMs);
  }

  /** Whether the key was ever counted: by this batch, or stored. Declared keys are read together, once. */
  private async ever(key: string): Promise<boolean> {
    if (this.everOfCommand.has(key) || this.everOfBatch.has(key)) return true;
    let stored = this.everStored.get(key);
    if (stored === undefined) {
      const keys = [...this.everDeclared].filter((k) => !this.everStored.has(k));
      if (!keys.includes(key)) keys.push(key);
      const rows = await this.raw.all(EVER_READ_SQL, [JSON.stringify(keys)]);
      for (const k of keys) this.everStored.set(k, false);
      for (const row of rows) this.everStored.set(String(row['counter_key']), true);
      this.everDeclared.clear();
      stored = this.everStored.get(key)!;
    }
    return stored;
  }
}
