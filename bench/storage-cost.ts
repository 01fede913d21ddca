import { existsSync, readFileSync, statSync } from 'node:fs';
import Database from 'better-sqlite3';

/**
 * What one payment costs the real API's SQLite database (issue 15: ≤ 6 rows, ≤ 12 KiB of WAL, ≤ 4 KB stored),
 * measured from outside the server on its own database file, around a window of payments that bench/run.ts
 * drives right after the (d) throughput run, with the server otherwise idle:
 *
 * 1. Before: a TRUNCATE checkpoint (the WAL becomes empty), then per table COUNT(*), per b-tree pages and
 *    payload bytes (the `dbstat` virtual table), pages in use, and the server's `total_changes()` (through
 *    bench/server-probe.ts).
 * 2. A snapshot reader is opened on the empty WAL and held for the whole window. SQLite may neither copy WAL
 *    frames into the database (checkpoint) nor restart the WAL while a reader still needs the database file as
 *    it was, so the server's automatic checkpoints (`wal_autocheckpoint`, every 1,000 pages) find nothing they
 *    may do and the WAL only grows: its size at the end is every frame the window's commits wrote, exactly.
 *    The server itself is not changed; only its checkpoints are held back (they cost commits time, so the
 *    window's rate is not the throughput figure: that is the (d) run's).
 * 3. The window's payments are driven (closed loop, at the concurrency of the (d) peak).
 * 4. After: the WAL is read frame by frame. Each frame is one page image (page size + a 24-byte header); a
 *    frame with a non-zero "database size" field ends a transaction, so those count the commits. Each page
 *    number is named after the b-tree that owns it now (`dbstat`), which splits the WAL by table and index.
 * 5. Then the snapshot is released, a TRUNCATE checkpoint moves everything into the database file, and the
 *    counts, pages and payload are taken again.
 *
 * Per payment (divided by the 2xx answers of the window):
 * - rows written: the growth of `total_changes()` of the server's writer connection (inserts, updates and
 *   deletes, e.g. the two balance updates), when the probe can see that connection; rows added: the growth of
 *   the sum of COUNT(*) over every table (inserts minus deletes), always, and by table;
 * - WAL bytes: frames × (page size + 24), i.e. the WAL file's growth (its 32-byte header aside);
 * - bytes stored: growth of the pages in use (page_count − freelist_count) × page size, after the final
 *   checkpoint; and of the payload bytes (the row data itself), by b-tree.
 *
 * The per-b-tree `dbstat` scans read every page: on a large database (the `--scale` case) they take long, so
 * above `DBSTAT_PAGES_MAX` pages the by-b-tree splits are left out and only the totals are measured.
 */
const DBSTAT_PAGES_MAX = 300_000;
const WAL_HEADER_BYTES = 32;
const FRAME_HEADER_BYTES = 24;

interface Snapshot {
  tables: Record<string, number>;
  btrees: Record<string, { pages: number; payload: number }> | null;
  pagesInUse: number;
  pageSize: number;
  fileBytes: number;
}

function checkpointTruncate(db: Database.Database): void {
  for (let attempt = 0; attempt < 50; attempt++) {
    const [r] = db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number }[];
    if (r?.busy === 0) return;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
  }
  throw new Error('the server did not let a checkpoint run: was it still writing?');
}

