import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DEFAULT_POLICY } from '../src/domain/default-policy.ts';
import {
  apiKey,
  auditLogs,
  balanceOf,
  type Json,
  type Party,
  party,
  pay,
  REVIEW_AMOUNT,
  usd,
} from './support/fixtures.ts';
import {
  backend,
  createTestDatabase,
  http,
  type ServerProcess,
  spawnServer,
  startTestApp,
  type TestApp,
  type TestDatabase,
  testEnv,
} from './support/harness.ts';

/**
 * Account controls (issue 17): status (active, frozen, closed), overdraft limit and minimum balance, changed at
 * run time by compliance and enforced in the transaction that moves money, under the account's lock.
 */
let t: TestApp;
let compliance: string;

before(async () => {
  // Every clock reading is 61 s after the last: the velocity and repeated-pattern windows (60 s) never hold an
  // earlier attempt, so outcomes depend on balances and controls alone (as in concurrency.test.ts).
  let nowMs = Date.UTC(2026, 0, 1);
  t = await startTestApp({ clock: () => (nowMs += 61_000) });
  compliance = (await apiKey(t, 'compliance')).token;
});
after(async () => {
  await t.destroy();
});

async function controls(accountId: string, body: unknown, token = compliance, key?: string) {
  return t.request('POST', `/v1/accounts/${accountId}/controls`, {
    token,
    body,
    ...(key === undefined ? {} : { idempotencyKey: key }),
  });
}

async function verifyLedger(c: TestApp): Promise<void> {
  const res = await c.request('GET', '/v1/ledger/verify');
  assert.equal(res.json.verification.valid, true, res.body);
}

test('a new account is active without limits; the view shows its controls', async () => {
  const a = await party(t, { balance: 100 });
  const res = await t.request('GET', `/v1/accounts/${a.accountId}`);
  assert.equal(res.status, 200, res.body);
  assert.equal(res.json.account.status, 'active');
  assert.equal(res.json.account.overdraftLimitCents, 0);
  assert.equal(res.json.account.minimumBalanceCents, 0);
});

test('an overdraft limit lets the available balance go down to its negative, and no further', async () => {
  const [a, b] = [await party(t, { balance: 1_000 }), await party(t)];
  const set = await controls(a.accountId, { overdraftLimitCents: 5_000 });
  assert.equal(set.status, 200, set.body);
  assert.equal(set.json.account.overdraftLimitCents, 5_000);
  assert.equal((await pay(t, usd(a, b, 5_500))).status, 201);
  const declined = await pay(t, usd(a, b, 501));
  assert.equal(declined.status, 422, declined.body);
  assert.deepEqual(declined.json.payment.reasons, ['insufficient_funds']);
  assert.equal((await pay(t, usd(a, b, 500))).status, 201);
  const balance = await balanceOf(t, a.accountId);
  assert.equal(balance.availableBalanceCents, -5_000);
  assert.equal(balance.postedBalanceCents, -5_000);
  // An overdraft in use cannot be cut below what is drawn: money comes in first.
  const cut = await controls(a.accountId, { overdraftLimitCents: 1_000 });
  assert.equal(cut.status, 409, cut.body);
  assert.equal(cut.json.error.code, 'ACCOUNT_BELOW_NEW_LIMIT');
  assert.equal((await pay(t, usd(b, a, 2_000))).status, 201, 'credits arrive');
  assert.equal((await controls(a.accountId, { overdraftLimitCents: 3_000 })).status, 200);
  assert.equal((await pay(t, usd(a, b, 1))).status, 422, 'at the new floor');
  await verifyLedger(t);
});

