import { Type } from 'typebox';
import { apiKeyView } from '../../app/api-keys.ts';
import type { Services } from '../../app/services.ts';
import { assert } from '../../domain/assert.ts';
import type { Role } from '../../domain/types.ts';
import { ANY_ROLE } from '../auth.ts';
import { jsonResponse } from '../openapi.ts';
import { ApiKey, ref } from '../response-schemas.ts';
import type { HttpApp } from '../types.ts';

/** Every operation's id and the roles it admits (undefined: no key needed), as the routes declared them. */
export type OperationRoles = ReadonlyMap<string, readonly Role[] | undefined>;

/** Collects OperationRoles from the routes as they are registered: the same `config.roles` the auth hook reads. */
export function trackOperations(app: HttpApp): OperationRoles {
  const operations = new Map<string, readonly Role[] | undefined>();
  app.addHook('onRoute', (route) => {
    const operationId = (route.schema as { operationId?: string } | undefined)?.operationId;
    if (operationId !== undefined) operations.set(operationId, route.config?.roles);
  });
  return operations;
}

/** The operations a role may call: what a client (the console) shows or hides, from the routes themselves. */
export function permittedOperations(operations: OperationRoles, role: Role): string[] {
  const permitted: string[] = [];
  for (const [operationId, roles] of operations) {
    if (roles === undefined || role === 'admin' || roles.includes(role)) permitted.push(operationId);
  }
  return permitted.sort();
}

/**
 * GET /v1/me: the calling key as GET /v1/api-keys/:id shows it (never a secret), and the operations its role
 * admits. The console signs in with it; any client can check what a key may do before it tries.
 */
export function sessionRoutes(app: HttpApp, services: Services, operations: OperationRoles): void {
  app.get(
    '/v1/me',
    {
      config: { roles: ANY_ROLE },
      schema: {
        summary: 'The calling API key and what it may do',
        description:
          '`permissions`: the operationIds of this document the key’s role admits (a key scoped to customers ' +
          'is refused some of them all the same, with 403). No secret, no hash.',
        operationId: 'getMe',
        tags: ['api-keys'],
        response: {
          200: jsonResponse(
            'The key',
            Type.Object(
              {
                apiKey: ref(ApiKey),
                permissions: Type.Array(Type.String({ pattern: '^[A-Za-z]+$' }), { uniqueItems: true }),
              },
              { additionalProperties: false },
            ),
          ),
        },
      },
    },
    async (req) => {
      const key = await services.store.reads.getApiKey(req.actor.apiKeyId);
      // The auth hook found this key a moment ago; keys are revoked, never deleted.
      assert(key !== undefined, 'an authenticated key exists');
      return {
        apiKey: apiKeyView(key, services.clock(), services.mode),
        permissions: permittedOperations(operations, req.actor.role),
      };
    },
  );
}
