import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import fc from 'fast-check';
import { compactSkeleton, nameProblem, skeleton } from './canonical-text.ts';
import { CONFUSABLES_LATIN } from './confusables-latin.ts';
import { DEFAULT_POLICY } from './default-policy.ts';
import { sanctionsLevel } from './features.ts';
import { parseSanctionsList, screenName } from './sanctions.ts';

const list = parseSanctionsList(
  readFileSync('config/sanctions/sdn-sample.csv', 'utf8'),
  readFileSync('config/sanctions/alt-sample.csv', 'utf8'),
);

// Characters a person cannot see: format characters, default-ignorables, bidi marks, isolates and overrides.
const INVISIBLES = [
  '\u00AD', // soft hyphen
  '\u034F', // combining grapheme joiner
  '\u061C', // Arabic letter mark
  '\u115F', // Hangul choseong filler
  '\u180E', // Mongolian vowel separator
  '\u200B', // zero-width space
  '\u200C', // zero-width non-joiner
  '\u200D', // zero-width joiner
  '\u200E', // left-to-right mark
  '\u200F', // right-to-left mark
  '\u202A', // left-to-right embedding
  '\u202E', // right-to-left override
  '\u2060', // word joiner
  '\u2066', // left-to-right isolate
  '\u2069', // pop directional isolate
  '\u3164', // Hangul filler
  '\uFE00', // variation selector 1
  '\uFE0F', // variation selector 16
  '\uFEFF', // zero-width no-break space (BOM)
  '\u{E0041}', // tag latin capital letter A
  '\u{E0100}', // variation selector 17
];

/** Every look-alike of each Latin letter, from the same UTS #39 data the skeleton uses. */
const LOOK_ALIKES = new Map<string, string[]>();
for (const [char, prototype] of CONFUSABLES_LATIN) {
  if (prototype.length !== 1) continue;
  LOOK_ALIKES.set(prototype, [...(LOOK_ALIKES.get(prototype) ?? []), char]);
}

const fullwidth = (c: string) => (/[!-~]/.test(c) ? String.fromCodePoint(c.codePointAt(0)! + 0xfee0) : c);

/** One character of a listed name, disguised in one of the ways a person would not notice. */
function disguisedChar(c: string): fc.Arbitrary<string> {
  const options: fc.Arbitrary<string>[] = [
    fc.constant(c),
    fc.constantFrom(c.toUpperCase(), c.toLowerCase()),
    fc.constant(fullwidth(c)),
    fc.tuple(fc.constantFrom(...INVISIBLES), fc.constant(c)).map(([i, ch]) => i + ch),
  ];
  const lookAlikes = [...(LOOK_ALIKES.get(c) ?? []), ...(LOOK_ALIKES.get(c.toUpperCase()) ?? [])];
  if (lookAlikes.length > 0) options.push(fc.constantFrom(...lookAlikes));
  return fc.oneof(...options);
}

function disguisedName(name: string): fc.Arbitrary<string> {
  return fc
    .tuple(fc.tuple(...[...name].map(disguisedChar)), fc.constantFrom('NFC', 'NFD', null))
    .map(([chars, form]) => (form === null ? chars.join('') : chars.join('').normalize(form)));
}

const LISTED_NAMES = [
  'SIDORENKO, Ivan',
  'Marta Ilyinichna Kovalenko',
  'GRANITE PEAK LOGISTICS FZE',
  'Zina Volkova',
];

test('no look-alike variant of a listed name screens as clean (property)', () => {
  for (const listed of LISTED_NAMES) {
    fc.assert(
      fc.property(disguisedName(listed), (variant) => {
        const { scoreBp } = screenName(list, variant);
        const level = sanctionsLevel(scoreBp, DEFAULT_POLICY);
        assert.notEqual(level, 'none', `${JSON.stringify(variant)} scored ${scoreBp} bp`);
      }),
      { numRuns: 500 },
    );
  }
});

test('one document reference, however it is written, has one compact skeleton', () => {
  const variants = [
    'AB-123456',
    'AB-123456'.normalize('NFD'),
    'ab-123456',
    'AB-123\u200B456',
    'AB-\uFF11\uFF12\uFF13\uFF14\uFF15\uFF16', // fullwidth digits
    'AB 123456',
    '\u0410\u0412-123456', // Cyrillic А and В
    'AB-123456\u200F',
  ];
  for (const v of variants) assert.equal(compactSkeleton(v), 'ab123456', JSON.stringify(v));
  assert.equal(compactSkeleton('É-1'), compactSkeleton('E\u0301-1'));
});

test('keyword phrases match across separators, invisible characters and look-alikes', () => {
  const term = compactSkeleton('crypto mixer');
  for (const note of [
    'crypto  mixer',
    'crypto\u00A0mixer',
    'crypto\u200Bmixer',
    'crypto-mixer',
    'cryptomixer',
    '\u0441rypto mixer',
    'CRYPTO MIXER',
  ]) {
    assert.ok(compactSkeleton(note).includes(term), JSON.stringify(note));
  }
});

test('names that cannot be real are refused; real names in any script are not', () => {
  for (const bad of [
    '\u202EIvan',
    'Iv\u200Ban',
    'Iv\u00ADan',
    'Iv\u2060an',
    'Ivan\u200F',
    'a\u0000b',
    '---',
    '\u3164',
  ]) {
    assert.notEqual(nameProblem(bad), null, JSON.stringify(bad));
  }
  for (const good of [
    'José Ñúñez',
    "Seán O'Brien",
    '山田 太郎',
    'محمد علي',
    'Zoë Ånström-Ødegaard',
    'Ivan',
  ]) {
    assert.equal(nameProblem(good), null, good);
    assert.notEqual(skeleton(good), '');
  }
});
