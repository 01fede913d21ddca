import { createPrivateKey, createPublicKey, type KeyObject, sign } from 'node:crypto';
import { noteKeyHash, signedNote, verifierKey } from '../domain/signed-note.ts';

/**
 * The audit log's Ed25519 signing key, from AUDIT_SIGNING_KEY: either the base64 32-byte seed or a PKCS#8 PEM
 * ("-----BEGIN PRIVATE KEY-----"). Ed25519 is deterministic, so signing the same body twice gives the same
 * note (a re-run batch on PostgreSQL cannot produce two different signatures for one checkpoint).
 */
const PKCS8_ED25519_SEED_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

export class AuditSigner {
  readonly publicKey: Buffer;
  readonly keyHash: Buffer;

  private constructor(
    readonly name: string,
    private readonly privateKey: KeyObject,
  ) {
    // The raw key is the last 32 bytes of the SPKI encoding (a fixed 12-byte header for Ed25519).
    this.publicKey = createPublicKey(privateKey).export({ format: 'der', type: 'spki' }).subarray(-32);
    this.keyHash = noteKeyHash(name, this.publicKey);
  }

  static fromConfig(keyText: string, name: string): AuditSigner {
    const privateKey = keyText.includes('-----BEGIN')
      ? createPrivateKey(keyText)
      : createPrivateKey({
          key: Buffer.concat([PKCS8_ED25519_SEED_PREFIX, Buffer.from(keyText, 'base64')]),
          format: 'der',
          type: 'pkcs8',
        });
    if (privateKey.asymmetricKeyType !== 'ed25519')
      throw new Error('AUDIT_SIGNING_KEY is not an Ed25519 key');
    return new AuditSigner(name, privateKey);
  }

  /** The C2SP verifier key auditors pin: `<name>+<key hash hex>+<base64(0x01 || public key)>`. */
  verifierKey(): string {
    return verifierKey(this.name, this.publicKey);
  }

  signNote(body: string): string {
    const signature = sign(null, Buffer.from(body, 'utf8'), this.privateKey);
    return signedNote(body, this.name, this.keyHash, signature);
  }
}
