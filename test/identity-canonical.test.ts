import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  DOCUMENT_INDEX_VERSION,
  documentIndexOf,
  duplicateDocumentMarker,
  reindexCustomerDocuments,
} from '../src/app/identity-index.ts';
import { CANONICALISATION_VERSION, compactSkeleton, nameProblem } from '../src/domain/canonical-text.ts';
import { COUNTRY_CODES, CURRENCY_CODES, isCountryCode, isCurrencyCode } from '../src/domain/iso-codes.ts';
import { PiiCipher } from '../src/security/pii-cipher.ts';
import { allPayments, createCustomer, type Json, party, pay, rawRows, rawSql } from './support/fixtures.ts';
import { assertError, type StateCounts, stateCounts } from './support/foundation.ts';
import {
  createTestDatabase,
  startTestApp,
  TEST_DATA_KEY,
  type TestApp,
  type TestDatabase,
  type TestResponse,
} from './support/harness.ts';

/**
 * Issue 12, canonical identity: currencies and countries must be real codes; keys a client names are looked up
 * as own properties only ("constructor" is no KYC tier); names that cannot be real are refused at the edge and
 * real ones in any script are kept exactly as sent; and duplicate customers are found on the canonical
 * document reference (decision 0011), including rows written before it, which are re-keyed at start-up.
 * Everything goes through the real HTTP server; raw SQL only writes rows the old way and reads what is at rest.
 */
const cipher = new PiiCipher([Buffer.from(TEST_DATA_KEY, 'base64')]);

/** A customer row as a build before migration 7 wrote it: the blind index of the reference as sent. */
async function insertOldCustomer(db: TestDatabase, id: string, documentReference: string): Promise<void> {
  const now = Date.now();
  await rawSql(
    db,
    `INSERT INTO customers (id, name_enc, country, kyc_status, document_index, document_enc, created_at_ms, updated_at_ms)
     VALUES (?, ?, 'NL', 'verified', ?, ?, ?, ?)`,
    [
      id,
      cipher.encrypt(`Old Customer ${id}`, 'customer.name'),
      cipher.blindIndex(documentReference, 'customer.documentReference'),
      cipher.encrypt(documentReference, 'customer.documentReference'),
      now,
      now,
    ],
  );
}

async function customerIndexRow(db: TestDatabase, id: string): Promise<Json> {
  const [row] = await rawRows(
    db,
    'SELECT document_index, document_index_version, document_enc, sanctions_alias_id FROM customers WHERE id = ?',
    [id],
  );
  assert.ok(row, `customer ${id} is stored`);
  return { ...row, document_index_version: Number(row.document_index_version) };
}

async function countRows(db: TestDatabase, sql: string, params: unknown[] = []): Promise<number> {
  const [row] = await rawRows(db, sql, params);
  return Number(row.n);
}

let t: TestApp;

before(async () => {
  t = await startTestApp();
});

after(async () => {
  await t?.destroy();
});

/** A 4xx with the contract's error shape and, for VALIDATION_ERROR, a detail naming `field`; changes nothing. */
async function assertRefused(
  label: string,
  send: () => Promise<TestResponse>,
  status: number,
  code: string,
  field?: string,
): Promise<TestResponse> {
  const before: StateCounts = await stateCounts(t);
  const res = await send();
  assert.ok(res.status < 500, `${label}: never a 5xx (got ${res.status} ${res.body.slice(0, 200)})`);
  assertError(res, status, code, label);
  if (field !== undefined) {
    const details: { field?: string; message: string }[] = res.json.error.details ?? [];
    assert.ok(
      details.some((d) => d.field === field),
      `${label}: a detail names ${field}; got ${JSON.stringify(details)}`,
    );
  }
  assert.deepEqual(await stateCounts(t), before, `${label}: nothing is written`);
  return res;
}

const postCustomer = (body: unknown) => () => t.request('POST', '/v1/customers', { body });

// ---------------------------------------------------------------------------------------------------------
// 4. Duplicate detection on the canonical document reference
// ---------------------------------------------------------------------------------------------------------

