import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  canonicalJson,
  keyFingerprint,
  parseVerifierKey,
  type ReceiptVerification,
  verifyReceipt,
} from '../console/verify.js';
import { auditEntryHash } from '../src/domain/audit.ts';
import { canonicalJson as serverCanonicalJson } from '../src/domain/canonical-json.ts';
import { noteKeyHash, signedNote, verifierKey } from '../src/domain/signed-note.ts';
import { auditKeyFingerprint } from '../src/security/key-fingerprints.ts';
import { http, listenOnLoopback, startTestApp, type TestApp } from './support/harness.ts';

/**
 * The console's in-browser receipt verifier (console/verify.js: Web Crypto only, no server code) against
 * receipts from the real server over HTTP: every genuine receipt verifies, and each kind of tampering fails
 * the check that is about it, with the checks that depend on it listed as skipped.
 */

// biome-ignore lint/suspicious/noExplicitAny: receipts are parsed JSON, edited field by field below
type Receipt = any;

const CHECKS = ['verifier key', 'checkpoint signature', 'entry hash', 'inclusion proof'];
const PAYMENTS = 20;

const clone = (receipt: Receipt): Receipt => structuredClone(receipt);
const treeSizeOf = (receipt: Receipt): number => Number(receipt.checkpoint.split('\n')[1]);
const noteBody = (note: string): string => note.slice(0, note.lastIndexOf('\n\n') + 1);
const isPowerOfTwo = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;

/** Which checks failed on their own and which were skipped because of them; asserts the shape on the way. */
function outcome(result: ReceiptVerification): { failed: string[]; skipped: string[] } {
  assert.deepEqual(
    result.checks.map((c) => c.name),
    CHECKS,
  );
  for (const check of result.checks) assert.ok(check.detail.length > 0, `${check.name} says why`);
  assert.equal(
    result.verified,
    result.checks.every((c) => c.ok),
  );
  const notOk = result.checks.filter((c) => !c.ok);
  return {
    failed: notOk.filter((c) => !c.detail.startsWith('not run')).map((c) => c.name),
    skipped: notOk.filter((c) => c.detail.startsWith('not run')).map((c) => c.name),
  };
}

/** Verifies a tampered receipt and asserts exactly `check` failed (its detail matching `detail`). */
async function assertFails(
  receipt: Receipt,
  vkey: string,
  check: string,
  detail: RegExp,
  skipped: string[] = [],
): Promise<void> {
  const result = await verifyReceipt(receipt, vkey);
  assert.equal(result.verified, false);
  assert.deepEqual(outcome(result), { failed: [check], skipped }, JSON.stringify(result.checks, null, 2));
  assert.match(result.checks.find((c) => c.name === check)!.detail, detail);
  for (const name of skipped) {
    assert.match(result.checks.find((c) => c.name === name)!.detail, new RegExp(`"${check}" check failed`));
  }
}

/** A signed note over `body` by a freshly generated Ed25519 key, and that key's verifier key. */
function signWithOtherKey(body: string, name: string, keyHash?: Buffer): { note: string; vkey: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  const signature = sign(null, Buffer.from(body, 'utf8'), privateKey);
  return {
    note: signedNote(body, name, keyHash ?? noteKeyHash(name, raw), signature),
    vkey: verifierKey(name, raw),
  };
}

