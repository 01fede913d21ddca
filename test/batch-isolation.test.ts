import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { refusedARow } from '../src/storage/committer.ts';
import { balanceOf, holdCommitter, type Party, party, pay, rawRows } from './support/fixtures.ts';
import { backend, startTestApp, type TestApp } from './support/harness.ts';

/**
 * One client's bad input never fails another client's payment (issue 13). Two lines of defence:
 * - at the edge, text no backend can store (U+0000, lone surrogates) is a 400 before it reaches a batch;
 * - in the committer, a command whose rows fail only when the batch is written (here: a duplicate payment
 *   id, and on PostgreSQL a NUL in a note, which it cannot store) fails alone: the batch is split until the
 *   failing command is found, and every other command of the batch commits.
 */
const SENDERS = 30;
const AMOUNT_CENTS = 1_000;
let t: TestApp;
let senders: Party[];
let receiver: Party;

before(async () => {
  // One batch in flight (PG_POOL_MAX=2 gives PostgreSQL one writer slot), so the queue forms one batch.
  t = await startTestApp({ env: { PG_POOL_MAX: '2', GROUP_COMMIT_BATCH_MAX: '64' } });
  receiver = await party(t, { balance: 0 });
  senders = [];
  for (let i = 0; i < SENDERS; i++) senders.push(await party(t, { balance: 100_000 }));
});
after(() => t.close());

// Each test pays a different amount: the same source, destination and amount within 60 s is held for review.
const body = (from: Party, note?: string, amountCents = AMOUNT_CENTS) => ({
  sourceAccountId: from.accountId,
  destinationAccountId: receiver.accountId,
  amountCents,
  currency: 'USD',
  ...(note === undefined ? {} : { note }),
});

test('a NUL in a note is a 400, and the 30 valid payments sent with it commit', async () => {
  const before = (await balanceOf(t, receiver.accountId)).postedBalanceCents as number;
  const nul = pay(t, body(senders[0]!, 'cash\u0000pickup'));
  const lone = pay(t, body(senders[1]!, 'half a pair \ud800'));
  const valid = senders.map((s) => pay(t, body(s, 'rent')));
  for (const bad of [await nul, await lone]) {
    assert.equal(bad.status, 400, bad.body);
    assert.equal(bad.json.error.code, 'VALIDATION_ERROR');
    assert.equal(bad.json.error.details[0].field, '/note');
  }
  for (const res of await Promise.all(valid)) assert.equal(res.status, 201, res.body);
  const after = (await balanceOf(t, receiver.accountId)).postedBalanceCents as number;
  assert.equal(after - before, SENDERS * AMOUNT_CENTS, 'every valid payment moved its money');
  const stored = await rawRows(t.db, "SELECT count(*) AS n FROM payments WHERE note LIKE 'cash%'");
  assert.equal(Number(stored[0].n), 0, 'nothing of the bad request was stored');
});

test('a command whose rows fail when its batch is written fails alone; the rest of the batch commits', async () => {
  const { committer, store } = t.app.services;
  const splitsBefore = committer.batchesSplit;
  const first = await pay(t, {
    ...body(senders[29]!, 'seed', 777),
    destinationAccountId: senders[0]!.accountId,
  });
  assert.equal(first.status, 201, first.body);
  const existing = (await store.reads.getPayment(first.json.payment.id))!;
  const balanceBefore = (await balanceOf(t, receiver.accountId)).postedBalanceCents as number;

  const { release, queued } = await holdCommitter(t);
  const valid: Promise<Awaited<ReturnType<typeof pay>>>[] = [];
  const held: Promise<Awaited<ReturnType<typeof pay>>>[] = [];
  const bad: Promise<unknown>[] = [];
  // Settled at once, so a rejection is never unhandled while the test waits for the rest.
  const outcome = (p: Promise<unknown>) =>
    p.then(
      () => 'committed',
      (e: unknown) => e,
    );
  for (const [i, sender] of senders.entries()) {
    valid.push(pay(t, body(sender, 'groceries', AMOUNT_CENTS + 1)));
    await queued(valid.length + bad.length + held.length);
    if (i === 10) {
      // A second row under an existing payment id: queued fine, fails at the batch's multi-row INSERT.
      bad.push(outcome(committer.submit((tx) => tx.insertPayment(existing, 'key_test', 'req_bad_row'))));
      await queued(valid.length + bad.length + held.length);
    }
    if (i === 15) {
      // A payment held for review reads the holds table mid-command, which writes the batch's earlier rows,
      // the bad one included: that failure is the batch's, split like any other, not this payment's.
      // (Its note is one the seed policy holds for review: suspicious_payment_note.)
      held.push(pay(t, { ...body(sender, 'cash pickup', 555), destinationAccountId: senders[0]!.accountId }));
      await queued(valid.length + bad.length + held.length);
    }
    if (i === 20 && backend === 'postgres') {
      // What the edge now refuses, pushed past it: PostgreSQL cannot store U+0000 in text.
      const nul = { ...existing, id: 'pay_nul_note_row', note: 'crypto\u0000mixer' };
      bad.push(outcome(committer.submit((tx) => tx.insertPayment(nul, 'key_test', 'req_nul_row'))));
      await queued(valid.length + bad.length + held.length);
    }
  }
  await release();

  for (const res of await Promise.all(valid)) assert.equal(res.status, 201, res.body);
  for (const res of await Promise.all(held)) assert.equal(res.status, 202, res.body);
  for (const failed of await Promise.all(bad)) assert.ok(failed instanceof Error, 'the bad command fails');
  assert.ok(committer.batchesSplit > splitsBefore, 'the failing batch was split to isolate the bad command');
  const balanceAfter = (await balanceOf(t, receiver.accountId)).postedBalanceCents as number;
  assert.equal(balanceAfter - balanceBefore, SENDERS * (AMOUNT_CENTS + 1), 'all 30 valid payments committed');
  const nulRows = await rawRows(t.db, "SELECT count(*) AS n FROM payments WHERE id = 'pay_nul_note_row'");
  assert.equal(Number(nulRows[0].n), 0);
  const ledger = await t.request('GET', '/v1/ledger/verify');
  assert.equal(ledger.json.verification.valid, true, ledger.body);
  const audit = await t.request('GET', '/v1/audit-logs/verify');
  assert.equal(audit.json.verification.valid, true, audit.body);
});

test('a failed batch is split only when the database refused a row, never on a lost connection', () => {
  for (const code of ['23505', '23503', '22021', '22P05', 'SQLITE_CONSTRAINT_UNIQUE', 'SQLITE_MISMATCH']) {
    assert.equal(refusedARow(Object.assign(new Error('refused'), { code })), true, code);
  }
  // A connection lost (possibly mid-COMMIT), a full disk, a lock timeout, no code at all: not split.
  for (const code of [
    '08006',
    '57P01',
    '53100',
    '55P03',
    'SQLITE_FULL',
    'SQLITE_IOERR',
    'ECONNRESET',
    undefined,
  ]) {
    assert.equal(refusedARow(Object.assign(new Error('lost'), { code })), false, String(code));
  }
});
