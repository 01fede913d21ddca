import { randomFillSync } from 'node:crypto';

/** Opaque ids with a type prefix: time-ordered, with 80 bits from a cryptographic random source (base32, no look-alikes). */
const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';
const RANDOM_CHARS = 16;

export type IdPrefix =
  | 'cus'
  | 'acc'
  | 'pay'
  | 'led'
  | 'ltx'
  | 'aud'
  | 'key'
  | 'req'
  | 'hold'
  | 'att'
  | 'kyc'
  | 'ref'
  | 'evt'
  | 'whe'
  | 'whd'
  | 'fxq'
  | 'pbt'
  | 'case';

/**
 * `<prefix>_` + 10 characters of time (milliseconds, base32) + 16 characters of randomness (80 bits from a
 * cryptographic source). The time part makes ids of one kind arrive in roughly increasing order, so each
 * insert lands at the right edge of its unique index instead of on a random page: fewer pages are dirtied per
 * commit, and durable commits get cheaper. Ids stay opaque to clients; the creation time they carry is also
 * in the resource's `createdAt`.
 */
const TIME_CHARS = 10;

export function newId(prefix: IdPrefix): string {
  let out = `${prefix}_`;
  let ms = Date.now();
  const time: string[] = [];
  for (let i = 0; i < TIME_CHARS; i++) {
    time.push(ALPHABET[ms % 32]!);
    ms = Math.floor(ms / 32);
  }
  out += time.reverse().join('');
  const offset = takeRandom(RANDOM_CHARS);
  for (let i = offset; i < offset + RANDOM_CHARS; i++) out += ALPHABET[pool[i]! & 31];
  return out;
}

// Random bytes are drawn from the CSPRNG a pool at a time (one call per 256 ids, not one per id), and each
// byte is used once.
const pool = Buffer.alloc(4096);
let poolUsed = pool.length;

function takeRandom(n: number): number {
  if (poolUsed + n > pool.length) {
    randomFillSync(pool);
    poolUsed = 0;
  }
  poolUsed += n;
  return poolUsed - n;
}
