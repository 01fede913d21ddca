import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import {
  apiKey,
  assertBooksValid,
  balanceOf,
  type Json,
  type Party,
  party,
  pay,
  paymentsState,
  REVIEW_AMOUNT,
  rawRows,
} from './support/fixtures.ts';
import { manualClock, startTestApp, type TestApp } from './support/harness.ts';

/**
 * Foreign exchange with an enforced rate (issue 17), through HTTP on the real server and database: a quote, a
 * payment that uses it posts two transfers (one per currency) through the FX pools at exactly the quoted
 * amounts, balanced per currency; expired, used and mismatched quotes move nothing; without a quote the
 * currency_mismatch decline stands. The demo rates (config/fx-rates.json) are the table.
 */
const clock = manualClock(Date.UTC(2026, 2, 1));
let t: TestApp;
let payments: string;
let compliance: string;
let payer: Party;
let yen: Party;
let dinar: Party;
let euro: Party;

before(async () => {
  t = await startTestApp({ clock: clock.now, env: { FX_QUOTE_TTL_SECONDS: '60' } });
  payments = (await apiKey(t, 'payments')).token;
  compliance = (await apiKey(t, 'compliance')).token;
  payer = await party(t, { balance: 10_000_000 });
  yen = await party(t, { currency: 'JPY' });
  dinar = await party(t, { currency: 'BHD' });
  euro = await party(t, { currency: 'EUR' });
});
after(async () => {
  await t.destroy();
});

async function quote(
  sourceCurrency: string,
  destinationCurrency: string,
  sourceAmountCents: number,
  token = payments,
): Promise<Json> {
  const res = await t.request('POST', '/v1/fx-quotes', {
    token,
    body: { sourceCurrency, destinationCurrency, sourceAmountCents },
  });
  assert.equal(res.status, 201, res.body);
  return res.json.quote;
}

const fxBody = (to: Party, amountCents: number, quoteId: string, extra: Record<string, unknown> = {}) => ({
  sourceAccountId: payer.accountId,
  destinationAccountId: to.accountId,
  amountCents,
  currency: 'USD',
  quoteId,
  ...extra,
});

const poolBalance = async (currency: string): Promise<number> => {
  const rows = await rawRows(t.db, 'SELECT posted_balance_cents FROM accounts WHERE id = ?', [
    `acc_system_fx_${currency.toLowerCase()}`,
  ]);
  return rows.length === 0 ? 0 : Number(rows[0].posted_balance_cents);
};

const entriesOf = async (paymentId: string): Promise<Json[]> =>
  (await t.request('GET', `/v1/ledger?paymentId=${paymentId}`)).json.ledgerEntries;

/** Per currency, debits equal credits: the four legs are two balanced postings. */
function assertBalancedPerCurrency(entries: Json[]): Map<string, number> {
  const net = new Map<string, number>();
  for (const e of entries) {
    net.set(
      e.currency,
      (net.get(e.currency) ?? 0) + (e.direction === 'debit' ? e.amountCents : -e.amountCents),
    );
  }
  for (const [currency, sum] of net) assert.equal(sum, 0, `${currency} debits equal credits`);
  return net;
}

