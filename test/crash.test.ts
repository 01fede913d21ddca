import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { test } from 'node:test';
import {
  allAccounts,
  allPayments,
  assertBooksValid,
  type Client,
  type PaymentBody,
  party,
  sum,
} from './support/fixtures.ts';
import {
  createTestDatabase,
  http,
  type ServerProcess,
  spawnServer,
  type TestResponse,
  testEnv,
} from './support/harness.ts';

/**
 * kill -9 in the middle of a payment storm. Eight clients pay concurrently between a few funded accounts
 * against a real server process; after 200 acknowledged answers the process is SIGKILLed with requests in
 * flight. After a restart on the same database: every acknowledged payment is there with the status it was
 * acknowledged with and replays byte for byte; the only other payments are some of the unacknowledged ones,
 * each at most once; money is conserved and both verifiers say valid.
 */
const CLIENTS = 8;
const ACKS_BEFORE_KILL = 200;
const ACCOUNTS = 5;
const INITIAL_CENTS = 5_000_000;

const clientOf = (server: ServerProcess): Client => ({
  request: (method, path, options) => http(server.baseUrl, method, path, options),
});

interface Ack {
  body: PaymentBody;
  res: TestResponse;
}

test('an acknowledged payment survives kill -9; nothing unacknowledged is half-done', {
  timeout: 120_000,
}, async (t) => {
  const db = await createTestDatabase();
  const env = testEnv(db.url, { LOG_LEVEL: 'warn' });
  let server = await spawnServer(env);
  try {
    let c = clientOf(server);
    const accounts: string[] = [];
    for (let i = 0; i < ACCOUNTS; i++) accounts.push((await party(c, { balance: INITIAL_CENTS })).accountId);

    const acked = new Map<string, Ack>();
    const unacked = new Map<string, PaymentBody>();
    const unexpected: string[] = [];
    let killed = false;

    const worker = async (w: number) => {
      for (let i = 0; !killed; i++) {
        const key = `crash-${w}-${i}`;
        const src = randomInt(ACCOUNTS);
        const dst = (src + 1 + randomInt(ACCOUNTS - 1)) % ACCOUNTS;
        // The key rides along in metadata, so every stored payment can be traced to the request that made it.
        const body: PaymentBody = {
          sourceAccountId: accounts[src]!,
          destinationAccountId: accounts[dst]!,
          amountCents: 1 + randomInt(30_000),
          currency: 'USD',
          metadata: { clientKey: key },
        };
        let res: TestResponse;
        try {
          res = await http(server.baseUrl, 'POST', '/v1/payments', { body, idempotencyKey: key });
        } catch {
          unacked.set(key, body); // no answer: the server died with this request in flight
          continue;
        }
        if ([201, 202, 422].includes(res.status)) {
          acked.set(key, { body, res });
          if (acked.size >= ACKS_BEFORE_KILL && !killed) {
            killed = true;
            server.child.kill('SIGKILL');
          }
        } else if (res.status === 503 && killed) {
          unacked.set(key, body);
        } else {
          unexpected.push(`${res.status} ${res.body}`);
        }
      }
    };
    await Promise.all(Array.from({ length: CLIENTS }, (_, w) => worker(w)));
    assert.equal(await server.exited, 'SIGKILL');
    assert.deepEqual(unexpected, [], 'every answer before the kill was 201, 202 or 422');
    assert.ok(acked.size >= ACKS_BEFORE_KILL);

    server = await spawnServer(env);
    c = clientOf(server);

    // Every acknowledged payment exists as acknowledged, and its key replays the same bytes.
    for (const [key, ack] of acked) {
      const payment = ack.res.json.payment;
      const got = await c.request('GET', `/v1/payments/${payment.id}`);
      assert.equal(got.status, 200, `acknowledged payment ${payment.id} (${key}) is missing after the crash`);
      assert.deepEqual(got.json.payment, payment);
      const again = await c.request('POST', '/v1/payments', { body: ack.body, idempotencyKey: key });
      assert.equal(again.status, ack.res.status);
      assert.equal(again.body, ack.res.body);
      assert.equal(again.headers['idempotency-replayed'], 'true');
    }

    // Nothing else exists but some unacknowledged requests, each at most once.
    const stored = await allPayments(c);
    const seen = new Set<string>();
    for (const p of stored) {
      const key = p.metadata?.clientKey;
      assert.ok(acked.has(key) || unacked.has(key), `payment ${p.id} belongs to no request sent`);
      assert.ok(!seen.has(key), `key ${key} executed twice`);
      seen.add(key);
      if (acked.has(key)) assert.equal(p.id, acked.get(key)!.res.json.payment.id);
    }
    for (const key of acked.keys()) assert.ok(seen.has(key));
    assert.ok(stored.length <= acked.size + unacked.size);
    t.diagnostic(
      `acknowledged ${acked.size}, unanswered ${unacked.size} (of which committed before the kill: ${stored.length - acked.size})`,
    );

    // Money is conserved and the balances are exactly what the stored payments imply.
    const listed = new Map((await allAccounts(c)).map((a) => [a.id, a]));
    const expected = new Map(accounts.map((id) => [id, { posted: INITIAL_CENTS, held: 0 }]));
    for (const p of stored) {
      if (p.status === 'posted') {
        expected.get(p.sourceAccountId)!.posted -= p.amountCents;
        expected.get(p.destinationAccountId)!.posted += p.amountCents;
      } else if (p.status === 'manual_review') {
        expected.get(p.sourceAccountId)!.held += p.amountCents;
      }
    }
    for (const id of accounts) {
      const a = listed.get(id)!;
      assert.equal(a.postedBalanceCents, expected.get(id)!.posted, `posted balance of ${id}`);
      assert.equal(a.heldBalanceCents, expected.get(id)!.held, `held balance of ${id}`);
      assert.ok(a.availableBalanceCents >= 0);
    }
    assert.equal(sum(accounts.map((id) => listed.get(id)!.postedBalanceCents)), ACCOUNTS * INITIAL_CENTS);
    await assertBooksValid(c);
  } finally {
    if (server.child.exitCode === null && server.child.signalCode === null) {
      server.child.kill('SIGTERM');
      await server.exited;
    }
    await db.drop();
  }
});