test('a minimum balance keeps the available balance at or above it, for payments, holds and refunds', async () => {
  const [a, b] = [await party(t, { balance: 1_000_000 }), await party(t, { balance: 10_000 })];
  assert.equal((await controls(a.accountId, { minimumBalanceCents: 700_000 })).status, 200);
  const tooMuch = await pay(t, usd(a, b, 300_001));
  assert.equal(tooMuch.status, 422, tooMuch.body);
  assert.ok(tooMuch.json.payment.reasons.includes('insufficient_funds'), tooMuch.body);
  const held = await pay(t, usd(a, b, REVIEW_AMOUNT));
  assert.equal(held.status, 202, held.body);
  const over = await pay(t, usd(a, b, 50_001));
  assert.equal(over.status, 422, 'the hold counts against the floor');
  const posted = await pay(t, usd(a, b, 50_000));
  assert.equal(posted.status, 201, posted.body);
  // A minimum above what the account has (the hold included) is refused.
  const raise = await controls(a.accountId, { minimumBalanceCents: 700_001 });
  assert.equal(raise.status, 409, raise.body);
  assert.equal(raise.json.error.code, 'ACCOUNT_BELOW_NEW_LIMIT');

  // The receiver's minimum applies to a refund it sends back (b has 60,000).
  assert.equal((await controls(b.accountId, { minimumBalanceCents: 10_001 })).status, 200);
  const refund = await t.request('POST', `/v1/payments/${posted.json.payment.id}/refunds`, {
    idempotencyKey: randomUUID(),
    body: {},
  });
  assert.equal(refund.status, 422, refund.body);
  assert.equal(refund.json.error.code, 'INSUFFICIENT_FUNDS');
  assert.equal((await controls(b.accountId, { minimumBalanceCents: 10_000 })).status, 200);
  const partial = await t.request('POST', `/v1/payments/${posted.json.payment.id}/refunds`, {
    idempotencyKey: randomUUID(),
    body: {},
  });
  assert.equal(partial.status, 201, partial.body);
  assert.equal((await balanceOf(t, b.accountId)).availableBalanceCents, 10_000);
  await verifyLedger(t);
});

test('a frozen account receives but does not send; a held payment from it cannot be approved', async () => {
  const [a, b] = [await party(t, { balance: 1_000_000 }), await party(t, { balance: 50_000 })];
  const held = await pay(t, usd(a, b, REVIEW_AMOUNT));
  assert.equal(held.status, 202, held.body);
  const posted = await pay(t, usd(b, a, 1_000));
  assert.equal(posted.status, 201, posted.body);
  const froze = await controls(a.accountId, { status: 'frozen' });
  assert.equal(froze.status, 200, froze.body);
  assert.equal(froze.json.account.status, 'frozen');

  const out = await pay(t, usd(a, b, 100));
  assert.equal(out.status, 422, out.body);
  assert.deepEqual(out.json.payment.reasons, ['source_account_frozen']);
  assert.equal((await pay(t, usd(b, a, 100))).status, 201, 'it still receives');
  const approve = await t.request('POST', `/v1/payments/${held.json.payment.id}/approve`, {
    token: compliance,
    idempotencyKey: randomUUID(),
    body: {},
  });
  assert.equal(approve.status, 409, approve.body);
  assert.deepEqual(
    approve.json.error.details.map((d: Json) => d.message),
    ['source_account_frozen'],
  );
  // A refund from b to the frozen a is fine (a receives); a payment a received cannot be refunded by a.
  const toA = await t.request('POST', `/v1/payments/${posted.json.payment.id}/refunds`, {
    idempotencyKey: randomUUID(),
    body: { amountCents: 100 },
  });
  assert.equal(toA.status, 409, toA.body);
  assert.equal(toA.json.error.code, 'ACCOUNT_FROZEN');
  assert.equal((await controls(a.accountId, { status: 'active' })).status, 200);
  assert.equal((await pay(t, usd(a, b, 100))).status, 201, 'unfrozen, it sends again');
});

test('closing needs a zero balance; a closed account neither sends nor receives, and stays closed', async () => {
  const [a, b] = [await party(t, { balance: 2_000 }), await party(t)];
  const full = await controls(a.accountId, { status: 'closed' });
  assert.equal(full.status, 409, full.body);
  assert.equal(full.json.error.code, 'ACCOUNT_NOT_EMPTY');
  assert.equal((await pay(t, usd(a, b, 2_000))).status, 201);
  const closed = await controls(a.accountId, { status: 'closed' });
  assert.equal(closed.status, 200, closed.body);
  const into = await pay(t, usd(b, a, 100));
  assert.equal(into.status, 422, into.body);
  assert.deepEqual(into.json.payment.reasons, ['destination_account_closed']);
  const from = await pay(t, usd(a, b, 100));
  assert.deepEqual(from.json.payment.reasons, ['source_account_closed', 'insufficient_funds']);
  const reopen = await controls(a.accountId, { status: 'active' });
  assert.equal(reopen.status, 409, reopen.body);
  assert.equal(reopen.json.error.code, 'ACCOUNT_CLOSED');
  await verifyLedger(t);
});

