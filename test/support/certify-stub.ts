import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { newWebhookSecret, signedHeaders } from '../../src/webhooks/signature.ts';

/**
 * A stand-in sandbox for test/certify.test.ts: just enough of the API's shape (test clock, customers, accounts,
 * payments with idempotency and metadata paging, webhook endpoints that deliver payment.posted) for the
 * certification run to get through, with one fault switched on at a time to show that the run names it.
 */
export interface StubFaults {
  /** A retried POST with the same Idempotency-Key creates a new payment. */
  noIdempotency?: boolean;
  /** A failed delivery is sent again under a new webhook-id. */
  newWebhookIdOnRetry?: boolean;
  /** Answers GET /v1/test/clock 403 TEST_MODE_ONLY, as for a live key. */
  liveKey?: boolean;
  /** The key may not create customers (403): the run must use the accounts GET /v1/accounts lists. */
  noCreate?: boolean;
}

// biome-ignore lint/suspicious/noExplicitAny: the stub stores what it was sent
type Json = any;

const id = (prefix: string) => `${prefix}_${randomBytes(8).toString('hex')}`;

export class CertifyStub {
  /** Every request, as "METHOD /path". */
  readonly requests: string[] = [];
  url = '';
  private readonly server: Server;
  private readonly balances = new Map<string, number>();
  private readonly payments: Json[] = [];
  private readonly stored = new Map<string, { body: string; text: string }>();
  private readonly endpoints = new Map<string, { url: string; secret: string }>();

  constructor(private readonly faults: StubFaults = {}) {
    // Two accounts that exist before the run, as a sandbox's own would.
    this.balances.set('acc_existing_a', 5_000_000);
    this.balances.set('acc_existing_b', 5_000_000);
    this.server = createServer((req, res) => {
      let raw = '';
      req.on('data', (chunk) => (raw += chunk));
      req.on('end', () => this.handle(req, res, raw));
    });
  }

  async start(): Promise<this> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.url = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`;
    return this;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private handle(req: IncomingMessage, res: ServerResponse, raw: string) {
    const url = new URL(req.url ?? '/', this.url);
    const route = `${req.method} ${url.pathname}`;
    this.requests.push(route);
    const body = raw === '' ? {} : JSON.parse(raw);
    const send = (status: number, value?: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(value === undefined ? undefined : JSON.stringify(value));
    };
    const error = (status: number, code: string) => send(status, { error: { code, message: code } });
    if (route === 'GET /v1/test/clock') {
      if (this.faults.liveKey) return error(403, 'TEST_MODE_ONLY');
      return send(200, { testClock: { now: new Date().toISOString(), offsetSeconds: 0 } });
    }
    if (route === 'POST /v1/test/clock/advance') return send(200, { testClock: {} });
    if (route === 'GET /v1/me') return send(200, { apiKey: { role: 'admin' } });
    if (route === 'POST /v1/customers') {
      return this.faults.noCreate ? error(403, 'FORBIDDEN') : send(201, { customer: { id: id('cus') } });
    }
    if (route === 'GET /v1/accounts') {
      const accounts = [...this.balances].map(([id, cents]) => ({
        id,
        currency: 'USD',
        status: 'active',
        availableBalanceCents: cents,
      }));
      return send(200, { accounts, hasMore: false, nextCursor: null });
    }
    if (route === 'POST /v1/accounts') {
      const account = { id: id('acc') };
      this.balances.set(account.id, body.initialBalanceCents ?? 0);
      return send(201, { account });
    }
    const balance = /^GET \/v1\/accounts\/([^/]+)\/balance$/.exec(route);
    if (balance)
      return send(200, { account: { availableBalanceCents: this.balances.get(balance[1]!) ?? 0 } });
    if (route === 'POST /v1/payments') return this.pay(req, raw, body, send, error);
    if (route === 'GET /v1/payments') return send(200, this.page(url));
    if (route === 'POST /v1/webhook-endpoints') {
      const endpoint = { id: id('whe'), url: body.url, secret: newWebhookSecret() };
      this.endpoints.set(endpoint.id, endpoint);
      return send(201, { webhookEndpoint: endpoint });
    }
    if (/^GET \/v1\/webhook-endpoints\/[^/]+\/deliveries$/.test(route)) return send(200, { deliveries: [] });
    const deleted = /^DELETE \/v1\/webhook-endpoints\/([^/]+)$/.exec(route);
    if (deleted)
      return this.endpoints.delete(deleted[1]!) ? send(204) : error(404, 'WEBHOOK_ENDPOINT_NOT_FOUND');
    return error(404, 'NOT_FOUND');
  }

  private pay(
    req: IncomingMessage,
    raw: string,
    body: Json,
    send: (status: number, value?: unknown, headers?: Record<string, string>) => void,
    error: (status: number, code: string) => void,
  ) {
    const key = String(req.headers['idempotency-key']);
    const earlier = this.stored.get(key);
    if (earlier !== undefined && !this.faults.noIdempotency) {
      if (earlier.body !== raw) return error(409, 'IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD');
      return send(201, JSON.parse(earlier.text), { 'idempotency-replayed': 'true' });
    }
    const payment = { id: id('pay'), status: 'posted', reasons: [], refundedCents: 0, ...body };
    this.payments.push(payment);
    const text = JSON.stringify({ payment, ledgerPosted: true });
    this.stored.set(key, { body: raw, text });
    send(201, JSON.parse(text), { 'idempotency-replayed': 'false' });
    for (const endpoint of this.endpoints.values()) {
      void this.deliver(endpoint, { id: id('evt'), type: 'payment.posted', data: { payment } }, 1);
    }
  }

  /** Delivers an event, signed; a non-2xx is retried (up to 5 attempts), under a new id with that fault. */
  private async deliver(
    endpoint: { url: string; secret: string },
    event: Json,
    attempt: number,
  ): Promise<void> {
    const text = JSON.stringify(event);
    const headers = signedHeaders([endpoint.secret], event.id, Math.floor(Date.now() / 1000), text);
    const res = await fetch(endpoint.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: text,
    }).catch(() => null);
    if ((res === null || res.status >= 300) && attempt < 5) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      const again = this.faults.newWebhookIdOnRetry ? { ...event, id: id('evt') } : event;
      await this.deliver(endpoint, again, attempt + 1);
    }
  }

  /** GET /v1/payments filtered by metadata[k]=v, paged by an index cursor. */
  private page(url: URL): Json {
    const filters = [...url.searchParams].filter(([k]) => k.startsWith('metadata['));
    const matching = this.payments.filter((p) =>
      filters.every(([k, v]) => p.metadata?.[k.slice('metadata['.length, -1)] === v),
    );
    const from = Number(url.searchParams.get('cursor') ?? 0);
    const limit = Number(url.searchParams.get('limit') ?? 50);
    const payments = matching.slice(from, from + limit);
    const hasMore = from + limit < matching.length;
    return { payments, hasMore, nextCursor: hasMore ? String(from + limit) : null };
  }
}
