import { AppError } from '../domain/errors.ts';
import { newId } from '../domain/ids.ts';
import type { Actor } from '../domain/types.ts';
import type { LockHints, Tx, WebhookEndpointRow } from '../storage/store.ts';
import { openSigningSecrets, rotateSigningSecrets, sealSigningSecrets } from '../webhooks/secrets.ts';
import { newWebhookSecret } from '../webhooks/signature.ts';
import { checkWebhookUrl } from '../webhooks/targets.ts';
import type { EventType } from './events.ts';
import { type IdempotentReply, jsonOutcome, optionalIdempotentRequest, runIdempotent } from './idempotent.ts';
import type { Services } from './services.ts';
import { webhookDeliveryView, webhookEndpointView } from './views.ts';

/**
 * Webhook endpoints (admin): registration, deletion, signing secret rotation, a test event, and the manual
 * retry of a failed delivery (docs/webhooks.md, docs/decisions/0015-standard-webhooks.md). A signing secret
 * is generated here, returned once (at creation or rotation), and stored encrypted (src/webhooks/secrets.ts):
 * the server needs the plaintext to sign, so it cannot be a hash. It is never logged or audited.
 *
 * Every change is audited in its transaction, and every POST takes an optional Idempotency-Key. Where the
 * response holds a secret, the stored response is sealed like the secret's own column, kept for the retention
 * (24 h) and only replayed to the same API key.
 *
 * Lock order (PostgreSQL, src/storage/postgres.ts): the commands that change an endpoint row name it first
 * (`endpointLock`), so they queue on the advisory lock at the start of the batch and never wait on the row
 * lock later; a manual retry names its delivery the same way.
 */
export interface NewWebhookEndpoint {
  url: string;
  events: EventType[];
}

/** A rotation's grace period: 0 (the old secret stops signing at once) to 7 days; a day by default. */
export const WEBHOOK_ROTATION_GRACE_MAX_SECONDS = 7 * 86_400;
export const WEBHOOK_ROTATION_GRACE_DEFAULT_SECONDS = 86_400;
/**
 * A failed delivery can be retried by hand for this long after it was created: receivers keep the webhook-ids
 * they have processed for at least this long (docs/webhooks.md), so a retry is always deduplicated.
 */
export const WEBHOOK_RETRY_WINDOW_DAYS = 30;
const DAY_MS = 86_400_000;

const endpointLock = (id: string): LockHints => ({ names: [`webhook-endpoint:${id}`] });
const deliveryLock = (id: string): LockHints => ({ names: [`webhook-delivery:${id}`] });
const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export async function registerWebhookEndpoint(
  services: Services,
  actor: Actor,
  idempotencyKey: string | undefined,
  input: NewWebhookEndpoint,
): Promise<IdempotentReply> {
  const request = optionalIdempotentRequest(actor, idempotencyKey, 'POST', '/v1/webhook-endpoints', input);
  // The URL check (DNS) and the secret only once the fast path found no stored answer.
  return runIdempotent(services, request, async () => {
    const url = await checkWebhookUrl(
      input.url,
      services.webhooks.allowPrivateTargets,
      services.mode === 'test',
    );
    const secret = newWebhookSecret();
    const row: WebhookEndpointRow = {
      id: newId('whe'),
      url: url.toString(),
      eventTypes: [...new Set(input.events)],
      secretEnc: sealSigningSecrets(services.cipher, { current: secret, previous: null }),
      createdAtMs: 0,
      deletedAtMs: null,
      previousSecretExpiresAtMs: null,
      secretRotatedAtMs: null,
    };
    return {
      execute: async (tx) => {
        const stamped = { ...row, createdAtMs: tx.nowMs };
        await tx.insertWebhookEndpoint(stamped);
        await tx.appendAudit({
          eventType: 'webhook_endpoint.created',
          actorId: actor.apiKeyId,
          requestId: actor.requestId,
          resourceType: 'webhook_endpoint',
          resourceId: row.id,
          // The host only: a path or query may carry a receiver's own token.
          metadata: { endpointId: row.id, host: url.host, events: row.eventTypes },
        });
        // The only time the secret leaves the server (and its replays, to the same API key).
        return jsonOutcome(201, { webhookEndpoint: { ...webhookEndpointView(stamped), secret } }, row.id);
      },
    };
  });
}

