import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../domain/errors.ts';
import type { Mode } from '../domain/sandbox.ts';
import type { Actor, Role } from '../domain/types.ts';
import { hashSecret, keyAccepts, parseBearer } from '../security/api-keys.ts';
import type { Reads } from '../storage/store.ts';

/**
 * Authentication and role checks, before the body is even parsed. A route names the roles it admits in its
 * config; `admin` is always admitted. Missing or malformed header: 401 AUTH_REQUIRED; unknown, revoked or
 * expired key: 401 AUTH_INVALID; a valid key without the role: 403 FORBIDDEN.
 */
declare module 'fastify' {
  interface FastifyContextConfig {
    roles?: readonly Role[];
    /** Which mode's copy of the API the route belongs to (src/http/server.ts); absent: registered once. */
    mode?: Mode;
    /**
     * Another credential the route accepts before any API key (GET /metrics: METRICS_TOKEN): given the
     * Authorization header, the actor it authenticates, or null to fall through to the API-key check.
     */
    otherCredential?: (authorization: string | undefined, requestId: string) => Actor | null;
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
/**
 * A receipt holds the payment's audit entry, whole decision included (thresholds, features, sanctions list
 * entries): the roles that see the full decision (src/app/views.ts). A `payments` key gets a receipt only for
 * its own request, with `Prefer: receipt` on POST /v1/payments.
 */
export const READ_RECEIPTS: readonly Role[] = ['compliance', 'auditor'];
export const ADMIN_ONLY: readonly Role[] = [];
/**
 * Regulatory reports and compliance cases (src/app/reports.ts): compliance and auditor, who see the parties'
 * personal data decrypted in exports; admin (always admitted) gets those fields masked.
 */
export const READ_REPORTS: readonly Role[] = ['compliance', 'auditor'];

/**
 * Every request reads its key from the database (one index lookup, no cache), so a revocation, an expiry or
 * the end of a rotation's grace period takes effect at once in every process. The clock is the services'
 * (tests drive it by hand).
 */
export function authHook(reads: Reads, clock: () => number = Date.now) {
  return async function authenticate(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
    const roles = request.routeOptions.config.roles;
    if (roles === undefined) return;
    const other = request.routeOptions.config.otherCredential?.(request.headers.authorization, request.id);
    if (other != null) {
      if (other.role !== 'admin' && !roles.includes(other.role)) {
        throw new AppError('FORBIDDEN', `this credential (role ${other.role}) may not call this endpoint`);
      }
      request.actor = other;
      return;
    }
    const secret = parseBearer(request.headers.authorization);
    if (secret === null) throw new AppError('AUTH_REQUIRED', 'send Authorization: Bearer <API key>');
    const key = await reads.findApiKeyByHash(hashSecret(secret));
    // Unknown, revoked, expired, or a rotated-out secret past its grace: one answer, no oracle.
    if (key === undefined || !keyAccepts(key, secret, clock())) {
      throw new AppError('AUTH_INVALID', 'the API key is not valid');
    }
    if (key.role !== 'admin' && !roles.includes(key.role)) {
      throw new AppError('FORBIDDEN', `this API key (role ${key.role}) may not call this endpoint`);
    }
    request.actor = {
      apiKeyId: key.id,
      role: key.role,
      requestId: request.id,
      // The key's scope; null: unscoped. Enforced by the routes and services that read or move money.
      customerIds: key.customerIds,
    };
  };
}
