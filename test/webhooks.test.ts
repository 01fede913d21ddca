import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { newWebhookSecret, signedHeaders } from '../src/webhooks/signature.ts';
import { isPrivateAddress } from '../src/webhooks/targets.ts';
import { apiKey, assertBooksValid, type Json, listAll, party, pay, rawSql } from './support/fixtures.ts';
import {
  backend,
  createTestDatabase,
  startTestApp,
  type TestApp,
  type TestDatabase,
} from './support/harness.ts';
import { type Received, Receiver } from './support/receiver.ts';

/**
 * Events and webhooks (issue 6): the outbox is written with each change; a dispatcher delivers every event to
 * every subscribed endpoint at least once, signed, retrying with backoff, surviving a restart; private
 * targets are refused unless allowed. The receiver is a real HTTP server on 127.0.0.1, so these tests allow
 * private targets except where the refusal is the point.
 */
const FAST_WEBHOOKS = {
  WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true',
  WEBHOOK_DISPATCH_INTERVAL_MS: '10',
  WEBHOOK_BACKOFF_BASE_MS: '20',
  WEBHOOK_BACKOFF_MAX_MS: '100',
  WEBHOOK_TIMEOUT_MS: '2000',
};

/** Whether the official Standard Webhooks verifier accepts a delivery under `secret` (raw body, its headers). */
function verifies(secret: string, r: { body: string; headers: Received['headers'] }): boolean {
  try {
    new Webhook(secret).verify(r.body, r.headers as Record<string, string>);
    return true;
  } catch {
    return false;
  }
}

const cleanup: (() => Promise<void>)[] = [];
after(async () => {
  for (const fn of cleanup.reverse()) await fn();
});

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function register(t: TestApp, url: string, events: string[]): Promise<{ id: string; secret: string }> {
  const res = await t.request('POST', '/v1/webhook-endpoints', { body: { url, events } });
  assert.equal(res.status, 201, res.body);
  assert.match(res.json.webhookEndpoint.secret, /^whsec_[A-Za-z0-9+/]{43}=$/, 'whsec_ + base64 of 32 bytes');
  return { id: res.json.webhookEndpoint.id, secret: res.json.webhookEndpoint.secret };
}

async function deliveries(t: TestApp, endpointId: string): Promise<Json[]> {
  return listAll(t, `/v1/webhook-endpoints/${endpointId}/deliveries`, 'deliveries');
}

async function postedPayment(t: TestApp): Promise<Json> {
  const sender = await party(t, { balance: 50_000 });
  const receiver = await party(t);
  const res = await pay(t, {
    sourceAccountId: sender.accountId,
    destinationAccountId: receiver.accountId,
    amountCents: 1_234,
    currency: 'USD',
  });
  assert.equal(res.status, 201, res.body);
  return res.json.payment;
}

async function eventFor(t: TestApp, type: string, resourceId: string): Promise<Json> {
  const events = await listAll(t, '/v1/events', 'events');
  const event = events.find((e: Json) => e.type === type && e.data.payment?.id === resourceId);
  assert.ok(event, `event ${type} for ${resourceId}`);
  return event;
}

async function startApp(env: Record<string, string>, db?: TestDatabase): Promise<TestApp> {
  const t = await startTestApp({ ...(db ? { db } : {}), env });
  cleanup.push(() => t.close());
  return t;
}

test('signatures are Standard Webhooks: the official verifier accepts them and rejects tampering, wrong secrets', () => {
  const body = '{"id":"evt_1","type":"payment.posted","createdAt":"2026-01-01T00:00:00.000Z","data":{}}';
  const secret = newWebhookSecret();
  const now = Math.floor(Date.now() / 1000);
  const headers = signedHeaders([secret], 'evt_1', now, body);
  assert.match(headers['webhook-signature'], /^v1,[A-Za-z0-9+/]{43}=$/);
  assert.equal(headers['webhook-timestamp'], String(now));
  // The same bytes as the official library's own signer.
  assert.equal(headers['webhook-signature'], new Webhook(secret).sign('evt_1', new Date(now * 1000), body));
  assert.equal(verifies(secret, { body, headers: { ...headers } }), true);
  assert.equal(verifies(secret, { body: body.replace('{}', '{"x":1}'), headers: { ...headers } }), false);
  assert.equal(verifies(newWebhookSecret(), { body, headers: { ...headers } }), false);
  assert.equal(verifies(secret, { body, headers: { ...headers, 'webhook-id': 'evt_2' } }), false);
  // Older than the 5-minute tolerance: refused even with a good signature.
  const old = signedHeaders([secret], 'evt_1', now - 301, body);
  assert.equal(verifies(secret, { body, headers: { ...old } }), false);
});

