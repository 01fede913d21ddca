import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../domain/errors.ts';
import type { Actor, Role } from '../domain/types.ts';
import { hashSecret, parseBearer, secretMatches } from '../security/api-keys.ts';
import type { Reads } from '../storage/store.ts';

/**
 * Authentication and role checks, before the body is even parsed. A route names the roles it admits in its
 * config; `admin` is always admitted. Missing or malformed header: 401 AUTH_REQUIRED; unknown secret: 401
 * AUTH_INVALID; a known key without the role: 403 FORBIDDEN.
 */
declare module 'fastify' {
  interface FastifyContextConfig {
    roles?: readonly Role[];
  }
  interface FastifyRequest {
    actor: Actor;
  }
}

export const ANY_ROLE: readonly Role[] = ['payments', 'compliance', 'auditor'];
export const READ_ACCOUNTS: readonly Role[] = ['payments', 'compliance', 'auditor'];
export const READ_CUSTOMERS: readonly Role[] = ['compliance', 'auditor'];
export const READ_LEDGER: readonly Role[] = ['compliance', 'auditor'];
export const READ_PAYMENTS: readonly Role[] = ['payments', 'compliance', 'auditor'];
export const CREATE_PAYMENTS: readonly Role[] = ['payments'];
export const COMPLIANCE: readonly Role[] = ['compliance'];
export const AUDITOR: readonly Role[] = ['auditor'];
export const REVIEW_PAYMENTS: readonly Role[] = ['compliance'];
export const REFUND_PAYMENTS: readonly Role[] = ['payments'];
export const READ_EVENTS: readonly Role[] = ['auditor'];
export const ADMIN_ONLY: readonly Role[] = [];

export function authHook(reads: Reads) {
  return async function authenticate(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
    const roles = request.routeOptions.config.roles;
    if (roles === undefined) return;
    const secret = parseBearer(request.headers.authorization);
    if (secret === null) throw new AppError('AUTH_REQUIRED', 'send Authorization: Bearer <API key>');
    const key = await reads.findApiKeyByHash(hashSecret(secret));
    if (key === undefined || !secretMatches(secret, key.secretHash)) {
      throw new AppError('AUTH_INVALID', 'the API key is not valid');
    }
    if (key.role !== 'admin' && !roles.includes(key.role)) {
      throw new AppError('FORBIDDEN', `this API key (role ${key.role}) may not call this endpoint`);
    }
    request.actor = { apiKeyId: key.id, role: key.role, requestId: request.id };
  };
}
