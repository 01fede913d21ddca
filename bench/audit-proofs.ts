import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { consistencyProofOf, inclusionProofOf, treeRoot } from '../src/app/audit-log.ts';
import { createApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import {
  consistencyRanges,
  inclusionRanges,
  leafHash,
  type MerkleNode,
  nodesCompletedBy,
  nodesFor,
  verifyConsistency,
  verifyInclusion,
} from '../src/domain/merkle.ts';
import { migrateSqlite, openSqliteStore } from '../src/storage/sqlite.ts';

/**
 * `npm run bench:audit-proofs [-- --entries 1000000 --samples 1000]`: how fast proofs come out of a big log.
 *
 * Builds the Merkle nodes of an N-entry audit log straight into a temp SQLite database (bulk insert, no HTTP,
 * no entry rows: proofs only read nodes), then times root, inclusion and consistency proof generation through
 * the same code the API uses (src/app/audit-log.ts over the store's reads), checks every proof, and finally
 * times the proof endpoints end to end through the real app (fastify inject). Not a test: it prints figures.
 */
const { values: args } = parseArgs({
  options: { entries: { type: 'string', default: '1000000' }, samples: { type: 'string', default: '1000' } },
});
const ENTRIES = Number(args.entries);
const SAMPLES = Number(args.samples);
const TOKEN = 'bench-audit-token';

const leafOf = (i: number) => leafHash(`bench entry ${i}`);
const randomBelow = (n: number) => Math.floor(Math.random() * n);

function buildTree(path: string, size: number): void {
  const db = new Database(path);
  migrateSqlite(db);
  db.pragma('journal_mode = OFF'); // a throwaway database: no crash safety needed while loading
  db.pragma('synchronous = OFF');
  const insert = db.prepare('INSERT INTO audit_merkle_nodes (level, idx, hash) VALUES (?, ?, ?)');
  // The right edge of the tree: the last completed node at each level is the next left sibling there.
  const frontier: Buffer[] = [];
  db.transaction(() => {
    for (let i = 0; i < size; i++) {
      const nodes: MerkleNode[] = nodesCompletedBy(i, leafOf(i), (id) => frontier[id.level]!);
      for (const n of nodes) {
        insert.run(n.level, n.index, n.hash.toString('hex'));
        frontier[n.level] = n.hash;
      }
    }
    // Proofs only read nodes; the head says how many leaves have them (and links the next real entry).
    db.prepare('UPDATE audit_head SET size = ?, merkle_size = ?, last_hash = ? WHERE id = 1').run(
      size,
      size,
      'ab'.repeat(32),
    );
  })();
  db.close();
}

interface Stats {
  medianMs: number;
  p99Ms: number;
  maxMs: number;
}

function stats(samplesMs: number[]): Stats {
  const sorted = [...samplesMs].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  const round = (ms: number) => Math.round(ms * 1000) / 1000;
  return { medianMs: round(at(0.5)), p99Ms: round(at(0.99)), maxMs: round(sorted[sorted.length - 1]!) };
}

async function timed<T>(run: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const start = process.hrtime.bigint();
  const value = await run();
  return { value, ms: Number(process.hrtime.bigint() - start) / 1e6 };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-audit-proofs-'));
  const path = join(dir, 'payments.db');
  try {
    const buildStart = Date.now();
    buildTree(path, ENTRIES);
    const buildMs = Date.now() - buildStart;
    const dbMiB = statSync(path).size / 2 ** 20;
    console.log(
      `built ${ENTRIES.toLocaleString('en')} leaves (${(2 * ENTRIES - 1).toLocaleString('en')} nodes max) in ${buildMs} ms, ${dbMiB.toFixed(0)} MiB`,
    );

    const store = openSqliteStore({ path, clock: Date.now });
    const reads = store.reads;
    const root = await timed(() => treeRoot(reads, ENTRIES));
    console.log(`root of ${ENTRIES}: ${root.ms.toFixed(3)} ms`);

    const inclusionMs: number[] = [];
    const inclusionNodes: number[] = [];
    for (let s = 0; s < SAMPLES; s++) {
      const index = randomBelow(ENTRIES);
      const { value: proof, ms } = await timed(() => inclusionProofOf(reads, index, ENTRIES));
      inclusionMs.push(ms);
      inclusionNodes.push(nodesFor(inclusionRanges(index, ENTRIES)).length);
      if (!verifyInclusion(index, ENTRIES, leafOf(index), proof, root.value))
        throw new Error(`bad proof ${index}`);
    }

    const consistencyMs: number[] = [];
    const consistencyNodes: number[] = [];
    for (let s = 0; s < SAMPLES; s++) {
      const from = 1 + randomBelow(ENTRIES - 1);
      const { value: proof, ms } = await timed(() => consistencyProofOf(reads, from, ENTRIES));
      consistencyMs.push(ms);
      consistencyNodes.push(nodesFor(consistencyRanges(from, ENTRIES)).length);
      if (s < 50) {
        const fromRoot = await treeRoot(reads, from);
        if (!verifyConsistency(from, ENTRIES, fromRoot, root.value, proof))
          throw new Error(`bad proof ${from}`);
      }
    }
    await store.close();

    const max = (xs: number[]) => Math.max(...xs);
    const avg = (xs: number[]) => (xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(1);
    console.table({
      'inclusion proof (storage + hashing)': {
        ...stats(inclusionMs),
        nodesAvg: avg(inclusionNodes),
        nodesMax: max(inclusionNodes),
      },
      'consistency proof (storage + hashing)': {
        ...stats(consistencyMs),
        nodesAvg: avg(consistencyNodes),
        nodesMax: max(consistencyNodes),
      },
    });
    console.log(
      'each proof is ONE query of primary-key lookups; all sampled inclusion proofs (and 50 consistency proofs) verified',
    );

    await endToEnd(path);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The same proofs through the real app and its HTTP stack (fastify inject: routing, auth, JSON). */
async function endToEnd(path: string): Promise<void> {
  const config = loadConfig({
    DATABASE_URL: `sqlite:${path}`,
    DEMO_API_TOKEN: TOKEN,
    DATA_ENCRYPTION_KEY: Buffer.alloc(32, 3).toString('base64'),
    SEED_DEMO_DATA: 'false',
    LOG_LEVEL: 'silent',
    AUDIT_CHECKPOINT_INTERVAL_MS: '3600000',
  });
  const app = await createApp(config);
  try {
    const size = await app.services.store.reads.auditMerkleSize(); // the demo key's audit entry was appended
    const get = async (url: string) => {
      const res = await app.server.inject({
        method: 'GET',
        url,
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      if (res.statusCode !== 200) throw new Error(`${url}: ${res.statusCode} ${res.body}`);
    };
    const requests = Math.min(SAMPLES, 500);
    for (let w = 0; w < 20; w++) await get(`/v1/audit-logs/proofs/inclusion?index=${w}&treeSize=${size}`); // warm-up
    const inclusion: number[] = [];
    const consistency: number[] = [];
    for (let s = 0; s < requests; s++) {
      const index = randomBelow(size);
      inclusion.push(
        (await timed(() => get(`/v1/audit-logs/proofs/inclusion?index=${index}&treeSize=${size}`))).ms,
      );
      const from = 1 + randomBelow(size - 1);
      consistency.push(
        (await timed(() => get(`/v1/audit-logs/proofs/consistency?from=${from}&to=${size}`))).ms,
      );
    }
    const checkpoint = await timed(() => get('/v1/audit-logs/checkpoint'));
    console.table({
      'GET /v1/audit-logs/proofs/inclusion': stats(inclusion),
      'GET /v1/audit-logs/proofs/consistency': stats(consistency),
    });
    console.log(
      `first GET /v1/audit-logs/checkpoint (root + sign + store) over ${size} entries: ${checkpoint.ms.toFixed(3)} ms`,
    );
  } finally {
    await app.close();
  }
}

await main();
