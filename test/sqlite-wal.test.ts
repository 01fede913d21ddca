import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { sandboxPath } from '../src/storage/open-store.ts';
import type { SqliteStore, WalLimits, WalStats } from '../src/storage/sqlite.ts';
import { assertBooksValid, databasesForFile, type Party, party } from './support/fixtures.ts';
import { backend, startTestApp, type TestApp, testEnv } from './support/harness.ts';

/**
 * WAL checkpoints off the commit path (docs/decisions/0017-sqlite-write-path.md): the writer never
 * checkpoints in a COMMIT; a worker thread copies the WAL into the database file after each commit, a batch
 * lets it catch up once the WAL is large so that the WAL starts over, and past a hard cap the writer
 * truncates it itself. With the limits shrunk to a few hundred KiB, these tests write enough for the WAL to
 * go round many times: it stays bounded, a reader holding an old snapshot is waited out, and a kill -9 in
 * the middle of it loses no acknowledged payment.
 */
const skip = backend === 'sqlite' ? false : 'SQLite only: PostgreSQL has no WAL file of ours to checkpoint';
const SMALL: WalLimits = {
  startBytes: 64 << 10,
  restartBytes: 256 << 10,
  maxBytes: 1 << 20,
  waitMaxMs: 1_000,
};
/** One batch of the 16 concurrent payments these tests send writes well under this much WAL. */
const ONE_BATCH = 1 << 20;

const freshDatabase = databasesForFile();

const walBytes = (path: string) => (existsSync(`${path}-wal`) ? statSync(`${path}-wal`).size : 0);

async function smallWalApp(): Promise<{ t: TestApp; store: SqliteStore; path: string; parties: Party[] }> {
  const t = await startTestApp({ db: await freshDatabase() });
  const store = t.app.services.store as SqliteStore;
  assert.ok(store.wal, 'a file database has a checkpointer');
  store.wal.limits = { ...SMALL };
  const parties: Party[] = [];
  for (let i = 0; i < 4; i++) parties.push(await party(t, { balance: 100_000_000 }));
  // The demo key's payments are test data: in the sandbox's file (docs/decisions/0026-sandbox.md).
  return { t, store, path: sandboxPath(t.db.sqlitePath!), parties };
}

/** `count` payments between the parties from 16 concurrent clients; calls `each` after every answer. */
async function payments(t: TestApp, parties: Party[], count: number, each: () => void = () => {}) {
  let next = 0;
  const client = async () => {
    while (next < count) {
      const i = next++;
      const src = parties[i % parties.length]!;
      const dst = parties[(i + 1 + (i % (parties.length - 1))) % parties.length]!;
      const res = await t.request('POST', '/v1/payments', {
        body: {
          sourceAccountId: src.accountId,
          destinationAccountId: dst.accountId,
          amountCents: 1 + (i % 900),
          currency: 'USD',
        },
        idempotencyKey: `wal-${i}-${Math.random()}`,
      });
      assert.ok([201, 202, 422].includes(res.status), res.body);
      each();
    }
  };
  await Promise.all(Array.from({ length: 16 }, client));
}

test('under sustained writes the WAL stays bounded, and it is checkpointed by the worker, not in COMMIT', {
  skip,
  timeout: 120_000,
}, async (t) => {
  const { t: app, store, path, parties } = await smallWalApp();
  try {
    const wal = store.wal!;
    assert.equal(wal.writerAutocheckpoint, 0, "the writer's commits never run a checkpoint");
    let largest = 0;
    await payments(app, parties, 600, () => {
      largest = Math.max(largest, walBytes(path));
    });
    const stats: WalStats = { ...wal.stats };
    t.diagnostic(`largest WAL file ${largest} B; ${JSON.stringify(stats)}`);
    assert.ok(stats.workerPasses > 0, 'the worker ran checkpoints');
    assert.ok(stats.framesCopied > 0, 'the worker copied frames into the database file');
    assert.ok(stats.restarts >= 2, `the WAL started over from its beginning (${stats.restarts} times)`);
    // Bounded: at most the cap plus the batch that crossed it (normally restartBytes plus a batch or two).
    assert.ok(largest <= SMALL.maxBytes + ONE_BATCH, `the WAL file reached ${largest} B`);
    assert.ok(stats.walBytesMax <= SMALL.maxBytes + ONE_BATCH);
    const listed = await app.request('GET', '/v1/payments?limit=500');
    assert.equal(listed.status, 200);
    await assertBooksValid(app);
  } finally {
    await app.destroy();
  }
});

