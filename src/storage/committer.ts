import { performance } from 'node:perf_hooks';
import { assert, InvariantViolation } from '../domain/assert.ts';
import { AppError } from '../domain/errors.ts';
import type { Command, CommandRun, LockHints, Store } from './store.ts';

/**
 * Group commit. Every write is a command submitted here; commands that arrive while a batch is being applied
 * wait in a bounded queue and go together into the next batch: one transaction, one fsync. Under no load a
 * command is applied on the next turn of the event loop, so latency is that of a single commit; under load
 * the batch grows (up to `batchMax`) and the cost of the commit is shared. Each command keeps its own
 * savepoint, so one command's failure never undoes another's, and no result is released before its commit.
 *
 * PostgreSQL may apply several batches at once (`batchesInFlightMax`), each on its own connection: while one
 * batch waits for a round trip or its fsync, another runs. Their locks are taken in one global order (see
 * postgres.ts), so concurrent batches serialise where they touch the same rows and never deadlock. SQLite has
 * one writer: one batch at a time.
 */
export interface CommitterOptions {
  batchMax: number;
  queueMax: number;
  batchesInFlightMax: number;
  /** Called when a batch hits an invariant violation: the process must stop (see main.ts). */
  onFatal: (error: Error) => void;
  /** Told of every committed batch (src/metrics.ts); called once per batch, never per command. */
  observer?: CommitterObserver;
}

export interface CommitterObserver {
  /** A batch committed: how many commands it held, and the seconds its apply and COMMIT took. */
  batchCommitted(commands: number, seconds: number): void;
}

interface Pending {
  command: Command<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

export class Committer {
  private queue: Pending[] = [];
  private flushScheduled = false;
  private batchesInFlight = 0;
  private commandsApplying = 0;
  private stopped = false;
  /** Set by an invariant violation: nothing more is applied, not even the halves of a split batch. */
  private fatal = false;
  batchesApplied = 0;
  /** Batches that failed as a whole and were split to isolate the failing command (see applyBatch). */
  batchesSplit = 0;
  commandsApplied = 0;

  /** Commands waiting for a batch (for operators' metrics, and for tests that line up one batch). */
  get queuedCommands(): number {
    return this.queue.length;
  }

  /** Commands in the batches being applied now (for operators' metrics). */
  get commandsInFlight(): number {
    return this.commandsApplying;
  }

  /** Batches being applied now: at most `batchesInFlightMax` (for operators' metrics). */
  get batchesApplying(): number {
    return this.batchesInFlight;
  }

  constructor(
    private readonly store: Store,
    private readonly options: CommitterOptions,
  ) {
    assert(
      options.batchMax >= 1 && options.queueMax >= options.batchMax && options.batchesInFlightMax >= 1,
      'committer limits are sane',
    );
  }

  submit<R>(run: CommandRun<R>, locks?: LockHints): Promise<R> {
    if (this.stopped)
      return Promise.reject(new AppError('SERVICE_UNAVAILABLE', 'the service is shutting down'));
    if (this.queue.length >= this.options.queueMax) {
      return Promise.reject(new AppError('SERVICE_UNAVAILABLE', 'the write queue is full; retry shortly'));
    }
    return new Promise<R>((resolve, reject) => {
      const command: Command<unknown> = locks === undefined ? { run } : { run, locks };
      this.queue.push({ command, resolve: resolve as (v: unknown) => void, reject });
      this.scheduleFlush();
    });
  }

  /** Stops taking commands and waits for the queued ones to commit. */
  async drain(): Promise<void> {
    this.stopped = true;
    while (this.batchesInFlight > 0 || this.queue.length > 0 || this.flushScheduled) {
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.batchesInFlight >= this.options.batchesInFlightMax) return;
    this.flushScheduled = true;
    // setImmediate runs after the I/O callbacks of this loop turn: requests that arrived together batch together.
    setImmediate(() => this.flush());
  }

