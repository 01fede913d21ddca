import { Type } from 'typebox';
import {
  API_KEY_CUSTOMERS_MAX,
  API_KEY_NAME_LENGTH_MAX,
  API_KEY_NAME_PATTERN,
  apiKeyView,
  createApiKeyIdempotent,
  ISO_DATE_TIME_PATTERN,
  ROTATION_GRACE_MAX_SECONDS,
  revokeApiKeyIdempotent,
  rotateApiKeyIdempotent,
} from '../../app/api-keys.ts';
import type { Services } from '../../app/services.ts';
import { AppError } from '../../domain/errors.ts';
import { MODES } from '../../domain/sandbox.ts';
import { ROLES } from '../../domain/types.ts';
import type { ApiKeyPosition } from '../../storage/store.ts';
import { ADMIN_ONLY } from '../auth.ts';
import { optionalIdempotencyKeyOf, sendStored } from '../idempotency.ts';
import { bodyOptional } from '../json-body.ts';
import {
  errorResponse,
  IDEMPOTENCY_REPLAYED,
  idempotencyKeyHeader,
  jsonResponse,
  withExamples,
} from '../openapi.ts';
import { pageLimit } from '../paging.ts';
import { ApiKey, ApiKeySecret, page, ref, wrapper } from '../response-schemas.ts';
import { IdParams, ListQuery } from '../schemas.ts';
import { denyScopedKeys } from '../scope-guard.ts';
import type { HttpApp } from '../types.ts';

/**
 * API key management (admin only): list and read keys (never a secret or a hash), create one (its secret is
 * in the 201 response and nowhere else but its replay), revoke, rotate; each POST takes an optional Idempotency-Key. The lifecycle rules live in src/app/api-keys.ts.
 */
const CreateApiKeyBody = Type.Object(
  {
    role: Type.Union(ROLES.map((r) => Type.Literal(r))),
    name: Type.String({ minLength: 1, maxLength: API_KEY_NAME_LENGTH_MAX, pattern: API_KEY_NAME_PATTERN }),
    customerIds: Type.Optional(
      Type.Array(Type.String({ pattern: '^cus_[A-Za-z0-9_]{1,60}$', maxLength: 64 }), {
        minItems: 1,
        maxItems: API_KEY_CUSTOMERS_MAX,
        uniqueItems: true,
      }),
    ),
    expiresAt: Type.Optional(Type.String({ maxLength: 40, pattern: ISO_DATE_TIME_PATTERN })),
    mode: Type.Optional(
      Type.Union(
        MODES.map((m) => Type.Literal(m)),
        { description: 'the calling key’s mode (the default): a key creates keys of its own mode only' },
      ),
    ),
  },
  { additionalProperties: false },
);

const RotateApiKeyBody = Type.Object(
  { gracePeriodSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: ROTATION_GRACE_MAX_SECONDS })) },
  { additionalProperties: false },
);

const EmptyBody = Type.Object({}, { additionalProperties: false });

const OneKey = wrapper({ apiKey: ref(ApiKey) });
const KeyWithSecret = wrapper({ apiKey: ref(ApiKey), secret: ApiKeySecret });
const NOT_FOUND = errorResponse(404, ['API_KEY_NOT_FOUND']);

