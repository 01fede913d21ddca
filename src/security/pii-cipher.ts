import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { dataKeyFingerprint } from './key-fingerprints.ts';

/**
 * Field encryption for personal data at rest: AES-256-GCM with a random 96-bit nonce per value and the key id
 * in the envelope, so keys can rotate (new writes use the primary key; older keys stay for reading).
 * Envelope: `v1.<keyId>.<nonce b64url>.<tag b64url>.<ciphertext b64url>`.
 *
 * Duplicate detection needs equality without decryption, so document references and account numbers also get
 * a blind index: HMAC-SHA256 under the blind-index key. That key is NOT the primary data key: it is fixed when
 * the database is first written (HKDF of the data key in use then) and kept with the data, wrapped under the
 * current data key (src/app/key-rotation.ts), so rotating the data key never changes an index and duplicate
 * detection keeps working through a rotation (docs/decisions/0012-key-management.md).
 */
const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const INDEX_KEY_INFO = 'pii-blind-index-v1';
/** `v1.` + 8 hex digits + `.`: the part of an envelope that names its key. */
export const ENVELOPE_KEY_PREFIX_CHARS = 12;

export interface PiiCipherOptions {
  /** The blind-index key; absent: derived from the primary key (a database's first key, and tools). */
  indexKey?: Buffer;
}

export class PiiCipher {
  private readonly keys = new Map<string, Buffer>();
  /** The id (in envelopes) of the key new values are encrypted with. */
  private primaryId: string;
  /** The primary key's fingerprint, as the database records it (src/security/key-fingerprints.ts). */
  private primaryFingerprint: string;
  private readonly indexKey: Buffer;

  /** `keys[0]` is the primary (encrypting) key; any others only decrypt. */
  constructor(keys: Buffer[], options: PiiCipherOptions = {}) {
    if (keys.length === 0) throw new Error('PiiCipher needs at least one key');
    for (const key of keys) {
      if (key.length !== KEY_BYTES) throw new Error('data encryption keys are 32 bytes');
      this.keys.set(keyId(key), key);
    }
    this.primaryId = keyId(keys[0]!);
    this.primaryFingerprint = dataKeyFingerprint(keys[0]!);
    const indexKey = options.indexKey ?? deriveIndexKey(keys[0]!);
    if (indexKey.length !== KEY_BYTES) throw new Error('the blind-index key is 32 bytes');
    this.indexKey = indexKey;
  }

  get primaryKeyId(): string {
    return this.primaryId;
  }

  get primaryKeyFingerprint(): string {
    return this.primaryFingerprint;
  }

  /**
   * Makes another configured key the primary (a rotation begun by another process: src/app/key-rotation.ts,
   * `watchKeys`). False when this cipher does not hold that key. Takes effect for the next encrypt: encrypt is
   * synchronous, so no value is ever half under one key.
   */
  usePrimary(fingerprint: string): boolean {
    for (const [id, key] of this.keys) {
      if (dataKeyFingerprint(key) !== fingerprint) continue;
      this.primaryId = id;
      this.primaryFingerprint = fingerprint;
      return true;
    }
    return false;
  }

  encrypt(plaintext: string, context: string): string {
    const key = this.keys.get(this.primaryId)!;
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key, nonce);
    // The context (e.g. "customer.name") is authenticated, so a ciphertext cannot be moved to another column.
    cipher.setAAD(Buffer.from(context));
    const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    const parts = [nonce, cipher.getAuthTag(), ciphertext].map((b) => b.toString('base64url'));
    return ['v1', this.primaryId, ...parts].join('.');
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

  /** Whether an envelope was written with the primary key (key rotation skips those). */
  isUnderPrimaryKey(envelope: string): boolean {
    return envelope.startsWith(`v1.${this.primaryId}.`);
  }

  /** Whether an envelope names one of this cipher's keys (it may still fail to authenticate). */
  hasKeyFor(envelope: string): boolean {
    const [version, id] = envelope.split('.', 2);
    return version === 'v1' && id !== undefined && this.keys.has(id);
  }

  /** The same plaintext under the primary key (key rotation). */
  reencrypt(envelope: string, context: string): string {
    return this.encrypt(this.decrypt(envelope, context), context);
  }

  blindIndex(value: string, context: string): string {
    return createHmac('sha256', this.indexKey).update(`${context}\0${value}`).digest('hex');
  }
}

/** The blind-index key a database gets when it is first written: HKDF of the data key in use then. */
export function deriveIndexKey(dataKey: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', dataKey, Buffer.alloc(0), INDEX_KEY_INFO, KEY_BYTES));
}

/** The key id in envelopes: enough to pick a key, not a fingerprint (src/security/key-fingerprints.ts). */
export function keyId(key: Buffer): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 8);
}

export function maskAccountNumber(last4: string): string {
  return `**** **** **** ${last4}`;
}
