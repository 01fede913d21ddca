import { readScopeOf, requireUnscoped } from '../../app/scope.ts';
import type { Services } from '../../app/services.ts';
import { verifyLedger } from '../../app/verification.ts';
import { ledgerEntryView } from '../../app/views.ts';
import { AUDITOR, READ_LEDGER } from '../auth.ts';
import { decodeCursor, encodeCursor, pageLimit } from '../paging.ts';
import { LedgerQuery } from '../schemas.ts';
import type { HttpApp } from '../types.ts';

export function ledgerRoutes(app: HttpApp, services: Services): void {
  app.get(
    '/v1/ledger',
    { config: { roles: READ_LEDGER }, schema: { querystring: LedgerQuery } },
    async (req) => {
      const page = await services.store.reads.listLedgerEntries(
        { after: decodeCursor(req.query.cursor), limit: pageLimit(req.query.limit) },
        { paymentId: req.query.paymentId, accountId: req.query.accountId },
        await readScopeOf(services.store.reads, req.actor),
      );
      return {
        ledgerEntries: page.items.map(ledgerEntryView),
        hasMore: page.nextAfter !== null,
        nextCursor: encodeCursor(page.nextAfter),
      };
    },
  );

  app.get('/v1/ledger/verify', { config: { roles: AUDITOR } }, async (req) => {
    requireUnscoped(req.actor, 'verify the whole ledger');
    return { verification: await verifyLedger(services.store) };
  });
}
