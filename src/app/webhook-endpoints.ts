import { randomBytes } from 'node:crypto';
import { AppError } from '../domain/errors.ts';
import { newId } from '../domain/ids.ts';
import type { Actor } from '../domain/types.ts';
import type { WebhookEndpointRow } from '../storage/store.ts';
import { checkWebhookUrl } from '../webhooks/targets.ts';
import type { EventType } from './events.ts';
import { type IdempotentReply, jsonOutcome, optionalIdempotentRequest, runIdempotent } from './idempotent.ts';
import type { Services } from './services.ts';
import { webhookEndpointView } from './views.ts';

/**
 * Webhook endpoint registration (admin). The signing secret is generated here, returned once, and stored
 * encrypted: the server needs the plaintext to sign, so it cannot be a hash. It is never logged or audited.
 */
export interface NewWebhookEndpoint {
  url: string;
  events: EventType[];
}

/**
 * Under an Idempotency-Key (optional) a retry replays the first answer, secret included: the stored response
 * is sealed like the secret's own column, kept for the retention (24 h) and only replayed to the same API key.
 */
export async function registerWebhookEndpoint(
  services: Services,
  actor: Actor,
  idempotencyKey: string | undefined,
  input: NewWebhookEndpoint,
): Promise<IdempotentReply> {
  const request = optionalIdempotentRequest(actor, idempotencyKey, 'POST', '/v1/webhook-endpoints', input);
  // The URL check (DNS) and the secret only once the fast path found no stored answer.
  return runIdempotent(services, request, async () => {
    const url = await checkWebhookUrl(input.url, services.webhooks.allowPrivateTargets);
    const secret = `whsec_${randomBytes(32).toString('base64url')}`;
    const row: WebhookEndpointRow = {
      id: newId('whe'),
      url: url.toString(),
      eventTypes: [...new Set(input.events)],
      secretEnc: services.cipher.encrypt(secret, 'webhook.secret'),
      createdAtMs: 0,
      deletedAtMs: null,
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
    if (!(await tx.deleteWebhookEndpoint(id))) {
      throw new AppError('WEBHOOK_ENDPOINT_NOT_FOUND', 'webhook endpoint not found');
    }
    await tx.appendAudit({
      eventType: 'webhook_endpoint.deleted',
      actorId: actor.apiKeyId,
      requestId: actor.requestId,
      resourceType: 'webhook_endpoint',
      resourceId: id,
      metadata: { endpointId: id },
    });
  });
}
