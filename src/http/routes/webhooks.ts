import { readScopeOf } from '../../app/scope.ts';
import type { Services } from '../../app/services.ts';
import { eventView, webhookDeliveryView, webhookEndpointView } from '../../app/views.ts';
import { deleteWebhookEndpoint, registerWebhookEndpoint } from '../../app/webhook-endpoints.ts';
import { AppError } from '../../domain/errors.ts';
import { ADMIN_ONLY, READ_EVENTS } from '../auth.ts';
import { optionalIdempotencyKeyOf, sendStored } from '../idempotency.ts';
import { decodeCursor, encodeCursor, pageLimit } from '../paging.ts';
import { CreateWebhookEndpointBody, IdParams, ListQuery } from '../schemas.ts';
import { denyScopedKeys } from '../scope-guard.ts';
import type { HttpApp } from '../types.ts';

/** The outbox as a list (auditor) and webhook endpoints with their deliveries (admin). */
export function webhookRoutes(app: HttpApp, services: Services): void {
  const reads = services.store.reads;
  // Endpoints receive every event, whoever it is about: not for a key scoped to customers (403).
  denyScopedKeys(app, ['/v1/webhook-endpoints', '/v1/webhook-deliveries'], 'manage webhook endpoints');

  app.get(
    '/v1/events',
    { config: { roles: READ_EVENTS }, schema: { querystring: ListQuery } },
    async (req) => {
      // A scoped key lists the events about its customers and the payments it sees (src/app/scope.ts).
      const page = await reads.listEvents(
        { after: decodeCursor(req.query.cursor), limit: pageLimit(req.query.limit) },
        await readScopeOf(reads, req.actor),
      );
      return {
        events: page.items.map(eventView),
        hasMore: page.nextAfter !== null,
        nextCursor: encodeCursor(page.nextAfter),
      };
    },
  );

  app.post(
    '/v1/webhook-endpoints',
    { config: { roles: ADMIN_ONLY }, schema: { body: CreateWebhookEndpointBody } },
    async (req, reply) => {
      const key = optionalIdempotencyKeyOf(req);
      // The only time the secret leaves the server (and replays of this response, to the same API key).
      return sendStored(reply, await registerWebhookEndpoint(services, req.actor, key, req.body));
    },
  );

  app.get(
    '/v1/webhook-endpoints',
    { config: { roles: ADMIN_ONLY }, schema: { querystring: ListQuery } },
    async (req) => {
      const page = await reads.listWebhookEndpoints({
        after: decodeCursor(req.query.cursor),
        limit: pageLimit(req.query.limit),
      });
      return {
        webhookEndpoints: page.items.map(webhookEndpointView),
        hasMore: page.nextAfter !== null,
        nextCursor: encodeCursor(page.nextAfter),
      };
    },
  );

  app.get(
    '/v1/webhook-endpoints/:id',
    { config: { roles: ADMIN_ONLY }, schema: { params: IdParams } },
    async (req) => ({ webhookEndpoint: webhookEndpointView(await endpointOrThrow(services, req.params.id)) }),
  );

  app.delete(
    '/v1/webhook-endpoints/:id',
    { config: { roles: ADMIN_ONLY }, schema: { params: IdParams } },
    async (req, reply) => {
      await deleteWebhookEndpoint(services, req.actor, req.params.id);
      return reply.code(204).send();
    },
  );

  app.get(
    '/v1/webhook-endpoints/:id/deliveries',
    { config: { roles: ADMIN_ONLY }, schema: { params: IdParams, querystring: ListQuery } },
    async (req) => {
      const endpoint = await endpointOrThrow(services, req.params.id);
      const page = await reads.listWebhookDeliveries(endpoint.id, {
        after: decodeCursor(req.query.cursor),
        limit: pageLimit(req.query.limit),
      });
      return {
        deliveries: page.items.map(webhookDeliveryView),
        hasMore: page.nextAfter !== null,
        nextCursor: encodeCursor(page.nextAfter),
      };
    },
  );
}

async function endpointOrThrow(services: Services, id: string) {
  const endpoint = await services.store.reads.getWebhookEndpoint(id);
  if (endpoint === undefined) throw new AppError('WEBHOOK_ENDPOINT_NOT_FOUND', 'webhook endpoint not found');
  return endpoint;
}
