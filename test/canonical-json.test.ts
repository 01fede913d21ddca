import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { auditEntryHash, checkAuditLink, GENESIS_HASH, sealAuditEntry } from '../src/domain/audit.ts';
import { canonicalJson } from '../src/domain/canonical-json.ts';
import { requestFingerprint } from '../src/domain/idempotency.ts';

/**
 * RFC 8785 canonical JSON (the basis of audit hashes and idempotency fingerprints) and the audit chain's
 * pure functions. An outside verifier must get the same bytes from the same value, so key order, nesting
 * and Unicode handling are pinned down here, including the RFC's own sorting example.
 */
describe('canonicalJson', () => {
  test('keys are sorted and there is no whitespace', () => {
    assert.equal(
      canonicalJson({ b: 1, a: 2, c: { z: true, y: null } }),
      '{"a":2,"b":1,"c":{"y":null,"z":true}}',
    );
  });

  test('insertion order does not matter, at any depth', () => {
    const one = { x: { b: [1, { d: 1, c: 2 }], a: 'A' }, w: 0 };
    const two = { w: 0, x: { a: 'A', b: [1, { c: 2, d: 1 }] } };
    assert.equal(canonicalJson(one), canonicalJson(two));
    assert.equal(canonicalJson(one), '{"w":0,"x":{"a":"A","b":[1,{"c":2,"d":1}]}}');
  });

  test('arrays keep their order', () => {
    assert.equal(canonicalJson([3, 1, 2, ['b', 'a']]), '[3,1,2,["b","a"]]');
    assert.notEqual(canonicalJson([1, 2]), canonicalJson([2, 1]));
  });

  test('the RFC 8785 sorting example: keys in UTF-16 code unit order', () => {
    // RFC 8785 section 3.2.3: the emoji (a surrogate pair, 0xD83D...) sorts before U+FB33, unlike code point order.
    const input = {
      '\u20ac': 'Euro Sign',
      '\r': 'Carriage Return',
      '\ufb33': 'Hebrew Letter Dalet With Dagesh',
      '1': 'One',
      '\ud83d\ude00': 'Emoji: Grinning Face',
      '\u0080': 'Control',
      '\u00f6': 'Latin Small Letter O With Diaeresis',
    };
    // Compared as text: JSON.parse would put the integer-like key "1" first whatever the text says.
    const expected = ['\r', '1', '\u0080', '\u00f6', '\u20ac', '\ud83d\ude00', '\ufb33']
      .map((k) => `${JSON.stringify(k)}:${JSON.stringify(input[k as keyof typeof input])}`)
      .join(',');
    assert.equal(canonicalJson(input), `{${expected}}`);
    assert.ok(canonicalJson(input).startsWith('{"\\r":"Carriage Return","1":"One","\u0080":'));
  });

  test('strings: non-ASCII stays literal, control characters are escaped as ECMAScript does', () => {
    assert.equal(canonicalJson('é€😀'), '"é€😀"');
    assert.equal(canonicalJson('a"b\\c\n\t\u0001\u001f'), '"a\\"b\\\\c\\n\\t\\u0001\\u001f"');
    assert.equal(canonicalJson('\u2028'), '"\u2028"');
    // A lone surrogate is escaped, so the output is always well-formed UTF-8.
    assert.equal(canonicalJson('\ud800'), '"\\ud800"');
    assert.equal(canonicalJson({ ключ: 'значение' }), '{"ключ":"значение"}');
  });

  test('numbers: safe integers only; -0 is 0', () => {
    assert.equal(canonicalJson(0), '0');
    assert.equal(canonicalJson(-0), '0');
    assert.equal(canonicalJson(Number.MAX_SAFE_INTEGER), '9007199254740991');
    assert.equal(canonicalJson(-Number.MAX_SAFE_INTEGER), '-9007199254740991');
    for (const bad of [1.5, Number.MAX_SAFE_INTEGER + 1, Number.NaN, Number.POSITIVE_INFINITY, 1e21]) {
      assert.throws(() => canonicalJson({ n: bad }), `refuses ${bad}`);
    }
  });

  test('undefined properties are left out, as JSON.stringify does; other non-JSON values throw', () => {
    assert.equal(canonicalJson({ a: undefined, b: 1 }), '{"b":1}');
    assert.throws(() => canonicalJson(10n));
    assert.throws(() => canonicalJson({ f: () => 1 }));
    assert.throws(() => canonicalJson(undefined));
  });

  // JSON values as the service produces them: safe integers, any strings, nested objects and arrays.
  const jsonValue = fc.letrec((tie) => ({
    value: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      fc.constant(null),
      fc.boolean(),
      fc.maxSafeInteger(),
      fc.string({ unit: 'grapheme' }),
      fc.array(tie('value')),
      fc.dictionary(fc.string({ unit: 'grapheme' }), tie('value'), { noNullPrototype: true }),
    ),
  })).value;

  /** Rebuilds an object with its keys in a random order, recursively. */
  function shuffled(value: unknown, seed: number): unknown {
    if (Array.isArray(value)) return value.map((v) => shuffled(v, seed));
    if (value === null || typeof value !== 'object') return value;
    const entries = Object.entries(value);
    entries.sort((a, b) => ((a[0].length * 31 + seed) % 7) - ((b[0].length * 31 + seed) % 7));
    return Object.fromEntries(entries.reverse().map(([k, v]) => [k, shuffled(v, seed + 1)]));
  }

  test('property: parses back to the same value, is invariant under key order, and is a fixed point', () => {
    fc.assert(
      fc.property(jsonValue, fc.nat(), (value, seed) => {
        const text = canonicalJson(value);
        assert.deepEqual(JSON.parse(text), value);
        assert.equal(canonicalJson(shuffled(value, seed)), text);
        assert.equal(canonicalJson(JSON.parse(text)), text, 'idempotent');
      }),
      { numRuns: 1_000 },
    );
  });
});

