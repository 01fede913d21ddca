import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { DEMO_API_KEY_ID } from '../src/app/api-keys.ts';
import { authHook } from '../src/http/auth.ts';
import { hashSecret } from '../src/security/api-keys.ts';
import { auditLogs, createCustomer, type Json, rawRows } from './support/fixtures.ts';
import { assertError, type ProcessResult, runKeysCli } from './support/foundation.ts';
import {
  createTestDatabase,
  DEMO_TOKEN,
  manualClock,
  startTestApp,
  type TestApp,
  type TestDatabase,
  testEnv,
} from './support/harness.ts';

/**
 * The API key lifecycle (issue 13) through HTTP on the real app: create (secret once), list and read (never a
 * secret or hash), revoke (401 at once), rotate (with and without a grace period, on a hand-driven clock),
 * expiry, admin-only access, the audit trail, the demo key that exists exactly while DEMO_API_TOKEN is set,
 * and the keys CLI against the same database.
 */
const HOUR_MS = 3_600_000;
const clock = manualClock();
let t: TestApp;

before(async () => {
  t = await startTestApp({ clock: clock.now });
});

after(async () => {
  await t.destroy();
});

async function createKey(body: Json, token: string = DEMO_TOKEN): Promise<{ apiKey: Json; secret: string }> {
  const res = await t.request('POST', '/v1/api-keys', { body, token });
  assert.equal(res.status, 201, res.body);
  return res.json;
}

/** A request only a payments key (or admin) may make, and one only compliance (or admin) may make. */
const asPayments = (token: string) => t.request('GET', '/v1/payments', { token });
const asCompliance = (token: string) => t.request('GET', '/v1/customers', { token });

async function keyAuditEntries(c: { request: TestApp['request'] }, keyId: string): Promise<Json[]> {
  return (await auditLogs(c)).filter((e: Json) => e.resourceType === 'api_key' && e.resourceId === keyId);
}

