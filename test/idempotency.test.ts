import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sweepOnce } from '../src/app/maintenance.ts';
import {
  allPayments,
  apiKey,
  assertBooksValid,
  balanceOf,
  idempotencyRecordOwner,
  insertIdempotencyRecord,
  type Json,
  type Party,
  type PaymentBody,
  party,
  pay,
  rawRows,
  setKycStatus,
} from './support/fixtures.ts';
import { manualClock, startTestApp, type TestApp } from './support/harness.ts';

/**
 * Idempotency of POST /v1/payments: a key replays the first answer byte for byte and never executes twice
 * (sequentially, concurrently, across a restart), a different payload under a key is a 409, keys are scoped
 * per API key, and records expire after the retention and are swept.
 */
const DAY_MS = 24 * 3_600_000;
const clock = manualClock();
let t: TestApp;

before(async () => {
  t = await startTestApp({ clock: clock.now });
});
after(async () => {
  await t.destroy();
});

// Fresh accounts per test, and the clock moved past the risk windows, so no test sees another's counters.
async function pair(balance = 1_000_000): Promise<[Party, Party]> {
  clock.advance(61_000);
  return [await party(t, { balance }), await party(t, { balance: 0 })];
}

const body = (a: Party, b: Party, amountCents: number, extra: Partial<PaymentBody> = {}): PaymentBody => ({
  sourceAccountId: a.accountId,
  destinationAccountId: b.accountId,
  amountCents,
  currency: 'USD',
  ...extra,
});

async function paymentsFrom(accountId: string): Promise<Json[]> {
  return (await allPayments(t)).filter((p) => p.sourceAccountId === accountId);
}

describe('replay', () => {
  test('the workshop exercise: the same payment twice with one key moves money once', async () => {
    const [a, b] = await pair(100_000);
    const first = await pay(t, body(a, b, 25_000), { key: 'workshop-payment-001' });
    const second = await pay(t, body(a, b, 25_000), { key: 'workshop-payment-001' });
    assert.equal(first.status, 201);
    assert.equal(second.status, 201);
    assert.equal(second.json.payment.id, first.json.payment.id);
    assert.equal((await balanceOf(t, a.accountId)).availableBalanceCents, 75_000);
    assert.equal((await balanceOf(t, b.accountId)).availableBalanceCents, 25_000);
    assert.equal((await paymentsFrom(a.accountId)).length, 1);
  });

  test('a replay is byte for byte identical and says Idempotency-Replayed: true', async () => {
    const [a, b] = await pair();
    const first = await pay(t, body(a, b, 1_234, { note: 'dinner', metadata: { k: 'v' } }));
    clock.advance(5_000); // a later replay must not restamp anything
    const again = await pay(t, body(a, b, 1_234, { note: 'dinner', metadata: { k: 'v' } }), {
      key: first.key,
    });
    assert.equal(first.headers['idempotency-replayed'], 'false');
    assert.equal(again.headers['idempotency-replayed'], 'true');
    assert.equal(again.status, first.status);
    assert.equal(again.body, first.body);
    assert.match(String(again.headers['content-type']), /^application\/json/);
  });

  test('201, 202 and 422 are all stored and replayed without running again', async () => {
    const [a, b] = await pair(300_000);
    const posted = body(a, b, 1_000);
    const held = body(a, b, 200_000);
    const declined = body(a, b, 500_000);
    const cases = [
      { req: posted, status: 201 },
      { req: held, status: 202 },
      { req: declined, status: 422 },
    ];
    const firsts = [];
    for (const c of cases) {
      const res = await pay(t, c.req);
      assert.equal(res.status, c.status, res.body);
      firsts.push(res);
    }
    const balanceAfterFirsts = await balanceOf(t, a.accountId);
    clock.advance(1_000);
    for (const [i, c] of cases.entries()) {
      for (let n = 0; n < 3; n++) {
        const again = await pay(t, c.req, { key: firsts[i]!.key });
        assert.equal(again.status, c.status);
        assert.equal(again.body, firsts[i]!.body);
        assert.equal(again.headers['idempotency-replayed'], 'true');
      }
    }
    // Replays ran no risk step either: no extra attempts, holds or payments.
    assert.deepEqual(await balanceOf(t, a.accountId), balanceAfterFirsts);
    assert.equal((await paymentsFrom(a.accountId)).length, 3);
  });

  test('key order and whitespace in the JSON body do not change the fingerprint', async () => {
    const [a, b] = await pair();
    const first = await pay(t, body(a, b, 777, { metadata: { x: '1', y: '2' } }));
    const reordered =
      `{ "currency" : "USD",\n  "metadata": {"y":"2","x":"1"},\t"amountCents": 777,` +
      `"destinationAccountId":"${b.accountId}", "sourceAccountId" : "${a.accountId}" }`;
    const again = await pay(t, reordered, { key: first.key });
    assert.equal(again.status, 201);
    assert.equal(again.headers['idempotency-replayed'], 'true');
    assert.equal(again.body, first.body);
  });

  test('replays survive a restart of the app on the same database', async () => {
    const restartClock = manualClock(clock.now());
    let app = await startTestApp({ clock: restartClock.now });
    try {
      const a = await party(app, { balance: 500_000 });
      const b = await party(app, { balance: 0 });
      const firsts = [
        await pay(app, body(a, b, 1_000)),
        await pay(app, body(a, b, 200_000)),
        await pay(app, body(a, b, 900_000)),
      ];
      assert.deepEqual(
        firsts.map((r) => r.status),
        [201, 202, 422],
      );
      await app.close();
      app = await startTestApp({ db: app.db, clock: restartClock.now });
      for (const [i, amount] of [1_000, 200_000, 900_000].entries()) {
        const again = await pay(app, body(a, b, amount), { key: firsts[i]!.key });
        assert.equal(again.status, firsts[i]!.status);
        assert.equal(again.body, firsts[i]!.body);
        assert.equal(again.headers['idempotency-replayed'], 'true');
      }
      assert.equal((await allPayments(app)).filter((p) => p.sourceAccountId === a.accountId).length, 3);
    } finally {
      await app.destroy();
    }
  });
});

