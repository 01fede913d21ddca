import type { FastifyRequest } from 'fastify';
import type { Mode } from '../domain/sandbox.ts';
import { type Metrics, UNMATCHED_ROUTE } from '../metrics.ts';
import type { HttpApp } from './types.ts';

/**
 * Counts every answered request in the metrics (src/metrics.ts): by route TEMPLATE (`unmatched` for a 404 or
 * 405), method and status, with its duration; and, when a limit refused it (src/http/protection.ts), by kind.
 * One onResponse hook in callback style (no promise per request); the response is already sent.
 */
export function registerRequestMetrics(
  app: HttpApp,
  modeOf: (request: FastifyRequest) => Mode,
  metricsOf: Record<Mode, Metrics>,
): void {
  app.addHook('onResponse', (request, reply, done) => {
    const metrics = metricsOf[modeOf(request)];
    const route = request.routeOptions.url ?? UNMATCHED_ROUTE;
    metrics.httpRequest(route, request.method, reply.statusCode, reply.elapsedTime / 1000);
    if (request.rejectedBy !== undefined) metrics.rateLimited(request.rejectedBy);
    done();
  });
}
