import { mkdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { assert, InvariantViolation } from '../domain/assert.ts';
import { type CountedPayment, CounterMemory, MemoryCounterTx } from './counter-memory.ts';
import { MIGRATIONS, migrationSql } from './migrations.ts';
import { eventLoopSlices, type Row, type SqlExecutor, SqlReads, SqlTx } from './sql-store.ts';
import type { Command, CommandOutcome, Store } from './store.ts';
import { batchRowsFailed } from './write-behind.ts';

/**
 * The embedded adapter. One writer connection (SQLite allows one writer at a time anyway) and, for files, one
 * reader connection: WAL lets it read the last committed state while the writer is inside a batch, so a GET
 * never sees a write that might still roll back.
 *
 * Durability: WAL with synchronous=FULL fsyncs the log on every commit, so an acknowledged write survives
 * kill -9 and power loss. Batches (group commit) share that one fsync. Copying the log into the database file
 * (the checkpoint) is not part of a commit here: a worker thread does it (WalCheckpointer, below, and
 * docs/decisions/0017-sqlite-write-path.md).
 */
export interface SqliteOptions {
  path: string | ':memory:';
  clock: () => number;
  /** The WAL's limits (WAL_LIMITS by default). Tests shrink them; they can also be changed on an open store. */
  wal?: Partial<WalLimits>;
  /**
   * False: the risk counters are not rebuilt (a month of payments read at start-up), and the store cannot
   * decide payments. For the key-management CLI, which never does.
   */
  riskCounters?: boolean;
}

/** The SQLite adapter, with its WAL checkpointer (undefined for an in-memory database, which has no WAL). */
export interface SqliteStore extends Store {
  readonly wal: WalCheckpointer | undefined;
  /** The risk counters in the writer's memory, rebuilt from the payments when the store opened. */
  readonly counters: CounterMemory;
}

type Statement = Database.Statement<unknown[], Row>;

function executor(db: Database.Database): SqlExecutor {
  const cache = new Map<string, Statement>();
  const prepare = (sql: string): Statement => {
    let stmt = cache.get(sql);
    if (stmt === undefined) {
      stmt = db.prepare<unknown[], Row>(sql);
      cache.set(sql, stmt);
    }
    return stmt;
  };
  return {
    all: async (sql, params = []) => prepare(sql).all(...params),
    get: async (sql, params = []) => prepare(sql).get(...params),
    run: async (sql, params = []) => prepare(sql).run(...params).changes,
  };
}

const BUSY_TIMEOUT_MS = 5000;
/**
 * The writer waits for the write lock (held by another process, or another store on the file in this one)
 * this long synchronously, then lets the event loop run between attempts (`withWriteLock`): a batch now
 * yields between its slices while it holds the lock, and a synchronous wait here would then never end.
 */
const WRITER_BUSY_WAIT_MS = 10;
/** How long a batch runs commands before it lets the event loop run (issue 15: no block above 20 ms). */
const BATCH_SLICE_MS = 8;

function openConnection(path: string, readonly: boolean): Database.Database {
  const db = new Database(path, { readonly, fileMustExist: readonly });
  if (!readonly) db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
  // 64 MiB of page cache per connection (the default is 2 MiB): the hot indexes (accounts, idempotency keys,
  // risk counters) stay in memory as history grows, so a payment's cost stays flat.
  db.pragma('cache_size = -65536');
  return db;
}

/** The versions recorded, read without a lock (none when the table is not there yet). */
function migrationsDone(db: Database.Database): Set<number> {
  const table = db
    .prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'")
    .get();
  if (table === undefined) return new Set();
  return new Set(
    db
      .prepare<[], { version: number }>('SELECT version FROM schema_migrations')
      .all()
      .map((r) => r.version),
  );
}

export function migrateSqlite(db: Database.Database, targetVersion = Number.POSITIVE_INFINITY): number[] {
  // Up to date (every start but the first after an upgrade): no write lock is taken, so opening a store never
  // waits for another one's batch (which may be between two slices, in this very process).
  const before = migrationsDone(db);
  const known = MIGRATIONS[MIGRATIONS.length - 1]!.version;
  const pending = MIGRATIONS.filter((m) => m.version <= targetVersion && !before.has(m.version));
  if (pending.length === 0 && Math.max(0, ...before) <= known) return [];
  const applied: number[] = [];
  // A migration may rebuild a table (20: accounts), which children reference: foreign keys are off while the
  // migrations run (the pragma is a no-op inside a transaction, so it is set before BEGIN) and checked, all of
  // them, before COMMIT.
  db.pragma('foreign_keys = OFF');
  db.exec('BEGIN IMMEDIATE');
  try {
    db.exec(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)',
    );
    const done = new Set(
      db
        .prepare<[], { version: number }>('SELECT version FROM schema_migrations')
        .all()
        .map((r) => r.version),
    );
    const newest = Math.max(0, ...done);
    if (newest > known)
      throw new Error(`database schema version ${newest} is newer than this build (${known})`);
    for (const migration of MIGRATIONS) {
      if (done.has(migration.version) || migration.version > targetVersion) continue;
      const sql = migrationSql(migration, 'sqlite');
      if (sql.trim() !== '') db.exec(sql);
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?, ?, ?)').run(
        migration.version,
        migration.name,
        Date.now(),
      );
      applied.push(migration.version);
    }
    const orphans = db.pragma('foreign_key_check') as unknown[];
    if (orphans.length > 0) throw new Error(`migrations left ${orphans.length} rows without their parent`);
    db.exec('COMMIT');
  } catch (error) {
    db.exec('ROLLBACK');
    throw error;
  } finally {
    db.pragma('foreign_keys = ON');
  }
  return applied;
}