describe('conflicts and scope', () => {
  test('a different amount under a used key is 409 and changes nothing', async () => {
    const [a, b] = await pair();
    const first = await pay(t, body(a, b, 1_000));
    const before = await balanceOf(t, a.accountId);
    for (const changed of [
      body(a, b, 1_001),
      body(a, b, 1_000, { note: 'now with a note' }),
      body(a, b, 1_000, { metadata: { a: 'b' } }),
      body(b, a, 1_000),
    ]) {
      const res = await pay(t, changed, { key: first.key });
      assert.equal(res.status, 409, res.body);
      assert.equal(res.json.error.code, 'IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD');
    }
    assert.deepEqual(await balanceOf(t, a.accountId), before);
    // The original is still replayable after the conflicts.
    const again = await pay(t, body(a, b, 1_000), { key: first.key });
    assert.equal(again.body, first.body);
  });

  test('a missing or empty Idempotency-Key is 400 IDEMPOTENCY_KEY_REQUIRED', async () => {
    const [a, b] = await pair();
    const missing = await t.request('POST', '/v1/payments', { body: body(a, b, 100) });
    assert.equal(missing.status, 400);
    assert.equal(missing.json.error.code, 'IDEMPOTENCY_KEY_REQUIRED');
    const empty = await pay(t, body(a, b, 100), { key: '' });
    assert.equal(empty.status, 400);
    assert.equal(empty.json.error.code, 'IDEMPOTENCY_KEY_REQUIRED');
    assert.equal((await balanceOf(t, a.accountId)).availableBalanceCents, 1_000_000);
  });

  test('malformed keys are 400: 256 characters, non-ASCII, control characters', async () => {
    const [a, b] = await pair();
    for (const key of ['k'.repeat(256), 'clé-de-paiement', 'ключ', 'tab\there']) {
      const res = await pay(t, body(a, b, 100), { key });
      assert.equal(res.status, 400, `key ${JSON.stringify(key)}: ${res.body}`);
      assert.equal(res.json.error.code, 'VALIDATION_ERROR');
    }
    assert.equal((await paymentsFrom(a.accountId)).length, 0);
    // The limits are inclusive: 255 printable ASCII characters (spaces and symbols included) work.
    const longest = await pay(t, body(a, b, 100), { key: 'k'.repeat(255) });
    assert.equal(longest.status, 201, longest.body);
    const symbols = await pay(t, body(a, b, 101), { key: ' !"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~ x' });
    assert.equal(symbols.status, 201, symbols.body);
  });

  test('keys are scoped per API key: two clients using one key string both execute', async () => {
    const [a, b] = await pair();
    const first = await apiKey(t, 'payments', 'client one');
    const second = await apiKey(t, 'payments', 'client two');
    const one = await pay(t, body(a, b, 1_000), { key: 'shared-key', token: first.token });
    const two = await pay(t, body(a, b, 1_000), { key: 'shared-key', token: second.token });
    assert.equal(one.status, 201);
    // The second one is a fresh execution (a repeat of the pattern, so reviewed), not a replay of the first.
    assert.equal(two.status, 202, two.body);
    assert.equal(two.headers['idempotency-replayed'], 'false');
    assert.notEqual(two.json.payment.id, one.json.payment.id);
    // Even a different payload under the same string is not a conflict across API keys.
    const three = await pay(t, body(a, b, 2_000), {
      key: 'shared-key',
      token: (await apiKey(t, 'payments')).token,
    });
    assert.equal(three.headers['idempotency-replayed'], 'false');
    assert.notEqual(three.status, 409);
    // Each client replays its own.
    const oneAgain = await pay(t, body(a, b, 1_000), { key: 'shared-key', token: first.token });
    assert.equal(oneAgain.body, one.body);
    const twoAgain = await pay(t, body(a, b, 1_000), { key: 'shared-key', token: second.token });
    assert.equal(twoAgain.body, two.body);
    assert.equal((await paymentsFrom(a.accountId)).length, 3);
  });

  test('validation errors are not stored: the key stays usable', async () => {
    const [a, b] = await pair();
    const key = 'first-try-was-invalid';
    const invalid = await pay(t, { ...body(a, b, 100), amountCents: '100' }, { key });
    assert.equal(invalid.status, 400);
    const invalidAgain = await pay(t, body(a, a, 100), { key });
    assert.equal(invalidAgain.status, 400);
    const valid = await pay(t, body(a, b, 100), { key });
    assert.equal(valid.status, 201, valid.body);
    assert.equal(valid.headers['idempotency-replayed'], 'false');
  });

  test('a decline caused by state is stored: fixing the state does not re-run the key', async () => {
    const [a, b] = await pair();
    await setKycStatus(t.db, a.customerId, 'manual_review');
    const declined = await pay(t, body(a, b, 100));
    assert.equal(declined.status, 422);
    await setKycStatus(t.db, a.customerId, 'verified');
    const again = await pay(t, body(a, b, 100), { key: declined.key });
    assert.equal(again.status, 422);
    assert.equal(again.body, declined.body);
    // A new key is a new attempt, judged on the current state.
    const fresh = await pay(t, body(a, b, 100));
    assert.equal(fresh.status, 202, fresh.body); // the same pattern within 60 s: reviewed
  });
});