test('past the cap the writer truncates the WAL itself, once a reader holding an old snapshot lets go', {
  skip,
  timeout: 120_000,
}, async () => {
  const { t: app, store, path, parties } = await smallWalApp();
  const snapshot = new Database(path, { readonly: true });
  try {
    const wal = store.wal!;
    // An open read transaction pins the WAL: nothing after its snapshot may be copied over, so the WAL can
    // neither start over nor be truncated while it lasts (SQLite's rule, whoever checkpoints).
    snapshot.exec('BEGIN');
    snapshot.prepare('SELECT COUNT(*) AS n FROM payments').get();
    for (let round = 0; round < 20 && wal.stats.forcedBusy === 0; round++) await payments(app, parties, 48);
    assert.ok(walBytes(path) > SMALL.maxBytes, 'the pinned WAL grew past the cap');
    assert.ok(
      wal.stats.forcedBusy >= 1,
      'the forced checkpoint found the reader and gave up (10 ms), not 5 s',
    );
    assert.ok(
      wal.stats.forcedMsMax < 1_000,
      `a forced checkpoint held the event loop ${wal.stats.forcedMsMax} ms`,
    );
    snapshot.exec('COMMIT');
    // The next commit past the cap (after the 1 s back-off) truncates the WAL before its batch begins.
    const forced = wal.stats.forced;
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    for (let round = 0; round < 20 && wal.stats.forced === forced; round++) await payments(app, parties, 16);
    assert.ok(wal.stats.forced > forced, 'a forced checkpoint ran');
    await payments(app, parties, 16);
    assert.ok(walBytes(path) <= SMALL.restartBytes + ONE_BATCH, `the WAL is ${walBytes(path)} B again`);
    await assertBooksValid(app);
  } finally {
    snapshot.close();
    await app.destroy();
  }
});

interface Ack {
  key: string;
  status: number;
  id: string;
  body: { sourceAccountId: string; destinationAccountId: string; amountCents: number };
}

test('kill -9 while the WAL goes round and its last commits are not copied: every acknowledged payment is back', {
  skip,
  timeout: 180_000,
}, async (t) => {
  const db = await freshDatabase();
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/wal-writer.ts'], {
    env: {
      ...process.env,
      ...testEnv(db.url, { LOG_LEVEL: 'warn' }),
      WAL_TEST_LIMITS: JSON.stringify(SMALL),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<string | number | null>((resolve) =>
    child.on('exit', (code, signal) => resolve(signal ?? code)),
  );
  const acks = new Map<string, Ack>();
  let accounts: string[] = [];
  let stats: WalStats | undefined;
  let largest = 0;
  let pinnedAt: number | undefined;
  for await (const line of createInterface({ input: child.stdout! })) {
    if (line.startsWith('accounts ')) accounts = JSON.parse(line.slice('accounts '.length));
    if (line.startsWith('wal ')) stats = JSON.parse(line.slice('wal '.length));
    if (line.startsWith('pinned ')) {
      pinnedAt = acks.size;
      stats = JSON.parse(line.slice('pinned '.length));
    }
    if (line.startsWith('ack ')) {
      const ack = JSON.parse(line.slice('ack '.length)) as Ack;
      acks.set(ack.key, ack);
      // Bounded while nothing pins it (a pinned WAL may grow: SQLite cannot copy past an open snapshot).
      if (pinnedAt === undefined) largest = Math.max(largest, walBytes(sandboxPath(db.sqlitePath!)));
    }
    // Killed mid-stream, requests in flight, 100 acknowledged payments after the pin.
    const due = pinnedAt === undefined ? acks.size >= 5_000 : acks.size >= pinnedAt + 100;
    if (due && child.exitCode === null) child.kill('SIGKILL');
  }
  assert.equal(await exited, 'SIGKILL', `the writer ended by itself:\n${stderr}`);
  t.diagnostic(
    `acknowledged ${acks.size} (${pinnedAt} before the pin); largest WAL file before it ${largest} B; last stats ${JSON.stringify(stats)}`,
  );
  assert.ok(pinnedAt !== undefined, 'the WAL went round 3 times, then the writer pinned it');
  assert.ok((stats?.restarts ?? 0) >= 3);
  assert.ok(largest <= SMALL.maxBytes + ONE_BATCH, `the WAL file reached ${largest} B`);

  // The database file alone (a copy, without its WAL) lacks what was committed after the pin: those payments
  // were acknowledged with their frames in the WAL only. The restart below replays them from the WAL.
  const dir = mkdtempSync(join(tmpdir(), 'wal-only-db-'));
  try {
    copyFileSync(sandboxPath(db.sqlitePath!), join(dir, 'copy.db'));
    const copy = new Database(join(dir, 'copy.db'), { readonly: true });
    const inFile = (copy.prepare('SELECT COUNT(*) AS n FROM payments').get() as { n: number }).n;
    copy.close();
    t.diagnostic(`payments in the database file alone: ${inFile} of ${acks.size} acknowledged`);
    assert.ok(inFile < acks.size, 'some acknowledged payments were in the WAL only');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const app = await startTestApp({ db });
  try {
    for (const ack of acks.values()) {
      const got = await app.request('GET', `/v1/payments/${ack.id}`);
      assert.equal(got.status, 200, `acknowledged payment ${ack.id} (${ack.key}) is missing after the kill`);
      assert.equal(got.json.payment.amountCents, ack.body.amountCents);
      assert.equal(got.json.payment.sourceAccountId, ack.body.sourceAccountId);
    }
    const balances = await Promise.all(
      accounts.map(
        async (id) => (await app.request('GET', `/v1/accounts/${id}`)).json.account.postedBalanceCents,
      ),
    );
    const held = await Promise.all(
      accounts.map(
        async (id) => (await app.request('GET', `/v1/accounts/${id}`)).json.account.heldBalanceCents,
      ),
    );
    assert.equal(
      balances.reduce((a: number, b: number) => a + b, 0),
      accounts.length * 100_000_000,
      'money is conserved among the accounts',
    );
    assert.ok(held.every((h: number) => h >= 0));
    await assertBooksValid(app);
  } finally {
    await app.close();
  }
});
