import { changeAccountControls } from '../../app/account-controls.ts';
import { createAccount } from '../../app/accounts.ts';
import { parseIsoTime } from '../../app/api-keys.ts';
import { customerScopeOf, requireAccountInScope } from '../../app/scope.ts';
import type { Services } from '../../app/services.ts';
import { accountView, balanceView, statementView } from '../../app/views.ts';
import { AppError } from '../../domain/errors.ts';
import type { Account, Actor } from '../../domain/types.ts';
import { ADMIN_ONLY, COMPLIANCE, READ_ACCOUNTS } from '../auth.ts';
import { optionalIdempotencyKeyOf, sendStored } from '../idempotency.ts';
import {
  errorResponse,
  IDEMPOTENCY_REPLAYED,
  idempotencyKeyHeader,
  jsonResponse,
  withExamples,
} from '../openapi.ts';
import { decodeBoundCursor, encodeBoundCursor, pageLimit } from '../paging.ts';
import {
  AccountBalance,
  Account as AccountSchema,
  page,
  ref,
  Statement,
  wrapper,
} from '../response-schemas.ts';
import {
  AccountControlsBody,
  AccountListQuery,
  BalanceQuery,
  CreateAccountBody,
  IdParams,
  StatementQuery,
} from '../schemas.ts';
import type { HttpApp } from '../types.ts';

