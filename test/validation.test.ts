import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { assertError, type StateCounts, stateCounts } from './support/foundation.ts';
import { startTestApp, type TestApp, type TestResponse } from './support/harness.ts';

/**
 * Input validation at the edge, as the contract states it: every field of POST /v1/customers and POST
 * /v1/accounts is checked strictly (no trimming, no re-casing, no coercion, no unknown fields), and the
 * protocol-level mistakes (bad JSON, wrong content type, too large, unknown route, wrong method, bad paging)
 * each get their stable 4xx. Every rejection is checked to be a 4xx with the contract's error shape and to
 * change nothing: the customer, account, ledger and audit counts are the same before and after.
 */
interface Rejection {
  label: string;
  method: string;
  url: string;
  /** An object is sent as JSON; a string is sent verbatim (for malformed JSON and raw numbers). */
  body?: unknown;
  headers?: Record<string, string>;
  status: number;
  code: string;
  /** For VALIDATION_ERROR: the JSON pointer that a detail must name. */
  field?: string;
}

const CUSTOMER = { name: 'Valid Person', country: 'US', documentReference: 'VALIDATION-DOC-0001' };
const ACCOUNT = { customerId: 'cus_demo_bob', currency: 'USD' };

/** A VALIDATION_ERROR for `base` with `field` replaced by `value` (or removed, for `undefined`). */
function fieldCase(
  path: string,
  base: Record<string, unknown>,
  field: string,
  label: string,
  value: unknown,
): Rejection {
  const body = { ...base, [field]: value };
  if (value === undefined) delete body[field];
  return {
    label: `${path} ${field}: ${label}`,
    method: 'POST',
    url: path,
    body,
    status: 400,
    code: 'VALIDATION_ERROR',
    field: `/${field}`,
  };
}

/** The same body sent as raw JSON text, for values JSON.stringify would rewrite (1e21, 2^53). */
function rawNumberCase(
  path: string,
  base: Record<string, unknown>,
  field: string,
  literal: string,
): Rejection {
  const json = JSON.stringify(base).replace(/}$/, `,"${field}":${literal}}`);
  return {
    label: `${path} ${field}: ${literal}`,
    method: 'POST',
    url: path,
    body: json,
    status: 400,
    code: 'VALIDATION_ERROR',
    field: `/${field}`,
  };
}

const WRONG_TYPES: [string, unknown][] = [
  ['a number', 42],
  ['null', null],
  ['a boolean', true],
  ['an array', ['x']],
  ['an object', { value: 'x' }],
];

const TEXT_PROBLEMS = (maxLength: number): [string, unknown][] => [
  ['missing', undefined],
  ...WRONG_TYPES,
  ['empty', ''],
  ['only spaces', '   '],
  ['a leading space', ' Padded'],
  ['a trailing space', 'Padded '],
  ['a trailing newline', 'Padded\n'],
  [`longer than ${maxLength}`, 'x'.repeat(maxLength + 1)],
];

const CODE_PROBLEMS = (valid: string): [string, unknown][] => [
  ['missing', undefined],
  ...WRONG_TYPES,
  ['empty', ''],
  ['lower case', valid.toLowerCase()],
  ['mixed case', valid[0] + valid.slice(1).toLowerCase()],
  ['a leading space', ` ${valid}`],
  ['a trailing space', `${valid} `],
  ['too short', valid.slice(1)],
  ['too long', `${valid}X`],
  ['digits', '1'.repeat(valid.length)],
];

