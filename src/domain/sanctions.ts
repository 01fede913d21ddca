import { createHash } from 'node:crypto';

/**
 * Sanctions screening: a list in OFAC's legacy `sdn.csv` format, names normalised (Unicode, case,
 * punctuation, "LAST, First" order) and scored with token-wise Jaro-Winkler. Pure: the list is parsed once at
 * start-up, and screening a name needs no I/O.
 */
export interface SanctionsEntry {
  entryId: string;
  kind: string;
  program: string;
  tokens: string[];
}

export interface SanctionsList {
  /** SHA-256 of the file's bytes: decisions record which list they were screened against. */
  sha256: string;
  entries: SanctionsEntry[];
}

/** A score in basis points (0..10000 for similarity 0..1): an integer, so it hashes canonically. */
export interface ScreeningResult {
  scoreBp: number;
  entryId: string | null;
}

const NULL_MARKER = '-0-';
const SDN_COLUMNS_MIN = 4;

/** Splits one CSV line with double-quoted fields ("" is an escaped quote). */
export function parseCsvLine(line: string): string[] {
  const fields: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        field += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      fields.push(field);
      field = '';
    } else field += ch;
  }
  fields.push(field);
  return fields.map((f) => f.trim());
}

/** Parses sdn.csv: ent_num, SDN_Name, SDN_Type, Program, Title, ... (no header; "-0-" marks an empty field). */
export function parseSdnCsv(text: string): SanctionsList {
  const entries: SanctionsEntry[] = [];
  const lines = text.split(/\r?\n/);
  lines.forEach((line, lineIndex) => {
    if (line.trim() === '' || line.startsWith('\u001a')) return;
    const fields = parseCsvLine(line);
    if (fields.length < SDN_COLUMNS_MIN || !/^\d+$/.test(fields[0]!)) {
      throw new Error(
        `sanctions list line ${lineIndex + 1}: expected "ent_num","SDN_Name","SDN_Type","Program",...`,
      );
    }
    const clean = (v: string | undefined) => (v === undefined || v === NULL_MARKER ? '' : v);
    const tokens = nameTokens(fields[1]!);
    if (tokens.length === 0) return;
    entries.push({ entryId: fields[0]!, kind: clean(fields[2]), program: clean(fields[3]), tokens });
  });
  return { sha256: createHash('sha256').update(text).digest('hex'), entries };
}

/**
 * Normalises a name to comparable tokens: "SIDORENKO, Ivan" and "Ivan Sidorenko" both become
 * ["ivan", "sidorenko"]. Diacritics are dropped (NFKD), case folded, punctuation removed.
 */
export function nameTokens(name: string): string[] {
  let text = name.normalize('NFKD').replace(/\p{M}+/gu, '');
  const comma = text.split(',');
  // OFAC writes individuals as "LAST, First Middle": bring the given names first.
  if (comma.length === 2) text = `${comma[1]} ${comma[0]}`;
  return text
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s]+/gu, ' ')
    .split(/\s+/)
    .filter((t) => t !== '');
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

/** The best match of a name on the list. */
export function screenName(list: SanctionsList, name: string): ScreeningResult {
  const tokens = nameTokens(name);
  let bestScore = 0;
  let entryId: string | null = null;
  for (const entry of list.entries) {
    const score = tokenScore(tokens, entry.tokens);
    if (score > bestScore) {
      bestScore = score;
      entryId = entry.entryId;
    }
  }
  return { scoreBp: Math.round(bestScore * 10_000), entryId };
}
