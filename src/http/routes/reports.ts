import { Type } from 'typebox';
import { ISO_DATE_TIME_PATTERN, parseIsoTime } from '../../app/api-keys.ts';
import { caseNotFound, caseView, decideCase } from '../../app/cases.ts';
import { exportReport, REPORT_PERIOD_MAX_MS, reportCsv } from '../../app/reports.ts';
import type { Services } from '../../app/services.ts';
import { AppError } from '../../domain/errors.ts';
import { CASE_STATUSES, REPORT_TYPES, reportTypeOf } from '../../domain/reporting.ts';
import { COMPLIANCE, READ_REPORTS } from '../auth.ts';
import { optionalIdempotencyKeyOf, sendStored } from '../idempotency.ts';
import {
  contentResponse,
  errorResponse,
  IDEMPOTENCY_REPLAYED,
  idempotencyKeyHeader,
  jsonResponse,
  withExamples,
} from '../openapi.ts';
import {
  decodeBoundCursor,
  decodeBoundKeyset,
  encodeBoundCursor,
  encodeBoundKeyset,
  pageLimit,
} from '../paging.ts';
import { ComplianceCase, page, ReportRow, ref, wrapper } from '../response-schemas.ts';
import { IdParams, PageQuery } from '../schemas.ts';
import { denyScopedKeys } from '../scope-guard.ts';
import type { HttpApp } from '../types.ts';

/**
 * Regulatory reports and compliance cases (issue 18; src/app/reports.ts, src/app/cases.ts). Both span every
 * customer: not for keys scoped to customers (403).
 */
const Instant = (description: string) =>
  Type.String({
    pattern: ISO_DATE_TIME_PATTERN,
    description: `${description}: an RFC 3339 instant with its offset, e.g. 2026-01-31T12:00:00Z`,
  });

const ReportParams = Type.Object(
  { type: Type.String({ minLength: 1, maxLength: 64, description: REPORT_TYPES.join(', ') }) },
  { additionalProperties: false },
);
const ReportQuery = Type.Object(
  {
    from: Instant('the period starts at this instant (inclusive)'),
    to: Instant('the period ends before this instant (exclusive); at most 366 days after `from`'),
    format: Type.Optional(Type.Union([Type.Literal('json'), Type.Literal('csv')], { default: 'json' })),
    ...PageQuery,
  },
  { additionalProperties: false },
);
const CaseListQuery = Type.Object(
  {
    status: Type.Optional(Type.Union(CASE_STATUSES.map((s) => Type.Literal(s)))),
    ...PageQuery,
  },
  { additionalProperties: false },
);
const DecideCaseBody = Type.Object(
  {
    decision: Type.Union([Type.Literal('filed'), Type.Literal('dismissed')]),
    note: Type.Optional(
      Type.String({ minLength: 1, maxLength: 500, pattern: '^[^\\p{Cc}\\uD800-\\uDFFF]*$' }),
    ),
  },
  { additionalProperties: false },
);

const NEXT_CURSOR_HEADER = {
  'x-next-cursor': Type.String({
    description: 'CSV only: the cursor of the next page (as `cursor`); absent on the last page',
  }),
};

function invalid(field: string, message: string): AppError {
  return new AppError('VALIDATION_ERROR', `${field} ${message}`, [{ field: `/${field}`, message }]);
}

