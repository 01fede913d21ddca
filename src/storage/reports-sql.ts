import type {
  CaseDecision,
  CaseDraft,
  CaseStatus,
  ComplianceCase,
  ReportEntry,
  ReportEntryDraft,
  ReportType,
} from '../domain/reporting.ts';
import type { PaymentStatus } from '../domain/types.ts';
import { nullableNum, nullableStr, num, str } from './row-values.ts';
import type { Row, SqlExecutor } from './sql-store.ts';
import { type Page, type PageRequest, pageOrder } from './store.ts';
import { insertRows } from './write-behind.ts';

/**
 * The SQL of regulatory reporting (tables report_entries and compliance_cases, migration 22), shared by both
 * dialects through SqlTx and SqlReads. Rows are written by the payment's transaction after its audit entries
 * (SqlTx.finish), since each carries its payment's audit index; a report is read as one range of the index
 * report_entries_period, joined by primary and unique keys to the payment and its parties.
 */

/** Where a page of a report ends: reports are ordered by (createdAtMs, seq). */
export interface ReportPosition {
  createdAtMs: number;
  seq: number;
}

/** A party of a reported payment as stored: the personal fields still encrypted. */
export interface ReportParty {
  customerId: string;
  nameEnc: string;
  country: string;
  accountId: string;
  numberEnc: string;
}

/** A report row as read for export: the entry, its payment now, and both parties. */
export interface ReportRowData {
  entry: ReportEntry;
  payment: { status: PaymentStatus; amountCents: number; currency: string; createdAtMs: number };
  originator: ReportParty;
  beneficiary: ReportParty;
}

const ENTRY_COLUMNS = [
  'report_type',
  'rule_id',
  'payment_id',
  'created_at_ms',
  'audit_index',
  'jurisdiction',
  'trigger_kind',
  'window_total_cents',
  'reasons',
  'case_id',
];

export async function insertReportEntries(
  db: SqlExecutor,
  entries: { draft: ReportEntryDraft; auditIndex: number }[],
): Promise<void> {
  await insertRows(
    db,
    'report_entries',
    ENTRY_COLUMNS,
    entries.map(({ draft: e, auditIndex }) => [
      e.reportType,
      e.ruleId,
      e.paymentId,
      e.createdAtMs,
      auditIndex,
      e.jurisdiction,
      e.trigger,
      e.windowTotalCents,
      JSON.stringify(e.reasons),
      e.caseId,
    ]),
  );
}

const CASE_COLUMNS = ['id', 'status', 'payment_id', 'rule_id', 'reasons', 'audit_index', 'created_at_ms'];

export async function insertCases(
  db: SqlExecutor,
  cases: { draft: CaseDraft; auditIndex: number }[],
): Promise<void> {
  await insertRows(
    db,
    'compliance_cases',
    CASE_COLUMNS,
    cases.map(({ draft: c, auditIndex }) => [
      c.id,
      'open',
      c.paymentId,
      c.ruleId,
      JSON.stringify(c.reasons),
      auditIndex,
      c.createdAtMs,
    ]),
  );
}

function entryFromRow(r: Row): ReportEntry {
  return {
    seq: num(r['seq']),
    reportType: str(r['report_type']) as ReportType,
    ruleId: str(r['rule_id']),
    paymentId: str(r['payment_id']),
    createdAtMs: num(r['created_at_ms']),
    auditIndex: num(r['audit_index']),
    jurisdiction: str(r['jurisdiction']),
    trigger: str(r['trigger_kind']) as ReportEntry['trigger'],
    windowTotalCents: nullableNum(r['window_total_cents']),
    reasons: JSON.parse(str(r['reasons'])) as string[],
    caseId: nullableStr(r['case_id']),
  };
}

function partyFromRow(r: Row, prefix: 'o' | 'b'): ReportParty {
  return {
    customerId: str(r[`${prefix}_customer_id`]),
    nameEnc: str(r[`${prefix}_name_enc`]),
    country: str(r[`${prefix}_country`]),
    accountId: str(r[`${prefix}_account_id`]),
    numberEnc: str(r[`${prefix}_number_enc`]),
  };
}

/**
 * The statement of listReportRows (exported for the test that checks its plan reads the index): parameters
 * type, from, to, [after time, after seq,] limit.
 */
