import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createApiKey } from '../src/app/api-keys.ts';
import { SYSTEM_ACTOR } from '../src/app/services.ts';
import { AuditSigner } from '../src/security/audit-signer.ts';
import {
  type CliResult,
  dumpAuditPages,
  editMetadata,
  getText,
  makePayments,
  openRawDb,
  type RawDb,
  readEntries,
  rewriteLog,
  runVerifier,
  truncateLog,
} from './support/audit-log.ts';
import type { Json } from './support/fixtures.ts';
import { startTestApp, type TestApp } from './support/harness.ts';

/**
 * The offline verifier CLI (npm run audit:verify) against a real server: it accepts an honest log, and it
 * catches each of the four tamper cases (an edited entry, a deleted entry, a truncated tail, a whole log
 * rewritten with recomputed hashes and Merkle nodes) when it holds a checkpoint saved BEFORE the change.
 */
const ENV = { AUDIT_CHECKPOINT_INTERVAL_MS: '3600000' };
const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

interface Saved {
  dir: string;
  key: string;
  checkpoint: string;
  receipt: string;
  receiptIndex: number;
  token: string;
}

function file(dir: string, name: string, content: string): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

function entriesArgs(dir: string, pages: string[], prefix: string): string[] {
  return pages.flatMap((page, i) => ['--entries', file(dir, `${prefix}-page-${i}.json`, page)]);
}

/** An auditor's saved state: the verifier key, a checkpoint, and a payment receipt, all from before any change. */
async function saveState(t: TestApp): Promise<Saved> {
  const dir = mkdtempSync(join(tmpdir(), 'audit-verify-'));
  dirs.push(dir);
  const token = (await createApiKey(t.app.services, SYSTEM_ACTOR, 'auditor', 'offline auditor')).secret;
  await makePayments(t, 4);
  const paid = await t.request('POST', '/v1/payments', {
    idempotencyKey: `receipt-${dir}`,
    headers: { prefer: 'receipt' },
    body: {
      sourceAccountId: 'acc_demo_alice_usd',
      destinationAccountId: 'acc_demo_bob_usd',
      amountCents: 777,
      currency: 'USD',
    },
  });
  assert.ok(paid.json.receipt, paid.body);
  await makePayments(t, 5);
  return {
    dir,
    key: file(dir, 'log.vkey', await getText(t, '/v1/audit-logs/public-key', token)),
    checkpoint: file(dir, 'checkpoint-before.txt', await getText(t, '/v1/audit-logs/checkpoint', token)),
    receipt: file(dir, 'receipt.json', paid.body),
    receiptIndex: paid.json.receipt.index,
    token,
  };
}

async function listen(t: TestApp): Promise<string> {
  await t.app.server.listen({ port: 0, host: '127.0.0.1' });
  return `http://127.0.0.1:${(t.app.server.server.address() as AddressInfo).port}`;
}

function assertFails(result: CliResult, message: RegExp): void {
  assert.equal(result.code, 1, `expected a failure, got:\n${result.stdout}${result.stderr}`);
  const lines = result.stderr.trim().split('\n');
  assert.equal(lines.length, 1, 'one clear line');
  assert.match(lines[0]!, /^audit-verify: FAILED: /);
  assert.match(lines[0]!, message);
}

function assertPasses(result: CliResult): void {
  assert.equal(result.code, 0, `${result.stdout}${result.stderr}`);
  assert.match(result.stdout, /audit log verified\n$/);
}

/** Saves state, stops the server, lets `tamper` loose on the database, and restarts on the same data. */
async function tamperedAfterSaving(
  tamper: (raw: RawDb, saved: Saved) => Promise<void>,
): Promise<{ saved: Saved; t: TestApp }> {
  const before = await startTestApp({ env: ENV });
  const saved = await saveState(before);
  await before.close();
  const raw = await openRawDb(before.db);
  try {
    await tamper(raw, saved);
  } finally {
    await raw.close();
  }
  return { saved, t: await startTestApp({ db: before.db, env: ENV }) };
}