test('private, loopback and link-local addresses are recognised (IPv4 and IPv6)', () => {
  for (const a of [
    '127.0.0.1',
    '10.1.2.3',
    '172.16.0.1',
    '192.168.1.1',
    '169.254.169.254',
    '100.64.0.1',
    '0.0.0.0',
    '::1',
    '::',
    'fe80::1',
    'fd00::1',
    '::ffff:127.0.0.1',
    '::ffff:10.0.0.1',
    '::ffff:7f00:1',
    // IPv4 embedded in IPv6 some other way, and the 6to4 relay anycast (issue 13).
    '::127.0.0.1',
    '::7f00:1',
    '::808:808',
    '::ffff:0:127.0.0.1',
    '64:ff9b::7f00:1',
    '64:ff9b:1::7f00:1',
    '2002:7f00:1::',
    '2001:0:7f00:1::',
    '192.88.99.1',
    '198.18.0.1',
    '2001:db8::1',
    'not-an-ip',
  ]) {
    assert.equal(isPrivateAddress(a), true, a);
  }
  for (const a of ['93.184.216.34', '8.8.8.8', '2606:4700:4700::1111', '::ffff:8.8.8.8']) {
    assert.equal(isPrivateAddress(a), false, a);
  }
});

test('an event is delivered, signed so that the official standardwebhooks verifier accepts it; the secret is shown once and never logged', async () => {
  const receiver = new Receiver();
  cleanup.push(() => receiver.stop());
  const url = (await receiver.start()).url;
  const t = await startApp(FAST_WEBHOOKS);
  const endpoint = await register(t, url, ['payment.posted', 'customer.kyc_updated']);

  const listed = await t.request('GET', '/v1/webhook-endpoints');
  assert.equal(listed.status, 200);
  assert.deepEqual(
    listed.json.webhookEndpoints.map((e: Json) => [e.id, e.url, e.events, e.secret]),
    [[endpoint.id, url, ['payment.posted', 'customer.kyc_updated'], undefined]],
  );

  const payment = await postedPayment(t);
  const event = await eventFor(t, 'payment.posted', payment.id);
  const [got] = await waitFor('the delivery', async () => {
    const r = receiver.forEvent(event.id);
    return r.length > 0 ? r : undefined;
  });
  assert.equal(got!.headers['content-type'], 'application/json');
  const parsed = JSON.parse(got!.body);
  assert.deepEqual(parsed, event, 'the body is {id, type, createdAt, data}, as GET /v1/events lists it');
  assert.equal(parsed.data.payment.status, 'posted');
  assert.equal(got!.headers['webhook-id'], event.id, 'webhook-id is the event id');
  assert.match(String(got!.headers['webhook-timestamp']), /^[0-9]{10}$/);
  assert.match(String(got!.headers['webhook-signature']), /^v1,[A-Za-z0-9+/]{43}=$/);
  assert.equal(verifies(endpoint.secret, got!), true, 'the official standardwebhooks verifier accepts it');
  assert.equal(verifies(endpoint.secret, { ...got!, body: got!.body.replace('1234', '9999') }), false);

  // A KYC decision is an event too; events it did not subscribe to are not sent.
  const compliance = await apiKey(t, 'compliance');
  const kyc = await t.request('POST', '/v1/customers/cus_demo_bob/kyc', {
    token: compliance.token,
    body: { kycStatus: 'manual_review', note: 'Re-check address' },
  });
  assert.equal(kyc.status, 200, kyc.body);
  const kycDelivery = await waitFor('the KYC event', async () =>
    receiver.received.find((r) => JSON.parse(r.body).type === 'customer.kyc_updated'),
  );
  assert.deepEqual(JSON.parse(kycDelivery.body).data.customer, {
    id: 'cus_demo_bob',
    kycStatus: 'manual_review',
    kycTier: 'standard',
    kycStatusFrom: 'verified',
  });
  assert.ok(!kycDelivery.body.includes('Re-check') && !kycDelivery.body.includes('Bob'), 'no note or PII');

  const rows = await waitFor('succeeded deliveries', async () => {
    const d = await deliveries(t, endpoint.id);
    return d.length === 2 && d.every((x: Json) => x.status === 'succeeded') ? d : undefined;
  });
  assert.deepEqual(
    rows.map((d: Json) => [d.eventType, d.attempts, d.lastStatusCode]),
    [
      ['payment.posted', 1, 200],
      ['customer.kyc_updated', 1, 200],
    ],
  );
  assert.ok(!t.logs.text().includes(endpoint.secret), 'the signing secret is never logged');
  const plaintextRows = await rawSql(
    t.db,
    'UPDATE webhook_endpoints SET url = url WHERE secret_enc LIKE ? OR url LIKE ?',
    [`%${endpoint.secret}%`, `%${endpoint.secret}%`],
  );
  assert.equal(plaintextRows, 0, 'the secret is stored encrypted');
  await assertBooksValid(t);
});

