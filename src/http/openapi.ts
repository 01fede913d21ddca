import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { RouteOptions } from 'fastify';
import { type TSchema, Type } from 'typebox';
import { ERROR_CATALOGUE, type ErrorCode } from '../domain/errors.ts';
import type { Role } from '../domain/types.ts';
import { RESPONSE_COMPONENTS } from './response-schemas.ts';
import type { HttpApp } from './types.ts';

/**
 * The API describes itself: OpenAPI 3.1 generated from the route schemas (@fastify/swagger), served at
 * GET /openapi.json, and a docs page at GET /docs (@fastify/swagger-ui, its assets served from the package, so it
 * works offline). docs/api.md is the same contract in prose; test/openapi-contract.test.ts checks real responses
 * against this document.
 *
 * A route declares its summary, its success responses and the errors only it can return. What every route shares
 * is added here, in one place, from what the route is: its roles (security, x-roles, 401, 403), whether it takes a
 * body (413, 415, INVALID_JSON), and the edge answers any request can get (400, 408, 414, 429, 500, 503).
 *
 * Response schemas document; they do not serialise (server.ts sends JSON.stringify's output): a field missing
 * from a schema is never dropped silently, and the contract test fails instead.
 */
export const ERROR_ENVELOPE_ID = 'ErrorEnvelope';

const ERROR_CODES = Object.keys(ERROR_CATALOGUE) as ErrorCode[];

export const ErrorEnvelope = Type.Object(
  {
    error: Type.Object(
      {
        code: Type.String({ enum: ERROR_CODES, description: 'stable: see docs/api.md#errors' }),
        message: Type.String({ description: 'for humans; never personal data or secrets' }),
        requestId: Type.String({
          description: "the client's X-Request-Id when it sent one, else the server's",
        }),
        details: Type.Optional(
          Type.Array(
            Type.Object(
              { field: Type.Optional(Type.String()), message: Type.String() },
              { additionalProperties: false },
            ),
          ),
        ),
      },
      { additionalProperties: false },
    ),
  },
  { $id: ERROR_ENVELOPE_ID, additionalProperties: false, title: 'ErrorEnvelope' },
);

/** Headers on every response (src/http/request-ids.ts). */
const REQUEST_ID_HEADERS = {
  'x-request-id': Type.String({
    description: "the client's X-Request-Id when it sent a usable one, else the server's",
  }),
  'x-server-request-id': Type.String({ description: "the server's own id for this request (in its logs)" }),
};
const RETRY_AFTER = { 'retry-after': Type.String({ pattern: '^[0-9]+$', description: 'seconds' }) };

/** An error response: the envelope, with the codes this status can carry named in its description. */
export function errorResponse(
  status: number,
  codes: readonly ErrorCode[],
  headers: Record<string, TSchema> = {},
) {
  for (const code of codes) {
    if (ERROR_CATALOGUE[code] !== status && !(code === 'INTERNAL_ERROR' && status === 500)) {
      throw new Error(`error code ${code} is ${ERROR_CATALOGUE[code]}, not ${status}`);
    }
  }
  return {
    description: codes.join(', '),
    $ref: `${ERROR_ENVELOPE_ID}#`,
    headers: { ...REQUEST_ID_HEADERS, ...headers },
  };
}

/** A success response: a JSON body, with the request id headers (and any others) declared. */
export function jsonResponse(description: string, body: TSchema, headers: Record<string, TSchema> = {}) {
  return { ...body, description, headers: { ...REQUEST_ID_HEADERS, ...headers } };
}

/** A response whose body is text (`text/plain; charset=utf-8`), such as a signed note. */
export function textResponse(
  description: string,
  body: TSchema = Type.String(),
  headers: Record<string, TSchema> = {},
) {
  return {
    description,
    content: { 'text/plain': { schema: body } },
    headers: { ...REQUEST_ID_HEADERS, ...headers },
  };
}

