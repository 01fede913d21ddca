import { createHash, createHmac, createPublicKey, verify } from 'node:crypto';
import { assert } from '../domain/assert.ts';

/**
 * Keys match the data (docs/decisions/0012-key-management.md). The database records, in one settings row, what
 * its data was written with: fingerprints of the data-encryption keys its values may be encrypted with, the
 * blind-index key (wrapped under a data key, never in clear) and the fingerprint of the audit-signing public
 * key. A process whose keys do not match refuses to start with one line naming the variable, instead of
 * writing values the other processes cannot decrypt or signing checkpoints with another key.
 *
 * A fingerprint identifies a key without revealing it: HMAC-SHA256 of the data key under a fixed label (the
 * key is the HMAC key, so the fingerprint is no help in guessing it), SHA-256 of the audit public key.
 */
export const KEY_RECORD_SETTING = 'key_fingerprints';
export const KEYS_DOC = 'docs/deployment.md#rotating-keys';
export const DATA_KEY_VARIABLE = 'DATA_ENCRYPTION_KEY';
export const PREVIOUS_DATA_KEYS_VARIABLE = 'DATA_ENCRYPTION_KEYS_PREVIOUS';
export const AUDIT_KEY_VARIABLE = 'AUDIT_SIGNING_KEY';

const DATA_KEY_FINGERPRINT_LABEL = 'payments-api data-encryption key fingerprint v1';
/** Hex digits shown in messages: 64 bits, enough to tell keys apart at a glance. */
const SHOWN_HEX_DIGITS = 16;
const HEX_64 = /^[0-9a-f]{64}$/;
/** A database that records more data keys than this is corrupt: a rotation adds one at a time. */
export const RECORDED_DATA_KEYS_MAX = 16;

export interface KeyRecord {
  version: 1;
  /** Fingerprints of the data keys stored values may be encrypted with: the newest primary first. */
  dataKeys: string[];
  /** The blind-index key, as a PiiCipher envelope under one of `dataKeys` (context BLIND_INDEX_KEY_CONTEXT). */
  blindIndexKey: string;
  /** SHA-256 (hex) of the audit-signing Ed25519 public key. */
  auditPublicKey: string;
}

export const BLIND_INDEX_KEY_CONTEXT = 'key.blindIndex';

export function dataKeyFingerprint(key: Buffer): string {
  return createHmac('sha256', key).update(DATA_KEY_FINGERPRINT_LABEL).digest('hex');
}

export function auditKeyFingerprint(publicKey: Buffer): string {
  assert(publicKey.length === 32, 'an Ed25519 public key is 32 bytes');
  return createHash('sha256').update(publicKey).digest('hex');
}

export function shortFingerprint(fingerprint: string): string {
  return fingerprint.slice(0, SHOWN_HEX_DIGITS);
}

export function serializeKeyRecord(record: KeyRecord): string {
  return JSON.stringify(record);
}

/** The stored record, checked: a malformed one is corrupt state, not something to guess around. */
export function parseKeyRecord(text: string): KeyRecord {
  const value = JSON.parse(text) as Partial<KeyRecord>;
  assert(
    value.version === 1 &&
      Array.isArray(value.dataKeys) &&
      value.dataKeys.length >= 1 &&
      value.dataKeys.length <= RECORDED_DATA_KEYS_MAX &&
      value.dataKeys.every((fp) => typeof fp === 'string' && HEX_64.test(fp)) &&
      typeof value.blindIndexKey === 'string' &&
      value.blindIndexKey.startsWith('v1.') &&
      typeof value.auditPublicKey === 'string' &&
      HEX_64.test(value.auditPublicKey),
    `the ${KEY_RECORD_SETTING} setting is not a valid key record`,
  );
  return value as KeyRecord;
}

/**
 * A key that does not match the data: start-up (and every command) stops here, with one line naming the
 * variable and the fingerprints, and main prints it as `Start-up failed: ...`.
 */