describe('console/verify.js checks receipts from the real server', () => {
  let t: TestApp;
  let baseUrl: string;
  /** As served, trailing newline included: the verifier trims it. */
  let vkey: string;
  /** The Prefer: receipt answers, each against the checkpoint cut right after its payment. */
  const receipts: Receipt[] = [];
  /** GET /v1/payments/:id/receipt for the same payments afterwards: all against the latest checkpoint. */
  const laterReceipts: Receipt[] = [];

  before(async () => {
    t = await startTestApp({ env: { AUDIT_CHECKPOINT_INTERVAL_MS: '3600000' } });
    baseUrl = `http://127.0.0.1:${await listenOnLoopback(t)}`;
    for (let i = 0; i < PAYMENTS; i++) {
      const res = await http(baseUrl, 'POST', '/v1/payments', {
        idempotencyKey: `console-verify-${i}`,
        headers: { prefer: 'receipt' },
        body: {
          sourceAccountId: i % 2 === 0 ? 'acc_demo_alice_usd' : 'acc_demo_bob_usd',
          destinationAccountId: i % 2 === 0 ? 'acc_demo_bob_usd' : 'acc_demo_alice_usd',
          // One far over the balance: declined payments get receipts too.
          amountCents: i === 7 ? 90_000_000 : 1000 + i,
          currency: 'USD',
        },
      });
      assert.ok([201, 202, 422].includes(res.status), res.body);
      assert.equal(res.headers['preference-applied'], 'receipt');
      receipts.push(res.json.receipt);
    }
    for (const receipt of receipts) {
      const res = await http(baseUrl, 'GET', `/v1/payments/${receipt.entry.resourceId}/receipt`);
      assert.equal(res.status, 200, res.body);
      laterReceipts.push(res.json.receipt);
    }
    const key = await http(baseUrl, 'GET', '/v1/audit-logs/public-key');
    assert.equal(key.status, 200, key.body);
    vkey = key.body;
  });
  after(async () => {
    await t.destroy();
  });

  test('the receipts cover many leaves of trees of many sizes, not only powers of two', () => {
    const indexes = new Set(receipts.map((r) => r.index));
    assert.equal(indexes.size, PAYMENTS);
    const sizes = [...receipts, ...laterReceipts].map(treeSizeOf);
    assert.ok(sizes.filter((size) => !isPowerOfTwo(size)).length >= 10, `tree sizes ${sizes}`);
    // The log only grows: every later receipt proves its (early) leaf in a tree at least as big as the last.
    const lastSize = treeSizeOf(receipts.at(-1));
    assert.ok(laterReceipts.every((r) => treeSizeOf(r) >= lastSize));
    assert.ok(receipts.some((r) => r.entry.eventType === 'payment.declined'));
  });

  test('every genuine receipt verifies, each check saying what it compared', async () => {
    for (const receipt of [...receipts, ...laterReceipts]) {
      const result = await verifyReceipt(receipt, vkey);
      assert.deepEqual(outcome(result), { failed: [], skipped: [] }, JSON.stringify(result.checks, null, 2));
      assert.equal(result.verified, true);
      const [key, signature, hash, inclusion] = result.checks.map((c) => c.detail);
      assert.match(key!, /key hash [0-9a-f]{8} matches its name and key; fingerprint [0-9a-f]{16}$/);
      assert.match(signature!, new RegExp(`tree size ${treeSizeOf(receipt)}, root `));
      assert.match(hash!, new RegExp(`hashes to ${receipt.entry.hash}`));
      assert.match(
        inclusion!,
        new RegExp(`leaf #${receipt.index} of ${treeSizeOf(receipt)} to the checkpoint's root`),
      );
    }
  });

  test("with the payment shown, a receipt must be that payment's: another genuine receipt fails", async () => {
    const paymentOf = (receipt: Receipt) => {
      const m = receipt.entry.metadata as Record<string, unknown>;
      return {
        id: String(m['paymentId']),
        amountCents: Number(m['amountCents']),
        currency: String(m['currency']),
        sourceAccountId: String(m['sourceAccountId']),
        destinationAccountId: String(m['destinationAccountId']),
        decision: m['decision'] as { outcome: string; rules?: unknown[] },
      };
    };
    const [a, b] = [receipts[0]!, receipts[1]!];
    const own = await verifyReceipt(a, vkey, paymentOf(a));
    assert.equal(own.verified, true, JSON.stringify(own.checks));
    assert.equal(own.checks.at(-1)?.name, 'this payment');
    // A genuine receipt, of another payment: every cryptographic check passes, the binding does not.
    const swapped = await verifyReceipt(b, vkey, paymentOf(a));
    assert.equal(swapped.verified, false);
    assert.deepEqual(
      swapped.checks.filter((c) => !c.ok).map((c) => c.name),
      ['this payment'],
    );
    // The right id with another amount than the page shows: refused too.
    const other = await verifyReceipt(a, vkey, {
      ...paymentOf(a),
      amountCents: paymentOf(a).amountCents + 1,
    });
    assert.match(other.checks.at(-1)?.detail ?? '', /records amountCents/);
    assert.equal(other.verified, false);
    // Another decision than the logged one (a page showing an altered explanation): refused.
    const decision = paymentOf(a).decision as { outcome: string; rules: unknown[]; score: number };
    const altered = await verifyReceipt(a, vkey, {
      ...paymentOf(a),
      decision: { ...decision, score: decision.score + 1 },
    });
    assert.match(altered.checks.at(-1)?.detail ?? '', /not the decision the page shows/);
  });

  test("a later entry of the same payment (its approval) is not that payment's receipt", async () => {
    const held = await http(baseUrl, 'POST', '/v1/payments', {
      idempotencyKey: 'console-verify-held',
      body: {
        sourceAccountId: 'acc_demo_alice_usd',
        destinationAccountId: 'acc_demo_bob_usd',
        amountCents: 250_000,
        currency: 'USD',
      },
    });
    assert.equal(held.status, 202, held.body);
    const payment = held.json.payment;
    const approved = await http(baseUrl, 'POST', `/v1/payments/${payment.id}/approve`, { body: {} });
    assert.equal(approved.status, 201, approved.body);
    // A genuine receipt built on the approval entry: same payment id, amount and accounts, another fact.
    const logs = await http(baseUrl, 'GET', '/v1/audit-logs?limit=500');
    const entry = logs.json.logs.find(
      (e: { eventType: string; resourceId: string }) =>
        e.eventType === 'payment.approved' && e.resourceId === payment.id,
    );
    assert.ok(entry, 'the approval entry');
    const checkpoint = await http(baseUrl, 'GET', '/v1/audit-logs/checkpoint');
    const size = Number(checkpoint.body.split('\n')[1]);
    const proof = await http(
      baseUrl,
      'GET',
      `/v1/audit-logs/proofs/inclusion?index=${entry.index}&treeSize=${size}`,
    );
    const forged = {
      index: entry.index,
      entry,
      inclusionProof: proof.json.inclusionProof.hashes,
      checkpoint: checkpoint.body,
    };
    const result = await verifyReceipt(forged, vkey, { ...payment, status: 'posted' });
    assert.deepEqual(
      result.checks.filter((c) => !c.ok).map((c) => c.name),
      ['this payment'],
      JSON.stringify(result.checks),
    );
    // Its real receipt, the held_for_review entry, verifies against the payment as it is now (approved).
    const real = await http(baseUrl, 'GET', `/v1/payments/${payment.id}/receipt`);
    const current = await http(baseUrl, 'GET', `/v1/payments/${payment.id}`);
    const ok = await verifyReceipt(real.json.receipt, vkey, current.json.payment);
    assert.equal(ok.verified, true, JSON.stringify(ok.checks));
  });

  test('the verifier key parses, and its fingerprint is the server audit key fingerprint', async () => {
    const parsed = parseVerifierKey(vkey);
    assert.equal(parsed.name, 'localhost/payments-audit/sandbox');
    assert.match(parsed.keyHashHex, /^[0-9a-f]{8}$/);
    assert.equal(parsed.publicKey.length, 32);
    const signer = t.app.services.auditLog.signer;
    assert.deepEqual(Buffer.from(parsed.publicKey), signer.publicKey);
    assert.equal(parsed.keyHashHex, signer.keyHash.toString('hex'));
    const fingerprint = await keyFingerprint(parsed.publicKey);
    assert.equal(fingerprint, auditKeyFingerprint(signer.publicKey));
    assert.equal(fingerprint, auditKeyFingerprint(Buffer.from(parsed.publicKey)));

    const [name, hash, key] = [parsed.name, parsed.keyHashHex, vkey.trim().split('+').slice(2).join('+')];
    for (const [bad, message] of [
      ['', /no valid name/],
      [`${name}`, /key hash/],
      [`${name}+${hash}`, /not an Ed25519 key/],
      [`${name}+ABCDEF01+${key}`, /8 lowercase hex/],
      [`${name}+${hash}+${key.slice(0, -4)}`, /not an Ed25519 key/],
      [
        `${name}+${hash}+${Buffer.concat([Buffer.from([0x02]), signer.publicKey]).toString('base64')}`,
        /not an Ed25519 key/,
      ],
      [`${name}+${hash}+ ${key}`, /not base64/],
      [`has space+${hash}+${key}`, /no valid name/],
    ] as const) {
      assert.throws(() => parseVerifierKey(bad), message, bad);
    }
  });

  test('canonicalJson writes what the server writes', () => {
    const values: unknown[] = [
      ...receipts.map(({ entry: { hash: _hash, ...rest } }) => rest),
      { b: 1, a: [true, false, null, 'x'], é: { z: undefined, y: '\u2028"\\' }, A: -9007199254740991 },
      { '\ud83d\ude00': 1, '\uff61': 2, '': 3, aa: [], a: {} },
    ];
    for (const value of values) assert.equal(canonicalJson(value), serverCanonicalJson(value));
    for (const bad of [1.5, Number.NaN, 2 ** 53, undefined, () => 1, 1n]) {
      assert.throws(() => canonicalJson(bad));
    }
  });

  test('a flipped byte in any proof hash fails the inclusion proof', async () => {
    const receipt = receipts.find((r) => r.inclusionProof.length >= 3)!;
    for (let i = 0; i < receipt.inclusionProof.length; i++) {
      const tampered = clone(receipt);
      const bytes = Buffer.from(tampered.inclusionProof[i], 'base64');
      bytes[i % 32] = bytes[i % 32]! ^ 0x01;
      tampered.inclusionProof[i] = bytes.toString('base64');
      await assertFails(tampered, vkey, 'inclusion proof', /leads to a root that is not the checkpoint's/);
    }
  });

  test('a proof with a hash removed or added, or a hash of the wrong length, fails the inclusion proof', async () => {
    for (const receipt of [receipts[5], receipts[PAYMENTS - 1], laterReceipts[0]]) {
      for (let i = 0; i < receipt.inclusionProof.length; i++) {
        const shorter = clone(receipt);
        shorter.inclusionProof.splice(i, 1);
        await assertFails(shorter, vkey, 'inclusion proof', /proof hashes is the wrong number/);
      }
      const longer = clone(receipt);
      longer.inclusionProof.push(receipt.inclusionProof[0]);
      await assertFails(longer, vkey, 'inclusion proof', /proof hashes is the wrong number/);
      const truncated = clone(receipt);
      truncated.inclusionProof[0] = Buffer.alloc(31, 1).toString('base64');
      await assertFails(truncated, vkey, 'inclusion proof', /proof hash 0 is 31 bytes, not 32/);
    }
  });

  test('a changed amount fails the entry hash; with the hash recomputed, the inclusion proof', async () => {
    const receipt = receipts[3];
    assert.equal(typeof receipt.entry.metadata.amountCents, 'number');
    const tampered = clone(receipt);
    tampered.entry.metadata.amountCents += 1;
    await assertFails(tampered, vkey, 'entry hash', /contents hash to [0-9a-f]{64}/, ['inclusion proof']);
    tampered.entry.hash = auditEntryHash(tampered.entry);
    await assertFails(tampered, vkey, 'inclusion proof', /not the checkpoint's/);

    const extra = clone(receipt);
    extra.entry.note = 'added after signing';
    await assertFails(extra, vkey, 'entry hash', /a field its hash does not cover: note/, [
      'inclusion proof',
    ]);
  });

  test('a changed index fails the entry hash; with the entry re-hashed, the inclusion proof', async () => {
    const receipt = laterReceipts[6];
    const moved = clone(receipt);
    moved.index += 1;
    await assertFails(moved, vkey, 'entry hash', /the receipt says #/, ['inclusion proof']);

    for (const index of [receipt.index - 1, receipt.index + 1]) {
      const forged = clone(receipt);
      forged.index = index;
      forged.entry.index = index;
      forged.entry.hash = auditEntryHash(forged.entry);
      await assertFails(forged, vkey, 'inclusion proof', /not the checkpoint's/);
    }
    const outside = clone(receipt);
    outside.index = treeSizeOf(receipt);
    outside.entry.index = outside.index;
    outside.entry.hash = auditEntryHash(outside.entry);
    await assertFails(outside, vkey, 'inclusion proof', /is not in the checkpoint's tree/);
  });

  test('an edited checkpoint (tree size, root) fails the checkpoint signature', async () => {
    const receipt = receipts[9];
    const [origin, size, root, ...rest] = receipt.checkpoint.split('\n');
    for (const lines of [
      [origin, String(Number(size) + 1), root],
      [origin, String(Number(size) - 1), root],
      [origin, size, laterReceipts[0].checkpoint.split('\n')[2]],
    ]) {
      const tampered = clone(receipt);
      tampered.checkpoint = [...lines, ...rest].join('\n');
      await assertFails(tampered, vkey, 'checkpoint signature', /does not verify/, ['inclusion proof']);
    }
    const unsigned = clone(receipt);
    unsigned.checkpoint = noteBody(receipt.checkpoint);
    await assertFails(unsigned, vkey, 'checkpoint signature', /not a signed note/, ['inclusion proof']);
  });

  test('a checkpoint signed by another Ed25519 key fails the checkpoint signature', async () => {
    const receipt = receipts[12];
    const { name } = parseVerifierKey(vkey);
    const body = noteBody(receipt.checkpoint);

    // Signed under the log's name by another key: its key hash is not the pinned one.
    const other = signWithOtherKey(body, name);
    await assertFails(
      { ...receipt, checkpoint: other.note },
      vkey,
      'checkpoint signature',
      /has no signature by localhost\/payments-audit\/sandbox\+[0-9a-f]{8}$/,
      ['inclusion proof'],
    );
    // Claiming the pinned key hash too: the signature itself does not verify.
    const forged = signWithOtherKey(body, name, Buffer.from(parseVerifierKey(vkey).keyHashHex, 'hex'));
    await assertFails(
      { ...receipt, checkpoint: forged.note },
      vkey,
      'checkpoint signature',
      /does not verify/,
      ['inclusion proof'],
    );
    // The control: pinning that other key, the very same receipt verifies, so only the key made the difference.
    assert.equal((await verifyReceipt({ ...receipt, checkpoint: other.note }, other.vkey)).verified, true);

    // A checkpoint of another log, validly signed under this name, is refused for its origin.
    const elsewhere = signWithOtherKey(body.replace(/^[^\n]+/, 'example.com/other-log'), name);
    await assertFails(
      { ...receipt, checkpoint: elsewhere.note },
      elsewhere.vkey,
      'checkpoint signature',
      /origin "example.com\/other-log" is not localhost\/payments-audit\/sandbox/,
      ['inclusion proof'],
    );
  });

  test('a verifier key with a wrong key hash fails the verifier key check; the signature is not checked', async () => {
    const receipt = receipts[0];
    const [name, hash, ...key] = vkey.trim().split('+');
    const wrong = `${name}+${hash!.slice(0, -1)}${hash!.endsWith('0') ? '1' : '0'}+${key.join('+')}`;
    await assertFails(receipt, wrong, 'verifier key', /does not match the name and key/, [
      'checkpoint signature',
      'inclusion proof',
    ]);
    await assertFails(receipt, `other/log+${hash}+${key.join('+')}`, 'verifier key', /does not match/, [
      'checkpoint signature',
      'inclusion proof',
    ]);
  });

  test('anything that is not a receipt fails its checks and never throws', async () => {
    const receipt = receipts[4];
    const cases: [unknown, string, string[]][] = [
      [null, vkey, ['checkpoint signature', 'entry hash']],
      ['receipt', vkey, ['checkpoint signature', 'entry hash']],
      [{ ...receipt, checkpoint: 42 }, vkey, ['checkpoint signature']],
      [{ ...receipt, checkpoint: `${receipt.checkpoint}junk\n` }, vkey, ['checkpoint signature']],
      [{ ...receipt, entry: [] }, vkey, ['entry hash']],
      [{ ...receipt, entry: { ...receipt.entry, metadata: { x: 0.5 } } }, vkey, ['entry hash']],
      [{ ...receipt, index: String(receipt.index) }, vkey, ['entry hash']],
      [{ ...receipt, inclusionProof: 'x' }, vkey, ['inclusion proof']],
      [{ ...receipt, inclusionProof: [42] }, vkey, ['inclusion proof']],
      [{ ...receipt, inclusionProof: ['not base64!'] }, vkey, ['inclusion proof']],
      [receipt, 'nonsense', ['verifier key']],
      [receipt, undefined as unknown as string, ['verifier key']],
    ];
    for (const [input, key, failed] of cases) {
      const result = await verifyReceipt(input, key);
      assert.equal(result.verified, false);
      assert.deepEqual(outcome(result).failed, failed, JSON.stringify(result.checks, null, 2));
    }
  });
});