const CUSTOMER_CASES: Rejection[] = [
  ...TEXT_PROBLEMS(200).map(([l, v]) => fieldCase('/v1/customers', CUSTOMER, 'name', l, v)),
  ...CODE_PROBLEMS('US').map(([l, v]) => fieldCase('/v1/customers', CUSTOMER, 'country', l, v)),
  ...TEXT_PROBLEMS(100).map(([l, v]) => fieldCase('/v1/customers', CUSTOMER, 'documentReference', l, v)),
  // Unknown fields, including attempts to set server-owned fields.
  fieldCase('/v1/customers', CUSTOMER, 'nickname', 'an unknown field', 'Vee'),
  fieldCase('/v1/customers', CUSTOMER, 'kycStatus', 'a server-owned field', 'verified'),
  fieldCase('/v1/customers', CUSTOMER, 'id', 'a server-owned field', 'cus_chosen_by_client'),
];

const ACCOUNT_CASES: Rejection[] = [
  ...(
    [
      ['missing', undefined],
      ...WRONG_TYPES,
      ['empty', ''],
      ['a leading space', ' cus_demo_bob'],
      ['a trailing space', 'cus_demo_bob '],
      ['not an id', 'Bob Chen'],
      ['too long', `cus_${'a'.repeat(61)}`],
    ] as [string, unknown][]
  ).map(([l, v]) => fieldCase('/v1/accounts', ACCOUNT, 'customerId', l, v)),
  ...CODE_PROBLEMS('USD').map(([l, v]) => fieldCase('/v1/accounts', ACCOUNT, 'currency', l, v)),
  ...(
    [
      ['a float', 10.5],
      ['a tiny fraction', 0.001],
      ['a numeric string', '100'],
      ['an empty string', ''],
      ['negative', -1],
      ['negative zero point five', -0.5],
      ['null', null],
      ['a boolean', true],
      ['an array', [100]],
      ['an object', { amount: 100 }],
      ['above the safe integer range', Number.MAX_SAFE_INTEGER + 1],
    ] as [string, unknown][]
  ).map(([l, v]) => fieldCase('/v1/accounts', ACCOUNT, 'initialBalanceCents', l, v)),
  rawNumberCase('/v1/accounts', ACCOUNT, 'initialBalanceCents', '1e21'),
  rawNumberCase('/v1/accounts', ACCOUNT, 'initialBalanceCents', '9007199254740993'),
  rawNumberCase('/v1/accounts', ACCOUNT, 'initialBalanceCents', '-0.0001'),
  fieldCase('/v1/accounts', ACCOUNT, 'nickname', 'an unknown field', 'savings'),
  fieldCase('/v1/accounts', ACCOUNT, 'postedBalanceCents', 'a server-owned field', 100),
  fieldCase('/v1/accounts', ACCOUNT, 'accountNumber', 'a server-owned field', '4400000000000001'),
];

const bodyShape = (url: string, label: string, body: string): Rejection => ({
  label: `${url}: the body is ${label}`,
  method: 'POST',
  url,
  body,
  status: 400,
  code: 'VALIDATION_ERROR',
  field: '/body',
});

