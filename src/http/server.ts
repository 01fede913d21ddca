import { randomBytes } from 'node:crypto';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Ajv } from 'ajv';
import Fastify, { type FastifyBaseLogger, LogController } from 'fastify';
import type { Logger } from 'pino';
import type { Services } from '../app/services.ts';
import { AppError } from '../domain/errors.ts';
import { authHook } from './auth.ts';
import { errorHandler } from './error-handler.ts';
import { accountRoutes } from './routes/accounts.ts';
import { auditRoutes } from './routes/audit.ts';
import { customerRoutes } from './routes/customers.ts';
import { healthRoutes } from './routes/health.ts';
import { ledgerRoutes } from './routes/ledger.ts';
import { paymentRoutes } from './routes/payments.ts';
import { webhookRoutes } from './routes/webhooks.ts';
import type { HttpApp } from './types.ts';

/**
 * The HTTP adapter: fastify with TypeBox schemas. It owns the edge concerns (request ids, authentication,
 * validation, the error catalogue, 404/405, one access log line per request) and hands typed input to the
 * application layer (src/app).
 */
export const BODY_LIMIT_BYTES = 1_000_000;
const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

export interface ServerOptions {
  logger: Logger;
  onFatal: (error: Error) => void;
}

export function buildServer(services: Services, options: ServerOptions): HttpApp {
  const app = Fastify({
    loggerInstance: options.logger as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: BODY_LIMIT_BYTES,
    requestIdHeader: false,
    genReqId: (req) => {
      const sent = req.headers['x-request-id'];
      return typeof sent === 'string' && REQUEST_ID_PATTERN.test(sent)
        ? sent
        : `req_${randomBytes(12).toString('hex')}`;
    },
    return503OnClosing: true,
    forceCloseConnections: true,
  }).withTypeProvider<TypeBoxTypeProvider>();

  useStrictValidation(app);
  // JSON only: fastify's built-in text/plain parser would let a non-JSON body reach validation.
  app.removeContentTypeParser('text/plain');
  const routes = trackRoutes(app);

  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  app.addHook('onRequest', authHook(services.store.reads));
  app.addHook('onResponse', async (request, reply) => {
    // One access line per request; no headers, no bodies, no query strings: nothing personal or secret.
    request.log.info(
      {
        method: request.method,
        route: request.routeOptions.url ?? 'unmatched',
        statusCode: reply.statusCode,
        durationMs: Math.round(reply.elapsedTime * 100) / 100,
      },
      'request',
    );
  });

  app.setErrorHandler(errorHandler(options.onFatal));
  app.setNotFoundHandler(async (request, reply) => {
    const allowed = routes.methodsFor(request.url.split('?')[0]!);
    if (allowed.length === 0) throw new AppError('NOT_FOUND', 'no such route');
    reply.header('allow', allowed.join(', '));
    throw new AppError('METHOD_NOT_ALLOWED', `${request.method} is not allowed on this path`);
  });

  healthRoutes(app, services);
  customerRoutes(app, services);
  accountRoutes(app, services);
  paymentRoutes(app, services);
  ledgerRoutes(app, services);
  auditRoutes(app, services);
  webhookRoutes(app, services);
  return app;
}

/**
 * Bodies and params are validated without coercion ("100" is not a number) and with unknown fields
 * rejected; only query strings, which are text by nature, are coerced to the declared types.
 */
function useStrictValidation(app: HttpApp): void {
  const common = { allErrors: true, removeAdditional: false as const, useDefaults: true, strict: false };
  const strictAjv = new Ajv({ ...common, coerceTypes: false });
  const queryAjv = new Ajv({ ...common, coerceTypes: true });
  app.setValidatorCompiler(({ schema, httpPart }) =>
    httpPart === 'querystring' ? queryAjv.compile(schema) : strictAjv.compile(schema),
  );
}

/** Remembers every route's path pattern so an unknown method on a known path is a 405, not a 404. */
function trackRoutes(app: HttpApp): { methodsFor(path: string): string[] } {
  const known: { pattern: RegExp; methods: string[] }[] = [];
  app.addHook('onRoute', (route) => {
    const source = route.url.replace(/:[^/]+/g, '[^/]+');
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    known.push({ pattern: new RegExp(`^${source}/?$`), methods });
  });
  return {
    methodsFor(path) {
      const methods = new Set<string>();
      for (const r of known) if (r.pattern.test(path)) for (const m of r.methods) methods.add(m);
      return [...methods].sort();
    },
  };
}