export function reportRowsSql(withCursor: boolean): string {
  return `SELECT r.*, p.status, p.amount_cents, p.currency, p.created_at_ms AS payment_created_at_ms,
            sa.id AS o_account_id, sa.number_enc AS o_number_enc,
            sc.id AS o_customer_id, sc.name_enc AS o_name_enc, sc.country AS o_country,
            da.id AS b_account_id, da.number_enc AS b_number_enc,
            dc.id AS b_customer_id, dc.name_enc AS b_name_enc, dc.country AS b_country
       FROM report_entries r
       JOIN payments p ON p.id = r.payment_id
       JOIN accounts sa ON sa.id = p.source_account_id
       JOIN customers sc ON sc.id = sa.owner_customer_id
       JOIN accounts da ON da.id = p.destination_account_id
       JOIN customers dc ON dc.id = da.owner_customer_id
      WHERE r.report_type = ? AND r.created_at_ms >= ? AND r.created_at_ms < ?${withCursor ? ' AND (r.created_at_ms > ? OR r.seq > ?)' : ''}
      ORDER BY r.created_at_ms, r.seq
      LIMIT ?`;
}

/**
 * Up to `limit` rows of a report with fromMs <= createdAtMs < toMs, after `after`, in (createdAtMs, seq) order:
 * one range of report_entries_period; each row's payment, accounts and customers by their unique ids.
 */
export async function listReportRows(
  db: SqlExecutor,
  type: ReportType,
  fromMs: number,
  toMs: number,
  after: ReportPosition | null,
  limit: number,
): Promise<ReportRowData[]> {
  const start = after === null ? fromMs : Math.max(fromMs, after.createdAtMs);
  const rows = await db.all(reportRowsSql(after !== null), [
    type,
    start,
    toMs,
    ...(after === null ? [] : [after.createdAtMs, after.seq]),
    limit,
  ]);
  return rows.map((r) => ({
    entry: entryFromRow(r),
    payment: {
      status: str(r['status']) as PaymentStatus,
      amountCents: num(r['amount_cents']),
      currency: str(r['currency']),
      createdAtMs: num(r['payment_created_at_ms']),
    },
    originator: partyFromRow(r, 'o'),
    beneficiary: partyFromRow(r, 'b'),
  }));
}

function caseFromRow(r: Row): ComplianceCase {
  return {
    id: str(r['id']),
    status: str(r['status']) as CaseStatus,
    paymentId: str(r['payment_id']),
    ruleId: str(r['rule_id']),
    reasons: JSON.parse(str(r['reasons'])) as string[],
    auditIndex: num(r['audit_index']),
    createdAtMs: num(r['created_at_ms']),
    decidedAtMs: nullableNum(r['decided_at_ms']),
    decidedBy: nullableStr(r['decided_by']),
    decisionNoteEnc: nullableStr(r['decision_note_enc']),
  };
}

export async function getCase(
  db: SqlExecutor,
  id: string,
  forUpdate = '',
): Promise<ComplianceCase | undefined> {
  const r = await db.get(`SELECT * FROM compliance_cases WHERE id = ?${forUpdate}`, [id]);
  return r === undefined ? undefined : caseFromRow(r);
}

/** Oldest first (seq order); with a status, a range of compliance_cases_status. */
export async function listCases(
  db: SqlExecutor,
  status: CaseStatus | undefined,
  page: PageRequest,
): Promise<Page<ComplianceCase>> {
  const order = pageOrder(page);
  const rows = await db.all(
    `SELECT * FROM compliance_cases WHERE ${status === undefined ? '' : 'status = ? AND '}${order.where}
      ORDER BY ${order.orderBy} LIMIT ?`,
    [...(status === undefined ? [] : [status]), order.param, page.limit + 1],
  );
  const shown = rows.slice(0, page.limit);
  const last = shown[shown.length - 1];
  return {
    items: shown.map(caseFromRow),
    nextAfter: rows.length > page.limit && last !== undefined ? num(last['seq']) : null,
  };
}

/** Decides an open case (the caller holds it locked); false when it was no longer open. */
export async function decideCase(
  db: SqlExecutor,
  id: string,
  decision: CaseDecision,
  decidedAtMs: number,
  decidedBy: string,
  noteEnc: string | null,
): Promise<boolean> {
  const changed = await db.run(
    `UPDATE compliance_cases SET status = ?, decided_at_ms = ?, decided_by = ?, decision_note_enc = ?
      WHERE id = ? AND status = 'open'`,
    [decision, decidedAtMs, decidedBy, noteEnc, id],
  );
  return changed === 1;
}