const PROTOCOL_CASES: Rejection[] = [
  ...['/v1/customers', '/v1/accounts'].flatMap((url) => [
    bodyShape(url, 'an array', '[]'),
    bodyShape(url, 'null', 'null'),
    bodyShape(url, 'a string', '"text"'),
    bodyShape(url, 'a number', '42'),
    {
      label: `${url}: invalid JSON`,
      method: 'POST',
      url,
      body: '{"name": "Valid',
      status: 400,
      code: 'INVALID_JSON',
    },
    {
      label: `${url}: a trailing comma`,
      method: 'POST',
      url,
      body: '{"currency":"USD",}',
      status: 400,
      code: 'INVALID_JSON',
    },
    {
      label: `${url}: an empty body sent as JSON`,
      method: 'POST',
      url,
      body: '',
      headers: { 'content-type': 'application/json' },
      status: 400,
      code: 'INVALID_JSON',
    },
    {
      label: `${url}: no body at all`,
      method: 'POST',
      url,
      status: 400,
      code: 'VALIDATION_ERROR',
      field: '/body',
    },
    ...[
      'text/plain',
      'application/x-www-form-urlencoded',
      'application/xml',
      'multipart/form-data; boundary=x',
    ].map(
      (type): Rejection => ({
        label: `${url}: a ${type} body`,
        method: 'POST',
        url,
        body: type.startsWith('application/x-www')
          ? 'name=Valid+Person&country=US'
          : JSON.stringify(CUSTOMER),
        headers: { 'content-type': type },
        status: 415,
        code: 'UNSUPPORTED_CONTENT_TYPE',
      }),
    ),
    {
      label: `${url}: a body of 1,000,001 bytes`,
      method: 'POST',
      url,
      body: jsonOfBytes(1_000_001),
      status: 413,
      code: 'PAYLOAD_TOO_LARGE',
    },
    {
      // Exactly at the limit the body is read and validated (the name is far too long): a 400, not a 413.
      label: `${url}: a body of exactly 1,000,000 bytes is validated`,
      method: 'POST',
      url,
      body: jsonOfBytes(1_000_000),
      status: 400,
      code: 'VALIDATION_ERROR',
    },
  ]),
  { label: 'an unknown /v1 route', method: 'GET', url: '/v1/does-not-exist', status: 404, code: 'NOT_FOUND' },
  { label: 'an unknown top-level route', method: 'GET', url: '/nope', status: 404, code: 'NOT_FOUND' },
  {
    label: 'a near-miss route',
    method: 'POST',
    url: '/v1/customer',
    body: CUSTOMER,
    status: 404,
    code: 'NOT_FOUND',
  },
  {
    label: 'too deep a path',
    method: 'GET',
    url: '/v1/accounts/acc_demo_alice_usd/balance/x',
    status: 404,
    code: 'NOT_FOUND',
  },
  {
    label: 'a malformed customer id',
    method: 'GET',
    url: '/v1/customers/Alice%20Carter',
    status: 400,
    code: 'VALIDATION_ERROR',
    field: '/id',
  },
  {
    label: 'a malformed account id',
    method: 'GET',
    url: `/v1/accounts/acc_${'x'.repeat(80)}`,
    status: 400,
    code: 'VALIDATION_ERROR',
    field: '/id',
  },
  {
    label: 'an unknown customer',
    method: 'GET',
    url: '/v1/customers/cus_does_not_exist',
    status: 404,
    code: 'CUSTOMER_NOT_FOUND',
  },
  {
    label: 'an unknown account',
    method: 'GET',
    url: '/v1/accounts/acc_does_not_exist',
    status: 404,
    code: 'ACCOUNT_NOT_FOUND',
  },
  {
    label: "an unknown account's balance",
    method: 'GET',
    url: '/v1/accounts/acc_does_not_exist/balance',
    status: 404,
    code: 'ACCOUNT_NOT_FOUND',
  },
  {
    label: 'an account for an unknown customer',
    method: 'POST',
    url: '/v1/accounts',
    body: { customerId: 'cus_does_not_exist', currency: 'USD', initialBalanceCents: 500 },
    status: 404,
    code: 'CUSTOMER_NOT_FOUND',
  },
  {
    label: 'a second customer with a demo document reference',
    method: 'POST',
    url: '/v1/customers',
    body: { name: 'Someone Else', country: 'GB', documentReference: 'DEMO-PASSPORT-ALICE-001' },
    status: 409,
    code: 'CUSTOMER_EXISTS',
  },
];

