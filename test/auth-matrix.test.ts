import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Role } from '../src/domain/types.ts';
import { assertError, createRoleKeys, ROLES } from './support/foundation.ts';
import { DEMO_TOKEN, startTestApp, type TestApp } from './support/harness.ts';

/**
 * The authentication and authorisation matrix, for every /v1 route: missing/malformed/unknown credentials are
 * 401 with the right code, and each role is admitted or refused (403 FORBIDDEN) exactly as the contract's
 * role table says. The expectations are written out here from the contract, not imported from src/http/auth.ts,
 * so a change to the role constants shows up as a failing row.
 *
 * Admitted requests are chosen so they never change state: GETs on the seeded data, POSTs with an empty
 * object, which passes authentication and then fails validation (400). Authentication runs before the body is
 * even parsed, so a refused role gets its 403 whatever the body.
 */
interface RouteRow {
  method: 'GET' | 'POST' | 'DELETE';
  /** The route as registered (fastify pattern); checked against the app's route table. */
  route: string;
  /** Roles besides admin that may call it (admin may call everything). */
  roles: readonly Exclude<Role, 'admin'>[];
  /** The status an admitted role gets for the request below. */
  admittedStatus: number;
  body?: unknown;
  /** The concrete URL, when the route needs more than the seeded ids (see `urlFor`). */
  url?: string;
}

