import { createHash } from 'node:crypto';
import { parse } from 'csv-parse/sync';
import { CANONICALISATION_VERSION, skeleton } from './canonical-text.ts';

/**
 * Sanctions screening: a list in OFAC's legacy CSV format — `sdn.csv` (primary names) and, when given,
 * `alt.csv` (aliases: "a.k.a.", "f.k.a." names of the same entries) — with every name reduced to its
 * skeleton (src/domain/canonical-text.ts: invisible characters removed, look-alike letters mapped to Latin,
 * case and width folded) and scored with token-wise Jaro-Winkler. Pure: the list is parsed once at start-up,
 * and screening a name needs no I/O.
 */
export interface SanctionsEntry {
  entryId: string;
  /** The alias's `alt_num` when this name comes from alt.csv; null for the primary name. */
  aliasId: string | null;
  kind: string;
  program: string;
  tokens: string[];
}

export interface SanctionsList {
  /**
   * The screening version: SHA-256 over the canonicalisation version and the list files' bytes. A result
   * screened under another version (another list, or another canonicalisation) is screened again.
   */
  sha256: string;
  entries: SanctionsEntry[];
}

/** A score in basis points (0..10000 for similarity 0..1): an integer, so it hashes canonically. */
export interface ScreeningResult {
  scoreBp: number;
  entryId: string | null;
  /** Set when the best match was one of the entry's aliases (alt.csv), not its primary name. */
  aliasId: string | null;
}

const NULL_MARKER = '-0-';
const SDN_COLUMNS_MIN = 4;
const ALT_COLUMNS_MIN = 4;
const END_OF_FILE = '\u001a'; // OFAC's files end with a DOS end-of-file character

/** RFC 4180 records (quoted fields may hold commas, quotes and newlines), trimmed, "-0-" read as empty. */
function parseRecords(text: string, file: string, columnsMin: number): string[][] {
  const body = text.endsWith(END_OF_FILE) ? text.slice(0, -1) : text;
  const records = parse(body, {
    relax_column_count: true,
    skip_empty_lines: true,
    trim: true,
    info: true,
  }) as unknown as { record: string[]; info: { lines: number } }[];
  return records.map(({ record, info }) => {
    if (record.length < columnsMin || !/^\d+$/.test(record[0]!)) {
      throw new Error(
        `${file} record ending on line ${info.lines}: expected ${columnsMin}+ fields, the first an id`,
      );
    }
    return record.map((field) => (field === NULL_MARKER ? '' : field));
  });
}

/**
 * Parses sdn.csv (ent_num, SDN_Name, SDN_Type, Program, ...; no header) and, when given, alt.csv (ent_num,
 * alt_num, alt_type, alt_name, alt_remarks). An alias of an entry the sdn file does not have is an error: the
 * two files are one list.
 */
export function parseSanctionsList(sdnCsv: string, altCsv: string | null = null): SanctionsList {
  const entries: SanctionsEntry[] = [];
  const primaries = new Map<string, SanctionsEntry>();
  for (const [entryId, name, kind, program] of parseRecords(sdnCsv, 'sdn.csv', SDN_COLUMNS_MIN)) {
    const entry = {
      entryId: entryId!,
      aliasId: null,
      kind: kind!,
      program: program!,
      tokens: nameTokens(name!),
    };
    primaries.set(entry.entryId, entry);
    if (entry.tokens.length > 0) entries.push(entry);
  }
  for (const [entryId, aliasId, , name] of altCsv === null
    ? []
    : parseRecords(altCsv, 'alt.csv', ALT_COLUMNS_MIN)) {
    const primary = primaries.get(entryId!);
    if (primary === undefined)
      throw new Error(`alt.csv alias ${aliasId} names entry ${entryId}, which sdn.csv does not list`);
    const tokens = nameTokens(name!);
    if (tokens.length > 0) entries.push({ ...primary, aliasId: aliasId!, tokens });
  }
  const sha256 = createHash('sha256')
    .update(`${CANONICALISATION_VERSION}\n`)
    .update(sdnCsv)
    .update(altCsv === null ? '' : `\n${altCsv}`)
    .digest('hex');
  return { sha256, entries };
}