test('changes are audited with before and after, evented, and idempotent under a key', async () => {
  const a = await party(t, { balance: 100 });
  const key = randomUUID();
  const first = await controls(a.accountId, { overdraftLimitCents: 700 }, compliance, key);
  assert.equal(first.status, 200, first.body);
  const replay = await controls(a.accountId, { overdraftLimitCents: 700 }, compliance, key);
  assert.equal(replay.body, first.body);
  assert.equal(replay.headers['idempotency-replayed'], 'true');
  const reused = await controls(a.accountId, { overdraftLimitCents: 800 }, compliance, key);
  assert.equal(reused.status, 409, reused.body);
  const entries = (await auditLogs(t)).filter(
    (e: Json) => e.eventType === 'account.controls_updated' && e.resourceId === a.accountId,
  );
  assert.equal(entries.length, 1, 'one change, one entry');
  assert.deepEqual(entries[0].metadata.before, {
    status: 'active',
    overdraftLimitCents: 0,
    minimumBalanceCents: 0,
  });
  assert.equal(entries[0].metadata.after.overdraftLimitCents, 700);
  const events = await t.request('GET', '/v1/events?limit=500');
  const event = events.json.events.findLast((e: Json) => e.type === 'account.controls_updated');
  assert.equal(event.data.account.id, a.accountId);
});

test('roles, scope and bad input', async () => {
  const [a, other] = [await party(t, { balance: 100 }), await party(t, { balance: 100 })];
  for (const role of ['payments', 'auditor'] as const) {
    const res = await controls(a.accountId, { status: 'frozen' }, (await apiKey(t, role)).token);
    assert.equal(res.status, 403, `${role}: ${res.body}`);
  }
  const scoped = await t.request('POST', '/v1/api-keys', {
    idempotencyKey: randomUUID(),
    body: { name: 'scoped compliance', role: 'compliance', customerIds: [a.customerId] },
  });
  assert.equal(scoped.status, 201, scoped.body);
  assert.equal((await controls(a.accountId, { status: 'frozen' }, scoped.json.secret)).status, 200);
  assert.equal((await controls(other.accountId, { status: 'frozen' }, scoped.json.secret)).status, 404);
  assert.equal((await controls('acc_system_funding_usd', { status: 'frozen' })).status, 404);
  assert.equal((await controls('acc_missing', { status: 'frozen' })).status, 404);

  const bad: unknown[] = [
    {},
    { status: 'open' },
    { status: 'FROZEN' },
    { overdraftLimitCents: -1 },
    { overdraftLimitCents: 1.5 },
    { overdraftLimitCents: 2 ** 53 },
    { overdraftLimitCents: '100' },
    { minimumBalanceCents: null },
    { __proto__: { status: 'closed' }, status: 'frozen\u0000' },
    { constructor: 'x' },
    { overdraftLimitCents: 100, minimumBalanceCents: 100 },
  ];
  for (const body of bad) {
    const res = await controls(other.accountId, body);
    assert.equal(res.status, 400, `${JSON.stringify(body)}: ${res.body}`);
    assert.equal(res.json.error.code, 'VALIDATION_ERROR');
  }
  // A limit set earlier conflicts with the other one asked for now.
  assert.equal((await controls(other.accountId, { minimumBalanceCents: 50 })).status, 200);
  assert.equal((await controls(other.accountId, { overdraftLimitCents: 10 })).status, 400);
  assert.equal(
    (await controls(other.accountId, { overdraftLimitCents: 10, minimumBalanceCents: 0 })).status,
    200,
  );
});