test('a quote, then a payment with it: four legs at the quoted amounts, balanced per currency', async () => {
  const q = await quote('USD', 'JPY', 10_000);
  // $100.00 at 151.37 yen per dollar: ¥15,137 (JPY has no minor unit).
  assert.equal(q.rate, '151.37');
  assert.equal(q.destinationAmountCents, 15_137);
  assert.equal(Date.parse(q.expiresAt) - Date.parse(q.createdAt), 60_000);
  const poolsBefore = { usd: await poolBalance('USD'), jpy: await poolBalance('JPY') };

  const res = await pay(t, fxBody(yen, 10_000, q.id), { token: payments });
  assert.equal(res.status, 201, res.body);
  assert.deepEqual(res.json.payment.fx, {
    quoteId: q.id,
    rate: '151.37',
    destinationAmountCents: 15_137,
    destinationCurrency: 'JPY',
  });
  // The resulting balances are the customers' accounts only, each in its own currency.
  assert.deepEqual(
    res.json.balances.map((b: Json) => [b.id, b.currency, b.postedBalanceCents]),
    [
      [payer.accountId, 'USD', 10_000_000 - 10_000],
      [yen.accountId, 'JPY', 15_137],
    ].sort((a, b) => (String(a[0]) < String(b[0]) ? -1 : 1)),
  );

  const entries = await entriesOf(res.json.payment.id);
  assert.equal(entries.length, 4);
  assert.deepEqual(
    entries.map((e: Json) => [e.accountId, e.direction, e.amountCents, e.currency]).sort(),
    [
      [payer.accountId, 'debit', 10_000, 'USD'],
      ['acc_system_fx_usd', 'credit', 10_000, 'USD'],
      ['acc_system_fx_jpy', 'debit', 15_137, 'JPY'],
      [yen.accountId, 'credit', 15_137, 'JPY'],
    ].sort(),
  );
  assertBalancedPerCurrency(entries);
  assert.equal(await poolBalance('USD'), poolsBefore.usd + 10_000);
  assert.equal(await poolBalance('JPY'), poolsBefore.jpy - 15_137);
  assert.equal((await balanceOf(t, yen.accountId)).postedBalanceCents, 15_137);

  // The payment shows its quote when read back, and the replay repeats the first answer.
  const read = await t.request('GET', `/v1/payments/${res.json.payment.id}`);
  assert.deepEqual(read.json.payment.fx, res.json.payment.fx);
  const replay = await pay(t, fxBody(yen, 10_000, q.id), { token: payments, key: res.key });
  assert.equal(replay.body, res.body);
  assert.equal(replay.headers['idempotency-replayed'], 'true');
  await assertBooksValid(t);
});

test('ISO 4217 exponents: JPY (0) and BHD (3) convert exactly, rounded down; too small is a 422', async () => {
  // $12.50 at 0.376 BHD per dollar: 4.700 BHD, in fils.
  assert.equal((await quote('USD', 'BHD', 1_250)).destinationAmountCents, 4_700);
  // 1 cent is 0.00376 BHD: 3.76 fils, rounded down to 3.
  assert.equal((await quote('USD', 'BHD', 1)).destinationAmountCents, 3);
  // ¥1,000 at 0.006590 dollars per yen: $6.59.
  assert.equal((await quote('JPY', 'USD', 1_000)).destinationAmountCents, 659);
  // 1 BHD (1,000 fils) at 2.6525: $2.6525, rounded down to 265 cents.
  assert.equal((await quote('BHD', 'USD', 1_000)).destinationAmountCents, 265);
  // ¥1 is $0.00659: less than a cent.
  const tooSmall = await t.request('POST', '/v1/fx-quotes', {
    token: payments,
    body: { sourceCurrency: 'JPY', destinationCurrency: 'USD', sourceAmountCents: 1 },
  });
  assert.equal(tooSmall.status, 422, tooSmall.body);
  assert.equal(tooSmall.json.error.code, 'FX_AMOUNT_OUT_OF_RANGE');
  // Beyond the safe integers once converted: 1.5137 yen per cent. The other way round it fits (0.61 cents per yen).
  const tooLarge = await t.request('POST', '/v1/fx-quotes', {
    token: payments,
    body: { sourceCurrency: 'USD', destinationCurrency: 'JPY', sourceAmountCents: Number.MAX_SAFE_INTEGER },
  });
  assert.equal(tooLarge.status, 422, tooLarge.body);
  assert.equal(tooLarge.json.error.code, 'FX_AMOUNT_OUT_OF_RANGE');
  const large = await quote('JPY', 'EUR', Number.MAX_SAFE_INTEGER);
  assert.ok(Number.isSafeInteger(large.destinationAmountCents));
  // A BHD payment posts its fils exactly.
  const q = await quote('USD', 'BHD', 1_250);
  const res = await pay(t, fxBody(dinar, 1_250, q.id), { token: payments });
  assert.equal(res.status, 201, res.body);
  assert.equal((await balanceOf(t, dinar.accountId)).postedBalanceCents, 4_700);
  assertBalancedPerCurrency(await entriesOf(res.json.payment.id));
  await assertBooksValid(t);
});