/**
 * A name as comparable tokens: its skeleton split on separators. "SIDORENKO, Ivan", "Ivan Sidorenko" and
 * "Іvаn Ѕіdоrеnkо" (Cyrillic look-alikes) give the same tokens; order does not matter to the score. A name
 * is not a document number, so 0 and 1 are also read as the letters they resemble.
 */
export function nameTokens(name: string): string[] {
  // Digits that pass for letters in a name ("V0LKOVA", "1VAN") are read as those letters, on both sides.
  const text = skeleton(name).replaceAll('0', 'o').replaceAll('1', 'l');
  return text === '' ? [] : text.split(' ');
}

/** Jaro-Winkler similarity of two strings, 0..1 (prefix scale 0.1, prefix length at most 4). */
export function jaroWinkler(a: string, b: string): number {
  if (a === b) return 1;
  if (a.length === 0 || b.length === 0) return 0;
  const window = Math.max(0, Math.floor(Math.max(a.length, b.length) / 2) - 1);
  const aMatched = new Array<boolean>(a.length).fill(false);
  const bMatched = new Array<boolean>(b.length).fill(false);
  let matches = 0;
  for (let i = 0; i < a.length; i++) {
    const from = Math.max(0, i - window);
    const to = Math.min(b.length - 1, i + window);
    for (let j = from; j <= to; j++) {
      if (bMatched[j] || a[i] !== b[j]) continue;
      aMatched[i] = true;
      bMatched[j] = true;
      matches++;
      break;
    }
  }
  if (matches === 0) return 0;
  let transpositions = 0;
  let k = 0;
  for (let i = 0; i < a.length; i++) {
    if (!aMatched[i]) continue;
    while (!bMatched[k]) k++;
    if (a[i] !== b[k]) transpositions++;
    k++;
  }
  const jaro = (matches / a.length + matches / b.length + (matches - transpositions / 2) / matches) / 3;
  let prefix = 0;
  while (prefix < 4 && prefix < a.length && prefix < b.length && a[prefix] === b[prefix]) prefix++;
  return jaro + prefix * 0.1 * (1 - jaro);
}

/**
 * Token-wise score: every token of each name is matched to its best counterpart in the other, and the
 * smaller of the two directional averages is the score. Order does not matter ("Sidorenko Ivan" scores 1 against
 * "Ivan Sidorenko"), and a partial name ("Ivan") does not score high against a longer listed name.
 */
export function tokenScore(query: string[], listed: string[]): number {
  if (query.length === 0 || listed.length === 0) return 0;
  const directional = (from: string[], to: string[]) =>
    from.reduce((sum, t) => sum + Math.max(...to.map((u) => jaroWinkler(t, u))), 0) / from.length;
  return Math.min(directional(query, listed), directional(listed, query));
}

/** Longer names are screened as written: a name has a handful of words, and each variant costs a list scan. */
const MERGE_TOKENS_MAX = 8;

/**
 * The name's tokens, and the same with each pair of neighbours joined: "Sido-renko" or "Sido renko" is read
 * as "sidorenko" too, so a separator typed inside a listed word does not split it out of a match.
 */
function tokenVariants(tokens: string[]): string[][] {
  if (tokens.length < 2 || tokens.length > MERGE_TOKENS_MAX) return [tokens];
  const variants = [tokens];
  for (let i = 0; i + 1 < tokens.length; i++) {
    variants.push([...tokens.slice(0, i), tokens[i]! + tokens[i + 1]!, ...tokens.slice(i + 2)]);
  }
  return variants;
}

/** The best match of a name on the list. */
export function screenName(list: SanctionsList, name: string): ScreeningResult {
  const variants = tokenVariants(nameTokens(name));
  let bestScore = 0;
  let best: SanctionsEntry | null = null;
  for (const entry of list.entries) {
    for (const tokens of variants) {
      const score = tokenScore(tokens, entry.tokens);
      if (score > bestScore) {
        bestScore = score;
        best = entry;
      }
    }
  }
  return {
    scoreBp: Math.round(bestScore * 10_000),
    entryId: best?.entryId ?? null,
    aliasId: best?.aliasId ?? null,
  };
}
