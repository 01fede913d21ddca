import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { jaroWinkler, nameTokens, parseSanctionsList, screenName } from './sanctions.ts';

const list = parseSanctionsList(
  readFileSync('config/sanctions/sdn-sample.csv', 'utf8'),
  readFileSync('config/sanctions/alt-sample.csv', 'utf8'),
);

test('Jaro-Winkler matches the published reference values', () => {
  // Winkler (1990) / the usual textbook pairs.
  assert.equal(jaroWinkler('martha', 'marhta').toFixed(4), '0.9611');
  assert.equal(jaroWinkler('dixon', 'dicksonx').toFixed(4), '0.8133');
  assert.equal(jaroWinkler('dwayne', 'duane').toFixed(4), '0.8400');
  assert.equal(jaroWinkler('abc', 'abc'), 1);
  assert.equal(jaroWinkler('abc', 'xyz'), 0);
});

test('names are normalised: Unicode, case, punctuation; order does not matter to the score', () => {
  assert.deepEqual(nameTokens('SIDORENKO, Ivan'), ['sidorenko', 'ivan']);
  assert.deepEqual(nameTokens('  Ivan   Sidorenko '), ['ivan', 'sidorenko']);
  assert.deepEqual(nameTokens('Ramón Ortiz-Valdez'), ['ramon', 'ortiz', 'valdez']);
  assert.deepEqual(nameTokens('ＩＶＡＮ'), ['ivan']);
});

test('the list parser reads RFC 4180 records: quoted commas, quotes and newlines, and the -0- marker', () => {
  const parsed = parseSanctionsList(
    '1,"A, B","x ""y""",-0- ,"a remark\r\nover two lines"\n2,"C D",-0- ,P\n\u001a',
    '1,9,"aka","E\nF",-0- \n',
  );
  assert.deepEqual(
    parsed.entries.map((e) => [e.entryId, e.aliasId, e.kind, e.program, e.tokens]),
    [
      ['1', null, 'x "y"', '', ['a', 'b']],
      ['2', null, '', 'P', ['c', 'd']],
      ['1', '9', 'x "y"', '', ['e', 'f']],
    ],
  );
  assert.equal(list.entries.filter((e) => e.aliasId === null).length, 8);
  assert.equal(list.entries.filter((e) => e.aliasId !== null).length, 4);
  assert.equal(list.entries[0]!.entryId, '1001');
  assert.equal(list.entries[0]!.program, 'SYNTH-1');
  assert.match(list.sha256, /^[0-9a-f]{64}$/);
  assert.throws(() => parseSanctionsList('not,a,list,line'), /sdn\.csv record ending on line 1/);
  assert.throws(() => parseSanctionsList('1,"A",x,P', '7,1,"aka","B",-0-'), /names entry 7/);
});

test('the screening version changes with the aliases file', () => {
  const sdn = readFileSync('config/sanctions/sdn-sample.csv', 'utf8');
  assert.notEqual(parseSanctionsList(sdn).sha256, list.sha256);
  assert.equal(parseSanctionsList(sdn).sha256, parseSanctionsList(sdn, null).sha256);
});

test('an alias matches its entry and says so', () => {
  assert.deepEqual(screenName(list, 'Vanya Sidorenko'), { scoreBp: 10_000, entryId: '1001', aliasId: '501' });
  assert.deepEqual(screenName(list, 'Blackwater Harbour Shipping LLC'), {
    scoreBp: 10_000,
    entryId: '1005',
    aliasId: '503',
  });
  // The primary name wins a tie with an alias.
  assert.equal(screenName(list, 'Ivan Sidorenko').aliasId, null);
});

test('invisible characters and look-alike letters do not hide a listed name', () => {
  const variants = [
    'Ivan Sido\u200Brenko', // zero-width space
    'Ivan Sido\u00ADrenko', // soft hyphen
    'Ivan Sido\u2060renko', // word joiner
    'Iv\uFE0Fan Sidorenko', // variation selector
    'Ivan Sidorenko\u200F', // right-to-left mark
    '\u0406v\u0430n \u0405\u0456d\u043Er\u0435nk\u043E', // Cyrillic І, а, Ѕ, і, о, е
    '\u0399\u03BD\u03B1\u03B7 SIDORENKO'.replace('\u03BD\u03B1\u03B7', 'VAN'), // Greek capital iota
    'IVAN SIDORENKO',
    '\uFF29\uFF56\uFF41\uFF4E \uFF33\uFF49\uFF44\uFF4F\uFF52\uFF45\uFF4E\uFF4B\uFF4F', // fullwidth
    'Ivan Sidorenko'.normalize('NFD'),
    'Ivan\u00A0Sidorenko', // no-break space
    'Ivan Sido-renko', // a separator inside a listed word
    'Ivan Sido renko',
  ];
  for (const name of variants) {
    assert.equal(screenName(list, name).scoreBp, 10_000, JSON.stringify(name));
  }
});

test('screening scores exact, reordered, fuzzy and unrelated names', () => {
  const cases: [string, (s: number) => boolean, string][] = [
    ['Ivan Sidorenko', (s) => s === 1, 'exact'],
    ['Sidorenko, Ivan', (s) => s === 1, 'LAST, First order'],
    ['Ivan Sidorenco', (s) => s >= 0.95, 'one letter off: a match'],
    ['Ivon Sidarenka', (s) => s >= 0.85 && s < 0.95, 'several letters off: a possible match'],
    ['Ivan', (s) => s < 0.85, 'a partial name is not a match'],
    ['Alice Carter', (s) => s < 0.85, 'unrelated'],
  ];
  for (const [name, ok, why] of cases) {
    const result = screenName(list, name);
    assert.ok(ok(result.scoreBp / 10_000), `${name}: ${why} (score ${result.scoreBp} bp)`);
  }
  assert.equal(screenName(list, 'Ivan Sidorenko').entryId, '1001');
});