const BASE_REFERENCE = 'ÅB-774120'; // NFC: U+00C5
const REFERENCE_VARIANTS: [string, string][] = [
  ['the same reference', BASE_REFERENCE],
  ['NFD instead of NFC', 'A\u030AB-774120'],
  ['lower case', 'åb-774120'],
  ['a zero-width space', 'ÅB-77\u200B4120'],
  ['fullwidth digits', 'ÅB-\uFF17\uFF17\uFF14\uFF11\uFF12\uFF10'],
  ['an inner space', 'ÅB-774 120'],
  ['a Cyrillic look-alike (U+0412 for B)', 'Å\u0412-774120'],
  ['a trailing U+200F RLM', 'ÅB-774120\u200F'],
  ['a soft hyphen', 'ÅB\u00AD-774120'],
  ['fullwidth letters and no separator', '\uFF21\uFF22774120'],
];

test('every variant of one document reference is a 409 CUSTOMER_EXISTS that writes nothing', async (ctx) => {
  for (const [label, variant] of REFERENCE_VARIANTS) {
    assert.equal(
      compactSkeleton(variant),
      compactSkeleton(BASE_REFERENCE),
      `${label}: one canonical reference`,
    );
  }
  const created = await t.request('POST', '/v1/customers', {
    body: { name: 'Åsa Berg', country: 'SE', documentReference: BASE_REFERENCE },
  });
  assert.equal(created.status, 201, created.body);
  const id = created.json.customer.id;

  for (const [label, variant] of REFERENCE_VARIANTS) {
    await ctx.test(label, async () => {
      await assertRefused(
        label,
        postCustomer({ name: `Someone ${label}`, country: 'NO', documentReference: variant }),
        409,
        'CUSTOMER_EXISTS',
      );
    });
  }

  // The reference is stored encrypted exactly as sent (not its skeleton); the index is the skeleton's.
  const row = await customerIndexRow(t.db, id);
  assert.equal(cipher.decrypt(row.document_enc, 'customer.documentReference'), BASE_REFERENCE);
  assert.equal(row.document_index, documentIndexOf(cipher, BASE_REFERENCE));
  assert.equal(row.document_index_version, DOCUMENT_INDEX_VERSION);
  // The onboarding screening's best match is kept with the row, its alias (alt.csv) included when it was one.
  const stored = await t.app.services.store.reads.getCustomer(id);
  assert.equal(stored?.sanctionsAliasId, row.sanctions_alias_id);
  assert.equal(stored?.sanctionsEntryId !== null, true);
  assert.equal(stored?.documentIndexVersion, DOCUMENT_INDEX_VERSION);

  // A different document is still a new customer.
  const other = await t.request('POST', '/v1/customers', {
    body: { name: 'Åsa Berg', country: 'SE', documentReference: 'ÅB-774121' },
  });
  assert.equal(other.status, 201, other.body);
});

test('a document reference with no letter or digit is a 400 naming /documentReference', async () => {
  for (const reference of ['---', '.', '\u200B\u200B', '*/*']) {
    await assertRefused(
      JSON.stringify(reference),
      postCustomer({ name: 'Valid Name', country: 'US', documentReference: reference }),
      400,
      'VALIDATION_ERROR',
      '/documentReference',
    );
  }
});

test('the document index version follows the canonicalisation it was built with', () => {
  // identity-index.ts maps each CANONICALISATION_VERSION to an index version, and stops at load otherwise.
  assert.equal(CANONICALISATION_VERSION, 'canon-1');
  assert.equal(DOCUMENT_INDEX_VERSION, 1);
});

const OLD_REFERENCES = {
  cus_old_unique: 'ZQ-000777',
  cus_old_first: 'XY-5550 01',
  cus_old_second: 'xy 555 001', // the same document as cus_old_first once canonical: they collide
  cus_old_canonical: 'mn314159', // already canonical: its index does not change
};

