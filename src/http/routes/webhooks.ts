import { Type } from 'typebox';
import { readScopeOf } from '../../app/scope.ts';
import type { Services } from '../../app/services.ts';
import { eventView, webhookDeliveryView, webhookEndpointView } from '../../app/views.ts';
import {
  deleteWebhookEndpoint,
  getWebhookDelivery,
  registerWebhookEndpoint,
  retryWebhookDelivery,
  rotateWebhookSecret,
  sendTestEvent,
  WEBHOOK_ROTATION_GRACE_DEFAULT_SECONDS,
  WEBHOOK_ROTATION_GRACE_MAX_SECONDS,
} from '../../app/webhook-endpoints.ts';
import { AppError } from '../../domain/errors.ts';
import { ADMIN_ONLY, READ_EVENTS } from '../auth.ts';
import { optionalIdempotencyKeyOf, sendStored } from '../idempotency.ts';
import { bodyOptional } from '../json-body.ts';
import {
  emptyResponse,
  errorResponse,
  IDEMPOTENCY_REPLAYED,
  idempotencyKeyHeader,
  jsonResponse,
  withExamples,
} from '../openapi.ts';
import { decodeBoundCursor, decodeCursor, encodeBoundCursor, encodeCursor, pageLimit } from '../paging.ts';
import {
  Event,
  page,
  ref,
  WebhookDelivery,
  WebhookEndpoint,
  WebhookEndpointWithSecret,
  wrapper,
} from '../response-schemas.ts';
import { CreateWebhookEndpointBody, IdParams, ListQuery } from '../schemas.ts';
import { denyScopedKeys } from '../scope-guard.ts';
import type { HttpApp } from '../types.ts';

/**
 * The outbox as a list (auditor), and webhook endpoints with their deliveries (admin): registration, secret
 * rotation, a test event, and the manual retry of a failed delivery. Deliveries are signed per Standard
 * Webhooks (docs/webhooks.md); the rules live in src/app/webhook-endpoints.ts.
 */

// Request bodies of the new POSTs: every field optional, so no body at all means `{}` (see bodyOptional).
const RotateSecretBody = Type.Object(
  {
    gracePeriodSeconds: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: WEBHOOK_ROTATION_GRACE_MAX_SECONDS,
        default: WEBHOOK_ROTATION_GRACE_DEFAULT_SECONDS,
        description: 'how long the replaced secret keeps signing beside the new one (0: it stops at once)',
      }),
    ),
  },
  { additionalProperties: false },
);
const EmptyBody = Type.Object({}, { additionalProperties: false });

// Response shapes (they document; src/app/views.ts builds the bodies): shared components (response-schemas.ts).
const OneEndpoint = wrapper({ webhookEndpoint: ref(WebhookEndpoint) });
const OneEndpointWithSecret = wrapper({ webhookEndpoint: ref(WebhookEndpointWithSecret) });
const OneDelivery = wrapper({ delivery: ref(WebhookDelivery) });

const TAGS = ['webhooks'];
const ENDPOINT_NOT_FOUND = errorResponse(404, ['WEBHOOK_ENDPOINT_NOT_FOUND']);
const DELIVERY_NOT_FOUND = errorResponse(404, ['WEBHOOK_DELIVERY_NOT_FOUND']);
const KEY_REUSED = errorResponse(409, ['IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD']);

