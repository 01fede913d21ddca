import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { createApiKey } from '../src/app/api-keys.ts';
import { SYSTEM_ACTOR } from '../src/app/services.ts';
import { TEST_TRIGGERS } from '../src/domain/sandbox.ts';
import { sandboxPath } from '../src/storage/open-store.ts';
import {
  allPayments,
  auditLogs,
  balanceOf,
  type Client,
  type Json,
  party,
  pay,
  usd,
} from './support/fixtures.ts';
import { backend, createTestDatabase, startTestApp, type TestApp } from './support/harness.ts';
import { Receiver } from './support/receiver.ts';

/**
 * Test mode (docs/decisions/0026-sandbox.md): test and live keys never see each other's data, the magic
 * amounts force their documented outcomes, the test clock expires a hold, and a reset empties the sandbox.
 * Runs on both engines (scripts/run-tests.ts): a SQLite file per mode, a PostgreSQL schema per mode.
 */
const ALICE = 'acc_demo_alice_usd';
const BOB = 'acc_demo_bob_usd';

/** A client that sends every request with one key. */
function as(t: TestApp, token: string): Client {
  return { request: (method, url, options = {}) => t.request(method, url, { token, ...options }) };
}

async function liveAdmin(t: TestApp): Promise<string> {
  const { secret } = await createApiKey(t.app.modes.live, SYSTEM_ACTOR, 'admin', 'live admin');
  return secret;
}

