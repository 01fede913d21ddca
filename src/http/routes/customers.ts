import { createCustomer, decideKyc } from '../../app/customers.ts';
import { customerScopeOf, requireCustomerInScope } from '../../app/scope.ts';
import type { Services } from '../../app/services.ts';
import { customerView } from '../../app/views.ts';
import { AppError } from '../../domain/errors.ts';
import { ADMIN_ONLY, COMPLIANCE, READ_CUSTOMERS } from '../auth.ts';
import { optionalIdempotencyKeyOf, sendStored } from '../idempotency.ts';
import {
  errorResponse,
  IDEMPOTENCY_REPLAYED,
  idempotencyKeyHeader,
  jsonResponse,
  withExamples,
} from '../openapi.ts';
import { decodeCursor, encodeCursor, pageLimit } from '../paging.ts';
import { Customer, page, ref, wrapper } from '../response-schemas.ts';
import { CreateCustomerBody, IdParams, KycDecisionBody, ListQuery } from '../schemas.ts';
import type { HttpApp } from '../types.ts';

const OneCustomer = wrapper({ customer: ref(Customer) });

export function customerRoutes(app: HttpApp, services: Services): void {
  const { cipher } = services;

  app.get(
    '/v1/customers',
    {
      config: { roles: READ_CUSTOMERS },
      schema: {
        summary: 'List customers',
        description: 'Oldest first, cursor-paged. A scoped key lists only its customers.',
        operationId: 'listCustomers',
        tags: ['customers'],
        querystring: ListQuery,
        response: { 200: jsonResponse('A page of customers', page('customers', ref(Customer))) },
      },
    },
    async (req) => {
      const page = await services.store.reads.listCustomers(
        { after: decodeCursor(req.query.cursor), limit: pageLimit(req.query.limit) },
        customerScopeOf(req.actor),
      );
      return {
        customers: page.items.map((c) => customerView(c, cipher)),
        hasMore: page.nextAfter !== null,
        nextCursor: encodeCursor(page.nextAfter),
      };
    },
  );

  app.get(
    '/v1/customers/:id',
    {
      config: { roles: READ_CUSTOMERS },
      schema: {
        summary: 'Get a customer',
        operationId: 'getCustomer',
        tags: ['customers'],
        params: IdParams,
        response: {
          200: jsonResponse('The customer', OneCustomer),
          404: errorResponse(404, ['CUSTOMER_NOT_FOUND']),
        },
      },
    },
    async (req) => {
      // A scoped key (src/app/scope.ts): a customer outside its scope does not exist for it.
      requireCustomerInScope(req.actor, req.params.id);
      const row = await services.store.reads.getCustomer(req.params.id);
      if (row === undefined) throw new AppError('CUSTOMER_NOT_FOUND', 'customer not found');
      return { customer: customerView(row, cipher) };
    },
  );

  app.post(
    '/v1/customers/:id/kyc',
    {
      config: { roles: COMPLIANCE },
      schema: {
        summary: 'Record a KYC decision',
        description:
          'Sets kycStatus (and kycTier). Audited with the actor; the note is stored encrypted, never logged. ' +
          "`rejected` also declines the customer's payments held for review as sender and releases their holds.",
        operationId: 'decideCustomerKyc',
        tags: ['customers'],
        params: IdParams,
        requestHeaders: idempotencyKeyHeader(false),
        body: withExamples(KycDecisionBody, {
          verified: {
            summary: 'Verified, standard tier',
            value: {
              kycStatus: 'verified',
              kycTier: 'standard',
              note: 'Passport and proof of address checked',
            },
          },
          rejected: { summary: 'Rejected', value: { kycStatus: 'rejected', note: 'Document forged' } },
        }),
        response: {
          200: jsonResponse('The customer as decided', OneCustomer, IDEMPOTENCY_REPLAYED),
          404: errorResponse(404, ['CUSTOMER_NOT_FOUND']),
          409: errorResponse(409, ['IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD']),
        },
      },
    },
    async (req, reply) => {
      const key = optionalIdempotencyKeyOf(req);
      return sendStored(reply, await decideKyc(services, req.actor, key, req.params.id, req.body));
    },
  );

  app.post(
    '/v1/customers',
    {
      config: { roles: ADMIN_ONLY },
      schema: {
        summary: 'Onboard a customer',
        description:
          'The name is screened against the sanctions list; a listed name or a high-risk jurisdiction starts in ' +
          '`manual_review`, others `verified`. Personal data is stored encrypted; the document reference is ' +
          'never returned, and a second customer with the same (canonical) reference is 409 CUSTOMER_EXISTS.',
        operationId: 'createCustomer',
        tags: ['customers'],
        requestHeaders: idempotencyKeyHeader(false),
        body: withExamples(CreateCustomerBody, {
          workshop: {
            summary: 'A customer like the demo ones',
            value: { name: 'Carol Diaz', country: 'US', documentReference: 'PASSPORT-CAROL-001' },
          },
        }),
        response: {
          201: jsonResponse('Created', OneCustomer, IDEMPOTENCY_REPLAYED),
          409: errorResponse(409, ['CUSTOMER_EXISTS', 'IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD']),
        },
      },
    },
    async (req, reply) => {
      const key = optionalIdempotencyKeyOf(req);
      return sendStored(reply, await createCustomer(services, req.actor, key, req.body));
    },
  );
}
