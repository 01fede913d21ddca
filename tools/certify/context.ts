import { randomUUID } from 'node:crypto';
import type { Answer, Client } from './client.ts';

/**
 * What every scenario is given: the client, the run's id (every payment it makes carries
 * `metadata.certifyRun = runId`, so the run can find what it created), fresh funded accounts, and the test clock.
 * A scenario fails by throwing a `Failure`: what happened, then what an integration must do.
 */

export class Failure extends Error {
  constructor(
    readonly happened: string,
    readonly mustDo: string,
  ) {
    super(`${happened} — ${mustDo}`);
  }
}

/** Fails the scenario unless `condition` holds. */
export function expect(condition: unknown, happened: string, mustDo: string): asserts condition {
  if (!condition) throw new Failure(happened, mustDo);
}

/** What an answer was, in a few words for a FAIL line: `201`, or `409 IDEMPOTENCY_KEY_REUSED_…`. */
export function described(answer: Answer): string {
  const code = answer.json?.error?.code;
  const status = answer.json?.payment?.status;
  return `${answer.status}${code ? ` ${code}` : ''}${status ? ` (${status})` : ''}`;
}

export interface Options {
  url: string;
  key: string;
  receiverHost: string;
  receiverPort: number;
  receiverUrl: string | null;
}

export interface Account {
  id: string;
  /** Whether the run opened it (false: discovered with GET /v1/accounts and shared). */
  own: boolean;
}

export interface PaymentInput {
  from: Account;
  to: Account;
  amountCents: number;
  /** Scenario-chosen metadata, added to `certifyRun`. */
  tag: Record<string, string>;
  note?: string;
}

const RUN_FUNDING_CENTS = 2_000_000;
/** Sandbox time moved forward between scenarios, so the 60-second fraud windows of one close before the next. */
export const FRAUD_WINDOW_SECONDS = 61;