describe('two API processes on one PostgreSQL database', () => {
  const servers: ServerProcess[] = [];
  let db: TestDatabase | undefined;
  after(async () => {
    for (const s of servers)
      if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
    await Promise.all(servers.map((s) => s.exited));
    await db?.drop();
  });

  test('concurrent payments never take an account below its floor, and none sends after its freeze', {
    skip: backend !== 'postgres' ? 'needs PostgreSQL (runs in the PostgreSQL pass)' : false,
    timeout: 120_000,
  }, async () => {
    // Without the velocity and repeated-pattern rules, a burst from one source is decided on funds alone.
    const dir = mkdtempSync(join(tmpdir(), 'controls-'));
    const policyPath = join(dir, 'policy.json');
    const rules = DEFAULT_POLICY.rules.filter((r) => r.id !== 'velocity' && r.id !== 'repeated_pattern');
    writeFileSync(policyPath, JSON.stringify({ ...DEFAULT_POLICY, rules }));
    db = await createTestDatabase();
    const env = testEnv(db.url, { LOG_LEVEL: 'warn', RISK_POLICY_PATH: policyPath });
    servers.push(await spawnServer(env, 60_000));
    servers.push(await spawnServer(env, 60_000));
    const [p1, p2] = servers.map((s) => s.baseUrl) as [string, string];
    const open = async (base: string, balance: number): Promise<Party> => {
      const customer = await http(base, 'POST', '/v1/customers', {
        body: { name: 'Controls Customer', country: 'US', documentReference: `CTL-${randomUUID()}` },
      });
      const account = await http(base, 'POST', '/v1/accounts', {
        body: { customerId: customer.json.customer.id, currency: 'USD', initialBalanceCents: balance },
      });
      assert.equal(account.status, 201, account.body);
      return {
        customer: customer.json.customer,
        account: account.json.account,
        customerId: customer.json.customer.id,
        accountId: account.json.account.id,
      };
    };
    const payVia = (base: string, from: Party, to: Party, amountCents: number) =>
      http(base, 'POST', '/v1/payments', { body: usd(from, to, amountCents), idempotencyKey: randomUUID() });

    // 1. An overdraft: 1,000 in the account, 5,000 of overdraft, 100 payments of 100 from two processes.
    const [a, sink] = [await open(p1, 1_000), await open(p2, 0)];
    const set = await http(p2, 'POST', `/v1/accounts/${a.accountId}/controls`, {
      body: { overdraftLimitCents: 5_000 },
    });
    assert.equal(set.status, 200, set.body);
    const burst = await Promise.all(
      Array.from({ length: 100 }, (_, i) => payVia(i % 2 ? p1 : p2, a, sink, 100)),
    );
    const statuses = burst.map((r) => r.status);
    assert.ok(
      statuses.every((s) => s === 201 || s === 422),
      statuses.join(' '),
    );
    assert.equal(statuses.filter((s) => s === 201).length, 60, 'exactly what 1,000 + 5,000 covers');
    const after = (await http(p1, 'GET', `/v1/accounts/${a.accountId}/balance`)).json.account;
    assert.equal(after.availableBalanceCents, -5_000);

    // 2. A freeze in the middle of a burst: no payment decided after the freeze committed posts.
    const b = await open(p1, 1_000_000);
    const sends = Array.from({ length: 80 }, (_, i) => payVia(i % 2 ? p1 : p2, b, sink, 100));
    const freeze = http(p2, 'POST', `/v1/accounts/${b.accountId}/controls`, { body: { status: 'frozen' } });
    const [frozen, ...results] = await Promise.all([freeze, ...sends]);
    assert.equal(frozen!.status, 200, frozen!.body);
    const posted = results.filter((r) => r.status === 201).map((r) => r.json.payment.id as string);
    const declinedFrozen = results.filter(
      (r) => r.status === 422 && r.json.payment.reasons.includes('source_account_frozen'),
    );
    assert.equal(
      posted.length + declinedFrozen.length,
      80,
      'each posted before the freeze or was declined for it',
    );
    // The audit log is in commit order: every posted payment's entry comes before the freeze's.
    const logs: Json[] = [];
    for (let cursor: string | null = null; ; ) {
      const page = await http(
        p1,
        'GET',
        `/v1/audit-logs?limit=500${cursor === null ? '' : `&cursor=${cursor}`}`,
      );
      logs.push(...page.json.logs);
      if (!page.json.hasMore) break;
      cursor = page.json.nextCursor;
    }
    const freezeIndex = logs.findIndex(
      (e) => e.eventType === 'account.controls_updated' && e.resourceId === b.accountId,
    );
    for (const id of posted) {
      const index = logs.findIndex((e) => e.resourceId === id && e.eventType === 'payment.posted');
      assert.ok(index >= 0 && index < freezeIndex, `${id} posted after the freeze`);
    }
    const verify = await http(p2, 'GET', '/v1/ledger/verify');
    assert.equal(verify.json.verification.valid, true, verify.body);
  });
});