describe('concurrency', () => {
  test('50 concurrent identical requests execute once: one payment, one debit, 49 replays', async () => {
    const [a, b] = await pair(100_000);
    const req = body(a, b, 10_000);
    const key = 'fifty-at-once';
    const responses = await Promise.all(Array.from({ length: 50 }, () => pay(t, req, { key })));
    const statuses = new Set(responses.map((r) => r.status));
    assert.deepEqual([...statuses], [201]);
    assert.equal(new Set(responses.map((r) => r.body)).size, 1, 'every response has the same body');
    const replayed = responses.filter((r) => r.headers['idempotency-replayed'] === 'true').length;
    assert.equal(replayed, 49);
    assert.equal((await paymentsFrom(a.accountId)).length, 1);
    assert.equal((await balanceOf(t, a.accountId)).availableBalanceCents, 90_000);
    assert.equal((await balanceOf(t, b.accountId)).availableBalanceCents, 10_000);
    await assertBooksValid(t);
  });

  test('concurrent different payloads under one key: one executes, the rest replay or get 409', async () => {
    const [a, b] = await pair(100_000);
    const key = 'racing-payloads';
    const responses = await Promise.all(
      Array.from({ length: 20 }, (_, i) => pay(t, body(a, b, 1_000 + (i % 2)), { key })),
    );
    const executed = responses.filter((r) => r.headers['idempotency-replayed'] === 'false');
    assert.equal(executed.length, 1);
    const winner = executed[0]!;
    for (const r of responses) {
      if (r === winner) continue;
      if (r.status === 409) assert.equal(r.json.error.code, 'IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD');
      else assert.equal(r.body, winner.body);
    }
    assert.equal((await paymentsFrom(a.accountId)).length, 1);
  });
});