/** Deleting stops future deliveries to the endpoint; its pending ones are no longer sent. */
export async function deleteWebhookEndpoint(services: Services, actor: Actor, id: string): Promise<void> {
  await services.committer.submit(async (tx) => {
    if (!(await tx.deleteWebhookEndpoint(id))) throw endpointNotFound();
    await tx.appendAudit({
      eventType: 'webhook_endpoint.deleted',
      actorId: actor.apiKeyId,
      requestId: actor.requestId,
      resourceType: 'webhook_endpoint',
      resourceId: id,
      metadata: { endpointId: id },
    });
  }, endpointLock(id));
}

/**
 * A new signing secret, returned in this response only (200 `{webhookEndpoint: {..., secret}}`). With a grace
 * period the secret it replaces keeps signing beside it (two `v1,` signatures) until `previousSecretExpiresAt`,
 * so receivers can switch without losing a delivery; a secret replaced earlier and still in its grace period
 * is dropped (at most two). Audited without any secret.
 */
export async function rotateWebhookSecret(
  services: Services,
  actor: Actor,
  idempotencyKey: string | undefined,
  id: string,
  body: { gracePeriodSeconds?: number },
): Promise<IdempotentReply> {
  const grace = body.gracePeriodSeconds ?? WEBHOOK_ROTATION_GRACE_DEFAULT_SECONDS;
  checkGracePeriod(grace);
  const path = `/v1/webhook-endpoints/${id}/rotate-secret`;
  const request = optionalIdempotentRequest(actor, idempotencyKey, 'POST', path, {
    gracePeriodSeconds: grace,
  });
  return runIdempotent(services, request, () => ({
    locks: endpointLock(id),
    execute: async (tx) => {
      const endpoint = await liveEndpoint(tx, id);
      const secret = newWebhookSecret();
      const previousExpiresAtMs = grace > 0 ? tx.nowMs + grace * 1000 : null;
      const secrets = rotateSigningSecrets(
        openSigningSecrets(services.cipher, endpoint.secretEnc),
        secret,
        previousExpiresAtMs !== null,
      );
      const secretEnc = sealSigningSecrets(services.cipher, secrets);
      await tx.saveWebhookEndpointSecrets(id, secretEnc, previousExpiresAtMs);
      await tx.appendAudit({
        eventType: 'webhook_endpoint.secret_rotated',
        actorId: actor.apiKeyId,
        requestId: actor.requestId,
        resourceType: 'webhook_endpoint',
        resourceId: id,
        metadata: {
          endpointId: id,
          gracePeriodSeconds: grace,
          previousSecretExpiresAt: iso(previousExpiresAtMs),
        },
      });
      const rotated: WebhookEndpointRow = {
        ...endpoint,
        secretEnc,
        previousSecretExpiresAtMs: previousExpiresAtMs,
        secretRotatedAtMs: tx.nowMs,
      };
      return jsonOutcome(200, { webhookEndpoint: { ...webhookEndpointView(rotated), secret } }, id);
    },
  }));
}

/**
 * Queues a `ping` to this endpoint only, whatever event types it subscribed to: `{id, type: "ping", createdAt,
 * data: {webhookEndpointId}}`, signed and retried like any event. 202 with the delivery, which
 * GET /v1/webhook-deliveries/:id then follows. Audited; not listed by GET /v1/events (it changes nothing).
 */
export async function sendTestEvent(
  services: Services,
  actor: Actor,
  idempotencyKey: string | undefined,
  id: string,
  body: Record<string, never>,
): Promise<IdempotentReply> {
  const path = `/v1/webhook-endpoints/${id}/test`;
  const request = optionalIdempotentRequest(actor, idempotencyKey, 'POST', path, body);
  return runIdempotent(services, request, () => ({
    locks: endpointLock(id),
    execute: async (tx) => {
      await liveEndpoint(tx, id);
      const { event, delivery } = await tx.insertPingEvent(id, JSON.stringify({ webhookEndpointId: id }));
      await tx.appendAudit({
        eventType: 'webhook_endpoint.test_queued',
        actorId: actor.apiKeyId,
        requestId: actor.requestId,
        resourceType: 'webhook_endpoint',
        resourceId: id,
        metadata: { endpointId: id, eventId: event.id, deliveryId: delivery.id },
      });
      return jsonOutcome(202, { delivery: webhookDeliveryView(delivery) }, delivery.id);
    },
  }));
}

