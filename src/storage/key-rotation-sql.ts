import { assert } from '../domain/assert.ts';
import { num } from './row-values.ts';
import type { Row, SqlExecutor } from './sql-store.ts';

/**
 * The SQL of key management (src/app/key-rotation.ts): the settings row that records the keys, a few samples
 * of stored values for a database that never recorded them, and the bounded scans and guarded updates that
 * re-encrypt every encrypted column under the primary key. Shared by SqlReads and SqlTx, which delegate here.
 *
 * The catalogue below is every column that holds a PiiCipher envelope. Table and column names come only from
 * it (never from input). A new encrypted column must be added here, or a rotation would leave it under a key
 * that is about to be retired (test/key-rotation.test.ts checks every `encrypt(` context in src/ is covered).
 */
export const ENCRYPTED_COLUMNS = {
  'customers.name_enc': { table: 'customers', column: 'name_enc' },
  'customers.document_enc': { table: 'customers', column: 'document_enc' },
  'accounts.number_enc': { table: 'accounts', column: 'number_enc' },
  'kyc_decisions.note_enc': { table: 'kyc_decisions', column: 'note_enc' },
  'payments.resolution_note_enc': { table: 'payments', column: 'resolution_note_enc' },
  'refunds.reason_enc': { table: 'refunds', column: 'reason_enc' },
  'webhook_endpoints.secret_enc': { table: 'webhook_endpoints', column: 'secret_enc' },
  'compliance_cases.decision_note_enc': { table: 'compliance_cases', column: 'decision_note_enc' },
  // Sealed stored responses start with `v1.`; records written before sealing hold JSON and are skipped.
  'idempotency_records.response_body': { table: 'idempotency_records', column: 'response_body' },
} as const;

export type EncryptedColumn = keyof typeof ENCRYPTED_COLUMNS;

/** One stored encrypted value; `rowKey` is opaque (it names the row for the guarded update). */
export interface EncryptedValue {
  rowKey: string;
  value: string;
}

/** A bounded slice of a column's values not under the primary key, and where the next slice starts. */
export interface EncryptedValueChunk {
  values: EncryptedValue[];
  /** Pass back to continue; null when the column has been scanned to its end. */
  next: string | null;
}

/** A stored value and its blind index, to find which key computed the index (a database without a record). */
export interface BlindIndexSample {
  kind: 'customer.document' | 'account.number';
  valueEnc: string;
  blindIndex: string;
  /** customers.document_index_version (0 for accounts, which have one kind of index). */
  indexVersion: number;
}

export interface KeySamples {
  envelopes: { column: EncryptedColumn; value: string }[];
  indexes: BlindIndexSample[];
}

/** How many of a table's newest rows are looked at for samples of a column. */
const SAMPLE_WINDOW_ROWS = 1000;

export async function getSetting(db: SqlExecutor, key: string): Promise<string | undefined> {
  const r = await db.get('SELECT value FROM settings WHERE key = ?', [key]);
  return r === undefined ? undefined : (r['value'] as string);
}

export async function putSetting(db: SqlExecutor, key: string, value: string): Promise<void> {
  await db.run(
    'INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
    [key, value],
  );
}

/** The newest few values of every encrypted column, and of the two blind-indexed ones with their index. */
export async function keySamples(db: SqlExecutor, perColumn: number): Promise<KeySamples> {
  const envelopes: KeySamples['envelopes'] = [];
  for (const name of Object.keys(ENCRYPTED_COLUMNS) as EncryptedColumn[]) {
    const { table, column } = ENCRYPTED_COLUMNS[name];
    // The newest rows only (index order), so a column that is mostly NULL costs a bounded read.
    const order = table === 'idempotency_records' ? 'expires_at_ms' : 'seq';
    const rows = await db.all(
      `SELECT value FROM (SELECT ${column} AS value FROM ${table} ORDER BY ${order} DESC LIMIT ?) recent
        WHERE value LIKE 'v1.%' LIMIT ?`,
      [SAMPLE_WINDOW_ROWS, perColumn],
    );
    for (const r of rows) envelopes.push({ column: name, value: r['value'] as string });
  }
  const customers = await db.all(
    `SELECT document_enc, document_index, document_index_version FROM customers
      WHERE document_index NOT LIKE 'duplicate:%' ORDER BY seq DESC LIMIT ?`,
    [perColumn],
  );
  const accounts = await db.all('SELECT number_enc, number_index FROM accounts ORDER BY seq DESC LIMIT ?', [
    perColumn,
  ]);
  return {
    envelopes,
    indexes: [
      ...customers.map((r: Row) => ({
        kind: 'customer.document' as const,
        valueEnc: r['document_enc'] as string,
        blindIndex: r['document_index'] as string,
        indexVersion: num(r['document_index_version']),
      })),
      ...accounts.map((r: Row) => ({
        kind: 'account.number' as const,
        valueEnc: r['number_enc'] as string,
        blindIndex: r['number_index'] as string,
        indexVersion: 0,
      })),
    ],
  };
}

