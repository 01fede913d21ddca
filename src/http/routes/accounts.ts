import { createAccount } from '../../app/accounts.ts';
import { customerScopeOf, requireAccountInScope } from '../../app/scope.ts';
import type { Services } from '../../app/services.ts';
import { accountView, balanceView } from '../../app/views.ts';
import { AppError } from '../../domain/errors.ts';
import type { Account, Actor } from '../../domain/types.ts';
import { ADMIN_ONLY, READ_ACCOUNTS } from '../auth.ts';
import { optionalIdempotencyKeyOf, sendStored } from '../idempotency.ts';
import { decodeCursor, encodeCursor, pageLimit } from '../paging.ts';
import { AccountListQuery, CreateAccountBody, IdParams } from '../schemas.ts';
import type { HttpApp } from '../types.ts';

export function accountRoutes(app: HttpApp, services: Services): void {
  const reads = services.store.reads;
  const found = async (actor: Actor, id: string): Promise<Account> => {
    const account = await reads.getAccount(id);
    if (account === undefined) throw new AppError('ACCOUNT_NOT_FOUND', 'account not found');
    // A scoped key's view (src/app/scope.ts): another customer's account does not exist for it.
    requireAccountInScope(actor, account);
    return account;
  };

  app.get(
    '/v1/accounts',
    { config: { roles: READ_ACCOUNTS }, schema: { querystring: AccountListQuery } },
    async (req) => {
      const page = await reads.listAccounts(
        { after: decodeCursor(req.query.cursor), limit: pageLimit(req.query.limit) },
        req.query.customerId,
        customerScopeOf(req.actor),
      );
      return {
        accounts: page.items.map(accountView),
        hasMore: page.nextAfter !== null,
        nextCursor: encodeCursor(page.nextAfter),
      };
    },
  );

  app.get(
    '/v1/accounts/:id',
    { config: { roles: READ_ACCOUNTS }, schema: { params: IdParams } },
    async (req) => ({
      account: accountView(await found(req.actor, req.params.id)),
    }),
  );

  app.get(
    '/v1/accounts/:id/balance',
    { config: { roles: READ_ACCOUNTS }, schema: { params: IdParams } },
    async (req) => ({
      account: balanceView(await found(req.actor, req.params.id)),
    }),
  );

  app.post(
    '/v1/accounts',
    { config: { roles: ADMIN_ONLY }, schema: { body: CreateAccountBody } },
    async (req, reply) => {
      const key = optionalIdempotencyKeyOf(req);
      const opened = await createAccount(services, req.actor, key, {
        customerId: req.body.customerId,
        currency: req.body.currency,
        initialBalanceCents: req.body.initialBalanceCents ?? 0,
      });
      return sendStored(reply, opened);
    },
  );
}
