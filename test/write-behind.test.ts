import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createPayment } from '../src/app/create-payment.ts';
import { AppError } from '../src/domain/errors.ts';
import { transfer } from '../src/domain/ledger.ts';
import { hashSecret } from '../src/security/api-keys.ts';
import { balanceOf, type Party, party } from './support/fixtures.ts';
import { DEMO_TOKEN, manualClock, startTestApp, type TestApp } from './support/harness.ts';

/**
 * Group commit writes a batch's rows behind (src/storage/write-behind.ts): queued per command, written with
 * multi-row statements when the batch ends or when a statement may read them. These tests line several
 * commands up in ONE batch and check what each sees and what commits: an in-batch replay of an
 * Idempotency-Key, a failed command that had already written rows (undone by its savepoint, its balance
 * changes forgotten), and later commands that see the balances the earlier ones left.
 */
const INITIAL = 10_000;
let t: TestApp;
let a: Party;
let b: Party;

before(async () => {
  // One batch in flight (PG_POOL_MAX=2 gives PostgreSQL one writer slot too), so the queue forms one batch.
  t = await startTestApp({ clock: manualClock().now, env: { PG_POOL_MAX: '2' } });
  a = await party(t, { balance: INITIAL });
  b = await party(t, { balance: INITIAL });
});
after(() => t.close());

async function demoActor() {
  const key = await t.app.services.store.reads.findApiKeyByHash(hashSecret(DEMO_TOKEN));
  assert.ok(key, 'the demo key exists');
  return { apiKeyId: key.id, role: key.role, requestId: 'req_write_behind' };
}

test('commands in one batch see each other, and a failed one leaves nothing behind', async () => {
  const { committer } = t.app.services;
  const who = await demoActor();
  let open!: () => void;
  const gate = new Promise<void>((resolve) => {
    open = resolve;
  });
  // A command that holds the committer (alone in its batch) until the others are queued behind it.
  let running!: () => void;
  const started = new Promise<void>((resolve) => {
    running = resolve;
  });
  const batchesBefore = committer.batchesApplied;
  const blocker = committer.submit(async () => {
    running();
    await gate;
  });
  await started;

  const request = (from: Party, to: Party, amountCents: number) => ({
    sourceAccountId: from.accountId,
    destinationAccountId: to.accountId,
    amountCents,
    currency: 'USD',
  });
  // createPayment reads before it submits: wait for each to queue, so the batch runs in this order.
  const queued = async (n: number) => {
    for (let i = 0; i < 1_000 && committer.queuedCommands < n; i++)
      await new Promise((r) => setTimeout(r, 2));
    assert.equal(committer.queuedCommands, n, `${n} commands wait behind the blocker`);
  };
  const first = createPayment(t.app.services, who, 'wb-key-1', request(a, b, 100));
  await queued(1);
  const replay = createPayment(t.app.services, who, 'wb-key-1', request(a, b, 100));
  await queued(2);
  const failed = committer.submit(async (tx) => {
    const accounts = await tx.lockAccounts([a.accountId, b.accountId]);
    await tx.postLedger(transfer('payment', 'USD', null, b.accountId, a.accountId, 50), accounts, 'req_wb');
    await tx.lockPayment('pay_missing'); // a read of a queued table: the command's rows are written first
    throw new AppError('PAYMENT_NOT_FOUND', 'fails after writing');
  });
  const seen = committer.submit(async (tx) => {
    const accounts = await tx.lockAccounts([a.accountId, b.accountId]);
    return [accounts.get(a.accountId)!.postedBalanceCents, accounts.get(b.accountId)!.postedBalanceCents];
  });
  const back = createPayment(t.app.services, who, 'wb-key-2', request(b, a, 30));
  await queued(5);
  open();
  await blocker;

  const firstReply = await first;
  assert.equal(firstReply.statusCode, 201, firstReply.body);
  const replayReply = await replay;
  assert.equal(replayReply.replayed, true, 'the same key in the same batch replays the first result');
  assert.equal(replayReply.body, firstReply.body);
  await assert.rejects(failed, (e: unknown) => e instanceof AppError && e.code === 'PAYMENT_NOT_FOUND');
  assert.deepEqual(await seen, [INITIAL - 100, INITIAL + 100], 'the failed transfer is invisible');
  assert.equal((await back).statusCode, 201);
  assert.equal(committer.batchesApplied, batchesBefore + 2, 'the blocker, then one batch of five');

  const balance = async (p: Party) => (await balanceOf(t, p.accountId)).postedBalanceCents;
  assert.equal(await balance(a), INITIAL - 100 + 30);
  assert.equal(await balance(b), INITIAL + 100 - 30);
  const ledger = await t.request('GET', '/v1/ledger/verify');
  assert.equal(ledger.json.verification.valid, true, ledger.body);
  const audit = await t.request('GET', '/v1/audit-logs/verify');
  assert.equal(audit.json.verification.valid, true, audit.body);
  const payments = await t.request('GET', '/v1/payments?limit=500');
  assert.equal(payments.json.payments.length, 2, 'two payments: the replay made none');
});