test('a used, an expired and a mismatched quote are 422s with their codes, and nothing moves', async () => {
  const refused = async (body: Json, code: string, status = 422, token = payments) => {
    const before = await paymentsState(t, [payer, yen, euro]);
    const res = await pay(t, body, { token });
    assert.equal(res.status, status, res.body);
    assert.equal(res.json.error.code, code, res.body);
    assert.deepEqual(await paymentsState(t, [payer, yen, euro]), before, `${code}: nothing moved`);
    return res;
  };
  const used = await quote('USD', 'JPY', 5_000);
  assert.equal((await pay(t, fxBody(yen, 5_000, used.id), { token: payments })).status, 201);
  await refused(fxBody(yen, 5_000, used.id), 'FX_QUOTE_USED');

  const expiring = await quote('USD', 'JPY', 5_000);
  clock.advance(60_000);
  await refused(fxBody(yen, 5_000, expiring.id), 'FX_QUOTE_EXPIRED');

  const q = await quote('USD', 'JPY', 5_000);
  const other = await party(t, { balance: 100_000, currency: 'EUR' });
  const mismatch = await refused(fxBody(yen, 5_001, q.id), 'FX_QUOTE_MISMATCH');
  assert.deepEqual(
    mismatch.json.error.details.map((d: Json) => d.field),
    ['/amountCents'],
  );
  // The payment's currency, the destination's currency, the source's currency, another key.
  await refused(fxBody(yen, 5_000, q.id, { currency: 'EUR' }), 'FX_QUOTE_MISMATCH');
  await refused(fxBody(euro, 5_000, q.id), 'FX_QUOTE_MISMATCH');
  await refused(fxBody(yen, 5_000, q.id, { sourceAccountId: other.accountId }), 'FX_QUOTE_MISMATCH');
  await refused(fxBody(yen, 5_000, q.id), 'FX_QUOTE_MISMATCH', 422, (await apiKey(t, 'payments')).token);
  // A quote on a payment within one currency is a mismatch too (a quote always crosses currencies).
  const usdPayee = await party(t);
  await refused(fxBody(usdPayee, 5_000, q.id), 'FX_QUOTE_MISMATCH');
  await refused(fxBody(yen, 5_000, 'fxq_0000000000nothinghere000000'), 'FX_QUOTE_NOT_FOUND', 404);
  // None of the refusals used it: the quote still pays once.
  assert.equal((await pay(t, fxBody(yen, 5_000, q.id), { token: payments })).status, 201);
  await assertBooksValid(t);
});

test('across currencies without a quote: declined as currency_mismatch, as before', async () => {
  const before = await balanceOf(t, payer.accountId);
  // An amount of its own: the same source, destination and amount within a minute is a pattern rule's too.
  const res = await pay(t, { ...fxBody(yen, 4_321, 'x'), quoteId: undefined }, { token: payments });
  assert.equal(res.status, 422, res.body);
  assert.equal(res.json.payment.status, 'declined');
  assert.deepEqual(res.json.payment.reasons, ['currency_mismatch']);
  assert.equal(res.json.payment.fx, null);
  assert.deepEqual(await balanceOf(t, payer.accountId), before);
});

test('concurrent payments with one quote: exactly one posts, the others are FX_QUOTE_USED', async () => {
  const q = await quote('USD', 'EUR', 7_000);
  const results = await Promise.all(
    Array.from({ length: 8 }, () => pay(t, fxBody(euro, 7_000, q.id), { token: payments })),
  );
  const statuses = results.map((r) => r.status).sort();
  assert.deepEqual(statuses, [201, 422, 422, 422, 422, 422, 422, 422], results.map((r) => r.body).join('\n'));
  for (const r of results.filter((x) => x.status === 422)) assert.equal(r.json.error.code, 'FX_QUOTE_USED');
  // $70.00 at 0.9235: €64.64 (64.645 rounded down), once.
  assert.equal((await balanceOf(t, euro.accountId)).postedBalanceCents, 6_464);
  await assertBooksValid(t);
});