const LIST_ROUTES = ['/v1/customers', '/v1/accounts', '/v1/payments', '/v1/ledger', '/v1/audit-logs'];
const cursor = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
const QUERY_CASES: Rejection[] = LIST_ROUTES.flatMap((route) =>
  (
    [
      ['limit=0', '/limit'],
      ['limit=501', '/limit'],
      ['limit=-1', '/limit'],
      ['limit=abc', '/limit'],
      ['limit=1.5', '/limit'],
      ['limit=', '/limit'],
      ['limit=1&limit=2', '/limit'],
      ['unknownParam=1', '/unknownParam'],
      ['cursor=', '/cursor'],
      ['cursor=not-a-cursor', '/cursor'],
      [`cursor=${cursor({ p: -1 })}`, '/cursor'],
      [`cursor=${cursor({ p: 1.5 })}`, '/cursor'],
      [`cursor=${cursor(null)}`, '/cursor'],
      [`cursor=${'A'.repeat(201)}`, '/cursor'],
    ] as const
  ).map(
    ([query, field]): Rejection => ({
      label: `GET ${route}?${query.slice(0, 40)}`,
      method: 'GET',
      url: `${route}?${query}`,
      status: 400,
      code: 'VALIDATION_ERROR',
      field,
    }),
  ),
);

/** A JSON object of exactly `bytes` bytes (one long name). */
function jsonOfBytes(bytes: number): string {
  const shell = JSON.stringify({ name: '', country: 'US', documentReference: 'D' });
  return shell.replace('"name":""', `"name":"${'n'.repeat(bytes - shell.length)}"`);
}

let t: TestApp;

before(async () => {
  t = await startTestApp();
});

after(async () => {
  await t.destroy();
});

async function send(c: Pick<Rejection, 'method' | 'url' | 'body' | 'headers'>): Promise<TestResponse> {
  return t.request(c.method, c.url, {
    ...(c.body === undefined ? {} : { body: c.body }),
    ...(c.headers === undefined ? {} : { headers: c.headers }),
  });
}

async function assertRejectedWithoutEffect(c: Rejection): Promise<void> {
  const before: StateCounts = await stateCounts(t);
  const res = await send(c);
  assert.ok(res.status < 500, `${c.label}: never a 5xx (got ${res.status} ${res.body.slice(0, 200)})`);
  assertError(res, c.status, c.code, c.label);
  if (c.field !== undefined) {
    const details: { field?: string; message: string }[] = res.json.error.details ?? [];
    assert.ok(details.length > 0, `${c.label}: details are given`);
    assert.ok(
      details.some((d) => d.field === c.field),
      `${c.label}: a detail names ${c.field}; got ${JSON.stringify(details)}`,
    );
    for (const d of details) assert.equal(typeof d.message, 'string', `${c.label}: detail message`);
  }
  assert.deepEqual(await stateCounts(t), before, `${c.label}: a rejected request changes nothing`);
}

for (const [group, cases] of [
  ['POST /v1/customers', CUSTOMER_CASES],
  ['POST /v1/accounts', ACCOUNT_CASES],
  ['protocol', PROTOCOL_CASES],
  ['paging', QUERY_CASES],
] as const) {
  test(`${group}: ${cases.length} rejections, each a 4xx with its code and no effect`, async (ctx) => {
    for (const c of cases) await ctx.test(c.label, () => assertRejectedWithoutEffect(c));
  });
}

test('a known path with the wrong method is a 405 with an Allow header', async () => {
  const cases: [string, string, string[]][] = [
    ['DELETE', '/v1/accounts', ['GET', 'POST']],
    ['PUT', '/v1/customers', ['GET', 'POST']],
    ['PATCH', '/v1/payments', ['GET', 'POST']],
    ['DELETE', '/v1/customers/cus_demo_alice', ['GET']],
    ['POST', '/v1/accounts/acc_demo_alice_usd/balance', ['GET']],
    ['POST', '/v1/ledger/verify', ['GET']],
    ['DELETE', '/v1/audit-logs', ['GET']],
  ];
  for (const [method, url, allowed] of cases) {
    const before = await stateCounts(t);
    const res = await send({ method, url });
    assertError(res, 405, 'METHOD_NOT_ALLOWED', `${method} ${url}`);
    const allow = String(res.headers['allow'] ?? '')
      .split(',')
      .map((m) => m.trim());
    for (const m of allowed) assert.ok(allow.includes(m), `${method} ${url}: Allow "${allow}" lists ${m}`);
    assert.ok(!allow.includes(method), `${method} ${url}: Allow "${allow}" does not list ${method}`);
    assert.deepEqual(await stateCounts(t), before);
  }
});

