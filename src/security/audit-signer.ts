import {
  createHmac,
  createPrivateKey,
  createPublicKey,
  hkdfSync,
  type KeyObject,
  sign,
  timingSafeEqual,
  verify,
} from 'node:crypto';
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
  private readonly publicKeyObject: KeyObject;
  /** Authenticates the server's own records about the log (the verified prefix), derived from the seed. */
  private readonly macKey: Buffer;

  private constructor(
    readonly name: string,
    private readonly privateKey: KeyObject,
  ) {
    this.publicKeyObject = createPublicKey(privateKey);
    // The raw key is the last 32 bytes of the SPKI encoding (a fixed 12-byte header for Ed25519).
    this.publicKey = this.publicKeyObject.export({ format: 'der', type: 'spki' }).subarray(-32);
    this.keyHash = noteKeyHash(name, this.publicKey);
    const seed = privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(-32);
    this.macKey = Buffer.from(hkdfSync('sha256', seed, Buffer.alloc(0), 'audit-verification-mac-v1', 32));
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

  /**
   * The sandbox's signer: a key derived from this one (HKDF over its seed) under the name `<name>/sandbox`. Test
   * mode's log is another log: signed with the live key and name, its checkpoints and receipts would verify as
   * live ones, and two logs of one name and key look like a fork to a witness. Derived, so every process of a
   * deployment has it without another variable; one-way, so it reveals nothing of the live key.
   */
  sandbox(): AuditSigner {
    const seed = this.privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(-32);
    const derived = Buffer.from(
      hkdfSync('sha256', seed, Buffer.alloc(0), 'audit-signing-key-sandbox-v1', 32),
    );
    const privateKey = createPrivateKey({
      key: Buffer.concat([PKCS8_ED25519_SEED_PREFIX, derived]),
      format: 'der',
      type: 'pkcs8',
    });
    return new AuditSigner(`${this.name}/sandbox`, privateKey);
  }

  /** The C2SP verifier key auditors pin: `<name>+<key hash hex>+<base64(0x01 || public key)>`. */
  verifierKey(): string {
    return verifierKey(this.name, this.publicKey);
  }

  /**
   * Whether a signed note carries a valid signature by this key over its text (C2SP signed-note): a line
   * `— <name> base64(key hash || signature)` after the blank line that ends the text.
   */
  verifiesNote(note: string): boolean {
    const split = note.indexOf('\n\n');
    if (split < 0) return false;
    const text = Buffer.from(note.slice(0, split + 1), 'utf8');
    const prefix = `\u2014 ${this.name} `;
    for (const line of note.slice(split + 2).split('\n')) {
      if (!line.startsWith(prefix)) continue;
      const blob = Buffer.from(line.slice(prefix.length), 'base64');
      if (blob.length !== 68 || !blob.subarray(0, 4).equals(this.keyHash)) continue;
      return verify(null, text, this.publicKeyObject, blob.subarray(4));
    }
    return false;
  }

  /** A MAC (hex) over a record the server keeps about the log, so that editing the record is noticed. */
  mac(text: string): string {
    return createHmac('sha256', this.macKey).update(text, 'utf8').digest('hex');
  }

  macMatches(text: string, mac: string | null): boolean {
    if (mac === null) return false;
    const expected = Buffer.from(this.mac(text), 'hex');
    const given = Buffer.from(mac, 'hex');
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  signNote(body: string): string {
    const signature = sign(null, Buffer.from(body, 'utf8'), this.privateKey);
    return signedNote(body, this.name, this.keyHash, signature);
  }
}