describe('expiry', () => {
  test('after 24 h and a sweep the record is gone and the key executes a new payment', async () => {
    const [a, b] = await pair();
    const first = await pay(t, body(a, b, 1_000));
    assert.equal(first.status, 201);
    const store = t.app.services.store.reads;
    assert.ok(await store.findIdempotencyRecord('key_demo_admin', first.key));

    // Just before expiry: still a replay, and a sweep keeps it.
    clock.advance(DAY_MS - 1);
    await sweepOnce(t.app.services);
    assert.ok(await store.findIdempotencyRecord('key_demo_admin', first.key));
    const replay = await pay(t, body(a, b, 1_000), { key: first.key });
    assert.equal(replay.headers['idempotency-replayed'], 'true');
    assert.equal(replay.body, first.body);

    clock.advance(1);
    const swept = await sweepOnce(t.app.services);
    assert.ok(swept.idempotencyRecords >= 1);
    assert.equal(await store.findIdempotencyRecord('key_demo_admin', first.key), undefined);

    const again = await pay(t, body(a, b, 1_000), { key: first.key });
    assert.equal(again.status, 201, again.body);
    assert.equal(again.headers['idempotency-replayed'], 'false');
    assert.notEqual(again.json.payment.id, first.json.payment.id);
    assert.equal((await balanceOf(t, b.accountId)).availableBalanceCents, 2_000);
    // And the new record replays in turn.
    const replayOfNew = await pay(t, body(a, b, 1_000), { key: first.key });
    assert.equal(replayOfNew.body, again.body);
  });

  test('an expired record no longer guards its key even before the sweep runs', async () => {
    const [a, b] = await pair();
    const first = await pay(t, body(a, b, 1_000));
    clock.advance(DAY_MS);
    // A different payload is no longer a conflict: the old record expired.
    const other = await pay(t, body(a, b, 2_000), { key: first.key });
    assert.equal(other.status, 201, other.body);
    assert.equal(other.headers['idempotency-replayed'], 'false');
    assert.equal((await balanceOf(t, b.accountId)).availableBalanceCents, 3_000);
  });
});

describe('sealed records (issue 13)', () => {
  test('a payment stores its response sealed: the note is not at rest in the record, the replay is exact', async () => {
    const [a, b] = await pair();
    const note = `rent for flat ${Date.now()}`;
    const first = await pay(t, body(a, b, 1_500, { note }));
    assert.equal(first.status, 201, first.body);
    const [row] = await rawRows(
      t.db,
      'SELECT response_body FROM idempotency_records WHERE idempotency_key = ?',
      [first.key],
    );
    assert.match(row.response_body, /^v1\./);
    assert.ok(!String(row.response_body).includes(note));
    assert.ok(!String(row.response_body).includes(first.json.payment.id));
    const again = await pay(t, body(a, b, 1_500, { note }), { key: first.key });
    assert.equal(again.body, first.body);
    assert.equal(again.headers['idempotency-replayed'], 'true');
  });

  test('a payment record written before sealing (plaintext JSON) still replays, inside the transaction', async () => {
    const [a, b] = await pair();
    const request = body(a, b, 2_500);
    const probe = await pay(t, body(a, b, 100));
    const legacy = '{"payment":{"id":"pay_legacy","status":"posted"},"ledgerPosted":true}';
    const key = 'legacy-plaintext-record';
    await insertIdempotencyRecord(t.db, {
      apiKeyId: await idempotencyRecordOwner(t.db, probe.key),
      key,
      request: { method: 'POST', path: '/v1/payments', body: request },
      statusCode: 201,
      responseBody: legacy,
      resourceId: 'pay_legacy',
      createdAtMs: clock.now(),
      expiresAtMs: clock.now() + DAY_MS,
    });
    const replay = await pay(t, request, { key });
    assert.equal(replay.status, 201);
    assert.equal(replay.body, legacy);
    assert.equal(replay.headers['idempotency-replayed'], 'true');
    assert.equal((await paymentsFrom(a.accountId)).length, 1, 'only the probe');
  });

  test('payments have no fast path: the record is read with the batch, never before queueing', async () => {
    const [a, b] = await pair();
    const reads = t.app.services.store.reads;
    const original = reads.findIdempotencyRecord;
    let lookups = 0;
    // Counts calls on the real store (no behaviour replaced): a payment must not add a read per request.
    reads.findIdempotencyRecord = (...args) => {
      lookups += 1;
      return original.apply(reads, args);
    };
    try {
      const first = await pay(t, body(a, b, 300));
      const again = await pay(t, body(a, b, 300), { key: first.key });
      assert.equal(again.headers['idempotency-replayed'], 'true');
    } finally {
      reads.findIdempotencyRecord = original;
    }
    assert.equal(lookups, 0);
  });
});
