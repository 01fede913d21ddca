import { readFileSync } from 'node:fs';
import { stringify } from 'csv-stringify/sync';
import { ConfigError } from '../config.ts';
import type { AuditDraft } from '../domain/audit.ts';
import { DEFAULT_REPORTING_RULES } from '../domain/default-reporting-rules.ts';
import { newId } from '../domain/ids.ts';
import {
  type CaseDraft,
  evaluateReporting,
  PERSONAL_FIELDS,
  parseReportingRules,
  type ReportEntryDraft,
  type ReportField,
  type ReportingRules,
  type ReportType,
  reportFields,
} from '../domain/reporting.ts';
import type { Actor, Payment } from '../domain/types.ts';
import type { ReportParty, ReportPosition, ReportRowData } from '../storage/reports-sql.ts';
import type { Tx } from '../storage/store.ts';
import type { Services } from './services.ts';

/**
 * Regulatory reporting (issue 18; docs/decisions/0025-regulatory-reporting.md): the rules are loaded at
 * start-up; a payment's report rows and compliance cases are queued in its own transaction (recordReporting,
 * called by the pipeline's step 8); a report over a period is exported, audited, with the parties' personal
 * data decrypted for compliance and auditor keys only (exportReport).
 */

/** REPORTING_RULES_PATH, else the built-in rules; a bad file stops start-up with one line naming the variable. */
export function loadReportingRules(path: string | null): ReportingRules {
  if (path === null) return DEFAULT_REPORTING_RULES;
  try {
    return parseReportingRules(JSON.parse(readFileSync(path, 'utf8')), path);
  } catch (error) {
    throw new ConfigError('REPORTING_RULES_PATH', (error as Error).message);
  }
}

/** What the pipeline knows of the payment's context besides the payment itself. */
export interface ReportingContext {
  senderCountry: string;
  receiverCountry: string;
  senderOutgoing24hCents: number;
}

/**
 * Inside the payment's transaction, right after its audit entry (`audit`) was appended: the report rows of
 * every rule the payment falls under, and for each suspicious-activity hit an open case. Written after the
 * batch's audit entries, with this entry's index (SqlTx.queueReporting); undone with the payment.
 */
export async function recordReporting(
  tx: Tx,
  rules: ReportingRules,
  payment: Payment,
  audit: AuditDraft,
  context: ReportingContext,
): Promise<void> {
  const hits = evaluateReporting(rules, {
    amountCents: payment.amountCents,
    currency: payment.currency,
    status: payment.status,
    reasons: payment.reasons,
    ...context,
  });
  if (hits.length === 0) return;
  const entries: ReportEntryDraft[] = [];
  const cases: CaseDraft[] = [];
  for (const hit of hits) {
    const caseId = hit.reportType === 'suspicious_activity' ? newId('case') : null;
    if (caseId !== null) {
      cases.push({
        id: caseId,
        paymentId: payment.id,
        ruleId: hit.ruleId,
        reasons: hit.reasons,
        createdAtMs: tx.nowMs,
      });
    }
    entries.push({
      reportType: hit.reportType,
      ruleId: hit.ruleId,
      paymentId: payment.id,
      createdAtMs: tx.nowMs,
      jurisdiction: hit.jurisdiction,
      trigger: hit.trigger,
      windowTotalCents: hit.windowTotalCents,
      reasons: hit.reasons,
      caseId,
    });
  }
  await tx.queueReporting(audit, entries, cases);
}

/** The longest period one export may cover. */
export const REPORT_PERIOD_MAX_MS = 366 * 24 * 3_600_000;

/** The columns every row has, whatever the rule; then the report type's fields (reportFields). */
export const REPORT_BASE_COLUMNS = [
  'ruleId',
  'paymentId',
  'reportedAt',
  'paymentCreatedAt',
  'amountCents',
  'currency',
  'status',
  'jurisdiction',
  'trigger',
  'auditIndex',
] as const;

export type ReportRowValue = string | number | string[] | null;
export type ReportRow = Record<string, ReportRowValue>;

export interface ReportExport {
  columns: string[];
  rows: ReportRow[];
  /** Whether personal fields are decrypted (compliance, auditor) or null (admin). */
  personalData: 'decrypted' | 'masked';
  next: ReportPosition | null;
}

export interface ReportQuery {
  type: ReportType;
  fromMs: number;
  toMs: number;
  format: 'json' | 'csv';
  after: ReportPosition | null;
  limit: number;
}

