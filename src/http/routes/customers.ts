import { createCustomer, decideKyc } from '../../app/customers.ts';
import { customerScopeOf, requireCustomerInScope } from '../../app/scope.ts';
import type { Services } from '../../app/services.ts';
import { customerView } from '../../app/views.ts';
import { AppError } from '../../domain/errors.ts';
import { ADMIN_ONLY, COMPLIANCE, READ_CUSTOMERS } from '../auth.ts';
import { optionalIdempotencyKeyOf, sendStored } from '../idempotency.ts';
import { decodeCursor, encodeCursor, pageLimit } from '../paging.ts';
import { CreateCustomerBody, IdParams, KycDecisionBody, ListQuery } from '../schemas.ts';
import type { HttpApp } from '../types.ts';

export function customerRoutes(app: HttpApp, services: Services): void {
  const { cipher } = services;

  app.get(
    '/v1/customers',
    { config: { roles: READ_CUSTOMERS }, schema: { querystring: ListQuery } },
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
    { config: { roles: READ_CUSTOMERS }, schema: { params: IdParams } },
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
    { config: { roles: COMPLIANCE }, schema: { params: IdParams, body: KycDecisionBody } },
    async (req, reply) => {
      const key = optionalIdempotencyKeyOf(req);
      return sendStored(reply, await decideKyc(services, req.actor, key, req.params.id, req.body));
    },
  );

  app.post(
    '/v1/customers',
    { config: { roles: ADMIN_ONLY }, schema: { body: CreateCustomerBody } },
    async (req, reply) => {
      const key = optionalIdempotencyKeyOf(req);
      return sendStored(reply, await createCustomer(services, req.actor, key, req.body));
    },
  );
}
