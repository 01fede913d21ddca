import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { createPayment } from '../src/app/create-payment.ts';
import { AppError } from '../src/domain/errors.ts';
import { transfer } from '../src/domain/ledger.ts';
import { hashSecret } from '../src/security/api-keys.ts';
import { balanceOf, holdCommitter, type Party, party, usd } from './support/fixtures.ts';
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
  const batchesBefore = committer.batchesApplied;
  const { release, queued } = await holdCommitter(t);

  // createPayment reads before it submits: wait for each to queue, so the batch runs in this order.
  const first = createPayment(t.app.services, who, 'wb-key-1', usd(a, b, 100));
  await queued(1);
  const replay = createPayment(t.app.services, who, 'wb-key-1', usd(a, b, 100));
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
  const back = createPayment(t.app.services, who, 'wb-key-2', usd(b, a, 30));
  await queued(5);
  await release();

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

/**
 * Any mix of transfers, short of funds or failing before or after their rows were written, lined up in one
 * batch, commits exactly the transfers a sequential model says succeed, and nothing of the others.
 */
test('in one batch, exactly the commands that succeed commit (property)', { timeout: 120_000 }, async () => {
  const { committer, store } = t.app.services;
  const parties = [a, b, await party(t, { balance: INITIAL }), await party(t, { balance: INITIAL })];
  const ids = parties.map((p) => p.accountId);
  const operation = fc.record({
    from: fc.integer({ min: 0, max: ids.length - 1 }),
    offset: fc.integer({ min: 1, max: ids.length - 1 }),
    amountCents: fc.integer({ min: 1, max: 4_000 }),
    fail: fc.constantFrom('none', 'none', 'before-flush', 'after-flush'),
  });
  await fc.assert(
    fc.asyncProperty(fc.array(operation, { minLength: 1, maxLength: 24 }), async (operations) => {
      const posted = async (id: string) => (await store.reads.getAccount(id))!.postedBalanceCents;
      const expected = new Map<string, number>();
      for (const id of ids) expected.set(id, await posted(id));
      const pairs = operations.map(
        (op) => [ids[op.from]!, ids[(op.from + op.offset) % ids.length]!] as const,
      );
      const succeeds = operations.map((op, i) => {
        const [from, to] = pairs[i]!;
        if (op.fail !== 'none' || expected.get(from)! < op.amountCents) return false;
        expected.set(from, expected.get(from)! - op.amountCents);
        expected.set(to, expected.get(to)! + op.amountCents);
        return true;
      });

      const { release } = await holdCommitter(t);
      const outcomes = operations.map((op, i) => {
        const [from, to] = pairs[i]!;
        const run = committer.submit(
          async (tx) => {
            const accounts = await tx.lockAccounts([from, to]);
            const source = accounts.get(from)!;
            if (source.postedBalanceCents - source.heldBalanceCents < op.amountCents)
              throw new AppError('INSUFFICIENT_FUNDS', 'not enough');
            await tx.postLedger(
              transfer('payment', 'USD', null, from, to, op.amountCents),
              accounts,
              'req_p',
            );
            await tx.appendAudit({
              eventType: 'test.transfer',
              actorId: 'test',
              requestId: 'req_p',
              resourceType: 'account',
              resourceId: from,
              metadata: { amountCents: op.amountCents },
            });
            if (op.fail === 'after-flush') await tx.lockPayment('pay_missing'); // writes its rows first
            if (op.fail !== 'none') throw new AppError('PAYMENT_NOT_FOUND', 'fails on purpose');
          },
          { accountIds: [from, to] },
        );
        return run.then(
          () => true,
          (e: unknown) => {
            if (e instanceof AppError) return false;
            throw e;
          },
        );
      });
      await release();
      assert.deepEqual(
        await Promise.all(outcomes),
        succeeds,
        'the commands that succeed are those the model says',
      );
      for (const id of ids) assert.equal(await posted(id), expected.get(id), `balance of ${id}`);
    }),
    { numRuns: 30 },
  );
  const ledger = await t.request('GET', '/v1/ledger/verify');
  assert.equal(ledger.json.verification.valid, true, ledger.body);
  const audit = await t.request('GET', '/v1/audit-logs/verify');
  assert.equal(audit.json.verification.valid, true, audit.body);
});
