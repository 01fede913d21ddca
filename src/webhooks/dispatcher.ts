import { randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import type { Logger } from 'pino';
import type { Services } from '../app/services.ts';
import { webhookBody } from '../app/views.ts';
import type { ClaimedDelivery, DeliveryAttempt } from '../storage/store.ts';
import { type ResolvedAddress, resolveTarget } from './targets.ts';
import { signWebhook } from './verify-signature.ts';

/**
 * Delivers the outbox (docs/decisions/0009-webhook-outbox.md). Each process runs one dispatcher loop:
 *
 *   1. claim: one short command leases up to CLAIM_MAX due deliveries to this process (a lease token and
 *      locked_until_ms). On PostgreSQL the candidate rows are taken FOR UPDATE SKIP LOCKED, so processes
 *      never wait for each other and never lease one delivery twice; on SQLite the single writer serialises;
 *   2. send: outside any transaction, POST the signed event to the endpoint (timeout WEBHOOK_TIMEOUT_MS);
 *   3. record: one command stores the attempt if the lease still holds: success, a retry time with
 *      exponential backoff and jitter, or `failed` after WEBHOOK_MAX_ATTEMPTS.
 *
 * A process that dies between 1 and 3 leaves a lease that expires; another process then sends again. That is
 * the at-least-once promise: receivers deduplicate on Webhook-Id (the event id).
 */
const CLAIM_MAX = 20;
const LEASE_MARGIN_MS = 5_000;
const ERROR_TEXT_MAX = 200;

export class WebhookDispatcher {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<unknown> | null = null;

  constructor(
    private readonly services: Services,
    private readonly logger: Logger,
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
    const outcome = await this.send(delivery);
    const attempt = this.nextState(delivery.attempts + 1, outcome);
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
    if (!kept) this.logger.warn(context, 'webhook lease lost before the attempt was recorded');
    else if (attempt.status !== 'succeeded') this.logger.warn(context, 'webhook delivery attempt failed');
  }

  private nextState(attemptsAfter: number, outcome: SendOutcome): DeliveryAttempt {
    const { webhooks, clock } = this.services;
    const ok = outcome.statusCode !== null && outcome.statusCode >= 200 && outcome.statusCode < 300;
    const exhausted = attemptsAfter >= webhooks.maxAttempts;
    return {
      status: ok ? 'succeeded' : exhausted ? 'failed' : 'pending',
      attemptsAfter,
      nextAttemptAtMs: ok || exhausted ? clock() : clock() + backoffMs(attemptsAfter, webhooks),
      statusCode: outcome.statusCode,
      error: ok ? null : (outcome.error ?? `HTTP ${outcome.statusCode}`),
    };
  }

  private async send(delivery: ClaimedDelivery): Promise<SendOutcome> {
    const { cipher, clock, webhooks } = this.services;
    let url: URL;
    let addresses: ResolvedAddress[];
    try {
      url = new URL(delivery.endpoint.url);
      // Checked again at every attempt: DNS may have changed since registration.
      addresses = await resolveTarget(url, webhooks.allowPrivateTargets);
    } catch (error) {
      return { statusCode: null, error: truncate((error as Error).message) };
    }
    const body = webhookBody(delivery.event);
    const secret = cipher.decrypt(delivery.endpoint.secretEnc, 'webhook.secret');
    const headers = {
      'content-type': 'application/json',
      'user-agent': 'payments-webhooks/1',
      'webhook-id': delivery.event.id,
      'webhook-signature': signWebhook(secret, Math.floor(clock() / 1000), body),
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