export class KeyMismatchError extends Error {
  override name = 'KeyMismatchError';
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${message}. See ${KEYS_DOC}`);
  }
}

/** How a key was configured, for messages: the variable, or the development key file standing in for it. */
export interface KeySource {
  variable: string;
  /** Where the development key came from when the variable is not set; null when it is set. */
  devKeysAt: string | null;
}

function describe(source: KeySource): string {
  return source.devKeysAt === null
    ? source.variable
    : `${source.variable} is not set, and the development key in ${source.devKeysAt}`;
}

const list = (fingerprints: string[]) => fingerprints.map(shortFingerprint).join(', ');

/**
 * Checks the configured data keys (fingerprints, primary first) against the recorded ones and returns the
 * record's list, unchanged or with a new primary. Every recorded key must be configured (values may be
 * encrypted with any of them). A new primary is the start of a rotation: it joins the list, first, before this
 * process writes anything with it; `npm run keys -- reencrypt` later shrinks the list to the primary alone.
 */
export function checkDataKeys(recorded: string[], configured: string[], source: KeySource): string[] {
  const primary = configured[0];
  assert(primary !== undefined, 'a process has a primary data key');
  const missing = recorded.filter((fp) => !configured.includes(fp));
  if (missing.length > 0) {
    const overlap = recorded.some((fp) => configured.includes(fp));
    if (!overlap) {
      throw new KeyMismatchError(
        source.variable,
        `${describe(source)} does not match the key this database was written with (fingerprint ${shortFingerprint(primary)}; expected ${list(recorded)})`,
      );
    }
    throw new KeyMismatchError(
      PREVIOUS_DATA_KEYS_VARIABLE,
      `${PREVIOUS_DATA_KEYS_VARIABLE} must still hold the data key with fingerprint ${list(missing)}: values in this database are encrypted with it until \`npm run keys -- reencrypt\` has finished`,
    );
  }
  if (recorded.includes(primary)) return recorded;
  const next = [primary, ...recorded];
  assert(next.length <= RECORDED_DATA_KEYS_MAX, `at most ${RECORDED_DATA_KEYS_MAX} data keys are recorded`);
  return next;
}

export function checkAuditKey(recorded: string, configured: string, source: KeySource): void {
  if (recorded === configured) return;
  throw new KeyMismatchError(
    source.variable,
    `${describe(source)} does not match the key this database's audit log is signed with (public key fingerprint ${shortFingerprint(configured)}; expected ${shortFingerprint(recorded)}); to change it deliberately run \`npm run keys -- accept-audit-key\` with the new key`,
  );
}

/** A data value this process cannot decrypt, in a database that has no key record yet (written before it). */
export function legacyDataMismatch(source: KeySource): KeyMismatchError {
  return new KeyMismatchError(
    source.variable,
    `${describe(source)} does not match the key this database was written with (its stored values do not decrypt with the configured keys)`,
  );
}

/** Blind indexes computed with a key none of the configured data keys derives (a database from before 0012). */
export function legacyIndexMismatch(source: KeySource): KeyMismatchError {
  return new KeyMismatchError(
    source.variable,
    `${describe(source)} does not match the key this database's blind indexes were computed with (duplicate detection would silently stop working); configure the data key this database was first written with, in ${PREVIOUS_DATA_KEYS_VARIABLE} if it is no longer the primary`,
  );
}

/** The audit log's latest checkpoint was signed with another key (a database from before the key record). */
export function legacyAuditMismatch(source: KeySource, configured: string): KeyMismatchError {
  return new KeyMismatchError(
    source.variable,
    `${describe(source)} does not match the key this database's audit checkpoints were signed with (public key fingerprint ${shortFingerprint(configured)}); to change it deliberately run \`npm run keys -- accept-audit-key\` with the new key`,
  );
}

const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const NOTE_KEY_HASH_BYTES = 4;
const ED25519_SIGNATURE_BYTES = 64;

/**
 * Whether a stored signed note (src/domain/signed-note.ts) carries a valid signature by this Ed25519 public
 * key, whatever its key name: used once, for a database whose audit key was never recorded.
 */
export function noteSignedBy(note: string, publicKey: Buffer): boolean {
  const split = note.indexOf('\n\n');
  if (split < 0) return false;
  const body = note.slice(0, split + 1);
  const key = createPublicKey({
    key: Buffer.concat([ED25519_SPKI_PREFIX, publicKey]),
    format: 'der',
    type: 'spki',
  });
  for (const line of note.slice(split + 2).split('\n')) {
    const blob = Buffer.from(line.split(' ')[2] ?? '', 'base64');
    if (blob.length !== NOTE_KEY_HASH_BYTES + ED25519_SIGNATURE_BYTES) continue;
    if (verify(null, Buffer.from(body, 'utf8'), key, blob.subarray(NOTE_KEY_HASH_BYTES))) return true;
  }
  return false;
}
