import { createHash } from 'node:crypto';
import { assert } from './assert.ts';

/**
 * The C2SP formats the audit log speaks (https://c2sp.org/signed-note, https://c2sp.org/tlog-checkpoint):
 *
 *   checkpoint body   "<origin>\n<tree size>\n<base64 root hash>\n"
 *   signed note       "<body>\n— <key name> <base64(key hash (4 bytes) || Ed25519 signature (64 bytes))>\n"
 *   key hash          the first 4 bytes of SHA-256(key name || 0x0A || 0x01 || public key); 0x01 = Ed25519
 *   verifier key      "<key name>+<key hash, 8 hex digits>+<base64(0x01 || public key)>"
 *
 * The key name is the log's origin. The signature covers the body bytes, final newline included.
 */
export const ED25519_SIGNATURE_TYPE = 0x01;
const EM_DASH = '\u2014';

/** Origins and key names: printable ASCII, no spaces, no '+' (it separates the verifier key's fields). */
export const KEY_NAME_PATTERN = /^[\x21-\x2A\x2C-\x7E]{1,255}$/;

export function noteKeyHash(name: string, publicKey: Buffer): Buffer {
  assert(publicKey.length === 32, 'an Ed25519 public key is 32 bytes');
  return createHash('sha256')
    .update(name, 'utf8')
    .update(Buffer.from([0x0a, ED25519_SIGNATURE_TYPE]))
    .update(publicKey)
    .digest()
    .subarray(0, 4);
}

export function verifierKey(name: string, publicKey: Buffer): string {
  const typedKey = Buffer.concat([Buffer.from([ED25519_SIGNATURE_TYPE]), publicKey]);
  return `${name}+${noteKeyHash(name, publicKey).toString('hex')}+${typedKey.toString('base64')}`;
}

export function checkpointBody(origin: string, treeSize: number, root: Buffer): string {
  assert(KEY_NAME_PATTERN.test(origin), 'a checkpoint origin is one printable word');
  assert(Number.isSafeInteger(treeSize) && treeSize >= 0, 'a tree size is a non-negative integer');
  return `${origin}\n${treeSize}\n${root.toString('base64')}\n`;
}

/** Appends one signature line to a note body. */
export function signedNote(body: string, name: string, keyHash: Buffer, signature: Buffer): string {
  assert(
    body.endsWith('\n') && !body.includes('\n\n'),
    'a note body ends in a newline and has no blank line',
  );
  assert(keyHash.length === 4 && signature.length === 64, 'an Ed25519 note signature is 4 + 64 bytes');
  return `${body}\n${EM_DASH} ${name} ${Buffer.concat([keyHash, signature]).toString('base64')}\n`;
}
