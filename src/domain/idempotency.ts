import { createHash } from 'node:crypto';
import { assert } from './assert.ts';
import { canonicalJson } from './canonical-json.ts';

/**
 * Idempotency: a request's fingerprint is SHA-256 over the canonical JSON of what it asks for, so key order
 * and whitespace do not matter but every value does. A stored record replays the exact status and body.
 */
export const IDEMPOTENCY_KEY_PATTERN = /^[\x20-\x7E]{1,255}$/;

/**
 * An idempotency key as commands declare it (`LockHints.idempotencyKeys`): scoped by the API key, so two
 * clients' keys never meet. The storage adapters lock it and read its record under this name.
 */
export function idempotencyScope(apiKeyId: string, key: string): string {
  return `${apiKeyId}:${key}`;
}

/** The inverse of `idempotencyScope`; API key ids never contain a colon, keys may. */
export function splitIdempotencyScope(scoped: string): [apiKeyId: string, key: string] {
  const at = scoped.indexOf(':');
  assert(at > 0, 'an idempotency scope is apiKeyId:key');
  return [scoped.slice(0, at), scoped.slice(at + 1)];
}

/**
 * Stored response bodies are sealed with the data key (AES-GCM, this context as associated data): a response
 * may carry what its table keeps encrypted (a customer's name, a refund's reason, a webhook secret). Sealing
 * and opening are the application's (src/app/idempotent.ts); the store keeps the text it is given.
 */
export const RESPONSE_BODY_CONTEXT = 'idempotency.response';

/**
 * Whether a stored body is a sealed envelope (`v1.<keyId>.…`, src/security/pii-cipher.ts) or, in a record
 * written before bodies were sealed, the response JSON itself. The two never look alike: every stored body is
 * a JSON object, so plain text starts with `{`.
 */
export function isSealedBody(body: string): boolean {
  if (body.startsWith('v1.')) return true;
  assert(body.startsWith('{'), 'a stored response body is a sealed envelope or a JSON object');
  return false;
}

export function requestFingerprint(method: string, route: string, body: unknown): string {
  return createHash('sha256').update(canonicalJson({ method, route, body })).digest('hex');
}

export interface StoredResponse {
  statusCode: number;
  body: string;
}

export interface IdempotencyRecord extends StoredResponse {
  apiKeyId: string;
  key: string;
  fingerprint: string;
  resourceId: string | null;
  createdAtMs: number;
  expiresAtMs: number;
}

export type IdempotencyVerdict =
  | { kind: 'replay'; response: StoredResponse }
  | { kind: 'mismatch' }
  | { kind: 'fresh' };

/** What to do with a request given the record stored under its key (if any, and not yet expired). */
export function judgeIdempotency(
  record: IdempotencyRecord | undefined,
  fingerprint: string,
  nowMs: number,
  /** The same request's fingerprint in an older form, still held by records stored before the change. */
  legacyFingerprint?: string,
): IdempotencyVerdict {
  if (record === undefined || record.expiresAtMs <= nowMs) return { kind: 'fresh' };
  if (record.fingerprint !== fingerprint && record.fingerprint !== legacyFingerprint)
    return { kind: 'mismatch' };
  return { kind: 'replay', response: { statusCode: record.statusCode, body: record.body } };
}
