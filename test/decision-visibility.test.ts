import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { decisionDetailFor } from '../src/app/views.ts';
import { DEFAULT_POLICY } from '../src/domain/default-policy.ts';
import { ROLES } from '../src/domain/types.ts';
import { apiKey, type Json, type Party, party, pay } from './support/fixtures.ts';
import { startTestApp, type TestApp, type TestResponse } from './support/harness.ts';

/**
 * Decisions by role (issue 12): a `payments` key, webhook receivers and the event outbox see a payment's
 * `status`, `reasons` and a decision reduced to `{outcome, policyVersion, reasons}`; `compliance`, `auditor`
 * and `admin` see the whole explanation (rules, features, score, sanctions screening) on reads, on the review
 * queue and on their own responses; the audit entry keeps all of it. Stored idempotent responses are the view
 * the caller was given, so replays are byte-identical and never widen or narrow it.
 */
const SUMMARY_KEYS = ['outcome', 'policyVersion', 'reasons'];
/** Fields of the full decision (and of its parts) that must never reach a summary view, as JSON keys. */
const EXPLANATION_MARKERS = ['"rules"', '"features"', '"score"', '"sanctions"', '"listSha256"', '"entryId"'];
const REVIEW_AMOUNT = 250_000;

/** A webhook receiver that records every body it gets and answers 200. */
class Receiver {
  readonly bodies: string[] = [];
  private readonly server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      this.bodies.push(Buffer.concat(chunks).toString('utf8'));
      res.writeHead(200).end();
    });
  });
  async start(): Promise<string> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    return `http://127.0.0.1:${(this.server.address() as { port: number }).port}/hooks`;
  }
  async stop(): Promise<void> {
    this.server.closeAllConnections();
    this.server.close();
  }
}

let t: TestApp;
let receiver: Receiver;
let payments: { token: string; id: string };
let compliance: { token: string; id: string };
let auditor: { token: string; id: string };

before(async () => {
  receiver = new Receiver();
  const url = await receiver.start();
  t = await startTestApp({
    env: {
      WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true',
      WEBHOOK_DISPATCH_INTERVAL_MS: '10',
      WEBHOOK_BACKOFF_BASE_MS: '20',
      WEBHOOK_BACKOFF_MAX_MS: '100',
    },
  });
  payments = await apiKey(t, 'payments');
  compliance = await apiKey(t, 'compliance');
  auditor = await apiKey(t, 'auditor');
  const endpoint = await t.request('POST', '/v1/webhook-endpoints', {
    body: {
      url,
      events: ['payment.posted', 'payment.held_for_review', 'payment.declined', 'payment.approved'],
    },
  });
  assert.equal(endpoint.status, 201, endpoint.body);
});

after(async () => {
  await t.destroy();
  await receiver.stop();
});

const usd = (from: Party, to: Party, amountCents: number) => ({
  sourceAccountId: from.accountId,
  destinationAccountId: to.accountId,
  amountCents,
  currency: 'USD',
});

/** The reduced view: exactly `{outcome, policyVersion, reasons}`, and nothing of the explanation in the text. */
function assertSummary(payment: Json, text: string, context: string): void {
  assert.deepEqual(Object.keys(payment.decision).sort(), SUMMARY_KEYS, context);
  assert.deepEqual(
    payment.decision,
    { outcome: payment.decision.outcome, policyVersion: DEFAULT_POLICY.version, reasons: payment.reasons },
    context,
  );
  for (const marker of EXPLANATION_MARKERS) assert.ok(!text.includes(marker), `${context}: no ${marker}`);
}

/** The whole explanation: fired rules with observed values, all features, a score, the sanctions screening. */
function assertFull(payment: Json, context: string): void {
  const d = payment.decision;
  assert.equal(d.policyVersion, DEFAULT_POLICY.version, context);
  assert.deepEqual(d.reasons, payment.reasons, context);
  assert.ok(Array.isArray(d.rules), `${context}: rules`);
  for (const rule of d.rules) assert.ok(rule.rule && rule.reason && rule.observed, `${context}: rule`);
  assert.equal(typeof d.features, 'object', `${context}: features`);
  assert.equal(typeof d.features.amountCents, 'number', `${context}: feature values`);
  assert.equal(typeof d.score, 'number', `${context}: score`);
  assert.match(d.sanctions.listSha256, /^[0-9a-f]{64}$/, `${context}: sanctions list hash`);
  assert.equal(typeof d.sanctions.receiver.scoreBp, 'number', `${context}: sanctions score`);
}