export function webhookRoutes(app: HttpApp, services: Services): void {
  const reads = services.store.reads;
  // Endpoints receive every event, whoever it is about: not for a key scoped to customers (403).
  denyScopedKeys(app, ['/v1/webhook-endpoints', '/v1/webhook-deliveries'], 'manage webhook endpoints');

  app.get(
    '/v1/events',
    {
      config: { roles: READ_EVENTS },
      schema: {
        summary: 'List events (the outbox)',
        description:
          'Every payment state change and KYC decision, oldest first, cursor-paged: the events webhooks deliver. ' +
          'A scoped key lists the events about its customers and their accounts. Test pings are not listed.',
        operationId: 'listEvents',
        tags: TAGS,
        querystring: ListQuery,
        response: { 200: jsonResponse('A page of events', page('events', ref(Event))) },
      },
    },
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
    {
      config: { roles: ADMIN_ONLY },
      schema: {
        summary: 'Register a webhook endpoint',
        description:
          'The URL must resolve to public addresses (SSRF guard). The signing secret is in this response only. ' +
          'Events created from now on, of the subscribed types, are POSTed to it signed per Standard Webhooks.',
        operationId: 'createWebhookEndpoint',
        tags: TAGS,
        requestHeaders: idempotencyKeyHeader(false),
        body: withExamples(CreateWebhookEndpointBody, {
          workshop: {
            summary: 'Posted payments and refunds',
            value: { url: 'https://example.com/hooks', events: ['payment.posted', 'payment.refunded'] },
          },
        }),
        response: {
          201: jsonResponse(
            'Registered, with its signing secret',
            OneEndpointWithSecret,
            IDEMPOTENCY_REPLAYED,
          ),
          409: KEY_REUSED,
          422: errorResponse(422, ['WEBHOOK_TARGET_FORBIDDEN']),
        },
      },
    },
    async (req, reply) => {
      const key = optionalIdempotencyKeyOf(req);
      // The only time the secret leaves the server (and replays of this response, to the same API key).
      return sendStored(reply, await registerWebhookEndpoint(services, req.actor, key, req.body));
    },
  );

  app.get(
    '/v1/webhook-endpoints',
    {
      config: { roles: ADMIN_ONLY },
      schema: {
        summary: 'List webhook endpoints',
        operationId: 'listWebhookEndpoints',
        tags: TAGS,
        querystring: ListQuery,
        response: {
          200: jsonResponse('A page of endpoints', page('webhookEndpoints', ref(WebhookEndpoint))),
        },
      },
    },
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
    {
      config: { roles: ADMIN_ONLY },
      schema: {
        summary: 'Get a webhook endpoint',
        operationId: 'getWebhookEndpoint',
        tags: TAGS,
        params: IdParams,
        response: { 200: jsonResponse('The endpoint', OneEndpoint), 404: ENDPOINT_NOT_FOUND },
      },
    },
    async (req) => ({ webhookEndpoint: webhookEndpointView(await endpointOrThrow(services, req.params.id)) }),
  );

  app.delete(
    '/v1/webhook-endpoints/:id',
    {
      config: { roles: ADMIN_ONLY },
      schema: {
        summary: 'Delete a webhook endpoint',
        description: 'Nothing more is sent to it, pending deliveries included. Audited.',
        operationId: 'deleteWebhookEndpoint',
        tags: TAGS,
        params: IdParams,
        response: { 204: emptyResponse('Deleted'), 404: ENDPOINT_NOT_FOUND },
      },
    },
    async (req, reply) => {
      await deleteWebhookEndpoint(services, req.actor, req.params.id);
      return reply.code(204).send();
    },
  );

  app.get(
    '/v1/webhook-endpoints/:id/deliveries',
    {
      config: { roles: ADMIN_ONLY },
      schema: {
        summary: "List an endpoint's deliveries",
        description: 'Oldest first: status, attempts, the last status code or error, the next attempt.',
        operationId: 'listWebhookDeliveries',
        tags: TAGS,
        params: IdParams,
        querystring: ListQuery,
        response: {
          200: jsonResponse('A page of deliveries', page('deliveries', ref(WebhookDelivery))),
          404: ENDPOINT_NOT_FOUND,
        },
      },
    },
    async (req) => {
      const endpoint = await endpointOrThrow(services, req.params.id);
      const list = `deliveries|${endpoint.id}`;
      const page = await reads.listWebhookDeliveries(endpoint.id, {
        after: decodeBoundCursor(req.query.cursor, list),
        limit: pageLimit(req.query.limit),
      });
      return {
        deliveries: page.items.map(webhookDeliveryView),
        hasMore: page.nextAfter !== null,
        nextCursor: encodeBoundCursor(page.nextAfter, list),
      };
    },
  );

  app.post(
    '/v1/webhook-endpoints/:id/rotate-secret',
    {
      config: { roles: ADMIN_ONLY },
      schema: {
        summary: "Rotate an endpoint's signing secret",
        description:
          'A new secret, in this response only. The replaced one keeps signing beside it (two space-separated ' +
          '`v1,` signatures) for the grace period, a day by default; a secret replaced earlier and still in its ' +
          'grace period stops at once (at most two). Audited, without any secret.',
        operationId: 'rotateWebhookEndpointSecret',
        tags: TAGS,
        params: IdParams,
        requestHeaders: idempotencyKeyHeader(false),
        bodyOptional: true,
        body: withExamples(RotateSecretBody, {
          default: { summary: 'A day of grace (the default)', value: {} },
          hour: { summary: 'An hour of grace', value: { gracePeriodSeconds: 3600 } },
        }),
        response: {
          200: jsonResponse(
            'Rotated, with the new signing secret',
            OneEndpointWithSecret,
            IDEMPOTENCY_REPLAYED,
          ),
          404: ENDPOINT_NOT_FOUND,
          409: KEY_REUSED,
        },
      },
      preValidation: bodyOptional,
    },
    async (req, reply) => {
      const key = optionalIdempotencyKeyOf(req);
      return sendStored(reply, await rotateWebhookSecret(services, req.actor, key, req.params.id, req.body));
    },
  );

  app.post(
    '/v1/webhook-endpoints/:id/test',
    {
      config: { roles: ADMIN_ONLY },
      schema: {
        summary: 'Send a test event (ping)',
        description:
          'Queues `{"id", "type": "ping", "createdAt", "data": {"webhookEndpointId"}}` for this endpoint only, ' +
          'whatever it subscribed to, signed and retried like any event; follow it with ' +
          'GET /v1/webhook-deliveries/:id. Audited; not listed by GET /v1/events.',
        operationId: 'testWebhookEndpoint',
        tags: TAGS,
        params: IdParams,
        requestHeaders: idempotencyKeyHeader(false),
        bodyOptional: true,
        body: EmptyBody,
        response: {
          202: jsonResponse('Queued: the delivery', OneDelivery, IDEMPOTENCY_REPLAYED),
          404: ENDPOINT_NOT_FOUND,
          409: KEY_REUSED,
        },
      },
      preValidation: bodyOptional,
    },
    async (req, reply) => {
      const key = optionalIdempotencyKeyOf(req);
      const body = req.body as Record<string, never>;
      return sendStored(reply, await sendTestEvent(services, req.actor, key, req.params.id, body));
    },
  );

  app.get(
    '/v1/webhook-deliveries/:id',
    {
      config: { roles: ADMIN_ONLY },
      schema: {
        summary: 'Get a webhook delivery',
        description: 'A delivery of a deleted endpoint is not found, like the endpoint.',
        operationId: 'getWebhookDelivery',
        tags: TAGS,
        params: IdParams,
        response: { 200: jsonResponse('The delivery', OneDelivery), 404: DELIVERY_NOT_FOUND },
      },
    },
    async (req) => ({ delivery: await getWebhookDelivery(services, req.params.id) }),
  );

  app.post(
    '/v1/webhook-deliveries/:id/retry',
    {
      config: { roles: ADMIN_ONLY },
      schema: {
        summary: 'Retry a failed delivery',
        description:
          'A `failed` delivery goes back to `pending`, due now, with a fresh budget of WEBHOOK_MAX_ATTEMPTS ' +
          'attempts; `attempts` keeps counting and `manualRetries` goes up by one. The same event, so the same ' +
          'webhook-id. Any other status is 409 WEBHOOK_DELIVERY_NOT_RETRYABLE. Audited.',
        operationId: 'retryWebhookDelivery',
        tags: TAGS,
        params: IdParams,
        requestHeaders: idempotencyKeyHeader(false),
        bodyOptional: true,
        body: EmptyBody,
        response: {
          202: jsonResponse(
            'Re-queued: sent again by the dispatcher, due now',
            OneDelivery,
            IDEMPOTENCY_REPLAYED,
          ),
          404: DELIVERY_NOT_FOUND,
          409: errorResponse(409, [
            'WEBHOOK_DELIVERY_NOT_RETRYABLE',
            'IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD',
          ]),
        },
      },
      preValidation: bodyOptional,
    },
    async (req, reply) => {
      const key = optionalIdempotencyKeyOf(req);
      const body = req.body as Record<string, never>;
      return sendStored(reply, await retryWebhookDelivery(services, req.actor, key, req.params.id, body));
    },
  );
}

async function endpointOrThrow(services: Services, id: string) {
  const endpoint = await services.store.reads.getWebhookEndpoint(id);
  if (endpoint === undefined) throw new AppError('WEBHOOK_ENDPOINT_NOT_FOUND', 'webhook endpoint not found');
  return endpoint;
}