/** A response with several media types (a report as JSON or CSV), each with its schema. */
export function contentResponse(
  description: string,
  content: Record<string, TSchema>,
  headers: Record<string, TSchema> = {},
) {
  return {
    description,
    content: Object.fromEntries(Object.entries(content).map(([type, schema]) => [type, { schema }])),
    headers: { ...REQUEST_ID_HEADERS, ...headers },
  };
}

/** A response without a body (204). */
export function emptyResponse(description: string) {
  return { type: 'null', description, headers: { ...REQUEST_ID_HEADERS } };
}

/** Idempotent POSTs answer with this when a key was sent. */
export const IDEMPOTENCY_REPLAYED = {
  'idempotency-replayed': Type.String({
    enum: ['true', 'false'],
    description: 'present when an Idempotency-Key was sent: whether this is a stored response replayed',
  }),
};

/** The per-key token bucket's state (src/http/protection.ts), on every authenticated response. */
const RATE_LIMIT_HEADERS = {
  'ratelimit-limit': Type.String({ pattern: '^[0-9]+$', description: "the bucket's size (burst)" }),
  'ratelimit-remaining': Type.String({ pattern: '^[0-9]+$', description: 'tokens left' }),
  'ratelimit-reset': Type.String({ pattern: '^[0-9]+$', description: 'seconds until the bucket is full' }),
};

/**
 * Request headers a route reads itself (so fastify does not validate them: the handler answers a bad one in
 * the envelope, e.g. IDEMPOTENCY_KEY_REQUIRED). Declared on the route as `schema.requestHeaders`, for the
 * document only: `transform` turns them into header parameters.
 */
export interface RequestHeaderDoc {
  schema: TSchema;
  required: boolean;
}

declare module 'fastify' {
  interface FastifySchema {
    /** Request headers for the document only (never validated by fastify): see openapi.ts. */
    requestHeaders?: Record<string, RequestHeaderDoc>;
    /** The body may be left out (a preValidation hook reads none as `{}`): the document says so. */
    bodyOptional?: boolean;
  }
}

/** `Idempotency-Key` (src/http/idempotency.ts): required on payments and refunds, honoured on other POSTs. */
export function idempotencyKeyHeader(required: boolean): Record<string, RequestHeaderDoc> {
  return {
    'Idempotency-Key': {
      required,
      schema: Type.String({
        minLength: 1,
        maxLength: 255,
        pattern: '^[\\x20-\\x7E]{1,255}$',
        description: required
          ? 'required: a retry with the same key and request replays the first response (docs/api.md#idempotency)'
          : 'optional: when sent, a retry with the same key and request replays the first response',
        examples: ['workshop-1'],
      }),
    },
  };
}

/** `Prefer` (RFC 7240), with what this route honours in the description. */
export function preferHeader(description: string, examples: string[]): Record<string, RequestHeaderDoc> {
  return { Prefer: { required: false, schema: Type.String({ description, examples }) } };
}

/**
 * Named examples of a request body, shown by /docs (OpenAPI `examples` on the media type). Returns the same
 * schema type, so the route's typing is unchanged; fastify's validator ignores the annotation.
 */
export function withExamples<T extends TSchema>(
  schema: T,
  examples: Record<string, { summary: string; value: unknown }>,
): T {
  return { ...schema, 'x-examples': examples };
}

type RouteSchema = NonNullable<RouteOptions['schema']> & {
  response?: Record<string, unknown>;
  summary?: string;
  security?: Record<string, string[]>[];
  'x-roles'?: string[];
};

/**
 * Fills in what every route shares (see the file comment). Runs as an onRoute hook before @fastify/swagger reads
 * the route. A route without a summary or a success response is a mistake: registration fails.
 */