// When a route is added, add its row here: the completeness test below fails until then.
const MATRIX: RouteRow[] = [
  { method: 'GET', route: '/v1/customers', roles: ['compliance', 'auditor'], admittedStatus: 200 },
  { method: 'POST', route: '/v1/customers', roles: [], admittedStatus: 400, body: {} },
  { method: 'GET', route: '/v1/customers/:id', roles: ['compliance', 'auditor'], admittedStatus: 200 },
  // A KYC decision (issue 5) is compliance's call; an empty body reaches validation (400).
  { method: 'POST', route: '/v1/customers/:id/kyc', roles: ['compliance'], admittedStatus: 400, body: {} },
  { method: 'GET', route: '/v1/accounts', roles: ['payments', 'compliance', 'auditor'], admittedStatus: 200 },
  { method: 'POST', route: '/v1/accounts', roles: [], admittedStatus: 400, body: {} },
  {
    method: 'GET',
    route: '/v1/accounts/:id',
    roles: ['payments', 'compliance', 'auditor'],
    admittedStatus: 200,
  },
  {
    method: 'GET',
    route: '/v1/accounts/:id/balance',
    roles: ['payments', 'compliance', 'auditor'],
    admittedStatus: 200,
  },
  {
    method: 'POST',
    route: '/v1/accounts/:id/controls',
    roles: ['compliance'],
    admittedStatus: 400,
    body: {},
  },
  {
    method: 'GET',
    route: '/v1/accounts/:id/statement',
    roles: ['payments', 'compliance', 'auditor'],
    admittedStatus: 200,
  },
  { method: 'GET', route: '/v1/ledger', roles: ['compliance', 'auditor'], admittedStatus: 200 },
  { method: 'GET', route: '/v1/ledger/verify', roles: ['auditor'], admittedStatus: 200 },
  { method: 'POST', route: '/v1/payments', roles: ['payments'], admittedStatus: 400, body: {} },
  { method: 'GET', route: '/v1/payments', roles: ['payments', 'compliance', 'auditor'], admittedStatus: 200 },
  {
    method: 'GET',
    route: '/v1/payments/:id',
    roles: ['payments', 'compliance', 'auditor'],
    admittedStatus: 200,
  },
  {
    method: 'GET',
    route: '/v1/payments/:id/receipt',
    roles: ['compliance', 'auditor'],
    admittedStatus: 200,
  },
  { method: 'GET', route: '/v1/audit-logs', roles: ['auditor'], admittedStatus: 200 },
  { method: 'GET', route: '/v1/audit-logs/verify', roles: ['auditor'], admittedStatus: 200 },
  {
    method: 'GET',
    route: '/v1/audit-logs/verify-jobs/:id',
    roles: ['auditor'],
    admittedStatus: 404,
    url: `/v1/audit-logs/verify-jobs/avj_${'0'.repeat(24)}`,
  },
  // The verifiable audit log (docs/audit-log.md): auditor-only reads like the rest of the audit log.
  { method: 'GET', route: '/v1/audit-logs/checkpoint', roles: ['auditor'], admittedStatus: 200 },
  // The verifier key is public by nature; every role checks receipts with it (issue 16).
  {
    method: 'GET',
    route: '/v1/audit-logs/public-key',
    roles: ['payments', 'compliance', 'auditor'],
    admittedStatus: 200,
  },
  { method: 'GET', route: '/v1/me', roles: ['payments', 'compliance', 'auditor'], admittedStatus: 200 },
  {
    method: 'GET',
    route: '/v1/audit-logs/entries/:index',
    roles: ['auditor'],
    admittedStatus: 200,
    url: '/v1/audit-logs/entries/0',
  },
  {
    method: 'GET',
    route: '/v1/audit-logs/proofs/inclusion',
    roles: ['auditor'],
    admittedStatus: 200,
    url: '/v1/audit-logs/proofs/inclusion?index=0&treeSize=1',
  },
  {
    method: 'GET',
    route: '/v1/audit-logs/proofs/consistency',
    roles: ['auditor'],
    admittedStatus: 200,
    url: '/v1/audit-logs/proofs/consistency?from=1&to=1',
  },
  // Review resolutions (issue 6): compliance's call. The fixture payment is posted, not in review, so an
  // admitted call is a 409 that changes nothing.
  { method: 'POST', route: '/v1/payments/:id/approve', roles: ['compliance'], admittedStatus: 409, body: {} },
  { method: 'POST', route: '/v1/payments/:id/reject', roles: ['compliance'], admittedStatus: 409, body: {} },
  // Refunds: the payments role; an amount of 0 fails validation (400) before anything runs.
  {
    method: 'POST',
    route: '/v1/payments/:id/refunds',
    roles: ['payments'],
    admittedStatus: 400,
    body: { amountCents: 0 },
  },
  // FX quotes (issue 17): asked for by whoever makes payments; a quote of one currency into itself is a 400.
  {
    method: 'POST',
    route: '/v1/fx-quotes',
    roles: ['payments'],
    admittedStatus: 400,
    body: { sourceCurrency: 'USD', destinationCurrency: 'USD', sourceAmountCents: 100 },
  },
  // Payment batches (issue 17): made like payments (an empty body is a 400), read like them (an unknown id 404).
  { method: 'POST', route: '/v1/payment-batches', roles: ['payments'], admittedStatus: 400, body: {} },
  {
    method: 'GET',
    route: '/v1/payment-batches/:id',
    roles: ['payments', 'compliance', 'auditor'],
    admittedStatus: 404,
    url: '/v1/payment-batches/pbt_missing',
  },
  // Regulatory reporting (issue 18): reports and cases are read by compliance and auditor; cases decided by
  // compliance. An unknown type or case is a 404, an empty body a 400.
  {
    method: 'GET',
    route: '/v1/reports/:type',
    roles: ['compliance', 'auditor'],
    admittedStatus: 200,
    url: '/v1/reports/travel_rule?from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z',
  },
  { method: 'GET', route: '/v1/cases', roles: ['compliance', 'auditor'], admittedStatus: 200 },
  {
    method: 'GET',
    route: '/v1/cases/:id',
    roles: ['compliance', 'auditor'],
    admittedStatus: 404,
    url: '/v1/cases/case_missing',
  },
  {
    method: 'POST',
    route: '/v1/cases/:id/decide',
    roles: ['compliance'],
    admittedStatus: 400,
    body: {},
    url: '/v1/cases/case_missing/decide',
  },
  // The event outbox is read like the audit log; webhook endpoints are admin-only.
  { method: 'GET', route: '/v1/events', roles: ['auditor'], admittedStatus: 200 },
  { method: 'GET', route: '/v1/webhook-endpoints', roles: [], admittedStatus: 200 },
  { method: 'POST', route: '/v1/webhook-endpoints', roles: [], admittedStatus: 400, body: {} },
  {
    method: 'GET',
    route: '/v1/webhook-endpoints/:id',
    roles: [],
    admittedStatus: 404,
    url: '/v1/webhook-endpoints/whe_missing',
  },
  {
    method: 'DELETE',
    route: '/v1/webhook-endpoints/:id',
    roles: [],
    admittedStatus: 404,
    url: '/v1/webhook-endpoints/whe_missing',
  },
  {
    method: 'GET',
    route: '/v1/webhook-endpoints/:id/deliveries',
    roles: [],
    admittedStatus: 404,
    url: '/v1/webhook-endpoints/whe_missing/deliveries',
  },
  // Issue 14: secret rotation, a test ping and a delivery's retry are admin-only like the endpoints.
  {
    method: 'POST',
    route: '/v1/webhook-endpoints/:id/rotate-secret',
    roles: [],
    admittedStatus: 404,
    body: {},
    url: '/v1/webhook-endpoints/whe_missing/rotate-secret',
  },
  {
    method: 'POST',
    route: '/v1/webhook-endpoints/:id/test',
    roles: [],
    admittedStatus: 404,
    body: {},
    url: '/v1/webhook-endpoints/whe_missing/test',
  },
  {
    method: 'GET',
    route: '/v1/webhook-deliveries/:id',
    roles: [],
    admittedStatus: 404,
    url: '/v1/webhook-deliveries/whd_missing',
  },
  {
    method: 'POST',
    route: '/v1/webhook-deliveries/:id/retry',
    roles: [],
    admittedStatus: 404,
    body: {},
    url: '/v1/webhook-deliveries/whd_missing/retry',
  },
  // API keys (issue 13): admin only. Unknown ids are 404s that change nothing; an empty create body is a 400.
  { method: 'GET', route: '/v1/api-keys', roles: [], admittedStatus: 200 },
  { method: 'POST', route: '/v1/api-keys', roles: [], admittedStatus: 400, body: {} },
  {
    method: 'GET',
    route: '/v1/api-keys/:id',
    roles: [],
    admittedStatus: 404,
    url: '/v1/api-keys/key_missing',
  },
  {
    method: 'POST',
    route: '/v1/api-keys/:id/revoke',
    roles: [],
    admittedStatus: 404,
    body: {},
    url: '/v1/api-keys/key_missing/revoke',
  },
  {
    method: 'POST',
    route: '/v1/api-keys/:id/rotate',
    roles: [],
    admittedStatus: 404,
    body: {},
    url: '/v1/api-keys/key_missing/rotate',
  },
  // The sandbox's controls (test keys; the demo key is one). `seconds` out of range: admitted, nothing moves.
  {
    method: 'GET',
    route: '/v1/test/clock',
    roles: ['payments', 'compliance', 'auditor'],
    admittedStatus: 200,
  },
  {
    method: 'POST',
    route: '/v1/test/clock/advance',
    roles: [],
    admittedStatus: 400,
    body: { seconds: 0 },
  },
  { method: 'POST', route: '/v1/test/reset', roles: [], admittedStatus: 200 },
];