function snapshot(db: Database.Database, path: string, withBtrees: boolean): Snapshot {
  const names = db
    .prepare<[], { name: string }>(
      "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .all()
    .map((r) => r.name);
  const tables: Record<string, number> = {};
  for (const name of names)
    tables[name] = (db.prepare(`SELECT COUNT(*) AS n FROM "${name}"`).get() as { n: number }).n;
  const pageSize = db.pragma('page_size', { simple: true }) as number;
  const pageCount = db.pragma('page_count', { simple: true }) as number;
  const free = db.pragma('freelist_count', { simple: true }) as number;
  let btrees: Snapshot['btrees'] = null;
  if (withBtrees) {
    btrees = {};
    for (const r of db
      .prepare<[], { name: string; pages: number; payload: number }>(
        'SELECT name, COUNT(*) AS pages, SUM(payload) AS payload FROM dbstat GROUP BY name',
      )
      .all())
      btrees[r.name] = { pages: r.pages, payload: r.payload };
  }
  return { tables, btrees, pagesInUse: pageCount - free, pageSize, fileBytes: statSync(path).size };
}

/** Frames of a WAL file: page number → frames, and the number of commits. */
function readWal(path: string): {
  bytes: number;
  frames: number;
  commits: number;
  byPage: Map<number, number>;
} {
  const byPage = new Map<number, number>();
  if (!existsSync(path)) return { bytes: 0, frames: 0, commits: 0, byPage };
  const wal = readFileSync(path);
  if (wal.length < WAL_HEADER_BYTES) return { bytes: wal.length, frames: 0, commits: 0, byPage };
  const pageSize = wal.readUInt32BE(8);
  const salt1 = wal.readUInt32BE(16);
  const salt2 = wal.readUInt32BE(20);
  let frames = 0;
  let commits = 0;
  for (
    let at = WAL_HEADER_BYTES;
    at + FRAME_HEADER_BYTES + pageSize <= wal.length;
    at += FRAME_HEADER_BYTES + pageSize
  ) {
    // A frame from an earlier generation of the WAL (other salts) is not part of this one.
    if (wal.readUInt32BE(at + 8) !== salt1 || wal.readUInt32BE(at + 12) !== salt2) break;
    const page = wal.readUInt32BE(at);
    byPage.set(page, (byPage.get(page) ?? 0) + 1);
    frames += 1;
    if (wal.readUInt32BE(at + 4) !== 0) commits += 1;
  }
  return { bytes: wal.length, frames, commits, byPage };
}

export interface StorageCost {
  payments: number;
  commits: number;
  paymentsPerCommit: number;
  rowsWrittenPerPayment: number | null;
  rowsAddedPerPayment: number;
  rowsAddedByTable: Record<string, number>;
  walBytesPerPayment: number;
  walFramesPerPayment: number;
  walShareByBtree: Record<string, number> | null;
  storedBytesPerPayment: number;
  payloadBytesPerPayment: number | null;
  storedBytesByBtree: Record<string, number> | null;
  pageSize: number;
  windowPaymentsPerSecond: number;
}

/**
 * Measures around `drive`, which must send the window's payments and resolve with how many were answered 2xx
 * once every answer is in (so the server is idle again). `totalChanges` reads the server's writer connection
 * (null when it cannot be seen).
 */
export async function measureStorageCost(
  dbPath: string,
  drive: () => Promise<number>,
  totalChanges: () => Promise<number | null>,
): Promise<StorageCost> {
  const db = new Database(dbPath);
  db.pragma('busy_timeout = 5000');
  try {
    checkpointTruncate(db);
    const pagesBefore = db.pragma('page_count', { simple: true }) as number;
    const withBtrees = pagesBefore <= DBSTAT_PAGES_MAX;
    const before = snapshot(db, dbPath, withBtrees);
    const changesBefore = await totalChanges();

    // Hold the WAL: a reader whose snapshot is the database file alone (the WAL is empty now).
    const holder = new Database(dbPath, { readonly: true });
    holder.exec('BEGIN');
    holder.prepare('SELECT COUNT(*) FROM sqlite_schema').get();
    const t0 = performance.now();
    let payments: number;
    let wal: ReturnType<typeof readWal>;
    try {
      payments = await drive();
      wal = readWal(`${dbPath}-wal`); // before letting go of it
    } finally {
      holder.exec('COMMIT');
      holder.close();
    }
    const seconds = (performance.now() - t0) / 1000;
    const changesAfter = await totalChanges();

    // Name each page the WAL wrote by the b-tree that owns it now (before the checkpoint, same pages).
    let walShareByBtree: Record<string, number> | null = null;
    if (withBtrees && wal.frames > 0) {
      const owner = new Map<number, string>();
      for (const r of db
        .prepare<[], { name: string; pageno: number }>('SELECT name, pageno FROM dbstat')
        .iterate())
        owner.set(r.pageno, r.name);
      const frames: Record<string, number> = {};
      for (const [page, n] of wal.byPage) {
        const name = owner.get(page) ?? '(freelist)';
        frames[name] = (frames[name] ?? 0) + n;
      }
      walShareByBtree = Object.fromEntries(
        Object.entries(frames)
          .sort((a, b) => b[1] - a[1])
          .map(([k, v]) => [k, +(v / wal.frames).toFixed(3)]),
      );
    }

    checkpointTruncate(db);
    const after = snapshot(db, dbPath, withBtrees);
    const per = (v: number) => +(v / Math.max(1, payments)).toFixed(2);
    const rowsAddedByTable: Record<string, number> = {};
    let rowsAdded = 0;
    for (const [name, n] of Object.entries(after.tables)) {
      const d = n - (before.tables[name] ?? 0);
      rowsAdded += d;
      if (per(d) !== 0) rowsAddedByTable[name] = per(d);
    }
    let storedBytesByBtree: Record<string, number> | null = null;
    let payload: number | null = null;
    if (before.btrees !== null && after.btrees !== null) {
      storedBytesByBtree = {};
      payload = 0;
      for (const [name, b] of Object.entries(after.btrees)) {
        const prev = before.btrees[name] ?? { pages: 0, payload: 0 };
        payload += b.payload - prev.payload;
        const d = (b.pages - prev.pages) * after.pageSize;
        if (per(d) !== 0) storedBytesByBtree[name] = per(d);
      }
      storedBytesByBtree = Object.fromEntries(Object.entries(storedBytesByBtree).sort((a, b) => b[1] - a[1]));
    }
    return {
      payments,
      commits: wal.commits,
      paymentsPerCommit: +(payments / Math.max(1, wal.commits)).toFixed(1),
      rowsWrittenPerPayment:
        changesBefore === null || changesAfter === null ? null : per(changesAfter - changesBefore),
      rowsAddedPerPayment: per(rowsAdded),
      rowsAddedByTable: Object.fromEntries(Object.entries(rowsAddedByTable).sort((a, b) => b[1] - a[1])),
      walBytesPerPayment: per(wal.frames * (after.pageSize + FRAME_HEADER_BYTES)),
      walFramesPerPayment: per(wal.frames),
      walShareByBtree,
      storedBytesPerPayment: per((after.pagesInUse - before.pagesInUse) * after.pageSize),
      payloadBytesPerPayment: payload === null ? null : per(payload),
      storedBytesByBtree,
      pageSize: after.pageSize,
      windowPaymentsPerSecond: Math.round(payments / seconds),
    };
  } finally {
    db.close();
  }
}