describe('test and live keys never see each other’s data', () => {
  let t: TestApp;
  let live: Client;
  let sandbox: Client;
  let liveReceiver: Receiver;
  let testReceiver: Receiver;
  let livePayment: Json;
  let testPayment: Json;
  let liveParties: Awaited<ReturnType<typeof party>>[];

  before(async () => {
    t = await startTestApp({ env: { WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true' } });
    live = as(t, await liveAdmin(t));
    sandbox = { request: t.request };
    liveReceiver = await new Receiver().start();
    testReceiver = await new Receiver().start();
    for (const [client, receiver] of [
      [live, liveReceiver],
      [sandbox, testReceiver],
    ] as const) {
      const res = await client.request('POST', '/v1/webhook-endpoints', {
        body: { url: receiver.url, events: ['payment.posted'] },
      });
      assert.equal(res.status, 201, res.body);
    }
    liveParties = [await party(live, { balance: 10_000 }), await party(live)];
    const liveRes = await pay(live, usd(liveParties[0]!, liveParties[1]!, 1_250));
    assert.equal(liveRes.status, 201, liveRes.body);
    livePayment = liveRes.json.payment;
    const testRes = await pay(sandbox, {
      ...usd({ accountId: ALICE } as never, { accountId: BOB } as never, 1_250),
    });
    assert.equal(testRes.status, 201, testRes.body);
    testPayment = testRes.json.payment;
    await t.app.dispatcher.dispatchOnce();
    await t.app.liveDispatcher.dispatchOnce();
  });
  after(async () => {
    await liveReceiver.stop();
    await testReceiver.stop();
    await t.destroy();
  });

  test('secrets and keys say their mode', async () => {
    const key = await sandbox.request('POST', '/v1/api-keys', {
      body: { role: 'payments', name: 'partner' },
    });
    assert.equal(key.status, 201, key.body);
    assert.match(key.json.secret, /^sk_test_/);
    assert.equal(key.json.apiKey.mode, 'test');
    const liveKey = await live.request('POST', '/v1/api-keys', { body: { role: 'payments', name: 'p' } });
    assert.match(liveKey.json.secret, /^sk_live_/);
    assert.equal(liveKey.json.apiKey.mode, 'live');
    const crossed = await sandbox.request('POST', '/v1/api-keys', {
      body: { role: 'payments', name: 'x', mode: 'live' },
    });
    assert.equal(crossed.status, 403);
    assert.equal(crossed.json.error.code, 'MODE_MISMATCH');
    const me = await sandbox.request('GET', '/v1/me');
    assert.equal(me.json.apiKey.mode, 'test');
    const liveKeys = (await live.request('GET', '/v1/api-keys')).json.apiKeys.map((k: Json) => k.id);
    const testKeys = (await sandbox.request('GET', '/v1/api-keys')).json.apiKeys.map((k: Json) => k.id);
    assert.ok(testKeys.includes(key.json.apiKey.id) && !liveKeys.includes(key.json.apiKey.id));
    assert.ok(liveKeys.includes(liveKey.json.apiKey.id) && !testKeys.includes(liveKey.json.apiKey.id));
    // A key is looked up in its own mode's store only: a test secret with a live prefix is unknown.
    const forged = await t.request('GET', '/v1/accounts', {
      token: key.json.secret.replace('sk_test_', 'sk_live_'),
    });
    assert.equal(forged.status, 401);
  });

  test('lists and reads', async () => {
    const liveAccounts = (await live.request('GET', '/v1/accounts')).json.accounts.map((a: Json) => a.id);
    const testAccounts = (await sandbox.request('GET', '/v1/accounts')).json.accounts.map((a: Json) => a.id);
    assert.ok(testAccounts.includes(ALICE) && !liveAccounts.includes(ALICE));
    assert.ok(liveAccounts.includes(liveParties[0]!.accountId));
    assert.ok(!testAccounts.includes(liveParties[0]!.accountId));
    assert.deepEqual(
      (await allPayments(live)).map((p) => p.id),
      [livePayment.id],
    );
    assert.ok(!(await allPayments(sandbox)).some((p) => p.id === livePayment.id));
    for (const [client, path] of [
      [sandbox, `/v1/payments/${livePayment.id}`],
      [sandbox, `/v1/accounts/${liveParties[0]!.accountId}`],
      [sandbox, `/v1/customers/${liveParties[0]!.customerId}`],
      [live, `/v1/payments/${testPayment.id}`],
      [live, `/v1/accounts/${ALICE}`],
      [live, '/v1/customers/cus_demo_alice'],
    ] as const) {
      const res = await client.request('GET', path);
      assert.equal(res.status, 404, `${path}: ${res.body}`);
    }
    const ledger = (await live.request('GET', `/v1/ledger?paymentId=${testPayment.id}`)).json.ledgerEntries;
    assert.deepEqual(ledger, []);
    const liveAudit = await auditLogs(live);
    assert.ok(!liveAudit.some((e) => e.resourceId === testPayment.id));
    assert.ok((await auditLogs(sandbox)).some((e) => e.resourceId === testPayment.id));
    // The stores themselves: each payment is in one of them only.
    assert.equal(await t.app.modes.live.store.reads.getPayment(testPayment.id), undefined);
    assert.equal(await t.app.modes.test.store.reads.getPayment(livePayment.id), undefined);
    if (t.db.sqlitePath !== undefined) assert.ok(existsSync(sandboxPath(t.db.sqlitePath)));
  });

  test('writes', async () => {
    const crossed = await pay(sandbox, usd(liveParties[0]!, liveParties[1]!, 100));
    assert.equal(crossed.status, 404);
    assert.equal(crossed.json.error.code, 'SOURCE_ACCOUNT_NOT_FOUND');
    const reverse = await pay(live, {
      ...usd(liveParties[0]!, liveParties[1]!, 100),
      sourceAccountId: ALICE,
    });
    assert.equal(reverse.status, 404);
    const refund = await live.request('POST', `/v1/payments/${testPayment.id}/refunds`, {
      body: {},
      idempotencyKey: 'r-1',
    });
    assert.equal(refund.status, 404);
    const account = await sandbox.request('POST', '/v1/accounts', {
      body: { customerId: liveParties[0]!.customerId, currency: 'USD' },
    });
    assert.equal(account.status, 404);
    assert.equal((await balanceOf(live, liveParties[0]!.accountId)).availableBalanceCents, 10_000 - 1_250);
    // The sandbox's controls are not there for a live key.
    for (const [method, path] of [
      ['GET', '/v1/test/clock'],
      ['POST', '/v1/test/clock/advance'],
      ['POST', '/v1/test/reset'],
    ] as const) {
      const res = await live.request(method, path, path.endsWith('advance') ? { body: { seconds: 60 } } : {});
      assert.equal(res.status, 403, `${path}: ${res.body}`);
      assert.equal(res.json.error.code, 'TEST_MODE_ONLY');
    }
  });

  test('each mode’s audit log is signed by a key and name of its own', async () => {
    const liveKey = (await live.request('GET', '/v1/audit-logs/public-key')).body.trim();
    const testKey = (await sandbox.request('GET', '/v1/audit-logs/public-key')).body.trim();
    assert.match(liveKey, /^localhost\/payments-audit\+/);
    assert.match(testKey, /^localhost\/payments-audit\/sandbox\+/);
    assert.notEqual(liveKey.split('+')[2], testKey.split('+')[2], 'another public key');
    const checkpoint = (await sandbox.request('GET', '/v1/audit-logs/checkpoint')).body;
    assert.match(checkpoint, /^localhost\/payments-audit\/sandbox\n/);
  });

  test('events and webhooks', async () => {
    const paymentIdsOf = async (c: Client) =>
      (await c.request('GET', '/v1/events')).json.events.map((e: Json) => e.data?.payment?.id);
    const liveEvents = await paymentIdsOf(live);
    const testEvents = await paymentIdsOf(sandbox);
    assert.ok(liveEvents.includes(livePayment.id) && !liveEvents.includes(testPayment.id));
    assert.ok(testEvents.includes(testPayment.id) && !testEvents.includes(livePayment.id));
    const bodies = (r: Receiver) => r.received.map((x) => JSON.parse(x.body).data.payment.id);
    assert.deepEqual(bodies(liveReceiver), [livePayment.id]);
    assert.deepEqual(bodies(testReceiver), [testPayment.id]);
    const liveEndpoints = (await live.request('GET', '/v1/webhook-endpoints')).json.webhookEndpoints;
    const testEndpoints = (await sandbox.request('GET', '/v1/webhook-endpoints')).json.webhookEndpoints;
    assert.deepEqual(
      liveEndpoints.map((e: Json) => e.url),
      [liveReceiver.url],
    );
    assert.deepEqual(
      testEndpoints.map((e: Json) => e.url),
      [testReceiver.url],
    );
    // The sandbox's reserved hosts are not a live key's to use.
    const reserved = await live.request('POST', '/v1/webhook-endpoints', {
      body: { url: 'https://ok.sandbox.test/hooks', events: ['payment.posted'] },
    });
    assert.equal(reserved.status, 422, reserved.body);
  });
});

describe('test triggers', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(async () => t.destroy());

  /** Moves the sandbox past every one-minute window, so each trigger is judged alone. */
  const nextMinute = async () => {
    const res = await t.request('POST', '/v1/test/clock/advance', { body: { seconds: 61 } });
    assert.equal(res.status, 200, res.body);
  };

  test('each magic amount forces its documented outcome', async () => {
    const statusOf = { posted: 201, manual_review: 202, declined: 422 } as const;
    const to = await party(t);
    for (const trigger of TEST_TRIGGERS) {
      await nextMinute();
      // A funded sender of its own: holds keep their amount, and the funds check must pass unless forced.
      const from = await party(t, { balance: 1_000_000 });
      const res = await pay(t, usd(from, to, trigger.amountCents));
      assert.equal(res.status, statusOf[trigger.outcome], `${trigger.amountCents}: ${res.body}`);
      assert.equal(res.json.payment.status, trigger.outcome);
      if (trigger.reason === null) assert.deepEqual(res.json.payment.reasons, []);
      else
        assert.ok(res.json.payment.reasons.includes(trigger.reason), `${trigger.amountCents}: ${res.body}`);
    }
  });

  test('the documented names, countries and notes trigger the real checks', async () => {
    const to = await party(t);
    const cases = [
      { sender: { country: 'KP' }, extra: {}, status: 422, reason: 'high_risk_jurisdiction' },
      { sender: { name: 'Ivan Sidorenko' }, extra: {}, status: 422, reason: 'sanctions_match' },
      { sender: {}, extra: { note: 'for the cash pickup' }, status: 202, reason: 'suspicious_payment_note' },
      { sender: {}, extra: {}, amountCents: 2_000_000, status: 422, reason: 'insufficient_funds' },
    ];
    for (const c of cases) {
      await nextMinute();
      const from = await party(t, { balance: 1_000_000, ...c.sender });
      const res = await pay(t, usd(from, to, c.amountCents ?? 1_000, c.extra));
      assert.equal(res.status, c.status, `${c.reason}: ${res.body}`);
      assert.ok(res.json.payment.reasons.includes(c.reason), `${c.reason}: ${res.body}`);
    }
  });

  test('77700 posts even when the velocity rule would hold it', async () => {
    const from = await party(t, { balance: 1_000_000 });
    const to = await party(t);
    for (let i = 0; i < 5; i++) {
      const res = await pay(t, usd(from, to, 77_700));
      assert.equal(res.json.payment.status, 'posted', res.body);
    }
    // An ordinary amount now is held: the sixth attempt in a minute.
    const held = await pay(t, usd(from, to, 100));
    assert.ok(held.json.payment.reasons.includes('high_velocity_source_account'), held.body);
  });

  test('live mode has no triggers', async () => {
    const live = as(t, await liveAdmin(t));
    const from = await party(live, { balance: 200_000 });
    const to = await party(live);
    const res = await pay(live, usd(from, to, 77_713));
    assert.equal(res.status, 201, res.body);
  });

  test('a webhook endpoint on fail.sandbox.test fails every delivery', async () => {
    const endpoint = await t.request('POST', '/v1/webhook-endpoints', {
      body: { url: 'https://fail.sandbox.test/hooks', events: ['payment.posted'] },
    });
    assert.equal(endpoint.status, 201, endpoint.body);
    await nextMinute();
    const res = await pay(t, usd({ accountId: ALICE } as never, { accountId: BOB } as never, 100));
    assert.equal(res.status, 201);
    await t.app.dispatcher.dispatchOnce();
    const deliveries = await t.request(
      'GET',
      `/v1/webhook-endpoints/${endpoint.json.webhookEndpoint.id}/deliveries`,
    );
    assert.equal(deliveries.status, 200, deliveries.body);
    const [delivery] = deliveries.json.deliveries;
    assert.equal(delivery.status, 'pending');
    assert.equal(delivery.attempts, 1);
    assert.match(delivery.lastError, /HTTP 500/);
  });

  test('Test-Simulate: rate_limited answers 429 with Retry-After', async () => {
    const res = await t.request('GET', '/v1/accounts', { headers: { 'test-simulate': 'rate_limited' } });
    assert.equal(res.status, 429);
    assert.equal(res.json.error.code, 'RATE_LIMITED');
    assert.equal(res.headers['retry-after'], '1');
    const unknown = await t.request('GET', '/v1/accounts', { headers: { 'test-simulate': 'meteor' } });
    assert.equal(unknown.status, 400);
    const live = as(t, await liveAdmin(t));
    const ignored = await live.request('GET', '/v1/accounts', {
      headers: { 'test-simulate': 'rate_limited' },
    });
    assert.equal(ignored.status, 200);
  });
});

describe('PostgreSQL: a search_path in DATABASE_URL cannot make the two modes one', {
  skip: backend !== 'postgres' && 'PostgreSQL only',
}, () => {
  test('the start is refused, naming the schema', async () => {
    const db = await createTestDatabase();
    try {
      const url = new URL(db.url);
      url.searchParams.set('options', '-c search_path=public');
      await assert.rejects(
        startTestApp({ db: { url: url.toString(), drop: async () => {} } }),
        /schema is public: DATABASE_URL's search_path/,
      );
      url.searchParams.set('options', '-c search_path=sandbox');
      await assert.rejects(startTestApp({ db: { url: url.toString(), drop: async () => {} } }), /live store/);
    } finally {
      await db.drop();
    }
  });
});

describe('the test clock and the reset', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp({ env: { REVIEW_HOLD_EXPIRY_HOURS: '72' } });
  });
  after(async () => t.destroy());

  test('advancing the clock expires a review hold', async () => {
    const before = await balanceOf(t, ALICE);
    const held = await pay(t, usd({ accountId: ALICE } as never, { accountId: BOB } as never, 77_701));
    assert.equal(held.status, 202, held.body);
    assert.equal((await balanceOf(t, ALICE)).availableBalanceCents, before.availableBalanceCents - 77_701);
    const clock = (await t.request('GET', '/v1/test/clock')).json.testClock;
    const moved = await t.request('POST', '/v1/test/clock/advance', { body: { seconds: 72 * 3600 + 1 } });
    assert.equal(moved.status, 200, moved.body);
    assert.equal(moved.json.testClock.offsetSeconds, clock.offsetSeconds + 72 * 3600 + 1);
    assert.ok(Date.parse(moved.json.testClock.now) >= Date.parse(clock.now) + (72 * 3600 + 1) * 1000);
    // Already released when the advance answered.
    const payment = (await t.request('GET', `/v1/payments/${held.json.payment.id}`)).json.payment;
    assert.equal(payment.status, 'declined');
    assert.equal((await balanceOf(t, ALICE)).availableBalanceCents, before.availableBalanceCents);
    const audit = await auditLogs(t);
    assert.ok(audit.some((e) => e.eventType === 'sandbox.clock_advanced'));
    assert.ok(audit.some((e) => e.eventType === 'payment.hold_expired' && e.resourceId === payment.id));
    // Never backwards, and bounded.
    for (const seconds of [0, -5, 1.5, 366 * 24 * 3600 + 1]) {
      const res = await t.request('POST', '/v1/test/clock/advance', { body: { seconds } });
      assert.equal(res.status, 400, `${seconds}: ${res.body}`);
    }
  });

  test('advancing the clock closes the velocity window', async () => {
    const alice = { accountId: ALICE } as never;
    const bob = { accountId: BOB } as never;
    await t.request('POST', '/v1/test/clock/advance', { body: { seconds: 61 } });
    for (let i = 0; i < 3; i++) assert.equal((await pay(t, usd(alice, bob, 100 + i))).status, 201);
    assert.equal((await pay(t, usd(alice, bob, 200))).status, 202);
    await t.request('POST', '/v1/test/clock/advance', { body: { seconds: 61 } });
    assert.equal((await pay(t, usd(alice, bob, 201))).status, 201);
  });

  test('a reset racing refunds and receipts: each is answered (a 404 at worst), the process stays up', async () => {
    const posted = [];
    for (let i = 0; i < 6; i++) {
      await t.request('POST', '/v1/test/clock/advance', { body: { seconds: 61 } });
      const res = await pay(t, usd({ accountId: ALICE } as never, { accountId: BOB } as never, 100 + i));
      assert.equal(res.status, 201, res.body);
      posted.push(res.json.payment.id as string);
    }
    const answers = await Promise.all([
      ...posted.map((id, i) =>
        t.request('POST', `/v1/payments/${id}/refunds`, { body: {}, idempotencyKey: `race-${i}` }),
      ),
      ...posted.map((id) => t.request('GET', `/v1/payments/${id}/receipt`)),
      t.request('POST', '/v1/test/reset'),
      t.request('POST', '/v1/test/reset'),
    ]);
    for (const res of answers) assert.ok([200, 201, 404].includes(res.status), `${res.status}: ${res.body}`);
    assert.equal((await t.request('GET', '/v1/ledger/verify')).json.verification.valid, true);
    assert.equal((await t.request('GET', '/v1/audit-logs/verify')).json.verification.valid, true);
  });

  test('a reset empties the sandbox, seeds the demo data again and leaves live data alone', async () => {
    const liveToken = await liveAdmin(t);
    const live = as(t, liveToken);
    const from = await party(live, { balance: 5_000 });
    const to = await party(live);
    assert.equal((await pay(live, usd(from, to, 500))).status, 201);
    const partner = await t.request('POST', '/v1/api-keys', { body: { role: 'payments', name: 'partner' } });
    const endpoint = await t.request('POST', '/v1/webhook-endpoints', {
      body: { url: 'https://ok.sandbox.test/h', events: ['payment.posted'] },
    });
    assert.equal(endpoint.status, 201, endpoint.body);

    const reset = await t.request('POST', '/v1/test/reset');
    assert.equal(reset.status, 200, reset.body);
    assert.equal(reset.json.sandbox.demoDataSeeded, true);

    assert.deepEqual(await allPayments(t), []);
    assert.equal((await balanceOf(t, ALICE)).availableBalanceCents, 300_000);
    assert.equal((await balanceOf(t, BOB)).availableBalanceCents, 50_000);
    assert.deepEqual((await t.request('GET', '/v1/webhook-endpoints')).json.webhookEndpoints, []);
    assert.equal((await t.request('GET', '/v1/test/clock')).json.testClock.offsetSeconds, 0);
    const audit = await auditLogs(t);
    assert.equal(audit[0].eventType, 'sandbox.reset');
    assert.equal(audit[0].prevHash, 'GENESIS');
    assert.equal((await t.request('GET', '/v1/audit-logs/verify')).json.verification.valid, true);
    assert.equal((await t.request('GET', '/v1/ledger/verify')).json.verification.valid, true);
    // Keys stay: the partner's key still works, on the fresh data.
    const asPartner = await pay(t, usd({ accountId: ALICE } as never, { accountId: BOB } as never, 100), {
      token: partner.json.secret,
    });
    assert.equal(asPartner.status, 201, asPartner.body);
    // The velocity window forgot the erased payments of the demo accounts.
    for (let i = 0; i < 2; i++) {
      const res = await pay(t, usd({ accountId: ALICE } as never, { accountId: BOB } as never, 300 + i));
      assert.equal(res.status, 201, res.body);
    }
    // Live data is untouched.
    assert.equal((await allPayments(live)).length, 1);
    assert.equal((await balanceOf(live, from.accountId)).availableBalanceCents, 4_500);
    assert.equal((await live.request('GET', '/v1/ledger/verify')).json.verification.valid, true);
  });
});
