import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import Database from 'better-sqlite3';
import pg from 'pg';
import { type AuditEntry, auditEntryHash, GENESIS_HASH } from '../../src/domain/audit.ts';
import { auditLeafHash } from '../../src/domain/audit-tree.ts';
import { type MerkleNode, nodeKey, nodesCompletedBy } from '../../src/domain/merkle.ts';
import { SANDBOX_SCHEMA, sandboxPath } from '../../src/storage/open-store.ts';
import { runScript } from './foundation.ts';
import { backend, type TestApp, type TestDatabase } from './harness.ts';

/**
 * Helpers for the verifiable audit log tests: traffic that appends entries, raw database access for the
 * tamper scenarios (what an attacker with write access to the database can do, recomputing hashes and Merkle
 * nodes with the project's own code), and a runner for the offline verifier CLI.
 */
export type Row = Record<string, unknown>;

export interface RawDb {
  all(sql: string, params?: unknown[]): Promise<Row[]>;
  run(sql: string, params?: unknown[]): Promise<void>;
  close(): Promise<void>;
}

/** A raw connection to the test database (`?` placeholders on both backends). Close the app first. */
export async function openRawDb(db: TestDatabase): Promise<RawDb> {
  if (backend === 'sqlite') {
    // The test store: the demo key's data (docs/decisions/0026-sandbox.md).
    const conn = new Database(sandboxPath(db.sqlitePath!));
    conn.pragma('busy_timeout = 5000');
    return {
      all: async (sql, params = []) => conn.prepare(sql).all(...params) as Row[],
      run: async (sql, params = []) => void conn.prepare(sql).run(...params),
      close: async () => {
        conn.close();
      },
    };
  }
  const client = new pg.Client({ connectionString: db.url, options: `-c search_path=${SANDBOX_SCHEMA}` });
  await client.connect();
  const numbered = (sql: string) => {
    let n = 0;
    return sql.replace(/\?/g, () => `$${++n}`);
  };
  return {
    all: async (sql, params = []) => (await client.query(numbered(sql), params)).rows,
    run: async (sql, params = []) => void (await client.query(numbered(sql), params)),
    close: () => client.end(),
  };
}

/** Appends `count` payment entries (demo accounts, varied amounts; the outcome does not matter here). */
export async function makePayments(t: TestApp, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const res = await t.request('POST', '/v1/payments', {
      idempotencyKey: `audit-${randomUUID()}`,
      body: {
        sourceAccountId: i % 2 === 0 ? 'acc_demo_alice_usd' : 'acc_demo_bob_usd',
        destinationAccountId: i % 2 === 0 ? 'acc_demo_bob_usd' : 'acc_demo_alice_usd',
        amountCents: 100 + i,
        currency: 'USD',
      },
    });
    assert.ok([201, 202, 422].includes(res.status), res.body);
  }
}

/** Every page of GET /v1/audit-logs, as the JSON bodies an auditor would save. */
export async function dumpAuditPages(t: TestApp, limit = 7): Promise<string[]> {
  const pages: string[] = [];
  let cursor: string | null = null;
  for (;;) {
    const query: string = cursor === null ? `limit=${limit}` : `limit=${limit}&cursor=${cursor}`;
    const res = await t.request('GET', `/v1/audit-logs?${query}`);
    assert.equal(res.status, 200, res.body);
    pages.push(res.body);
    if (!res.json.hasMore) return pages;
    cursor = res.json.nextCursor;
  }
}

export async function getText(t: TestApp, path: string, token?: string): Promise<string> {
  const res = await t.request('GET', path, token === undefined ? {} : { token });
  assert.equal(res.status, 200, res.body);
  return res.body;
}

// --- tampering ------------------------------------------------------------------------------------------

