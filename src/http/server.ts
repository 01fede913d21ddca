import { readFileSync } from 'node:fs';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Ajv } from 'ajv';
import Fastify, { type FastifyBaseLogger, type FastifyServerOptions, LogController } from 'fastify';
import type { Logger } from 'pino';
import { SandboxGate } from '../app/sandbox.ts';
import type { Services } from '../app/services.ts';
import type { LimitsConfig } from '../config.ts';
import { assert } from '../domain/assert.ts';
import { AppError } from '../domain/errors.ts';
import { MODES, type Mode, modeOfSecret } from '../domain/sandbox.ts';
import { parseBearer } from '../security/api-keys.ts';
import { authHook } from './auth.ts';
import { consoleRoutes } from './console.ts';
import {
  clientErrorHandler,
  errorHandler,
  frameworkErrorHandler,
  logAccess,
  RETRY_AFTER_DEFAULT_SECONDS,
} from './error-handler.ts';
import { checkRequestText, useJsonBody } from './json-body.ts';
import { openApiRoutes, registerOpenApi } from './openapi.ts';
import {
  authFailureLimit,
  connectionsMaxFor,
  perKeyRateLimit,
  registerLoadShedding,
  timeoutOptions,
} from './protection.ts';
import {
  clearInFlight,
  clientRequestIdOf,
  markInFlight,
  newRequestId,
  requestIdHeaders,
} from './request-ids.ts';
import { registerRequestMetrics } from './request-metrics.ts';
import { accountRoutes } from './routes/accounts.ts';
import { apiKeyRoutes } from './routes/api-keys.ts';
import { auditRoutes } from './routes/audit.ts';
import { customerRoutes } from './routes/customers.ts';
import { fxQuoteRoutes } from './routes/fx-quotes.ts';
import { healthRoutes } from './routes/health.ts';
import { ledgerRoutes } from './routes/ledger.ts';
import { metricsRoutes } from './routes/metrics.ts';
import { paymentBatchRoutes } from './routes/payment-batches.ts';
import { paymentRoutes } from './routes/payments.ts';
import { reportRoutes } from './routes/reports.ts';
import { RESET_ROUTE, sandboxRoutes, simulatedFailures } from './routes/sandbox.ts';
import { sessionRoutes, trackOperations } from './routes/session.ts';
import { webhookRoutes } from './routes/webhooks.ts';
import type { HttpApp } from './types.ts';

/**
 * The HTTP adapter: fastify with TypeBox schemas. It owns the edge concerns (request ids, authentication,
 * validation, the error catalogue, 404/405, one access log line per request) and hands typed input to the
 * application layer (src/app).
 */
export const BODY_LIMIT_BYTES = 1_000_000;
/** Longer request targets are 414 (Node's 16 KiB header limit, 431, applies to the request line too). */
export const URL_MAX_CHARS = 8192;
/** The API's version in the OpenAPI document: package.json's. */
const API_VERSION: string = JSON.parse(
  readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
).version;

export interface ServerOptions {
  logger: Logger;
  onFatal: (error: Error) => void;
  /** Timeouts, connection cap, shedding and rate limits (config.limits). */
  limits: LimitsConfig;
  /** DEMO_API_TOKEN: the one test key whose secret does not say its mode. */
  demoToken: string | null;
  /** SEED_DEMO_DATA: whether the sandbox's reset seeds the demo data again. */
  seedDemoData: boolean;
}

/**
 * The server holds one copy of the API per mode (src/domain/sandbox.ts), each wired to that mode's services
 * only. The router picks the copy from the key's secret (`mode` constraint) before anything runs, and the
 * copy then authenticates the key against its own store: a live key cannot reach test data, nor a test key
 * live data, and no route has to remember to filter.
 */