export function completeRouteSchema(route: RouteOptions): void {
  if (route.schema?.hide === true) return;
  const schema = (route.schema ?? {}) as RouteSchema;
  const roles = route.config?.roles as readonly Role[] | undefined;
  // Copies: a route may share one response object between routes, and what is added here differs by route.
  const responses: Record<string, unknown> = Object.fromEntries(
    Object.entries(schema.response ?? {}).map(([status, r]) => [status, { ...(r as object) }]),
  );
  if (schema.summary === undefined || !Object.keys(responses).some((s) => s.startsWith('2'))) {
    throw new Error(`${route.method} ${route.url}: a route needs a summary and its success responses`);
  }
  const add = (status: number, codes: ErrorCode[], headers?: Record<string, TSchema>) => {
    const existing = responses[status] as
      | { description?: string; headers?: Record<string, TSchema> }
      | undefined;
    // A route's own codes for a status come first; the shared ones are added to its description (and the
    // shared headers to its own).
    if (existing === undefined) responses[status] = errorResponse(status, codes, headers);
    else {
      existing.description = [...new Set([...(existing.description ?? '').split(', '), ...codes])].join(', ');
      existing.headers = { ...headers, ...existing.headers };
    }
  };
  // A DELETE's body is parsed too (and refused when malformed): only GET and HEAD ignore one.
  const hasBody = route.method !== 'GET' && route.method !== 'HEAD';
  add(400, ['VALIDATION_ERROR', 'MALFORMED_REQUEST', ...(hasBody ? (['INVALID_JSON'] as const) : [])]);
  if (roles !== undefined) {
    add(401, ['AUTH_REQUIRED', 'AUTH_INVALID']);
    add(403, ['FORBIDDEN']);
  }
  add(408, ['REQUEST_TIMEOUT']);
  if (hasBody) {
    add(413, ['PAYLOAD_TOO_LARGE']);
    add(415, ['UNSUPPORTED_CONTENT_TYPE']);
  }
  add(414, ['URI_TOO_LONG']);
  add(429, ['RATE_LIMITED'], RETRY_AFTER);
  add(500, ['INTERNAL_ERROR']);
  add(503, ['SERVICE_UNAVAILABLE'], RETRY_AFTER);
  if (roles !== undefined) {
    // Every answer after authentication carries the bucket's state, the per-key 429 included; a 401 comes
    // before the key is known (its 429, from the per-address bucket, has none: these headers are optional).
    for (const [status, response] of Object.entries(responses)) {
      if (status === '401') continue;
      const withHeaders = response as { headers?: Record<string, TSchema> };
      withHeaders.headers = { ...RATE_LIMIT_HEADERS, ...withHeaders.headers };
    }
  }
  route.schema = {
    ...schema,
    response: responses,
    ...(roles === undefined
      ? { security: [] }
      : { security: [{ apiKey: [] }], 'x-roles': ['admin', ...roles.filter((r) => r !== 'admin')] }),
  };
}

const BODY_OPTIONAL = 'x-body-optional';
/**
 * A query parameter that is a map, `name[key]=value` (OpenAPI's deepObject style): the route schema validates
 * it as `patternProperties` (`^name\[key pattern\]$`), which @fastify/swagger does not turn into a parameter.
 * Written down here as the one parameter it is, with the keys' pattern and the values' schema.
 */
const QUERY_MAPS = 'x-query-maps';
const QUERY_MAP_NAME = /^\^(\w+)\\\[(.+)\\\]\$$/;

function queryMaps(querystring: unknown): Json[] {
  const patterns = isObject(querystring) ? querystring['patternProperties'] : undefined;
  if (!isObject(patterns)) return [];
  return Object.entries(patterns).flatMap(([pattern, values]) => {
    const m = QUERY_MAP_NAME.exec(pattern);
    if (m === null) return [];
    return [
      {
        name: m[1],
        in: 'query',
        style: 'deepObject',
        explode: true,
        required: false,
        description: `\`${m[1]}[key]=value\` pairs; keys match ^${m[2]}$`,
        schema: { type: 'object', propertyNames: { pattern: `^${m[2]}$` }, additionalProperties: values },
      },
    ];
  });
}

/**
 * The document's own view of a route's schema: `requestHeaders` become header parameters, `bodyOptional` a
 * request body that is not required.
 */