test('rows written before the canonical index are re-keyed at start-up; collisions keep one holder', async () => {
  const db = await createTestDatabase();
  try {
    // A migrated, empty database, then rows written the old way (index of the reference as sent, version 0).
    const first = await startTestApp({ db, env: { SEED_DEMO_DATA: 'false' } });
    await first.close();
    for (const [id, reference] of Object.entries(OLD_REFERENCES)) await insertOldCustomer(db, id, reference);
    const canonicalBefore = (await customerIndexRow(db, 'cus_old_canonical')).document_index;
    for (const id of ['cus_old_unique', 'cus_old_first', 'cus_old_second']) {
      assert.equal((await customerIndexRow(db, id)).document_index_version, 0);
    }

    const app = await startTestApp({ db, env: { SEED_DEMO_DATA: 'false' } });
    try {
      for (const [variant, label] of [
        ['zq000777', 'lower case, no hyphen'],
        ['ZQ 000 777', 'spaces'],
        ['XY555001', 'the collided pair'],
        ['MN-314159', 'the already canonical one'],
      ] as const) {
        const res = await app.request('POST', '/v1/customers', {
          body: { name: 'Late Duplicate', country: 'NL', documentReference: variant },
        });
        assertError(res, 409, 'CUSTOMER_EXISTS', `${label} after the re-index`);
      }
      // Every row is at the current version; the older of the collided pair holds the canonical index, the
      // other a duplicate marker (unique, matching no lookup); both customers are still there, unchanged.
      for (const [id, reference] of Object.entries(OLD_REFERENCES)) {
        const row = await customerIndexRow(db, id);
        assert.equal(row.document_index_version, DOCUMENT_INDEX_VERSION, id);
        assert.equal(cipher.decrypt(row.document_enc, 'customer.documentReference'), reference, id);
        const read = await app.request('GET', `/v1/customers/${id}`);
        assert.equal(read.status, 200, read.body);
        assert.equal(read.json.customer.kycStatus, 'verified');
      }
      assert.equal(
        (await customerIndexRow(db, 'cus_old_first')).document_index,
        documentIndexOf(cipher, OLD_REFERENCES.cus_old_first),
      );
      assert.equal(
        (await customerIndexRow(db, 'cus_old_second')).document_index,
        duplicateDocumentMarker('cus_old_second'),
      );
      assert.equal((await customerIndexRow(db, 'cus_old_canonical')).document_index, canonicalBefore);
      // The collision is audited for review (ids only, no document).
      const logs = await app.request('GET', '/v1/audit-logs?limit=500');
      const duplicates = logs.json.logs.filter((l: Json) => l.eventType === 'customer.document_duplicate');
      assert.equal(duplicates.length, 1, JSON.stringify(duplicates));
      assert.equal(duplicates[0].resourceId, 'cus_old_second');
      assert.equal(duplicates[0].metadata.duplicateOfCustomerId, 'cus_old_first');
      // The references themselves, as sent and canonical (a bare "555" also matches random hex in hashes and ids).
      const entryText = JSON.stringify(duplicates[0]).toUpperCase();
      for (const reference of [OLD_REFERENCES.cus_old_first, OLD_REFERENCES.cus_old_second, 'XY555001']) {
        assert.ok(!entryText.includes(reference.toUpperCase()), 'no document reference in the audit log');
      }
      assert.ok(
        app.logs.lines.some((l) => l.includes('two customers share one canonical document reference')),
        'the collision is logged',
      );
      const verify = await app.request('GET', '/v1/audit-logs/verify');
      assert.equal(verify.json.verification.valid, true);
    } finally {
      await app.close();
    }
    const auditSize = await countRows(db, 'SELECT COUNT(*) AS n FROM audit_entries');

    // A second start has nothing to re-key: no new audit entry, the same indexes.
    const again = await startTestApp({ db, env: { SEED_DEMO_DATA: 'false' } });
    await again.close();
    assert.equal(await countRows(db, 'SELECT COUNT(*) AS n FROM audit_entries'), auditSize);
    assert.equal(
      await countRows(db, 'SELECT COUNT(*) AS n FROM customers WHERE document_index_version < ?', [
        DOCUMENT_INDEX_VERSION,
      ]),
      0,
    );
  } finally {
    await db.drop();
  }
});