describe('create, read, list', () => {
  test('a created key works with its role at once; the secret is in the 201 only', async () => {
    const { apiKey, secret } = await createKey({ role: 'payments', name: 'checkout service' });
    assert.match(secret, /^sk_test_[A-Za-z0-9_-]{43}$/);
    assert.match(apiKey.id, /^key_/);
    assert.deepEqual(
      { ...apiKey, id: 'x', createdAt: 'x' },
      {
        id: 'x',
        name: 'checkout service',
        role: 'payments',
        customerIds: null,
        status: 'active',
        createdAt: 'x',
        expiresAt: null,
        revokedAt: null,
        lastRotatedAt: null,
        mode: 'test',
        previousSecretExpiresAt: null,
      },
    );
    assert.equal(apiKey.createdAt, new Date(clock.now()).toISOString());
    assert.equal((await asPayments(secret)).status, 200);
    assertError(await asCompliance(secret), 403, 'FORBIDDEN', 'a payments key on /v1/customers');

    const read = await t.request('GET', `/v1/api-keys/${apiKey.id}`);
    assert.equal(read.status, 200, read.body);
    assert.deepEqual(read.json.apiKey, apiKey);
    assert.ok(!read.body.includes(secret) && !read.body.includes(hashSecret(secret)));
  });

  test('the list pages through every key and never shows a secret or a hash', async () => {
    const secrets: string[] = [];
    for (let i = 0; i < 5; i++)
      secrets.push((await createKey({ role: 'auditor', name: `auditor ${i}` })).secret);
    const seen: Json[] = [];
    let cursor: string | null = null;
    for (let pages = 0; ; pages++) {
      assert.ok(pages < 50, 'paging ends');
      const url: string = `/v1/api-keys?limit=2${cursor === null ? '' : `&cursor=${cursor}`}`;
      const res = await t.request('GET', url);
      assert.equal(res.status, 200, res.body);
      assert.ok(res.json.apiKeys.length <= 2);
      for (const secret of [...secrets, DEMO_TOKEN]) {
        assert.ok(!res.body.includes(secret), 'no secret in the list');
        assert.ok(!res.body.includes(hashSecret(secret)), 'no hash in the list');
      }
      seen.push(...res.json.apiKeys);
      if (!res.json.hasMore) {
        assert.equal(res.json.nextCursor, null);
        break;
      }
      cursor = res.json.nextCursor;
    }
    const ids = seen.map((k) => k.id);
    assert.equal(new Set(ids).size, ids.length, 'no key twice');
    assert.ok(ids.includes(DEMO_API_KEY_ID), 'the demo key is listed');
    assert.ok(seen.filter((k) => k.name.startsWith('auditor ')).length >= 5);
    for (const k of seen) assert.deepEqual(Object.keys(k).sort(), Object.keys(seen[0]).sort());
  });

  test('unknown keys, bad cursors and bad bodies are 4xx and change nothing', async () => {
    assertError(await t.request('GET', '/v1/api-keys/key_nope'), 404, 'API_KEY_NOT_FOUND');
    assertError(await t.request('POST', '/v1/api-keys/key_nope/revoke'), 404, 'API_KEY_NOT_FOUND');
    assertError(
      await t.request('POST', '/v1/api-keys/key_nope/rotate', { body: {} }),
      404,
      'API_KEY_NOT_FOUND',
    );
    assertError(await t.request('GET', '/v1/api-keys?cursor=bm9wZQ'), 400, 'VALIDATION_ERROR');
    const before = (await t.request('GET', '/v1/api-keys?limit=500')).json.apiKeys.length;
    const future = new Date(clock.now() + HOUR_MS).toISOString();
    const bad: [Json, string][] = [
      [{ role: 'payments' }, 'no name'],
      [{ role: 'owner', name: 'x' }, 'unknown role'],
      [{ role: 'payments', name: '' }, 'empty name'],
      [{ role: 'payments', name: ' padded' }, 'edge space'],
      [{ role: 'payments', name: 'tab\there' }, 'control character'],
      [{ role: 'payments', name: 'bidi \u202e trick' }, 'format character'],
      [{ role: 'payments', name: 'x'.repeat(101) }, 'name too long'],
      [{ role: 'payments', name: 'x', extra: 1 }, 'unknown field'],
      [{ role: 'payments', name: 'x', customerIds: [] }, 'empty scope'],
      [{ role: 'payments', name: 'x', customerIds: ['cus_a', 'cus_a'] }, 'repeated customer'],
      [{ role: 'payments', name: 'x', customerIds: ['acc_a'] }, 'not a customer id'],
      [{ role: 'admin', name: 'x', customerIds: ['cus_demo_alice'] }, 'scoped admin'],
      [{ role: 'payments', name: 'x', expiresAt: new Date(clock.now() - 1).toISOString() }, 'past expiry'],
      [{ role: 'payments', name: 'x', expiresAt: new Date(clock.now()).toISOString() }, 'expiry now'],
      [
        { role: 'payments', name: 'x', expiresAt: new Date(clock.now() + 731 * 24 * HOUR_MS).toISOString() },
        'too far',
      ],
      [{ role: 'payments', name: 'x', expiresAt: '2026-02-30T00:00:00Z' }, 'no such day'],
      [{ role: 'payments', name: 'x', expiresAt: future.slice(0, -1) }, 'no offset'],
      [{ role: 'payments', name: 'x', expiresAt: 1767225600000 }, 'a number'],
    ];
    for (const [body, why] of bad) {
      assertError(await t.request('POST', '/v1/api-keys', { body }), 400, 'VALIDATION_ERROR', why);
    }
    const unknown = await t.request('POST', '/v1/api-keys', {
      body: { role: 'payments', name: 'x', customerIds: ['cus_demo_alice', 'cus_does_not_exist'] },
    });
    assertError(unknown, 404, 'CUSTOMER_NOT_FOUND', 'unknown customer');
    assert.deepEqual(unknown.json.error.details, [{ field: '/customerIds/1', message: 'no such customer' }]);
    assertError(
      await t.request('POST', '/v1/api-keys/key_demo_admin/rotate', {
        body: { gracePeriodSeconds: 604_801 },
      }),
      400,
      'VALIDATION_ERROR',
      'grace over 7 days',
    );
    const after = (await t.request('GET', '/v1/api-keys?limit=500')).json.apiKeys.length;
    assert.equal(after, before, 'no key was created by a refused request');
  });

  test('only admin keys manage keys: every other role gets 403', async () => {
    for (const role of ['payments', 'compliance', 'auditor']) {
      const { secret } = await createKey({ role, name: `${role} (not admin)` });
      const calls: [string, string, Json?][] = [
        ['GET', '/v1/api-keys'],
        ['GET', `/v1/api-keys/${DEMO_API_KEY_ID}`],
        ['POST', '/v1/api-keys', { role: 'admin', name: 'escalation' }],
        ['POST', `/v1/api-keys/${DEMO_API_KEY_ID}/revoke`, {}],
        ['POST', `/v1/api-keys/${DEMO_API_KEY_ID}/rotate`, {}],
      ];
      for (const [method, url, body] of calls) {
        const res = await t.request(method, url, { token: secret, ...(body ? { body } : {}) });
        assertError(res, 403, 'FORBIDDEN', `${role}: ${method} ${url}`);
      }
    }
    assert.equal((await t.request('GET', '/v1/payments')).status, 200, 'the demo key is untouched');
  });

  test('a scoped key stores its customers and puts them on the request actor', async () => {
    const alice = await createCustomer(t);
    const bob = await createCustomer(t);
    const { apiKey, secret } = await createKey({
      role: 'payments',
      name: 'partner A',
      customerIds: [alice.id, bob.id],
    });
    assert.deepEqual(apiKey.customerIds, [alice.id, bob.id]);
    const hook = authHook(t.app.services.store.reads, clock.now);
    const actorFor = async (token: string) => {
      const request = {
        id: 'req_scope_check',
        headers: { authorization: `Bearer ${token}` },
        routeOptions: { config: { roles: ['payments'] } },
      } as Json;
      await hook(request, {} as Json);
      return request.actor;
    };
    assert.deepEqual((await actorFor(secret)).customerIds, [alice.id, bob.id]);
    assert.equal((await actorFor(DEMO_TOKEN)).customerIds, null, 'an unscoped key: null');
    const entry = (await keyAuditEntries(t, apiKey.id))[0];
    assert.equal(entry.metadata.customerCount, 2);
    assert.deepEqual(entry.metadata.customerIds, [alice.id, bob.id]);
  });
});

