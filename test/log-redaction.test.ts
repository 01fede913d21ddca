import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createRoleKeys } from './support/foundation.ts';
import { DEMO_TOKEN, type RequestOptions, startTestApp, type TestApp } from './support/harness.ts';

/**
 * Operational logs: JSON lines that never contain a customer's personal data or a credential, whatever the
 * client sends (PII in bodies, query strings, paths and headers; valid, invalid and unknown bearer tokens),
 * and exactly one access line per request. The app logs at `trace` here, the most verbose level, so nothing
 * hides below the threshold.
 */
const PII = {
  name: 'Griselda Featherstonehaugh',
  otherName: 'Octavian Wolfeschlegel',
  documentReference: 'PASSPORT-GF-88231907',
  otherDocument: 'NATID-OW-55012873',
};
const SEEDED_PII = [
  'Alice Carter',
  'Bob Chen',
  'DEMO-PASSPORT-ALICE-001',
  'DEMO-PASSPORT-BOB-001',
  '4400000012345678',
  '4400000098765432',
];
const UNKNOWN_SECRET = 'sk_unknown_but_secret_looking_0123456789abcdef';

interface Sent {
  method: string;
  url: string;
  status: number;
  requestId: string;
}

let t: TestApp;
let secrets: Record<string, string>;
const sent: Sent[] = [];

async function call(method: string, url: string, options: RequestOptions = {}): Promise<void> {
  const res = await t.request(method, url, options);
  assert.ok(res.status < 500, `${method} ${url}: ${res.status} ${res.body.slice(0, 200)}`);
  sent.push({ method, url, status: res.status, requestId: String(res.headers['x-request-id']) });
}

before(async () => {
  t = await startTestApp({ env: { LOG_LEVEL: 'trace' } });
  secrets = await createRoleKeys(t);

  // Success paths carrying PII in their bodies.
  const customer = await t.request('POST', '/v1/customers', {
    body: { name: PII.name, country: 'GB', documentReference: PII.documentReference },
  });
  assert.equal(customer.status, 201);
  sent.push({
    method: 'POST',
    url: '/v1/customers',
    status: 201,
    requestId: customer.headers['x-request-id'] as string,
  });
  const id = customer.json.customer.id;
  await call('POST', '/v1/accounts', {
    body: { customerId: id, currency: 'GBP', initialBalanceCents: 5000 },
  });
  await call('GET', `/v1/customers/${id}`);
  await call('GET', '/v1/customers', { token: secrets['compliance']! });
  await call('GET', '/v1/customers/cus_demo_alice', { token: secrets['auditor']! });
  await call('GET', '/v1/accounts', { token: secrets['payments']! });
  await call('POST', '/v1/payments', {
    token: secrets['payments']!,
    idempotencyKey: 'log-redaction-1',
    body: {
      sourceAccountId: 'acc_demo_alice_usd',
      destinationAccountId: 'acc_demo_bob_usd',
      amountCents: 1234,
      currency: 'USD',
      note: `rent for ${PII.otherName}`,
      metadata: { payer: PII.otherName, document: PII.otherDocument },
    },
  });
  await call('GET', '/v1/audit-logs', { token: secrets['auditor']! });

  // Rejections carrying PII: duplicate, invalid fields, invalid JSON, too large, wrong content type.
  await call('POST', '/v1/customers', {
    body: { name: PII.otherName, country: 'GB', documentReference: PII.documentReference },
  });
  await call('POST', '/v1/customers', {
    body: { name: PII.otherName, country: 'gb', documentReference: PII.otherDocument, extra: PII.name },
  });
  await call('POST', '/v1/customers', {
    body: `{"name":"${PII.otherName}","documentReference":"${PII.otherDocument}"`,
  });
  await call('POST', '/v1/customers', {
    body: JSON.stringify({
      name: PII.otherName,
      documentReference: PII.otherDocument,
      pad: 'x'.repeat(1_000_000),
    }),
  });
  await call('POST', '/v1/customers', {
    body: `name=${PII.otherName}&documentReference=${PII.otherDocument}`,
    headers: { 'content-type': 'text/plain' },
  });

  // PII in query strings, paths and headers.
  await call('GET', `/v1/customers?name=${encodeURIComponent(PII.otherName)}`);
  await call('GET', `/v1/customers/${encodeURIComponent(PII.otherDocument)}`);
  await call('GET', `/v1/lookup/${encodeURIComponent(PII.otherName)}`);
  await call('DELETE', '/v1/accounts', { headers: { 'x-customer-name': PII.otherName } });
  await call('GET', '/v1/accounts/acc_does_not_exist', {
    headers: { cookie: `session=${PII.otherDocument}` },
  });

  // Every kind of credential: valid for each role, refused, unknown, malformed.
  for (const secret of Object.values(secrets)) await call('GET', '/v1/audit-logs', { token: secret });
  await call('GET', '/v1/ledger', { token: UNKNOWN_SECRET });
  await call('GET', '/v1/ledger', { token: null, headers: { authorization: `Basic ${DEMO_TOKEN}` } });
  await call('GET', '/v1/ledger', {
    token: null,
    headers: { authorization: `Bearer ${DEMO_TOKEN} ${PII.otherName}` },
  });
  await call('GET', '/health', { token: DEMO_TOKEN });
});

