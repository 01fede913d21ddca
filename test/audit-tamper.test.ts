import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import {
  apiKey,
  auditLogs,
  auditVerify,
  type Json,
  type Party,
  party,
  pay,
  rawSql,
} from './support/fixtures.ts';
import { startTestApp, type TestApp } from './support/harness.ts';

/**
 * The audit log as an outside auditor sees it: pages that cover the whole log in order, hashes anyone can
 * recompute from the JSON the API returns, and a verifier that finds the first entry edited, re-hashed or
 * deleted in the database behind the service's back.
 */

/** RFC 8785 canonical JSON, written here independently of src/: sorted keys (UTF-16 order), no whitespace. */
function jcs(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(jcs).join(',')}]`;
  const obj = value as Record<string, unknown>;
  return `{${Object.keys(obj)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${jcs(obj[k])}`)
    .join(',')}}`;
}

const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');

function recomputeHash(entry: Record<string, unknown>): string {
  const { hash: _hash, ...rest } = entry;
  return sha256(jcs(rest));
}

/** An app with some history: two parties and a posted, a held and a declined payment. */
async function appWithHistory(): Promise<{ t: TestApp; a: Party; b: Party }> {
  const t = await startTestApp();
  const a = await party(t, { balance: 500_000 });
  const b = await party(t, { balance: 0 });
  const body = { sourceAccountId: a.accountId, destinationAccountId: b.accountId, currency: 'USD' };
  assert.equal((await pay(t, { ...body, amountCents: 1_000, note: 'first' })).status, 201);
  assert.equal((await pay(t, { ...body, amountCents: 200_000 })).status, 202);
  assert.equal((await pay(t, { ...body, amountCents: 900_000 })).status, 422);
  return { t, a, b };
}

describe('reading the log', () => {
  test('cursor paging with limit=2 covers every entry once, indices contiguous from 0', async () => {
    const { t } = await appWithHistory();
    try {
      const seen: Json[] = [];
      let cursor: string | null = null;
      let pages = 0;
      for (;;) {
        const url: string = `/v1/audit-logs?limit=2${cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`}`;
        const res = await t.request('GET', url);
        assert.equal(res.status, 200);
        pages += 1;
        assert.ok(res.json.logs.length <= 2);
        assert.equal(res.json.count, res.json.logs.length);
        seen.push(...res.json.logs);
        if (!res.json.hasMore) {
          assert.equal(res.json.nextCursor, null);
          break;
        }
        assert.equal(res.json.logs.length, 2, 'only the last page may be short');
        cursor = res.json.nextCursor;
      }
      assert.ok(seen.length >= 10, `history has entries (got ${seen.length})`);
      assert.equal(pages, Math.ceil(seen.length / 2), 'no empty trailing page');
      assert.deepEqual(
        seen.map((e) => e.index),
        seen.map((_, i) => i),
      );
      assert.deepEqual(seen, await auditLogs(t), 'small pages and one big page agree');
      const bad = await t.request('GET', '/v1/audit-logs?cursor=not-a-cursor');
      assert.equal(bad.status, 400);
    } finally {
      await t.destroy();
    }
  });

  test('every hash can be recomputed from the API JSON alone, and the entries chain from GENESIS', async () => {
    const { t } = await appWithHistory();
    try {
      const logs = await auditLogs(t);
      let prev = 'GENESIS';
      for (const entry of logs) {
        assert.deepEqual(Object.keys(entry).sort(), [
          'actorId',
          'eventType',
          'hash',
          'id',
          'index',
          'metadata',
          'prevHash',
          'requestId',
          'resourceId',
          'resourceType',
          'timestamp',
        ]);
        assert.equal(entry.prevHash, prev, `entry ${entry.index} links to the one before`);
        assert.match(entry.hash, /^[0-9a-f]{64}$/);
        assert.equal(recomputeHash(entry), entry.hash, `hash of entry ${entry.index}`);
        prev = entry.hash;
      }
      const payments = logs.filter((e) => e.resourceType === 'payment').map((e) => e.eventType);
      assert.deepEqual(payments, ['payment.posted', 'payment.held_for_review', 'payment.declined']);
      const verify = await auditVerify(t);
      assert.equal(verify.status, 200);
      assert.deepEqual(verify.verification, {
        valid: true,
        brokenAtIndex: null,
        reason: null,
        size: logs.length,
      });
    } finally {
      await t.destroy();
    }
  });

  test('the log is for auditors: a payments key gets 403, an auditor key reads it', async () => {
    const t = await startTestApp();
    try {
      const payments = await apiKey(t, 'payments');
      const auditor = await apiKey(t, 'auditor');
      assert.equal((await t.request('GET', '/v1/audit-logs', { token: payments.token })).status, 403);
      assert.equal((await t.request('GET', '/v1/audit-logs/verify', { token: payments.token })).status, 403);
      assert.equal((await t.request('GET', '/v1/audit-logs', { token: auditor.token })).status, 200);
      assert.equal((await t.request('GET', '/v1/audit-logs/verify', { token: auditor.token })).status, 200);
    } finally {
      await t.destroy();
    }
  });
});

describe('tampering with the database is detected', () => {
  type Tamper = (t: TestApp, logs: Json[]) => Promise<number>;

  /** Builds history, stops the app, tampers with the rows at rest, restarts, and asks the verifier. */
  async function tamperAndVerify(
    tamper: Tamper,
  ): Promise<{ expected: number; verification: Json; status: number }> {
    const { t } = await appWithHistory();
    const logs = await auditLogs(t);
    await t.close();
    const expected = await tamper(t, logs);
    const restarted = await startTestApp({ db: t.db });
    try {
      const res = await restarted.request('GET', '/v1/audit-logs/verify');
      assert.equal(res.json.error?.code, res.status === 500 ? 'AUDIT_CHAIN_INVALID' : undefined);
      return { expected, verification: res.json.verification, status: res.status };
    } finally {
      await restarted.destroy();
    }
  }

  // A payment entry in the middle of the log (not the first, not the last).
  const middlePayment = (logs: Json[]) => logs.find((e) => e.eventType === 'payment.held_for_review')!;

  const cases: { name: string; tamper: Tamper }[] = [
    {
      name: 'an edited metadata amount breaks the chain at that entry',
      tamper: async (t, logs) => {
        const k = middlePayment(logs).index;
        const edited = { ...logs[k].metadata, amountCents: 1 };
        assert.equal(
          await rawSql(t.db, 'UPDATE audit_entries SET metadata = ? WHERE idx = ?', [
            JSON.stringify(edited),
            k,
          ]),
          1,
        );
        return k;
      },
    },
    {
      name: 'an edited event type breaks the chain at that entry',
      tamper: async (t, logs) => {
        const k = middlePayment(logs).index;
        await rawSql(t.db, "UPDATE audit_entries SET event_type = 'payment.posted' WHERE idx = ?", [k]);
        return k;
      },
    },
    {
      name: 'an edited entry whose hash was recomputed breaks the link of the next entry',
      tamper: async (t, logs) => {
        const k = middlePayment(logs).index;
        const forged = { ...logs[k], metadata: { ...logs[k].metadata, amountCents: 1 } };
        await rawSql(t.db, 'UPDATE audit_entries SET metadata = ?, hash = ? WHERE idx = ?', [
          JSON.stringify(forged.metadata),
          recomputeHash(forged),
          k,
        ]);
        return k + 1;
      },
    },
    {
      name: 'a deleted middle entry is reported at its index',
      tamper: async (t, logs) => {
        const k = middlePayment(logs).index;
        assert.equal(await rawSql(t.db, 'DELETE FROM audit_entries WHERE idx = ?', [k]), 1);
        return k;
      },
    },
    {
      name: 'a deleted first entry is reported at index 0',
      tamper: async (t) => {
        await rawSql(t.db, 'DELETE FROM audit_entries WHERE idx = 0');
        return 0;
      },
    },
    {
      name: 'a deleted last entry is reported (the head still counts it)',
      tamper: async (t, logs) => {
        const last = logs.length - 1;
        await rawSql(t.db, 'DELETE FROM audit_entries WHERE idx = ?', [last]);
        return last;
      },
    },
    {
      name: 'a re-hashed last entry no longer matches the chain head',
      tamper: async (t, logs) => {
        const last = logs.length - 1;
        const forged = { ...logs[last], metadata: { ...logs[last].metadata, amountCents: 1 } };
        await rawSql(t.db, 'UPDATE audit_entries SET metadata = ?, hash = ? WHERE idx = ?', [
          JSON.stringify(forged.metadata),
          recomputeHash(forged),
          last,
        ]);
        return last;
      },
    },
  ];

  for (const c of cases) {
    test(c.name, async () => {
      const { expected, verification, status } = await tamperAndVerify(c.tamper);
      assert.equal(status, 500);
      assert.equal(verification.valid, false);
      assert.equal(verification.brokenAtIndex, expected);
      assert.equal(typeof verification.reason, 'string');
    });
  }

  test('an untouched database verifies after a restart (the control for the cases above)', async () => {
    const { verification, status } = await tamperAndVerify(async () => -1);
    assert.equal(status, 200);
    assert.equal(verification.valid, true);
  });
});