describe('revoke, rotate, expire', () => {
  test('a revoked key gets 401 at once; revoking again is idempotent', async () => {
    const { apiKey, secret } = await createKey({ role: 'compliance', name: 'to revoke' });
    assert.equal((await asCompliance(secret)).status, 200);
    clock.advance(1000);
    const res = await t.request('POST', `/v1/api-keys/${apiKey.id}/revoke`);
    assert.equal(res.status, 200, res.body);
    assert.equal(res.json.apiKey.status, 'revoked');
    assert.equal(res.json.apiKey.revokedAt, new Date(clock.now()).toISOString());
    assertError(await asCompliance(secret), 401, 'AUTH_INVALID', 'revoked key');
    const unknown = await t.request('GET', '/v1/customers', { token: 'sk_never_issued_at_all' });
    assert.equal((await asCompliance(secret)).json.error.message, unknown.json.error.message, 'no oracle');

    clock.advance(1000);
    const again = await t.request('POST', `/v1/api-keys/${apiKey.id}/revoke`, { body: {} });
    assert.equal(again.status, 200, again.body);
    assert.deepEqual(again.json.apiKey, res.json.apiKey, 'same state: revokedAt unchanged');
    assertError(
      await t.request('POST', `/v1/api-keys/${apiKey.id}/rotate`),
      409,
      'API_KEY_NOT_ACTIVE',
      'rotating a revoked key',
    );
    const events = (await keyAuditEntries(t, apiKey.id)).map((e) => e.eventType);
    assert.deepEqual(events, ['api_key.created', 'api_key.revoked'], 'one revocation entry');
  });

  test('rotation without grace: the old secret is 401 at once, the new one works', async () => {
    const { apiKey, secret: oldSecret } = await createKey({ role: 'payments', name: 'rotate now' });
    const res = await t.request('POST', `/v1/api-keys/${apiKey.id}/rotate`);
    assert.equal(res.status, 200, res.body);
    assert.notEqual(res.json.secret, oldSecret);
    assert.equal(res.json.apiKey.id, apiKey.id, 'the key keeps its id');
    assert.equal(res.json.apiKey.lastRotatedAt, new Date(clock.now()).toISOString());
    assert.equal(res.json.apiKey.previousSecretExpiresAt, null);
    assertError(await asPayments(oldSecret), 401, 'AUTH_INVALID', 'the rotated-out secret');
    assert.equal((await asPayments(res.json.secret)).status, 200);
  });

  test('rotation with grace: both secrets work until the grace period ends', async () => {
    const { apiKey, secret: oldSecret } = await createKey({ role: 'payments', name: 'rotate gently' });
    const res = await t.request('POST', `/v1/api-keys/${apiKey.id}/rotate`, {
      body: { gracePeriodSeconds: 60 },
    });
    assert.equal(res.status, 200, res.body);
    const newSecret = res.json.secret;
    assert.equal(res.json.apiKey.previousSecretExpiresAt, new Date(clock.now() + 60_000).toISOString());
    assert.equal((await asPayments(oldSecret)).status, 200, 'old secret within grace');
    assert.equal((await asPayments(newSecret)).status, 200, 'new secret');
    clock.advance(59_999);
    assert.equal((await asPayments(oldSecret)).status, 200, 'old secret at the last millisecond of grace');
    clock.advance(1);
    assertError(await asPayments(oldSecret), 401, 'AUTH_INVALID', 'old secret after grace');
    assert.equal((await asPayments(newSecret)).status, 200, 'new secret after grace');

    // A second rotation during a grace period keeps only the newest previous secret.
    const second = await t.request('POST', `/v1/api-keys/${apiKey.id}/rotate`, {
      body: { gracePeriodSeconds: 600 },
    });
    const third = await t.request('POST', `/v1/api-keys/${apiKey.id}/rotate`, {
      body: { gracePeriodSeconds: 600 },
    });
    assert.equal(third.status, 200, third.body);
    assertError(await asPayments(newSecret), 401, 'AUTH_INVALID', 'two rotations back');
    assert.equal((await asPayments(second.json.secret)).status, 200, 'one rotation back, within grace');
    assert.equal((await asPayments(third.json.secret)).status, 200, 'current');

    const rotated = (await keyAuditEntries(t, apiKey.id)).filter((e) => e.eventType === 'api_key.rotated');
    assert.deepEqual(
      rotated.map((e) => e.metadata.gracePeriodSeconds),
      [60, 600, 600],
    );
    const text = JSON.stringify(await keyAuditEntries(t, apiKey.id));
    for (const s of [oldSecret, newSecret, second.json.secret, third.json.secret]) {
      assert.ok(!text.includes(s) && !text.includes(hashSecret(s)), 'no secret or hash in the audit log');
    }
  });

  test('a key stops working when its expiresAt passes', async () => {
    const expiresAt = new Date(clock.now() + HOUR_MS).toISOString();
    const { apiKey, secret } = await createKey({ role: 'payments', name: 'temporary', expiresAt });
    assert.equal(apiKey.expiresAt, expiresAt);
    // Offsets are accepted and normalised to UTC.
    const offset = await createKey({
      role: 'payments',
      name: 'offset',
      expiresAt: '2026-01-01T02:00:00+01:00',
    });
    assert.equal(offset.apiKey.expiresAt, '2026-01-01T01:00:00.000Z');
    assert.equal((await asPayments(secret)).status, 200);
    clock.advance(HOUR_MS - 1);
    assert.equal((await asPayments(secret)).status, 200, 'a millisecond before expiry');
    clock.advance(1);
    assertError(await asPayments(secret), 401, 'AUTH_INVALID', 'expired key');
    const read = await t.request('GET', `/v1/api-keys/${apiKey.id}`);
    assert.equal(read.json.apiKey.status, 'expired');
    assertError(
      await t.request('POST', `/v1/api-keys/${apiKey.id}/rotate`),
      409,
      'API_KEY_NOT_ACTIVE',
      'rotating an expired key',
    );
  });

  test('the demo key cannot be rotated (its secret is DEMO_API_TOKEN)', async () => {
    assertError(
      await t.request('POST', `/v1/api-keys/${DEMO_API_KEY_ID}/rotate`),
      409,
      'API_KEY_NOT_ROTATABLE',
    );
    assert.equal((await t.request('GET', '/v1/api-keys')).status, 200);
  });

  test('every change is audited with the calling key as the actor, never a secret', async () => {
    const { apiKey: admin, secret: adminSecret } = await createKey({ role: 'admin', name: 'second admin' });
    const { apiKey, secret } = await createKey({ role: 'auditor', name: 'audited' }, adminSecret);
    const rotated = await t.request('POST', `/v1/api-keys/${apiKey.id}/rotate`, {
      token: adminSecret,
      body: { gracePeriodSeconds: 5 },
    });
    assert.equal(rotated.status, 200, rotated.body);
    assert.equal(
      (await t.request('POST', `/v1/api-keys/${apiKey.id}/revoke`, { token: adminSecret })).status,
      200,
    );
    const entries = await keyAuditEntries(t, apiKey.id);
    assert.deepEqual(
      entries.map((e) => [e.eventType, e.actorId, e.metadata.apiKeyId, e.metadata.role]),
      [
        ['api_key.created', admin.id, apiKey.id, 'auditor'],
        ['api_key.rotated', admin.id, apiKey.id, 'auditor'],
        ['api_key.revoked', admin.id, apiKey.id, 'auditor'],
      ],
    );
    for (const e of entries) assert.match(e.requestId, /^req_/);
    const text = JSON.stringify(entries);
    for (const s of [secret, rotated.json.secret]) {
      assert.ok(!text.includes(s) && !text.includes(hashSecret(s)));
    }
    assert.ok(!text.includes('audited'), 'the key name (free text) is not in the audit log');
  });
});