  /** Starts batches while there is work and a free slot; each finished batch looks for more. */
  private flush(): void {
    this.flushScheduled = false;
    while (this.queue.length > 0 && this.batchesInFlight < this.options.batchesInFlightMax) {
      const batch = this.queue.splice(0, this.nextBatchLength());
      this.batchesInFlight += 1;
      this.commandsApplying += batch.length;
      void this.applyBatch(batch).finally(() => {
        this.batchesInFlight -= 1;
        this.commandsApplying -= batch.length;
        assert(this.batchesInFlight >= 0, 'batches in flight never go negative');
        if (this.queue.length > 0) this.scheduleFlush();
      });
    }
  }

  /** Up to batchMax commands, but a command that must run alone (LockHints.alone) gets a batch of its own. */
  private nextBatchLength(): number {
    const end = Math.min(this.queue.length, this.options.batchMax);
    for (let i = 0; i < end; i++) {
      if (this.queue[i]!.command.locks?.alone === true) return i === 0 ? 1 : i;
    }
    return end;
  }

  /**
   * Applies a batch and releases each command's outcome. A command that throws is undone alone (its
   * savepoint), but a row that fails only when the batch's rows are written (a constraint, a value the backend
   * cannot store) fails the whole transaction. Then the batch is split in halves and each half applied again,
   * down to the one failing command: one client's bad row never fails another client's command. That costs
   * about 2·log2(n) extra transactions for one bad command, and nothing when none fails.
   */
  private async applyBatch(batch: Pending[]): Promise<void> {
    assert(batch.length >= 1, 'a batch has at least one command');
    if (this.fatal) {
      for (const pending of batch)
        pending.reject(new AppError('SERVICE_UNAVAILABLE', 'the service is stopping'));
      return;
    }
    let outcomes: Awaited<ReturnType<Store['applyBatch']>>;
    const startedMs = performance.now();
    try {
      outcomes = await this.store.applyBatch(batch.map((p) => p.command));
    } catch (error) {
      if (error instanceof InvariantViolation) {
        for (const pending of batch) pending.reject(error);
        this.fatal = true;
        this.stopped = true;
        this.options.onFatal(error);
        return;
      }
      // Split only when the database refused a row: then nothing committed and the batch without that
      // command will succeed. Anything else (a lost connection, a COMMIT whose outcome is unknown, a full
      // disk) is answered as it is: re-running could execute a command twice, or fail 2n-1 times over.
      if (batch.length === 1 || !refusedARow(error)) {
        for (const pending of batch) pending.reject(error);
        return;
      }
      this.batchesSplit += 1;
      const middle = Math.ceil(batch.length / 2);
      await this.applyBatch(batch.slice(0, middle));
      await this.applyBatch(batch.slice(middle));
      return;
    }
    assert(outcomes.length === batch.length, 'one outcome per command');
    this.batchesApplied += 1;
    this.commandsApplied += batch.length;
    batch.forEach((pending, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) pending.resolve(outcome.value);
      else pending.reject(outcome.error);
    });
    // After the outcomes are released: an observer's failure must never hold up a committed write.
    try {
      this.options.observer?.batchCommitted(batch.length, (performance.now() - startedMs) / 1000);
    } catch {
      // Metrics only: a lost sample.
    }
  }
}

/**
 * A value or constraint the database refused while the batch's rows were written (PostgreSQL SQLSTATE class
 * 22, data exception, e.g. U+0000 in text; class 23, integrity constraint violation; SQLite's constraint,
 * type and size errors). The transaction rolled back, so re-running the other commands is safe.
 */
export function refusedARow(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return false;
  if (/^2[23][0-9A-Z]{3}$/.test(code)) return true;
  return code.startsWith('SQLITE_CONSTRAINT') || code === 'SQLITE_MISMATCH' || code === 'SQLITE_TOOBIG';
}