test('paging bounds that are allowed: limit=1 and limit=500', async () => {
  for (const route of LIST_ROUTES) {
    for (const limit of [1, 500]) {
      const res = await t.request('GET', `${route}?limit=${limit}`);
      assert.equal(res.status, 200, `${route}?limit=${limit}: ${res.body.slice(0, 200)}`);
    }
  }
  // And a cursor the server handed out works.
  const first = await t.request('GET', '/v1/accounts?limit=1');
  assert.equal(first.json.hasMore, true);
  const second = await t.request('GET', `/v1/accounts?limit=1&cursor=${first.json.nextCursor}`);
  assert.equal(second.status, 200);
  assert.notEqual(second.json.accounts[0].id, first.json.accounts[0].id);
});

test('a valid customer is created once; the same document reference again is a 409 that changes nothing', async () => {
  const created = await t.request('POST', '/v1/customers', {
    body: { name: 'Duplicate Test', country: 'FR', documentReference: 'DUP-DOC-12345' },
  });
  assert.equal(created.status, 201, created.body);
  assert.equal(created.json.customer.kycStatus, 'verified');

  // Same reference, everything else different: still the same person's document.
  await assertRejectedWithoutEffect({
    label: 'a duplicate document reference',
    method: 'POST',
    url: '/v1/customers',
    body: { name: 'Another Name', country: 'DE', documentReference: 'DUP-DOC-12345' },
    status: 409,
    code: 'CUSTOMER_EXISTS',
  });
  // Duplicates are found on the canonical reference (decision 0011): a differently cased or punctuated one
  // is the same document, though each is stored as sent (test/identity-canonical.test.ts has the variants).
  for (const variant of ['dup-doc-12345', 'DUP DOC 12345', 'DUPDOC12345']) {
    await assertRejectedWithoutEffect({
      label: `the duplicate reference ${variant}`,
      method: 'POST',
      url: '/v1/customers',
      body: { name: 'Duplicate Test', country: 'FR', documentReference: variant },
      status: 409,
      code: 'CUSTOMER_EXISTS',
    });
  }
});

test('a customer from a high-risk jurisdiction starts in manual_review; others start verified', async () => {
  const cases: [string, string][] = [
    ['KP', 'manual_review'],
    ['IR', 'manual_review'],
    ['SY', 'manual_review'],
    ['US', 'verified'],
    ['GB', 'verified'],
  ];
  for (const [country, kycStatus] of cases) {
    const res = await t.request('POST', '/v1/customers', {
      body: { name: `Person From ${country}`, country, documentReference: `RISK-DOC-${country}` },
    });
    assert.equal(res.status, 201, res.body);
    assert.equal(res.json.customer.kycStatus, kycStatus, country);
    const read = await t.request('GET', `/v1/customers/${res.json.customer.id}`);
    assert.equal(read.json.customer.kycStatus, kycStatus, `${country} as stored`);
  }
});

test('a valid account is created with the boundary amounts 0 and the largest safe integer', async () => {
  const customer = await t.request('POST', '/v1/customers', {
    body: { name: 'Boundary Person', country: 'CH', documentReference: 'BOUNDARY-DOC-1' },
  });
  assert.equal(customer.status, 201, customer.body);
  for (const initialBalanceCents of [0, Number.MAX_SAFE_INTEGER]) {
    const res = await t.request('POST', '/v1/accounts', {
      body: { customerId: customer.json.customer.id, currency: 'CHF', initialBalanceCents },
    });
    assert.equal(res.status, 201, res.body);
    assert.equal(res.json.account.postedBalanceCents, initialBalanceCents);
  }
});