test('re-indexing runs in bounded chunks and audits every collision, however many', async () => {
  const db = await createTestDatabase();
  const app = await startTestApp({ db, env: { SEED_DEMO_DATA: 'false' } });
  try {
    // Written the old way while the app runs (as an older build in a rolling upgrade would): a holder and
    // eleven variants of its document, plus unrelated rows; more collisions than one chunk may audit.
    const holder = await createCustomer(app, { documentReference: 'QR-424242' });
    const variants = Array.from({ length: 11 }, (_, i) => `qr${'-'.repeat(i + 1)}424242`);
    for (const [i, variant] of variants.entries())
      await insertOldCustomer(db, `cus_chunked_dup_${i}`, variant);
    for (let i = 0; i < 5; i++) await insertOldCustomer(db, `cus_chunked_ok_${i}`, `OK-CHUNK-${i}`);

    // 16 stale rows fit one chunk of 20, but a chunk audits at most a few collisions: the rest come next.
    const result = await reindexCustomerDocuments(app.app.services, 20);
    assert.equal(result.rekeyed, 5);
    assert.deepEqual(
      result.duplicates.map((d) => d.duplicateOfCustomerId),
      variants.map(() => holder.id),
    );
    assert.deepEqual(
      result.duplicates.map((d) => d.customerId).sort(),
      variants.map((_, i) => `cus_chunked_dup_${i}`).sort(),
    );
    assert.equal(
      await countRows(db, 'SELECT COUNT(*) AS n FROM customers WHERE document_index_version < ?', [
        DOCUMENT_INDEX_VERSION,
      ]),
      0,
    );
    // Idempotent: nothing left to do.
    assert.deepEqual(await reindexCustomerDocuments(app.app.services, 3), { rekeyed: 0, duplicates: [] });
    // Chunks of three: seven rows in three transactions.
    for (let i = 5; i < 12; i++) await insertOldCustomer(db, `cus_chunked_ok_${i}`, `OK-CHUNK-${i}`);
    assert.deepEqual(await reindexCustomerDocuments(app.app.services, 3), { rekeyed: 7, duplicates: [] });
    const res = await app.request('POST', '/v1/customers', {
      body: { name: 'Late Duplicate', country: 'NL', documentReference: 'OK chunk 3' },
    });
    assertError(res, 409, 'CUSTOMER_EXISTS', 'a re-keyed reference');
    const verify = await app.request('GET', '/v1/audit-logs/verify');
    assert.equal(verify.json.verification.valid, true);
  } finally {
    await app.destroy();
  }
});

// ---------------------------------------------------------------------------------------------------------
// 1. Currencies and countries are real codes
// ---------------------------------------------------------------------------------------------------------

test('the code sets: ISO 3166-1 countries (and XK), the platform ISO 4217 currencies', () => {
  assert.equal(COUNTRY_CODES.length, 250, '249 ISO 3166-1 alpha-2 codes and Kosovo');
  const names = new Intl.DisplayNames(['en'], { type: 'region', fallback: 'none' });
  for (const code of COUNTRY_CODES)
    assert.notEqual(names.of(code), undefined, `${code} is a region ICU knows`);
  // Region codes ICU knows that are not countries, and deprecated ones it maps to their successors.
  for (const code of [
    'ZZ',
    'EU',
    'EZ',
    'UN',
    'QO',
    'XA',
    'XB',
    'AC',
    'CP',
    'DG',
    'EA',
    'IC',
    'TA',
    'UK',
    'SU',
  ]) {
    assert.equal(isCountryCode(code), false, code);
  }
  for (const code of ['US', 'GB', 'DE', 'JP', 'KP', 'IR', 'SY', 'XK', 'AQ'])
    assert.equal(isCountryCode(code), true, code);
  assert.deepEqual([...CURRENCY_CODES], [...Intl.supportedValuesOf('currency')].sort());
  for (const code of ['QQQ', 'XXX', 'XTS', 'XAU', 'ABC', 'usd'])
    assert.equal(isCurrencyCode(code), false, code);
  for (const code of ['USD', 'EUR', 'GBP', 'JPY', 'CHF', 'XOF'])
    assert.equal(isCurrencyCode(code), true, code);
});

