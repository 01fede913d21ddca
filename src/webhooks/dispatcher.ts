import { randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import type { Logger } from 'pino';
import type { Services } from '../app/services.ts';
import { webhookBody } from '../app/views.ts';
import { FAILING_WEBHOOK_HOST, sandboxWebhookAnswer } from '../domain/sandbox.ts';
import type { ClaimedDelivery, DeliveryAttempt } from '../storage/store.ts';
import { liveSigningSecrets } from './secrets.ts';
import { signedHeaders } from './signature.ts';
import { type ResolvedAddress, resolveTarget } from './targets.ts';

/**
 * Delivers the outbox (docs/decisions/0009-webhook-outbox.md). Each process runs one dispatcher loop:
 *
 *   1. claim: one short command leases up to CLAIM_MAX due deliveries to this process (a lease token and
 *      locked_until_ms). On PostgreSQL the candidate rows are taken FOR UPDATE SKIP LOCKED, so processes
 *      never wait for each other and never lease one delivery twice; on SQLite the single writer serialises;
 *   2. send: outside any transaction, POST the event to the endpoint, signed per Standard Webhooks
 *      (src/webhooks/signature.ts), timeout WEBHOOK_TIMEOUT_MS;
 *   3. record: one command stores the attempt if the lease still holds: success, a retry time with
 *      exponential backoff and jitter, or `failed` once the delivery's budget of WEBHOOK_MAX_ATTEMPTS is spent
 *      (a manual retry, POST /v1/webhook-deliveries/:id/retry, grants a fresh budget).
 *
 * A process that dies between 1 and 3 leaves a lease that expires; another process then sends again. That is
 * the at-least-once promise: receivers deduplicate on webhook-id (the event id).
 */
const CLAIM_MAX = 20;
const LEASE_MARGIN_MS = 5_000;
const ERROR_TEXT_MAX = 200;

/** One attempt's outcome, for metrics: `retrying` means it failed and another attempt is scheduled. */
export interface AttemptReport {
  result: 'succeeded' | 'retrying' | 'failed';
  /** From the event's creation to the start of this attempt. */
  lagMs: number;
  eventType: string;
  endpointId: string;
  statusCode: number | null;
}

export interface DispatcherOptions {
  /** Called once per attempt, after it is recorded (a throw is logged, never breaks delivery). */
  onAttempt?: (report: AttemptReport) => void;
}

const RESULT_OF: Record<DeliveryAttempt['status'], AttemptReport['result']> = {
  succeeded: 'succeeded',
  pending: 'retrying',
  failed: 'failed',
};

export class WebhookDispatcher {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<unknown> | null = null;

  constructor(
    private readonly services: Services,
    private readonly logger: Logger,
    private readonly options: DispatcherOptions = {},
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      if (this.running !== null) return;
      this.running = this.dispatchOnce()
        .catch((error) => this.logger.error({ err: error }, 'webhook dispatch failed'))
        .finally(() => {
          this.running = null;
        });
    }, this.services.webhooks.dispatchIntervalMs);
    this.timer.unref();
  }

  /** Stops the loop and waits for the deliveries in flight to be recorded. */
  async stop(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }

  /** One round: claim, send, record. Returns how many deliveries were attempted. */
  async dispatchOnce(): Promise<number> {
    const { committer, clock, webhooks } = this.services;
    const leaseToken = randomUUID();
    // The lease outlives the slowest send of the round (they run in parallel), so no one else takes it.
    const leaseUntilMs = clock() + webhooks.timeoutMs + LEASE_MARGIN_MS;
    const claimed = await committer.submit((tx) =>
      tx.claimWebhookDeliveries(leaseToken, leaseUntilMs, CLAIM_MAX),
    );
    await Promise.all(claimed.map((delivery) => this.deliver(delivery, leaseToken)));
    return claimed.length;
  }

  private async deliver(delivery: ClaimedDelivery, leaseToken: string): Promise<void> {
    const startedAtMs = this.services.clock();
    const outcome = await this.send(delivery, startedAtMs);
    const attempt = this.nextState(delivery, outcome);
    const kept = await this.services.committer.submit((tx) =>
      tx.recordWebhookAttempt(delivery.deliveryId, leaseToken, attempt),
    );
    const context = {
      deliveryId: delivery.deliveryId,
      endpointId: delivery.endpoint.id,
      eventId: delivery.event.id,
      attempt: attempt.attemptsAfter,
      status: attempt.status,
      statusCode: outcome.statusCode,
      error: outcome.error,
    };
    if (!kept) {
      // Another process sends (and reports) it again: an attempt is reported once, when it is recorded.
      this.logger.warn(context, 'webhook lease lost before the attempt was recorded');
      return;
    }
    if (attempt.status !== 'succeeded') this.logger.warn(context, 'webhook delivery attempt failed');
    this.report({
      result: RESULT_OF[attempt.status],
      lagMs: Math.max(0, startedAtMs - delivery.event.createdAtMs),
      eventType: delivery.event.type,
      endpointId: delivery.endpoint.id,
      statusCode: outcome.statusCode,
    });
  }

  private report(report: AttemptReport): void {
    try {
      this.options.onAttempt?.(report);
    } catch (error) {
      this.logger.error({ err: error }, 'webhook attempt hook failed');
    }
  }

  private nextState(delivery: ClaimedDelivery, outcome: SendOutcome): DeliveryAttempt {
    const { webhooks, clock } = this.services;
    const attemptsAfter = delivery.attempts + 1;
    // The budget (and the backoff) count from the last manual retry; `attempts` keeps the whole history.
    const inBudget = attemptsAfter - delivery.attemptsAtRetry;
    const ok = outcome.statusCode !== null && outcome.statusCode >= 200 && outcome.statusCode < 300;
    const exhausted = inBudget >= webhooks.maxAttempts;
    return {
      status: ok ? 'succeeded' : exhausted ? 'failed' : 'pending',
      attemptsAfter,
      nextAttemptAtMs: ok || exhausted ? clock() : clock() + backoffMs(inBudget, webhooks),
      statusCode: outcome.statusCode,
      error: ok ? null : (outcome.error ?? `HTTP ${outcome.statusCode}`),
    };
  }

  private async send(delivery: ClaimedDelivery, nowMs: number): Promise<SendOutcome> {
    const { cipher, webhooks } = this.services;
    let url: URL;
    let addresses: ResolvedAddress[];
    try {
      url = new URL(delivery.endpoint.url);
      // Test mode's reserved hosts answer without any network traffic (src/domain/sandbox.ts).
      const simulated = this.services.mode === 'test' ? sandboxWebhookAnswer(url) : null;
      if (simulated === 'fail')
        return { statusCode: 500, error: `HTTP 500 (${FAILING_WEBHOOK_HOST} fails every delivery)` };
      if (simulated === 'accept') return { statusCode: 200, error: null };
      // Checked again at every attempt: DNS may have changed since registration.
      addresses = await resolveTarget(url, webhooks.allowPrivateTargets);
    } catch (error) {
      return { statusCode: null, error: truncate((error as Error).message) };
    }
    const body = webhookBody(delivery.event);
    // The same webhook-id (the event id) on every attempt; the timestamp and signatures are this attempt's.
    const secrets = liveSigningSecrets(cipher, delivery.endpoint, nowMs);
    // Stamped in real time even in test mode: a receiver checks the timestamp against its own clock (Standard
    // Webhooks: within minutes), which the test clock does not move.
    const sentAtMs = nowMs - (this.services.testClock?.offset ?? 0);
    const headers = {
      'content-type': 'application/json',
      'user-agent': 'payments-webhooks/1',
      ...signedHeaders(secrets, delivery.event.id, Math.floor(sentAtMs / 1000), body),
    };
    return post(url, addresses, headers, body, webhooks.timeoutMs);
  }
}