function entryFromRow(r: Row): AuditEntry {
  return {
    id: r['id'] as string,
    index: Number(r['idx']),
    timestamp: r['ts'] as string,
    eventType: r['event_type'] as string,
    actorId: r['actor_id'] as string,
    requestId: r['request_id'] as string,
    resourceType: r['resource_type'] as string,
    resourceId: r['resource_id'] as string,
    metadata: JSON.parse(r['metadata'] as string),
    prevHash: r['prev_hash'] as string,
    hash: r['hash'] as string,
  };
}

export async function readEntries(raw: RawDb): Promise<AuditEntry[]> {
  return (await raw.all('SELECT * FROM audit_entries ORDER BY idx')).map(entryFromRow);
}

/** Changes an entry's metadata in place, nothing else (the naive edit). */
export async function editMetadata(
  raw: RawDb,
  index: number,
  metadata: AuditEntry['metadata'],
): Promise<void> {
  await raw.run('UPDATE audit_entries SET metadata = ? WHERE idx = ?', [JSON.stringify(metadata), index]);
}

/** Recomputes every Merkle node from the entries, as the server would have written them. */
export async function rebuildMerkleNodes(raw: RawDb): Promise<void> {
  const entries = await readEntries(raw);
  const nodes = new Map<string, MerkleNode>();
  for (const entry of entries) {
    const completed = nodesCompletedBy(
      entry.index,
      auditLeafHash(entry),
      (id) => nodes.get(nodeKey(id))!.hash,
    );
    for (const node of completed) nodes.set(nodeKey(node), node);
  }
  await raw.run('DELETE FROM audit_merkle_nodes');
  for (const n of nodes.values()) {
    await raw.run('INSERT INTO audit_merkle_nodes (level, idx, hash) VALUES (?, ?, ?)', [
      n.level,
      n.index,
      n.hash.toString('hex'),
    ]);
  }
  const last = entries[entries.length - 1];
  await raw.run('UPDATE audit_head SET size = ?, merkle_size = ?, last_hash = ? WHERE id = 1', [
    entries.length,
    entries.length,
    last?.hash ?? GENESIS_HASH,
  ]);
}

/** Drops entries from `keep` on and makes everything else agree (nodes, head, later checkpoints). */
export async function truncateLog(raw: RawDb, keep: number): Promise<void> {
  await raw.run('DELETE FROM audit_entries WHERE idx >= ?', [keep]);
  await raw.run('DELETE FROM audit_checkpoints WHERE tree_size > ?', [keep]);
  await rebuildMerkleNodes(raw);
}

/**
 * The strongest attack: change one entry, re-chain every later entry, recompute every Merkle node, and drop
 * the stored checkpoints so the server happily signs the new history. Only a checkpoint saved OUTSIDE the
 * server catches this.
 */
export async function rewriteLog(
  raw: RawDb,
  index: number,
  metadata: AuditEntry['metadata'],
  options: { keepCheckpoints?: boolean } = {},
): Promise<void> {
  const entries = await readEntries(raw);
  let prevHash = index === 0 ? GENESIS_HASH : entries[index - 1]!.hash;
  for (const entry of entries.slice(index)) {
    const changed = { ...entry, metadata: entry.index === index ? metadata : entry.metadata, prevHash };
    const hash = auditEntryHash(changed);
    await raw.run('UPDATE audit_entries SET metadata = ?, prev_hash = ?, hash = ? WHERE idx = ?', [
      JSON.stringify(changed.metadata),
      prevHash,
      hash,
      entry.index,
    ]);
    prevHash = hash;
  }
  await rebuildMerkleNodes(raw);
  if (!options.keepCheckpoints) await raw.run('DELETE FROM audit_checkpoints');
}

// --- the offline verifier CLI ---------------------------------------------------------------------------

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `tools/audit-verify/verify.ts` in a child process (async: the server under test must keep serving). */
export async function runVerifier(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const { status, stdout, stderr } = await runScript('tools/audit-verify/verify.ts', args, env);
  return { code: status, stdout, stderr };
}
