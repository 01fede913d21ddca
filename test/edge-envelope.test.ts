import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { allPayments, auditLogs, type Party, party, pay, paymentsState, usd } from './support/fixtures.ts';
import { assertError } from './support/foundation.ts';
import {
  DEMO_TOKEN,
  listenOnLoopback,
  rawHttp,
  startTestApp,
  type TestApp,
  type TestResponse,
} from './support/harness.ts';

/**
 * The HTTP edge (issue 13): text every backend can store, duplicate JSON keys, one error envelope with request
 * ids for every kind of error (router, parser and Node's HTTP parser ones included), and the server's own
 * request id in what the ledger and audit log record.
 */
let t: TestApp;
let a: Party;
let b: Party;
let port: number;

before(async () => {
  t = await startTestApp();
  a = await party(t, { balance: 1_000_000 });
  b = await party(t, { balance: 1_000 });
  port = await listenOnLoopback(t);
});
after(async () => {
  await t.destroy();
});

const SERVER_ID = /^req_[0-9a-f]{24}$/;

/** The envelope, X-Request-Id, X-Server-Request-Id and, with no client id, all three equal. */
function assertEnvelope(res: TestResponse, status: number, code: string, context: string): void {
  assertError(res, status, code, context);
  assert.match(String(res.headers['x-server-request-id']), SERVER_ID, `${context}: X-Server-Request-Id`);
  assert.equal(res.json.error.requestId, res.headers['x-request-id'], `${context}: requestId`);
  assert.equal(res.json.error.requestId, res.headers['x-server-request-id'], `${context}: server id`);
}

const valid = () => usd(a, b, 100);

const snapshot = () => paymentsState(t, [a, b]);

test('text no backend can store is a 400 VALIDATION_ERROR naming the field, and nothing is stored', async () => {
  const before = await snapshot();
  const cases: { name: string; body: string; field: string }[] = [
    { name: 'NUL in the note', body: JSON.stringify({ ...valid(), note: 'pay\u0000me' }), field: '/note' },
    // JSON.stringify escapes a lone surrogate as \ud800: the body is valid JSON, the string is not storable.
    {
      name: 'lone surrogate in the note',
      body: JSON.stringify({ ...valid(), note: 'a\ud800b' }),
      field: '/note',
    },
    {
      name: 'NUL in a metadata value',
      body: JSON.stringify({ ...valid(), metadata: { orderId: 'x\u0000' } }),
      field: '/metadata/orderId',
    },
    {
      name: 'NUL in a metadata key',
      body: JSON.stringify({ ...valid(), metadata: { 'a\u0000b': 'x' } }),
      field: '/metadata/a\u0000b',
    },
    {
      name: 'lone low surrogate in a key',
      body: JSON.stringify({ ...valid(), ['x\udc00']: 1 }),
      field: '/x\udc00',
    },
  ];
  for (const [i, c] of cases.entries()) {
    const res = await pay(t, c.body, { key: `unstorable-${i}` });
    assertEnvelope(res, 400, 'VALIDATION_ERROR', c.name);
    assert.deepEqual(
      res.json.error.details.map((d: { field: string }) => d.field),
      [c.field],
      `${c.name}: ${res.body}`,
    );
  }
  // The same rule for every route's body: a customer's name with a NUL.
  const customer = await t.request('POST', '/v1/customers', {
    body: { name: 'Ann\u0000Lee', country: 'GB', documentReference: 'DOC-NUL-1' },
  });
  assertEnvelope(customer, 400, 'VALIDATION_ERROR', 'customer name with NUL');
  assert.deepEqual(await snapshot(), before);
  // The key of a refused body is unused: the valid body then executes under it.
  const retried = await pay(t, valid(), { key: 'unstorable-0' });
  assert.equal(retried.status, 201, retried.body);
});

