import { createRequire } from 'node:module';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';

/**
 * Bench-only instrumentation of the real API's process, loaded by bench/run.ts with
 * `node --import tsx --import ./bench/server-probe.ts src/main.ts` and read over the child-process IPC channel.
 * It changes nothing the server does; it only watches:
 *
 * - The event loop: `monitorEventLoopDelay` at 1 ms resolution. Each sample is the time between two ticks of
 *   a 1 ms timer, so a sample of N ms means the loop could not run that timer for about N − 1 ms: whatever
 *   held it (a batch, a GC pause, a large JSON parse). The longest such block is what a request arriving at
 *   the wrong moment waits before it is even read.
 * - SQLite batches: `Database.prototype.exec` of better-sqlite3 is wrapped, so a `BEGIN…` on a connection
 *   starts a batch and `COMMIT`/`ROLLBACK` ends it. The span is how long the batch held the event loop, as
 *   long as nothing in between yielded to it; a `setImmediate` scheduled at BEGIN tells: if it ran before the
 *   COMMIT, the batch yielded and is counted in `yielded` (its span then overstates the block). The COMMIT
 *   alone (WAL write, fsync, any autocheckpoint) is timed too.
 * - Rows written: `SELECT total_changes()` on every connection that began a write transaction: rows inserted,
 *   updated or deleted by every statement, triggers included, since the connection opened.
 *
 * If the server moves its SQLite connection off the main thread (a worker), the wrapper no longer sees it:
 * `batches.count` stays 0 and `totalChanges` is null, and the bench falls back to what it can see from outside.
 */
interface BetterSqlite {
  prototype: {
    exec(this: unknown, sql: string): unknown;
    prepare(this: unknown, sql: string): { get(): unknown };
  };
}

const require = createRequire(import.meta.url);
const Database = require('better-sqlite3') as BetterSqlite;
const RESOLUTION_MS = 1;
const SLOW_BATCH_MS = 20;

const loop = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
loop.enable();

const writers = new Set<unknown>();
let batchStartMs = -1;
let batchYielded = false;
let batchMs: number[] = [];
let commitMs: number[] = [];
let yielded = 0;

const originalExec = Database.prototype.exec;
Database.prototype.exec = function exec(this: unknown, sql: string) {
  const head = sql.trimStart().slice(0, 8).toUpperCase();
  if (head.startsWith('BEGIN')) {
    writers.add(this);
    batchStartMs = performance.now();
    batchYielded = false;
    setImmediate(() => {
      if (batchStartMs >= 0) batchYielded = true;
    });
    return originalExec.call(this, sql);
  }
  if (batchStartMs >= 0 && (head.startsWith('COMMIT') || head.startsWith('ROLLBACK') || head === 'END')) {
    const commitStart = performance.now();
    try {
      return originalExec.call(this, sql);
    } finally {
      const end = performance.now();
      batchMs.push(end - batchStartMs);
      if (head.startsWith('COMMIT') || head === 'END') commitMs.push(end - commitStart);
      if (batchYielded) yielded += 1;
      batchStartMs = -1;
    }
  }
  return originalExec.call(this, sql);
};

function totalChanges(): number | null {
  if (writers.size === 0) return null;
  let n = 0;
  for (const db of writers) {
    try {
      n += (Database.prototype.prepare.call(db, 'SELECT total_changes() AS n').get() as { n: number }).n;
    } catch {
      // closed
    }
  }
  return n;
}

const round = (v: number) => +v.toFixed(1);
function summary(values: number[]) {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0);
  return {
    count: sorted.length,
    meanMs: round(sorted.reduce((a, b) => a + b, 0) / Math.max(1, sorted.length)),
    p50Ms: at(0.5),
    p99Ms: at(0.99),
    maxMs: round(sorted[sorted.length - 1] ?? 0),
  };
}

export interface ProbeReading {
  eventLoop: { maxBlockMs: number; p99BlockMs: number; meanDelayMs: number; samples: number };
  batches: ReturnType<typeof summary> & { over20Ms: number; yielded: number };
  commits: ReturnType<typeof summary>;
  totalChanges: number | null;
}

function read(): ProbeReading {
  const ms = (ns: number) => Math.max(0, ns / 1e6 - RESOLUTION_MS);
  return {
    eventLoop: {
      maxBlockMs: round(ms(loop.max)),
      p99BlockMs: round(ms(loop.percentile(99))),
      meanDelayMs: round(ms(loop.mean)),
      samples: loop.count,
    },
    batches: { ...summary(batchMs), over20Ms: batchMs.filter((v) => v > SLOW_BATCH_MS).length, yielded },
    commits: summary(commitMs),
    totalChanges: totalChanges(),
  };
}

if (process.send !== undefined) {
  process.on('message', (message: { type?: string; id?: number }) => {
    if (message?.type === 'reset') {
      loop.reset();
      batchMs = [];
      commitMs = [];
      yielded = 0;
      process.send!({ id: message.id, reading: read() });
    } else if (message?.type === 'read') {
      process.send!({ id: message.id, reading: read() });
    }
  });
  // The channel must not keep the server alive: it stops as it always does (SIGTERM).
  process.channel?.unref();
}