/** `v1.<key id>.`: what a value under the primary key starts with. */
const PREFIX_CHARS = 12;

/**
 * Up to `limit` rows' worth of a column, from `after` on, whose values are not under the key whose envelope
 * prefix is `primaryPrefix`. Tables with a `seq` are read as a window of `limit` sequence numbers (index-backed,
 * so a column that is mostly NULL costs no more per slice); idempotency records page on their primary key.
 */
export async function staleEncryptedValues(
  db: SqlExecutor,
  name: EncryptedColumn,
  primaryPrefix: string,
  after: string | null,
  limit: number,
): Promise<EncryptedValueChunk> {
  assert(primaryPrefix.length === PREFIX_CHARS, 'an envelope key prefix is v1.<8 hex digits>.');
  assert(Number.isSafeInteger(limit) && limit > 0, 'a re-encryption slice has a positive size');
  const { table, column } = ENCRYPTED_COLUMNS[name];
  if (table === 'idempotency_records') return staleIdempotencyBodies(db, primaryPrefix, after, limit);
  const from = after === null ? 0 : Number(after);
  assert(Number.isSafeInteger(from) && from >= 0, 'a seq cursor is a non-negative integer');
  const to = from + limit;
  const rows = await db.all(
    `SELECT seq, ${column} AS value FROM ${table}
      WHERE seq > ? AND seq <= ? AND ${column} IS NOT NULL AND substr(${column}, 1, ${PREFIX_CHARS}) <> ?
      ORDER BY seq`,
    [from, to, primaryPrefix],
  );
  const last = await db.get(`SELECT MAX(seq) AS seq FROM ${table}`);
  const lastSeq = last === undefined || last['seq'] === null ? 0 : num(last['seq']);
  return {
    values: rows.map((r) => ({ rowKey: String(num(r['seq'])), value: r['value'] as string })),
    next: to < lastSeq ? String(to) : null,
  };
}

async function staleIdempotencyBodies(
  db: SqlExecutor,
  primaryPrefix: string,
  after: string | null,
  limit: number,
): Promise<EncryptedValueChunk> {
  const position = after === null ? null : (JSON.parse(after) as [string, string]);
  const rows = await db.all(
    `SELECT api_key_id, idempotency_key, response_body FROM idempotency_records
      ${position === null ? '' : 'WHERE (api_key_id, idempotency_key) > (?, ?)'}
      ORDER BY api_key_id, idempotency_key LIMIT ?`,
    [...(position ?? []), limit],
  );
  const values = rows
    .map((r) => ({
      rowKey: JSON.stringify([r['api_key_id'], r['idempotency_key']]),
      value: r['response_body'] as string,
    }))
    .filter((v) => v.value.startsWith('v1.') && !v.value.startsWith(primaryPrefix));
  const lastRow = rows[rows.length - 1];
  return {
    values,
    next:
      rows.length < limit || lastRow === undefined
        ? null
        : JSON.stringify([lastRow['api_key_id'], lastRow['idempotency_key']]),
  };
}

/**
 * Replaces values, each only while the row still holds the value that was read (a guarded update: a value
 * another process changed meanwhile is left alone and picked up by the next pass). Returns how many changed.
 */
export async function replaceEncryptedValues(
  db: SqlExecutor,
  name: EncryptedColumn,
  rows: { rowKey: string; before: string; after: string }[],
): Promise<number> {
  const { table, column } = ENCRYPTED_COLUMNS[name];
  let changed = 0;
  for (const row of rows) {
    if (table === 'idempotency_records') {
      const [apiKeyId, key] = JSON.parse(row.rowKey) as [string, string];
      changed += await db.run(
        `UPDATE idempotency_records SET response_body = ?
          WHERE api_key_id = ? AND idempotency_key = ? AND response_body = ?`,
        [row.after, apiKeyId, key, row.before],
      );
    } else {
      changed += await db.run(`UPDATE ${table} SET ${column} = ? WHERE seq = ? AND ${column} = ?`, [
        row.after,
        Number(row.rowKey),
        row.before,
      ]);
    }
  }
  return changed;
}