test('a NUL note among 30 concurrent valid payments: the NUL one is a 400, the 30 commit', async () => {
  const before = (await allPayments(t)).length;
  const results = await Promise.all([
    pay(t, { ...valid(), amountCents: 7, note: 'bad\u0000note' }, { key: 'nul-among-30' }),
    ...Array.from({ length: 30 }, (_, i) =>
      pay(t, { ...valid(), amountCents: 10 + i }, { key: `beside-nul-${i}` }),
    ),
  ]);
  assertEnvelope(results[0]!, 400, 'VALIDATION_ERROR', 'the NUL note');
  // Posted or held for review (the velocity rule sees 30 payments from one account): committed either way.
  for (const res of results.slice(1)) assert.ok([201, 202].includes(res.status), res.body);
  assert.equal((await allPayments(t)).length, before + 30);
});

test('a NUL in the query string (value or key) is a 400 VALIDATION_ERROR naming the parameter', async () => {
  const value = await t.request('GET', '/v1/payments?status=%00posted');
  assertEnvelope(value, 400, 'VALIDATION_ERROR', 'NUL in a query value');
  assert.equal(value.json.error.details[0].field, '/status');
  const key = await t.request('GET', '/v1/payments?st%00atus=posted');
  assertEnvelope(key, 400, 'VALIDATION_ERROR', 'NUL in a query key');
  assert.equal(key.json.error.details[0].field, '/st\u0000atus');
  const unauthenticated = await t.request('GET', '/health?x=%00', { token: null });
  assertEnvelope(unauthenticated, 400, 'VALIDATION_ERROR', 'NUL in the query of /health');
});

test('duplicate keys in a JSON body are 400 INVALID_JSON (the last one does not silently win)', async () => {
  const before = await snapshot();
  const base = `"sourceAccountId":"${a.accountId}","destinationAccountId":"${b.accountId}","currency":"USD"`;
  const cases: { name: string; body: string; field: string }[] = [
    { name: 'top level', body: `{${base},"amountCents":1,"amountCents":900000}`, field: '/amountCents' },
    {
      name: 'nested in metadata',
      body: `{${base},"amountCents":1,"metadata":{"k":"a","k":"b"}}`,
      field: '/metadata/k',
    },
    // Compared decoded: "k" and "\\u006b" are one key.
    {
      name: 'the same key spelled with an escape',
      body: `{${base},"amountCents":1,"metadata":{"k":"a","\\u006b":"b"}}`,
      field: '/metadata/k',
    },
  ];
  for (const [i, c] of cases.entries()) {
    const res = await pay(t, c.body, { key: `duplicate-${i}` });
    assertEnvelope(res, 400, 'INVALID_JSON', c.name);
    assert.equal(res.json.error.details[0].field, c.field, `${c.name}: ${res.body}`);
  }
  // Equal values in different objects, and keys inside strings, are not duplicates.
  const fine = await pay(
    t,
    `{${base},"amountCents":2,"note":"\\"amountCents\\":1,\\"amountCents\\":2","metadata":{"currency":"USD"}}`,
  );
  assert.ok([201, 202].includes(fine.status), fine.body);
  const after = await snapshot();
  assert.equal(after.payments, before.payments + 1, 'only the valid payment was stored');
});

test("fastify's prototype-poisoning protection still holds, and nesting is bounded", async () => {
  const proto = await t.request('POST', '/v1/customers', {
    body: '{"name":"A","country":"GB","documentReference":"D","__proto__":{"admin":true}}',
  });
  assertEnvelope(proto, 400, 'INVALID_JSON', '__proto__ key');
  const ctor = await t.request('POST', '/v1/customers', {
    body: '{"name":"A","country":"GB","documentReference":"D","constructor":{"prototype":{"x":1}}}',
  });
  assertEnvelope(ctor, 400, 'INVALID_JSON', 'constructor.prototype key');
  const deep = await t.request('POST', '/v1/customers', { body: `${'['.repeat(40)}${']'.repeat(40)}` });
  assertEnvelope(deep, 400, 'INVALID_JSON', '40 levels deep');
  // Close to the body limit: still a quick 400, never a stack overflow or a 500.
  const deeper = await t.request('POST', '/v1/customers', {
    body: `${'[{"__proto__":'.repeat(60_000)}1${'}]'.repeat(60_000)}`,
  });
  assertEnvelope(deeper, 400, 'INVALID_JSON', '120,000 levels deep');
});