after(async () => {
  await t.destroy();
});

const logText = () => t.logs.text();

test('every log line is a JSON object', () => {
  assert.ok(t.logs.lines.length > 0);
  for (const line of t.logs.lines) {
    const parsed = JSON.parse(line);
    assert.equal(typeof parsed, 'object');
    assert.equal(typeof parsed.level, 'number');
    assert.equal(typeof parsed.msg, 'string');
  }
});

test('no bearer secret appears in the logs: demo token, role keys, unknown keys', () => {
  const text = logText();
  const leaked = [DEMO_TOKEN, UNKNOWN_SECRET, ...Object.values(secrets)].filter((s) => text.includes(s));
  assert.deepEqual(leaked, []);
  assert.ok(!/Bearer /i.test(text), 'no Authorization header value is logged');
});

test("no customer's personal data appears in the logs", () => {
  const text = logText();
  const needles = [
    ...Object.values(PII),
    ...Object.values(PII).map((s) => encodeURIComponent(s)),
    ...Object.values(PII).map((s) => s.replace(/ /g, '+')),
    'Featherstonehaugh',
    'Wolfeschlegel',
    ...SEEDED_PII,
  ];
  assert.deepEqual(
    needles.filter((s) => text.includes(s)),
    [],
  );
});

test('exactly one access line per request, with method, route, statusCode, durationMs and reqId', () => {
  const accessLines = t.logs.lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'request');
  assert.equal(accessLines.length, sent.length, 'one access line per request, no more');
  for (const request of sent) {
    const lines = accessLines.filter((l) => l.reqId === request.requestId);
    assert.equal(lines.length, 1, `${request.method} ${request.url}: one access line`);
    const line = lines[0];
    assert.equal(line.method, request.method, `${request.url}: method`);
    assert.equal(line.statusCode, request.status, `${request.method} ${request.url}: statusCode`);
    assert.equal(typeof line.route, 'string', `${request.url}: route`);
    // The route is the pattern, never the concrete URL: no ids, no query strings.
    assert.ok(!line.route.includes('?'), `${request.url}: no query string in route ${line.route}`);
    assert.equal(typeof line.durationMs, 'number', `${request.url}: durationMs`);
    assert.ok(Number.isFinite(line.durationMs) && line.durationMs >= 0, `${request.url}: durationMs >= 0`);
  }
  const customerRead = accessLines.find(
    (l) => l.method === 'GET' && l.statusCode === 200 && l.route.startsWith('/v1/customers/'),
  );
  assert.equal(customerRead?.route, '/v1/customers/:id');
});

test('second line of defence: the logger redacts credentials and PII put into a log object by mistake', () => {
  t.app.logger.info(
    {
      req: { headers: { authorization: `Bearer ${DEMO_TOKEN}` } },
      headers: { authorization: `Bearer ${secrets['admin']}` },
      authorization: `Bearer ${secrets['auditor']}`,
      secret: secrets['payments'],
      token: UNKNOWN_SECRET,
      name: PII.name,
      documentReference: PII.documentReference,
      accountNumber: '4400000012345678',
      customer: {
        name: PII.otherName,
        documentReference: PII.otherDocument,
        accountNumber: '4400000098765432',
      },
      body: { name: PII.name },
    },
    'redaction probe',
  );
  const line = t.logs.lines.find((l) => JSON.parse(l).msg === 'redaction probe');
  assert.ok(line !== undefined);
  const leaked = [
    DEMO_TOKEN,
    UNKNOWN_SECRET,
    ...Object.values(secrets),
    ...Object.values(PII),
    ...SEEDED_PII,
  ].filter((s) => line.includes(s));
  assert.deepEqual(leaked, [], line);
  assert.ok(line.includes('[REDACTED]'));
});