export class Run {
  readonly runId = `cert_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
  /** Every payment id the run created, for the paging scenario. */
  readonly payments = new Set<string>();
  /** Whether GET /v1/test/clock answered (the sandbox can move its time forward). */
  testClock = false;
  private counter = 0;
  private discovered: Account[] | null = null;
  private balances = new Map<string, number>();
  private canCreate = true;

  constructor(
    readonly client: Client,
    readonly options: Options,
  ) {}

  /** A unique idempotency key of this run. */
  key(label: string): string {
    return `${this.runId}-${label}-${++this.counter}`;
  }

  /**
   * A USD account holding at least `balanceCents`: a new customer and account when the key may create them
   * (admin), else one found with GET /v1/accounts (shared between scenarios; the test clock separates them).
   */
  async account(balanceCents: number): Promise<Account> {
    if (this.canCreate) {
      const n = ++this.counter;
      const customer = await this.client.send('POST', '/v1/customers', {
        idempotencyKey: `${this.runId}-customer-${n}`,
        body: { name: `Certify Partner ${n}`, country: 'US', documentReference: `${this.runId}-DOC-${n}` },
      });
      if (customer.status === 201) {
        const account = await this.client.send('POST', '/v1/accounts', {
          idempotencyKey: `${this.runId}-account-${n}`,
          body: { customerId: customer.json.customer.id, currency: 'USD', initialBalanceCents: balanceCents },
        });
        expect(
          account.status === 201,
          `POST /v1/accounts answered ${described(account)}`,
          'the certification key must be an admin test key of the sandbox',
        );
        return { id: account.json.account.id, own: true };
      }
      expect(
        customer.status === 403,
        `POST /v1/customers answered ${described(customer)}`,
        'the certification key must be an admin test key of the sandbox',
      );
      this.canCreate = false;
    }
    return this.discover(balanceCents);
  }

  private async discover(balanceCents: number): Promise<Account> {
    if (this.discovered === null) {
      const found: { id: string; currency: string; status?: string; availableBalanceCents: number }[] = [];
      let cursor: string | null = null;
      for (let page = 0; page < 20; page++) {
        const query: string = cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`;
        const res = await this.client.send('GET', `/v1/accounts?limit=100${query}`);
        expect(
          res.status === 200,
          `GET /v1/accounts answered ${described(res)}`,
          'the certification key must be able to read accounts (admin test key recommended)',
        );
        found.push(...res.json.accounts);
        cursor = res.json.nextCursor;
        if (!res.json.hasMore) break;
      }
      this.discovered = found
        .filter((a) => a.currency === 'USD' && (a.status ?? 'active') === 'active')
        .sort((a, b) => b.availableBalanceCents - a.availableBalanceCents)
        .map((a) => ({ id: a.id, own: false }));
      this.balances = new Map(found.map((a) => [a.id, a.availableBalanceCents]));
    }
    const usable = this.discovered.filter((a) => (this.balances.get(a.id) ?? 0) >= balanceCents);
    expect(
      usable.length > 0 || (balanceCents === 0 && this.discovered.length > 0),
      `the key may not create customers and no USD account it sees holds ${balanceCents} cents`,
      'run the certification with an admin test key, or fund a USD account the key can use',
    );
    const pool = usable.length > 0 ? usable : this.discovered;
    return pool[this.counter++ % pool.length]!;
  }

  /** Two fresh accounts: a funded sender and a receiver. */
  async pair(balanceCents = RUN_FUNDING_CENTS): Promise<{ from: Account; to: Account }> {
    const from = await this.account(balanceCents);
    let to = await this.account(0);
    // Shared accounts come round-robin: never pay an account to itself.
    for (let tries = 0; to.id === from.id && tries < 3; tries++) to = await this.account(0);
    expect(
      to.id !== from.id,
      'the key sees only one USD account',
      'run the certification with an admin test key',
    );
    return { from, to };
  }

  /** The body of a payment of this run, tagged for GET /v1/payments?metadata[...]. */
  paymentBody(input: PaymentInput): Record<string, unknown> {
    return {
      sourceAccountId: input.from.id,
      destinationAccountId: input.to.id,
      amountCents: input.amountCents,
      currency: 'USD',
      ...(input.note === undefined ? {} : { note: input.note }),
      metadata: { certifyRun: this.runId, ...input.tag },
    };
  }

  /** POST /v1/payments with a fresh Idempotency-Key; the payment is recorded as the run's. */
  async pay(input: PaymentInput, key = this.key('pay')): Promise<Answer> {
    const answer = await this.client.send('POST', '/v1/payments', {
      idempotencyKey: key,
      body: this.paymentBody(input),
    });
    this.record(answer);
    return answer;
  }

  /** Remembers the payment an answer carries. */
  record(answer: Answer): void {
    const id = answer.json?.payment?.id;
    if (typeof id === 'string') this.payments.add(id);
  }

  /** Lists every payment with this metadata, following the cursor (bounded). */
  async paymentsTagged(tag: Record<string, string>, limit = 100): Promise<{ id: string }[]> {
    const filters = Object.entries({ certifyRun: this.runId, ...tag })
      .map(([k, v]) => `metadata[${k}]=${encodeURIComponent(v)}`)
      .join('&');
    const found: { id: string }[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 200; page++) {
      const query: string = cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`;
      const res = await this.client.send('GET', `/v1/payments?limit=${limit}&${filters}${query}`);
      expect(
        res.status === 200,
        `GET /v1/payments with a metadata filter answered ${described(res)}`,
        'the certification key must be able to list payments',
      );
      found.push(...res.json.payments);
      if (!res.json.hasMore) return found;
      cursor = res.json.nextCursor;
    }
    throw new Failure('GET /v1/payments had more than 200 pages', 'follow nextCursor until hasMore is false');
  }

  /** An account's available balance. */
  async available(account: Account): Promise<number> {
    const res = await this.client.send('GET', `/v1/accounts/${account.id}/balance`);
    expect(res.status === 200, `GET /v1/accounts/:id/balance answered ${described(res)}`, 'read balances');
    return res.json.account.availableBalanceCents;
  }

  /** Moves the sandbox's clock past the fraud windows (no-op without a test clock). */
  async separate(): Promise<void> {
    if (!this.testClock) return;
    await this.client.send('POST', '/v1/test/clock/advance', {
      idempotencyKey: this.key('clock'),
      body: { seconds: FRAUD_WINDOW_SECONDS },
    });
  }
}