test('a body with more object keys than any request needs is a quick 400, before it is parsed', async () => {
  const keys = Array.from({ length: 70_000 }, (_, i) => `"k${i}":1`).join(',');
  const res = await t.request('POST', '/v1/customers', { body: `{${keys}}` });
  assertEnvelope(res, 400, 'VALIDATION_ERROR', '70,000 keys');
  assert.deepEqual(res.json.error.details, [{ field: '/body', message: res.json.error.message }]);
  assert.match(res.json.error.message, /more than 1000 object keys/);
});

test('a URL that does not decode is the envelope with both request id headers', async () => {
  for (const url of ['/v1/payments/%ff', '/v1/accounts/%E0%A4%A', '/nope/%ff']) {
    const res = await t.request('GET', url);
    assertEnvelope(res, 400, 'VALIDATION_ERROR', url);
  }
  const overlong = await t.request('GET', `/v1/payments/pay_${'x'.repeat(200)}`);
  assertEnvelope(overlong, 400, 'VALIDATION_ERROR', 'path parameter over the router limit');
});

test('a trailing slash is a clean 404 NOT_FOUND, never a 405 or a match of the path without it', async () => {
  for (const [method, url] of [
    ['GET', '/v1/accounts/'],
    ['POST', '/v1/accounts/'],
    ['GET', `/v1/accounts/${a.accountId}/`],
    ['GET', '/v1/payments/?limit=5'],
    ['DELETE', '/v1/customers/'],
  ] as const) {
    const res = await t.request(method, url, method === 'POST' ? { body: {} } : {});
    assertEnvelope(res, 404, 'NOT_FOUND', `${method} ${url}`);
    assert.equal(res.headers['allow'], undefined, `${method} ${url}: no Allow header`);
  }
  const root = await t.request('GET', '/', { token: null });
  assertEnvelope(root, 404, 'NOT_FOUND', 'GET /');
});

test('405, 413, 414, 415 and a JSON parser error are the envelope with X-Request-Id', async () => {
  const wrongMethod = await t.request('DELETE', '/v1/accounts');
  assertEnvelope(wrongMethod, 405, 'METHOD_NOT_ALLOWED', '405');
  assert.equal(wrongMethod.headers['allow'], 'GET, HEAD, POST');
  const tooLarge = await t.request('POST', '/v1/customers', {
    body: JSON.stringify({ name: 'x'.repeat(1_000_001) }),
  });
  assertEnvelope(tooLarge, 413, 'PAYLOAD_TOO_LARGE', '413');
  const uriTooLong = await t.request('GET', `/v1/accounts?cursor=${'c'.repeat(9000)}`);
  assertEnvelope(uriTooLong, 414, 'URI_TOO_LONG', '414');
  const mediaType = await t.request('POST', '/v1/customers', {
    body: 'name=x',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
  });
  assertEnvelope(mediaType, 415, 'UNSUPPORTED_CONTENT_TYPE', '415');
  const wide = await t.request('POST', '/v1/customers', {
    body: Object.fromEntries(Array.from({ length: 500 }, (_, i) => [`unknown${i}`, i])),
  });
  assertEnvelope(wide, 400, 'VALIDATION_ERROR', '500 unknown fields');
  assert.ok(wide.json.error.details.length <= 20, `details are capped (${wide.json.error.details.length})`);
  const broken = await t.request('POST', '/v1/customers', { body: '{"name": ' });
  assertEnvelope(broken, 400, 'INVALID_JSON', 'JSON parser error');
  const empty = await t.request('POST', '/v1/customers', {
    body: '',
    headers: { 'content-type': 'application/json' },
  });
  assertEnvelope(empty, 400, 'INVALID_JSON', 'empty JSON body');
  const charset = await t.request('POST', '/v1/customers', {
    body: { name: 'Charset Person', country: 'GB', documentReference: 'DOC-CHARSET-1' },
    headers: { 'content-type': 'application/json; charset=utf-8' },
  });
  assert.equal(charset.status, 201, `application/json with a charset still parses: ${charset.body}`);
});

