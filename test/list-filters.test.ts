import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { createApiKey } from '../src/app/api-keys.ts';
import { SYSTEM_ACTOR } from '../src/app/services.ts';
import { METADATA_FILTERS_MAX } from '../src/http/list-filters.ts';
import { FILTER_WINDOW_MAX } from '../src/storage/scoped-sql.ts';
import type { ListFilter, ReadScope } from '../src/storage/store.ts';
import { type Json, listAll, type Party, party, pay, REVIEW_AMOUNT, usd } from './support/fixtures.ts';
import { manualClock, startTestApp, type TestApp } from './support/harness.ts';

/**
 * The payment and ledger list filters (issue 17), through HTTP: each filter and their combinations against an
 * in-memory model of the same rows (a property test), both orders, paging to the end with bound cursors,
 * scoped keys, and the 400s of bad filters. The storage test at the end pages through windows that are cut
 * short (many arms), where a page may be short or empty and still have more.
 */
let t: TestApp;
let a: Party;
let b: Party;
let c: Party;
let poor: Party;
let scoped: string;
let payments: Json[];
let entries: Json[];
const clock = manualClock(Date.UTC(2026, 2, 1));
const STEP_MS = 120_000; // two minutes between payments: out of reach of the per-minute fraud rules

before(async () => {
  t = await startTestApp({ clock: clock.now });
  a = await party(t, { balance: 5_000_000 });
  b = await party(t, { balance: 5_000_000 });
  c = await party(t, { balance: 5_000_000 });
  poor = await party(t, { balance: 100 });
  const pairs: [Party, Party][] = [
    [a, b],
    [b, a],
    [a, c],
    [c, b],
    [b, c],
    [c, a],
  ];
  const amounts = [100, 500, 1_000, 2_500, 9_999, REVIEW_AMOUNT, 777, 100];
  const metadata: (Record<string, string> | undefined)[] = [
    { invoice: 'INV-1', kind: 'rent' },
    undefined,
    { invoice: 'INV-2' },
    { kind: 'rent' },
    // A key that names an Object.prototype member is a key like any other (a body with `__proto__` is refused
    // as INVALID_JSON, src/http/json-body.ts, so no payment has that key).
    { constructor: 'c', toString: 't', invoice: 'INV-1' },
  ];
  for (let i = 0; i < 24; i++) {
    clock.advance(STEP_MS);
    const [from, to] = pairs[i % pairs.length]!;
    const meta = metadata[i % metadata.length];
    const body = usd(from, to, amounts[i % amounts.length]!, meta === undefined ? {} : { metadata: meta });
    const res = await pay(t, body);
    assert.ok([201, 202].includes(res.status), res.body);
  }
  clock.advance(STEP_MS);
  const declined = await pay(t, usd(poor, a, 5_000, { metadata: { invoice: 'INV-1' } }));
  assert.equal(declined.status, 422, declined.body);
  // A partial refund: entries of the payment's other party after the payment's own.
  const first = (await listAll(t, '/v1/payments?status=posted', 'payments'))[0];
  clock.advance(STEP_MS);
  const refund = await t.request('POST', `/v1/payments/${first.id}/refunds`, {
    body: { amountCents: 50 },
    idempotencyKey: 'refund-1',
  });
  assert.equal(refund.status, 201, refund.body);
  payments = await listAll(t, '/v1/payments', 'payments');
  entries = await listAll(t, '/v1/ledger', 'ledgerEntries');
  scoped = (
    await createApiKey(t.app.services, SYSTEM_ACTOR, 'auditor', 'a only', { customerIds: [a.customerId] })
  ).secret;
});
after(async () => {
  await t.destroy();
});

// ---- The model: what each filter means, on the rows as the unfiltered lists show them ----

interface Filters {
  accountId?: string;
  counterpartyAccountId?: string;
  createdFrom?: string;
  createdTo?: string;
  amountMin?: number;
  amountMax?: number;
  status?: string;
  metadata?: [string, string][];
}

const ms = (iso: string) => Date.parse(iso);
const own = (o: Json, key: string) => (o !== null && Object.hasOwn(o, key) ? o[key] : undefined);

function inRanges(f: Filters, createdAt: string, amount: number): boolean {
  return (
    (f.createdFrom === undefined || ms(createdAt) >= ms(f.createdFrom)) &&
    (f.createdTo === undefined || ms(createdAt) < ms(f.createdTo)) &&
    (f.amountMin === undefined || amount >= f.amountMin) &&
    (f.amountMax === undefined || amount <= f.amountMax)
  );
}
const metadataMatches = (f: Filters, p: Json) =>
  (f.metadata ?? []).every(([k, v]) => own(p.metadata, k) === v);

