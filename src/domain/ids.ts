import { randomBytes } from 'node:crypto';

/** Opaque ids with a type prefix, from a cryptographic random source (120 bits, base32, no look-alikes). */
const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';
const ID_RANDOM_CHARS = 24;

export type IdPrefix = 'cus' | 'acc' | 'pay' | 'led' | 'ltx' | 'aud' | 'key' | 'req' | 'hold' | 'att' | 'kyc';

export function newId(prefix: IdPrefix): string {
  const bytes = randomBytes(ID_RANDOM_CHARS);
  let out = `${prefix}_`;
  for (let i = 0; i < ID_RANDOM_CHARS; i++) out += ALPHABET[bytes[i]! & 31];
  return out;
}
