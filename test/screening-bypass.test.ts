import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { loadSanctionsList } from '../src/app/risk-config.ts';
import { PiiCipher } from '../src/security/pii-cipher.ts';
import { createAccount, type Party, party, pay, rawSql } from './support/fixtures.ts';
import { manualClock, startTestApp, TEST_DATA_KEY, type TestApp } from './support/harness.ts';

/**
 * The compliance bypasses of issue 12, tried through the HTTP API as an attacker would, each caught: listed
 * names disguised with invisible characters, look-alike letters, width, case and decomposition; aliases of a
 * listed entry; a customer stored before this canonicalisation; and suspicious-note phrases written around
 * the keyword rule.
 */
const MINUTE_MS = 61_000;
const SCREENING_VERSION = loadSanctionsList(null).sha256;

let t: TestApp;
const clock = manualClock();
let sender: Party;

before(async () => {
  t = await startTestApp({ clock: clock.now });
  sender = await party(t, { balance: 10_000_000 });
});
after(async () => {
  await t.destroy();
});

/** Pays 1,000 cents, then moves the clock past the one-minute velocity and pattern windows. */
async function payTo(to: Party, note?: string) {
  const res = await pay(t, {
    sourceAccountId: sender.accountId,
    destinationAccountId: to.accountId,
    amountCents: 1_000,
    currency: 'USD',
    ...(note === undefined ? {} : { note }),
  });
  clock.advance(MINUTE_MS);
  return res;
}

describe('a listed name in disguise is still screened', () => {
  const disguises: [string, string][] = [
    ['Cyrillic look-alikes', '\u0406v\u0430n \u0405\u0456d\u043Er\u0435nk\u043E'],
    ['Greek capitals', '\u0399VAN SID\u039FRENK\u039F'],
    ['fullwidth letters', '\uFF29\uFF56\uFF41\uFF4E \uFF33\uFF49\uFF44\uFF4F\uFF52\uFF45\uFF4E\uFF4B\uFF4F'],
    ['a variation selector inside', 'Iv\uFE0Fan Sidorenko'],
    ['mixed case', 'iVAN sIdOrEnKo'],
    ['a digit zero for an O', 'Ivan Sid0renko'],
    ['an alias from alt.csv', 'Vanya Sidorenko'],
  ];
  for (const [label, name] of disguises) {
    test(`${label}: onboarding holds the customer for review, a payment to it is declined`, async () => {
      const listed = await party(t, { name });
      assert.equal(listed.customer.name, name, 'the name is stored and returned as sent');
      assert.equal(listed.customer.kycStatus, 'manual_review');
      const res = await payTo(listed);
      assert.equal(res.status, 422, res.body);
      assert.deepEqual(res.json.payment.reasons, ['sanctions_match']);
      const screening = res.json.payment.decision.sanctions;
      assert.equal(screening.listSha256, SCREENING_VERSION);
      assert.equal(screening.receiver.entryId, '1001');
      assert.equal(screening.receiver.aliasId, label.includes('alias') ? '501' : null);
    });
  }

  for (const [label, mark] of [
    ['zero-width space', '\u200B'],
    ['soft hyphen', '\u00AD'],
    ['word joiner', '\u2060'],
    ['right-to-left override', '\u202E'],
  ]) {
    test(`a name with a ${label} is refused at the edge, naming the field`, async () => {
      const res = await t.request('POST', '/v1/customers', {
        body: { name: `Ivan Sido${mark}renko`, country: 'US', documentReference: `DOC-${label}` },
      });
      assert.equal(res.status, 400, res.body);
      assert.equal(res.json.error.code, 'VALIDATION_ERROR');
      assert.equal(res.json.error.details[0].field, '/name');
    });
  }

  test('a customer stored before this canonicalisation is screened again at payment time', async () => {
    // As an older version would have stored it: a zero-width space in the name, screened clean.
    const customer = await party(t, { name: 'Stored Earlier' });
    const cipher = new PiiCipher([Buffer.from(TEST_DATA_KEY, 'base64')]);
    const changed = await rawSql(
      t.db,
      'UPDATE customers SET name_enc = ?, sanctions_list_sha256 = ?, sanctions_score_bp = 7900, sanctions_entry_id = NULL WHERE id = ?',
      [cipher.encrypt('Ivan Sido\u200Brenko', 'customer.name'), 'a'.repeat(64), customer.customerId],
    );
    assert.equal(changed, 1);
    const res = await payTo(customer);
    assert.equal(res.status, 422, res.body);
    assert.deepEqual(res.json.payment.reasons, ['sanctions_match']);
    assert.equal(res.json.payment.decision.sanctions.receiver.scoreBp, 10_000);
  });

  test('an unrelated name is still clean', async () => {
    const clean = await party(t, { name: 'Ivana Petrović' });
    assert.equal(clean.customer.kycStatus, 'verified');
    assert.equal((await payTo(clean)).status, 201);
  });
});

describe('the suspicious-note rule reads canonical text', () => {
  let receiver: Party;
  before(async () => {
    receiver = await party(t);
  });

  const notes = [
    'crypto  mixer',
    'crypto\u00A0mixer',
    'crypto\u200Bmixer',
    'crypto-mixer',
    'cryptomixer',
    '\u0441rypto mixer', // Cyrillic с
    'CRYPTO MIXER fees',
    'via a money-mule',
    'cash\u2060pickup at noon',
  ];
  for (const note of notes) {
    test(`${JSON.stringify(note)} is held for review`, async () => {
      const res = await payTo(receiver, note);
      assert.equal(res.status, 202, res.body);
      assert.deepEqual(res.json.payment.reasons, ['suspicious_payment_note']);
      assert.equal(res.json.payment.note, note, 'the note is stored as sent');
    });
  }

  test('an ordinary note posts', async () => {
    const res = await payTo(receiver, 'rent for March, cryptography book');
    assert.equal(res.status, 201, res.body);
  });
});

test('a look-alike of a listed name opening an account still holds every payment it sends', async () => {
  const listed = await party(t, { name: 'Marta Ilyinichna Kovalenk\u03BF', balance: 0 });
  assert.equal(listed.customer.kycStatus, 'manual_review');
  const account = await createAccount(t, listed.customerId, 'USD', 50_000);
  const res = await pay(t, {
    sourceAccountId: account.id,
    destinationAccountId: sender.accountId,
    amountCents: 1_000,
    currency: 'USD',
  });
  assert.equal(res.status, 422, res.body);
  assert.ok(res.json.payment.reasons.includes('sanctions_match'), res.body);
});
