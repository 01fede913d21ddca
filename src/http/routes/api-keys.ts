import type { FastifyRequest } from 'fastify';
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
import { ROLES } from '../../domain/types.ts';
import type { ApiKeyPosition } from '../../storage/store.ts';
import { ADMIN_ONLY } from '../auth.ts';
import { optionalIdempotencyKeyOf, sendStored } from '../idempotency.ts';
import { pageLimit } from '../paging.ts';
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
  },
  { additionalProperties: false },
);

const RotateApiKeyBody = Type.Object(
  { gracePeriodSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: ROTATION_GRACE_MAX_SECONDS })) },
  { additionalProperties: false },
);

const EmptyBody = Type.Object({}, { additionalProperties: false });

export function apiKeyRoutes(app: HttpApp, services: Services): void {
  const reads = services.store.reads;
  // Admin keys cannot be scoped (src/app/api-keys.ts); this keeps it so should a scoped admin key ever exist.
  denyScopedKeys(app, ['/v1/api-keys'], 'manage API keys');

  app.get(
    '/v1/api-keys',
    { config: { roles: ADMIN_ONLY }, schema: { querystring: ListQuery } },
    async (req) => {
      const page = await reads.listApiKeys(decodeKeyCursor(req.query.cursor), pageLimit(req.query.limit));
      const nowMs = services.clock();
      return {
        apiKeys: page.items.map((key) => apiKeyView(key, nowMs)),
        hasMore: page.next !== null,
        nextCursor: encodeKeyCursor(page.next),
      };
    },
  );

  app.get(
    '/v1/api-keys/:id',
    { config: { roles: ADMIN_ONLY }, schema: { params: IdParams } },
    async (req) => {
      const key = await reads.getApiKey(req.params.id);
      if (key === undefined) throw new AppError('API_KEY_NOT_FOUND', 'API key not found');
      return { apiKey: apiKeyView(key, services.clock()) };
    },
  );

  app.post(
    '/v1/api-keys',
    { config: { roles: ADMIN_ONLY }, schema: { body: CreateApiKeyBody } },
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
      schema: { params: IdParams, body: EmptyBody },
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
      schema: { params: IdParams, body: RotateApiKeyBody },
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

/** These bodies have only optional fields, so no body at all means `{}` (not a 400). */
async function bodyOptional(req: FastifyRequest): Promise<void> {
  req.body ??= {};
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