export function openSqliteStore(options: SqliteOptions): SqliteStore {
  if (options.path !== ':memory:') mkdirSync(dirname(options.path), { recursive: true });
  const writer = openConnection(options.path, false);
  try {
    migrateSqlite(writer);
  } catch (error) {
    writer.close();
    throw error;
  }
  // Statement journals (the undo record of a statement or savepoint inside the batch's transaction, e.g. a
  // 200-row INSERT) stay in memory instead of spilling to a temp file past 64 KiB. Each is bounded by what one
  // statement or command changes (see 0017). Set after the migrations, whose CREATE INDEX may sort whole
  // tables: that still spills to disk. The reader keeps the default, for the same reason (large sorts).
  writer.pragma('temp_store = MEMORY');
  writer.pragma(`busy_timeout = ${WRITER_BUSY_WAIT_MS}`);
  const counters = new CounterMemory();
  const payments = countedPayments(writer);
  if (options.riskCounters === false) counters.usable = false;
  else rebuildCounters(payments, counters, options.clock());
  const wal =
    options.path === ':memory:'
      ? undefined
      : new WalCheckpointer(writer, options.path, { ...WAL_LIMITS, ...options.wal });
  const reader = options.path === ':memory:' ? writer : openConnection(options.path, true);
  const writeExec = executor(writer);
  const savepoint = {
    savepoints: true,
    control: async (sql: string) => {
      writer.exec(sql);
    },
  };
  let inBatch = false;
  // With one connection (`:memory:`), reads run on the writer: a read between two slices would see the open
  // transaction's rows, so there a batch never yields.
  const mayYield = reader !== writer;

  async function applyBatch(commands: Command<unknown>[]): Promise<CommandOutcome<unknown>[]> {
    assert(!inBatch, 'SQLite batches never overlap: the committer runs one at a time');
    inBatch = true;
    const outcomes: CommandOutcome<unknown>[] = [];
    let batchCounters: MemoryCounterTx | undefined;
    let seqWritten = 0;
    let erased = false;
    // better-sqlite3 is synchronous: without this, a batch of a hundred payments would hold the event loop for
    // its whole length (tens of ms), and every other request would wait behind it. Between commands, and
    // between the parts of a long command (Tx.pace: a payment batch's payments), the batch lets the loop run
    // once its slice is used up. Nothing else uses the writer meanwhile (batches never overlap; reads go to
    // the reader connection, which sees the last commit), and a command's state is its own, in memory.
    const slices = eventLoopSlices(BATCH_SLICE_MS, mayYield);
    try {
      await wal?.beforeBatch();
      await withWriteLock(() => writer.exec('BEGIN IMMEDIATE'));
      try {
        catchUpCounters(payments, counters, options.clock());
        const tx = new SqlTx(
          writeExec,
          {
            name: 'sqlite',
            forUpdate: '',
            forUpdateSkipLocked: '',
            counters: (raw, insert) => {
              batchCounters = new MemoryCounterTx(counters, raw, insert);
              return batchCounters;
            },
            pause: () => slices.pause(),
          },
          savepoint,
        );
        await tx.prefetch(commands.flatMap((c) => c.locks ?? []));
        slices.restart();
        for (const command of commands) {
          await slices.pause();
          tx.nowMs = options.clock();
          let value: unknown;
          try {
            value = await command.run(tx);
          } catch (error) {
            await tx.endCommand(false);
            // A row of an earlier command that failed to be written fails the whole attempt, which the
            // committer splits (write-behind.ts batchRowsFailed), not the command that happened to flush it.
            if (error instanceof InvariantViolation || batchRowsFailed(error)) throw error;
            outcomes.push({ ok: false, error });
            continue;
          }
          await tx.endCommand(true);
          outcomes.push({ ok: true, value });
        }
        tx.nowMs = options.clock();
        // The batch's rows are written in one go, then COMMIT (its fsync): a slice of their own.
        await slices.pause(1 / 2);
        await tx.finish();
        seqWritten = payments.newestSeq();
        erased = tx.erased;
        writer.exec('COMMIT');
      } catch (error) {
        if (writer.inTransaction) writer.exec('ROLLBACK');
        throw error;
      }
    } finally {
      inBatch = false;
    }
    // After the commit, outside the try: nothing here may turn a committed batch into a failed one. The
    // batch's counter points join the memory only now that they are durable.
    assert(batchCounters !== undefined, 'the batch ran with its counters');
    // The sandbox's reset (a batch of its own) emptied the store: what its payments counted goes with them.
    // Seqs keep growing (AUTOINCREMENT), so the memory's newest seq stays a correct starting point.
    if (erased) counters.clear();
    else batchCounters.committed(seqWritten, options.clock());
    wal?.afterCommit();
    return outcomes;
  }

  return {
    dialect: 'sqlite',
    wal,
    counters,
    reads: new SqlReads(executor(reader)),
    applyBatch,
    async getOrCreateSetting(key, create) {
      // On the writer, outside the committer: never while a batch (which may be between two slices) is open.
      assert(!inBatch, 'settings are written between batches');
      const value = create();
      // Counted as a batch while it waits for the lock: no batch may begin meanwhile and take it in.
      inBatch = true;
      try {
        await withWriteLock(() =>
          writer
            .prepare('INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING')
            .run(key, value),
        );
      } finally {
        inBatch = false;
      }
      wal?.afterCommit();
      return (writer.prepare('SELECT value FROM settings WHERE key = ?').get(key) as { value: string }).value;
    },
    async ping() {
      reader.prepare('SELECT 1').get();
    },
    async close() {
      // A batch may be between two slices: the app drains the committer before it closes the store.
      assert(!inBatch, 'the store closes between batches');
      // The worker's connection closes first: the writer's close is then the last one, and it checkpoints
      // what is left and removes the WAL. Without a worker this all happens before close() returns.
      const stopping = wal?.stop();
      if (stopping !== undefined) await stopping;
      if (reader !== writer) reader.close();
      writer.close();
    },
  };
}