export function reportRoutes(app: HttpApp, services: Services): void {
  const reads = services.store.reads;
  denyScopedKeys(app, ['/v1/reports', '/v1/cases'], 'read regulatory reports or compliance cases');

  app.get(
    '/v1/reports/:type',
    {
      config: { roles: READ_REPORTS },
      schema: {
        summary: 'Export a regulatory report over a period',
        description:
          `A report (${REPORT_TYPES.join(', ')}) over [from, to): the rows of its rules made in the period, ` +
          'oldest first, cursor-paged (`limit` 1..500, default 50), read from an index. `format=csv`: RFC 4180 ' +
          'text with a header row (the next page’s cursor in `x-next-cursor`). The parties’ names and account ' +
          'numbers are decrypted for compliance and auditor keys; an admin key gets them as null. Every export ' +
          'is audited (`report.exported`: who, which report and period, format, how many rows) before it is ' +
          'answered.',
        operationId: 'exportReport',
        tags: ['reporting'],
        params: ReportParams,
        querystring: ReportQuery,
        response: {
          200: contentResponse(
            'A page of the report',
            {
              'application/json': wrapper({
                reportType: Type.Union(REPORT_TYPES.map((t) => Type.Literal(t))),
                from: Type.String({ format: 'date-time' }),
                to: Type.String({ format: 'date-time' }),
                personalData: Type.Union([Type.Literal('decrypted'), Type.Literal('masked')]),
                columns: Type.Array(Type.String(), { description: 'the columns of the CSV form, in order' }),
                rows: Type.Array(ref(ReportRow), { maxItems: 500 }),
                count: Type.Integer({ minimum: 0 }),
                hasMore: Type.Boolean(),
                nextCursor: Type.Union([Type.String(), Type.Null()]),
              }),
              'text/csv': Type.String({ description: 'RFC 4180, CRLF line ends, a header row' }),
            },
            NEXT_CURSOR_HEADER,
          ),
          404: errorResponse(404, ['REPORT_TYPE_NOT_FOUND']),
        },
      },
    },
    async (req, reply) => {
      // Own names only: "constructor" or "__proto__" is no report type.
      const type = reportTypeOf(req.params.type);
      if (type === null) throw new AppError('REPORT_TYPE_NOT_FOUND', 'no such report type');
      const fromMs = parseIsoTime(req.query.from, '/from');
      const toMs = parseIsoTime(req.query.to, '/to');
      if (toMs < fromMs) throw invalid('to', 'must not be before from (from is inclusive, to exclusive)');
      if (toMs - fromMs > REPORT_PERIOD_MAX_MS) throw invalid('to', 'must be at most 366 days after from');
      const format = req.query.format ?? 'json';
      const list = `report|${type}|${fromMs}|${toMs}`;
      const after = decodeBoundKeyset(req.query.cursor, list);
      const report = await exportReport(services, req.actor, {
        type,
        fromMs,
        toMs,
        format,
        after: after === null ? null : { createdAtMs: after.atMs, seq: after.seq },
        limit: pageLimit(req.query.limit),
      });
      const nextCursor = encodeBoundKeyset(
        report.next === null ? null : { atMs: report.next.createdAtMs, seq: report.next.seq },
        list,
      );
      if (format === 'csv') {
        if (nextCursor !== null) reply.header('x-next-cursor', nextCursor);
        return reply.type('text/csv; charset=utf-8').send(reportCsv(report));
      }
      return {
        reportType: type,
        from: new Date(fromMs).toISOString(),
        to: new Date(toMs).toISOString(),
        personalData: report.personalData,
        columns: report.columns,
        rows: report.rows,
        count: report.rows.length,
        hasMore: nextCursor !== null,
        nextCursor,
      };
    },
  );

  app.get(
    '/v1/cases',
    {
      config: { roles: READ_REPORTS },
      schema: {
        summary: 'List compliance cases',
        description:
          'Suspicious-activity candidates, oldest first, cursor-paged (`limit` 1..500, default 50); `status` ' +
          'filters (open, filed, dismissed).',
        operationId: 'listCases',
        tags: ['reporting'],
        querystring: CaseListQuery,
        response: { 200: jsonResponse('A page of cases', page('cases', ref(ComplianceCase))) },
      },
    },
    async (req) => {
      const list = `cases|${req.query.status ?? ''}`;
      const after = decodeBoundCursor(req.query.cursor, list);
      const found = await reads.listCases(req.query.status, { after, limit: pageLimit(req.query.limit) });
      return {
        cases: found.items.map(caseView),
        hasMore: found.nextAfter !== null,
        nextCursor: encodeBoundCursor(found.nextAfter, list),
      };
    },
  );

  app.get(
    '/v1/cases/:id',
    {
      config: { roles: READ_REPORTS },
      schema: {
        summary: 'Get a compliance case',
        operationId: 'getCase',
        tags: ['reporting'],
        params: IdParams,
        response: {
          200: jsonResponse('The case', wrapper({ case: ref(ComplianceCase) })),
          404: errorResponse(404, ['CASE_NOT_FOUND']),
        },
      },
    },
    async (req) => {
      const found = await reads.getCase(req.params.id);
      if (found === undefined) throw caseNotFound();
      return { case: caseView(found) };
    },
  );

  app.post(
    '/v1/cases/:id/decide',
    {
      config: { roles: COMPLIANCE },
      schema: {
        summary: 'Decide a compliance case',
        description:
          '`filed` (a suspicious activity report was filed) or `dismissed`, once: a decided case is 409 ' +
          'CASE_ALREADY_DECIDED. Audited with the actor (`case.filed`, `case.dismissed`); the note is stored ' +
          'encrypted and neither shown nor audited.',
        operationId: 'decideCase',
        tags: ['reporting'],
        params: IdParams,
        requestHeaders: idempotencyKeyHeader(false),
        body: withExamples(DecideCaseBody, {
          filed: { summary: 'A SAR was filed', value: { decision: 'filed', note: 'SAR filed with FinCEN' } },
          dismissed: { summary: 'Not suspicious', value: { decision: 'dismissed' } },
        }),
        response: {
          200: jsonResponse('Decided', wrapper({ case: ref(ComplianceCase) }), IDEMPOTENCY_REPLAYED),
          404: errorResponse(404, ['CASE_NOT_FOUND']),
          409: errorResponse(409, ['CASE_ALREADY_DECIDED', 'IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD']),
        },
      },
    },
    async (req, reply) => {
      const key = optionalIdempotencyKeyOf(req);
      const { decision, note } = req.body;
      return sendStored(reply, await decideCase(services, req.actor, key, req.params.id, decision, note));
    },
  );
}
