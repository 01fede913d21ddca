import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import type { IncomingHttpHeaders } from 'node:http';
import { after, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import type { Role } from '../src/domain/types.ts';
import { hashSecret, newSecret } from '../src/security/api-keys.ts';
import { type AttemptReport, WebhookDispatcher } from '../src/webhooks/dispatcher.ts';
import { signedHeaders } from '../src/webhooks/signature.ts';
import { apiKey, type Json, listAll, party, pay, rawRows, rawSql } from './support/fixtures.ts';
import {
  backend,
  createTestDatabase,
  freePort,
  manualClock,
  startTestApp,
  type TestApp,
} from './support/harness.ts';
import { type Received, Receiver } from './support/receiver.ts';

/**
 * Standard Webhooks (issue 14), through HTTP on both backends: every delivery verifies with the official
 * `standardwebhooks` package, through a secret rotation's grace period and not after it; the ping reaches its
 * one endpoint; a failed delivery is retried by hand and then succeeds; the new routes are admin-only and
 * audited; a secret from before the standard keeps working; and examples/webhook-receiver.mjs verifies a real
 * delivery.
 *
 * The dispatcher's background loop is stopped: each test drives it with `dispatchOnce` under a manual clock
 * that starts at the real time, so the official verifier (which checks webhook-timestamp against the real
 * clock, 5 minutes either way) accepts the timestamps while the test moves through grace periods and backoff.
 */
const ENV = {
  WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true',
  WEBHOOK_DISPATCH_INTERVAL_MS: '60000',
  WEBHOOK_BACKOFF_BASE_MS: '1000',
  WEBHOOK_BACKOFF_MAX_MS: '1000',
  WEBHOOK_TIMEOUT_MS: '5000',
};
const SECRET_FORMAT = /^whsec_[A-Za-z0-9+/]{43}=$/;

const cleanup: (() => Promise<void>)[] = [];
after(async () => {
  for (const fn of cleanup.reverse()) await fn();
});

/** The app under a manual clock at `startMs` (the real time by default), its dispatcher driven by hand. */
async function setup(
  env: Record<string, string> = {},
  startMs = Date.now(),
): Promise<{ t: TestApp; clock: ReturnType<typeof manualClock>; receiver: Receiver }> {
  const clock = manualClock(startMs);
  const t = await startTestApp({ clock: clock.now, env: { ...ENV, ...env } });
  cleanup.push(() => t.destroy());
  await t.app.dispatcher.stop();
  const receiver = await new Receiver().start();
  cleanup.push(() => receiver.stop());
  return { t, clock, receiver };
}

function verifyError(secret: string, r: { body: string; headers: IncomingHttpHeaders }): string | null {
  try {
    new Webhook(secret).verify(r.body, r.headers as Record<string, string>);
    return null;
  } catch (error) {
    return (error as Error).message;
  }
}
const verifies = (secret: string, r: { body: string; headers: IncomingHttpHeaders }) =>
  verifyError(secret, r) === null;
const signaturesOf = (r: Received) => String(r.headers['webhook-signature']).split(' ');

async function register(t: TestApp, url: string, events: string[]): Promise<{ id: string; secret: string }> {
  const res = await t.request('POST', '/v1/webhook-endpoints', { body: { url, events } });
  assert.equal(res.status, 201, res.body);
  assert.match(res.json.webhookEndpoint.secret, SECRET_FORMAT);
  return { id: res.json.webhookEndpoint.id, secret: res.json.webhookEndpoint.secret };
}

async function rotate(t: TestApp, endpointId: string, body?: unknown, token?: string) {
  return t.request('POST', `/v1/webhook-endpoints/${endpointId}/rotate-secret`, {
    ...(body === undefined ? {} : { body }),
    ...(token === undefined ? {} : { token }),
  });
}

/** Queues a ping (202), runs one dispatch round, and returns what the receiver got for it. */
async function ping(
  t: TestApp,
  endpointId: string,
  receiver: Receiver,
): Promise<{ delivery: Json; got: Received }> {
  const res = await t.request('POST', `/v1/webhook-endpoints/${endpointId}/test`);
  assert.equal(res.status, 202, res.body);
  await t.app.dispatcher.dispatchOnce();
  const got = receiver.forEvent(res.json.delivery.eventId);
  assert.equal(got.length, 1, 'the ping arrived once');
  return { delivery: res.json.delivery, got: got[0]! };
}

async function auditOf(t: TestApp, resourceId: string): Promise<Json[]> {
  const entries = await listAll(t, '/v1/audit-logs', 'logs');
  return entries.filter((e: Json) => e.resourceId === resourceId);
}

const iso = (ms: number) => new Date(ms).toISOString();

test('a payment event verifies with the official library; a tampered body, another id or an old timestamp does not', async () => {
  const { t, receiver } = await setup();
  const endpoint = await register(t, receiver.url, ['payment.posted']);
  const sender = await party(t, { balance: 50_000 });
  const payee = await party(t);
  const paid = await pay(t, {
    sourceAccountId: sender.accountId,
    destinationAccountId: payee.accountId,
    amountCents: 1_234,
    currency: 'USD',
  });
  assert.equal(paid.status, 201, paid.body);
  assert.equal(await t.app.dispatcher.dispatchOnce(), 1);
  const [got] = receiver.received;
  const event = JSON.parse(got!.body);
  assert.equal(event.type, 'payment.posted');
  assert.equal(got!.headers['webhook-id'], event.id, 'webhook-id is the event id');
  assert.equal(signaturesOf(got!).length, 1);
  assert.deepEqual(
    new Webhook(endpoint.secret).verify(got!.body, got!.headers as Record<string, string>),
    event,
  );
  assert.match(
    verifyError(endpoint.secret, { ...got!, body: got!.body.replace('1234', '1235') })!,
    /signature/,
  );
  assert.match(
    verifyError(endpoint.secret, { ...got!, headers: { ...got!.headers, 'webhook-id': 'evt_other' } })!,
    /signature/,
  );

  // A server whose clock is 10 minutes behind sends a timestamp the receiver refuses as too old, although
  // the signature over it is right.
  const late = await setup({}, Date.now() - 600_000);
  const lateEndpoint = await register(late.t, late.receiver.url, ['payment.refunded']);
  const { got: stale } = await ping(late.t, lateEndpoint.id, late.receiver);
  assert.match(verifyError(lateEndpoint.secret, stale)!, /timestamp too old/);
  const timestamp = Number(stale.headers['webhook-timestamp']);
  assert.equal(
    stale.headers['webhook-signature'],
    new Webhook(lateEndpoint.secret).sign(
      String(stale.headers['webhook-id']),
      new Date(timestamp * 1000),
      stale.body,
    ),
  );
});

test('rotation: old and new secret both verify during the grace period, only the new one after it; at most two', async () => {
  const { t, clock, receiver } = await setup();
  const endpoint = await register(t, receiver.url, ['payment.refunded']);
  const { got: before } = await ping(t, endpoint.id, receiver);
  assert.ok(verifies(endpoint.secret, before));

  const rotated = await rotate(t, endpoint.id, { gracePeriodSeconds: 60 });
  assert.equal(rotated.status, 200, rotated.body);
  const view = rotated.json.webhookEndpoint;
  assert.match(view.secret, SECRET_FORMAT);
  assert.notEqual(view.secret, endpoint.secret);
  assert.equal(view.previousSecretExpiresAt, iso(clock.now() + 60_000));
  assert.equal(view.secretRotatedAt, iso(clock.now()));
  const read = await t.request('GET', `/v1/webhook-endpoints/${endpoint.id}`);
  const { secret: _shownOnce, ...withoutSecret } = view;
  assert.deepEqual(read.json.webhookEndpoint, withoutSecret, 'the secret is shown once');

  // During the grace period: two signatures, the new secret's first; a receiver on either secret verifies.
  clock.advance(59_000);
  const { got: during } = await ping(t, endpoint.id, receiver);
  const signatures = signaturesOf(during);
  assert.equal(signatures.length, 2);
  const timestamp = new Date(Number(during.headers['webhook-timestamp']) * 1000);
  const eventId = String(during.headers['webhook-id']);
  assert.equal(signatures[0], new Webhook(view.secret).sign(eventId, timestamp, during.body));
  assert.equal(signatures[1], new Webhook(endpoint.secret).sign(eventId, timestamp, during.body));
  assert.ok(verifies(endpoint.secret, during), 'the old secret verifies during the grace period');
  assert.ok(verifies(view.secret, during), 'the new secret verifies during the grace period');
  assert.ok(!verifies(view.secret, { ...during, body: during.body.replace('ping', 'pong') }));

  // After it: the old secret no longer signs.
  clock.advance(1_001);
  const { got: afterGrace } = await ping(t, endpoint.id, receiver);
  assert.equal(signaturesOf(afterGrace).length, 1);
  assert.ok(verifies(view.secret, afterGrace));
  assert.match(verifyError(endpoint.secret, afterGrace)!, /No matching signature/);

  // Rotating again during a grace period keeps the two newest secrets only.
  const second = await rotate(t, endpoint.id);
  assert.equal(second.status, 200, second.body);
  assert.equal(second.json.webhookEndpoint.previousSecretExpiresAt, iso(clock.now() + 86_400_000), 'a day');
  const third = await rotate(t, endpoint.id, { gracePeriodSeconds: 3_600 });
  assert.equal(third.status, 200, third.body);
  const { got: twice } = await ping(t, endpoint.id, receiver);
  assert.equal(signaturesOf(twice).length, 2);
  assert.ok(verifies(third.json.webhookEndpoint.secret, twice));
  assert.ok(verifies(second.json.webhookEndpoint.secret, twice));
  assert.ok(!verifies(view.secret, twice), 'the oldest secret was dropped');

  // No grace: the replaced secret stops at once.
  const fourth = await rotate(t, endpoint.id, { gracePeriodSeconds: 0 });
  assert.equal(fourth.status, 200, fourth.body);
  assert.equal(fourth.json.webhookEndpoint.previousSecretExpiresAt, null);
  const { got: last } = await ping(t, endpoint.id, receiver);
  assert.equal(signaturesOf(last).length, 1);
  assert.ok(verifies(fourth.json.webhookEndpoint.secret, last));
  assert.ok(!verifies(third.json.webhookEndpoint.secret, last));

  // Bad grace periods, unknown and deleted endpoints.
  for (const body of [
    { gracePeriodSeconds: 604_801 },
    { gracePeriodSeconds: -1 },
    { gracePeriodSeconds: 1.5 },
    { x: 1 },
  ]) {
    const res = await rotate(t, endpoint.id, body);
    assert.equal(res.status, 400, `${JSON.stringify(body)}: ${res.body}`);
    assert.equal(res.json.error.code, 'VALIDATION_ERROR');
  }
  assert.equal((await rotate(t, endpoint.id, { gracePeriodSeconds: 604_800 })).status, 200, 'seven days');
  const missing = await rotate(t, 'whe_missing');
  assert.equal(missing.status, 404, missing.body);
  assert.equal(missing.json.error.code, 'WEBHOOK_ENDPOINT_NOT_FOUND');

  // Audited without a secret; no secret in the logs or in plaintext at rest.
  const audit = await auditOf(t, endpoint.id);
  assert.deepEqual(
    audit.map((e: Json) => e.eventType),
    [
      'created',
      'test_queued',
      'secret_rotated',
      'test_queued',
      'test_queued',
      'secret_rotated',
      'secret_rotated',
      'test_queued',
      'secret_rotated',
      'test_queued',
      'secret_rotated',
    ].map((type) => `webhook_endpoint.${type}`),
  );
  const firstRotation = audit.find((e: Json) => e.eventType === 'webhook_endpoint.secret_rotated');
  assert.deepEqual(firstRotation.metadata, {
    endpointId: endpoint.id,
    gracePeriodSeconds: 60,
    previousSecretExpiresAt: view.previousSecretExpiresAt,
  });
  const secrets = [
    endpoint.secret,
    view.secret,
    second.json.webhookEndpoint.secret,
    fourth.json.webhookEndpoint.secret,
  ];
  const stored = JSON.stringify(await rawRows(t.db, 'SELECT * FROM webhook_endpoints'));
  for (const secret of secrets) {
    const base64 = secret.slice('whsec_'.length);
    assert.ok(!JSON.stringify(audit).includes(base64), 'no secret in the audit log');
    assert.ok(!t.logs.text().includes(base64), 'no secret in the logs');
    assert.ok(!stored.includes(base64), 'secrets are stored encrypted');
  }
});

test('a rotation under an Idempotency-Key replays the same secret, sealed at rest; another body is 409', async () => {
  const { t, receiver } = await setup();
  const endpoint = await register(t, receiver.url, ['payment.posted']);
  const key = `rotate-${randomUUID()}`;
  const path = `/v1/webhook-endpoints/${endpoint.id}/rotate-secret`;
  const first = await t.request('POST', path, { body: { gracePeriodSeconds: 120 }, idempotencyKey: key });
  assert.equal(first.status, 200, first.body);
  assert.equal(first.headers['idempotency-replayed'], 'false');
  const again = await t.request('POST', path, { body: { gracePeriodSeconds: 120 }, idempotencyKey: key });
  assert.equal(again.status, 200);
  assert.equal(again.body, first.body, 'the same secret, replayed');
  assert.equal(again.headers['idempotency-replayed'], 'true');
  const other = await t.request('POST', path, { body: { gracePeriodSeconds: 60 }, idempotencyKey: key });
  assert.equal(other.status, 409, other.body);
  assert.equal(other.json.error.code, 'IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD');
  const rotations = (await auditOf(t, endpoint.id)).filter((e: Json) =>
    e.eventType.endsWith('secret_rotated'),
  );
  assert.equal(rotations.length, 1, 'rotated once');
  const records = JSON.stringify(await rawRows(t.db, 'SELECT response_body FROM idempotency_records'));
  assert.ok(!records.includes(first.json.webhookEndpoint.secret.slice(6)), 'the stored response is sealed');
  const { got } = await ping(t, endpoint.id, receiver);
  assert.ok(verifies(first.json.webhookEndpoint.secret, got));
});

test('the ping reaches its one endpoint whatever it subscribed to, verifies, and is audited but not an event', async () => {
  const { t, receiver } = await setup();
  const other = await new Receiver().start();
  cleanup.push(() => other.stop());
  const endpoint = await register(t, receiver.url, ['payment.refunded']);
  const bystander = await register(t, other.url, ['payment.refunded', 'payment.posted']);

  const res = await t.request('POST', `/v1/webhook-endpoints/${endpoint.id}/test`, { body: {} });
  assert.equal(res.status, 202, res.body);
  const queued = res.json.delivery;
  assert.deepEqual(
    [
      queued.status,
      queued.attempts,
      queued.eventType,
      queued.endpointId,
      queued.manualRetries,
      queued.lastError,
    ],
    ['pending', 0, 'ping', endpoint.id, 0, null],
  );
  assert.equal(await t.app.dispatcher.dispatchOnce(), 1);
  const [got] = receiver.forEvent(queued.eventId);
  const body = new Webhook(endpoint.secret).verify(got!.body, got!.headers as Record<string, string>) as Json;
  assert.deepEqual(Object.keys(body), ['id', 'type', 'createdAt', 'data']);
  assert.deepEqual(
    [body.id, body.type, body.data],
    [queued.eventId, 'ping', { webhookEndpointId: endpoint.id }],
  );
  assert.equal(other.received.length, 0, 'no other endpoint gets it');
  assert.deepEqual(await listAll(t, `/v1/webhook-endpoints/${bystander.id}/deliveries`, 'deliveries'), []);

  // The client follows the delivery.
  const watched = await t.request('GET', `/v1/webhook-deliveries/${queued.id}`);
  assert.equal(watched.status, 200, watched.body);
  assert.deepEqual(
    [watched.json.delivery.status, watched.json.delivery.attempts, watched.json.delivery.lastStatusCode],
    ['succeeded', 1, 200],
  );
  const listed = await listAll(t, `/v1/webhook-endpoints/${endpoint.id}/deliveries`, 'deliveries');
  assert.deepEqual(listed, [watched.json.delivery]);

  // Not a change: not in GET /v1/events; an admin action: in the audit log.
  const auditor = await apiKey(t, 'auditor');
  const events = await t.request('GET', '/v1/events?limit=500', { token: auditor.token });
  assert.equal(events.status, 200, events.body);
  assert.ok(!events.json.events.some((e: Json) => e.type === 'ping' || e.id === queued.eventId));
  const audit = await auditOf(t, endpoint.id);
  assert.deepEqual(audit.at(-1).metadata, {
    endpointId: endpoint.id,
    eventId: queued.eventId,
    deliveryId: queued.id,
  });
  assert.equal(audit.at(-1).eventType, 'webhook_endpoint.test_queued');

  // Unknown or deleted endpoint: 404; a body with fields: 400.
  assert.equal(
    (await t.request('POST', `/v1/webhook-endpoints/${endpoint.id}/test`, { body: { x: 1 } })).status,
    400,
  );
  assert.equal((await t.request('DELETE', `/v1/webhook-endpoints/${endpoint.id}`)).status, 204);
  for (const id of [endpoint.id, 'whe_missing']) {
    const gone = await t.request('POST', `/v1/webhook-endpoints/${id}/test`);
    assert.equal(gone.status, 404, gone.body);
    assert.equal(gone.json.error.code, 'WEBHOOK_ENDPOINT_NOT_FOUND');
  }
  // A deleted endpoint's deliveries are gone from the API like the endpoint.
  const hidden = await t.request('GET', `/v1/webhook-deliveries/${queued.id}`);
  assert.equal(hidden.status, 404, hidden.body);
  assert.equal(hidden.json.error.code, 'WEBHOOK_DELIVERY_NOT_FOUND');
});

test('a failed delivery is retried by hand with a fresh budget and then succeeds; only failed ones are retryable', async () => {
  const { t, clock, receiver } = await setup({ WEBHOOK_MAX_ATTEMPTS: '2' });
  const endpoint = await register(t, receiver.url, ['payment.refunded']);
  receiver.answerNext(500, 500, 503, 500);
  const queued = await t.request('POST', `/v1/webhook-endpoints/${endpoint.id}/test`);
  const id = queued.json.delivery.id;
  const deliveryNow = async () => (await t.request('GET', `/v1/webhook-deliveries/${id}`)).json.delivery;
  const retry = (token?: string, idempotencyKey?: string) =>
    t.request('POST', `/v1/webhook-deliveries/${id}/retry`, {
      ...(token === undefined ? {} : { token }),
      ...(idempotencyKey === undefined ? {} : { idempotencyKey }),
    });

  // Pending: not retryable.
  const early = await retry();
  assert.equal(early.status, 409, early.body);
  assert.equal(early.json.error.code, 'WEBHOOK_DELIVERY_NOT_RETRYABLE');

  // Two attempts (the budget), both 500: failed.
  await t.app.dispatcher.dispatchOnce();
  clock.advance(1_000);
  await t.app.dispatcher.dispatchOnce();
  let delivery = await deliveryNow();
  assert.deepEqual([delivery.status, delivery.attempts, delivery.lastStatusCode], ['failed', 2, 500]);

  // Retry: pending again, due now, a fresh budget; attempts keep counting.
  clock.advance(5_000);
  const retried = await retry();
  assert.equal(retried.status, 202, retried.body);
  assert.deepEqual(retried.json.delivery, {
    ...delivery,
    status: 'pending',
    nextAttemptAt: iso(clock.now()),
    manualRetries: 1,
  });
  const twice = await retry();
  assert.equal(twice.status, 409, 'already pending');
  // The fresh budget is two attempts again: 503, 500, then failed at 4 attempts in all.
  await t.app.dispatcher.dispatchOnce();
  clock.advance(1_000);
  await t.app.dispatcher.dispatchOnce();
  delivery = await deliveryNow();
  assert.deepEqual([delivery.status, delivery.attempts, delivery.manualRetries], ['failed', 4, 1]);

  // Concurrent retries of one failed delivery re-queue it once.
  const racing = await Promise.all(Array.from({ length: 8 }, () => retry()));
  assert.deepEqual(
    racing.map((r) => r.status).sort(),
    [202, 409, 409, 409, 409, 409, 409, 409],
    racing.map((r) => r.body).join('\n'),
  );
  assert.equal(await t.app.dispatcher.dispatchOnce(), 1);
  delivery = await deliveryNow();
  assert.deepEqual(
    [delivery.status, delivery.attempts, delivery.manualRetries, delivery.lastStatusCode, delivery.lastError],
    ['succeeded', 5, 2, 200, null],
  );

  // Every attempt was the same event (webhook-id) and bytes, and verifies.
  const attempts = receiver.forEvent(delivery.eventId);
  assert.deepEqual(
    attempts.map((r) => r.answered),
    [500, 500, 503, 500, 200],
  );
  assert.equal(new Set(attempts.map((r) => r.body)).size, 1);
  assert.ok(attempts.every((r) => verifies(endpoint.secret, r)));

  // Succeeded: not retryable; unknown: 404.
  const done = await retry();
  assert.equal(done.status, 409, done.body);
  assert.equal(done.json.error.code, 'WEBHOOK_DELIVERY_NOT_RETRYABLE');
  const unknown = await t.request('POST', '/v1/webhook-deliveries/whd_missing/retry');
  assert.equal(unknown.status, 404, unknown.body);
  assert.equal(unknown.json.error.code, 'WEBHOOK_DELIVERY_NOT_FOUND');
  assert.equal((await t.request('GET', '/v1/webhook-deliveries/whd_missing')).status, 404);

  // Audited: one entry per re-queue.
  const audit = await auditOf(t, id);
  assert.deepEqual(
    audit.map((e: Json) => [e.eventType, e.resourceType, e.metadata.attempts, e.metadata.manualRetries]),
    [
      ['webhook_delivery.retried', 'webhook_delivery', 2, 1],
      ['webhook_delivery.retried', 'webhook_delivery', 4, 2],
    ],
  );
  assert.equal(audit[0].metadata.endpointId, endpoint.id);
});

test('rotate, test and retry are admin-only, and refused to a key scoped to customers', async () => {
  const { t, receiver } = await setup();
  const endpoint = await register(t, receiver.url, ['payment.posted']);
  const queued = await t.request('POST', `/v1/webhook-endpoints/${endpoint.id}/test`);
  const routes: [string, string][] = [
    ['POST', `/v1/webhook-endpoints/${endpoint.id}/rotate-secret`],
    ['POST', `/v1/webhook-endpoints/${endpoint.id}/test`],
    ['POST', `/v1/webhook-deliveries/${queued.json.delivery.id}/retry`],
    ['GET', `/v1/webhook-deliveries/${queued.json.delivery.id}`],
  ];
  const scopedAdmin = newSecret('test');
  const customer = await party(t);
  await t.app.services.committer.submit((tx) =>
    tx.insertApiKey({
      id: `key_scoped_admin_${randomUUID().slice(0, 8)}`,
      name: 'scoped admin (not creatable through the API)',
      role: 'admin',
      secretHash: hashSecret(scopedAdmin),
      createdAtMs: Date.now(),
      revokedAtMs: null,
      customerIds: [customer.customerId],
      expiresAtMs: null,
      previousSecretHash: null,
      previousSecretExpiresAtMs: null,
    }),
  );
  for (const role of ['payments', 'compliance', 'auditor'] as Role[]) {
    const { token } = await apiKey(t, role);
    for (const [method, url] of routes) {
      const res = await t.request(method, url, { token });
      assert.equal(res.status, 403, `${role} ${method} ${url}: ${res.body}`);
      assert.equal(res.json.error.code, 'FORBIDDEN');
    }
  }
  for (const [method, url] of routes) {
    const res = await t.request(method, url, { token: scopedAdmin });
    assert.equal(res.status, 403, `scoped admin ${method} ${url}: ${res.body}`);
    assert.match(res.json.error.message, /a key scoped to customers may not/);
  }
  for (const [method, url] of routes) {
    assert.equal((await t.request(method, url, { token: null })).status, 401, `${method} ${url}`);
  }
  // Nothing happened: the only audit entries are the creation and the one test.
  assert.deepEqual(
    (await auditOf(t, endpoint.id)).map((e: Json) => e.eventType),
    ['webhook_endpoint.created', 'webhook_endpoint.test_queued'],
  );
});

test('a secret from before Standard Webhooks (base64url) keeps signing with its bytes until it is rotated', async () => {
  const { t, receiver } = await setup();
  const endpoint = await register(t, receiver.url, ['payment.posted']);
  // What POST /v1/webhook-endpoints issued before migration 12: whsec_ + unpadded base64url.
  const bytes = Buffer.from(Array.from({ length: 32 }, (_, i) => (i * 37 + 250) % 256));
  const legacy = `whsec_${bytes.toString('base64url')}`;
  assert.match(legacy, /[-_]/, 'the example holds base64url-only characters');
  const sealed = t.app.services.cipher.encrypt(legacy, 'webhook.secret');
  assert.equal(
    await rawSql(t.db, 'UPDATE webhook_endpoints SET secret_enc = ? WHERE id = ?', [sealed, endpoint.id]),
    1,
  );

  const { got } = await ping(t, endpoint.id, receiver);
  // The official library cannot decode base64url; the same bytes in standard base64 are the same key.
  assert.throws(() => new Webhook(legacy).verify(got.body, got.headers as Record<string, string>));
  const converted = `whsec_${bytes.toString('base64')}`;
  assert.ok(verifies(converted, got), 'signed with the legacy secret bytes');

  // Rotating issues a standard secret; the legacy one signs beside it for the grace period.
  const rotated = await rotate(t, endpoint.id, { gracePeriodSeconds: 300 });
  assert.equal(rotated.status, 200, rotated.body);
  const { got: during } = await ping(t, endpoint.id, receiver);
  assert.ok(verifies(rotated.json.webhookEndpoint.secret, during));
  assert.ok(verifies(converted, during));
});

test('a failed delivery can be retried for 30 days after it was created, and then no longer', async () => {
  const { t, clock, receiver } = await setup({ WEBHOOK_MAX_ATTEMPTS: '1' });
  const endpoint = await register(t, receiver.url, ['payment.refunded']);
  receiver.answerNext(500, 500);
  const retry = (id: string) => t.request('POST', `/v1/webhook-deliveries/${id}/retry`);
  const failedDelivery = async () => {
    const queued = await t.request('POST', `/v1/webhook-endpoints/${endpoint.id}/test`);
    await t.app.dispatcher.dispatchOnce();
    return queued.json.delivery.id as string;
  };
  const DAY_MS = 86_400_000;
  const old = await failedDelivery();
  clock.advance(30 * DAY_MS);
  const recent = await failedDelivery();
  // `old` is now 30 days and 1 ms old: too old; `recent`, just created, is not.
  clock.advance(1);
  const late = await retry(old);
  assert.equal(late.status, 409, late.body);
  assert.equal(late.json.error.code, 'WEBHOOK_DELIVERY_NOT_RETRYABLE');
  assert.match(late.json.error.message, /older than 30 days/);
  assert.equal((await retry(recent)).status, 202);
});

test('examples/webhook-receiver.mjs verifies a real delivery, deduplicates a replay and refuses a forgery', async () => {
  const { t } = await setup();
  const port = await freePort();
  // The secret is only known after registration: register a placeholder URL first, then point it at the port.
  const endpoint = await register(t, `http://127.0.0.1:${port}/`, ['payment.posted']);
  let output = '';
  const child: ChildProcess = spawn(process.execPath, ['examples/webhook-receiver.mjs'], {
    env: { ...process.env, WEBHOOK_SECRET: endpoint.secret, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = once(child, 'exit');
  cleanup.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
  });
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const waitFor = async (pattern: RegExp) => {
    const deadline = Date.now() + 15_000;
    while (!pattern.test(output)) {
      if (child.exitCode !== null) throw new Error(`the receiver exited:\n${output}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}:\n${output}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  await waitFor(/listening/);

  const queued = await t.request('POST', `/v1/webhook-endpoints/${endpoint.id}/test`);
  assert.equal(queued.status, 202, queued.body);
  await t.app.dispatcher.dispatchOnce();
  const delivery = (await t.request('GET', `/v1/webhook-deliveries/${queued.json.delivery.id}`)).json
    .delivery;
  assert.deepEqual([delivery.status, delivery.lastStatusCode], ['succeeded', 204], output);
  await waitFor(new RegExp(`verified ping ${queued.json.delivery.eventId}`));

  // The same event again (same webhook-id, freshly signed): acknowledged, not handled twice.
  const body = JSON.stringify({
    id: delivery.eventId,
    type: 'ping',
    createdAt: delivery.createdAt,
    data: {},
  });
  const headers = signedHeaders([endpoint.secret], delivery.eventId, Math.floor(Date.now() / 1000), body);
  const replay = await fetch(`http://127.0.0.1:${port}/`, { method: 'POST', headers: { ...headers }, body });
  assert.equal(replay.status, 204);
  await waitFor(new RegExp(`duplicate ${delivery.eventId}`));
  // Tampered with: 400.
  const forged = await fetch(`http://127.0.0.1:${port}/`, {
    method: 'POST',
    headers: { ...headers },
    body: body.replace('ping', 'payment.posted'),
  });
  assert.equal(forged.status, 400);
  await waitFor(/rejected: No matching signature found/);
});

test('two processes on one PostgreSQL database: concurrent retries of a failed delivery re-queue it once', {
  skip: backend !== 'postgres',
}, async () => {
  const db = await createTestDatabase();
  cleanup.push(() => db.drop());
  const clock = manualClock(Date.now());
  const env = { ...ENV, WEBHOOK_MAX_ATTEMPTS: '1' };
  const a = await startTestApp({ db, clock: clock.now, env });
  const b = await startTestApp({ db, clock: clock.now, env });
  cleanup.push(
    () => a.close(),
    () => b.close(),
  );
  await a.app.dispatcher.stop();
  await b.app.dispatcher.stop();
  const receiver = await new Receiver().start();
  cleanup.push(() => receiver.stop());
  receiver.answerNext(500);
  const endpoint = await register(a, receiver.url, ['payment.posted']);
  const queued = await a.request('POST', `/v1/webhook-endpoints/${endpoint.id}/test`);
  await a.app.dispatcher.dispatchOnce();
  const path = `/v1/webhook-deliveries/${queued.json.delivery.id}`;
  assert.equal((await b.request('GET', path)).json.delivery.status, 'failed');

  const racing = await Promise.all(
    Array.from({ length: 12 }, (_, i) => (i % 2 === 0 ? a : b).request('POST', `${path}/retry`)),
  );
  assert.deepEqual(
    racing.map((r) => r.status).sort(),
    [202, ...Array.from({ length: 11 }, () => 409)],
    racing.map((r) => r.body).join('\n'),
  );
  // Both processes dispatch at once: the re-queued delivery is leased to one of them (SKIP LOCKED).
  await Promise.all([a.app.dispatcher.dispatchOnce(), b.app.dispatcher.dispatchOnce()]);
  const delivery = (await a.request('GET', path)).json.delivery;
  assert.deepEqual([delivery.status, delivery.attempts, delivery.manualRetries], ['succeeded', 2, 1]);
  assert.equal(receiver.forEvent(delivery.eventId).length, 2, 'one failure, then one success');
  const audit = await auditOf(a, delivery.id);
  assert.deepEqual(
    audit.map((e: Json) => e.eventType),
    ['webhook_delivery.retried'],
  );
});

test("the dispatcher's onAttempt hook sees each recorded attempt's result and lag; a throwing hook stops nothing", async () => {
  const { t, clock, receiver } = await setup({ WEBHOOK_MAX_ATTEMPTS: '2' });
  const reports: AttemptReport[] = [];
  const dispatcher = new WebhookDispatcher(t.app.services, t.app.logger, {
    onAttempt: (report) => {
      reports.push(report);
      throw new Error('a broken metrics hook');
    },
  });
  const endpoint = await register(t, receiver.url, ['payment.posted']);
  receiver.answerNext(500, 502);
  const queued = (await t.request('POST', `/v1/webhook-endpoints/${endpoint.id}/test`)).json.delivery;
  clock.advance(250);
  await dispatcher.dispatchOnce();
  clock.advance(1_000);
  await dispatcher.dispatchOnce();
  await t.request('POST', `/v1/webhook-deliveries/${queued.id}/retry`);
  clock.advance(2_000);
  await dispatcher.dispatchOnce();
  assert.deepEqual(reports, [
    { result: 'retrying', lagMs: 250, eventType: 'ping', endpointId: endpoint.id, statusCode: 500 },
    { result: 'failed', lagMs: 1_250, eventType: 'ping', endpointId: endpoint.id, statusCode: 502 },
    { result: 'succeeded', lagMs: 3_250, eventType: 'ping', endpointId: endpoint.id, statusCode: 200 },
  ]);
  assert.match(t.logs.text(), /webhook attempt hook failed/);
});