/**
 * Runs `take` (a statement that takes the write lock) until it gets the lock or BUSY_TIMEOUT_MS passed,
 * waiting between attempts without holding the event loop.
 */
async function withWriteLock<T>(take: () => T): Promise<T> {
  const deadlineMs = performance.now() + BUSY_TIMEOUT_MS;
  for (;;) {
    try {
      return take();
    } catch (error) {
      // SQLITE_BUSY and its extended codes (e.g. SQLITE_BUSY_RECOVERY: another process recovering the WAL).
      const code = (error as { code?: unknown }).code;
      const busy = typeof code === 'string' && code.startsWith('SQLITE_BUSY');
      if (!busy || performance.now() > deadlineMs) throw error;
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }
}

/** How the counters read the payments table (src/storage/counter-memory.ts): statements prepared once per store. */
interface CountedPayments {
  /** The newest payment's seq ever written (0: none), even when the sandbox's reset has deleted it since. */
  newestSeq(): number;
  /** The first payment stamped at or after `ms`, if any. */
  firstSeqSince(ms: number): number | undefined;
  /** The payments after `seq`, in the order they were written (the order they were counted in). */
  after(seq: number): Iterable<CountedPayment & { seq: number }>;
}

function countedPayments(db: Database.Database): CountedPayments {
  // AUTOINCREMENT's record of the highest seq given out: max(seq) while no payment is ever deleted, and still
  // the high-water mark after a reset of the sandbox deleted them all.
  const newest = db.prepare<[], { seq: number }>(
    "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'payments'), 0) AS seq",
  );
  const since = db.prepare<[number], { seq: number | null }>(
    'SELECT min(seq) AS seq FROM payments WHERE created_at_ms >= ?',
  );
  const after = db.prepare<[number], CountedPayment & { seq: number }>(
    `SELECT seq, source_account_id AS sourceAccountId, destination_account_id AS destinationAccountId,
            amount_cents AS amountCents, created_at_ms AS createdAtMs,
            json_extract(decision, '$.outcome') AS outcome,
            coalesce(json_extract(decision, '$.features.structuringCount24h'), 0) AS structuringCount24h
       FROM payments WHERE seq > ? ORDER BY seq`,
  );
  return {
    newestSeq: () => newest.get()!.seq,
    firstSeqSince: (ms) => since.get(ms)?.seq ?? undefined,
    after: (seq) => after.iterate(seq),
  };
}

/**
 * Counts the stored payments of the last 30 days again, into an empty `memory`: every payment from the first
 * one stamped at or after the rebuild's start (payments_created, migration 16), in the order they were
 * written, which is the order they were counted in.
 */
function rebuildCounters(payments: CountedPayments, memory: CounterMemory, nowMs: number): void {
  const first = payments.firstSeqSince(CounterMemory.rebuildFromMs(nowMs));
  if (first !== undefined) memory.replay(payments.after(first - 1), nowMs);
  memory.seenSeq = payments.newestSeq();
}

/**
 * At the start of a batch (the write lock held): payments the memory has not counted, written by another
 * process on the same file or by a batch whose COMMIT reported an error yet was durable, are counted first.
 * One index probe when there are none.
 */
function catchUpCounters(payments: CountedPayments, memory: CounterMemory, nowMs: number): void {
  if (!memory.usable || payments.newestSeq() === memory.seenSeq) return;
  memory.replay(payments.after(memory.seenSeq), nowMs);
}

/** How large the WAL may grow (see WalCheckpointer). */
export interface WalLimits {
  /** The worker starts when the WAL file first reaches this size: a database that writes little never needs it. */
  startBytes: number;
  /** From this many bytes of WAL on, a batch lets the worker catch up before it begins, to start the WAL over. */
  restartBytes: number;
  /** The hard cap: a WAL file found past it after a commit is checkpointed (TRUNCATE) by the writer itself. */
  maxBytes: number;
  /** The longest a batch waits for the worker; then it begins anyway (the WAL grows by one more batch). */
  waitMaxMs: number;
}

/**
 * Measured in 0017: a restart every 64 MiB makes a batch wait for the worker about once per 20 batches
 * (16 MiB: four times as often, 5 % slower; 32 MiB within noise of 64). In steady state the WAL file is about
 * 70 MiB; a crash replays at most that much (the cap: 256 MiB) at the next start.
 */
export const WAL_LIMITS: WalLimits = {
  startBytes: 1 << 20,
  restartBytes: 64 << 20,
  maxBytes: 256 << 20,
  waitMaxMs: 1_000,
};

/** What the checkpointing did: for tests, the bench, and operators who ask. */
export interface WalStats {
  /** Checkpoint passes run by the worker thread, and the milliseconds they took there (not on the event loop). */
  workerPasses: number;
  workerMsTotal: number;
  workerMsMax: number;
  /** Frames the worker copied into the database file. */
  framesCopied: number;
  /** Times the WAL was started over from its beginning (the worker saw its frame count go down). */
  restarts: number;
  /** Times a batch waited for the worker before it began (a promise: the event loop went on), and how long. */
  waits: number;
  waitMsTotal: number;
  waitMsMax: number;
  /** TRUNCATE checkpoints the writer ran on the event loop because the WAL was past maxBytes; busy: those that found a reader and gave up. */
  forced: number;
  forcedBusy: number;
  forcedMsMax: number;
  /** Worker threads that failed (each replaced at a later commit). */
  workerErrors: number;
  /** The largest WAL file seen after a commit, in bytes. */
  walBytesMax: number;
}

interface PassReport {
  /** The last commit the worker had been told of when the pass began: the pass covered it. */
  gen: number;
  busy: number;
  /** Frames in the WAL, and frames copied to the database file, when the pass ended. */
  log: number;
  checkpointed: number;
  ms: number;
}

/**
 * The worker's code, plain CommonJS (a worker thread does not inherit the TypeScript loader). Its connection
 * is synchronous=FULL like the writer's: a checkpoint fsyncs the database file before it records frames as
 * copied, and only then may the WAL be overwritten. A PASSIVE checkpoint never waits for a lock and never
 * holds one the writer needs to commit.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { performance } = require('node:perf_hooks');
const Database = require(workerData.driver);
const db = new Database(workerData.path, { fileMustExist: true });
db.pragma('synchronous = FULL');
db.pragma('busy_timeout = 0');
if (db.pragma('journal_mode', { simple: true }) !== 'wal') throw new Error('the database is not in WAL mode');
let told = 0;
let scheduled = false;
function pass() {
  scheduled = false;
  const gen = told;
  const started = performance.now();
  const [r] = db.pragma('wal_checkpoint(PASSIVE)');
  parentPort.postMessage({ gen, busy: r.busy, log: r.log, checkpointed: r.checkpointed, ms: performance.now() - started });
}
parentPort.on('message', (m) => {
  if (m === 'stop') {
    db.close();
    parentPort.close();
    return;
  }
  told = Math.max(told, m);
  if (!scheduled) {
    scheduled = true;
    setImmediate(pass);
  }
});
`;

/**
 * WAL checkpoints off the commit path (docs/decisions/0017-sqlite-write-path.md).
 *
 * SQLite's automatic checkpoint runs inside a COMMIT, on the committing connection: here the event loop, about
 * every other batch. Instead the writer never checkpoints (`wal_autocheckpoint = 0`), and after each commit
 * a worker thread with a connection of its own runs `PRAGMA wal_checkpoint(PASSIVE)`: it copies the committed
 * frames into the database file and fsyncs it while the event loop goes on.
 *
 * SQLite starts the WAL over from its beginning when a write transaction begins after every frame has been
 * copied. Under load the next batch begins before the worker has copied the last one, so once the WAL holds
 * `restartBytes`, a batch waits for the worker's pass over the last commit before it begins (awaiting a
 * message: requests are still read meanwhile). The hard cap backs that up: a WAL file past `maxBytes` after a
 * commit (the worker fell behind, or a reader in another process held an old snapshot) makes the writer run
 * a TRUNCATE checkpoint itself before the next batch, on the event loop, with a short busy timeout.
 *
 * Durability is unchanged: a commit is durable once its frames are fsynced in the WAL, whoever copies them
 * later, and a crash at any point of a checkpoint leaves the WAL to replay.
 */
export class WalCheckpointer {
  readonly stats: WalStats = {
    workerPasses: 0,
    workerMsTotal: 0,
    workerMsMax: 0,
    framesCopied: 0,
    restarts: 0,
    waits: 0,
    waitMsTotal: 0,
    waitMsMax: 0,
    forced: 0,
    forcedBusy: 0,
    forcedMsMax: 0,
    workerErrors: 0,
    walBytesMax: 0,
  };
  private readonly walPath: string;
  private readonly frameBytes: number;
  private worker: Worker | undefined;
  private exited: Promise<void> | undefined;
  /** Commits so far (batches and writes outside them); each pass reports the last one it covered. */
  private gen = 0;
  private last: PassReport = { gen: 0, busy: 0, log: 0, checkpointed: 0, ms: 0 };
  private waiters: (() => void)[] = [];
  private forceNext = false;
  /** After a forced checkpoint found a reader, or a worker failed: not again before this time. */
  private forceAfterMs = 0;
  private startAfterMs = 0;
  private stopped = false;

  constructor(
    private readonly writer: Database.Database,
    private readonly path: string,
    public limits: WalLimits,
  ) {
    this.walPath = `${path}-wal`;
    // A WAL frame is a 24-byte header and a page.
    this.frameBytes = 24 + (writer.pragma('page_size', { simple: true }) as number);
    writer.pragma('wal_autocheckpoint = 0');
    assert(
      writer.pragma('wal_autocheckpoint', { simple: true }) === 0,
      'the writer never checkpoints in a commit',
    );
    this.afterCommit(); // the migrations may have written a large WAL
  }

  /** The writer's automatic checkpoint threshold in pages: 0, never (for tests). */
  get writerAutocheckpoint(): number {
    return this.writer.pragma('wal_autocheckpoint', { simple: true }) as number;
  }

  /** Before a batch begins: lets the worker catch up when the WAL is large; past the cap, checkpoints itself. */
  async beforeBatch(): Promise<void> {
    if (this.worker !== undefined && this.last.gen !== this.gen) {
      const walBytes = this.last.log * this.frameBytes;
      if (walBytes >= this.limits.restartBytes || this.forceNext) await this.catchUp();
    }
    if (!this.forceNext || performance.now() < this.forceAfterMs) return;
    this.forceNext = false;
    const started = performance.now();
    // The writer waits WRITER_BUSY_WAIT_MS at most: a reader in another process holding an old snapshot must
    // not stall the event loop. If one is there, this gives up and the next commit past the cap tries again,
    // 1 s later.
    const busy = (this.writer.pragma('wal_checkpoint(TRUNCATE)') as { busy: number }[])[0]!.busy;
    const ms = performance.now() - started;
    this.stats.forced += 1;
    this.stats.forcedMsMax = Math.max(this.stats.forcedMsMax, ms);
    if (busy !== 0) {
      this.stats.forcedBusy += 1;
      this.forceAfterMs = performance.now() + 1_000;
    }
  }

  /** After each commit on the writer: checks the cap and tells the worker. Never throws. */
  afterCommit(): void {
    if (this.stopped) return;
    try {
      this.gen += 1;
      const bytes = fileBytes(this.walPath);
      if (bytes > this.stats.walBytesMax) this.stats.walBytesMax = bytes;
      if (bytes > this.limits.maxBytes) this.forceNext = true;
      if (this.worker === undefined) {
        if (bytes < this.limits.startBytes || performance.now() < this.startAfterMs) return;
        this.start();
      }
      this.worker!.postMessage(this.gen);
    } catch {
      // A checkpoint that does not happen now happens later, or the cap forces one: commits stay durable.
    }
  }

  /** Stops the worker (its connection closed); undefined when none was started. */
  stop(): Promise<void> | undefined {
    this.stopped = true;
    this.release();
    if (this.worker === undefined) return undefined;
    // Referenced again, so the process waits for the worker to close its connection.
    this.worker.ref();
    this.worker.postMessage('stop');
    return this.exited;
  }

  private async catchUp(): Promise<void> {
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => this.waiters.push(resolve)),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.limits.waitMaxMs);
      }),
    ]);
    clearTimeout(timer);
    const ms = performance.now() - started;
    this.stats.waits += 1;
    this.stats.waitMsTotal += ms;
    this.stats.waitMsMax = Math.max(this.stats.waitMsMax, ms);
  }

  private release(): void {
    for (const resolve of this.waiters.splice(0)) resolve();
  }

  private start(): void {
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { path: this.path, driver: createRequire(import.meta.url).resolve('better-sqlite3') },
    });
    worker.unref(); // never keeps the process alive; stop() waits for it
    this.exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    worker.on('message', (report: PassReport) => this.onReport(report));
    // The worker only copies committed frames: if it fails, commits stay durable and the cap still holds.
    // A new one starts at a commit 5 s later. ('exit' follows 'error'.)
    worker.on('error', () => {
      this.stats.workerErrors += 1;
    });
    worker.once('exit', () => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      this.startAfterMs = performance.now() + 5_000;
      this.release();
    });
    this.worker = worker;
  }

  private onReport(report: PassReport): void {
    const restarted = report.log < this.last.log;
    if (restarted) this.stats.restarts += 1;
    this.stats.framesCopied += Math.max(0, report.checkpointed - (restarted ? 0 : this.last.checkpointed));
    this.last = report;
    this.stats.workerPasses += 1;
    this.stats.workerMsTotal += report.ms;
    this.stats.workerMsMax = Math.max(this.stats.workerMsMax, report.ms);
    // This pass covered the last commit: it copied all it could (everything, unless an old snapshot is open).
    if (report.gen === this.gen) this.release();
  }
}

function fileBytes(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0; // no WAL file (yet)
  }
}
