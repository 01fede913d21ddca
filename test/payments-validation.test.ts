import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type Party, party, pay, paymentsState, usd } from './support/fixtures.ts';
import { startTestApp, type TestApp } from './support/harness.ts';

/**
 * Bad input on POST /v1/payments: each is a 400 VALIDATION_ERROR (with details) and changes nothing: no
 * payment, no audit entry, no balance movement, and the idempotency key stays unused.
 */
let t: TestApp;
let a: Party;
let b: Party;

before(async () => {
  t = await startTestApp();
  a = await party(t, { balance: 1_000_000 });
  b = await party(t, { balance: 1_000 });
});
after(async () => {
  await t.destroy();
});

const valid = () => usd(a, b, 100);
const without = (field: string) => () => {
  const body: Record<string, unknown> = { ...valid() };
  delete body[field];
  return body;
};
const withField = (field: string, value: unknown) => () => ({ ...valid(), [field]: value });

const CASES: { name: string; body: () => unknown }[] = [
  { name: 'amountCents as a string "100"', body: withField('amountCents', '100') },
  { name: 'amountCents as a float 10.5', body: withField('amountCents', 10.5) },
  { name: 'amountCents 0', body: withField('amountCents', 0) },
  { name: 'amountCents negative', body: withField('amountCents', -100) },
  { name: 'amountCents 1e21', body: withField('amountCents', 1e21) },
  { name: 'amountCents 2^53 (not a safe integer)', body: withField('amountCents', 9007199254740992) },
  { name: 'amountCents null', body: withField('amountCents', null) },
  { name: 'amountCents as an object', body: withField('amountCents', { value: 100 }) },
  { name: 'amountCents true', body: withField('amountCents', true) },
  { name: 'missing sourceAccountId', body: without('sourceAccountId') },
  { name: 'missing destinationAccountId', body: without('destinationAccountId') },
  { name: 'missing amountCents', body: without('amountCents') },
  { name: 'missing currency', body: without('currency') },
  { name: 'empty object', body: () => ({}) },
  { name: 'a JSON array instead of an object', body: () => [valid()] },
  { name: 'currency "usd" (lower case is not re-cased)', body: withField('currency', 'usd') },
  { name: 'currency " USD" (not trimmed)', body: withField('currency', ' USD') },
  { name: 'currency "US"', body: withField('currency', 'US') },
  { name: 'currency "USDD"', body: withField('currency', 'USDD') },
  { name: 'currency as a number', body: withField('currency', 840) },
  { name: 'note of 501 characters', body: withField('note', 'n'.repeat(501)) },
  { name: 'note as a number', body: withField('note', 5) },
  { name: 'an unknown field', body: withField('memo', 'hi') },
  { name: 'source = destination', body: () => ({ ...valid(), destinationAccountId: a.accountId }) },
  { name: 'sourceAccountId empty', body: withField('sourceAccountId', '') },
  { name: 'sourceAccountId not an id', body: withField('sourceAccountId', "acc_1' OR 1=1 --") },
  { name: 'metadata with a number value', body: withField('metadata', { orderId: 5 }) },
  { name: 'metadata with a nested object', body: withField('metadata', { order: { id: 'x' } }) },
  { name: 'metadata as an array', body: withField('metadata', ['x']) },
  { name: 'metadata with a bad key', body: withField('metadata', { 'has space': 'x' }) },
  // A key outside the key pattern must not smuggle in a value the value schema would reject.
  { name: 'metadata with a bad key and a number value', body: withField('metadata', { 'has space': 5 }) },
  {
    name: 'metadata with an over-long key and a nested value',
    body: withField('metadata', { ['k'.repeat(41)]: { deep: [1, 2] } }),
  },
  {
    name: 'metadata with 21 entries',
    body: withField('metadata', Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`k${i}`, 'v']))),
  },
  { name: 'metadata value of 501 characters', body: withField('metadata', { k: 'v'.repeat(501) }) },
  // Not well-formed Unicode: it cannot be stored as UTF-8 without being altered.
  { name: 'note with a lone surrogate', body: withField('note', 'abc\ud800def') },
];

const snapshot = () => paymentsState(t, [a, b]);

test('every malformed payment body is a 400 VALIDATION_ERROR that changes nothing', async () => {
  const before = await snapshot();
  for (const c of CASES) {
    const key = `bad-${c.name}`.replace(/[^\x20-\x7E]/g, '?').slice(0, 255);
    const res = await pay(t, c.body() as Record<string, unknown>, { key });
    assert.equal(res.status, 400, `${c.name}: ${res.status} ${res.body}`);
    assert.equal(res.json.error.code, 'VALIDATION_ERROR', `${c.name}: ${res.body}`);
    assert.ok(Array.isArray(res.json.error.details) && res.json.error.details.length > 0, c.name);
    assert.equal(typeof res.json.error.requestId, 'string');
    assert.equal(res.headers['idempotency-replayed'], undefined, `${c.name}: not an idempotent answer`);
  }
  assert.deepEqual(await snapshot(), before);
});

test('the key of a rejected body is unused: the valid body then executes under it', async () => {
  const key = 'bad-amountCents as a string "100"';
  const res = await pay(t, { ...valid(), amountCents: 150 }, { key });
  assert.equal(res.status, 201, res.body);
  assert.equal(res.headers['idempotency-replayed'], 'false');
});

test('the boundaries that are valid: a 500-character note, 1 cent, metadata of strings', async () => {
  const ok = [
    { ...valid(), amountCents: 1, note: 'n'.repeat(500) },
    { ...valid(), amountCents: 2, metadata: { orderId: 'ord_1', 'a.b-c': '' } },
    { ...valid(), amountCents: 3, note: '' },
  ];
  for (const body of ok) {
    const res = await pay(t, body);
    assert.ok([201, 202].includes(res.status), res.body);
  }
});

test('not JSON at all is 400 INVALID_JSON; a non-JSON content type is 415', async () => {
  const before = await snapshot();
  const broken = await t.request('POST', '/v1/payments', {
    body: '{"sourceAccountId": ',
    idempotencyKey: 'broken-json',
  });
  assert.equal(broken.status, 400);
  assert.equal(broken.json.error.code, 'INVALID_JSON');
  const text = await t.request('POST', '/v1/payments', {
    body: 'amountCents=100',
    headers: { 'content-type': 'text/plain' },
    idempotencyKey: 'text-body',
  });
  assert.equal(text.status, 415);
  assert.equal(text.json.error.code, 'UNSUPPORTED_CONTENT_TYPE');
  assert.deepEqual(await snapshot(), before);
});

test('authentication comes before validation: no token is 401 even for a bad body', async () => {
  const res = await t.request('POST', '/v1/payments', {
    body: { amountCents: 'x' },
    idempotencyKey: 'k',
    token: null,
  });
  assert.equal(res.status, 401);
  assert.equal(res.json.error.code, 'AUTH_REQUIRED');
  const wrong = await t.request('POST', '/v1/payments', {
    body: valid(),
    idempotencyKey: 'k',
    token: 'sk_not_a_real_key',
  });
  assert.equal(wrong.status, 401);
  assert.equal(wrong.json.error.code, 'AUTH_INVALID');
});