function expectedPayments(f: Filters, viewer: readonly string[] | null): string[] {
  return payments
    .filter((p) => {
      const sides = [p.sourceAccountId, p.destinationAccountId];
      if (viewer !== null && !sides.some((s) => viewer.includes(s))) return false;
      if (f.accountId !== undefined && !sides.includes(f.accountId)) return false;
      // An account outside the key's scope is filtered on as one that does not exist (src/app/scope.ts).
      if (f.accountId !== undefined && viewer !== null && !viewer.includes(f.accountId)) return false;
      if (f.counterpartyAccountId !== undefined) {
        // The other party of the account asked for, else of the viewer's side (any side when unscoped).
        const mine = f.accountId !== undefined ? [f.accountId] : viewer;
        const other = f.counterpartyAccountId;
        const ok =
          (p.destinationAccountId === other && (mine === null || mine.includes(p.sourceAccountId))) ||
          (p.sourceAccountId === other && (mine === null || mine.includes(p.destinationAccountId)));
        if (!ok) return false;
      }
      if (f.status !== undefined && p.status !== f.status) return false;
      return inRanges(f, p.createdAt, p.amountCents) && metadataMatches(f, p);
    })
    .map((p) => p.id);
}

function expectedEntries(f: Filters, viewer: readonly string[] | null): string[] {
  const byId = new Map(payments.map((p) => [p.id, p]));
  return entries
    .filter((e) => {
      if (viewer !== null && !viewer.includes(e.accountId)) return false;
      if (f.accountId !== undefined && e.accountId !== f.accountId) return false;
      if (!inRanges(f, e.timestamp, e.amountCents)) return false;
      const needsPayment =
        f.status !== undefined || f.counterpartyAccountId !== undefined || f.metadata?.length;
      if (!needsPayment) return true;
      const p = e.paymentId === null ? undefined : byId.get(e.paymentId);
      if (p === undefined) return false;
      if (f.status !== undefined && p.status !== f.status) return false;
      const other = f.counterpartyAccountId;
      if (
        other !== undefined &&
        (e.accountId === other || ![p.sourceAccountId, p.destinationAccountId].includes(other))
      ) {
        return false;
      }
      return metadataMatches(f, p);
    })
    .map((e) => e.id);
}

function query(f: Filters, order: 'asc' | 'desc'): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(f)) if (k !== 'metadata' && v !== undefined) params.set(k, String(v));
  for (const [k, v] of f.metadata ?? []) params.set(`metadata[${k}]`, v);
  if (order === 'desc') params.set('order', 'desc');
  return params.toString();
}

/** Every id of a filtered list, page by page with its bound cursors, with the given key. */
async function listIds(path: string, listKey: string, token: string | undefined, limit: number) {
  const client = {
    request: ((method, url, options = {}) =>
      t.request(method, url, token === undefined ? options : { ...options, token })) as TestApp['request'],
  };
  return (await listAll(client, path, listKey, limit)).map((item: Json) => item.id);
}

async function check(f: Filters, order: 'asc' | 'desc', limit: number, scopedKey: boolean) {
  const token = scopedKey ? scoped : undefined;
  const viewer = scopedKey ? [a.accountId] : null;
  const qs = query(f, order);
  const reverse = (ids: string[]) => (order === 'desc' ? [...ids].reverse() : ids);
  const gotPayments = await listIds(`/v1/payments?${qs}`, 'payments', token, limit);
  assert.deepEqual(gotPayments, reverse(expectedPayments(f, viewer)), `payments?${qs}`);
  const gotEntries = await listIds(`/v1/ledger?${qs}`, 'ledgerEntries', token, limit);
  assert.deepEqual(gotEntries, reverse(expectedEntries(f, viewer)), `ledger?${qs}`);
}

// ---- Each filter, then combinations (a property test against the model) ----

test('each filter alone, both orders, unscoped and scoped', async () => {
  const mid = payments[Math.floor(payments.length / 2)].createdAt;
  const cases: Filters[] = [
    {},
    { accountId: a.accountId },
    { counterpartyAccountId: c.accountId },
    { accountId: a.accountId, counterpartyAccountId: b.accountId },
    { accountId: a.accountId, counterpartyAccountId: a.accountId },
    { createdFrom: mid },
    { createdTo: mid },
    { amountMin: 1_000 },
    { amountMax: 500 },
    { amountMin: 100, amountMax: 100 },
    { status: 'manual_review' },
    { status: 'declined' },
    { metadata: [['invoice', 'INV-1']] },
    { metadata: [['__proto__', 'p']] },
    { metadata: [['constructor', 'c']] },
    { metadata: [['toString', 't']] },
    { metadata: [['hasOwnProperty', 'x']] },
    { metadata: [['nothing', 'here']] },
    {
      metadata: [
        ['invoice', 'INV-1'],
        ['kind', 'rent'],
      ],
    },
  ];
  for (const f of cases) {
    for (const order of ['asc', 'desc'] as const) {
      await check(f, order, 2, false);
      await check(f, order, 3, true);
    }
  }
  // The cases are not vacuous.
  assert.ok(expectedPayments({ metadata: [['constructor', 'c']] }, null).length > 0);
  assert.ok(expectedPayments({ status: 'declined' }, null).length === 1);
  assert.ok(expectedEntries({ counterpartyAccountId: c.accountId }, null).length > 0);
});