describe('the last admin key and the demo key', () => {
  let db: TestDatabase;
  after(async () => {
    await db?.drop();
  });

  test('the last active admin key cannot be revoked; a key may revoke itself while another admin remains', async () => {
    db = await createTestDatabase();
    const app = await startTestApp({ db });
    try {
      const refused = await app.request('POST', `/v1/api-keys/${DEMO_API_KEY_ID}/revoke`);
      assertError(refused, 409, 'API_KEY_LAST_ADMIN', 'revoking the only admin key');
      assert.equal((await app.request('GET', '/v1/api-keys')).status, 200, 'the demo key still works');

      const created = await app.request('POST', '/v1/api-keys', {
        body: { role: 'admin', name: 'ops admin' },
      });
      assert.equal(created.status, 201, created.body);
      const self = await app.request('POST', `/v1/api-keys/${DEMO_API_KEY_ID}/revoke`);
      assert.equal(self.status, 200, self.body);
      assertError(await app.request('GET', '/v1/api-keys'), 401, 'AUTH_INVALID', 'the self-revoked demo key');
      const ops = created.json.secret;
      assertError(
        await app.request('POST', `/v1/api-keys/${created.json.apiKey.id}/revoke`, { token: ops }),
        409,
        'API_KEY_LAST_ADMIN',
        'the new last admin',
      );
    } finally {
      await app.close();
    }
  });

  test('the demo key is revoked on a start without DEMO_API_TOKEN and re-activated on a start with it', async () => {
    // Continues on the previous test's database: the demo key was revoked by API there. A start with the
    // token brings it back (audited), a start without revokes it (audited), and a start with it again restores.
    const first = await startTestApp({ db });
    let opsToken: string;
    try {
      assert.equal((await first.request('GET', '/v1/api-keys')).status, 200, 'the token works again');
      const ops = await first.request('POST', '/v1/api-keys', { body: { role: 'admin', name: 'ops 2' } });
      opsToken = ops.json.secret;
    } finally {
      await first.close();
    }

    const without = await startTestApp({ db, env: { DEMO_API_TOKEN: '' } });
    try {
      assertError(
        await without.request('GET', '/v1/api-keys'),
        401,
        'AUTH_INVALID',
        'demo token without the variable',
      );
      const demo = await without.request('GET', `/v1/api-keys/${DEMO_API_KEY_ID}`, { token: opsToken });
      assert.equal(demo.json.apiKey.status, 'revoked', demo.body);
      assert.match(without.logs.text(), /revoked the demo API key/);
    } finally {
      await without.close();
    }
    // A second start without the token changes nothing more.
    const again = await startTestApp({ db, env: { DEMO_API_TOKEN: '' } });
    await again.close();

    const back = await startTestApp({ db });
    try {
      assert.equal((await back.request('GET', '/v1/api-keys')).status, 200, 'the token works again');
      const entries = await keyAuditEntries(
        { request: (m, u, o = {}) => back.request(m, u, { token: opsToken, ...o }) },
        DEMO_API_KEY_ID,
      );
      assert.deepEqual(
        entries.map((e) => [e.eventType, e.actorId, e.metadata.reason ?? null]),
        [
          ['api_key.created', 'system', 'DEMO_API_TOKEN is set'],
          ['api_key.revoked', DEMO_API_KEY_ID, null],
          ['api_key.reactivated', 'system', 'DEMO_API_TOKEN is set'],
          ['api_key.revoked', 'system', 'DEMO_API_TOKEN is not set'],
          ['api_key.reactivated', 'system', 'DEMO_API_TOKEN is set'],
        ],
      );
    } finally {
      await back.close();
    }
  });

  test('a start without DEMO_API_TOKEN and no admin key left warns how to create one', async () => {
    const fresh = await startTestApp({ env: { DEMO_API_TOKEN: '' } });
    try {
      assert.match(fresh.logs.text(), /no active admin API key/);
    } finally {
      await fresh.destroy();
    }
  });
});