test('a held FX payment: approval posts at the quoted rate after the quote expired; no refund', async () => {
  const q = await quote('USD', 'EUR', REVIEW_AMOUNT);
  const held = await pay(t, fxBody(euro, REVIEW_AMOUNT, q.id), { token: payments });
  assert.equal(held.status, 202, held.body);
  assert.equal(held.json.payment.fx.destinationAmountCents, 230_875);
  // Held in the source currency on the source; the quote is used by this payment.
  assert.equal((await balanceOf(t, payer.accountId)).heldBalanceCents, REVIEW_AMOUNT);
  const eurBefore = (await balanceOf(t, euro.accountId)).postedBalanceCents;
  clock.advance(10 * 60_000);
  const approved = await t.request('POST', `/v1/payments/${held.json.payment.id}/approve`, {
    token: compliance,
  });
  assert.equal(approved.status, 201, approved.body);
  assert.equal((await balanceOf(t, euro.accountId)).postedBalanceCents, eurBefore + 230_875);
  assert.equal((await balanceOf(t, payer.accountId)).heldBalanceCents, 0);
  const entries = await entriesOf(held.json.payment.id);
  assert.equal(entries.length, 4);
  assertBalancedPerCurrency(entries);

  const refund = await t.request('POST', `/v1/payments/${held.json.payment.id}/refunds`, {
    token: payments,
    idempotencyKey: randomUUID(),
    body: {},
  });
  assert.equal(refund.status, 409, refund.body);
  assert.equal(refund.json.error.code, 'PAYMENT_NOT_REFUNDABLE');
  await assertBooksValid(t);
});

test('quote requests: bad input is a 400, an unoffered pair a 422, roles as for payments', async () => {
  const bad = [
    { sourceCurrency: 'USD', destinationCurrency: 'JPY', sourceAmountCents: 1.5 },
    { sourceCurrency: 'USD', destinationCurrency: 'JPY', sourceAmountCents: 2 ** 53 },
    { sourceCurrency: 'USD', destinationCurrency: 'JPY', sourceAmountCents: 0 },
    { sourceCurrency: 'USD', destinationCurrency: 'JPY', sourceAmountCents: '100' },
    { sourceCurrency: 'QQQ', destinationCurrency: 'JPY', sourceAmountCents: 100 },
    { sourceCurrency: 'usd', destinationCurrency: 'JPY', sourceAmountCents: 100 },
    { sourceCurrency: 'USD', destinationCurrency: 'USD', sourceAmountCents: 100 },
    { sourceCurrency: 'USD', destinationCurrency: 'JPY' },
    { sourceCurrency: 'USD', destinationCurrency: 'JPY', sourceAmountCents: 100, rate: '999' },
    '{"sourceCurrency":"USD","destinationCurrency":"JPY","sourceAmountCents":100,"__proto__":{"x":1}}',
  ];
  for (const body of bad) {
    const res = await t.request('POST', '/v1/fx-quotes', { token: payments, body });
    assert.equal(res.status, 400, `${JSON.stringify(body)}: ${res.body}`);
  }
  const unoffered = await t.request('POST', '/v1/fx-quotes', {
    token: payments,
    body: { sourceCurrency: 'USD', destinationCurrency: 'CHF', sourceAmountCents: 100 },
  });
  assert.equal(unoffered.status, 422);
  assert.equal(unoffered.json.error.code, 'FX_PAIR_NOT_OFFERED');
  // A malformed quote id on a payment is a 400 before anything is read.
  const malformed = await pay(t, fxBody(yen, 100, '__proto__'), { token: payments });
  assert.equal(malformed.status, 400, malformed.body);

  const auditor = (await apiKey(t, 'auditor')).token;
  const forbidden = await t.request('POST', '/v1/fx-quotes', {
    token: auditor,
    body: { sourceCurrency: 'USD', destinationCurrency: 'JPY', sourceAmountCents: 100 },
  });
  assert.equal(forbidden.status, 403);
  // The admin demo token may quote; under an Idempotency-Key a retry replays the same quote.
  const key = randomUUID();
  const body = { sourceCurrency: 'USD', destinationCurrency: 'JPY', sourceAmountCents: 100 };
  const first = await t.request('POST', '/v1/fx-quotes', { body, idempotencyKey: key });
  const again = await t.request('POST', '/v1/fx-quotes', { body, idempotencyKey: key });
  assert.equal(first.status, 201, first.body);
  assert.equal(again.body, first.body);
  assert.equal(again.headers['idempotency-replayed'], 'true');
  // Audited.
  const logs = await t.request('GET', '/v1/audit-logs?limit=500');
  assert.ok(
    logs.json.logs.some(
      (l: Json) => l.eventType === 'fx_quote.created' && l.resourceId === first.json.quote.id,
    ),
  );
});
