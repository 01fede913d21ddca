import assert from 'node:assert/strict';
import { randomInt, randomUUID } from 'node:crypto';
import { after, test } from 'node:test';
import {
  backend,
  createTestDatabase,
  http,
  type ServerProcess,
  spawnServer,
  type TestDatabase,
  type TestResponse,
  testEnv,
} from './support/harness.ts';
import { deadlocksDetected } from './support/pg-deadlocks.ts';

/**
 * Scale-out on PostgreSQL: three real API processes (started at the same moment, so they race through
 * migrations, key set-up and demo seeding) share one database. Thirty clients send transfers among twenty
 * funded accounts in both directions, each request to a random live process; every tenth request sends the
 * same Idempotency-Key and body to two processes at once; a third of the way in, one process is killed with
 * SIGKILL. Afterwards the books must be exact: money conserved, no negative balance, every acknowledged
 * payment present exactly once, no key executed twice, ledger and audit chain valid, and PostgreSQL itself
 * never had to break a deadlock.
 */
const ACCOUNTS = 20;
const INITIAL = 1_000_000;
const CLIENTS = 30;
const REQUESTS_PER_CLIENT = 25;
const DUPLICATE_EVERY = 10;
const PROCESSES = 3;

const ACKNOWLEDGED = new Set([201, 202, 422]);
const STATUS_BY_CODE: Record<number, string> = { 201: 'posted', 202: 'manual_review', 422: 'declined' };

interface PaymentBody {
  sourceAccountId: string;
  destinationAccountId: string;
  amountCents: number;
  currency: string;
}

interface PaymentView {
  id: string;
  status: 'posted' | 'manual_review' | 'declined';
  sourceAccountId: string;
  destinationAccountId: string;
  amountCents: number;
}

interface AuditLogView {
  eventType: string;
  resourceType: string;
  resourceId: string;
}

/** One logical request (one Idempotency-Key) and what came back for it. */
interface Sent {
  key: string;
  body: PaymentBody;
  duplicated: boolean;
  responses: TestResponse[];
  /** Network errors (connection reset by the SIGKILL, or refused). */
  lost: number;
}

/** Random amounts: mostly small; some at review thresholds; some beyond any balance (declined). */
function randomAmount(): number {
  const roll = randomInt(100);
  if (roll < 70) return randomInt(1, 50_000);
  if (roll < 80) return randomInt(175_000, 260_000); // fraud / AML review thresholds
  if (roll < 90) return randomInt(50_000, 150_000);
  return randomInt(2_000_000, 5_000_000); // more than anyone has: insufficient_funds
}

const servers: ServerProcess[] = [];
let db: TestDatabase | undefined;

after(async () => {
  for (const s of servers) {
    if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
  }
  await Promise.all(servers.map((s) => s.exited));
  await db?.drop();
});