test('combined filters agree with the model (property test)', async () => {
  const ids = () => fc.constantFrom(a.accountId, b.accountId, c.accountId, poor.accountId);
  const instant = fc
    .integer({ min: 0, max: payments.length + 1 })
    .map((i) => new Date(Date.UTC(2026, 2, 1) + i * STEP_MS + 1).toISOString());
  const filters = fc.record(
    {
      accountId: ids(),
      counterpartyAccountId: ids(),
      createdFrom: instant,
      createdTo: instant,
      amountMin: fc.constantFrom(0, 100, 600, 2_500),
      amountMax: fc.constantFrom(100, 2_500, 10_000, REVIEW_AMOUNT),
      status: fc.constantFrom('posted', 'manual_review', 'declined'),
      metadata: fc.subarray([
        ['invoice', 'INV-1'],
        ['kind', 'rent'],
        ['constructor', 'c'],
        ['__proto__', 'p'],
      ] as [string, string][]),
    },
    { requiredKeys: [] },
  );
  await fc.assert(
    fc.asyncProperty(
      filters,
      fc.constantFrom('asc', 'desc'),
      fc.integer({ min: 1, max: 4 }),
      fc.boolean(),
      async (f, order, limit, scopedKey) => {
        // A valid range only: inverted ones are 400s (tested below).
        if (f.createdFrom !== undefined && f.createdTo !== undefined && f.createdFrom >= f.createdTo) return;
        if (f.amountMin !== undefined && f.amountMax !== undefined && f.amountMin > f.amountMax) return;
        await check(f as Filters, order as 'asc' | 'desc', limit, scopedKey);
      },
    ),
    { numRuns: 60 },
  );
});

// ---- Cursors and bad input ----

test('a cursor is bound to its filters: reused with another filter it is a 400', async () => {
  const first = await t.request('GET', `/v1/payments?limit=1&amountMin=100&accountId=${a.accountId}`);
  assert.equal(first.json.hasMore, true);
  const cursor = encodeURIComponent(first.json.nextCursor);
  const same = await t.request(
    'GET',
    `/v1/payments?accountId=${a.accountId}&amountMin=100&limit=1&cursor=${cursor}`,
  );
  assert.equal(same.status, 200, 'the same filters in another order of parameters');
  for (const other of [
    `amountMin=101&accountId=${a.accountId}`,
    `amountMin=100`,
    `amountMin=100&accountId=${a.accountId}&metadata[kind]=rent`,
    `amountMin=100&accountId=${a.accountId}&createdTo=2030-01-01T00:00:00Z`,
    `amountMin=100&accountId=${a.accountId}&counterpartyAccountId=${b.accountId}`,
  ]) {
    const res = await t.request('GET', `/v1/payments?${other}&limit=1&cursor=${cursor}`);
    assert.equal(res.status, 400, `${other}: ${res.body}`);
    assert.equal(res.json.error.code, 'VALIDATION_ERROR');
  }
  const ledger = await t.request('GET', '/v1/ledger?limit=1&status=posted');
  const reused = await t.request(
    'GET',
    `/v1/ledger?limit=1&status=declined&cursor=${encodeURIComponent(ledger.json.nextCursor)}`,
  );
  assert.equal(reused.status, 400, reused.body);
});

