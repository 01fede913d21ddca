import { createHmac, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';

/**
 * The run's own webhook receiver and a Standard Webhooks verifier written from the specification
 * (docs/webhooks.md, "Verify every delivery"), importing nothing from the server: what a partner's receiver
 * must do, done here so the run can prove the sandbox's deliveries verify and keep their webhook-id.
 */

export const TOLERANCE_SECONDS = 300;

export interface Delivery {
  headers: IncomingHttpHeaders;
  /** The raw body, exactly as received. */
  body: string;
  answered: number;
}

const header = (headers: IncomingHttpHeaders, name: string): string | undefined => {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
};

/**
 * Whether a delivery verifies under `secret` at `nowSeconds`: a fresh timestamp (5 minutes either way) and an
 * HMAC-SHA256 of `<id>.<timestamp>.<raw body>`, keyed with the secret's base64 bytes, equal in constant time to
 * one of the `v1,` signatures. Returns why not, or null.
 */
export function verifyDelivery(
  secret: string,
  headers: IncomingHttpHeaders,
  body: string,
  nowSeconds = Math.floor(Date.now() / 1000),
): string | null {
  const id = header(headers, 'webhook-id');
  const timestamp = header(headers, 'webhook-timestamp') ?? '';
  const signatures = header(headers, 'webhook-signature');
  if (!id || !signatures) return 'webhook-id or webhook-signature missing';
  if (!/^\d{1,12}$/.test(timestamp)) return 'webhook-timestamp is not unix seconds';
  if (Math.abs(nowSeconds - Number(timestamp)) > TOLERANCE_SECONDS) return 'webhook-timestamp is stale';
  if (!secret.startsWith('whsec_')) return 'the secret is not whsec_…';
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  const expected = createHmac('sha256', key).update(`${id}.${timestamp}.${body}`, 'utf8').digest();
  const matches = signatures.split(' ').some((entry) => {
    const [version, signature] = entry.split(',');
    const given = Buffer.from(signature ?? '', 'base64');
    return version === 'v1' && given.length === expected.length && timingSafeEqual(given, expected);
  });
  return matches ? null : 'no v1 signature matches';
}

/** An HTTP server recording every POST; `answer` picks each one's status (204 unless it says otherwise). */
export class WebhookReceiver {
  readonly deliveries: Delivery[] = [];
  answer: (body: string) => number = () => 204;
  private readonly server: Server;

  constructor() {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const answered = this.answer(body);
        this.deliveries.push({ headers: req.headers, body, answered });
        res.writeHead(answered).end();
      });
    });
  }

  /** Listens; returns the URL the sandbox can use when it reaches this machine directly. */
  async start(host: string, port: number): Promise<string> {
    this.server.listen(port, host);
    await once(this.server, 'listening');
    const bound = (this.server.address() as { port: number }).port;
    const reachable = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
    return `http://${reachable.includes(':') ? `[${reachable}]` : reachable}:${bound}/certify-webhooks`;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