// Each must be "missing or malformed": 401 AUTH_REQUIRED.
const MALFORMED_AUTHORIZATION = [
  'Basic x',
  'Basic ZGVtbzpkZW1v',
  'Bearer',
  'Bearer ',
  `Bearer  ${DEMO_TOKEN}`,
  `Bearer ${DEMO_TOKEN} extra`,
  `Token ${DEMO_TOKEN}`,
  DEMO_TOKEN,
];
// Well-formed but unknown: 401 AUTH_INVALID.
const UNKNOWN_SECRETS = ['sk_this_key_was_never_issued', `${DEMO_TOKEN}-2`, 'x'.repeat(512)];

let t: TestApp;
let secrets: Record<Role, string>;
let paymentId: string;

before(async () => {
  t = await startTestApp();
  secrets = await createRoleKeys(t);
  // One real payment, so GET /v1/payments/:id has something to find.
  const payment = await t.request('POST', '/v1/payments', {
    idempotencyKey: 'auth-matrix-fixture',
    body: {
      sourceAccountId: 'acc_demo_alice_usd',
      destinationAccountId: 'acc_demo_bob_usd',
      amountCents: 100,
      currency: 'USD',
    },
  });
  assert.equal(payment.status, 201, payment.body);
  paymentId = payment.json.payment.id;
});

