import { assert } from '../domain/assert.ts';
import type { ApiKey } from '../domain/types.ts';
import { nullableNum, nullableStr, num } from './row-values.ts';
import type { Row, SqlExecutor } from './sql-store.ts';
import type { ApiKeyPosition, ApiKeyRow, KeysetPage } from './store.ts';

/**
 * The SQL of the api_keys table, shared by the read side (SqlReads) and the batch transaction (SqlTx), both of
 * which delegate here. Secrets are never stored: `secret_hash` (and, during a rotation's grace period,
 * `previous_secret_hash`) are SHA-256 hashes, both unique and indexed, so authentication is one index lookup.
 */

export function apiKeyFromRow(r: Row): ApiKeyRow {
  const customerIds = nullableStr(r['customer_ids']);
  const parsed: unknown = customerIds === null ? null : JSON.parse(customerIds);
  assert(
    parsed === null || (Array.isArray(parsed) && parsed.every((id) => typeof id === 'string')),
    'api_keys.customer_ids is null or a JSON array of ids',
  );
  return {
    id: r['id'] as string,
    name: r['name'] as string,
    role: r['role'] as ApiKey['role'],
    secretHash: r['secret_hash'] as string,
    createdAtMs: num(r['created_at_ms']),
    revokedAtMs: nullableNum(r['revoked_at_ms']),
    customerIds: parsed as string[] | null,
    expiresAtMs: nullableNum(r['expires_at_ms']),
    previousSecretHash: nullableStr(r['previous_secret_hash']),
    previousSecretExpiresAtMs: nullableNum(r['previous_secret_expires_at_ms']),
    lastRotatedAtMs: nullableNum(r['rotated_at_ms']),
  };
}

const customerIdsColumn = (key: ApiKey) =>
  key.customerIds === null ? null : JSON.stringify(key.customerIds);

/**
 * The key whose current OR previous secret hashes to `secretHash`, in whatever state (revoked, expired, grace
 * over): the caller decides (src/security/api-keys.ts `keyAccepts`), so every refusal looks the same.
 * Two index lookups; at most one row can match (both columns are unique and secrets are 256-bit random).
 */
export async function findApiKeyByHash(db: SqlExecutor, secretHash: string): Promise<ApiKeyRow | undefined> {
  const r = await db.get(
    `SELECT * FROM api_keys WHERE secret_hash = ?
     UNION ALL
     SELECT * FROM api_keys WHERE previous_secret_hash = ?`,
    [secretHash, secretHash],
  );
  return r && apiKeyFromRow(r);
}

export async function getApiKey(db: SqlExecutor, id: string, forUpdate = ''): Promise<ApiKeyRow | undefined> {
  const r = await db.get(`SELECT * FROM api_keys WHERE id = ?${forUpdate}`, [id]);
  return r && apiKeyFromRow(r);
}

/** Oldest first, keyset-paged on (created_at_ms, id) (index api_keys_created, migration 9). */
export async function listApiKeys(
  db: SqlExecutor,
  after: ApiKeyPosition | null,
  limit: number,
): Promise<KeysetPage<ApiKeyRow, ApiKeyPosition>> {
  assert(Number.isSafeInteger(limit) && limit >= 1 && limit <= 500, 'an api key page is 1..500 keys');
  const rows =
    after === null
      ? await db.all('SELECT * FROM api_keys ORDER BY created_at_ms, id LIMIT ?', [limit + 1])
      : await db.all(
          `SELECT * FROM api_keys WHERE created_at_ms > ? OR (created_at_ms = ? AND id > ?)
           ORDER BY created_at_ms, id LIMIT ?`,
          [after.createdAtMs, after.createdAtMs, after.id, limit + 1],
        );
  const hasMore = rows.length > limit;
  const items = (hasMore ? rows.slice(0, limit) : rows).map(apiKeyFromRow);
  const last = items[items.length - 1];
  return { items, next: hasMore && last ? { createdAtMs: last.createdAtMs, id: last.id } : null };
}

/** Admin keys that authenticate at `nowMs` (not revoked, not expired), other than `exceptId`. */
export async function countActiveAdminKeys(
  db: SqlExecutor,
  nowMs: number,
  exceptId: string,
): Promise<number> {
  const r = await db.get(
    `SELECT COUNT(*) AS n FROM api_keys
      WHERE role = 'admin' AND revoked_at_ms IS NULL AND (expires_at_ms IS NULL OR expires_at_ms > ?) AND id <> ?`,
    [nowMs, exceptId],
  );
  return num(r?.['n'] ?? 0);
}

export async function insertApiKey(
  db: SqlExecutor,
  key: ApiKeyRow | ApiKey,
  ifAbsent = false,
): Promise<boolean> {
  const inserted = await db.run(
    `INSERT INTO api_keys (id, name, role, secret_hash, created_at_ms, revoked_at_ms, customer_ids, expires_at_ms,
                           previous_secret_hash, previous_secret_expires_at_ms, rotated_at_ms)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)${ifAbsent ? ' ON CONFLICT (id) DO NOTHING' : ''}`,
    [
      key.id,
      key.name,
      key.role,
      key.secretHash,
      key.createdAtMs,
      key.revokedAtMs,
      customerIdsColumn(key),
      key.expiresAtMs,
      key.previousSecretHash,
      key.previousSecretExpiresAtMs,
      'lastRotatedAtMs' in key ? key.lastRotatedAtMs : null,
    ],
  );
  return inserted === 1;
}

/** Writes every mutable column of an existing key (the caller holds its lock and computed the new state). */
export async function saveApiKey(db: SqlExecutor, key: ApiKeyRow): Promise<void> {
  const changed = await db.run(
    `UPDATE api_keys SET name = ?, role = ?, secret_hash = ?, revoked_at_ms = ?, customer_ids = ?, expires_at_ms = ?,
                         previous_secret_hash = ?, previous_secret_expires_at_ms = ?, rotated_at_ms = ?
      WHERE id = ?`,
    [
      key.name,
      key.role,
      key.secretHash,
      key.revokedAtMs,
      customerIdsColumn(key),
      key.expiresAtMs,
      key.previousSecretHash,
      key.previousSecretExpiresAtMs,
      key.lastRotatedAtMs,
      key.id,
    ],
  );
  assert(changed === 1, 'a saved api key exists');
}