/** A raw response from Node's parser path: the envelope, with the request id headers and a closed socket. */
function assertRawEnvelope(
  exchange: Awaited<ReturnType<typeof rawHttp>>,
  status: number,
  code: string,
  context: string,
): void {
  const res = exchange.response;
  assert.ok(res, `${context}: a response came back (${JSON.stringify(exchange.received.slice(0, 200))})`);
  assert.equal(res.status, status, `${context}: status`);
  assert.match(res.headers['content-type'] ?? '', /^application\/json/, `${context}: JSON`);
  const error = (res.json as { error: Record<string, unknown> }).error;
  assert.equal(error['code'], code, `${context}: code`);
  assert.equal(typeof error['message'], 'string');
  assert.match(String(error['requestId']), SERVER_ID, `${context}: requestId`);
  assert.equal(res.headers['x-request-id'], error['requestId'], `${context}: X-Request-Id`);
  assert.equal(res.headers['x-server-request-id'], error['requestId'], `${context}: X-Server-Request-Id`);
  assert.ok(exchange.closed, `${context}: the connection is closed`);
}

test("431 and Node's HTTP parser errors are the envelope too, on a real socket", async () => {
  const bigHeaders = await rawHttp(
    port,
    `GET /v1/accounts HTTP/1.1\r\nHost: x\r\nX-Filler: ${'f'.repeat(20_000)}\r\n\r\n`,
    5000,
  );
  assertRawEnvelope(bigHeaders, 431, 'HEADERS_TOO_LARGE', '431');
  const notHttp = await rawHttp(port, 'HELLO THERE\r\n\r\n', 5000);
  assertRawEnvelope(notHttp, 400, 'MALFORMED_REQUEST', 'not HTTP');
  const badHeader = await rawHttp(port, 'GET /health HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n', 5000);
  assertRawEnvelope(badHeader, 400, 'MALFORMED_REQUEST', 'malformed header line');
  // Over the socket, the router's errors carry both headers as well.
  const badUrl = await rawHttp(
    port,
    'GET /v1/payments/%ff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    5000,
  );
  assert.equal(badUrl.response?.status, 400);
  assert.match(badUrl.response?.headers['x-server-request-id'] ?? '', SERVER_ID);
});

test("a client's X-Request-Id is echoed (header and envelope); the ledger and audit log carry the server's own id", async () => {
  const clientId = 'client-corr.42:a_b';
  // A fresh source account: its first payment posts (ledger entries) rather than tripping the velocity rule.
  const source = await party(t, { balance: 10_000 });
  const res = await t.request('POST', '/v1/payments', {
    body: { ...valid(), sourceAccountId: source.accountId, amountCents: 321 },
    idempotencyKey: 'request-id-payment',
    headers: { 'x-request-id': clientId },
  });
  assert.equal(res.status, 201, res.body);
  assert.equal(res.headers['x-request-id'], clientId, 'the client id is echoed');
  const serverId = String(res.headers['x-server-request-id']);
  assert.match(serverId, SERVER_ID);
  const paymentId = res.json.payment.id;

  const ledger = await t.request('GET', `/v1/ledger?paymentId=${paymentId}`);
  assert.equal(ledger.status, 200, ledger.body);
  assert.ok(ledger.json.ledgerEntries.length >= 2);
  for (const entry of ledger.json.ledgerEntries) assert.equal(entry.requestId, serverId, 'ledger request id');
  const audit = (await auditLogs(t)).filter((e: { resourceId: string }) => e.resourceId === paymentId);
  assert.ok(audit.length >= 1, 'the payment is audited');
  for (const entry of audit) assert.equal(entry.requestId, serverId, 'audit request id');

  const denied = await t.request('GET', '/v1/accounts', {
    token: null,
    headers: { 'x-request-id': clientId },
  });
  assert.equal(denied.status, 401);
  assert.equal(denied.headers['x-request-id'], clientId);
  // The envelope names the request as X-Request-Id does (the client's id); the server's id is beside it.
  assert.equal(denied.json.error.requestId, clientId, "the envelope's id");
  assert.match(String(denied.headers['x-server-request-id']), SERVER_ID);

  // The access line: the server's id as reqId, the client's beside it.
  const lines = t.logs.lines
    .map((l) => JSON.parse(l))
    .filter((l) => l.msg === 'request' && l.reqId === serverId);
  assert.equal(lines.length, 1, 'one access line');
  assert.equal(lines[0].clientRequestId, clientId);
  assert.ok(!t.logs.text().includes(`"reqId":"${clientId}"`), 'the client id is never the reqId');
});

