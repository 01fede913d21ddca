import type { PiiCipher } from '../security/pii-cipher.ts';

/**
 * An endpoint's signing secrets at rest: the current one and, during a rotation's grace period, the previous
 * one. Both sit in ONE PiiCipher envelope in webhook_endpoints.secret_enc, newest first and space-separated
 * (a secret never holds a space), so the data-key rotation, which re-encrypts every catalogued column
 * (src/storage/key-rotation-sql.ts), re-encrypts both. An endpoint written before migration 12 holds one
 * secret: it reads as a current secret without a previous one. The server needs the plaintext to sign, so a
 * hash would not do; the envelope is opened only to sign an attempt and to rotate.
 */
export interface SigningSecrets {
  current: string;
  previous: string | null;
}

export function sealSigningSecrets(cipher: PiiCipher, secrets: SigningSecrets): string {
  const text = secrets.previous === null ? secrets.current : `${secrets.current} ${secrets.previous}`;
  return cipher.encrypt(text, 'webhook.secret');
}

export function openSigningSecrets(cipher: PiiCipher, secretEnc: string): SigningSecrets {
  const [current, previous, ...rest] = cipher.decrypt(secretEnc, 'webhook.secret').split(' ');
  if (current === undefined || current === '' || rest.length > 0) {
    throw new Error('webhook_endpoints.secret_enc holds one or two secrets');
  }
  return { current, previous: previous ?? null };
}

/** The secrets that sign an attempt at `nowMs`: the current one, then the previous one while its grace lasts. */
export function liveSigningSecrets(
  cipher: PiiCipher,
  endpoint: { secretEnc: string; previousSecretExpiresAtMs: number | null },
  nowMs: number,
): string[] {
  const { current, previous } = openSigningSecrets(cipher, endpoint.secretEnc);
  const graceLasts =
    endpoint.previousSecretExpiresAtMs !== null && nowMs < endpoint.previousSecretExpiresAtMs;
  return previous !== null && graceLasts ? [current, previous] : [current];
}

/**
 * After a rotation: the new secret, and the one it replaces while a grace period is given. At most two: a
 * previous secret still in its grace period is dropped, since the current one is the newer of the two.
 */
export function rotateSigningSecrets(
  before: SigningSecrets,
  newSecret: string,
  keepPrevious: boolean,
): SigningSecrets {
  return { current: newSecret, previous: keepPrevious ? before.current : null };
}