/** A payment by the payments key, then the same request again: the replay is the same bytes. */
async function payAndReplay(body: Json, status: number): Promise<{ first: TestResponse; payment: Json }> {
  const first = await pay(t, body, { token: payments.token });
  assert.equal(first.status, status, first.body);
  assert.equal(first.headers['idempotency-replayed'], 'false');
  assertSummary(first.json.payment, first.body, `POST ${status}`);
  const replay = await pay(t, body, { token: payments.token, key: first.key });
  assert.equal(replay.status, status);
  assert.equal(replay.headers['idempotency-replayed'], 'true');
  assert.equal(replay.body, first.body, 'the replay is the stored summary, byte for byte');
  return { first, payment: first.json.payment };
}

async function get(path: string, token: string): Promise<TestResponse> {
  const res = await t.request('GET', path, { token });
  assert.equal(res.status, 200, `${path}: ${res.body}`);
  return res;
}

async function waitFor<T>(what: string, probe: () => T | undefined, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The webhook body of the event `type` about `paymentId`, once delivered. */
function delivered(type: string, paymentId: string): Promise<{ body: string; event: Json }> {
  return waitFor(`${type} for ${paymentId}`, () => {
    for (const body of receiver.bodies) {
      const event = JSON.parse(body);
      if (event.type === type && event.data.payment.id === paymentId) return { body, event };
    }
    return undefined;
  });
}

async function auditDecision(paymentId: string, eventType: string): Promise<Json> {
  const logs = await get('/v1/audit-logs?limit=500', auditor.token);
  const entry = logs.json.logs.find((e: Json) => e.resourceId === paymentId && e.eventType === eventType);
  assert.ok(entry, `audit ${eventType} for ${paymentId}`);
  return entry.metadata.decision;
}

test('one place maps each role to its view: payments → summary; compliance, auditor, admin → full', () => {
  assert.deepEqual(Object.fromEntries(ROLES.map((role) => [role, decisionDetailFor({ role })])), {
    admin: 'full',
    payments: 'summary',
    compliance: 'full',
    auditor: 'full',
  });
});

describe('a payments key sees outcome, policy version and reasons only', () => {
  test('201, 202 and 422 responses and their replays; GET and list too; the full decision is for the others', async () => {
    const sender = await party(t, { balance: 1_000_000 });
    const receiver = await party(t);
    const sanctioned = await party(t, { name: 'Ivan Sidorenko' });
    const posted = await payAndReplay(usd(sender, receiver, 1_234), 201);
    const held = await payAndReplay(usd(sender, receiver, REVIEW_AMOUNT), 202);
    const declined = await payAndReplay(usd(sender, sanctioned, 1_000), 422);
    assert.equal(posted.payment.decision.outcome, 'posted');
    assert.equal(held.payment.decision.outcome, 'manual_review');
    assert.ok(held.payment.reasons.includes('amount_above_review_threshold'), held.first.body);
    assert.equal(declined.payment.decision.outcome, 'declined');
    assert.ok(declined.payment.reasons.includes('sanctions_match'), declined.first.body);

    for (const { payment } of [posted, held, declined]) {
      // Reads by the payments key: the same summary it was given at creation.
      const own = await get(`/v1/payments/${payment.id}`, payments.token);
      assertSummary(own.json.payment, own.body, 'GET by payments');
      assert.deepEqual(own.json.payment, payment);
      // Compliance and auditors read the whole explanation, which is what the audit entry holds.
      const audited = await auditDecision(payment.id, `payment.${eventName(payment.status)}`);
      for (const token of [compliance.token, auditor.token]) {
        const full = (await get(`/v1/payments/${payment.id}`, token)).json.payment;
        assertFull(full, 'GET by compliance/auditor');
        assert.deepEqual(full.decision, audited, 'the audit entry still holds the whole decision');
        assert.deepEqual({ ...full, decision: payment.decision }, payment, 'only the decision differs');
      }
    }
    // The sanctions match is explained to compliance (matched entry, score), not to the payer.
    const screening = (await get(`/v1/payments/${declined.payment.id}`, compliance.token)).json.payment
      .decision.sanctions;
    assert.notEqual(screening.receiver.entryId, null);
    assert.ok(screening.receiver.scoreBp >= 9_500);

    const list = await get('/v1/payments?limit=500', payments.token);
    assert.ok(list.json.payments.length >= 3);
    assertSummary(list.json.payments[0], list.body, 'GET /v1/payments by payments');
    for (const p of list.json.payments) assert.deepEqual(Object.keys(p.decision).sort(), SUMMARY_KEYS);
  });

  test('Prefer: receipt still works on top of the stored summary', async () => {
    const sender = await party(t, { balance: 100_000 });
    const receiver = await party(t);
    const body = usd(sender, receiver, 777);
    const first = await t.request('POST', '/v1/payments', {
      body,
      token: payments.token,
      idempotencyKey: 'visibility-receipt',
      headers: { prefer: 'receipt' },
    });
    assert.equal(first.status, 201, first.body);
    assert.equal(first.headers['preference-applied'], 'receipt');
    assert.equal(first.json.receipt.entry.resourceId, first.json.payment.id);
    const stored = first.body.slice(0, first.body.indexOf(',"receipt":'));
    assertSummary(first.json.payment, stored, 'the stored part of a receipt response');
    const replay = await t.request('POST', '/v1/payments', {
      body,
      token: payments.token,
      idempotencyKey: 'visibility-receipt',
    });
    assert.equal(replay.body, `${stored}}`, 'a replay without the preference is the stored summary');
  });
});

describe('compliance, auditors and admins see the whole decision', () => {
  test('on the review queue, on approve, and on an admin’s own POST and its replay', async () => {
    const sender = await party(t, { balance: 1_000_000 });
    const receiver = await party(t);
    const { payment } = await payAndReplay(usd(sender, receiver, REVIEW_AMOUNT), 202);

    for (const token of [compliance.token, auditor.token]) {
      const queue = await get('/v1/payments?status=manual_review&limit=500', token);
      const queued = queue.json.payments.find((p: Json) => p.id === payment.id);
      assert.ok(queued, 'the held payment is in the review queue');
      assertFull(queued, 'review queue');
      assert.deepEqual(queued.decision.reasons, payment.reasons);
    }
    const payerQueue = await get('/v1/payments?status=manual_review&limit=500', payments.token);
    assertSummary(payerQueue.json.payments[0], payerQueue.body, 'review queue by payments');

    const approved = await t.request('POST', `/v1/payments/${payment.id}/approve`, {
      token: compliance.token,
      body: {},
    });
    assert.equal(approved.status, 201, approved.body);
    assert.equal(approved.json.payment.status, 'posted');
    assertFull(approved.json.payment, 'approve response');
    assert.equal(approved.json.payment.decision.outcome, 'manual_review', 'the decision as it was made');

    // The demo token is an admin: its own response is the full view, and so is its replay.
    const own = await pay(t, usd(sender, receiver, 4_321));
    assert.equal(own.status, 201, own.body);
    assertFull(own.json.payment, 'admin POST');
    const again = await pay(t, usd(sender, receiver, 4_321), { key: own.key });
    assert.equal(again.headers['idempotency-replayed'], 'true');
    assert.equal(again.body, own.body);
  });
});

describe('events are stored once for every receiver: the summary', () => {
  test('webhook payloads and GET /v1/events carry the reduced view, whoever caused the event', async () => {
    const sender = await party(t, { balance: 1_000_000 });
    const receiver = await party(t);
    const byPayments = await payAndReplay(usd(sender, receiver, 2_000), 201);
    const held = await payAndReplay(usd(sender, receiver, REVIEW_AMOUNT), 202);
    const byAdmin = await pay(t, usd(sender, receiver, 3_000));
    assert.equal(byAdmin.status, 201, byAdmin.body);
    assertFull(byAdmin.json.payment, 'admin POST');
    const approve = await t.request('POST', `/v1/payments/${held.payment.id}/approve`, {
      token: compliance.token,
      body: {},
    });
    assert.equal(approve.status, 201, approve.body);

    const cases: [string, string][] = [
      ['payment.posted', byPayments.payment.id],
      ['payment.held_for_review', held.payment.id],
      ['payment.posted', byAdmin.json.payment.id],
      ['payment.approved', held.payment.id],
    ];
    const listed = await get('/v1/events?limit=500', auditor.token);
    for (const [type, paymentId] of cases) {
      const { body, event } = await delivered(type, paymentId);
      assertSummary(event.data.payment, body, `webhook ${type}`);
      const inOutbox = listed.json.events.find((e: Json) => e.id === event.id);
      assert.deepEqual(inOutbox, event, 'GET /v1/events lists what the receiver got');
    }
    for (const e of listed.json.events) {
      if (e.data.payment !== undefined) assertSummary(e.data.payment, JSON.stringify(e), `event ${e.type}`);
    }
    // The audit entry of the admin's payment still holds everything its response showed.
    assert.deepEqual(
      await auditDecision(byAdmin.json.payment.id, 'payment.posted'),
      byAdmin.json.payment.decision,
    );
  });
});

function eventName(status: string): string {
  return { posted: 'posted', manual_review: 'held_for_review', declined: 'declined' }[status]!;
}