test('every response carries X-Server-Request-Id; a garbage client id is not echoed', async () => {
  const res = await t.request('GET', '/v1/accounts', { headers: { 'x-request-id': 'no spaces allowed' } });
  assert.equal(res.status, 200);
  assert.match(String(res.headers['x-request-id']), SERVER_ID);
  assert.equal(res.headers['x-request-id'], res.headers['x-server-request-id']);
  const health = await t.request('GET', '/health', { token: null });
  assert.match(String(health.headers['x-server-request-id']), SERVER_ID);
});

test('framework and parser errors each write exactly one access line', async () => {
  const res = await t.request('GET', '/v1/payments/%ff');
  const id = String(res.headers['x-server-request-id']);
  const lines = t.logs.lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'request' && l.reqId === id);
  assert.equal(lines.length, 1, `one access line for ${id}`);
  assert.equal(lines[0].statusCode, 400);
  const raw = await rawHttp(port, 'NOT HTTP\r\n\r\n', 5000);
  assert.ok(raw.response, 'a response to bytes that are not HTTP');
  const rawId = String((raw.response.json as { error: { requestId: string } }).error.requestId);
  const rawLines = t.logs.lines.map((l) => JSON.parse(l)).filter((l) => l.reqId === rawId);
  assert.equal(rawLines.length, 1, 'one line for a parser error');
  assert.equal(rawLines[0].statusCode, 400);
});

test('the demo token still works over a real socket with keep-alive (sanity of the timeouts)', async () => {
  const res = await fetch(`http://127.0.0.1:${port}/v1/accounts?limit=1`, {
    headers: { authorization: `Bearer ${DEMO_TOKEN}` },
  });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('x-server-request-id') ?? '', SERVER_ID);
  await res.arrayBuffer();
});

test('a request that arrives while the server shuts down gets 503 in the envelope, with Retry-After', async () => {
  const closingApp = await startTestApp();
  try {
    const closing = closingApp.app.server.close();
    const res = await closingApp.request('GET', '/v1/accounts');
    assertEnvelope(res, 503, 'SERVICE_UNAVAILABLE', 'during shutdown');
    assert.match(String(res.headers['retry-after']), /^[1-9][0-9]*$/);
    assert.equal(res.headers['connection'], 'close');
    await closing;
  } finally {
    await closingApp.destroy();
  }
});

test('a body that is not valid UTF-8 is 400 INVALID_JSON, never stored with replacement characters', async () => {
  const before = await paymentsState(t, []);
  for (const bytes of [
    Buffer.from([0xff]),
    Buffer.from([0xed, 0xa0, 0x80]), // an encoded surrogate
    Buffer.from([0xc0, 0xaf]), // an overlong '/'
  ]) {
    const body = Buffer.concat([
      Buffer.from('{"name":"A'),
      bytes,
      Buffer.from('","country":"GB","documentReference":"D"}'),
    ]);
    const res = await t.app.server.inject({
      method: 'POST',
      url: '/v1/customers',
      headers: { authorization: `Bearer ${DEMO_TOKEN}`, 'content-type': 'application/json' },
      payload: body,
    });
    assert.equal(res.statusCode, 400, res.body);
    assert.equal(JSON.parse(res.body).error.code, 'INVALID_JSON');
  }
  assert.deepEqual(await paymentsState(t, []), before, 'nothing stored');
});