after(async () => {
  await t.destroy();
});

/** The concrete URL for a route pattern: the seeded customer and account, the fixture payment. */
function urlFor(row: RouteRow): string {
  if (row.url !== undefined) return row.url;
  const id = row.route.startsWith('/v1/customers')
    ? 'cus_demo_alice'
    : row.route.startsWith('/v1/accounts')
      ? 'acc_demo_alice_usd'
      : paymentId;
  return row.route.replace(':id', id);
}

function send(row: RouteRow, headers: Record<string, string>) {
  return t.request(row.method, urlFor(row), {
    token: null,
    headers,
    ...(row.body === undefined ? {} : { body: row.body }),
  });
}

/** Every /v1 route the app registered, as "METHOD /path", from fastify's route tree. */
function registeredRoutes(): string[] {
  const tree = t.app.server.printRoutes({ commonPrefix: false });
  const parents: string[] = [];
  const routes: string[] = [];
  for (const line of tree.split('\n')) {
    // A route of both modes prints as two lines, the second without a branch: the first is enough.
    const match = /^([│ ]*)[├└]── (\S+)(?: \(([^)]*)\))?(?: \{"mode":"\w+"\})?$/.exec(
      line.replace(/\u00a0/g, ' '),
    );
    if (!match) continue;
    const depth = match[1]!.length / 4;
    const path = (parents[depth - 1] ?? '') + match[2]!;
    parents[depth] = path;
    parents.length = depth + 1;
    for (const method of (match[3] ?? '').split(',').map((m) => m.trim())) {
      if (method !== '' && method !== 'HEAD' && path.startsWith('/v1')) routes.push(`${method} ${path}`);
    }
  }
  return [...new Set(routes)].sort();
}

test('the matrix covers every registered /v1 route, and nothing else', () => {
  const registered = registeredRoutes();
  // Guard against a silent parse failure of the route tree: these exist since the first commit.
  assert.ok(registered.includes('GET /v1/accounts/:id/balance'), `parsed routes: ${registered.join(', ')}`);
  const inMatrix = MATRIX.map((r) => `${r.method} ${r.route}`).sort();
  assert.deepEqual(
    registered.filter((r) => !inMatrix.includes(r)),
    [],
    'registered routes without an auth-matrix row (add them to MATRIX)',
  );
  assert.deepEqual(
    inMatrix.filter((r) => !registered.includes(r)),
    [],
    'auth-matrix rows for routes that are not registered',
  );
});

