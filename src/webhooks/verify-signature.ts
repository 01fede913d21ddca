import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Webhook signatures, for this server (signing) and for receivers (verifying). Pure node:crypto, no other
 * import, so a receiver can copy this file as it is.
 *
 *   Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
 *
 * The timestamp is signed with the body, and a receiver rejects signatures older (or newer) than the
 * tolerance, so a captured request cannot be replayed later. Verify against the raw body bytes as received,
 * before any JSON parsing.
 */
export const DEFAULT_TOLERANCE_SECONDS = 300;

export function signWebhook(secret: string, timestampSeconds: number, rawBody: string): string {
  const mac = createHmac('sha256', secret).update(`${timestampSeconds}.${rawBody}`).digest('hex');
  return `t=${timestampSeconds},v1=${mac}`;
}

export interface VerifyOptions {
  /** Seconds a signature stays acceptable either side of now (default 300). */
  toleranceSeconds?: number;
  /** Now, in unix seconds (default: the system clock). */
  nowSeconds?: number;
}

/** True when `header` is a valid signature of `rawBody` under `secret`, made within the tolerance. */
export function verifyWebhookSignature(
  rawBody: string | Buffer,
  header: string | undefined,
  secret: string,
  options: VerifyOptions = {},
): boolean {
  if (typeof header !== 'string') return false;
  const parts = new Map<string, string[]>();
  for (const item of header.split(',')) {
    const at = item.indexOf('=');
    if (at <= 0) continue;
    const key = item.slice(0, at).trim();
    parts.set(key, [...(parts.get(key) ?? []), item.slice(at + 1).trim()]);
  }
  const t = parts.get('t')?.[0];
  if (t === undefined || !/^[0-9]{1,12}$/.test(t)) return false;
  const tolerance = options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  const now = options.nowSeconds ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - Number(t)) > tolerance) return false;
  const body = typeof rawBody === 'string' ? rawBody : rawBody.toString('utf8');
  const expected = Buffer.from(signWebhook(secret, Number(t), body).split(',v1=')[1]!, 'hex');
  // Several v1 values are allowed (secret rotation); each is compared in constant time.
  return (parts.get('v1') ?? []).some((candidate) => {
    if (!/^[0-9a-f]{64}$/.test(candidate)) return false;
    return timingSafeEqual(Buffer.from(candidate, 'hex'), expected);
  });
}