describe('the keys CLI', () => {
  let app: TestApp;
  before(async () => {
    app = await startTestApp();
  });
  after(async () => {
    await app.destroy();
  });

  /** The keys CLI on test mode's keys (where the demo key and these tests' data are) unless told otherwise. */
  function cli(...args: string[]): Promise<ProcessResult> {
    const { DEMO_API_TOKEN: _unused, ...env } = testEnv(app.db.url);
    const keyCommand = ['create', 'list', 'rotate', 'revoke'].includes(args[0]!) && !args.includes('--mode');
    return runKeysCli(env, keyCommand ? [...args, '--mode', 'test'] : args);
  }

  test('keys are live keys unless --mode test: each opens its own mode only', async () => {
    const live = await cli('create', '--role', 'auditor', '--name', 'live auditor', '--mode', 'live');
    assert.equal(live.status, 0, live.stderr);
    assert.match(live.stdout, /live mode/);
    const liveSecret = /secret \(shown once, store it now\): (sk_live_\S+)/.exec(live.stdout)?.[1];
    assert.ok(liveSecret, live.stdout);
    const liveLogs = await app.request('GET', '/v1/audit-logs', { token: liveSecret });
    assert.equal(liveLogs.status, 200);
    assert.ok(!liveLogs.json.logs.some((e: { resourceId: string }) => e.resourceId === 'cus_demo_alice'));
    const test = await cli('create', '--role', 'auditor', '--name', 'test auditor');
    assert.match(test.stdout, /secret \(shown once, store it now\): sk_test_/);
    assert.match((await cli('list', '--mode', 'live')).stdout, /live auditor/);
    assert.doesNotMatch((await cli('list')).stdout, /live auditor/);
    assert.equal((await cli('list', '--mode', 'neither')).status, 2);
  });

  test('create, list, rotate and revoke, each audited as the cli', async () => {
    const created = await cli('create', '--role', 'auditor', '--name', 'cli auditor');
    assert.equal(created.status, 0, created.stderr);
    const id = /created API key (key_\S+)/.exec(created.stdout)?.[1];
    const secret = /secret \(shown once, store it now\): (sk_\S+)/.exec(created.stdout)?.[1];
    assert.ok(id && secret, created.stdout);
    assert.equal(
      (await app.request('GET', '/v1/audit-logs', { token: secret })).status,
      200,
      'the key works',
    );

    const listed = await cli('list');
    assert.equal(listed.status, 0, listed.stderr);
    assert.match(listed.stdout, new RegExp(`${id}\\s+auditor\\s+active`));
    assert.match(listed.stdout, /key_demo_admin\s+admin\s+active/);
    assert.ok(
      !listed.stdout.includes(secret) && !listed.stdout.includes(hashSecret(secret)),
      'no secret listed',
    );

    const rotated = await cli('rotate', id, '--grace-seconds', '0');
    assert.equal(rotated.status, 0, rotated.stderr);
    const newSecret = /new secret \(shown once, store it now\): (sk_\S+)/.exec(rotated.stdout)?.[1];
    assert.ok(newSecret, rotated.stdout);
    assertError(
      await app.request('GET', '/v1/audit-logs', { token: secret }),
      401,
      'AUTH_INVALID',
      'rotated out',
    );
    assert.equal((await app.request('GET', '/v1/audit-logs', { token: newSecret })).status, 200);

    const revoked = await cli('revoke', id);
    assert.equal(revoked.status, 0, revoked.stderr);
    assert.match(revoked.stdout, new RegExp(`revoked API key ${id}`));
    assertError(
      await app.request('GET', '/v1/audit-logs', { token: newSecret }),
      401,
      'AUTH_INVALID',
      'revoked',
    );
    const again = await cli('revoke', id);
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stdout, /already revoked/);

    const entries = await keyAuditEntries(app, id);
    assert.deepEqual(
      entries.map((e) => [e.eventType, e.actorId]),
      [
        ['api_key.created', 'cli'],
        ['api_key.rotated', 'cli'],
        ['api_key.revoked', 'cli'],
      ],
    );
    const listedAfter = await cli('list');
    assert.match(listedAfter.stdout, new RegExp(`${id}\\s+auditor\\s+revoked`));
  });

  test('a scoped, expiring key; usage and refusals are non-zero exits that change nothing', async () => {
    const customer = await createCustomer(app);
    const expiresAt = new Date(Date.now() + 24 * HOUR_MS).toISOString();
    const scoped = await cli(
      'create',
      '--role',
      'payments',
      '--name',
      'partner',
      '--customer',
      customer.id,
      '--expires-at',
      expiresAt,
    );
    assert.equal(scoped.status, 0, scoped.stderr);
    const id = /created API key (key_\S+)/.exec(scoped.stdout)?.[1];
    const read = await app.request('GET', `/v1/api-keys/${id}`);
    assert.deepEqual(read.json.apiKey.customerIds, [customer.id]);
    assert.equal(read.json.apiKey.expiresAt, expiresAt);

    const keysBefore = (await app.request('GET', '/v1/api-keys?limit=500')).json.apiKeys.length;
    for (const args of [['nope'], ['create', '--role', 'owner'], ['rotate', id!, '--grace-seconds', '-1']]) {
      const res = await cli(...(args as string[]));
      assert.equal(res.status, 2, `${args.join(' ')}: ${res.stdout}${res.stderr}`);
      assert.match(res.stderr, /usage/);
    }
    const unknown = await cli('create', '--role', 'payments', '--customer', 'cus_nobody');
    assert.equal(unknown.status, 1);
    assert.match(unknown.stderr, /CUSTOMER_NOT_FOUND/);
    const missing = await cli('revoke', 'key_nope');
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /API_KEY_NOT_FOUND/);
    const past = await cli('create', '--role', 'payments', '--expires-at', '2000-01-01T00:00:00Z');
    assert.equal(past.status, 1);
    assert.match(past.stderr, /VALIDATION_ERROR/);
    assert.equal((await app.request('GET', '/v1/api-keys?limit=500')).json.apiKeys.length, keysBefore);
  });
});