test('a receiver that fails twice, across a restart, gets the event once as a success; nothing is lost', async () => {
  const receiver = new Receiver();
  cleanup.push(() => receiver.stop());
  const url = (await receiver.start()).url;
  const db = await createTestDatabase();
  cleanup.push(() => db.drop());
  receiver.answerNext(500, 503);
  let t = await startApp(FAST_WEBHOOKS, db);
  const endpoint = await register(t, url, ['payment.posted']);
  const payment = await postedPayment(t);
  const event = await eventFor(t, 'payment.posted', payment.id);

  // The first attempt fails and is recorded; then the process stops (in-flight sends finish first).
  await waitFor('a first failed attempt', async () => {
    const [d] = await deliveries(t, endpoint.id);
    return d?.attempts >= 1 ? d : undefined;
  });
  await t.close();

  // A new process picks the pending delivery up from the outbox; a new event is delivered alongside it.
  t = await startApp(FAST_WEBHOOKS, db);
  const second = await postedPayment(t);
  const secondEvent = await eventFor(t, 'payment.posted', second.id);
  const done = await waitFor('both deliveries to succeed', async () => {
    const d = await deliveries(t, endpoint.id);
    return d.length === 2 && d.every((x: Json) => x.status === 'succeeded') ? d : undefined;
  });
  const first = done.find((d: Json) => d.eventId === event.id);
  assert.deepEqual([first.attempts, first.lastStatusCode, first.lastError], [3, 200, null]);

  const attempts = receiver.forEvent(event.id);
  assert.deepEqual(
    attempts.map((r) => r.answered),
    [500, 503, 200],
    'two failures, then exactly one success',
  );
  assert.equal(new Set(attempts.map((r) => r.body)).size, 1, 'every attempt sends the same bytes');
  for (const r of attempts) assert.equal(verifies(endpoint.secret, r), true);
  assert.deepEqual(
    receiver.forEvent(secondEvent.id).map((r) => r.answered),
    [200],
  );
  await assertBooksValid(t);
});

test('after WEBHOOK_MAX_ATTEMPTS failures a delivery is marked failed', async () => {
  const receiver = new Receiver();
  cleanup.push(() => receiver.stop());
  const url = (await receiver.start()).url;
  receiver.answerNext(500, 500, 500, 500, 500);
  const t = await startApp({ ...FAST_WEBHOOKS, WEBHOOK_MAX_ATTEMPTS: '3' });
  const endpoint = await register(t, url, ['payment.posted']);
  const payment = await postedPayment(t);
  const event = await eventFor(t, 'payment.posted', payment.id);
  const [failed] = await waitFor('the delivery to fail', async () => {
    const d = await deliveries(t, endpoint.id);
    return d[0]?.status === 'failed' ? d : undefined;
  });
  assert.deepEqual([failed.attempts, failed.lastStatusCode, failed.nextAttemptAt], [3, 500, null]);
  assert.equal(receiver.forEvent(event.id).length, 3);
});

