import type { FastifyReply } from 'fastify';
import { Type } from 'typebox';
import { consistencyProofOf, inclusionProofOf } from '../../app/audit-log.ts';
import type { Services } from '../../app/services.ts';
import { type AuditRunResult, AuditVerifier, type VerificationJob } from '../../app/verification.ts';
import { auditEntryView } from '../../app/views.ts';
import { AppError } from '../../domain/errors.ts';
import { AUDITOR } from '../auth.ts';
import { errorBody } from '../error-handler.ts';
import { decodeCursor, encodeCursor, pageLimit } from '../paging.ts';
import { ListQuery } from '../schemas.ts';
import { denyScopedKeys } from '../scope-guard.ts';
import type { HttpApp } from '../types.ts';

export function auditRoutes(app: HttpApp, services: Services): void {
  const reads = services.store.reads;
  // The log is one chain over every customer: not for a key scoped to customers (403, src/app/scope.ts).
  denyScopedKeys(app, ['/v1/audit-logs'], 'read the audit log, its proofs or its verification');

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

  verifyRoutes(app, services);
  verifiableLogRoutes(app, services);
}

/**
 * Verification without stalling the process (docs/audit-log.md, "Verifying on the server"). `GET .../verify`
 * checks the chain from the verified prefix (kept in the database) to the head: concurrent requests share one
 * run, the request waits for it at most `Prefer: wait` (default VERIFY_WAIT_MS_DEFAULT) and otherwise answers
 * 202 with the job to poll. `?full=true` starts the full re-verification (from GENESIS, with the Merkle tree
 * and the latest checkpoint) in the background and answers 202 at once.
 */
export const VERIFY_WAIT_MS_DEFAULT = 10_000;
export const VERIFY_WAIT_MS_MAX = 25_000;
const VerifyQuery = Type.Object({ full: Type.Optional(Type.Boolean()) }, { additionalProperties: false });
const JobParams = Type.Object(
  { id: Type.String({ pattern: '^avj_[0-9a-f]{24}$' }) },
  { additionalProperties: false },
);

/** RFC 7240 `Prefer: respond-async` (do not wait) or `wait=<seconds>`; null when neither was sent. */
export function preferredWaitMs(header: string | string[] | undefined): number | null {
  const values = Array.isArray(header) ? header : header === undefined ? [] : [header];
  let waitMs: number | null = null;
  for (const preference of values.flatMap((value) => value.split(','))) {
    const [name = '', value = ''] = preference
      .split(';')[0]!
      .split('=')
      .map((part) => part.trim());
    if (name.toLowerCase() === 'respond-async') return 0;
    if (name.toLowerCase() === 'wait' && /^[0-9]{1,6}$/.test(value)) {
      waitMs = Math.min(Number(value) * 1000, VERIFY_WAIT_MS_MAX);
    }
  }
  return waitMs;
}

/** How often a process looks whether the scheduled full re-verification is due. */
const FULL_VERIFY_CHECK_MS_MAX = 60_000;

function verifyRoutes(app: HttpApp, services: Services): void {
  const { store, committer, auditLog, clock } = services;
  const verifier = new AuditVerifier(store, committer, auditLog.signer, clock, (error) =>
    app.log.error({ err: error }, 'audit verification failed'),
  );
  // The full re-verification on a schedule (AUDIT_FULL_VERIFY_INTERVAL_MS), checked once a minute at most.
  const interval = services.auditFullVerifyIntervalMs;
  const schedule =
    interval === 0
      ? undefined
      : setInterval(
          () => {
            verifier
              .startFullIfDue(interval)
              .catch((error) => app.log.error({ err: error }, 'scheduling the audit verification failed'));
          },
          Math.min(interval, FULL_VERIFY_CHECK_MS_MAX),
        );
  schedule?.unref();
  // Before the store closes: runs stop at their next page.
  app.addHook('onClose', async () => {
    clearInterval(schedule);
    await verifier.stop();
  });
  const jobLocation = (job: VerificationJob) => `/v1/audit-logs/verify-jobs/${job.id}`;
  const accepted = (reply: FastifyReply, job: VerificationJob) =>
    reply
      .code(202)
      .header('location', jobLocation(job))
      .header('retry-after', '1')
      .send({ job: verificationJobView(job) });

  app.get(
    '/v1/audit-logs/verify',
    { config: { roles: AUDITOR }, schema: { querystring: VerifyQuery } },
    async (req, reply) => {
      if (req.query.full === true) return accepted(reply, verifier.start('full'));
      const job = verifier.start('incremental');
      const preferred = preferredWaitMs(req.headers.prefer);
      if (preferred !== null)
        reply.header('preference-applied', preferred === 0 ? 'respond-async' : `wait=${preferred / 1000}`);
      if (!(await verifier.waitFor(job, preferred ?? VERIFY_WAIT_MS_DEFAULT))) return accepted(reply, job);
      const result = job.result;
      if (result === null) {
        throw new AppError('SERVICE_UNAVAILABLE', job.error ?? 'the verification could not finish');
      }
      const { verification } = result;
      const body = { verification, checked: checkedView(job, result) };
      if (verification.valid) return body;
      const message = `the audit chain is broken at index ${verification.brokenAtIndex}`;
      return reply.code(500).send({ ...body, ...errorBody('AUDIT_CHAIN_INVALID', message, req.id) });
    },
  );

  app.get(
    '/v1/audit-logs/verify-jobs/:id',
    { config: { roles: AUDITOR }, schema: { params: JobParams } },
    async (req) => {
      const job = verifier.job(req.params.id);
      if (job === undefined) {
        throw new AppError('NOT_FOUND', 'no such verification job in this process (jobs are kept in memory)');
      }
      return { job: verificationJobView(job) };
    },
  );
}

const iso = (ms: number) => new Date(ms).toISOString();

/** What a finished run covered, beside the contract's `verification`. */
function checkedView(job: VerificationJob, result: AuditRunResult) {
  const full = result.lastFull;
  return {
    mode: job.mode,
    jobId: job.id,
    verifiedFrom: result.verifiedFrom,
    verifiedUpTo: result.verifiedUpTo,
    complete: true,
    lastFullVerification:
      full === null
        ? null
        : {
            at: iso(full.atMs),
            size: full.size,
            valid: full.brokenAtIndex === null,
            brokenAtIndex: full.brokenAtIndex,
            reason: full.reason,
          },
  };
}

function verificationJobView(job: VerificationJob) {
  return {
    id: job.id,
    mode: job.mode,
    status: job.status,
    startedAt: iso(job.startedAtMs),
    finishedAt: job.finishedAtMs === null ? null : iso(job.finishedAtMs),
    verifiedFrom: job.verifiedFrom,
    checkedUpTo: job.checkedUpTo,
    size: job.size,
    verification: job.result?.verification ?? null,
    verifiedUpTo: job.result?.verifiedUpTo ?? null,
    error: job.error,
  };
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
