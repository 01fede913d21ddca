import { assert } from '../domain/assert.ts';
import type { SqlExecutor } from './sql-store.ts';

/**
 * Write-behind for one batch: how group commit saves statements, not only fsyncs.
 *
 * A payment's rows (payment, ledger lines, hold, event, deliveries, counter points, idempotency record) and
 * its balance changes are queued here instead of being written one statement each. They are written with a
 * few multi-row statements per batch: when the batch ends, or earlier, when a statement that may read one of
 * those tables runs (read-your-writes: `db` flushes first). On PostgreSQL that turns about thirty round trips
 * per payment into a handful per batch.
 *
 * Each command's rows stay apart until it ends: a command that fails leaves nothing behind (its rows are
 * dropped; its direct writes are undone by the savepoint taken before its first one). Savepoints are taken
 * lazily, so a command that only reads and queues costs no savepoint round trips at all.
 */
export interface BufferedTable {
  table: string;
  columns: string[];
  /**
   * The statement that writes a chunk of rows, given its `VALUES` tuples, when a plain INSERT of `columns`
   * will not do (a row that needs a value only the database knows, e.g. its parent's seq). Default: INSERT.
   */
  insertSql?: (values: string) => string;
}

/** What a pending source (queued balance changes) must write: the batch's committed changes, or the command's. */
export type FlushScope = 'batch' | 'command';

/** Balance changes are queued as a pending source too: written as one UPDATE per flush (see layered.ts). */
export interface PendingSource {
  table: string;
  hasPending(scope: FlushScope): boolean;
  flush(db: SqlExecutor, scope: FlushScope): Promise<void>;
}

export interface SavepointControl {
  /** Issues a transaction-control statement (SAVEPOINT, RELEASE, ROLLBACK TO) on the batch's connection. */
  control(sql: string): Promise<void>;
  /** False for a batch of one on PostgreSQL: a failure rolls the whole transaction back instead. */
  savepoints: boolean;
}

/** Rows per multi-row INSERT: well under SQLite's 32,766 and PostgreSQL's 65,535 bound parameters. */
export const ROWS_PER_INSERT = 200;
const ROWS_QUEUED_MAX = 100_000;

type Entry = { kind: 'rows'; spec: BufferedTable } | { kind: 'source'; source: PendingSource };

export class WriteBehind {
  /** Tables in foreign-key order: a flush writes a table's parents before it. */
  private readonly order: Entry[];
  private readonly patterns: RegExp[];
  private batchRows = new Map<string, unknown[][]>();
  private commandRows = new Map<string, unknown[][]>();
  private rowsQueued = 0;
  private savepointTaken = false;
  /** The executor for direct statements: flushes what they may read, and takes the savepoint before a write. */
  readonly db: SqlExecutor;

  constructor(
    private readonly raw: SqlExecutor,
    private readonly savepoint: SavepointControl,
    order: (BufferedTable | PendingSource)[],
    private readonly onDirectWrite: (sql: string) => void,
  ) {
    this.order = order.map((e) =>
      'columns' in e ? { kind: 'rows', spec: e } : { kind: 'source', source: e as PendingSource },
    );
    this.patterns = this.order.map((e) => new RegExp(`\\b${tableOf(e)}\\b`));
    this.db = {
      all: async (sql, params) => {
        await this.before(sql);
        return raw.all(sql, params);
      },
      get: async (sql, params) => {
        await this.before(sql);
        return raw.get(sql, params);
      },
      run: async (sql, params) => {
        await this.before(sql);
        return raw.run(sql, params);
      },
    };
  }

  /** Queues a row of `table` for the running command. */
  insert(table: string, row: unknown[]): void {
    const entry = this.order.find((e) => e.kind === 'rows' && e.spec.table === table);
    assert(entry?.kind === 'rows', `${table} is a buffered table`);
    assert(row.length === entry.spec.columns.length, `a ${table} row has a value per column`);
    assert(this.rowsQueued < ROWS_QUEUED_MAX, 'the write-behind queue is bounded');
    const rows = this.commandRows.get(table) ?? [];
    rows.push(row);
    this.commandRows.set(table, rows);
    this.rowsQueued += 1;
  }

  /** The running command is about to write directly: later its failure must undo that write. */
  async ensureSavepoint(): Promise<void> {
    if (this.savepointTaken || !this.savepoint.savepoints) return;
    // The batch's rows go first, outside the savepoint: a rollback to it must undo this command only.
    await this.writeBatchLayer(this.order);
    await this.savepoint.control('SAVEPOINT command');
    this.savepointTaken = true;
  }

  /**
   * Ends the running command: its queued rows join the batch, or are dropped and its writes undone. Returns
   * whether it had taken a savepoint (written directly).
   */
  async endCommand(committed: boolean): Promise<boolean> {
    const hadSavepoint = this.savepointTaken;
    if (committed) {
      for (const [table, rows] of this.commandRows) {
        const batch = this.batchRows.get(table) ?? [];
        batch.push(...rows);
        this.batchRows.set(table, batch);
      }
      if (this.savepointTaken) await this.savepoint.control('RELEASE SAVEPOINT command');
    } else {
      for (const rows of this.commandRows.values()) this.rowsQueued -= rows.length;
      if (this.savepointTaken) {
        await this.savepoint.control('ROLLBACK TO SAVEPOINT command');
        await this.savepoint.control('RELEASE SAVEPOINT command');
      }
    }
    this.commandRows = new Map();
    this.savepointTaken = false;
    return hadSavepoint;
  }