test('private targets are refused at registration and at delivery unless allowed (SSRF)', async () => {
  const receiver = new Receiver();
  cleanup.push(() => receiver.stop());
  const url = (await receiver.start()).url;
  const db = await createTestDatabase();
  cleanup.push(() => db.drop());
  let t = await startApp({ ...FAST_WEBHOOKS, WEBHOOK_ALLOW_PRIVATE_TARGETS: 'false' }, db);
  const port = new URL(url).port;
  for (const target of [
    url,
    `http://localhost:${port}/`,
    'http://10.0.0.8/hook',
    'http://169.254.169.254/latest/meta-data',
    'http://[::1]/hook',
    'http://[::ffff:127.0.0.1]/hook',
    'http://[fe80::1]/hook',
    'http://[::127.0.0.1]/hook',
    'http://[::ffff:0:127.0.0.1]/hook',
    'http://[64:ff9b:1::7f00:1]/hook',
    'http://[2002:7f00:1::]/hook',
    'http://192.88.99.1/hook',
  ]) {
    const res = await t.request('POST', '/v1/webhook-endpoints', {
      body: { url: target, events: ['payment.posted'] },
    });
    assert.equal(res.status, 422, `${target}: ${res.body}`);
    assert.equal(res.json.error.code, 'WEBHOOK_TARGET_FORBIDDEN');
  }
  for (const target of ['ftp://example.com/x', 'http://user:pw@example.com/x']) {
    const res = await t.request('POST', '/v1/webhook-endpoints', {
      body: { url: target, events: ['payment.posted'] },
    });
    assert.equal(res.status, 400, `${target}: ${res.body}`);
  }
  await t.close();

  // Registered while allowed, delivered while not: the attempt is refused and nothing reaches the target.
  t = await startApp(FAST_WEBHOOKS, db);
  const endpoint = await register(t, url, ['payment.posted']);
  await t.close();
  t = await startApp(
    { ...FAST_WEBHOOKS, WEBHOOK_ALLOW_PRIVATE_TARGETS: 'false', WEBHOOK_MAX_ATTEMPTS: '2' },
    db,
  );
  await postedPayment(t);
  const [refused] = await waitFor('the refused delivery', async () => {
    const d = await deliveries(t, endpoint.id);
    return d[0]?.status === 'failed' ? d : undefined;
  });
  assert.match(refused.lastError, /private/);
  assert.equal(receiver.received.length, 0);
});

test('events page with a cursor; endpoints can be deleted', async () => {
  const t = await startApp(FAST_WEBHOOKS);
  for (let i = 0; i < 3; i++) await postedPayment(t);
  const auditor = await apiKey(t, 'auditor');
  const page1 = await t.request('GET', '/v1/events?limit=2', { token: auditor.token });
  assert.equal(page1.status, 200, page1.body);
  assert.equal(page1.json.events.length, 2);
  assert.equal(page1.json.hasMore, true);
  const page2 = await t.request('GET', `/v1/events?limit=2&cursor=${page1.json.nextCursor}`, {
    token: auditor.token,
  });
  assert.equal(page2.json.events.length, 1);
  assert.equal(page2.json.hasMore, false);
  const ids = [...page1.json.events, ...page2.json.events].map((e: Json) => e.id);
  assert.equal(new Set(ids).size, 3);

  const endpoint = await register(t, 'http://127.0.0.1:9/none', ['payment.refunded']);
  const gone = await t.request('DELETE', `/v1/webhook-endpoints/${endpoint.id}`);
  assert.equal(gone.status, 204);
  assert.equal((await t.request('GET', `/v1/webhook-endpoints/${endpoint.id}`)).status, 404);
  assert.equal((await t.request('DELETE', `/v1/webhook-endpoints/${endpoint.id}`)).status, 404);
  const audit = await listAll(t, '/v1/audit-logs', 'logs');
  assert.deepEqual(
    audit.filter((e: Json) => e.resourceId === endpoint.id).map((e: Json) => e.eventType),
    ['webhook_endpoint.created', 'webhook_endpoint.deleted'],
  );
  assert.ok(!JSON.stringify(audit).includes(endpoint.secret));
});

test('several processes on one PostgreSQL database: each event is delivered once', {
  skip: backend !== 'postgres',
}, async () => {
  const receiver = new Receiver();
  cleanup.push(() => receiver.stop());
  const url = (await receiver.start()).url;
  const db = await createTestDatabase();
  cleanup.push(() => db.drop());
  const a = await startApp(FAST_WEBHOOKS, db);
  const b = await startApp(FAST_WEBHOOKS, db);
  const endpoint = await register(a, url, ['payment.posted']);
  for (let i = 0; i < 10; i++) await postedPayment(i % 2 === 0 ? a : b);
  const done = await waitFor('all deliveries', async () => {
    const d = await deliveries(a, endpoint.id);
    return d.length === 10 && d.every((x: Json) => x.status === 'succeeded') ? d : undefined;
  });
  assert.ok(done.every((d: Json) => d.attempts === 1));
  const ids = receiver.received.map((r) => r.headers['webhook-id']);
  assert.equal(ids.length, 10, 'no event was sent twice');
  assert.equal(new Set(ids).size, 10);
});