for (const row of MATRIX) {
  test(`${row.method} ${row.route}: credentials and roles`, async () => {
    const name = `${row.method} ${row.route}`;

    assertError(await send(row, {}), 401, 'AUTH_REQUIRED', `${name} without Authorization`);
    for (const header of MALFORMED_AUTHORIZATION) {
      const res = await send(row, { authorization: header });
      assertError(res, 401, 'AUTH_REQUIRED', `${name} with Authorization "${header.slice(0, 40)}"`);
    }
    for (const secret of UNKNOWN_SECRETS) {
      const res = await send(row, { authorization: `Bearer ${secret}` });
      assertError(res, 401, 'AUTH_INVALID', `${name} with an unknown secret`);
    }

    for (const role of ROLES) {
      const res = await send(row, { authorization: `Bearer ${secrets[role]}` });
      const admitted = role === 'admin' || (row.roles as readonly string[]).includes(role);
      if (admitted) {
        assert.equal(res.status, row.admittedStatus, `${name} as ${role}: ${res.body.slice(0, 300)}`);
        if (row.admittedStatus === 400) assertError(res, 400, 'VALIDATION_ERROR', `${name} as ${role}`);
      } else {
        assertError(res, 403, 'FORBIDDEN', `${name} as ${role}`);
      }
    }
    // The demo token is an admin key too.
    const demo = await send(row, { authorization: `Bearer ${DEMO_TOKEN}` });
    assert.equal(demo.status, row.admittedStatus, `${name} with the demo token: ${demo.body.slice(0, 300)}`);
  });
}

test('/health and /ready need no credentials', async () => {
  for (const path of ['/health', '/ready']) {
    const res = await t.request('GET', path, { token: null });
    assert.equal(res.status, 200, `${path}: ${res.body}`);
  }
});

test('X-Request-Id: a sane client id is echoed (header and error body)', async () => {
  for (const id of ['abc-123', 'req.2024:01_A', 'x'.repeat(128)]) {
    const ok = await t.request('GET', '/v1/accounts', { headers: { 'x-request-id': id } });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['x-request-id'], id);
    const denied = await t.request('GET', '/v1/accounts', { token: null, headers: { 'x-request-id': id } });
    assertError(denied, 401, 'AUTH_REQUIRED');
    assert.equal(denied.json.error.requestId, id);
  }
});

test('X-Request-Id: garbage from the client is replaced by a generated id', async () => {
  const garbage = ['abc 123', '<script>alert(1)</script>', 'x'.repeat(129), 'ünïcode', 'a/b', ''];
  const seen = new Set<string>();
  for (const id of garbage) {
    const res = await t.request('GET', '/v1/accounts', { headers: { 'x-request-id': id } });
    assert.equal(res.status, 200);
    const sent = res.headers['x-request-id'];
    assert.equal(typeof sent, 'string');
    assert.notEqual(sent, id);
    assert.match(sent as string, /^[A-Za-z0-9._:-]{8,128}$/);
    seen.add(sent as string);
  }
  assert.equal(seen.size, garbage.length, 'every generated id is fresh');
});

test('X-Request-Id is on every kind of response, success and error alike', async () => {
  const responses = [
    await t.request('GET', '/health', { token: null }),
    await t.request('GET', '/v1/accounts'),
    await t.request('GET', '/v1/accounts', { token: null }),
    await t.request('GET', '/v1/accounts', { token: 'sk_unknown_secret' }),
    await t.request('GET', '/v1/audit-logs', { token: secrets.payments }),
    await t.request('GET', '/v1/no-such-route'),
    await t.request('DELETE', '/v1/accounts'),
    await t.request('POST', '/v1/customers', { body: '{bad json' }),
    await t.request('POST', '/v1/customers', { body: 'text', headers: { 'content-type': 'text/plain' } }),
    await t.request('POST', '/v1/customers', { body: JSON.stringify({ name: 'x'.repeat(1_000_001) }) }),
    await t.request('GET', '/v1/accounts/acc_does_not_exist'),
  ];
  const ids = responses.map((r) => r.headers['x-request-id']);
  for (const [i, id] of ids.entries()) {
    assert.equal(typeof id, 'string', `response ${i} (${responses[i]!.status}) has X-Request-Id`);
    if (responses[i]!.status >= 400) assert.equal(responses[i]!.json.error.requestId, id);
  }
  assert.equal(new Set(ids).size, ids.length, 'request ids are unique');
});