  /** Writes everything queued once more than `rows` rows wait (a long command, between its parts). */
  async flushWhenOver(rows: number): Promise<void> {
    if (this.rowsQueued > rows) await this.flushAll();
  }

  /** Writes everything queued: called once more before COMMIT. */
  async flushAll(): Promise<void> {
    await this.flushThrough(this.order.length - 1);
  }

  /**
   * Before a direct statement: a read flushes the tables it names (and those before them); a write flushes
   * everything and takes the command's savepoint.
   */
  private async before(sql: string): Promise<void> {
    if (/^\s*SELECT\b/i.test(sql)) {
      let last = -1;
      this.patterns.forEach((pattern, i) => {
        if (pattern.test(sql)) last = i;
      });
      if (last >= 0) await this.flushThrough(last);
      return;
    }
    // A write may refer to any queued row (a refund to its ledger transaction): everything goes first.
    await this.flushThrough(this.order.length - 1);
    await this.ensureSavepoint();
    this.onDirectWrite(sql);
  }

  /**
   * Writes the queued rows of tables 0..last: first the batch's (committed commands, outside any savepoint),
   * then the running command's, after its savepoint, so a rollback to it undoes exactly this command.
   */
  private async flushThrough(last: number): Promise<void> {
    const entries = this.order.slice(0, last + 1);
    await this.writeBatchLayer(entries);
    const commandPending = entries.some((e) =>
      e.kind === 'rows'
        ? (this.commandRows.get(e.spec.table)?.length ?? 0) > 0
        : e.source.hasPending('command'),
    );
    if (!commandPending) return;
    await this.ensureSavepoint();
    await this.writeLayer(entries, 'command');
  }

  /**
   * Writes the rows of the batch's earlier commands. It runs inside whichever command's read or write needed
   * them, but a row it fails on is not that command's: the error is marked (BatchRowsFailed), so the adapter
   * fails the whole attempt instead of this command alone, and the committer splits the batch to find the
   * command whose row the database refused. (On PostgreSQL the failed statement has also aborted the
   * transaction, outside any savepoint: no later statement of the batch could succeed.)
   */
  private async writeBatchLayer(entries: Entry[]): Promise<void> {
    try {
      await this.writeLayer(entries, 'batch');
    } catch (error) {
      throw markBatchRowsFailed(error);
    }
  }

  /** Writes one layer (the batch's committed commands, or the running command) of the given tables, in order. */
  private async writeLayer(entries: Entry[], scope: FlushScope): Promise<void> {
    const layer = scope === 'batch' ? this.batchRows : this.commandRows;
    for (const entry of entries) {
      if (entry.kind === 'source') {
        if (entry.source.hasPending(scope)) await entry.source.flush(this.raw, scope);
        continue;
      }
      const rows = layer.get(entry.spec.table);
      if (rows === undefined || rows.length === 0) continue;
      layer.delete(entry.spec.table);
      this.rowsQueued -= rows.length;
      assert(this.rowsQueued >= 0, 'queued rows never go negative');
      await insertRows(this.raw, entry.spec.table, entry.spec.columns, rows, entry.spec.insertSql);
    }
  }
}

const BATCH_ROWS_FAILED = Symbol('batch rows failed');

/** The error, marked as a failure to write the batch's earlier commands' rows (see writeBatchLayer). */
function markBatchRowsFailed(error: unknown): unknown {
  if (typeof error === 'object' && error !== null) Object.assign(error, { [BATCH_ROWS_FAILED]: true });
  return error;
}

/** Whether a command's error was really the batch's: its earlier commands' rows failed to be written. */
export function batchRowsFailed(error: unknown): boolean {
  return typeof error === 'object' && error !== null && BATCH_ROWS_FAILED in error;
}

function tableOf(entry: Entry): string {
  return entry.kind === 'rows' ? entry.spec.table : entry.source.table;
}

export function* chunks<T>(items: T[], size: number): Generator<T[]> {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size);
}

/** One multi-row INSERT (or `insertSql`'s statement) per `ROWS_PER_INSERT` rows. */
export async function insertRows(
  db: SqlExecutor,
  table: string,
  columns: string[],
  rows: unknown[][],
  insertSql = (values: string) => `INSERT INTO ${table} (${columns.join(', ')}) VALUES ${values}`,
): Promise<void> {
  const tuple = `(${columns.map(() => '?').join(', ')})`;
  for (const chunk of chunks(rows, ROWS_PER_INSERT)) {
    assert(
      chunk.every((row) => row.length === columns.length),
      'every row has a value per column',
    );
    await db.run(insertSql(chunk.map(() => tuple).join(', ')), chunk.flat());
  }
}
