import { readScopeOf, requireUnscoped } from '../../app/scope.ts';
import type { Services } from '../../app/services.ts';
import { verifyLedger } from '../../app/verification.ts';
import { ledgerEntryView } from '../../app/views.ts';
import { AUDITOR, READ_LEDGER } from '../auth.ts';
import { filterBinding, listFilterOf, METADATA_FILTERS_MAX } from '../list-filters.ts';
import { jsonResponse } from '../openapi.ts';
import { decodeBoundCursor, encodeBoundCursor, pageLimit } from '../paging.ts';
import { LedgerEntry, LedgerVerification, page, ref, wrapper } from '../response-schemas.ts';
import { LedgerQuery } from '../schemas.ts';
import type { HttpApp } from '../types.ts';

export function ledgerRoutes(app: HttpApp, services: Services): void {
  app.get(
    '/v1/ledger',
    {
      config: { roles: READ_LEDGER },
      schema: {
        summary: 'List ledger entries',
        description:
          'Oldest first, or newest first with `order=desc`; cursor-paged (a cursor is only valid with the filters ' +
          'and order it was made for). Filters combine (all must hold): `paymentId`, `accountId` (the entry’s ' +
          'account), `counterpartyAccountId` (entries of payments and their refunds whose other party is that ' +
          'account), `createdFrom` (inclusive) and `createdTo` (exclusive), `amountMin` and `amountMax` (the ' +
          'entry’s amount, inclusive, minor units), and of the entry’s payment `status` and ' +
          `\`metadata[key]=value\` (up to ${METADATA_FILTERS_MAX} pairs; an entry of no payment, such as an ` +
          'opening balance, matches neither). A filtered page may hold fewer items than `limit`, even none, and ' +
          'still have `hasMore`: follow `nextCursor`. Every posting is a debit and a credit of the same amount. A ' +
          'scoped key sees only the entries on its customers’ accounts.',
        operationId: 'listLedgerEntries',
        tags: ['ledger'],
        querystring: LedgerQuery,
        response: { 200: jsonResponse('A page of ledger entries', page('ledgerEntries', ref(LedgerEntry))) },
      },
    },
    async (req) => {
      const { paymentId, accountId, order } = req.query;
      const filter = listFilterOf(req.query);
      // The cursor is bound to the order and every filter (payment and account first, as before filters were added).
      const list = `ledger|${order ?? 'asc'}|${paymentId ?? ''}|${accountId ?? ''}${filterBinding(filter, ['accountId'])}`;
      const page = await services.store.reads.listLedgerEntries(
        {
          after: decodeBoundCursor(req.query.cursor, list),
          limit: pageLimit(req.query.limit),
          descending: order === 'desc',
        },
        { ...filter, paymentId },
        await readScopeOf(services.store.reads, req.actor),
      );
      return {
        ledgerEntries: page.items.map(ledgerEntryView),
        hasMore: page.nextAfter !== null,
        nextCursor: encodeBoundCursor(page.nextAfter, list),
      };
    },
  );

  app.get(
    '/v1/ledger/verify',
    {
      config: { roles: AUDITOR },
      schema: {
        summary: 'Verify the ledger',
        description:
          "Recomputes every balance from the entries: each currency's debits equal its credits, every account's " +
          'balances equal its entries and open holds, every entry’s running balance and every hold’s running ' +
          'totals equal the sums before them, every payment agrees with its hold and refunds. ' +
          '`valid: false` names up to 100 mismatches. Not for keys scoped to customers (403).',
        operationId: 'verifyLedger',
        tags: ['ledger'],
        response: {
          200: jsonResponse('The result (valid or not)', wrapper({ verification: ref(LedgerVerification) })),
        },
      },
    },
    async (req) => {
      requireUnscoped(req.actor, 'verify the whole ledger');
      return { verification: await verifyLedger(services.store) };
    },
  );
}
