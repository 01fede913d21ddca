import type { Services } from '../../app/services.ts';
import { verifyAuditChain } from '../../app/verification.ts';
import { auditEntryView } from '../../app/views.ts';
import { AUDITOR } from '../auth.ts';
import { errorBody } from '../error-handler.ts';
import { decodeCursor, encodeCursor, pageLimit } from '../paging.ts';
import { ListQuery } from '../schemas.ts';
import type { HttpApp } from '../types.ts';

export function auditRoutes(app: HttpApp, services: Services): void {
  const reads = services.store.reads;

  // The cursor is the index of the next entry; entries come in index order.
  app.get(
    '/v1/audit-logs',
    { config: { roles: AUDITOR }, schema: { querystring: ListQuery } },
    async (req) => {
      const limit = pageLimit(req.query.limit);
      const from = decodeCursor(req.query.cursor);
      const [entries, size] = await Promise.all([reads.listAuditEntries(from, limit + 1), reads.auditSize()]);
      const hasMore = entries.length > limit;
      const logs = entries.slice(0, limit).map(auditEntryView);
      return {
        logs,
        count: logs.length,
        total: size,
        hasMore,
        nextCursor: hasMore ? encodeCursor(from + limit) : null,
      };
    },
  );

  app.get('/v1/audit-logs/verify', { config: { roles: AUDITOR } }, async (req, reply) => {
    const verification = await verifyAuditChain(services.store);
    if (verification.valid) return { verification };
    const message = `the audit chain is broken at index ${verification.brokenAtIndex}`;
    return reply.code(500).send({ verification, ...errorBody('AUDIT_CHAIN_INVALID', message, req.id) });
  });
}