/** Roles that see personal data in exports; any other role admitted (admin) gets those fields as null. */
const DECRYPTING_ROLES: ReadonlySet<Actor['role']> = new Set(['compliance', 'auditor']);

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * A page of a report: an index range of report_entries (listReportRows), its parties' personal data decrypted
 * for the roles that may see it, and an audit entry `report.exported` (who, which report, format, period and
 * how many rows; never a row's content) committed before anything is answered: an export whose audit entry
 * cannot be written fails.
 */
export async function exportReport(
  services: Services,
  actor: Actor,
  query: ReportQuery,
): Promise<ReportExport> {
  const { type, fromMs, toMs, after, limit } = query;
  const found = await services.store.reads.listReportRows(type, fromMs, toMs, after, limit + 1);
  const page = found.slice(0, limit);
  const last = page[page.length - 1];
  const next =
    found.length > limit && last !== undefined
      ? { createdAtMs: last.entry.createdAtMs, seq: last.entry.seq }
      : null;
  const decrypting = DECRYPTING_ROLES.has(actor.role);
  const fields = reportFields(services.reporting, type);
  const rows = page.map((row) => reportRow(services, row, fields, decrypting));
  const personalData = decrypting ? 'decrypted' : 'masked';
  await services.committer.submit(async (tx) => {
    await tx.appendAudit({
      eventType: 'report.exported',
      actorId: actor.apiKeyId,
      requestId: actor.requestId,
      resourceType: 'report',
      resourceId: type,
      metadata: {
        reportType: type,
        format: query.format,
        from: iso(fromMs),
        to: iso(toMs),
        rowCount: rows.length,
        firstPage: after === null,
        hasMore: next !== null,
        personalData,
      },
    });
  });
  return { columns: [...REPORT_BASE_COLUMNS, ...fields], rows, personalData, next };
}

function reportRow(
  services: Services,
  data: ReportRowData,
  fields: ReportField[],
  decrypting: boolean,
): ReportRow {
  const { entry, payment } = data;
  const rule = services.reporting.rules.find((r) => r.id === entry.ruleId);
  // A rule's own fields; a rule no longer loaded (the rules file changed since) keeps every field of its type.
  const asked = new Set<string>(rule?.fields ?? fields);
  const row: ReportRow = {
    ruleId: entry.ruleId,
    paymentId: entry.paymentId,
    reportedAt: iso(entry.createdAtMs),
    paymentCreatedAt: iso(payment.createdAtMs),
    amountCents: payment.amountCents,
    currency: payment.currency,
    status: payment.status,
    jurisdiction: entry.jurisdiction,
    trigger: entry.trigger,
    auditIndex: entry.auditIndex,
  };
  for (const field of fields) {
    if (!asked.has(field)) row[field] = null;
    else if (PERSONAL_FIELDS.has(field) && !decrypting) row[field] = null;
    else row[field] = fieldValue(services, data, field);
  }
  return row;
}

function fieldValue(services: Services, data: ReportRowData, field: ReportField): ReportRowValue {
  const name = (p: ReportParty) => services.cipher.decrypt(p.nameEnc, 'customer.name');
  const number = (p: ReportParty) => services.cipher.decrypt(p.numberEnc, 'account.number');
  switch (field) {
    case 'originatorName':
      return name(data.originator);
    case 'originatorAccountNumber':
      return number(data.originator);
    case 'originatorCountry':
      return data.originator.country;
    case 'beneficiaryName':
      return name(data.beneficiary);
    case 'beneficiaryAccountNumber':
      return number(data.beneficiary);
    case 'beneficiaryCountry':
      return data.beneficiary.country;
    case 'reasons':
      return data.entry.reasons;
    case 'windowTotalCents':
      return data.entry.windowTotalCents;
    case 'caseId':
      return data.entry.caseId;
  }
}

/**
 * A text that a spreadsheet would read as a formula (`=`, `+`, `-`, `@`, a tab or a carriage return first) gets
 * a leading `'` (OWASP's CSV injection guidance), so a customer named `=HYPERLINK(...)` stays text.
 */
export function csvSafe(text: string): string {
  return /^[=+\-@\t\r]/.test(text) ? `'${text}` : text;
}

/**
 * RFC 4180 text: a header row, CRLF line ends, fields holding a comma, a quote, CR or LF quoted with quotes
 * doubled (csv-stringify), every text field guarded against formula injection (csvSafe). Lists (reasons) are
 * joined with spaces; null is an empty field.
 */
export function reportCsv(report: ReportExport): string {
  const cell = (value: ReportRowValue): string => {
    if (value === null) return '';
    if (Array.isArray(value)) return csvSafe(value.join(' '));
    return typeof value === 'number' ? String(value) : csvSafe(value);
  };
  const records = [
    report.columns,
    ...report.rows.map((row) => report.columns.map((c) => cell(row[c] ?? null))),
  ];
  return stringify(records, { record_delimiter: 'windows', quoted_match: /[\r\n]/ });
}