function documentedSchema(schema: RouteSchema | undefined): RouteSchema | undefined {
  if (schema === undefined) return schema;
  const { requestHeaders, bodyOptional, ...rest } = schema;
  const documented: RouteSchema & { [BODY_OPTIONAL]?: true } = keepKeyPatterns(rest) as RouteSchema;
  if (requestHeaders !== undefined) {
    const properties = Object.fromEntries(
      Object.entries(requestHeaders).map(([name, h]) => [
        name,
        h.required ? h.schema : Type.Optional(h.schema),
      ]),
    );
    documented.headers = Type.Object(properties);
  }
  // @fastify/swagger copies x- keys onto the operation; shareComponents turns this one into required: false.
  if (bodyOptional === true) documented[BODY_OPTIONAL] = true;
  const maps = queryMaps(rest.querystring);
  if (maps.length > 0) (documented as Json)[QUERY_MAPS] = maps;
  return documented;
}

/**
 * @fastify/swagger rewrites `patternProperties` as `additionalProperties` (OpenAPI 3.0 has no
 * patternProperties), which loses the key pattern: `metadata`'s keys would read as free. A map whose keys
 * must all match one pattern (`patternProperties` with one entry and `additionalProperties: false`) is the
 * same as `propertyNames` plus `additionalProperties`, which JSON Schema 2020-12 (OpenAPI 3.1) has and the
 * generator leaves alone.
 */