describe('request fingerprints', () => {
  test('key order in the body does not change the fingerprint; any value does', () => {
    const a = requestFingerprint('POST', '/v1/payments', { amountCents: 1, currency: 'USD' });
    const b = requestFingerprint('POST', '/v1/payments', { currency: 'USD', amountCents: 1 });
    assert.equal(a, b);
    assert.notEqual(a, requestFingerprint('POST', '/v1/payments', { currency: 'USD', amountCents: 2 }));
    assert.notEqual(a, requestFingerprint('POST', '/v1/refunds', { currency: 'USD', amountCents: 1 }));
    // An absent note and an undefined note are the same request.
    assert.equal(
      a,
      requestFingerprint('POST', '/v1/payments', { amountCents: 1, currency: 'USD', note: undefined }),
    );
  });
});

describe('audit chain (pure)', () => {
  const draft = {
    eventType: 'payment.posted',
    actorId: 'key_test',
    requestId: 'req_1',
    resourceType: 'payment',
    resourceId: 'pay_1',
    metadata: { amountCents: 100, reasons: [], nested: { b: 1, a: 'é' } },
  };
  const first = sealAuditEntry(draft, { index: 0, prevHash: GENESIS_HASH }, 'aud_1', Date.UTC(2026, 0, 1));
  const second = sealAuditEntry(
    { ...draft, resourceId: 'pay_2' },
    { index: 1, prevHash: first.hash },
    'aud_2',
    Date.UTC(2026, 0, 2),
  );

  test('the hash is SHA-256 hex of the canonical JSON of the entry without its hash', () => {
    const { hash, ...rest } = first;
    const expected = createHash('sha256').update(canonicalJson(rest), 'utf8').digest('hex');
    assert.equal(hash, expected);
    assert.equal(first.timestamp, '2026-01-01T00:00:00.000Z');
    assert.equal(auditEntryHash(first), hash, 'a present hash field is not part of what is hashed');
    // The exact text hashed, for a verifier written in any language.
    assert.equal(
      canonicalJson(rest),
      '{"actorId":"key_test","eventType":"payment.posted","id":"aud_1","index":0,' +
        '"metadata":{"amountCents":100,"nested":{"a":"é","b":1},"reasons":[]},"prevHash":"GENESIS",' +
        '"requestId":"req_1","resourceId":"pay_1","resourceType":"payment","timestamp":"2026-01-01T00:00:00.000Z"}',
    );
  });

  test('an intact chain checks out', () => {
    assert.equal(checkAuditLink(first, 0, GENESIS_HASH), null);
    assert.equal(checkAuditLink(second, 1, first.hash), null);
  });

  test('any edited field, a wrong link or a gap is found', () => {
    const edits: Partial<typeof first>[] = [
      { eventType: 'payment.declined' },
      { actorId: 'key_other' },
      { requestId: 'req_2' },
      { resourceType: 'account' },
      { resourceId: 'pay_x' },
      { metadata: { ...draft.metadata, amountCents: 101 } },
      { timestamp: '2026-01-01T00:00:00.001Z' },
      { id: 'aud_x' },
    ];
    for (const edit of edits) {
      assert.match(
        String(checkAuditLink({ ...second, ...edit }, 1, first.hash)),
        /hash/,
        JSON.stringify(edit),
      );
    }
    assert.match(String(checkAuditLink(second, 1, 'f'.repeat(64))), /prevHash/);
    assert.match(String(checkAuditLink(second, 2, first.hash)), /index gap/);
  });

  test('sealing refuses a broken link', () => {
    assert.throws(() => sealAuditEntry(draft, { index: 0, prevHash: 'x' }, 'aud_1', 0));
    assert.throws(() => sealAuditEntry(draft, { index: 1, prevHash: GENESIS_HASH }, 'aud_1', 0));
    assert.throws(() => sealAuditEntry(draft, { index: -1, prevHash: GENESIS_HASH }, 'aud_1', 0));
  });
});