export function buildServer(modes: Record<Mode, Services>, options: ServerOptions): HttpApp {
  const services = modes.live;
  const app = Fastify({
    routerOptions: { constraints: { mode: modeConstraint(options.demoToken) } },
    loggerInstance: options.logger as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: BODY_LIMIT_BYTES,
    requestIdHeader: false,
    // Always the server's own id; the client's X-Request-Id is only its correlation id (request-ids.ts).
    genReqId: () => newRequestId(),
    // Answered by the edge hook below, in the envelope, instead of fastify's own 503 shape.
    return503OnClosing: false,
    forceCloseConnections: true,
    ...timeoutOptions(options.limits),
    frameworkErrors: frameworkErrorHandler,
    clientErrorHandler: clientErrorHandler(options.logger as FastifyBaseLogger),
  }).withTypeProvider<TypeBoxTypeProvider>();
  // Beyond the cap Node closes new connections at once (documented: refused, no response).
  const connections = connectionsMaxFor(options.limits.connectionsMax);
  app.server.maxConnections = connections.connectionsMax;
  if (connections.connectionsMax < options.limits.connectionsMax) {
    options.logger.warn(
      { connectionsMax: connections.connectionsMax, fileLimit: connections.fileLimit },
      'CONNECTIONS_MAX is above what the open-file limit allows: capped (raise ulimit -n to allow more)',
    );
  }

  useStrictValidation(app);
  // JSON only: fastify's built-in text/plain parser would let a non-JSON body reach validation.
  app.removeContentTypeParser('text/plain');
  useJsonBody(app, BODY_LIMIT_BYTES);
  const routes = trackRoutes(app);
  const operations = trackOperations(app);

  // Hook order matters: ids first (every answer carries them), then shedding and the auth-failure gate (no
  // database work for a refused request), then authentication, then the per-key limit before the body is read.
  // Set the moment close() is called: fastify's own hooks (preClose included) run only after the plugins' onClose
  // work, and a request arriving meanwhile must already be told to go elsewhere.
  let closing = false;
  const close = app.close.bind(app);
  app.close = ((...args: Parameters<typeof close>) => {
    closing = true;
    return close(...args);
  }) as typeof app.close;
  app.addHook('onRequest', async (request, reply) => {
    void reply.headers(requestIdHeaders(request.id, clientRequestIdOf(request.headers)));
    markInFlight(request.raw.socket, request.id);
    if (closing) {
      void reply.header('connection', 'close');
      throw new AppError('SERVICE_UNAVAILABLE', 'the server is shutting down; retry on another instance');
    }
    if (request.url.length > URL_MAX_CHARS) {
      throw new AppError('URI_TOO_LONG', `the request target is longer than ${URL_MAX_CHARS} characters`);
    }
    // A trailing slash is a different path, not an alias: 404, whatever route the prefix names.
    const path = pathOf(request.url);
    if (path.length > 1 && path.endsWith('/')) {
      throw new AppError('NOT_FOUND', 'no such route (paths have no trailing slash)');
    }
  });
  registerLoadShedding(app, options.limits);
  const authFailures = authFailureLimit(options.limits);
  app.addHook('onRequest', authFailures.gate);
  const limitPerKey = perKeyRateLimit(options.limits);
  if (limitPerKey !== null) {
    app.addHook('preParsing', async (request, reply, payload) => {
      await limitPerKey(request, reply);
      return payload;
    });
  }
  // Query strings and path parameters hold storable text only, like bodies (json-body.ts checks those).
  app.addHook('preValidation', async (request) => checkRequestText(request.query, request.params));
  app.addHook('onSend', async (request, reply, payload) => {
    // Every 429 and 503 tells the client when to come back, whichever code sent it (the error handler, /ready):
    // the one place that fills in the default.
    const status = reply.statusCode;
    if ((status === 429 || status === 503) && !reply.hasHeader('retry-after')) {
      void reply.header('retry-after', RETRY_AFTER_DEFAULT_SECONDS[status]);
    }
    // API answers are one client's data (some hold a secret shown once): no cache or proxy may keep a copy.
    if (request.url.startsWith('/v1/')) void reply.header('cache-control', 'no-store');
    return payload;
  });
  app.addHook('onResponse', async (request, reply) => {
    clearInFlight(request.raw.socket, request.id);
    logAccess(
      request.log,
      {
        method: request.method,
        route: request.routeOptions.url ?? 'unmatched',
        statusCode: reply.statusCode,
        durationMs: Math.round(reply.elapsedTime * 100) / 100,
      },
      request,
    );
  });
  app.addHook('onResponse', authFailures.count);
  // Each mode counts its own requests: by the copy of the route that answered, else by the secret's mode.
  registerRequestMetrics(
    app,
    (request) =>
      request.routeOptions.config.mode ?? modeOfRequest(request.headers.authorization, options.demoToken),
    { live: modes.live.metrics, test: modes.test.metrics },
  );

  app.setErrorHandler(errorHandler(options.onFatal));
  app.setNotFoundHandler(async (request, reply) => {
    const allowed = routes.methodsFor(pathOf(request.url));
    if (allowed.length === 0) throw new AppError('NOT_FOUND', 'no such route');
    reply.header('allow', allowed.join(', '));
    throw new AppError('METHOD_NOT_ALLOWED', `${request.method} is not allowed on this path`);
  });

  // Response schemas document the API (openapi.ts); bodies are JSON.stringify'd as they are, so a field a schema
  // does not name is never dropped silently (fast-json-stringify would): the contract test catches it instead.
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  const openApiDocument = registerOpenApi(app, API_VERSION);
  // In a plugin registered after the generator, so its onRoute hook sees every route.
  void app.register(async (api) => {
    openApiRoutes(api, openApiDocument);
    healthRoutes(api, services);
    for (const mode of MODES) {
      void api.register(async (scope) => apiRoutes(scope, modes[mode], operations, options));
    }
    // In a scope of its own: its Content-Security-Policy is the page's, not the API's.
    void api.register(consoleRoutes);
  });
  return app;
}

