import { assert } from '../domain/assert.ts';
import type { AuditMetadata } from '../domain/audit.ts';
import { AppError } from '../domain/errors.ts';
import { newId } from '../domain/ids.ts';
import type { Mode } from '../domain/sandbox.ts';
import type { Actor, ApiKey, Role } from '../domain/types.ts';
import { apiKeyStatus, hashSecret, newSecret } from '../security/api-keys.ts';
import type { ApiKeyRow, Tx } from '../storage/store.ts';
import { type IdempotentReply, jsonOutcome, optionalIdempotentRequest, runIdempotent } from './idempotent.ts';
import type { Services } from './services.ts';

/**
 * The API key lifecycle: create (the secret is returned once; only its hash is stored), revoke, rotate (a new
 * secret; the old one keeps working for a grace period the caller chooses), expiry, and the demo key that
 * exists exactly while DEMO_API_TOKEN is set. Every change is audited in the same transaction, with the
 * acting key as the actor and never a secret or hash in the metadata.
 *
 * Authentication reads the key from the database on every request (src/http/auth.ts), so a change made here
 * is in force for every process as soon as it commits.
 */
export const DEMO_API_KEY_ID = 'key_demo_admin';

export const API_KEY_NAME_LENGTH_MAX = 100;
/** A scoped key names 1..100 customers. */
export const API_KEY_CUSTOMERS_MAX = 100;
/** `expiresAt` is at most two years ahead: a key that should live longer is rotated into a new one. */
export const API_KEY_LIFETIME_MAX_MS = 2 * 365 * 86_400_000;
/** A rotation's grace period: 0 (the old secret stops at once, the default) to 7 days. */
export const ROTATION_GRACE_MAX_SECONDS = 7 * 86_400;

// Printable text: no control, format (bidi), private-use or unassigned characters, no lone surrogates, no
// line or paragraph separators, and no space at either end (a name is shown in tables and logs verbatim).
const NAME_CHAR = '[^\\p{C}\\p{Zl}\\p{Zp}]';
const NAME_EDGE = '[^\\s\\p{C}\\p{Zl}\\p{Zp}]';
export const API_KEY_NAME_PATTERN = `^${NAME_EDGE}(?:${NAME_CHAR}*${NAME_EDGE})?$`;
const NAME_RE = new RegExp(API_KEY_NAME_PATTERN, 'u');
const CUSTOMER_ID_RE = /^cus_[A-Za-z0-9_]{1,60}$/;
/** RFC 3339 date-time with an explicit offset; milliseconds at most. */
export const ISO_DATE_TIME_PATTERN =
  '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(?:\\.\\d{1,3})?(?:Z|[+-]\\d{2}:\\d{2})$';
const ISO_RE =
  /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?(?:(Z)|([+-])(\d{2}):(\d{2}))$/;

/** Serialises key changes across processes (a PostgreSQL advisory lock): the last-admin check needs it. */
const KEY_CHANGES_LOCK = { names: ['api-keys'] };

