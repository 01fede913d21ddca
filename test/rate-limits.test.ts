import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { clientNetwork, requestCost, TokenBuckets } from '../src/http/protection.ts';
import { apiKey } from './support/fixtures.ts';
import { assertError } from './support/foundation.ts';
import { DEMO_TOKEN, startTestApp, type TestApp, type TestResponse } from './support/harness.ts';

/**
 * Rate limits (issue 13): a token bucket per API key (RATE_LIMIT_PER_SECOND refill, RATE_LIMIT_BURST size) with
 * RateLimit-* headers and 429 RATE_LIMITED + Retry-After, and a separate limit on failed authentications per
 * client address (AUTH_FAILURE_LIMIT_PER_MINUTE) that answers 429 before the secret is looked up. Timing is
 * kept loose: a bucket refilling at 1/s cannot gain more than a token per elapsed second.
 */

/** A request from a chosen client address (inject's remoteAddress), for the per-address limit. */
async function fromAddress(
  t: TestApp,
  address: string,
  url: string,
  token: string | null,
): Promise<TestResponse> {
  const res = await t.app.server.inject({
    method: 'GET',
    url,
    remoteAddress: address,
    headers: token === null ? {} : { authorization: `Bearer ${token}` },
  });
  let json: unknown;
  try {
    json = JSON.parse(res.body);
  } catch {
    json = undefined;
  }
  return { status: res.statusCode, headers: res.headers, body: res.body, json };
}

describe('per API key', () => {
  let t: TestApp;
  let other: string;
  before(async () => {
    t = await startTestApp({ env: { RATE_LIMIT_PER_SECOND: '1', RATE_LIMIT_BURST: '5' } });
    other = (await apiKey(t, 'payments')).token;
  });
  after(async () => {
    await t.destroy();
  });

  test('the burst is served with RateLimit headers, then 429 RATE_LIMITED with Retry-After', async () => {
    const startedMs = Date.now();
    const responses: TestResponse[] = [];
    for (let i = 0; i < 12; i += 1) responses.push(await t.request('GET', '/v1/accounts?limit=1'));
    const elapsedSeconds = (Date.now() - startedMs) / 1000;
    const served = responses.filter((r) => r.status === 200);
    const limited = responses.filter((r) => r.status === 429);
    assert.equal(served.length + limited.length, responses.length, 'only 200s and 429s');
    assert.ok(served.length >= 5, `the burst of 5 is served (${served.length})`);
    assert.ok(
      served.length <= 5 + Math.ceil(elapsedSeconds),
      `no more than the burst plus 1/s: ${served.length} in ${elapsedSeconds}s`,
    );
    assert.ok(limited.length >= 1, 'a 429 after the burst');
    const first = responses[0]!;
    assert.equal(first.headers['ratelimit-limit'], '5');
    assert.equal(first.headers['ratelimit-remaining'], '4');
    assert.match(String(first.headers['ratelimit-reset']), /^[0-9]+$/);
    const refused = limited[0]!;
    assertError(refused, 429, 'RATE_LIMITED', 'over the burst');
    assert.match(String(refused.headers['retry-after']), /^[1-9][0-9]*$/, 'Retry-After: whole seconds, >= 1');
    assert.equal(refused.headers['ratelimit-remaining'], '0');
  });

  test('another key is unaffected by the limited one', async () => {
    const res = await t.request('GET', '/v1/accounts?limit=1', { token: other });
    assert.equal(res.status, 200, res.body);
    assert.equal(res.headers['ratelimit-limit'], '5');
  });

  test('a limited request is refused before its body is read (429, not a JSON error)', async () => {
    // Drain the demo key again, then send a broken body: the 429 comes first.
    for (let i = 0; i < 8; i += 1) await t.request('GET', '/v1/accounts?limit=1');
    const res = await t.request('POST', '/v1/customers', { body: '{not json' });
    assertError(res, 429, 'RATE_LIMITED', 'limited POST with a broken body');
  });

  test('unauthenticated routes carry no RateLimit headers', async () => {
    const res = await t.request('GET', '/health', { token: null });
    assert.equal(res.status, 200);
    assert.equal(res.headers['ratelimit-limit'], undefined);
  });
});

describe('RATE_LIMIT_PER_SECOND=0', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp({ env: { RATE_LIMIT_PER_SECOND: '0' } });
  });
  after(async () => {
    await t.destroy();
  });

  test('turns per-key limiting off: no 429, no RateLimit headers', async () => {
    const responses = await Promise.all(
      Array.from({ length: 30 }, () => t.request('GET', '/v1/accounts?limit=1')),
    );
    for (const res of responses) {
      assert.equal(res.status, 200);
      assert.equal(res.headers['ratelimit-limit'], undefined);
    }
  });
});