function keepKeyPatterns(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(keepKeyPatterns);
  if (!isObject(value)) return value;
  // Enumerable keys only: TypeBox's own (`~kind`, `~optional`) are not part of the schema.
  const out: Json = Object.fromEntries(Object.entries(value).map(([k, v]) => [k, keepKeyPatterns(v)]));
  const patterns = out['patternProperties'];
  if (
    isObject(patterns) &&
    Object.keys(patterns).length === 1 &&
    out['additionalProperties'] === false &&
    out['properties'] === undefined
  ) {
    const [[pattern, values]] = Object.entries(patterns) as [[string, unknown]];
    delete out['patternProperties'];
    out['propertyNames'] = { pattern };
    out['additionalProperties'] = values;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// The document's shared parts: the same response headers and shared error answers repeat on every operation,
// so they are written once under components and referred to ($ref). Only exact copies of the definitions
// above are replaced: a route's own variant (another description) stays where it is.

const COMPONENT_HEADERS: Record<string, [name: string, schema: TSchema]> = {
  'X-Request-Id': ['x-request-id', REQUEST_ID_HEADERS['x-request-id']],
  'X-Server-Request-Id': ['x-server-request-id', REQUEST_ID_HEADERS['x-server-request-id']],
  'RateLimit-Limit': ['ratelimit-limit', RATE_LIMIT_HEADERS['ratelimit-limit']],
  'RateLimit-Remaining': ['ratelimit-remaining', RATE_LIMIT_HEADERS['ratelimit-remaining']],
  'RateLimit-Reset': ['ratelimit-reset', RATE_LIMIT_HEADERS['ratelimit-reset']],
  'Retry-After': ['retry-after', RETRY_AFTER['retry-after']],
  'Idempotency-Replayed': ['idempotency-replayed', IDEMPOTENCY_REPLAYED['idempotency-replayed']],
};

type Json = Record<string, unknown>;
const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null;

/** A header object as @fastify/swagger writes it: the schema, with its description lifted beside it. */
function headerObject(schema: TSchema): Json {
  const { description, ...rest } = schema as Json;
  return description === undefined ? { schema: rest } : { schema: rest, description };
}

const canonical = (value: unknown): string =>
  JSON.stringify(value, (_key, v: unknown) =>
    isObject(v) && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );

const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

/** Every operation of the document (path item methods). */
function operationsOf(document: Json): Json[] {
  const paths = isObject(document['paths']) ? document['paths'] : {};
  return Object.values(paths).flatMap((item) =>
    isObject(item) ? HTTP_METHODS.map((m) => item[m]).filter(isObject) : [],
  );
}

export function shareComponents(document: Json): Json {
  const components = (isObject(document['components']) ? document['components'] : {}) as Json;
  const headerRefs = new Map(
    Object.entries(COMPONENT_HEADERS).map(([component, [name, schema]]) => [
      `${name} ${canonical(headerObject(schema))}`,
      component,
    ]),
  );
  const usedHeaders = new Set<string>();
  const responses: { owner: Json; status: string; response: Json }[] = [];
  for (const operation of operationsOf(document)) {
    if (operation[BODY_OPTIONAL] === true) {
      delete operation[BODY_OPTIONAL];
      if (isObject(operation['requestBody'])) operation['requestBody']['required'] = false;
    }
    // Every operation takes the client's correlation id.
    const parameters = Array.isArray(operation['parameters']) ? operation['parameters'] : [];
    const maps = Array.isArray(operation[QUERY_MAPS]) ? operation[QUERY_MAPS] : [];
    delete operation[QUERY_MAPS];
    operation['parameters'] = [...parameters, ...maps, { $ref: '#/components/parameters/X-Request-Id' }];
    const operationResponses = isObject(operation['responses']) ? operation['responses'] : {};
    for (const [status, response] of Object.entries(operationResponses)) {
      if (!isObject(response)) continue;
      const headers = isObject(response['headers']) ? response['headers'] : {};
      for (const [name, header] of Object.entries(headers)) {
        const component = headerRefs.get(`${name} ${canonical(header)}`);
        if (component === undefined) continue;
        headers[name] = { $ref: `#/components/headers/${component}` };
        usedHeaders.add(component);
      }
      responses.push({ owner: operationResponses, status, response });
    }
  }
  // Error answers that are the same on several operations (the shared statuses) become components/responses.
  const byShape = new Map<string, { status: string; response: Json; uses: typeof responses }>();
  for (const use of responses) {
    if (!/^[45]/.test(use.status)) continue;
    const key = `${use.status} ${canonical(use.response)}`;
    const entry = byShape.get(key) ?? { status: use.status, response: use.response, uses: [] };
    entry.uses.push(use);
    byShape.set(key, entry);
  }
  // Named after what they are: `404.PAYMENT_NOT_FOUND`, `.public` for the variant without the rate-limit
  // headers (routes without a key).
  const sharedResponses: Json = {};
  for (const entry of [...byShape.values()].sort((a, b) => b.uses.length - a.uses.length)) {
    if (entry.uses.length < 2) continue;
    const codes = String(entry.response['description'] ?? '').split(', ');
    const headers = isObject(entry.response['headers']) ? entry.response['headers'] : {};
    const base = `${entry.status}.${codes.join('.')}${'ratelimit-limit' in headers ? '' : '.public'}`;
    let name = base;
    for (let n = 2; name in sharedResponses; n++) name = `${base}.${n}`;
    sharedResponses[name] = entry.response;
    for (const use of entry.uses) use.owner[use.status] = { $ref: `#/components/responses/${name}` };
  }
  document['components'] = {
    ...components,
    parameters: {
      'X-Request-Id': {
        name: 'X-Request-Id',
        in: 'header',
        required: false,
        description:
          'your correlation id (^[A-Za-z0-9._:-]{1,128}$): echoed in X-Request-Id and in error envelopes; ' +
          "the server's own id is X-Server-Request-Id",
        schema: { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,128}$' },
      },
    },
    headers: Object.fromEntries(
      Object.entries(COMPONENT_HEADERS)
        .filter(([component]) => usedHeaders.has(component))
        .map(([component, [, schema]]) => [component, headerObject(schema)]),
    ),
    responses: sharedResponses,
  };
  return document;
}

const TAGS = [
  { name: 'payments', description: 'Payments, the review queue (approve, reject) and refunds' },
  { name: 'customers', description: 'Onboarding and KYC decisions' },
  { name: 'accounts', description: 'Accounts and balances' },
  { name: 'ledger', description: 'The double-entry ledger and its verification' },
  { name: 'audit', description: 'The verifiable audit log: entries, checkpoints, proofs, verification' },
  { name: 'webhooks', description: 'The event outbox and webhook endpoints' },
  { name: 'api-keys', description: 'API keys and their lifecycle (admin)' },
  { name: 'sandbox', description: 'Test mode’s controls: the test clock and the reset (test keys only)' },
  { name: 'reporting', description: 'Regulatory reports and compliance cases' },
  { name: 'operations', description: 'Liveness, readiness and metrics' },
  { name: 'meta', description: 'This document' },
];

/**
 * The docs page's policy: its own assets only. @fastify/swagger-ui's default also allows https: styles and fonts,
 * an image host (validator.swagger.io) and upgrade-insecure-requests, which blanks the page served over plain
 * HTTP on any host but localhost.
 */
const DOCS_CSP =
  "default-src 'self'; base-uri 'self'; connect-src 'self'; font-src 'self' data:; frame-ancestors 'self'; " +
  "img-src 'self' data:; object-src 'none'; script-src 'self'; script-src-attr 'none'; style-src 'self'";

/**
 * Registers the shared schemas, the generator and the docs page. Call before any route is declared, and declare
 * the routes in a plugin registered after this (server.ts), so the generator sees them all. Returns the document
 * as JSON text, made on first use and kept: GET /openapi.json and the page's /docs/json send it as it is (it is
 * ~160 KB: serialising it per request would let an anonymous client keep a core busy).
 */
export function registerOpenApi(app: HttpApp, version: string): () => string {
  let documentText: string | undefined;
  const document = () => {
    documentText ??= JSON.stringify(app.swagger());
    return documentText;
  };
  app.addSchema(ErrorEnvelope);
  for (const schema of RESPONSE_COMPONENTS) app.addSchema(schema);
  app.addHook('onRoute', completeRouteSchema);
  void app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Fintech Payment API',
        version,
        description:
          'Payments between accounts with an idempotency gate, KYC/AML and fraud checks, a double-entry ledger and a ' +
          'verifiable audit log. The contract in prose: docs/api.md in the repository. Money is integer cents; ' +
          'every error is `{"error": {code, message, requestId, details?}}`.',
        license: { name: 'MIT', identifier: 'MIT' },
      },
      tags: TAGS,
      components: {
        securitySchemes: {
          apiKey: {
            type: 'http',
            scheme: 'bearer',
            description:
              'Authorization: Bearer <API key secret>. Each operation lists the roles it admits in x-roles; admin is always admitted.',
          },
        },
      },
      security: [{ apiKey: [] }],
    },
    refResolver: {
      // Shared schemas keep their $id as their name under components/schemas.
      buildLocalReference: (json, _baseUri, _fragment, i) => String(json.$id ?? `schema${i}`),
    },
    transform: ({ schema, url }) => ({ schema: documentedSchema(schema as RouteSchema) ?? schema, url }),
    transformObject: (documentObject) =>
      'openapiObject' in documentObject
        ? (shareComponents(documentObject.openapiObject as Json) as typeof documentObject.openapiObject)
        : documentObject.swaggerObject,
  });
  void app.register(swaggerUi, {
    routePrefix: '/docs',
    // The page's own assets come from the package (no CDN); it loads the document from /docs/json, which is
    // the same document as /openapi.json. No validator badge (it would call validator.swagger.io).
    uiConfig: { deepLinking: true, validatorUrl: null },
    staticCSP: DOCS_CSP,
    uiHooks: {
      // The page loads its document from /docs/json: the cached text, not a fresh serialisation.
      onRequest: (request, reply, done) => {
        const path = request.url.split('?', 1)[0];
        if (path === '/docs/json') reply.type(JSON_TYPE).send(document());
        // The package redirects this one to /docs/, which is a 404 here (paths have no trailing slash).
        else if (path === '/docs/static/index.html') reply.redirect('/docs');
        else done();
      },
    },
  });
  return document;
}

const JSON_TYPE = 'application/json; charset=utf-8';

/** The document itself, public: integrators and code generators fetch it without a key. */
export function openApiRoutes(app: HttpApp, document: () => string): void {
  app.get(
    '/openapi.json',
    {
      schema: {
        summary: 'This OpenAPI 3.1 document',
        operationId: 'getOpenApiDocument',
        tags: ['meta'],
        response: {
          200: jsonResponse('The OpenAPI document', Type.Object({}, { additionalProperties: true })),
        },
      },
    },
    async (_request, reply) => reply.type(JSON_TYPE).send(document()),
  );
}