describe('the offline verifier accepts an honest log', () => {
  test('checkpoint + entries, a receipt, and consistency by --url or by a saved proof', async () => {
    const t = await startTestApp({ env: ENV });
    try {
      const saved = await saveState(t);
      const key = ['--key', saved.key];
      const pages = await dumpAuditPages(t);
      assert.ok(pages.length > 1, 'the dump spans several pages');
      assertPasses(
        await runVerifier([...key, '--checkpoint', saved.checkpoint, ...entriesArgs(saved.dir, pages, 'a')]),
      );
      assertPasses(await runVerifier([...key, '--receipt', saved.receipt]));

      await makePayments(t, 3);
      const newer = file(saved.dir, 'checkpoint-after.txt', await getText(t, '/v1/audit-logs/checkpoint'));
      const url = await listen(t);
      const grown = ['--old-checkpoint', saved.checkpoint, '--checkpoint', newer];
      const viaUrl = await runVerifier([
        ...key,
        ...grown,
        '--receipt',
        saved.receipt,
        '--url',
        url,
        '--token',
        saved.token,
      ]);
      assertPasses(viaUrl);
      assert.match(viaUrl.stdout, /consistency proof from \d+ to \d+ verifies/);

      const [oldSize, newSize] = [saved.checkpoint, newer].map((p) => readFileSync(p, 'utf8').split('\n')[1]);
      const proof = await t.request('GET', `/v1/audit-logs/proofs/consistency?from=${oldSize}&to=${newSize}`);
      assertPasses(
        await runVerifier([...key, ...grown, '--proof', file(saved.dir, 'proof.json', proof.body)]),
      );
      const later = await dumpAuditPages(t, 500);
      assertPasses(await runVerifier([...key, ...grown, ...entriesArgs(saved.dir, later, 'b')]));

      // Wrong inputs are failures too: another key, a checkpoint edited by hand, a receipt for another entry.
      const otherKey = AuditSigner.fromConfig(randomBytes(32).toString('base64'), 'localhost/payments-audit');
      assertFails(
        await runVerifier(['--key', otherKey.verifierKey(), '--checkpoint', newer]),
        /no valid signature/,
      );
      const edited = readFileSync(newer, 'utf8').replace(`\n${newSize}\n`, `\n${Number(newSize) + 1}\n`);
      assertFails(
        await runVerifier([...key, '--checkpoint', file(saved.dir, 'edited.txt', edited)]),
        /a signature by .* does not verify/,
      );
      const receipt = JSON.parse(readFileSync(saved.receipt, 'utf8'));
      receipt.receipt.entry.metadata.amountCents = 1;
      assertFails(
        await runVerifier([
          ...key,
          '--receipt',
          file(saved.dir, 'forged-receipt.json', JSON.stringify(receipt)),
        ]),
        /hash does not match/,
      );
      receipt.receipt.entry = JSON.parse(readFileSync(saved.receipt, 'utf8')).receipt.entry;
      receipt.receipt.inclusionProof.reverse();
      receipt.receipt.inclusionProof.push(receipt.receipt.inclusionProof[0]);
      assertFails(
        await runVerifier([...key, '--receipt', file(saved.dir, 'bad-proof.json', JSON.stringify(receipt))]),
        /NOT included/,
      );
      const usage = await runVerifier([...key]);
      assert.equal(usage.code, 2);
    } finally {
      await t.destroy();
    }
  });
});

/** The saved receipt response, changed by `edit`, as a new file. */
function editedReceipt(saved: Saved, name: string, edit: (response: Json) => void): string {
  const response = JSON.parse(readFileSync(saved.receipt, 'utf8'));
  edit(response);
  return file(saved.dir, name, JSON.stringify(response));
}

/** A signature line by the pinned key (its name and key hash) whose signature bytes are `signature`. */
function lineByPinnedKey(saved: Saved, signature: Buffer): string {
  const [name, keyHash] = readFileSync(saved.key, 'utf8').trim().split('+');
  return `\u2014 ${name} ${Buffer.concat([Buffer.from(keyHash!, 'hex'), signature]).toString('base64')}\n`;
}