describe('failed authentication per client address', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp({ env: { AUTH_FAILURE_LIMIT_PER_MINUTE: '3' } });
  });
  after(async () => {
    await t.destroy();
  });

  test('after the limit of 401s, the address gets 429 on authenticated routes, even with a valid key', async () => {
    const attacker = '203.0.113.7';
    for (let i = 0; i < 3; i += 1) {
      const res = await fromAddress(t, attacker, '/v1/accounts', `sk_wrong_secret_${i}`);
      assertError(res, 401, 'AUTH_INVALID', `failure ${i + 1}`);
    }
    const wrong = await fromAddress(t, attacker, '/v1/accounts', 'sk_wrong_secret_again');
    assertError(wrong, 429, 'RATE_LIMITED', 'a fourth wrong secret');
    assert.match(String(wrong.headers['retry-after']), /^[1-9][0-9]*$/);
    // Refused before the secret is looked up: a valid key from that address is refused too.
    const valid = await fromAddress(t, attacker, '/v1/accounts', DEMO_TOKEN);
    assertError(valid, 429, 'RATE_LIMITED', 'a valid key from the limited address');
    // Routes without authentication still answer.
    const health = await fromAddress(t, attacker, '/health', null);
    assert.equal(health.status, 200);
  });

  test('another address is unaffected; a missing header counts as a failure too', async () => {
    const neighbour = '198.51.100.20';
    const ok = await fromAddress(t, neighbour, '/v1/accounts', DEMO_TOKEN);
    assert.equal(ok.status, 200, ok.body);
    for (let i = 0; i < 3; i += 1) {
      const res = await fromAddress(t, neighbour, '/v1/accounts', null);
      assertError(res, 401, 'AUTH_REQUIRED', `missing header ${i + 1}`);
    }
    const limited = await fromAddress(t, neighbour, '/v1/accounts', DEMO_TOKEN);
    assertError(limited, 429, 'RATE_LIMITED', 'after three missing headers');
  });
});

describe('TokenBuckets', () => {
  test('refills at the rate, never beyond the burst, and says when to retry', () => {
    let nowMs = 0;
    const buckets = new TokenBuckets(2, 4, 100, () => nowMs);
    for (let i = 0; i < 4; i += 1) assert.equal(buckets.take('k').allowed, true);
    const refused = buckets.take('k');
    assert.equal(refused.allowed, false);
    assert.equal(refused.remaining, 0);
    assert.equal(refused.retryAfterSeconds, 1);
    nowMs += 500; // one token at 2/s
    assert.equal(buckets.take('k').allowed, true);
    assert.equal(buckets.take('k').allowed, false);
    nowMs += 60_000; // long idle: full, not more
    const state = buckets.take('k');
    assert.equal(state.remaining, 3);
    assert.equal(state.resetSeconds, 1);
  });

  test('a slow refill gives a long Retry-After (1 per 20 s)', () => {
    let nowMs = 0;
    const buckets = new TokenBuckets(3 / 60, 3, 100, () => nowMs);
    for (let i = 0; i < 3; i += 1) buckets.take('ip');
    const peek = buckets.peek('ip');
    assert.equal(peek.allowed, false);
    assert.equal(peek.retryAfterSeconds, 20);
    nowMs += 20_000;
    assert.equal(buckets.peek('ip').allowed, true);
  });

  test('memory is bounded: beyond keysMax the least recently used key is forgotten', () => {
    const buckets = new TokenBuckets(1, 1, 3, () => 0);
    for (const key of ['a', 'b', 'c']) buckets.take(key);
    buckets.take('a'); // a is now the most recent
    buckets.take('d'); // evicts b
    assert.equal(buckets.size, 3);
    assert.equal(buckets.take('a').allowed, false, 'a is remembered (still empty)');
    assert.equal(buckets.take('b').allowed, true, 'b was forgotten: a full bucket again');
    for (let i = 0; i < 10_000; i += 1) buckets.take(`k${i}`);
    assert.equal(buckets.size, 3);
  });
});

test('failed authentications are counted per IPv4 address and per IPv6 /64', () => {
  assert.equal(clientNetwork('203.0.113.7'), '203.0.113.7');
  assert.equal(clientNetwork('::ffff:203.0.113.7'), '203.0.113.7', 'an IPv4-mapped peer is its IPv4 address');
  assert.equal(clientNetwork('2001:db8:1:2:aaaa::1'), clientNetwork('2001:db8:1:2:bbbb::9'), 'one /64');
  assert.notEqual(clientNetwork('2001:db8:1:2::1'), clientNetwork('2001:db8:1:3::1'));
});

test('a list page costs its limit in units of 50 rows: the bucket measures work, not calls', () => {
  const cost = (method: string, query: Record<string, unknown>) =>
    requestCost({ method, query } as unknown as Parameters<typeof requestCost>[0]);
  assert.equal(cost('GET', {}), 1);
  assert.equal(cost('GET', { limit: '50' }), 1);
  assert.equal(cost('GET', { limit: '51' }), 2);
  assert.equal(cost('GET', { limit: '500' }), 10);
  assert.equal(cost('POST', { limit: '500' }), 1);
  const buckets = new TokenBuckets(1, 20, 10);
  assert.equal(buckets.take('k', 10).allowed, true);
  assert.equal(buckets.take('k', 10).allowed, true);
  const refused = buckets.take('k', 10);
  assert.equal(refused.allowed, false, 'two pages of 500 spend a burst of 20');
  assert.ok(refused.retryAfterSeconds >= 9, 'until ten tokens are back');
});