test('a customer in a country that is no country is a 400 naming /country', async () => {
  for (const country of ['ZZ', 'EU', 'UN', 'QO', 'XA', 'UK', 'AA', 'QQ']) {
    await assertRefused(
      `country ${country}`,
      postCustomer({ name: 'Valid Name', country, documentReference: `COUNTRY-${country}-1` }),
      400,
      'VALIDATION_ERROR',
      '/country',
    );
  }
  const kosovo = await t.request('POST', '/v1/customers', {
    body: { name: 'Arta Krasniqi', country: 'XK', documentReference: 'XK-PASS-0001' },
  });
  assert.equal(kosovo.status, 201, kosovo.body);
  assert.equal(kosovo.json.customer.country, 'XK');
});

test('an account or a payment in a currency that is no currency is a 400 naming /currency, nothing written', async () => {
  const customer = await createCustomer(t);
  const systemAccounts = () => countRows(t.db, "SELECT COUNT(*) AS n FROM accounts WHERE kind = 'system'");
  const systemBefore = await systemAccounts();
  for (const currency of ['QQQ', 'XXX', 'XTS', 'ABC', 'ZZZ']) {
    await assertRefused(
      `account currency ${currency}`,
      () =>
        t.request('POST', '/v1/accounts', {
          body: { customerId: customer.id, currency, initialBalanceCents: 10_000 },
        }),
      400,
      'VALIDATION_ERROR',
      '/currency',
    );
  }
  assert.equal(await systemAccounts(), systemBefore, 'no funding account for an unknown currency');
  assert.equal(
    await countRows(
      t.db,
      "SELECT COUNT(*) AS n FROM accounts WHERE currency IN ('QQQ', 'XXX', 'XTS', 'ABC', 'ZZZ')",
    ),
    0,
  );

  const a = await party(t, { balance: 50_000 });
  const b = await party(t);
  const paymentsBefore = (await allPayments(t)).length;
  const key = 'iso-currency-refused-1';
  for (const currency of ['QQQ', 'XXX']) {
    const body = {
      sourceAccountId: a.accountId,
      destinationAccountId: b.accountId,
      amountCents: 100,
      currency,
    };
    await assertRefused(
      `payment currency ${currency}`,
      () => pay(t, body, { key }),
      400,
      'VALIDATION_ERROR',
      '/currency',
    );
  }
  assert.equal((await allPayments(t)).length, paymentsBefore, 'no payment row');
  // The refused requests stored no idempotency record: the key is still free for a valid payment.
  const ok = await pay(
    t,
    { sourceAccountId: a.accountId, destinationAccountId: b.accountId, amountCents: 100, currency: 'USD' },
    { key },
  );
  assert.equal(ok.status, 201, ok.body);
  assert.equal(ok.headers['idempotency-replayed'], 'false');
});

// ---------------------------------------------------------------------------------------------------------
// 2. Own-property lookups only
// ---------------------------------------------------------------------------------------------------------

test('a KYC tier that is a prototype member is a 400 naming /kycTier, and changes nothing', async () => {
  const customer = await createCustomer(t);
  for (const kycTier of [
    'constructor',
    '__proto__',
    'toString',
    'hasOwnProperty',
    'valueOf',
    '__defineGetter__',
  ]) {
    await assertRefused(
      `kycTier ${kycTier}`,
      () =>
        t.request('POST', `/v1/customers/${customer.id}/kyc`, {
          body: { kycStatus: 'verified', kycTier },
        }),
      400,
      'VALIDATION_ERROR',
      '/kycTier',
    );
    const read = await t.request('GET', `/v1/customers/${customer.id}`);
    assert.equal(read.json.customer.kycTier, 'standard', `${kycTier}: the tier is unchanged`);
  }
  const ok = await t.request('POST', `/v1/customers/${customer.id}/kyc`, {
    body: { kycStatus: 'verified', kycTier: 'enhanced' },
  });
  assert.equal(ok.status, 200, ok.body);
  assert.equal(ok.json.customer.kycTier, 'enhanced');
});

