import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { jaroWinkler, nameTokens, parseCsvLine, parseSdnCsv, screenName } from './sanctions.ts';

const list = parseSdnCsv(readFileSync('config/sanctions/sdn-sample.csv', 'utf8'));

test('Jaro-Winkler matches the published reference values', () => {
  // Winkler (1990) / the usual textbook pairs.
  assert.equal(jaroWinkler('martha', 'marhta').toFixed(4), '0.9611');
  assert.equal(jaroWinkler('dixon', 'dicksonx').toFixed(4), '0.8133');
  assert.equal(jaroWinkler('dwayne', 'duane').toFixed(4), '0.8400');
  assert.equal(jaroWinkler('abc', 'abc'), 1);
  assert.equal(jaroWinkler('abc', 'xyz'), 0);
});

test('names are normalised: Unicode, case, punctuation and "LAST, First" order', () => {
  assert.deepEqual(nameTokens('SIDORENKO, Ivan'), ['ivan', 'sidorenko']);
  assert.deepEqual(nameTokens('  Ivan   Sidorenko '), ['ivan', 'sidorenko']);
  assert.deepEqual(nameTokens('Ramón Ortiz-Valdez'), ['ramon', 'ortiz', 'valdez']);
  assert.deepEqual(nameTokens('ＩＶＡＮ'), ['ivan']);
});

test('the sdn.csv parser reads quoted fields and the -0- marker', () => {
  assert.deepEqual(parseCsvLine('1,"A, B","x ""y""",-0- '), ['1', 'A, B', 'x "y"', '-0-']);
  assert.equal(list.entries.length, 8);
  assert.equal(list.entries[0]!.entryId, '1001');
  assert.equal(list.entries[0]!.program, 'SYNTH-1');
  assert.match(list.sha256, /^[0-9a-f]{64}$/);
  assert.throws(() => parseSdnCsv('not,a,list,line'), /line 1/);
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
