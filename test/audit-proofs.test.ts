import assert from 'node:assert/strict';
import { createHash, createPublicKey, verify } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { createApiKey } from '../src/app/api-keys.ts';
import { SYSTEM_ACTOR } from '../src/app/services.ts';
import {
  dumpAuditPages,
  getText,
  makePayments,
  openRawDb,
  readEntries,
  rebuildMerkleNodes,
  rewriteLog,
} from './support/audit-log.ts';
import { startTestApp, type TestApp } from './support/harness.ts';

/**
 * The verifiable audit log through the API, checked by an INDEPENDENT verifier written in this file from the
 * specifications alone (RFC 6962 section 2.1 for the tree, RFC 9162 section 2.1.3.2 / 2.1.4.2 for proof
 * verification, RFC 8785 for the leaf bytes, C2SP signed-note / tlog-checkpoint for the signed checkpoints).
 * Nothing below the "independent verifier" line imports the project's code.
 */

// ===== independent verifier ==============================================================================

const H = (...parts: (Buffer | number[])[]) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(Buffer.isBuffer(p) ? p : Buffer.from(p));
  return h.digest();
};

/** RFC 8785 for the JSON an audit entry holds (strings, safe integers, booleans, null, arrays, objects). */
function jcs(v: unknown): string {
  if (Array.isArray(v)) return '[' + v.map(jcs).join(',') + ']';
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return (
      '{' +
      Object.keys(o)
        .sort()
        .map((k) => JSON.stringify(k) + ':' + jcs(o[k]))
        .join(',') +
      '}'
    );
  }
  return JSON.stringify(v);
}

/** Leaf hash of an entry as the API returns it: SHA-256(0x00 || JCS(entry without `hash`)). */
function leafOf(entry: Record<string, unknown>): Buffer {
  const copy = { ...entry };
  delete copy['hash'];
  return H([0], Buffer.from(jcs(copy), 'utf8'));
}

/** MTH, RFC 6962 2.1: k is the largest power of two smaller than n. */
function mth(leaves: Buffer[]): Buffer {
  if (leaves.length === 0) return H([]);
  if (leaves.length === 1) return leaves[0]!;
  let k = 1;
  while (k << 1 < leaves.length) k <<= 1;
  return H([1], mth(leaves.slice(0, k)), mth(leaves.slice(k)));
}