describe('a receipt vouches for the payment in its response, as its entry logged it', () => {
  // The entry is genuine in every case below: only the response around it was edited, which no hash covers.
  // Before, the verifier compared the payment id alone, and an edited amount or payee still "verified".
  const edits: Array<[field: string, value: unknown]> = [
    ['amountCents', 778],
    ['destinationAccountId', 'acc_demo_mallory_usd'],
    ['status', 'declined'],
    ['currency', 'EUR'],
    ['sourceAccountId', 'acc_demo_carol_usd'],
    ['id', 'pay_someone_else'],
  ];

  test('each edited payment field fails, naming the field; the honest response and a bare receipt pass', async () => {
    const t = await startTestApp({ env: ENV });
    try {
      const saved = await saveState(t);
      const key = ['--key', saved.key];
      const honest = await runVerifier([...key, '--receipt', saved.receipt]);
      assertPasses(honest);
      assert.match(honest.stdout, /the response's payment .* is what entry \d+ logs/);
      for (const [field, value] of edits) {
        const receipt = editedReceipt(saved, `edited-${field}.json`, (response) => {
          assert.notEqual(response.payment[field], value, `the edit changes ${field}`);
          response.payment[field] = value;
        });
        assertFails(
          await runVerifier([...key, '--receipt', receipt]),
          new RegExp(`payment\\.${field} in the response is ${JSON.stringify(value)} but entry`),
        );
      }
      const claimsPosted = editedReceipt(saved, 'ledger-posted.json', (response) => {
        response.ledgerPosted = !response.ledgerPosted;
      });
      assertFails(await runVerifier([...key, '--receipt', claimsPosted]), /ledgerPosted/);
      const noPayment = editedReceipt(saved, 'no-payment.json', (response) => {
        delete response.payment;
      });
      assertFails(await runVerifier([...key, '--receipt', noPayment]), /holds no payment/);

      // Only the receipt object: its entry is still checked, and the verifier says what it could not compare.
      const bare = file(
        saved.dir,
        'bare.json',
        JSON.stringify(JSON.parse(readFileSync(saved.receipt, 'utf8')).receipt),
      );
      const bareResult = await runVerifier([...key, '--receipt', bare]);
      assertPasses(bareResult);
      assert.match(bareResult.stdout, /note a bare receipt/);
    } finally {
      await t.destroy();
    }
  });

  test('a genuine, included entry about the same payment that is not its creation fails', async () => {
    const t = await startTestApp({ env: ENV });
    try {
      const saved = await saveState(t);
      const response = JSON.parse(readFileSync(saved.receipt, 'utf8'));
      assert.equal(response.payment.status, 'posted', 'a posted payment can be refunded');
      const refund = await t.request('POST', `/v1/payments/${response.payment.id}/refunds`, {
        idempotencyKey: `refund-${saved.dir}`,
        body: { amountCents: response.payment.amountCents },
      });
      assert.equal(refund.status, 201, refund.body);
      // A receipt rebuilt around the refund's entry: same resource, same amount, hash and proof all genuine.
      const checkpoint = await getText(t, '/v1/audit-logs/checkpoint');
      const size = Number(checkpoint.split('\n')[1]);
      const entries = JSON.parse((await dumpAuditPages(t, 500)).at(-1)!).logs;
      const entry = entries.findLast((e: { eventType: string }) => e.eventType === 'payment.refunded');
      assert.equal(entry.resourceId, response.payment.id);
      const proof = await t.request(
        'GET',
        `/v1/audit-logs/proofs/inclusion?index=${entry.index}&treeSize=${size}`,
      );
      response.receipt = {
        index: entry.index,
        entry,
        inclusionProof: proof.json.inclusionProof.hashes,
        checkpoint,
      };
      const forged = file(saved.dir, 'refund-as-receipt.json', JSON.stringify(response));
      const result = await runVerifier(['--key', saved.key, '--receipt', forged]);
      assertFails(result, /entry \d+ \(payment\.refunded\) does not log a payment's creation/);
      assert.match(result.stdout, /is included in it/, 'the inclusion itself verified');
    } finally {
      await t.destroy();
    }
  });
});

describe('signed notes: every signature line by the pinned key must verify', () => {
  test('an extra bad line by the pinned key rejects the note; lines by other keys are ignored', async () => {
    const t = await startTestApp({ env: ENV });
    try {
      const saved = await saveState(t);
      const key = ['--key', saved.key];
      const note = readFileSync(saved.checkpoint, 'utf8');
      const bad = lineByPinnedKey(saved, randomBytes(64));
      const withCheckpoint = (name: string, text: string) => [
        ...key,
        '--checkpoint',
        file(saved.dir, name, text),
      ];
      // After the valid line and before it: one good signature does not excuse a forged one beside it.
      assertFails(await runVerifier(withCheckpoint('bad-after.txt', `${note}${bad}`)), /does not verify/);
      const [text, signatures] = [
        note.slice(0, note.lastIndexOf('\n\n') + 2),
        note.slice(note.lastIndexOf('\n\n') + 2),
      ];
      assertFails(
        await runVerifier(withCheckpoint('bad-before.txt', `${text}${bad}${signatures}`)),
        /does not verify/,
      );
      const short = lineByPinnedKey(saved, randomBytes(10));
      assertFails(await runVerifier(withCheckpoint('bad-short.txt', `${note}${short}`)), /does not verify/);

      // The same checks hold for the checkpoint inside a receipt.
      const receipt = editedReceipt(saved, 'bad-receipt-note.json', (response) => {
        response.receipt.checkpoint += bad;
      });
      assertFails(
        await runVerifier([...key, '--receipt', receipt]),
        /the receipt checkpoint: .*does not verify/,
      );

      // Unknown keys, even under the log's own name (another key hash), are ignored, as the spec says.
      const [name] = readFileSync(saved.key, 'utf8').split('+');
      const witness = `\u2014 witness.example ${randomBytes(68).toString('base64')}\n`;
      const rotated = `\u2014 ${name} ${randomBytes(68).toString('base64')}\n`;
      assertPasses(await runVerifier(withCheckpoint('cosigned.txt', `${note}${witness}${rotated}`)));
    } finally {
      await t.destroy();
    }
  });
});

test('--help prints the usage and exits 0; bad usage exits 2 and points to it', async () => {
  for (const flag of ['--help', '-h']) {
    const help = await runVerifier([flag]);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^Usage: npm run audit:verify -- --key/);
    assert.match(help.stdout, /--receipt <file>/);
    assert.equal(help.stderr, '');
  }
  for (const args of [[], ['--key'], ['--bogus'], ['--checkpoint', 'x.txt']]) {
    const usage = await runVerifier(args);
    assert.equal(usage.code, 2, `${args.join(' ')}: ${usage.stdout}${usage.stderr}`);
    assert.match(usage.stderr, /^audit-verify: .*\(--help for usage\)\n$/);
  }
});

describe('the offline verifier catches tampering, holding a checkpoint saved before it', () => {
  test('an entry whose metadata was edited in the database', async () => {
    const { saved, t } = await tamperedAfterSaving(async (raw, s) => {
      const entry = (await readEntries(raw))[s.receiptIndex]!;
      await editMetadata(raw, entry.index, { ...entry.metadata, amountCents: 77_700 });
    });
    try {
      const pages = await dumpAuditPages(t);
      const args = [
        '--key',
        saved.key,
        '--checkpoint',
        saved.checkpoint,
        ...entriesArgs(saved.dir, pages, 'e'),
      ];
      assertFails(await runVerifier(args), new RegExp(`entry ${saved.receiptIndex}: hash does not match`));
      assertFails(
        await runVerifier([
          '--key',
          saved.key,
          '--receipt',
          saved.receipt,
          ...entriesArgs(saved.dir, pages, 'e'),
        ]),
        /differs from the one in the receipt|hash does not match/,
      );
    } finally {
      await t.destroy();
    }
  });

  test('a deleted entry', async () => {
    const { saved, t } = await tamperedAfterSaving(async (raw) => {
      await raw.run('DELETE FROM audit_entries WHERE idx = ?', [3]);
    });
    try {
      const pages = await dumpAuditPages(t);
      const args = [
        '--key',
        saved.key,
        '--checkpoint',
        saved.checkpoint,
        ...entriesArgs(saved.dir, pages, 'd'),
      ];
      assertFails(await runVerifier(args), /entry 3 is missing/);
    } finally {
      await t.destroy();
    }
  });

  test('a truncated tail, even when the server signs the shorter log', async () => {
    let keep = 0;
    const { saved, t } = await tamperedAfterSaving(async (raw) => {
      keep = (await readEntries(raw)).length - 4;
      await truncateLog(raw, keep);
    });
    try {
      // The hash chain of what is left is intact, so the server's own check passes: only the saved checkpoint knows.
      assert.equal((await t.request('GET', '/v1/audit-logs/verify')).status, 200);
      const signedAfter = file(
        saved.dir,
        'checkpoint-truncated.txt',
        await getText(t, '/v1/audit-logs/checkpoint'),
      );
      assert.equal(readFileSync(signedAfter, 'utf8').split('\n')[1], String(keep));
      assertFails(
        await runVerifier([
          '--key',
          saved.key,
          '--old-checkpoint',
          saved.checkpoint,
          '--checkpoint',
          signedAfter,
        ]),
        /smaller than the old checkpoint .*truncated/,
      );
      const pages = await dumpAuditPages(t);
      assertFails(
        await runVerifier([
          '--key',
          saved.key,
          '--checkpoint',
          saved.checkpoint,
          ...entriesArgs(saved.dir, pages, 't'),
        ]),
        new RegExp(`commits to ${keep + 4} entries but only ${keep} exist`),
      );
    } finally {
      await t.destroy();
    }
  });

  test('a whole log rewritten with recomputed hashes and Merkle nodes, re-signed by the server', async () => {
    const { saved, t } = await tamperedAfterSaving(async (raw, s) => {
      const entry = (await readEntries(raw))[s.receiptIndex]!;
      await rewriteLog(raw, entry.index, { ...entry.metadata, amountCents: 1 });
    });
    try {
      assert.equal(
        (await t.request('GET', '/v1/audit-logs/verify')).status,
        200,
        'the rewritten chain is valid',
      );
      await makePayments(t, 2);
      const resigned = file(
        saved.dir,
        'checkpoint-rewritten.txt',
        await getText(t, '/v1/audit-logs/checkpoint'),
      );
      const url = await listen(t);
      const server = ['--url', url, '--token', saved.token];
      const key = ['--key', saved.key];
      // The new checkpoint is validly signed, but not an extension of the one saved before.
      assertFails(
        await runVerifier([
          ...key,
          '--old-checkpoint',
          saved.checkpoint,
          '--checkpoint',
          resigned,
          ...server,
        ]),
        /NOT consistent with the old checkpoint .*rewritten/,
      );
      assertFails(
        await runVerifier([...key, '--receipt', saved.receipt, '--checkpoint', resigned, ...server]),
        /NOT consistent with the receipt checkpoint/,
      );
      const pages = await dumpAuditPages(t);
      assertFails(
        await runVerifier([...key, '--checkpoint', saved.checkpoint, ...entriesArgs(saved.dir, pages, 'r')]),
        /do not hash to the root of the checkpoint/,
      );
    } finally {
      await t.destroy();
    }
  });
});

test('the verifier imports nothing from the server', () => {
  const source = readFileSync('tools/audit-verify/verify.ts', 'utf8');
  const imports = [...source.matchAll(/from '([^']+)'/g)].map((m) => m[1]);
  assert.ok(imports.length > 0);
  for (const module of imports) assert.match(module!, /^node:/, `verify.ts imports ${module}`);
});
