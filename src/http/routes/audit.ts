import type { FastifyReply } from 'fastify';
import { Type } from 'typebox';
import { consistencyProofOf, inclusionProofOf } from '../../app/audit-log.ts';
import type { Services } from '../../app/services.ts';
import { type AuditRunResult, AuditVerifier, type VerificationJob } from '../../app/verification.ts';
import { auditEntryView } from '../../app/views.ts';
import { AppError } from '../../domain/errors.ts';
import { ANY_ROLE, AUDITOR } from '../auth.ts';
import { errorBody } from '../error-handler.ts';
import { ErrorEnvelope, errorResponse, jsonResponse, preferHeader, textResponse } from '../openapi.ts';
import { decodeCursor, encodeCursor, pageLimit } from '../paging.ts';
import { publicRequestId } from '../request-ids.ts';
import {
  AuditEntry,
  AuditVerification,
  AuditVerificationChecked,
  AuditVerificationJob,
  ref,
  wrapper,
} from '../response-schemas.ts';
import { ListQuery } from '../schemas.ts';
import { denyScopedKeys } from '../scope-guard.ts';
import type { HttpApp } from '../types.ts';

export function auditRoutes(app: HttpApp, services: Services): void {
  const reads = services.store.reads;
  // The log is one chain over every customer: not for a key scoped to customers (403, src/app/scope.ts). The
  // verifier key (GET /v1/audit-logs/public-key) is public by nature and stays open to every key.
  denyScopedKeys(app, ['/v1/audit-logs'], 'read the audit log, its proofs or its verification', [
    '/v1/audit-logs/public-key',
  ]);

  // The cursor is the index of the next entry; entries come in index order.
  app.get(
    '/v1/audit-logs',
    {
      config: { roles: AUDITOR },
      schema: {
        summary: 'List audit entries',
        description:
          'In index order, cursor-paged; `total` is the size of the log. Each entry is hash-chained to the one ' +
          'before (`prevHash`). Not for keys scoped to customers (403).',
        operationId: 'listAuditEntries',
        tags: ['audit'],
        querystring: ListQuery,
        response: {
          200: jsonResponse(
            'A page of entries',
            wrapper({
              logs: Type.Array(ref(AuditEntry), { maxItems: 500 }),
              count: Type.Integer({ minimum: 0, description: 'entries on this page' }),
              total: Type.Integer({ minimum: 0, description: 'entries in the log' }),
              hasMore: Type.Boolean(),
              nextCursor: Type.Union([Type.String(), Type.Null()]),
            }),
          ),
        },
      },
    },
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

  const jobBody = wrapper({ job: ref(AuditVerificationJob) });
  const finished = {
    verification: ref(AuditVerification),
    checked: ref(AuditVerificationChecked),
  };
  app.get(
    '/v1/audit-logs/verify',
    {
      config: { roles: AUDITOR },
      schema: {
        summary: 'Verify the audit chain',
        description:
          'Incremental: re-hashes what was appended since the last successful check (shared by concurrent ' +
          'requests); waits up to `Prefer: wait` (default 10 s), else 202 with the job to poll. `full=true` ' +
          're-verifies everything from genesis (entries, Merkle nodes, the latest checkpoint) as a background ' +
          'job: 202 at once. A broken chain is 500 AUDIT_CHAIN_INVALID with the verification.',
        operationId: 'verifyAuditLog',
        tags: ['audit'],
        querystring: VerifyQuery,
        requestHeaders: preferHeader(
          '`wait=<seconds>` (at most 25) or `respond-async` (answer 202 at once)',
          ['wait=5', 'respond-async'],
        ),
        response: {
          200: jsonResponse('The chain is intact up to `verification.size`', wrapper(finished), {
            'preference-applied': Type.String({
              pattern: '^(respond-async|wait=[0-9]+)$',
              description: 'the Prefer value honoured',
            }),
          }),
          202: jsonResponse('Still running (or a full run started): poll `Location`', jobBody, {
            location: Type.String({
              pattern: '^/v1/audit-logs/verify-jobs/avj_[0-9a-f]{24}$',
              description: 'the job',
            }),
            'retry-after': Type.String({ pattern: '^[0-9]+$', description: 'seconds before polling' }),
            'preference-applied': Type.String({
              pattern: '^(respond-async|wait=[0-9]+)$',
              description: 'the Prefer value honoured',
            }),
          }),
          500: jsonResponse(
            'AUDIT_CHAIN_INVALID: the envelope with the verification that found the break; or another 500',
            Type.Object(
              {
                verification: Type.Optional(ref(AuditVerification)),
                checked: Type.Optional(ref(AuditVerificationChecked)),
                error: ErrorEnvelope.properties.error,
              },
              { additionalProperties: false },
            ),
          ),
          503: errorResponse(503, ['SERVICE_UNAVAILABLE']),
        },
      },
    },
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
      return reply.code(500).send({
        ...body,
        ...errorBody('AUDIT_CHAIN_INVALID', message, publicRequestId(req.id, req.headers)),
      });
    },
  );

  app.get(
    '/v1/audit-logs/verify-jobs/:id',
    {
      config: { roles: AUDITOR },
      schema: {
        summary: 'An audit verification job',
        description: 'Jobs live in the memory of the process that runs them (the last 32): ask that process.',
        operationId: 'getAuditVerificationJob',
        tags: ['audit'],
        params: JobParams,
        response: {
          200: jsonResponse('The job', jobBody),
          404: errorResponse(404, ['NOT_FOUND']),
        },
      },
    },
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

  app.get(
    '/v1/audit-logs/checkpoint',
    {
      config: { roles: AUDITOR },
      schema: {
        summary: 'The latest signed checkpoint',
        description:
          'A C2SP tlog-checkpoint in a signed note: origin, tree size, base64 root hash, a blank line, then ' +
          '`— <key name> <signature>` lines (a new one is cut first if the log grew). Save it outside the server.',
        operationId: 'getAuditCheckpoint',
        tags: ['audit'],
        response: {
          200: textResponse('The signed note', Type.String({ minLength: 1 })),
          500: errorResponse(500, ['AUDIT_LOG_INCONSISTENT']),
        },
      },
    },
    async (_req, reply) => {
      const checkpoint = await services.auditLog.checkpoint();
      return reply.type('text/plain; charset=utf-8').send(checkpoint.note);
    },
  );

  app.get(
    '/v1/audit-logs/public-key',
    {
      // Public by nature, and every role needs it to check a receipt (the console does, for any signed-in key).
      config: { roles: ANY_ROLE },
      schema: {
        summary: "The checkpoints' verifier key",
        description: 'One line, `<name>+<key hash hex>+<base64(0x01 || Ed25519 public key)>`: pin it once.',
        operationId: 'getAuditPublicKey',
        tags: ['audit'],
        response: {
          200: textResponse(
            'The verifier key',
            Type.String({ pattern: '^[!-~]+\\+[0-9a-f]{8}\\+[A-Za-z0-9+/=]+\\n$' }),
          ),
        },
      },
    },
    async (_req, reply) => {
      return reply.type('text/plain; charset=utf-8').send(`${services.auditLog.signer.verifierKey()}\n`);
    },
  );

  app.get(
    '/v1/audit-logs/entries/:index',
    {
      config: { roles: AUDITOR },
      schema: {
        summary: 'One audit entry',
        operationId: 'getAuditEntry',
        tags: ['audit'],
        params: EntryParams,
        response: {
          200: jsonResponse('The entry', wrapper({ entry: ref(AuditEntry) })),
          404: errorResponse(404, ['AUDIT_ENTRY_NOT_FOUND']),
        },
      },
    },
    async (req) => {
      const index = Number(req.params.index);
      const [entry] = Number.isSafeInteger(index) ? await reads.listAuditEntries(index, 1) : [];
      if (entry === undefined || entry.index !== index) {
        throw new AppError('AUDIT_ENTRY_NOT_FOUND', `there is no audit entry ${req.params.index}`);
      }
      return { entry: auditEntryView(entry) };
    },
  );

  const Hashes = Type.Array(Type.String({ pattern: '^[A-Za-z0-9+/]{43}=$' }), {
    description: 'SHA-256 hashes, base64 (RFC 9162)',
  });
  app.get(
    '/v1/audit-logs/proofs/inclusion',
    {
      config: { roles: AUDITOR },
      schema: {
        summary: 'Inclusion proof of an entry',
        description:
          'RFC 9162 audit path of entry `index` in the tree of the first `treeSize` entries, leaf to root ' +
          '(any size up to the log size, not only checkpointed ones).',
        operationId: 'getAuditInclusionProof',
        tags: ['audit'],
        querystring: InclusionQuery,
        response: {
          200: jsonResponse(
            'The proof',
            wrapper({
              inclusionProof: wrapper({ index: Size(0), treeSize: Size(1), hashes: Hashes }),
            }),
          ),
          500: errorResponse(500, ['AUDIT_LOG_INCONSISTENT']),
        },
      },
    },
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
    {
      config: { roles: AUDITOR },
      schema: {
        summary: 'Consistency proof between two tree sizes',
        description: 'RFC 9162: the tree of `from` entries is a prefix of the tree of `to` entries.',
        operationId: 'getAuditConsistencyProof',
        tags: ['audit'],
        querystring: ConsistencyQuery,
        response: {
          200: jsonResponse(
            'The proof',
            wrapper({ consistencyProof: wrapper({ from: Size(1), to: Size(1), hashes: Hashes }) }),
          ),
          500: errorResponse(500, ['AUDIT_LOG_INCONSISTENT']),
        },
      },
    },
    async (req) => {
      const { from, to } = req.query;
      if (from > to) throw badParameter('from', 'must be at most to');
      await treeSizeAtMost('to', to);
      const hashes = await consistencyProofOf(reads, from, to);
      return { consistencyProof: { from, to, hashes: base64(hashes) } };
    },
  );
}