const OneAccount = wrapper({ account: ref(AccountSchema) });

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
    {
      config: { roles: READ_ACCOUNTS },
      schema: {
        summary: 'List accounts',
        description:
          "Oldest first, cursor-paged; `customerId` filters by owner. A scoped key lists its customers' only.",
        operationId: 'listAccounts',
        tags: ['accounts'],
        querystring: AccountListQuery,
        response: { 200: jsonResponse('A page of accounts', page('accounts', ref(AccountSchema))) },
      },
    },
    async (req) => {
      const list = `accounts|${req.query.customerId ?? ''}`;
      const page = await reads.listAccounts(
        { after: decodeBoundCursor(req.query.cursor, list), limit: pageLimit(req.query.limit) },
        req.query.customerId,
        customerScopeOf(req.actor),
      );
      return {
        accounts: page.items.map(accountView),
        hasMore: page.nextAfter !== null,
        nextCursor: encodeBoundCursor(page.nextAfter, list),
      };
    },
  );

  app.get(
    '/v1/accounts/:id',
    {
      config: { roles: READ_ACCOUNTS },
      schema: {
        summary: 'Get an account',
        operationId: 'getAccount',
        tags: ['accounts'],
        params: IdParams,
        response: {
          200: jsonResponse('The account', OneAccount),
          404: errorResponse(404, ['ACCOUNT_NOT_FOUND']),
        },
      },
    },
    async (req) => ({
      account: accountView(await found(req.actor, req.params.id)),
    }),
  );

  app.get(
    '/v1/accounts/:id/balance',
    {
      config: { roles: READ_ACCOUNTS },
      schema: {
        summary: "An account's balances, now or at an instant",
        description:
          'available = posted - held (held: payments in review). With `at`: the balances as of that instant ' +
          '(every entry and hold change stamped at or before it), read from the running balances the ledger ' +
          'records, never recomputed; `asOf` echoes it. An instant in the future is a 400.',
        operationId: 'getAccountBalance',
        tags: ['accounts'],
        params: IdParams,
        querystring: BalanceQuery,
        response: {
          200: jsonResponse('The balances', wrapper({ account: ref(AccountBalance) })),
          400: errorResponse(400, ['VALIDATION_ERROR']),
          404: errorResponse(404, ['ACCOUNT_NOT_FOUND']),
        },
      },
    },
    async (req) => {
      const atMs = req.query.at === undefined ? undefined : parseIsoTime(req.query.at, '/at');
      if (atMs !== undefined && atMs > services.clock()) {
        throw new AppError('VALIDATION_ERROR', 'at must not be in the future', [
          { field: '/at', message: 'the balance at a future instant is not known yet' },
        ]);
      }
      const account = await found(req.actor, req.params.id);
      if (atMs === undefined) return { account: balanceView(account) };
      const balances = await reads.balanceAt(account.id, atMs);
      return { account: { ...balanceView({ ...account, ...balances }), asOf: new Date(atMs).toISOString() } };
    },
  );

  app.get(
    '/v1/accounts/:id/statement',
    {
      config: { roles: READ_ACCOUNTS },
      schema: {
        summary: "An account's statement",
        description:
          'The entries stamped in [from, to), oldest first and cursor-paged, each with the posted balance after ' +
          'it (`balanceAfterCents`), and the period’s opening and closing posted balance: opening + each ' +
          'entry = its balanceAfterCents, and the last one’s = closing. Read from the running balances each ' +
          'entry records: no recomputation, whatever the history. A cursor is valid only with the from and ' +
          'to it was made for. Without `to` the period ends now, and grows as entries arrive.',
        operationId: 'getAccountStatement',
        tags: ['accounts'],
        params: IdParams,
        querystring: StatementQuery,
        response: {
          200: jsonResponse('A page of the statement', ref(Statement)),
          400: errorResponse(400, ['VALIDATION_ERROR']),
          404: errorResponse(404, ['ACCOUNT_NOT_FOUND']),
        },
      },
    },
    async (req) => {
      const { from, to } = req.query;
      const fromMs = from === undefined ? 0 : parseIsoTime(from, '/from');
      // "Now" includes entries stamped in the current millisecond: the period ends just after it.
      const toMs = to === undefined ? services.clock() + 1 : parseIsoTime(to, '/to');
      if (fromMs >= toMs) {
        throw new AppError('VALIDATION_ERROR', 'from must be before to', [
          { field: '/from', message: 'the period [from, to) is empty' },
        ]);
      }
      const account = await found(req.actor, req.params.id);
      const list = `statement|${account.id}|${from ?? ''}|${to ?? ''}`;
      const statement = await reads.accountStatement(
        account.id,
        { fromMs, toMs },
        { after: decodeBoundCursor(req.query.cursor, list), limit: pageLimit(req.query.limit) },
      );
      return statementView(
        account,
        { fromMs, toMs },
        statement,
        encodeBoundCursor(statement.entries.nextAfter, list),
      );
    },
  );

  app.post(
    '/v1/accounts',
    {
      config: { roles: ADMIN_ONLY },
      schema: {
        summary: 'Open an account',
        description:
          "Opens empty; `initialBalanceCents` is a real ledger posting from the currency's system funding " +
          'account. Under an Idempotency-Key a retry opens one account and funds it once.',
        operationId: 'createAccount',
        tags: ['accounts'],
        requestHeaders: idempotencyKeyHeader(false),
        body: withExamples(CreateAccountBody, {
          funded: {
            summary: 'A USD account for the demo customer, funded with $500',
            value: { customerId: 'cus_demo_alice', currency: 'USD', initialBalanceCents: 50000 },
          },
          empty: { summary: 'An empty EUR account', value: { customerId: 'cus_demo_bob', currency: 'EUR' } },
        }),
        response: {
          201: jsonResponse('Opened', OneAccount, IDEMPOTENCY_REPLAYED),
          404: errorResponse(404, ['CUSTOMER_NOT_FOUND']),
          409: errorResponse(409, ['IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD']),
          422: errorResponse(422, ['BALANCE_LIMIT_EXCEEDED']),
        },
      },
    },
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

  app.post(
    '/v1/accounts/:id/controls',
    {
      config: { roles: COMPLIANCE },
      schema: {
        summary: "Change an account's status and limits",
        description:
          'Sets any of `status` (active: sends and receives; frozen: receives only; closed: neither, for good, ' +
          'and only with a zero posted and held balance), `overdraftLimitCents` (the available balance may go ' +
          'down to its negative) and `minimumBalanceCents` (it must stay at or above it); at most one limit is ' +
          'non-zero. Enforced in the transaction of every payment, approval and refund, under the account’s ' +
          'lock. Audited (before and after) and evented (`account.controls_updated`). Idempotent under an ' +
          'Idempotency-Key.',
        operationId: 'changeAccountControls',
        tags: ['accounts'],
        params: IdParams,
        requestHeaders: idempotencyKeyHeader(false),
        body: withExamples(AccountControlsBody, {
          freeze: { summary: 'Freeze: it can receive, not send', value: { status: 'frozen' } },
          overdraft: { summary: 'Allow $100 of overdraft', value: { overdraftLimitCents: 10000 } },
          close: { summary: 'Close an empty account', value: { status: 'closed' } },
        }),
        response: {
          200: jsonResponse('The account with its new controls', OneAccount, IDEMPOTENCY_REPLAYED),
          400: errorResponse(400, ['VALIDATION_ERROR']),
          404: errorResponse(404, ['ACCOUNT_NOT_FOUND']),
          409: errorResponse(409, [
            'ACCOUNT_CLOSED',
            'ACCOUNT_NOT_EMPTY',
            'ACCOUNT_BELOW_NEW_LIMIT',
            'IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD',
          ]),
        },
      },
    },
    async (req, reply) => {
      const key = optionalIdempotencyKeyOf(req);
      return sendStored(
        reply,
        await changeAccountControls(services, req.actor, key, req.params.id, req.body),
      );
    },
  );
}