describe('Idempotency-Key on the key changes', () => {
  test('a retried create or rotate replays the first answer (the same secret); one key, one rotation', async () => {
    const body = { role: 'auditor', name: 'retried create' };
    const idem = `create-${Date.now()}`;
    const first = await t.request('POST', '/v1/api-keys', { body, idempotencyKey: idem });
    assert.equal(first.status, 201, first.body);
    assert.equal(first.headers['idempotency-replayed'], 'false');
    const again = await t.request('POST', '/v1/api-keys', { body, idempotencyKey: idem });
    assert.equal(again.status, 201);
    assert.equal(again.headers['idempotency-replayed'], 'true');
    assert.equal(again.body, first.body, 'byte for byte, the secret included');
    const other = await t.request('POST', '/v1/api-keys', {
      body: { ...body, name: 'another' },
      idempotencyKey: idem,
    });
    assertError(other, 409, 'IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD', 'reused key');
    const id = first.json.apiKey.id;
    assert.equal((await keyAuditEntries(t, id)).filter((e) => e.eventType === 'api_key.created').length, 1);

    const rotateKey = `rotate-${Date.now()}`;
    const rotated = await t.request('POST', `/v1/api-keys/${id}/rotate`, {
      body: {},
      idempotencyKey: rotateKey,
    });
    assert.equal(rotated.status, 200, rotated.body);
    const rotatedAgain = await t.request('POST', `/v1/api-keys/${id}/rotate`, {
      body: {},
      idempotencyKey: rotateKey,
    });
    assert.equal(rotatedAgain.body, rotated.body);
    assert.equal(rotatedAgain.headers['idempotency-replayed'], 'true');
    assert.equal((await keyAuditEntries(t, id)).filter((e) => e.eventType === 'api_key.rotated').length, 1);
    // The replayed secret is the one that works.
    assert.equal((await t.request('GET', '/v1/audit-logs', { token: rotated.json.secret })).status, 200);
    const [row] = await rawRows(
      t.db,
      'SELECT response_body FROM idempotency_records WHERE idempotency_key = ?',
      [rotateKey],
    );
    assert.ok(!String(row.response_body).includes(rotated.json.secret), 'the stored copy is sealed');
  });
});