/**
 * A `failed` delivery goes back to `pending`, due now, with a fresh budget of WEBHOOK_MAX_ATTEMPTS attempts
 * (and backoff from its base); `attempts` keeps counting, `manualRetries` goes up by one. The same event, so
 * the same webhook-id: a receiver that did process it after all deduplicates. Anything but `failed` is 409
 * WEBHOOK_DELIVERY_NOT_RETRYABLE; an unknown delivery, or one of a deleted endpoint, 404. Audited.
 */
export async function retryWebhookDelivery(
  services: Services,
  actor: Actor,
  idempotencyKey: string | undefined,
  id: string,
  body: Record<string, never>,
): Promise<IdempotentReply> {
  const path = `/v1/webhook-deliveries/${id}/retry`;
  const request = optionalIdempotentRequest(actor, idempotencyKey, 'POST', path, body);
  return runIdempotent(services, request, () => ({
    locks: deliveryLock(id),
    execute: async (tx) => {
      const createdSinceMs = tx.nowMs - WEBHOOK_RETRY_WINDOW_DAYS * DAY_MS;
      const retry = await tx.retryWebhookDelivery(id, createdSinceMs);
      if (retry.outcome === 'not_found') throw deliveryNotFound();
      if (retry.outcome === 'not_retryable') {
        const { status, createdAtMs } = retry.delivery;
        throw new AppError(
          'WEBHOOK_DELIVERY_NOT_RETRYABLE',
          status === 'failed' && createdAtMs < createdSinceMs
            ? `the delivery is older than ${WEBHOOK_RETRY_WINDOW_DAYS} days: it can no longer be retried`
            : `the delivery is ${status}: only a failed delivery can be retried`,
        );
      }
      const { delivery } = retry;
      await tx.appendAudit({
        eventType: 'webhook_delivery.retried',
        actorId: actor.apiKeyId,
        requestId: actor.requestId,
        resourceType: 'webhook_delivery',
        resourceId: id,
        metadata: {
          deliveryId: id,
          endpointId: delivery.endpointId,
          eventId: delivery.eventId,
          attempts: delivery.attempts,
          manualRetries: delivery.manualRetries,
        },
      });
      return jsonOutcome(202, { delivery: webhookDeliveryView(delivery) }, id);
    },
  }));
}

/** A delivery of a live endpoint, or 404 WEBHOOK_DELIVERY_NOT_FOUND. */
export async function getWebhookDelivery(services: Services, id: string) {
  const delivery = await services.store.reads.getWebhookDelivery(id);
  if (delivery === undefined) throw deliveryNotFound();
  return webhookDeliveryView(delivery);
}

async function liveEndpoint(tx: Tx, id: string): Promise<WebhookEndpointRow> {
  const endpoint = await tx.lockWebhookEndpoint(id);
  if (endpoint === undefined) throw endpointNotFound();
  return endpoint;
}

function checkGracePeriod(seconds: number): void {
  if (!Number.isSafeInteger(seconds) || seconds < 0 || seconds > WEBHOOK_ROTATION_GRACE_MAX_SECONDS) {
    const message = `must be a whole number of seconds from 0 to ${WEBHOOK_ROTATION_GRACE_MAX_SECONDS} (7 days)`;
    throw new AppError('VALIDATION_ERROR', `gracePeriodSeconds ${message}`, [
      { field: '/gracePeriodSeconds', message },
    ]);
  }
}

const endpointNotFound = () => new AppError('WEBHOOK_ENDPOINT_NOT_FOUND', 'webhook endpoint not found');
const deliveryNotFound = () => new AppError('WEBHOOK_DELIVERY_NOT_FOUND', 'webhook delivery not found');
