import { createHmac, randomBytes } from 'node:crypto';

/**
 * Standard Webhooks signing (https://www.standardwebhooks.com), the server's side. Receivers verify with the
 * official libraries (`standardwebhooks` on npm, Svix's) or by hand as docs/webhooks.md describes; a runnable
 * receiver is examples/webhook-receiver.mjs. Each attempt carries three headers:
 *
 *   webhook-id         the event id: the same for every attempt of the event (receivers deduplicate on it)
 *   webhook-timestamp  unix seconds of this attempt
 *   webhook-signature  v1,<base64 HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<raw body>")>, one per live
 *                      secret, space-separated, the newest first (two during a rotation's grace period)
 *
 * The HMAC key is the secret's bytes: a secret is `whsec_` + the standard base64 of 32 random bytes, and the
 * key is what that base64 decodes to. Secrets made before Standard Webhooks (migration 12) are `whsec_` +
 * unpadded base64url; their bytes are taken the same way (docs/decisions/0015-standard-webhooks.md).
 */
export const SECRET_PREFIX = 'whsec_';
const SECRET_BYTES = 32;
const STANDARD_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const BASE64URL = /^[A-Za-z0-9_-]+$/;

/** A new signing secret, in the format the official libraries decode. */
export function newWebhookSecret(): string {
  return `${SECRET_PREFIX}${randomBytes(SECRET_BYTES).toString('base64')}`;
}

/** The HMAC key of a secret: its base64 (or, for a legacy secret, base64url) decoded. */
export function secretKey(secret: string): Buffer {
  if (!secret.startsWith(SECRET_PREFIX)) throw new Error('a webhook secret starts with whsec_');
  const encoded = secret.slice(SECRET_PREFIX.length);
  let key: Buffer;
  if (STANDARD_BASE64.test(encoded)) key = Buffer.from(encoded, 'base64');
  else if (BASE64URL.test(encoded)) key = Buffer.from(encoded, 'base64url');
  else throw new Error('a webhook secret is whsec_ and base64');
  if (key.length === 0) throw new Error('a webhook secret is not empty');
  return key;
}

/** One signature: `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`. */
export function signatureV1(secret: string, id: string, timestampSeconds: number, body: string): string {
  const mac = createHmac('sha256', secretKey(secret)).update(`${id}.${timestampSeconds}.${body}`, 'utf8');
  return `v1,${mac.digest('base64')}`;
}

export interface SignedHeaders {
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
}

/** The three Standard Webhooks headers of one attempt, signed with every live secret (newest first). */
export function signedHeaders(
  secrets: readonly string[],
  id: string,
  timestampSeconds: number,
  body: string,
): SignedHeaders {
  if (secrets.length === 0) throw new Error('an attempt is signed with at least one secret');
  return {
    'webhook-id': id,
    'webhook-timestamp': String(timestampSeconds),
    'webhook-signature': secrets.map((s) => signatureV1(s, id, timestampSeconds, body)).join(' '),
  };
}
