import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { type Mode, SECRET_PREFIX } from '../domain/sandbox.ts';
import type { ApiKey } from '../domain/types.ts';

/**
 * API key secrets are shown once and stored only as SHA-256 hashes. A secret has 256 bits of entropy, so a
 * fast hash is enough (no password stretching needed). Lookups go by hash; the final comparison is constant
 * time anyway, so nothing about a stored hash leaks through timing.
 */
export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** `sk_live_…` or `sk_test_…`: the secret names its mode (src/domain/sandbox.ts). */
export function newSecret(mode: Mode): string {
  return `${SECRET_PREFIX[mode]}${randomBytes(32).toString('base64url')}`;
}

export function secretMatches(secret: string, storedHash: string): boolean {
  const presented = Buffer.from(hashSecret(secret), 'hex');
  const stored = Buffer.from(storedHash, 'hex');
  return presented.length === stored.length && timingSafeEqual(presented, stored);
}

/** `Authorization: Bearer <secret>`; anything else is "missing or malformed". */
export function parseBearer(header: string | undefined): string | null {
  if (header === undefined) return null;
  // The scheme name is case-insensitive (RFC 7235); the secret is not.
  const match = /^Bearer ([\x21-\x7E]{1,512})$/i.exec(header);
  return match ? match[1]! : null;
}

/** What a key's lifecycle fields say about it at `nowMs` (revocation wins over expiry). */
export type ApiKeyStatus = 'active' | 'revoked' | 'expired';

export function apiKeyStatus(key: Pick<ApiKey, 'revokedAtMs' | 'expiresAtMs'>, nowMs: number): ApiKeyStatus {
  if (key.revokedAtMs !== null) return 'revoked';
  if (key.expiresAtMs !== null && nowMs >= key.expiresAtMs) return 'expired';
  return 'active';
}

/**
 * Whether `secret` authenticates as `key` at `nowMs`: the key is active, and the secret is its current one, or
 * the one a rotation replaced while that rotation's grace period lasts. Both comparisons are constant time.
 * Callers answer every `false` the same way (401 AUTH_INVALID), so revoked, expired and unknown keys cannot
 * be told apart.
 */
export function keyAccepts(key: ApiKey, secret: string, nowMs: number): boolean {
  if (apiKeyStatus(key, nowMs) !== 'active') return false;
  if (secretMatches(secret, key.secretHash)) return true;
  return (
    key.previousSecretHash !== null &&
    key.previousSecretExpiresAtMs !== null &&
    nowMs < key.previousSecretExpiresAtMs &&
    secretMatches(secret, key.previousSecretHash)
  );
}