export interface NewApiKey {
  role: Role;
  name: string;
  /** Limits the key to these customers; null or absent: unscoped. */
  customerIds?: readonly string[] | null;
  expiresAtMs?: number | null;
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** The key as clients see it: never its secret or any hash. */
export function apiKeyView(key: ApiKeyRow, nowMs: number, mode: Mode) {
  return {
    id: key.id,
    // Which data the key sees: the mode of the store it lives in (its secret's prefix says the same).
    mode,
    name: key.name,
    role: key.role,
    customerIds: key.customerIds,
    status: apiKeyStatus(key, nowMs),
    createdAt: iso(key.createdAtMs),
    expiresAt: iso(key.expiresAtMs),
    revokedAt: iso(key.revokedAtMs),
    lastRotatedAt: iso(key.lastRotatedAtMs),
    previousSecretExpiresAt: iso(key.previousSecretExpiresAtMs),
  };
}

export type ApiKeyView = ReturnType<typeof apiKeyView>;

function invalid(field: string, message: string): AppError {
  return new AppError('VALIDATION_ERROR', `${field.slice(1)} ${message}`, [{ field, message }]);
}

/**
 * An RFC 3339 time as epoch milliseconds, or a 400 naming `field`. Calendar-checked (Date.parse would
 * accept 2026-02-30 as March 2nd).
 */
export function parseIsoTime(text: string, field: string): number {
  const m = ISO_RE.exec(text);
  if (m === null) throw invalid(field, 'must be an RFC 3339 date-time such as 2026-01-31T12:00:00Z');
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const ms = Number((m[7] ?? '0').padEnd(3, '0'));
  const local = Date.UTC(y, mo - 1, d, h, mi, s, ms);
  const back = new Date(local);
  const valid =
    back.getUTCFullYear() === y &&
    back.getUTCMonth() === mo - 1 &&
    back.getUTCDate() === d &&
    back.getUTCHours() === h &&
    back.getUTCMinutes() === mi &&
    back.getUTCSeconds() === s;
  const offsetMin = m[8] === 'Z' ? 0 : (m[9] === '-' ? -1 : 1) * (Number(m[10]) * 60 + Number(m[11]));
  if (!valid || Math.abs(offsetMin) > 23 * 60 + 59) throw invalid(field, 'is not a valid date-time');
  return local - offsetMin * 60_000;
}

/**
 * Checks what a client or the CLI asks for (the HTTP schema checks shapes first; the CLI has only this).
 * Expiry is checked against `nowMs`: in the future, and at most API_KEY_LIFETIME_MAX_MS ahead.
 */
export function checkNewApiKey(input: NewApiKey, nowMs: number): void {
  if (input.name.length > API_KEY_NAME_LENGTH_MAX || !NAME_RE.test(input.name)) {
    throw invalid('/name', `must be 1..${API_KEY_NAME_LENGTH_MAX} printable characters without edge spaces`);
  }
  const ids = input.customerIds ?? null;
  if (ids !== null) {
    if (input.role === 'admin') {
      throw invalid(
        '/customerIds',
        'cannot scope an admin key (admin manages keys, so it could unscope itself)',
      );
    }
    if (ids.length < 1 || ids.length > API_KEY_CUSTOMERS_MAX) {
      throw invalid('/customerIds', `must name 1..${API_KEY_CUSTOMERS_MAX} customers`);
    }
    if (new Set(ids).size !== ids.length) throw invalid('/customerIds', 'must not repeat a customer');
    const bad = ids.findIndex((id) => !CUSTOMER_ID_RE.test(id));
    if (bad >= 0) throw invalid(`/customerIds/${bad}`, 'is not a customer id');
  }
  const expiresAtMs = input.expiresAtMs ?? null;
  if (expiresAtMs !== null) {
    if (expiresAtMs <= nowMs) throw invalid('/expiresAt', 'must be in the future');
    if (expiresAtMs - nowMs > API_KEY_LIFETIME_MAX_MS) {
      throw invalid('/expiresAt', 'must be at most two years ahead');
    }
  }
}

/**
 * Creates an API key; the secret is returned once and only its hash is stored. Every scoped customer must
 * exist: an unknown one is 404 CUSTOMER_NOT_FOUND (with the index in `details`), and nothing is written.
 */
export async function createApiKey(
  services: Services,
  actor: Actor,
  role: Role,
  name: string,
  options: Omit<NewApiKey, 'role' | 'name'> = {},
): Promise<{ key: ApiKeyRow; secret: string }> {
  const customerIds = options.customerIds ? [...options.customerIds] : null;
  const expiresAtMs = options.expiresAtMs ?? null;
  checkNewApiKey({ role, name, customerIds, expiresAtMs }, services.clock());
  const secret = newSecret(services.mode);
  const key = await services.committer.submit((tx) =>
    insertApiKey(tx, actor, { role, name, customerIds, expiresAtMs }, secret),
  );
  return { key, secret };
}

async function insertApiKey(
  tx: Tx,
  actor: Actor,
  fields: { role: Role; name: string; customerIds: string[] | null; expiresAtMs: number | null },
  secret: string,
): Promise<ApiKeyRow> {
  const { role, name, customerIds, expiresAtMs } = fields;
  if (customerIds !== null) {
    const found = await tx.getCustomers(customerIds);
    const missing = customerIds.findIndex((id) => !found.has(id));
    if (missing >= 0) {
      throw new AppError('CUSTOMER_NOT_FOUND', 'customer not found', [
        { field: `/customerIds/${missing}`, message: 'no such customer' },
      ]);
    }
  }
  const row: ApiKeyRow = {
    id: newId('key'),
    name,
    role,
    secretHash: hashSecret(secret),
    createdAtMs: tx.nowMs,
    revokedAtMs: null,
    customerIds,
    expiresAtMs,
    previousSecretHash: null,
    previousSecretExpiresAtMs: null,
    lastRotatedAtMs: null,
  };
  await tx.insertApiKey(row);
  await audit(tx, actor, 'api_key.created', row, { expiresAt: iso(expiresAtMs) });
  return row;
}

export interface RevokeOptions {
  /** Why, for the audit entry (free text chosen by the server, never by a client). */
  reason?: string;
  /**
   * Revoke even the last active admin key. The HTTP API refuses that (409 API_KEY_LAST_ADMIN); the CLI and the
   * demo key's retirement allow it and warn, since `npm run keys -- create --role admin` recovers.
   */
  allowLastAdmin?: boolean;
}

export interface RevokeResult {
  key: ApiKeyRow;
  /** False when the key was already revoked: the call changed nothing and wrote no audit entry. */
  changed: boolean;
  /** Admin keys still active after this call (the caller warns when none is left). */
  activeAdminKeys: number;
}

/**
 * Revokes a key: from the commit on, it gets 401 AUTH_INVALID everywhere. Idempotent: revoking a revoked key
 * answers its unchanged state. A key may revoke itself, as long as another active admin key remains.
 */
export async function revokeApiKey(
  services: Services,
  actor: Actor,
  id: string,
  options: RevokeOptions = {},
): Promise<RevokeResult> {
  return services.committer.submit((tx) => revokeInTx(tx, actor, id, options), KEY_CHANGES_LOCK);
}

async function revokeInTx(tx: Tx, actor: Actor, id: string, options: RevokeOptions): Promise<RevokeResult> {
  const key = await tx.lockApiKey(id);
  if (key === undefined) throw new AppError('API_KEY_NOT_FOUND', 'API key not found');
  return revokeLocked(tx, actor, key, options);
}

async function revokeLocked(tx: Tx, actor: Actor, key: ApiKeyRow, options: RevokeOptions) {
  const othersActive = await tx.countActiveAdminKeys(tx.nowMs, key.id);
  const selfActive = key.role === 'admin' && apiKeyStatus(key, tx.nowMs) === 'active';
  if (key.revokedAtMs !== null) {
    return { key, changed: false, activeAdminKeys: othersActive + (selfActive ? 1 : 0) };
  }
  if (selfActive && othersActive === 0 && options.allowLastAdmin !== true) {
    throw new AppError(
      'API_KEY_LAST_ADMIN',
      'this is the last active admin key: create another admin key before revoking it',
    );
  }
  const revoked: ApiKeyRow = { ...key, revokedAtMs: tx.nowMs };
  await tx.saveApiKey(revoked);
  await audit(tx, actor, 'api_key.revoked', revoked, options.reason ? { reason: options.reason } : {});
  return { key: revoked, changed: true, activeAdminKeys: othersActive };
}

/**
 * Gives a key a new secret (returned once). With a grace period the secret it replaces keeps authenticating
 * until `now + gracePeriodSeconds`; a rotation during another's grace period ends that one (only the
 * newest previous secret is kept). Revoked and expired keys are not rotated (409 API_KEY_NOT_ACTIVE); nor
 * is the demo key, whose secret is DEMO_API_TOKEN (409 API_KEY_NOT_ROTATABLE).
 */
export async function rotateApiKey(
  services: Services,
  actor: Actor,
  id: string,
  gracePeriodSeconds = 0,
): Promise<{ key: ApiKeyRow; secret: string }> {
  checkGracePeriod(gracePeriodSeconds);
  const secret = newSecret(services.mode);
  const key = await services.committer.submit(
    (tx) => rotateInTx(tx, actor, id, gracePeriodSeconds, secret),
    KEY_CHANGES_LOCK,
  );
  return { key, secret };
}

async function rotateInTx(
  tx: Tx,
  actor: Actor,
  id: string,
  gracePeriodSeconds: number,
  secret: string,
): Promise<ApiKeyRow> {
  const key = await tx.lockApiKey(id);
  if (key === undefined) throw new AppError('API_KEY_NOT_FOUND', 'API key not found');
  if (key.id === DEMO_API_KEY_ID) {
    throw new AppError(
      'API_KEY_NOT_ROTATABLE',
      "the demo key's secret is DEMO_API_TOKEN: change the variable",
    );
  }
  const status = apiKeyStatus(key, tx.nowMs);
  if (status !== 'active') throw new AppError('API_KEY_NOT_ACTIVE', `the API key is ${status}`);
  const graceEndsAtMs = gracePeriodSeconds > 0 ? tx.nowMs + gracePeriodSeconds * 1000 : null;
  const rotated: ApiKeyRow = {
    ...key,
    secretHash: hashSecret(secret),
    previousSecretHash: graceEndsAtMs === null ? null : key.secretHash,
    previousSecretExpiresAtMs: graceEndsAtMs,
    lastRotatedAtMs: tx.nowMs,
  };
  await tx.saveApiKey(rotated);
  await audit(tx, actor, 'api_key.rotated', rotated, {
    gracePeriodSeconds,
    previousSecretExpiresAt: iso(graceEndsAtMs),
  });
  return rotated;
}

/**
 * The HTTP face of the three changes, under an optional Idempotency-Key (src/app/idempotent.ts): a retried
 * create or rotate replays the first answer, the same secret included, instead of minting a second key or
 * secret. The stored response is sealed with the data key like every stored response, so the secret is never
 * kept in plaintext; it is replayed only to the same API key within the retention window.
 */
export async function createApiKeyIdempotent(
  services: Services,
  actor: Actor,
  idempotencyKey: string | undefined,
  body: { role: Role; name: string; customerIds?: string[]; expiresAt?: string; mode?: Mode },
): Promise<IdempotentReply> {
  // A key creates keys of its own mode: the other mode's keys live in the other mode's store, out of reach.
  if (body.mode !== undefined && body.mode !== services.mode) {
    throw new AppError(
      'MODE_MISMATCH',
      `a ${services.mode} key creates ${services.mode} keys: create a ${body.mode} key with a ${body.mode} admin key, or with \`npm run keys -- create --mode ${body.mode}\``,
    );
  }
  const customerIds = body.customerIds ? [...body.customerIds] : null;
  const expiresAtMs = body.expiresAt === undefined ? null : parseIsoTime(body.expiresAt, '/expiresAt');
  const fields = { role: body.role, name: body.name, customerIds, expiresAtMs };
  const request = optionalIdempotentRequest(actor, idempotencyKey, 'POST', '/v1/api-keys', body);
  // Checked after the replay fast path: a retry once `expiresAt` has passed still gets its stored answer.
  return runIdempotent(services, request, () => {
    checkNewApiKey(fields, services.clock());
    return {
      execute: async (tx) => {
        const secret = newSecret(services.mode);
        const row = await insertApiKey(tx, actor, fields, secret);
        return jsonOutcome(201, { apiKey: apiKeyView(row, tx.nowMs, services.mode), secret }, row.id);
      },
    };
  });
}

export async function revokeApiKeyIdempotent(
  services: Services,
  actor: Actor,
  idempotencyKey: string | undefined,
  id: string,
  body: Record<string, never>,
): Promise<IdempotentReply> {
  const request = optionalIdempotentRequest(actor, idempotencyKey, 'POST', `/v1/api-keys/${id}/revoke`, body);
  return runIdempotent(services, request, () => ({
    locks: KEY_CHANGES_LOCK,
    execute: async (tx) => {
      const { key } = await revokeInTx(tx, actor, id, {});
      return jsonOutcome(200, { apiKey: apiKeyView(key, tx.nowMs, services.mode) }, key.id);
    },
  }));
}

export async function rotateApiKeyIdempotent(
  services: Services,
  actor: Actor,
  idempotencyKey: string | undefined,
  id: string,
  body: { gracePeriodSeconds?: number },
): Promise<IdempotentReply> {
  const grace = body.gracePeriodSeconds ?? 0;
  checkGracePeriod(grace);
  const path = `/v1/api-keys/${id}/rotate`;
  const request = optionalIdempotentRequest(actor, idempotencyKey, 'POST', path, {
    gracePeriodSeconds: grace,
  });
  return runIdempotent(services, request, () => ({
    locks: KEY_CHANGES_LOCK,
    execute: async (tx) => {
      const secret = newSecret(services.mode);
      const key = await rotateInTx(tx, actor, id, grace, secret);
      return jsonOutcome(200, { apiKey: apiKeyView(key, tx.nowMs, services.mode), secret }, key.id);
    },
  }));
}

function checkGracePeriod(gracePeriodSeconds: number): void {
  if (!Number.isSafeInteger(gracePeriodSeconds) || gracePeriodSeconds < 0) {
    throw invalid('/gracePeriodSeconds', 'must be a whole number of seconds, 0 or more');
  }
  if (gracePeriodSeconds > ROTATION_GRACE_MAX_SECONDS) {
    throw invalid('/gracePeriodSeconds', `must be at most ${ROTATION_GRACE_MAX_SECONDS} (7 days)`);
  }
}

export type DemoKeyChange = 'created' | 'reactivated' | 'rotated' | 'revoked' | 'unchanged';

/**
 * The demo key exists exactly while DEMO_API_TOKEN is set. Called at every start-up: with a token, the key is
 * created, or brought back to an active, unscoped, non-expiring admin key whose secret is the token
 * (`api_key.created`, `api_key.reactivated` or `api_key.rotated`); without one, an active demo key is revoked
 * (`api_key.revoked`, reason in the metadata). Several processes may start at once: the key-changes lock and
 * the insert's ON CONFLICT make them agree, and the later ones find nothing to change.
 */
export async function syncDemoApiKey(
  services: Services,
  actor: Actor,
  token: string | null,
): Promise<{ change: DemoKeyChange; activeAdminKeys: number }> {
  return services.committer.submit(async (tx) => {
    if (token === null) {
      const existing = await tx.lockApiKey(DEMO_API_KEY_ID);
      if (existing === undefined) {
        return { change: 'unchanged', activeAdminKeys: await tx.countActiveAdminKeys(tx.nowMs, '') };
      }
      const result = await revokeLocked(tx, actor, existing, {
        reason: 'DEMO_API_TOKEN is not set',
        allowLastAdmin: true,
      });
      return { change: result.changed ? 'revoked' : 'unchanged', activeAdminKeys: result.activeAdminKeys };
    }
    const wanted: ApiKeyRow = {
      id: DEMO_API_KEY_ID,
      name: 'demo admin key (DEMO_API_TOKEN)',
      role: 'admin',
      secretHash: hashSecret(token),
      createdAtMs: tx.nowMs,
      revokedAtMs: null,
      customerIds: null,
      expiresAtMs: null,
      previousSecretHash: null,
      previousSecretExpiresAtMs: null,
      lastRotatedAtMs: null,
    };
    const change = await ensureDemoKey(tx, actor, wanted);
    return { change, activeAdminKeys: await tx.countActiveAdminKeys(tx.nowMs, '') };
  }, KEY_CHANGES_LOCK);
}

async function ensureDemoKey(tx: Tx, actor: Actor, wanted: ApiKeyRow): Promise<DemoKeyChange> {
  if (await tx.insertApiKeyIfAbsent(wanted)) {
    await audit(tx, actor, 'api_key.created', wanted, { reason: 'DEMO_API_TOKEN is set' });
    return 'created';
  }
  const existing = await tx.lockApiKey(wanted.id);
  assert(existing !== undefined, 'the demo key exists once its insert conflicted');
  const sameSecret = existing.secretHash === wanted.secretHash;
  const active = apiKeyStatus(existing, tx.nowMs) === 'active';
  const canonical =
    sameSecret &&
    active &&
    existing.role === 'admin' &&
    existing.customerIds === null &&
    existing.expiresAtMs === null &&
    existing.previousSecretHash === null;
  if (canonical) return 'unchanged';
  const restored: ApiKeyRow = {
    ...wanted,
    createdAtMs: existing.createdAtMs,
    lastRotatedAtMs: sameSecret ? existing.lastRotatedAtMs : tx.nowMs,
  };
  await tx.saveApiKey(restored);
  if (!active) {
    await audit(tx, actor, 'api_key.reactivated', restored, {
      reason: 'DEMO_API_TOKEN is set',
      secretChanged: !sameSecret,
    });
    return 'reactivated';
  }
  await audit(tx, actor, 'api_key.rotated', restored, {
    reason: 'DEMO_API_TOKEN changed',
    gracePeriodSeconds: 0,
    previousSecretExpiresAt: null,
  });
  return 'rotated';
}

/** One audit entry per change: ids, role and scope only (customer ids are opaque ids, not personal data). */
async function audit(
  tx: Tx,
  actor: Actor,
  eventType: string,
  key: ApiKey,
  extra: AuditMetadata,
): Promise<void> {
  await tx.appendAudit({
    eventType,
    actorId: actor.apiKeyId,
    requestId: actor.requestId,
    resourceType: 'api_key',
    resourceId: key.id,
    metadata: {
      apiKeyId: key.id,
      role: key.role,
      customerCount: key.customerIds?.length ?? 0,
      customerIds: key.customerIds === null ? null : [...key.customerIds],
      ...extra,
    },
  });
}