test('prototype names as values or keys elsewhere: refused with a 4xx or kept as plain data, never a 5xx', async () => {
  const a = await party(t, { balance: 100_000 });
  const b = await party(t);
  const payment = (extra: Record<string, unknown> = {}) => ({
    sourceAccountId: a.accountId,
    destinationAccountId: b.accountId,
    amountCents: 150,
    currency: 'USD',
    ...extra,
  });

  // Metadata keys named like Object.prototype members are plain data: stored and returned as sent.
  const metadata = { constructor: 'c', toString: 't', hasOwnProperty: 'h', valueOf: 'v', isPrototypeOf: 'i' };
  const created = await pay(t, payment({ metadata }));
  assert.equal(created.status, 201, created.body);
  assert.deepEqual(created.json.payment.metadata, metadata);
  const read = await t.request('GET', `/v1/payments/${created.json.payment.id}`);
  assert.equal(read.status, 200, read.body);
  assert.deepEqual(read.json.payment.metadata, metadata);
  const replay = await pay(t, payment({ metadata }), { key: created.key });
  assert.equal(replay.status, 201);
  assert.equal(replay.body, created.body, 'the replay is byte-for-byte the original');

  // "__proto__" as a JSON key is refused by the body parser (prototype poisoning), as is constructor.prototype.
  const raw = (json: string) => () =>
    t.request('POST', '/v1/payments', { body: json, idempotencyKey: `proto-${Math.random()}` });
  const base = JSON.stringify(payment()).slice(0, -1);
  for (const [label, json] of [
    ['metadata.__proto__', `${base},"metadata":{"__proto__":"x"}}`],
    ['metadata.__proto__ object', `${base},"metadata":{"__proto__":{"polluted":"yes"}}}`],
    ['a top-level __proto__', `${base},"__proto__":{"polluted":"yes"}}`],
    [
      'metadata.constructor.prototype',
      `${base},"metadata":{"constructor":{"prototype":{"polluted":"yes"}}}}`,
    ],
  ] as const) {
    const before = (await allPayments(t)).length;
    const res = await raw(json)();
    assertError(res, 400, 'INVALID_JSON', label);
    assert.equal((await allPayments(t)).length, before, `${label}: no payment`);
  }
  // A customer body with __proto__ is refused the same way, and nothing is created.
  await assertRefused(
    'a customer body with __proto__',
    () =>
      t.request('POST', '/v1/customers', {
        body: '{"name":"Proto Person","country":"US","documentReference":"PROTO-1","__proto__":{"kycStatus":"verified"}}',
      }),
    400,
    'INVALID_JSON',
  );

  // Codes named like prototype members are no codes.
  await assertRefused(
    'account currency __proto__',
    () => t.request('POST', '/v1/accounts', { body: { customerId: a.customerId, currency: '__proto__' } }),
    400,
    'VALIDATION_ERROR',
    '/currency',
  );
  await assertRefused(
    'account currency constructor',
    () => t.request('POST', '/v1/accounts', { body: { customerId: a.customerId, currency: 'constructor' } }),
    400,
    'VALIDATION_ERROR',
    '/currency',
  );
  await assertRefused(
    'customer country __proto__',
    postCustomer({ name: 'Valid Name', country: '__proto__', documentReference: 'PROTO-2' }),
    400,
    'VALIDATION_ERROR',
    '/country',
  );
  for (const query of ['__proto__=1', 'constructor=1', 'status=constructor', 'status=__proto__']) {
    const res = await t.request('GET', `/v1/payments?${query}`);
    assertError(res, 400, 'VALIDATION_ERROR', `GET /v1/payments?${query}`);
  }

  // Idempotency keys named like prototype members are ordinary keys.
  for (const [i, key] of ['__proto__', 'constructor', 'toString'].entries()) {
    const amountCents = 160 + i * 10;
    // Posted or held by the fraud rules (velocity): either way the key worked as a key.
    const first = await pay(t, payment({ amountCents }), { key });
    assert.ok([201, 202].includes(first.status), `${key}: ${first.body}`);
    const again = await pay(t, payment({ amountCents }), { key });
    assert.equal(again.status, first.status, key);
    assert.equal(again.headers['idempotency-replayed'], 'true', key);
    assert.equal(again.body, first.body, key);
    const reused = await pay(t, payment({ amountCents: amountCents + 1 }), { key });
    assertError(reused, 409, 'IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD', key);
  }

  // And nothing reached Object.prototype.
  assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
  assert.equal(({} as Record<string, unknown>)['kycStatus'], undefined);
});