test('three API processes on one PostgreSQL database: concurrent transfers, duplicate keys and a kill -9 keep the books exact', {
  skip: backend !== 'postgres' ? 'needs PostgreSQL (runs in the PostgreSQL pass)' : false,
  timeout: 120_000,
}, async (t) => {
  const started = Date.now();
  db = await createTestDatabase();
  const env = testEnv(db.url, { LOG_LEVEL: 'warn' });

  // 1. Three processes at the same moment: concurrent migrations, dev-key set-up and seeding.
  const launched = await Promise.allSettled(
    Array.from({ length: PROCESSES }, () => spawnServer(env, 60_000)),
  );
  for (const r of launched) if (r.status === 'fulfilled') servers.push(r.value);
  const failures = launched.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  assert.equal(failures.length, 0, `a process failed to start: ${String(failures[0]?.reason)}`);
  const [first] = servers;
  const accountsNow = await http(first!.baseUrl, 'GET', '/v1/accounts?limit=500');
  assert.equal(accountsNow.status, 200, accountsNow.body);
  const demoIds = accountsNow.json.accounts.map((a: { id: string }) => a.id).sort();
  assert.deepEqual(demoIds, ['acc_demo_alice_usd', 'acc_demo_bob_usd'], 'the demo data is seeded once');

  // 2. Twenty funded USD accounts, created through the API, spread over the processes.
  const accountIds = await Promise.all(
    Array.from({ length: ACCOUNTS }, async (_, i) => {
      const base = servers[i % PROCESSES]!.baseUrl;
      const customer = await http(base, 'POST', '/v1/customers', {
        body: { name: `Scale Customer ${i}`, country: 'US', documentReference: `SCALE-${i}-${randomUUID()}` },
      });
      assert.equal(customer.status, 201, customer.body);
      const account = await http(base, 'POST', '/v1/accounts', {
        body: { customerId: customer.json.customer.id, currency: 'USD', initialBalanceCents: INITIAL },
      });
      assert.equal(account.status, 201, account.body);
      assert.equal(account.json.account.postedBalanceCents, INITIAL);
      return account.json.account.id as string;
    }),
  );

  // 3. The load: 30 clients x 25 requests, each to a random live process; a kill -9 a third of the way in.
  let alive = [...servers];
  const victim = servers[randomInt(PROCESSES)]!;
  const total = CLIENTS * REQUESTS_PER_CLIENT;
  let issued = 0;
  let killed = false;
  const sent: Sent[] = [];

  const pick = (exclude?: ServerProcess): ServerProcess => {
    const choices = alive.filter((s) => s !== exclude);
    return choices[randomInt(choices.length)]!;
  };
  const send = async (target: ServerProcess, entry: Sent): Promise<void> => {
    try {
      entry.responses.push(
        await http(target.baseUrl, 'POST', '/v1/payments', { body: entry.body, idempotencyKey: entry.key }),
      );
    } catch {
      entry.lost += 1; // the connection died with the process: unacknowledged
    }
  };

  const client = async (c: number): Promise<void> => {
    for (let i = 0; i < REQUESTS_PER_CLIENT; i++) {
      issued += 1;
      if (!killed && issued >= Math.floor(total / 3)) {
        killed = true;
        victim.child.kill('SIGKILL');
        alive = alive.filter((s) => s !== victim);
      }
      const from = randomInt(ACCOUNTS);
      const to = (from + randomInt(1, ACCOUNTS)) % ACCOUNTS;
      const entry: Sent = {
        key: `scale-${c}-${i}-${randomUUID()}`,
        body: {
          sourceAccountId: accountIds[from]!,
          destinationAccountId: accountIds[to]!,
          amountCents: randomAmount(),
          currency: 'USD',
        },
        duplicated: i % DUPLICATE_EVERY === DUPLICATE_EVERY - 1,
        responses: [],
        lost: 0,
      };
      sent.push(entry);
      if (entry.duplicated) {
        // The same key and body at two different processes at the same moment.
        const one = pick();
        const other = pick(one);
        await Promise.all([send(one, entry), send(other, entry)]);
      } else {
        await send(pick(), entry);
      }
    }
  };
  await Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c)));
  assert.ok(killed, 'the victim was killed during the run');
  assert.equal(await victim.exited, 'SIGKILL');
  const survivor = alive[0]!;
  const base = survivor.baseUrl;
  const outputs = () => servers.map((s, i) => `--- process ${i} ---\n${s.output().slice(-4000)}`).join('\n');

  // Every answer is a payment outcome or, for a duplicate pair, an in-flight conflict. Never a 5xx.
  for (const entry of sent) {
    for (const r of entry.responses) {
      if (r.status === 409) {
        assert.ok(entry.duplicated, `409 for a key sent once: ${r.body}`);
        assert.equal(r.json.error.code, 'IDEMPOTENCY_KEY_IN_USE', r.body);
      } else {
        assert.ok(ACKNOWLEDGED.has(r.status), `unexpected ${r.status}: ${r.body}\n${outputs()}`);
      }
    }
  }

  // 4. Acknowledged payments: the one per key; a duplicate pair answered twice carries one payment id.
  const acknowledged = new Map<string, { id: string; status: number; key: string }>();
  let unacknowledged = 0;
  let duplicatePairsBothAnswered = 0;
  for (const entry of sent) {
    const answers = entry.responses.filter((r) => ACKNOWLEDGED.has(r.status));
    if (answers.length === 0) {
      unacknowledged += 1;
      continue;
    }
    const ids = new Set(answers.map((r) => r.json.payment.id as string));
    assert.equal(ids.size, 1, `key ${entry.key} executed more than once: ${[...ids].join(', ')}`);
    for (const r of answers) assert.equal(r.body, answers[0]!.body, 'a replay repeats the bytes');
    const fresh = answers.filter((r) => r.headers['idempotency-replayed'] === 'false');
    // Answered twice: one executed, the other replayed. Answered once (the other lost to the kill): that
    // answer may itself be the replay of what the killed process had committed.
    if (answers.length === 2) assert.equal(fresh.length, 1, `key ${entry.key}: exactly one execution`);
    else assert.ok(fresh.length <= 1);
    if (entry.duplicated && answers.length === 2) duplicatePairsBothAnswered += 1;
    const id = [...ids][0]!;
    assert.ok(!acknowledged.has(id), `payment ${id} acknowledged under two keys`);
    acknowledged.set(id, { id, status: answers[0]!.status, key: entry.key });
  }
  assert.ok(acknowledged.size > total / 2, `only ${acknowledged.size} of ${total} acknowledged`);
  assert.ok(duplicatePairsBothAnswered > 0, 'some duplicate pairs were answered by both processes');

  // Each acknowledged payment reads back with the same status (and ledger entries only when posted).
  const ackList = [...acknowledged.values()];
  for (let i = 0; i < ackList.length; i += 50) {
    await Promise.all(
      ackList.slice(i, i + 50).map(async (ack) => {
        const res = await http(alive[i % alive.length]!.baseUrl, 'GET', `/v1/payments/${ack.id}`);
        assert.equal(res.status, 200, res.body);
        assert.equal(res.json.payment.status, STATUS_BY_CODE[ack.status]);
        assert.equal(res.json.ledgerEntries.length, ack.status === 201 ? 2 : 0);
      }),
    );
  }

  // The full list holds each acknowledged payment once, plus at most the unacknowledged ones.
  const listed = await allPages<PaymentView>(base, '/v1/payments', 'payments');
  const listedIds = listed.map((p) => p.id);
  assert.equal(new Set(listedIds).size, listedIds.length, 'no payment listed twice');
  for (const id of acknowledged.keys()) assert.ok(listedIds.includes(id), `acknowledged ${id} is missing`);
  assert.ok(
    listed.length >= acknowledged.size && listed.length <= acknowledged.size + unacknowledged,
    `${listed.length} payments for ${acknowledged.size} acknowledged + ${unacknowledged} unacknowledged`,
  );

  // 5. Retrying every unacknowledged request (same key, same body) at a survivor settles it exactly once:
  // replayed if it had committed before the kill, executed now if it had not.
  for (const entry of sent) {
    if (entry.responses.some((r) => ACKNOWLEDGED.has(r.status))) continue;
    const retry = await http(base, 'POST', '/v1/payments', { body: entry.body, idempotencyKey: entry.key });
    assert.ok(ACKNOWLEDGED.has(retry.status), `retry of ${entry.key}: ${retry.status} ${retry.body}`);
    const id = retry.json.payment.id as string;
    if (retry.headers['idempotency-replayed'] === 'true')
      assert.ok(listedIds.includes(id), 'a replayed retry names a payment that was already there');
    else assert.ok(!listedIds.includes(id), 'a fresh retry makes a new payment');
  }
  const payments = await allPages<PaymentView>(base, '/v1/payments', 'payments');
  assert.equal(payments.length, sent.length, 'exactly one payment per Idempotency-Key');

  // 6. Money: conserved among the twenty, never negative, balances = the payments' own effects.
  const posted = new Map(accountIds.map((id) => [id, INITIAL]));
  const held = new Map(accountIds.map((id) => [id, 0]));
  for (const p of payments) {
    if (p.status === 'posted') {
      posted.set(p.sourceAccountId, posted.get(p.sourceAccountId)! - p.amountCents);
      posted.set(p.destinationAccountId, posted.get(p.destinationAccountId)! + p.amountCents);
    } else if (p.status === 'manual_review') {
      held.set(p.sourceAccountId, held.get(p.sourceAccountId)! + p.amountCents);
    }
  }
  let postedSum = 0;
  for (const id of accountIds) {
    const res = await http(base, 'GET', `/v1/accounts/${id}/balance`);
    assert.equal(res.status, 200, res.body);
    const b = res.json.account;
    assert.ok(b.postedBalanceCents >= 0 && b.heldBalanceCents >= 0 && b.availableBalanceCents >= 0, res.body);
    assert.equal(b.availableBalanceCents, b.postedBalanceCents - b.heldBalanceCents);
    assert.equal(b.postedBalanceCents, posted.get(id), `${id}: posted balance = its posted payments`);
    assert.equal(b.heldBalanceCents, held.get(id), `${id}: held balance = its payments in review`);
    postedSum += b.postedBalanceCents;
  }
  assert.equal(postedSum, ACCOUNTS * INITIAL, 'money is conserved among the twenty accounts');
  const byStatus = (s: string) => payments.filter((p) => p.status === s).length;
  assert.ok(byStatus('posted') > 0 && byStatus('declined') > 0, 'the run posted and declined payments');

  const ledger = await http(base, 'GET', '/v1/ledger/verify');
  assert.equal(ledger.status, 200, ledger.body);
  assert.equal(ledger.json.verification.valid, true, ledger.body);
  assert.deepEqual(ledger.json.verification.mismatches, []);
  for (const c of ledger.json.verification.currencies) assert.equal(c.debitsCents, c.creditsCents);

  // 7. The audit chain: intact, one entry per payment.
  const auditVerify = await http(base, 'GET', '/v1/audit-logs/verify');
  assert.equal(auditVerify.status, 200, auditVerify.body);
  assert.equal(auditVerify.json.verification.valid, true, auditVerify.body);
  const logs = await allPages<AuditLogView>(base, '/v1/audit-logs', 'logs');
  assert.equal(logs.length, auditVerify.json.verification.size);
  const paymentLogs = logs.filter((l) => l.resourceType === 'payment');
  assert.equal(paymentLogs.length, payments.length, 'one audit entry per payment');
  assert.deepEqual(new Set(paymentLogs.map((l) => l.resourceId)), new Set(payments.map((p) => p.id)));
  assert.equal(logs.filter((l) => l.resourceType === 'account').length, ACCOUNTS + 2);
  assert.equal(logs.filter((l) => l.eventType === 'api_key.created').length, 1);

  // 8. Deadlock-free: the adapter retries a deadlock silently, so ask PostgreSQL itself, once the
  // survivors have shut down cleanly (SIGTERM) and every session has reported its statistics.
  for (const s of alive) s.child.kill('SIGTERM');
  for (const s of alive) assert.equal(await s.exited, 0, `graceful shutdown:\n${s.output().slice(-2000)}`);
  assert.equal(await deadlocksDetected(db.url), 0, 'PostgreSQL detected a deadlock during the run');

  const elapsed = Date.now() - started;
  t.diagnostic(
    `${sent.length} keys, ${acknowledged.size} acknowledged, ${unacknowledged} lost to the kill, ` +
      `posted ${byStatus('posted')}, review ${byStatus('manual_review')}, declined ${byStatus('declined')}, ` +
      `${elapsed} ms`,
  );
});

async function allPages<T>(base: string, path: string, listKey: string): Promise<T[]> {
  const out: T[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 1000; page++) {
    const res: TestResponse = await http(
      base,
      'GET',
      `${path}?limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
    );
    assert.equal(res.status, 200, res.body);
    out.push(...res.json[listKey]);
    if (!res.json.hasMore) return out;
    cursor = res.json.nextCursor;
  }
  throw new Error(`${path} paging did not end`);
}
