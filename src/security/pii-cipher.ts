import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto';

/**
 * Field encryption for personal data at rest: AES-256-GCM with a random 96-bit nonce per value and the key id
 * in the envelope, so keys can rotate (new writes use the primary key; older keys stay for reading).
 * Envelope: `v1.<keyId>.<nonce b64url>.<tag b64url>.<ciphertext b64url>`.
 *
 * Duplicate detection needs equality without decryption, so document references also get a blind index:
 * HMAC-SHA256 under a key derived (HKDF) from the primary data key. Rotating the primary key therefore needs
 * a re-index of that column (see docs/decisions/0004-pii-encryption.md).
 */
const KEY_BYTES = 32;
const NONCE_BYTES = 12;

export class PiiCipher {
  private readonly keys = new Map<string, Buffer>();
  private readonly primaryKeyId: string;
  private readonly indexKey: Buffer;

  /** `keys[0]` is the primary (encrypting) key; any others only decrypt. */
  constructor(keys: Buffer[]) {
    if (keys.length === 0) throw new Error('PiiCipher needs at least one key');
    for (const key of keys) {
      if (key.length !== KEY_BYTES) throw new Error('data encryption keys are 32 bytes');
      this.keys.set(keyId(key), key);
    }
    this.primaryKeyId = keyId(keys[0]!);
    this.indexKey = Buffer.from(
      hkdfSync('sha256', keys[0]!, Buffer.alloc(0), 'pii-blind-index-v1', KEY_BYTES),
    );
  }

  encrypt(plaintext: string, context: string): string {
    const key = this.keys.get(this.primaryKeyId)!;
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key, nonce);
    // The context (e.g. "customer.name") is authenticated, so a ciphertext cannot be moved to another column.
    cipher.setAAD(Buffer.from(context));
    const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    const parts = [nonce, cipher.getAuthTag(), ciphertext].map((b) => b.toString('base64url'));
    return ['v1', this.primaryKeyId, ...parts].join('.');
  }

  decrypt(envelope: string, context: string): string {
    const [version, id, nonce, tag, ciphertext] = envelope.split('.');
    const key = id === undefined ? undefined : this.keys.get(id);
    if (
      version !== 'v1' ||
      key === undefined ||
      nonce === undefined ||
      tag === undefined ||
      ciphertext === undefined
    ) {
      throw new Error(`cannot decrypt ${context}: unknown envelope or key id`);
    }
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(nonce, 'base64url'));
    decipher.setAAD(Buffer.from(context));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]).toString(
      'utf8',
    );
  }

  blindIndex(value: string, context: string): string {
    return createHmac('sha256', this.indexKey).update(`${context}\0${value}`).digest('hex');
  }
}

function keyId(key: Buffer): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 8);
}

export function maskAccountNumber(last4: string): string {
  return `**** **** **** ${last4}`;
}