/** RFC 9162 2.1.3.2, with BigInt so the bit operations mean what the RFC means. */
function inclusionOk(index: number, size: number, leaf: Buffer, path: Buffer[], root: Buffer): boolean {
  let fn = BigInt(index);
  let sn = BigInt(size) - 1n;
  if (fn > sn) return false;
  let r = leaf;
  for (const p of path) {
    if (sn === 0n) return false;
    if ((fn & 1n) === 1n || fn === sn) {
      r = H([1], p, r);
      while ((fn & 1n) === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      r = H([1], r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n && r.equals(root);
}

/** RFC 9162 2.1.4.2 (first < second; equal sizes need equal roots and an empty path). */
function consistencyOk(first: number, second: number, r1: Buffer, r2: Buffer, path: Buffer[]): boolean {
  if (first === second) return path.length === 0 && r1.equals(r2);
  if (first > second || path.length === 0) return false;
  let fn = BigInt(first) - 1n;
  let sn = BigInt(second) - 1n;
  const proof = (BigInt(first) & fn) === 0n ? [r1, ...path] : [...path];
  while ((fn & 1n) === 1n) {
    fn >>= 1n;
    sn >>= 1n;
  }
  let fr = proof[0]!;
  let sr = proof[0]!;
  for (const c of proof.slice(1)) {
    if (sn === 0n) return false;
    if ((fn & 1n) === 1n || fn === sn) {
      fr = H([1], c, fr);
      sr = H([1], c, sr);
      while ((fn & 1n) === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      sr = H([1], sr, c);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n && fr.equals(r1) && sr.equals(r2);
}

interface OpenedCheckpoint {
  origin: string;
  size: number;
  root: Buffer;
}

/** C2SP signed-note + tlog-checkpoint: verify the Ed25519 signature line for the verifier key, then parse. */
function openNote(note: string, vkey: string): OpenedCheckpoint {
  const [name, hashHex] = vkey.split('+', 2) as [string, string];
  const keyBytes = Buffer.from(vkey.slice(name.length + hashHex.length + 2), 'base64');
  assert.equal(keyBytes[0], 0x01, 'an Ed25519 verifier key');
  assert.equal(
    H(Buffer.from(name + '\n'), keyBytes)
      .subarray(0, 4)
      .toString('hex'),
    hashHex,
    'key hash',
  );
  const publicKey = createPublicKey({
    key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), keyBytes.subarray(1)]),
    format: 'der',
    type: 'spki',
  });
  const cut = note.lastIndexOf('\n\n');
  const text = note.slice(0, cut + 1);
  const lines = note
    .slice(cut + 2)
    .split('\n')
    .filter((l) => l !== '');
  const ours = lines.map((l) => l.split(' ')).find(([dash, who]) => dash === '\u2014' && who === name);
  assert.ok(ours, 'a signature line by the log');
  const blob = Buffer.from(ours[2]!, 'base64');
  assert.equal(blob.subarray(0, 4).toString('hex'), hashHex, 'signature key hash');
  assert.ok(verify(null, Buffer.from(text), publicKey, blob.subarray(4)), 'Ed25519 signature');
  const [origin, size, root] = text.split('\n');
  assert.equal(origin, name);
  assert.match(size!, /^(0|[1-9][0-9]*)$/);
  return { origin: origin!, size: Number(size), root: Buffer.from(root!, 'base64') };
}

// ===== the tests =========================================================================================

const b64list = (hashes: string[]) => hashes.map((h) => Buffer.from(h, 'base64'));

async function allEntries(t: TestApp): Promise<Record<string, unknown>[]> {
  return (await dumpAuditPages(t, 500)).flatMap((page) => JSON.parse(page).logs);
}

/** The entries of a stopped app's database, shaped as the API returns them. */
async function readEntriesAsApi(t: TestApp): Promise<Record<string, unknown>[]> {
  const raw = await openRawDb(t.db);
  try {
    return (await readEntries(raw)).map((e) => ({ ...e }));
  } finally {
    await raw.close();
  }
}

describe('the verifiable audit log, checked independently', () => {
  let t: TestApp;
  let auditorToken: string;
  let vkey: string;

  before(async () => {
    t = await startTestApp({ env: { AUDIT_CHECKPOINT_INTERVAL_MS: '3600000' } });
    auditorToken = (await createApiKey(t.app.services, SYSTEM_ACTOR, 'auditor', 'audit test')).secret;
    vkey = (await getText(t, '/v1/audit-logs/public-key', auditorToken)).trim();
    await makePayments(t, 11);
  });
  after(async () => {
    await t.destroy();
  });

  test('the public key is a C2SP Ed25519 verifier key named after the origin', () => {
    assert.match(vkey, /^localhost\/payments-audit\/sandbox\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44}$/);
  });

  test('checkpoints, inclusion and consistency proofs all verify', async () => {
    const first = await t.request('GET', '/v1/audit-logs/checkpoint', { token: auditorToken });
    assert.equal(first.status, 200);
    assert.match(String(first.headers['content-type']), /^text\/plain/);
    const c1 = openNote(first.body, vkey);
    const entries = await allEntries(t);
    assert.equal(c1.size, entries.length);
    const leaves = entries.map(leafOf);
    assert.ok(mth(leaves).equals(c1.root), 'the root recomputes from the entries');

    for (let index = 0; index < c1.size; index++) {
      for (const treeSize of new Set([index + 1, c1.size])) {
        const res = await t.request(
          'GET',
          `/v1/audit-logs/proofs/inclusion?index=${index}&treeSize=${treeSize}`,
          {
            token: auditorToken,
          },
        );
        assert.equal(res.status, 200, res.body);
        assert.deepEqual(res.json.inclusionProof.index, index);
        const path = b64list(res.json.inclusionProof.hashes);
        assert.ok(
          inclusionOk(index, treeSize, leaves[index]!, path, mth(leaves.slice(0, treeSize))),
          `${index}/${treeSize}`,
        );
      }
    }

    await makePayments(t, 6);
    const c2 = openNote(await getText(t, '/v1/audit-logs/checkpoint', auditorToken), vkey);
    assert.ok(c2.size > c1.size);
    const more = (await allEntries(t)).map(leafOf);
    assert.ok(mth(more.slice(0, c2.size)).equals(c2.root));
    for (let from = 1; from <= c2.size; from++) {
      const res = await t.request('GET', `/v1/audit-logs/proofs/consistency?from=${from}&to=${c2.size}`, {
        token: auditorToken,
      });
      assert.equal(res.status, 200, res.body);
      const path = b64list(res.json.consistencyProof.hashes);
      assert.ok(consistencyOk(from, c2.size, mth(more.slice(0, from)), c2.root, path), `from ${from}`);
    }
    const proof = await t.request('GET', `/v1/audit-logs/proofs/consistency?from=${c1.size}&to=${c2.size}`);
    assert.ok(consistencyOk(c1.size, c2.size, c1.root, c2.root, b64list(proof.json.consistencyProof.hashes)));
    // A tampered proof does not verify.
    const forged = b64list(proof.json.consistencyProof.hashes).map((h, i) => (i === 0 ? H(h) : h));
    assert.ok(!consistencyOk(c1.size, c2.size, c1.root, c2.root, forged));
  });

  test('an unchanged log gets the same checkpoint again; the chain verify endpoint still works', async () => {
    const a = await getText(t, '/v1/audit-logs/checkpoint', auditorToken);
    const b = await getText(t, '/v1/audit-logs/checkpoint', auditorToken);
    assert.equal(a, b);
    const verify = await t.request('GET', '/v1/audit-logs/verify', { token: auditorToken });
    assert.equal(verify.status, 200);
    assert.equal(verify.json.verification.valid, true);
    assert.equal(verify.json.verification.size, openNote(a, vkey).size);
  });

  test('GET /v1/audit-logs/entries/:index returns the entry exactly as the list does', async () => {
    const entries = await allEntries(t);
    for (const index of [0, 3, entries.length - 1]) {
      const res = await t.request('GET', `/v1/audit-logs/entries/${index}`, { token: auditorToken });
      assert.equal(res.status, 200);
      assert.equal(JSON.stringify(res.json.entry), JSON.stringify(entries[index]));
    }
    const missing = await t.request('GET', `/v1/audit-logs/entries/${entries.length + 5}`);
    assert.equal(missing.status, 404);
    assert.equal(missing.json.error.code, 'AUDIT_ENTRY_NOT_FOUND');
    for (const bad of ['-1', 'abc', '01', '1.5', '99999999999999999999']) {
      const res = await t.request('GET', `/v1/audit-logs/entries/${bad}`);
      assert.equal(res.status, 400, `${bad}: ${res.body}`);
      assert.equal(res.json.error.code, 'VALIDATION_ERROR');
    }
  });

  test('bad proof parameters are 400 VALIDATION_ERROR, never 500', async () => {
    const size = JSON.parse((await t.request('GET', '/v1/audit-logs?limit=1')).body).total as number;
    const bad = [
      'inclusion',
      'inclusion?index=0',
      'inclusion?treeSize=1',
      'inclusion?index=x&treeSize=1',
      'inclusion?index=-1&treeSize=1',
      'inclusion?index=1&treeSize=1',
      'inclusion?index=0&treeSize=0',
      `inclusion?index=0&treeSize=${size + 1}`,
      'inclusion?index=0&treeSize=99999999999999999999',
      'inclusion?index=0&treeSize=1&extra=1',
      'inclusion?index=0.5&treeSize=2',
      'consistency',
      'consistency?from=0&to=1',
      'consistency?from=2&to=1',
      `consistency?from=1&to=${size + 1}`,
      'consistency?from=a&to=b',
    ];
    for (const query of bad) {
      const res = await t.request('GET', `/v1/audit-logs/proofs/${query}`, { token: auditorToken });
      assert.equal(res.status, 400, `${query}: ${res.body}`);
      assert.equal(res.json.error.code, 'VALIDATION_ERROR', query);
    }
    const same = await t.request('GET', `/v1/audit-logs/proofs/consistency?from=${size}&to=${size}`);
    assert.equal(same.status, 200);
    assert.deepEqual(same.json.consistencyProof.hashes, []);
  });

  test('only auditors (and admins) may read the verifiable log; every key may read its verifier key', async () => {
    const payments = (await createApiKey(t.app.services, SYSTEM_ACTOR, 'payments', 'not an auditor')).secret;
    // Public by nature: any key checks receipts with it (the console, issue 16); still not without a key.
    assert.equal((await t.request('GET', '/v1/audit-logs/public-key', { token: payments })).status, 200);
    assert.equal((await t.request('GET', '/v1/audit-logs/public-key', { token: null })).status, 401);
    for (const path of [
      '/v1/audit-logs/checkpoint',
      '/v1/audit-logs/entries/0',
      '/v1/audit-logs/proofs/inclusion?index=0&treeSize=1',
      '/v1/audit-logs/proofs/consistency?from=1&to=1',
    ]) {
      assert.equal((await t.request('GET', path, { token: payments })).status, 403, path);
      assert.equal((await t.request('GET', path, { token: null })).status, 401, path);
      assert.equal((await t.request('GET', path, { token: auditorToken })).status, 200, path);
    }
  });

  test('Prefer: receipt returns a receipt that verifies; the stored response stays byte-identical', async () => {
    const body = {
      sourceAccountId: 'acc_demo_alice_usd',
      destinationAccountId: 'acc_demo_bob_usd',
      amountCents: 4321,
      currency: 'USD',
    };
    const first = await t.request('POST', '/v1/payments', {
      body,
      idempotencyKey: 'receipt-1',
      headers: { prefer: 'respond-async, Receipt' },
    });
    assert.ok([201, 202].includes(first.status), first.body);
    assert.equal(first.headers['preference-applied'], 'receipt');
    assert.equal(first.headers['idempotency-replayed'], 'false');
    const { receipt, ...response } = first.json;
    assert.equal(receipt.entry.resourceId, response.payment.id);
    assert.equal(receipt.entry.index, receipt.index);
    const checkpoint = openNote(receipt.checkpoint, vkey);
    assert.ok(checkpoint.size > receipt.index);
    assert.ok(
      inclusionOk(
        receipt.index,
        checkpoint.size,
        leafOf(receipt.entry),
        b64list(receipt.inclusionProof),
        checkpoint.root,
      ),
    );

    // Without the preference, a replay is the stored bytes: exactly the first response minus the receipt.
    const replay = await t.request('POST', '/v1/payments', { body, idempotencyKey: 'receipt-1' });
    assert.equal(replay.headers['idempotency-replayed'], 'true');
    assert.equal(replay.headers['preference-applied'], undefined);
    assert.equal(replay.body, first.body.slice(0, first.body.indexOf(',"receipt":')) + '}');
    assert.deepEqual(replay.json, response);

    // With it, a replay is those same bytes plus a receipt for the same entry.
    const again = await t.request('POST', '/v1/payments', {
      body,
      idempotencyKey: 'receipt-1',
      headers: { prefer: 'receipt' },
    });
    assert.equal(again.headers['idempotency-replayed'], 'true');
    assert.ok(again.body.startsWith(replay.body.slice(0, -1) + ',"receipt":'));
    assert.equal(again.json.receipt.index, receipt.index);
  });

  test('a declined payment gets a receipt too (its decision is logged)', async () => {
    const res = await t.request('POST', '/v1/payments', {
      idempotencyKey: 'receipt-declined',
      headers: { prefer: 'receipt' },
      body: {
        sourceAccountId: 'acc_demo_bob_usd',
        destinationAccountId: 'acc_demo_alice_usd',
        amountCents: 90_000_000,
        currency: 'USD',
      },
    });
    assert.equal(res.status, 422, res.body);
    const checkpoint = openNote(res.json.receipt.checkpoint, vkey);
    assert.equal(res.json.receipt.entry.eventType, 'payment.declined');
    assert.ok(
      inclusionOk(
        res.json.receipt.index,
        checkpoint.size,
        leafOf(res.json.receipt.entry),
        b64list(res.json.receipt.inclusionProof),
        checkpoint.root,
      ),
    );
  });
});

describe('checkpoints over time and under tampering', () => {
  test('two processes on one database cut only increasing, mutually consistent checkpoints', async () => {
    const fast = { env: { AUDIT_CHECKPOINT_INTERVAL_MS: '10' } };
    const a = await startTestApp(fast);
    const b = await startTestApp({ ...fast, db: a.db });
    try {
      const vkey = (await getText(a, '/v1/audit-logs/public-key')).trim();
      assert.equal((await getText(b, '/v1/audit-logs/public-key')).trim(), vkey, 'one key per deployment');
      // Payments and on-demand cuts on both at once, while both timers cut too.
      await Promise.all([
        makePayments(a, 12),
        makePayments(b, 12),
        ...Array.from({ length: 10 }, (_, i) => getText(i % 2 === 0 ? a : b, '/v1/audit-logs/checkpoint')),
      ]);
      await getText(a, '/v1/audit-logs/checkpoint');
      await a.close();
      await b.close();

      const raw = await openRawDb(a.db);
      const notes = (await raw.all('SELECT note FROM audit_checkpoints ORDER BY tree_size')).map(
        (r) => r['note'] as string,
      );
      await raw.close();
      const leaves = (await readEntriesAsApi(a)).map(leafOf);
      const checkpoints = notes.map((note) => openNote(note, vkey));
      assert.ok(checkpoints.length >= 2, `only ${checkpoints.length} checkpoints`);
      assert.equal(checkpoints[checkpoints.length - 1]!.size, leaves.length);
      for (const [i, c] of checkpoints.entries()) {
        assert.ok(
          mth(leaves.slice(0, c.size)).equals(c.root),
          `checkpoint ${c.size} commits to the log's prefix`,
        );
        if (i > 0) assert.ok(c.size > checkpoints[i - 1]!.size, 'sizes strictly increase');
      }
    } finally {
      await a.close();
      await b.close();
      await a.db.drop();
    }
  });

  test('a checkpoint is cut every AUDIT_CHECKPOINT_INTERVAL_MS while the log grows', async () => {
    const t = await startTestApp({ env: { AUDIT_CHECKPOINT_INTERVAL_MS: '20' } });
    try {
      await makePayments(t, 2);
      const reads = t.app.services.store.reads;
      const size = await reads.auditMerkleSize();
      const deadline = Date.now() + 5000;
      while (((await reads.latestAuditCheckpoint())?.treeSize ?? -1) < size) {
        assert.ok(Date.now() < deadline, 'no checkpoint was cut in time');
        await new Promise((r) => setTimeout(r, 10));
      }
    } finally {
      await t.destroy();
    }
  });

  test('the server refuses to sign a log that is not an extension of its last checkpoint', async () => {
    const t = await startTestApp({ env: { AUDIT_CHECKPOINT_INTERVAL_MS: '3600000' } });
    try {
      await makePayments(t, 5);
      await getText(t, '/v1/audit-logs/checkpoint');
      await t.close();

      // History rewritten under the signed checkpoint (entries re-chained, Merkle nodes recomputed): the
      // next cut's consistency check against the stored checkpoint fails, so nothing is signed.
      const raw = await openRawDb(t.db);
      const [entry] = (await readEntries(raw)).slice(3);
      await rewriteLog(raw, 3, { ...entry!.metadata, amountCents: 1 }, { keepCheckpoints: true });
      await raw.close();
      const again = await startTestApp({ db: t.db, env: { AUDIT_CHECKPOINT_INTERVAL_MS: '3600000' } });
      await makePayments(again, 1);
      const res = await again.request('GET', '/v1/audit-logs/checkpoint');
      assert.equal(res.status, 500, res.body);
      assert.equal(res.json.error.code, 'AUDIT_LOG_INCONSISTENT');
      await again.close();
    } finally {
      await t.destroy();
    }
  });

  test('a truncated tail is refused: the server never signs a smaller tree', async () => {
    const t = await startTestApp({ env: { AUDIT_CHECKPOINT_INTERVAL_MS: '3600000' } });
    try {
      await makePayments(t, 6);
      const signed = (await getText(t, '/v1/audit-logs/checkpoint')).split('\n')[1];
      await t.close();
      // Entries, Merkle nodes and head all agree on the shorter log; the signed checkpoint remembers more.
      const raw = await openRawDb(t.db);
      await raw.run('DELETE FROM audit_entries WHERE idx >= ?', [Number(signed) - 3]);
      await rebuildMerkleNodes(raw);
      await raw.close();
      const again = await startTestApp({ db: t.db, env: { AUDIT_CHECKPOINT_INTERVAL_MS: '3600000' } });
      const res = await again.request('GET', '/v1/audit-logs/checkpoint');
      assert.equal(res.status, 500, res.body);
      assert.equal(res.json.error.code, 'AUDIT_LOG_INCONSISTENT');
      await again.close();
    } finally {
      await t.destroy();
    }
  });

  test('an existing log without Merkle nodes (before migration 3) gets them at start-up', async () => {
    const t = await startTestApp({ env: { AUDIT_CHECKPOINT_INTERVAL_MS: '3600000' } });
    try {
      await makePayments(t, 9);
      const vkey = (await getText(t, '/v1/audit-logs/public-key')).trim();
      await t.close();
      const raw = await openRawDb(t.db);
      await raw.run('DELETE FROM audit_merkle_nodes');
      await raw.run('DELETE FROM audit_checkpoints');
      await raw.run('UPDATE audit_head SET merkle_size = 0');
      const size = (await readEntries(raw)).length;
      await raw.close();

      const again = await startTestApp({ db: t.db, env: { AUDIT_CHECKPOINT_INTERVAL_MS: '3600000' } });
      try {
        assert.match(again.logs.text(), /built the audit log Merkle tree/);
        const checkpoint = openNote(await getText(again, '/v1/audit-logs/checkpoint'), vkey);
        assert.equal(checkpoint.size, size);
        const leaves = (await allEntries(again)).map(leafOf);
        assert.ok(mth(leaves).equals(checkpoint.root));
        const res = await again.request('GET', `/v1/audit-logs/proofs/inclusion?index=4&treeSize=${size}`);
        assert.ok(inclusionOk(4, size, leaves[4]!, b64list(res.json.inclusionProof.hashes), checkpoint.root));
        await makePayments(again, 2); // appends continue on the rebuilt tree
        const later = openNote(await getText(again, '/v1/audit-logs/checkpoint'), vkey);
        assert.ok(mth((await allEntries(again)).map(leafOf)).equals(later.root));
      } finally {
        await again.close();
      }
    } finally {
      await t.destroy();
    }
  });
});
