import { CONFUSABLES_LATIN } from './confusables-latin.ts';

/**
 * One canonicalisation of identity text, used by everything that compares what a human would read as the
 * same: sanctions screening, duplicate-customer detection and keyword rules. Two strings that look alike to a
 * person must canonicalise alike, whatever invisible or look-alike characters an attacker puts in them.
 *
 *   skeleton        removal of default-ignorable and format characters (zero-width space, soft hyphen, word
 *                   joiner, bidi marks, embeddings, overrides and isolates, variation selectors); every
 *                   character that Unicode's UTS #39 confusables data says looks like Latin letters or digits
 *                   replaced by them (Cyrillic "а" → "a", Greek "Ν" → "N"); NFKC (fullwidth forms, ligatures,
 *                   compatibility digits); diacritics removed; case folding; and every run of whitespace,
 *                   control characters, punctuation and symbols collapsed to one space. "Ivan Sidorenko",
 *                   "SIDO\u00ADRENKO, Ivan" and "Іvаn Ѕіdоrеnkо" (Cyrillic) all give "ivan sidorenko" / "sidorenko ivan".
 *   compactSkeleton the skeleton without separators: "AB-12 34", "ab1234" and "аb１２３４" are one document,
 *                   and "crypto-mixer", "cryptomixer" and "crypto  mixer" one phrase.
 *
 * Pure and deterministic. A change of any of this changes which strings compare equal, so it is versioned:
 * bump CANONICALISATION_VERSION, and the screening version of every decision and customer changes with it.
 */
export const CANONICALISATION_VERSION = 'canon-1';

// Removed outright: a human cannot see them, so they must not separate or join anything.
const INVISIBLE = /[\p{Default_Ignorable_Code_Point}\p{Cf}]/gu;
// Control characters (tabs, newlines, NUL), whitespace, punctuation and symbols all separate words alike.
const SEPARATORS = /[\p{Cc}\p{Z}\s\p{P}\p{S}]+/gu;
const MARKS = /\p{M}+/gu;
const NON_ASCII = /[^\p{ASCII}]/u;

const LATIN_PROTOTYPE = new Map<string, string>(CONFUSABLES_LATIN);

/** Full case folding, close enough: upper-casing first folds "ß" to "ss" as Unicode's CaseFolding does. */
function caseFold(text: string): string {
  return text.toUpperCase().toLowerCase();
}

export function skeleton(text: string): string {
  // Look-alikes are mapped before compatibility normalisation (NFKC turns "🯰", segmented digit zero, which
  // looks like "O", into "0") and before case folding ("Ν", Greek capital nu, looks like "N" while its lower
  // case "ν" looks like "v"); and once more after both, for what they produced.
  let plain = toLatinPrototypes(text.replace(INVISIBLE, ''));
  plain = stripMarks(caseFold(plain.normalize('NFKC')).replace(INVISIBLE, ''));
  plain = toLatinPrototypes(plain).toLowerCase();
  return plain.replace(SEPARATORS, ' ').trim();
}

function stripMarks(text: string): string {
  return text.normalize('NFD').replace(MARKS, '');
}

function toLatinPrototypes(text: string): string {
  if (!NON_ASCII.test(text)) return text;
  let out = '';
  for (const char of text) out += LATIN_PROTOTYPE.get(char) ?? char;
  return out;
}

export function compactSkeleton(text: string): string {
  return skeleton(text).replaceAll(' ', '');
}

// Bidi embeddings, overrides and isolates reorder what a reader sees: never part of a real name.
const BIDI_CONTROLS = /[\u202A-\u202E\u2066-\u2069]/u;
const CONTROL = /\p{Cc}/u;
const FORMAT = /[\p{Cf}]/u;

/**
 * Why a string cannot be a person's or a company's name, or null when it can: bidi controls, control
 * characters, format characters (zero-width and joiner characters, soft hyphens, bidi marks), or nothing left
 * once canonicalised. Screening sees the canonical form; the name is stored as sent.
 */
export function nameProblem(name: string): string | null {
  if (BIDI_CONTROLS.test(name)) return 'must not contain bidirectional control characters';
  if (CONTROL.test(name)) return 'must not contain control characters';
  if (FORMAT.test(name)) return 'must not contain invisible formatting characters';
  if (skeleton(name) === '') return 'must contain letters or digits';
  return null;
}