/** The mode a request's secret names (no secret: live, whose copy of a route answers 401). */
function modeOfRequest(authorization: string | undefined, demoToken: string | null): Mode {
  const secret = parseBearer(authorization);
  return secret === null ? 'live' : modeOfSecret(secret, demoToken);
}

/** Routes a request to its mode's copy of the API by the secret it presents. */
type ConstraintStrategy = NonNullable<
  NonNullable<FastifyServerOptions['routerOptions']>['constraints']
>[string];
type RouteHandler = Parameters<ReturnType<ConstraintStrategy['storage']>['set']>[1];

function modeConstraint(demoToken: string | null): ConstraintStrategy {
  return {
    name: 'mode',
    // One store per route node: its handler for each mode.
    storage: () => {
      const handlers = new Map<unknown, RouteHandler>();
      return {
        get: (mode) => handlers.get(mode) ?? null,
        set: (mode, handler) => void handlers.set(mode, handler),
      };
    },
    validate: (value) => assert(MODES.includes(value as Mode), 'a route is for a mode'),
    deriveConstraint: (request) => modeOfRequest(request.headers.authorization, demoToken),
  };
}

/**
 * One mode's copy of the API: every route that takes a key, authenticated against that mode's store, with
 * that mode's services. Test mode adds its clock and the sandbox's controls (src/http/routes/sandbox.ts).
 */
async function apiRoutes(
  api: HttpApp,
  services: Services,
  operations: ReturnType<typeof trackOperations>,
  options: ServerOptions,
): Promise<void> {
  const { mode } = services;
  api.addHook('onRoute', (route) => {
    route.constraints = { ...route.constraints, mode };
    route.config = { ...route.config, mode };
  });
  if (services.testClock !== null) {
    const { testClock, store } = services;
    // Another process of the sandbox may have moved the clock: each test request reads it first.
    api.addHook('onRequest', async () => testClock.refresh(store.reads));
  }
  api.addHook('onRequest', authHook(services.store.reads, services.clock));
  const gate = mode === 'test' ? enterSandboxGate(api) : null;
  if (mode === 'test') api.addHook('onRequest', simulatedFailures);
  metricsRoutes(api, services);
  customerRoutes(api, services);
  accountRoutes(api, services);
  paymentRoutes(api, services);
  paymentBatchRoutes(api, services);
  fxQuoteRoutes(api, services);
  ledgerRoutes(api, services);
  auditRoutes(api, services);
  webhookRoutes(api, services);
  apiKeyRoutes(api, services);
  reportRoutes(api, services);
  sessionRoutes(api, services, operations);
  sandboxRoutes(api, services, { seedDemoData: options.seedDemoData, gate });
}

/**
 * Test mode's requests pass the sandbox's gate (src/app/sandbox.ts SandboxGate), which a reset closes: in when
 * authenticated, out when answered or abandoned. The reset itself does not enter (it waits for the others).
 */
function enterSandboxGate(api: HttpApp): SandboxGate {
  const gate = new SandboxGate();
  const inside = new WeakSet<object>();
  api.addHook('onRequest', async (request) => {
    if (request.routeOptions.url === RESET_ROUTE) return;
    await gate.enter();
    inside.add(request);
  });
  const leave = async (request: object) => {
    if (inside.delete(request)) gate.leave();
  };
  api.addHook('onResponse', leave);
  api.addHook('onRequestAbort', leave);
  return gate;
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
    known.push({ pattern: new RegExp(`^${source}$`), methods });
  });
  return {
    methodsFor(path) {
      const methods = new Set<string>();
      for (const r of known) if (r.pattern.test(path)) for (const m of r.methods) methods.add(m);
      return [...methods].sort();
    },
  };
}

/** The path of a request target, without its query string. */
function pathOf(url: string): string {
  const query = url.indexOf('?');
  return query < 0 ? url : url.slice(0, query);
}
