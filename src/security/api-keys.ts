import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * API key secrets are shown once and stored only as SHA-256 hashes. A secret has 256 bits of entropy, so a
 * fast hash is enough (no password stretching needed). Lookups go by hash; the final comparison is constant
 * time anyway, so nothing about a stored hash leaks through timing.
 */
export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

export function newSecret(): string {
  return `sk_${randomBytes(32).toString('base64url')}`;
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