// ---------------------------------------------------------------------------------------------------------
// 3. Names that cannot be real are refused at the edge
// ---------------------------------------------------------------------------------------------------------

const UNREAL_NAMES: [string, string][] = [
  ['a right-to-left override', 'Ali\u202Ece Smith'],
  ['a left-to-right embedding', '\u202AJohn Smith'],
  ['a pop directional formatting', 'John Smith\u202C'],
  ['isolates', '\u2066Bob\u2069 Chen'],
  ['a first strong isolate', 'Bob \u2068Chen'],
  ['a zero-width space', 'Ann\u200Ba Lee'],
  ['a soft hyphen', 'Jo\u00ADhn Doe'],
  ['a word joiner', 'Jo\u2060hn Doe'],
  ['a right-to-left mark', 'John Doe\u200F'],
  ['a left-to-right mark', '\u200EJohn Doe'],
  ['a zero-width joiner', 'Jo\u200Dhn Doe'],
  ['a byte order mark', 'John\uFEFF Doe'],
  ['a tab inside', 'Bob\tChen'],
  ['a NUL', 'Bob\u0000Chen'],
  ['a bell at the end', 'Bob Chen\u0007'],
  ['an escape', 'Bob\u001B[31m Chen'],
  ['only punctuation', '---'],
  ['only dots', '...'],
  ['only symbols', '*** ###'],
];

test('a name with bidi, control or format characters, or no letters, is a 400 naming /name', async (ctx) => {
  for (const [label, name] of UNREAL_NAMES) {
    await ctx.test(label, async () => {
      const problem = nameProblem(name);
      assert.notEqual(problem, null, `${label}: nameProblem refuses it`);
      const res = await assertRefused(
        label,
        postCustomer({ name, country: 'US', documentReference: `UNREAL-${label}` }),
        400,
        'VALIDATION_ERROR',
        '/name',
      );
      const detail = res.json.error.details.find((d: Json) => d.field === '/name');
      // A NUL is refused earlier, at the edge, for every text field (no backend can store it everywhere).
      if (name.includes('\u0000')) assert.match(detail.message, /U\+0000/, `${label}: the edge's message`);
      else assert.equal(detail.message, problem, `${label}: the message is nameProblem's`);
    });
  }
});

test('real names in any script are accepted and kept exactly as sent', async () => {
  const names = [
    'José Álvarez-Núñez',
    'Jose\u0301 Decomposed', // NFD: stored as sent, not normalised
    'Zoë O\u2019Brien',
    'Ærøskøbing Åse',
    '李小龍',
    '山田 太郎',
    '김민준',
    'محمد عبد الله',
    'דוד לוי',
    'Δημήτρης Παπαδόπουλος',
    'Ольга Смирнова',
    'Nguyễn Văn An',
    'अनुष्का शर्मा',
    'Jean-Luc Picard Jr.',
    "D'Arcy St. John",
  ];
  for (const [i, name] of names.entries()) {
    const res = await t.request('POST', '/v1/customers', {
      body: { name, country: 'US', documentReference: `REAL-NAME-${i}` },
    });
    assert.equal(res.status, 201, `${name}: ${res.body}`);
    assert.equal(res.json.customer.name, name, `${name}: returned as sent`);
    const read = await t.request('GET', `/v1/customers/${res.json.customer.id}`);
    assert.equal(read.json.customer.name, name, `${name}: stored as sent`);
    assert.equal(Buffer.from(read.json.customer.name).equals(Buffer.from(name)), true, `${name}: same bytes`);
  }
});
