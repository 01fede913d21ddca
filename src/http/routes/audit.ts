import { Type } from 'typebox';
import { consistencyProofOf, inclusionProofOf } from '../../app/audit-log.ts';
import type { Services } from '../../app/services.ts';
import { verifyAuditChain } from '../../app/verification.ts';
import { auditEntryView } from '../../app/views.ts';
import { AppError } from '../../domain/errors.ts';
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

  verifiableLogRoutes(app, services);
}

/**
 * The verifiable log (docs/audit-log.md): the signed checkpoint, the key to check it with, single entries,
 * and RFC 9162 inclusion and consistency proofs (hashes base64, leaf to root / in RFC order).
 */
const Size = (minimum: number) => Type.Integer({ minimum, maximum: Number.MAX_SAFE_INTEGER });
const EntryParams = Type.Object(
  { index: Type.String({ pattern: '^(0|[1-9][0-9]{0,15})$' }) },
  { additionalProperties: false },
);
const InclusionQuery = Type.Object({ index: Size(0), treeSize: Size(1) }, { additionalProperties: false });
const ConsistencyQuery = Type.Object({ from: Size(1), to: Size(1) }, { additionalProperties: false });

function badParameter(field: string, message: string): AppError {
  return new AppError('VALIDATION_ERROR', `${field} ${message}`, [
    { field: `/querystring/${field}`, message },
  ]);
}

function verifiableLogRoutes(app: HttpApp, services: Services): void {
  const reads = services.store.reads;
  const base64 = (hashes: Buffer[]) => hashes.map((h) => h.toString('base64'));
  const treeSizeAtMost = async (field: string, treeSize: number) => {
    const size = await reads.auditMerkleSize();
    if (treeSize > size) throw badParameter(field, `must be at most the log size (${size})`);
  };

  app.get('/v1/audit-logs/checkpoint', { config: { roles: AUDITOR } }, async (_req, reply) => {
    const checkpoint = await services.auditLog.checkpoint();
    return reply.type('text/plain; charset=utf-8').send(checkpoint.note);
  });

  app.get('/v1/audit-logs/public-key', { config: { roles: AUDITOR } }, async (_req, reply) => {
    return reply.type('text/plain; charset=utf-8').send(`${services.auditLog.signer.verifierKey()}\n`);
  });

  app.get(
    '/v1/audit-logs/entries/:index',
    { config: { roles: AUDITOR }, schema: { params: EntryParams } },
    async (req) => {
      const index = Number(req.params.index);
      const [entry] = Number.isSafeInteger(index) ? await reads.listAuditEntries(index, 1) : [];
      if (entry === undefined || entry.index !== index) {
        throw new AppError('AUDIT_ENTRY_NOT_FOUND', `there is no audit entry ${req.params.index}`);
      }
      return { entry: auditEntryView(entry) };
    },
  );

  app.get(
    '/v1/audit-logs/proofs/inclusion',
    { config: { roles: AUDITOR }, schema: { querystring: InclusionQuery } },
    async (req) => {
      const { index, treeSize } = req.query;
      if (index >= treeSize) throw badParameter('index', 'must be smaller than treeSize');
      await treeSizeAtMost('treeSize', treeSize);
      const hashes = await inclusionProofOf(reads, index, treeSize);
      return { inclusionProof: { index, treeSize, hashes: base64(hashes) } };
    },
  );

  app.get(
    '/v1/audit-logs/proofs/consistency',
    { config: { roles: AUDITOR }, schema: { querystring: ConsistencyQuery } },
    async (req) => {
      const { from, to } = req.query;
      if (from > to) throw badParameter('from', 'must be at most to');
      await treeSizeAtMost('to', to);
      const hashes = await consistencyProofOf(reads, from, to);
      return { consistencyProof: { from, to, hashes: base64(hashes) } };
    },
  );
}