interface SendOutcome {
  statusCode: number | null;
  error: string | null;
}

/** Exponential backoff with jitter: base · 2^(n-1), capped, then a random point in its upper half. */
export function backoffMs(attempt: number, config: { backoffBaseMs: number; backoffMaxMs: number }): number {
  const ceiling = Math.min(config.backoffMaxMs, config.backoffBaseMs * 2 ** Math.min(attempt - 1, 30));
  return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
}

/** One POST, connected only to the addresses that were checked (no re-resolution, no redirects). */
function post(
  url: URL,
  addresses: ResolvedAddress[],
  headers: Record<string, string>,
  body: string,
  timeoutMs: number,
): Promise<SendOutcome> {
  const pinned: LookupFunction = (_host, options, callback) => {
    if (options.all) callback(null, addresses);
    else callback(null, addresses[0]!.address, addresses[0]!.family);
  };
  const client = url.protocol === 'https:' ? https : http;
  return new Promise((resolve) => {
    const request = client.request(
      url,
      {
        method: 'POST',
        headers: { ...headers, 'content-length': Buffer.byteLength(body) },
        lookup: pinned,
        signal: AbortSignal.timeout(timeoutMs),
      },
      (response) => {
        // The body is not needed; draining it frees the socket.
        response.resume();
        response.on('end', () => resolve({ statusCode: response.statusCode ?? null, error: null }));
        response.on('error', (error) => resolve({ statusCode: null, error: truncate(error.message) }));
      },
    );
    request.on('error', (error) => {
      const timedOut = error.name === 'AbortError' || error.name === 'TimeoutError';
      resolve({
        statusCode: null,
        error: timedOut ? `timeout after ${timeoutMs} ms` : truncate(error.message),
      });
    });
    request.end(body);
  });
}

const truncate = (text: string) => text.slice(0, ERROR_TEXT_MAX);
