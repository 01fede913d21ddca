import { requireUnscoped } from '../../app/scope.ts';
import type { Services } from '../../app/services.ts';
import { AUDITOR } from '../auth.ts';
import { textResponse } from '../openapi.ts';
import type { HttpApp } from '../types.ts';

/**
 * GET /metrics: the Prometheus text exposition (src/metrics.ts; docs/deployment.md, "Metrics"). Two ways in:
 *
 *   - an API key with role auditor (or admin), through the normal authentication (src/http/auth.ts), which
 *     also applies the auth-failure limit; a key scoped to customers is refused (the metrics span them all);
 *   - `Authorization: Bearer <METRICS_TOKEN>` when that variable is set, for a scraper that should hold no API
 *     key: the auth hook tries it before the API-key lookup (`otherCredential`). Any other credential, a wrong
 *     token included, gets the API-key check and its 401 AUTH_INVALID.
 */
const METRICS_TOKEN_ACTOR_ID = 'metrics_token';

export function metricsRoutes(app: HttpApp, services: Services): void {
  const { metrics } = services;
  app.get(
    '/metrics',
    {
      config: {
        roles: AUDITOR,
        otherCredential: (authorization, requestId) =>
          metrics.acceptsScrapeToken(authorization)
            ? { apiKeyId: METRICS_TOKEN_ACTOR_ID, role: 'auditor', requestId, customerIds: null }
            : null,
      },
      onRequest: async (request) => requireUnscoped(request.actor, 'read the metrics'),
      schema: {
        summary: 'Prometheus metrics of this process',
        operationId: 'getMetrics',
        description:
          'The Prometheus text exposition (format 0.0.4): HTTP requests, payments by outcome and reason, group ' +
          'commit, webhook deliveries, the audit log, rate-limit rejections and the standard process metrics. ' +
          'Also answers `Authorization: Bearer <METRICS_TOKEN>` when the server sets that variable. ' +
          'See docs/deployment.md#metrics.',
        tags: ['operations'],
        response: {
          200: textResponse('The metrics, in the Prometheus text format 0.0.4 (`text/plain; version=0.0.4`)'),
        },
      },
    },
    // A string with its content type set: fastify sends it as it is (no serializer runs).
    async (_request, reply) => reply.type(metrics.contentType).send(await metrics.scrape()),
  );
}