test('bad filters are 400 VALIDATION_ERROR naming the parameter, on both lists', async () => {
  const tooMany = Array.from({ length: METADATA_FILTERS_MAX + 1 }, (_, i) => `metadata[k${i}]=v`).join('&');
  const bad: [string, string][] = [
    ['amountMin=1.5', '/amountMin'],
    ['amountMin=-1', '/amountMin'],
    ['amountMax=1e3', '/amountMax'],
    ['amountMax=%2012', '/amountMax'],
    ['amountMin=9007199254740992', '/amountMin'],
    ['amountMax=99999999999999999999', '/amountMax'],
    ['amountMin=10&amountMax=9', '/amountMin'],
    ['createdFrom=yesterday', '/createdFrom'],
    ['createdFrom=2026-02-30T00:00:00Z', '/createdFrom'],
    ['createdTo=2026-03-01T00:00:00', '/createdTo'],
    ['createdFrom=2026-03-01T00:00:00Z&createdTo=2026-03-01T00:00:00Z', '/createdFrom'],
    ['createdFrom=2026-03-02T00:00:00Z&createdTo=2026-03-01T00:00:00Z', '/createdFrom'],
    ['status=refunded', '/status'],
    ['accountId=acc_%00', '/accountId'],
    ['metadata[invoice]=a%00b', '/metadata[invoice]'],
    ['metadata[invoice]=1&metadata[invoice]=2', '/metadata[invoice]'],
    [`metadata[${'k'.repeat(41)}]=v`, `/metadata[${'k'.repeat(41)}]`],
    [`metadata[invoice]=${'v'.repeat(501)}`, '/metadata[invoice]'],
    ['metadata[a b]=v', '/metadata[a b]'],
    ['metadata=v', '/metadata'],
    ['__proto__=x', '/__proto__'],
    ['constructor=x', '/constructor'],
    [tooMany, '/metadata'],
  ];
  for (const path of ['/v1/payments', '/v1/ledger']) {
    for (const [qs, field] of bad) {
      const res = await t.request('GET', `${path}?${qs}`);
      assert.equal(res.status, 400, `${path}?${qs}: ${res.body}`);
      assert.equal(res.json.error.code, 'VALIDATION_ERROR', res.body);
      const fields = (res.json.error.details ?? []).map((d: Json) => d.field);
      assert.ok(fields.includes(field), `${path}?${qs}: ${res.body}`);
    }
  }
  // At the limit, and keys that are Object.prototype's names: fine.
  const max = Array.from({ length: METADATA_FILTERS_MAX }, (_, i) => `metadata[k${i}]=v`).join('&');
  assert.equal((await t.request('GET', `/v1/payments?${max}`)).status, 200);
  for (const key of ['__proto__', 'constructor', 'hasOwnProperty', 'toString']) {
    const res = await t.request('GET', `/v1/payments?metadata[${key}]=x`);
    assert.equal(res.status, 200, res.body);
    assert.deepEqual(res.json.payments, []);
  }
});

test('a scoped key filtering on an account outside its scope sees nothing', async () => {
  for (const path of [
    `/v1/payments?accountId=${b.accountId}`,
    `/v1/ledger?accountId=${b.accountId}`,
    `/v1/payments?accountId=${b.accountId}&counterpartyAccountId=${a.accountId}`,
  ]) {
    const res = await t.request('GET', path, { token: scoped });
    assert.equal(res.status, 200, res.body);
    assert.deepEqual(res.json[path.startsWith('/v1/ledger') ? 'ledgerEntries' : 'payments'], [], path);
  }
  // The counterparty alone, for a scoped key: payments between b and the key's account only.
  const between = await listIds(`/v1/payments?counterpartyAccountId=${b.accountId}`, 'payments', scoped, 50);
  assert.deepEqual(
    between,
    expectedPayments({ accountId: a.accountId, counterpartyAccountId: b.accountId }, null),
  );
});

// ---- Windows cut short: many arms, so every window holds a few rows only ----

test('pages of a cut window are short or empty and the cursor carries on to the end', async () => {
  const reads = t.app.services.store.reads;
  // 1,000 accounts that own nothing: 6,000 arms, so each filtered window holds floor(20,000 / 6,000) = 3 rows.
  const fakes = Array.from({ length: 1_000 }, (_, i) => `acc_none_${String(i).padStart(4, '0')}`);
  const scope: ReadScope = { customerIds: [a.customerId], accountIds: [a.accountId, ...fakes] };
  assert.ok(FILTER_WINDOW_MAX > 3);
  const filters: ListFilter[] = [{ amountMin: 2_500 }, { metadata: [['kind', 'rent']] }, { amountMax: 100 }];
  for (const filter of filters) {
    for (const descending of [false, true]) {
      const seen: string[] = [];
      let after = 0;
      let short = 0;
      for (let pages = 0; ; pages++) {
        assert.ok(pages <= payments.length, 'the cursor moves on');
        const page = await reads.listPayments({ after, limit: 500, descending }, filter, scope);
        seen.push(...page.items.map((p) => p.id));
        if (page.nextAfter === null) break;
        if (page.items.length < 2) short += 1;
        after = page.nextAfter;
      }
      const f: Filters = {
        ...(filter.amountMin === undefined ? {} : { amountMin: filter.amountMin }),
        ...(filter.amountMax === undefined ? {} : { amountMax: filter.amountMax }),
        ...(filter.metadata === undefined ? {} : { metadata: filter.metadata as [string, string][] }),
      };
      const want = expectedPayments(f, [a.accountId]);
      assert.deepEqual(seen, descending ? [...want].reverse() : want, JSON.stringify(filter));
      if (filter.metadata === undefined) assert.ok(short > 0, 'some pages were cut short');
    }
  }
});