export function apiKeyRoutes(app: HttpApp, services: Services): void {
  const reads = services.store.reads;
  // Admin keys cannot be scoped (src/app/api-keys.ts); this keeps it so should a scoped admin key ever exist.
  denyScopedKeys(app, ['/v1/api-keys'], 'manage API keys');

  app.get(
    '/v1/api-keys',
    {
      config: { roles: ADMIN_ONLY },
      schema: {
        summary: 'List API keys',
        description:
          'Oldest first, cursor-paged; active, revoked and expired keys alike. Never a secret or a hash.',
        operationId: 'listApiKeys',
        tags: ['api-keys'],
        querystring: ListQuery,
        response: { 200: jsonResponse('A page of keys', page('apiKeys', ref(ApiKey))) },
      },
    },
    async (req) => {
      const page = await reads.listApiKeys(decodeKeyCursor(req.query.cursor), pageLimit(req.query.limit));
      const nowMs = services.clock();
      return {
        apiKeys: page.items.map((key) => apiKeyView(key, nowMs, services.mode)),
        hasMore: page.next !== null,
        nextCursor: encodeKeyCursor(page.next),
      };
    },
  );

  app.get(
    '/v1/api-keys/:id',
    {
      config: { roles: ADMIN_ONLY },
      schema: {
        summary: 'Get an API key',
        operationId: 'getApiKey',
        tags: ['api-keys'],
        params: IdParams,
        response: { 200: jsonResponse('The key', OneKey), 404: NOT_FOUND },
      },
    },
    async (req) => {
      const key = await reads.getApiKey(req.params.id);
      if (key === undefined) throw new AppError('API_KEY_NOT_FOUND', 'API key not found');
      return { apiKey: apiKeyView(key, services.clock(), services.mode) };
    },
  );

  app.post(
    '/v1/api-keys',
    {
      config: { roles: ADMIN_ONLY },
      schema: {
        summary: 'Create an API key',
        description:
          'The secret is in this response only (and in its replay under the same Idempotency-Key): store it. ' +
          '`customerIds` limits the key to those customers (not for admin keys); `expiresAt` is at most two ' +
          'years ahead. A key creates keys of its own mode (`mode`: live or test, docs/api.md#sandbox-test-mode); ' +
          'the secret starts sk_live_ or sk_test_. Audited as api_key.created.',
        operationId: 'createApiKey',
        tags: ['api-keys'],
        requestHeaders: idempotencyKeyHeader(false),
        body: withExamples(CreateApiKeyBody, {
          payments: { summary: 'A payments key', value: { role: 'payments', name: 'checkout service' } },
          scoped: {
            summary: "A payments key limited to Alice's money, expiring",
            value: {
              role: 'payments',
              name: 'partner: Alice only',
              customerIds: ['cus_demo_alice'],
              expiresAt: '2027-06-30T00:00:00Z',
            },
          },
          auditor: { summary: 'An auditor key', value: { role: 'auditor', name: 'audit team' } },
        }),
        response: {
          201: jsonResponse('Created: the secret is shown once', KeyWithSecret, IDEMPOTENCY_REPLAYED),
          403: errorResponse(403, ['MODE_MISMATCH']),
          404: errorResponse(404, ['CUSTOMER_NOT_FOUND']),
          409: errorResponse(409, ['IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD']),
        },
      },
    },
    async (req, reply) => {
      // The secret leaves the server in this response only (and in its replay under the same Idempotency-Key).
      const key = optionalIdempotencyKeyOf(req);
      return sendStored(reply, await createApiKeyIdempotent(services, req.actor, key, req.body));
    },
  );

  app.post(
    '/v1/api-keys/:id/revoke',
    {
      config: { roles: ADMIN_ONLY },
      schema: {
        summary: 'Revoke an API key',
        description:
          'From the commit on the key gets 401 AUTH_INVALID everywhere. Revoking a revoked key changes nothing ' +
          '(200); the last active admin key cannot be revoked (409 API_KEY_LAST_ADMIN). No body, or `{}`.',
        operationId: 'revokeApiKey',
        tags: ['api-keys'],
        params: IdParams,
        requestHeaders: idempotencyKeyHeader(false),
        body: EmptyBody,
        bodyOptional: true,
        response: {
          200: jsonResponse('Revoked', OneKey, IDEMPOTENCY_REPLAYED),
          404: NOT_FOUND,
          409: errorResponse(409, ['API_KEY_LAST_ADMIN', 'IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD']),
        },
      },
      preValidation: bodyOptional,
    },
    async (req, reply) => {
      const key = optionalIdempotencyKeyOf(req);
      const body = req.body as Record<string, never>;
      return sendStored(reply, await revokeApiKeyIdempotent(services, req.actor, key, req.params.id, body));
    },
  );

  app.post(
    '/v1/api-keys/:id/rotate',
    {
      config: { roles: ADMIN_ONLY },
      schema: {
        summary: "Rotate an API key's secret",
        description:
          'A new secret, shown once; the old one keeps working for `gracePeriodSeconds` (default 0, at most 7 ' +
          'days). Revoked and expired keys are not rotated (409 API_KEY_NOT_ACTIVE), nor the demo key (409 ' +
          'API_KEY_NOT_ROTATABLE: change DEMO_API_TOKEN).',
        operationId: 'rotateApiKey',
        tags: ['api-keys'],
        params: IdParams,
        requestHeaders: idempotencyKeyHeader(false),
        body: withExamples(RotateApiKeyBody, {
          grace: { summary: 'The old secret works for one more hour', value: { gracePeriodSeconds: 3600 } },
          now: { summary: 'The old secret stops at once', value: {} },
        }),
        bodyOptional: true,
        response: {
          200: jsonResponse('Rotated: the new secret is shown once', KeyWithSecret, IDEMPOTENCY_REPLAYED),
          404: NOT_FOUND,
          409: errorResponse(409, [
            'API_KEY_NOT_ACTIVE',
            'API_KEY_NOT_ROTATABLE',
            'IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD',
          ]),
        },
      },
      preValidation: bodyOptional,
    },
    async (req, reply) => {
      const key = optionalIdempotencyKeyOf(req);
      return sendStored(
        reply,
        await rotateApiKeyIdempotent(services, req.actor, key, req.params.id, req.body),
      );
    },
  );
}

/**
 * Keys have no seq column: the cursor is the (createdAtMs, id) of the page's last key, base64url JSON like the
 * other cursors (src/http/paging.ts), and as opaque to clients.
 */
function encodeKeyCursor(position: ApiKeyPosition | null): string | null {
  if (position === null) return null;
  return Buffer.from(JSON.stringify({ t: position.createdAtMs, i: position.id })).toString('base64url');
}

/** What an API key id can be (the cursor names one): `key_` and a generated id, or a fixed one like the demo key's. */
const API_KEY_ID_PATTERN = /^key_[A-Za-z0-9_]{1,60}$/;

function decodeKeyCursor(cursor: string | undefined): ApiKeyPosition | null {
  if (cursor === undefined) return null;
  try {
    const parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as {
      t?: unknown;
      i?: unknown;
    };
    const { t, i } = parsed;
    if (
      typeof t === 'number' &&
      Number.isSafeInteger(t) &&
      t >= 0 &&
      typeof i === 'string' &&
      API_KEY_ID_PATTERN.test(i)
    ) {
      return { createdAtMs: t, id: i };
    }
  } catch {
    // fall through to the 400
  }
  throw new AppError('VALIDATION_ERROR', 'cursor is not valid', [
    { field: '/cursor', message: 'invalid cursor' },
  ]);
}
