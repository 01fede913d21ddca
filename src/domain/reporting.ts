import { Ajv } from 'ajv';
import { type Static, Type } from 'typebox';
import { isCountryCode, isCurrencyCode } from './iso-codes.ts';
import { PAYMENT_STATUSES, type PaymentStatus } from './types.ts';

/**
 * Regulatory reporting rules as data (issue 18; docs/decisions/0025-regulatory-reporting.md): which payments
 * belong in which report, and what a report's row must carry. Evaluation is pure: the pipeline gives it a
 * payment's outcome, amount, the parties' countries and the sender's rolling 24-hour total, and it answers the
 * rules that fire. Nothing here reads a database or holds personal data: rows keep ids and numbers, and the
 * parties' names and account numbers are read (and decrypted) only when a report is exported.
 */
export const REPORT_TYPES = ['travel_rule', 'large_transaction', 'suspicious_activity'] as const;
export type ReportType = (typeof REPORT_TYPES)[number];

/** What a row of a report may carry beyond its fixed columns: the parties' details, read at export time. */
export const REPORT_FIELDS = [
  'originatorName',
  'originatorAccountNumber',
  'originatorCountry',
  'beneficiaryName',
  'beneficiaryAccountNumber',
  'beneficiaryCountry',
  'reasons',
  'windowTotalCents',
  'caseId',
] as const;
export type ReportField = (typeof REPORT_FIELDS)[number];

/** The fields that are personal data: decrypted for compliance and auditor keys only (src/app/reports.ts). */
export const PERSONAL_FIELDS: ReadonlySet<ReportField> = new Set([
  'originatorName',
  'originatorAccountNumber',
  'beneficiaryName',
  'beneficiaryAccountNumber',
]);

const Cents = Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER });
/** One of a list of strings, typed as their union. */
const oneOf = <T extends string>(values: readonly T[]) => Type.Unsafe<T>(Type.String({ enum: [...values] }));
const ReportingRule = Type.Object(
  {
    id: Type.String({ pattern: '^[a-z0-9_]{1,64}$' }),
    reportType: oneOf(REPORT_TYPES),
    /** The real-world basis, for people: a regulation's name and section. */
    basis: Type.String({ minLength: 1, maxLength: 300 }),
    /** ISO 3166-1 codes; the rule applies when either party's country is one of them. `*`: any country. */
    jurisdictions: Type.Array(Type.String({ pattern: '^(\\*|[A-Z]{2})$' }), { minItems: 1, maxItems: 300 }),
    /** The payment outcomes that count (at creation; see the decision record). */
    statuses: Type.Array(oneOf(PAYMENT_STATUSES), { minItems: 1 }),
    /** Threshold rules: the amount, in minor units of `currency`; only payments in that currency count. */
    thresholdCents: Type.Optional(Cents),
    currency: Type.Optional(Type.String({ pattern: '^[A-Z]{3}$' })),
    /**
     * `payment`: the one payment's amount. `24h`: the payment's amount, or the sender account's rolling 24-hour
     * outgoing total including it (posted and held payments), reaches the threshold.
     */
    window: Type.Optional(Type.Union([Type.Literal('payment'), Type.Literal('24h')])),
    /** Suspicious-activity rules: the AML reason codes (of the risk policy) that make a payment a candidate. */
    reasons: Type.Optional(Type.Array(Type.String({ pattern: '^[a-z0-9_]{1,64}$' }), { minItems: 1 })),
    fields: Type.Array(oneOf(REPORT_FIELDS), { maxItems: REPORT_FIELDS.length }),
  },
  { additionalProperties: false },
);
export type ReportingRule = Static<typeof ReportingRule>;

export const ReportingRulesSchema = Type.Object(
  {
    version: Type.String({ minLength: 1, maxLength: 64 }),
    rules: Type.Array(ReportingRule, { minItems: 1, maxItems: 100 }),
  },
  { additionalProperties: false },
);
export type ReportingRules = Static<typeof ReportingRulesSchema>;

const validateRules = new Ajv({ allErrors: true, strict: false }).compile(ReportingRulesSchema);

/** Validates a parsed rules file; throws one readable error naming every problem. */
export function parseReportingRules(value: unknown, source: string): ReportingRules {
  if (!validateRules(value)) {
    const problems = (validateRules.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message}`);
    throw new Error(`reporting rules ${source} are invalid: ${problems.join('; ')}`);
  }
  const rules = value as ReportingRules;
  const problems: string[] = [];
  const ids = new Set<string>();
  for (const rule of rules.rules) {
    if (ids.has(rule.id)) problems.push(`rule id "${rule.id}" is used twice`);
    ids.add(rule.id);
    for (const code of rule.jurisdictions) {
      if (code !== '*' && !isCountryCode(code))
        problems.push(`rule "${rule.id}": "${code}" is not an ISO 3166-1 country`);
    }
    if (rule.reportType === 'suspicious_activity') {
      if (rule.reasons === undefined)
        problems.push(`rule "${rule.id}": a suspicious_activity rule names reasons`);
      if (rule.thresholdCents !== undefined || rule.window !== undefined)
        problems.push(`rule "${rule.id}": a suspicious_activity rule has no threshold or window`);
    } else {
      if (rule.thresholdCents === undefined || rule.currency === undefined)
        problems.push(`rule "${rule.id}": a ${rule.reportType} rule names thresholdCents and currency`);
      else if (!isCurrencyCode(rule.currency))
        problems.push(`rule "${rule.id}": "${rule.currency}" is not an ISO 4217 currency`);
      if (rule.reasons !== undefined)
        problems.push(`rule "${rule.id}": only suspicious_activity rules name reasons`);
    }
  }
  if (problems.length > 0) throw new Error(`reporting rules ${source} are invalid: ${problems.join('; ')}`);
  return rules;
}

/** What the evaluation needs to know of a payment, once decided: ids' properties and numbers only. */
export interface ReportingInput {
  amountCents: number;
  currency: string;
  status: PaymentStatus;
  reasons: readonly string[];
  senderCountry: string;
  receiverCountry: string;
  /**
   * What the source account sent out (posted or held) in the 24 hours before this payment, in its currency,
   * from the risk counters (src/domain/risk-keys.ts `outgoing`); this payment not included.
   */
  senderOutgoing24hCents: number;
}

/** A rule that fired: one row of its report. */
export interface ReportHit {
  ruleId: string;
  reportType: ReportType;
  /** The country that brought the payment under the rule (the sender's first), or `*`. */
  jurisdiction: string;
  /** `amount`: the payment alone; `aggregate_24h`: the rolling 24-hour total; `reason`: an AML reason code. */
  trigger: 'amount' | 'aggregate_24h' | 'reason';
  /** The rolling 24-hour total including this payment (24h rules), else null. */
  windowTotalCents: number | null;
  /** The AML reason codes that made it a candidate (suspicious_activity), else empty. */
  reasons: string[];
}

function jurisdictionOf(rule: ReportingRule, input: ReportingInput): string | null {
  if (rule.jurisdictions.includes('*')) return '*';
  for (const country of [input.senderCountry, input.receiverCountry]) {
    if (rule.jurisdictions.includes(country)) return country;
  }
  return null;
}

/** Every rule a decided payment falls under, in the rules' order. */
export function evaluateReporting(rules: ReportingRules, input: ReportingInput): ReportHit[] {
  const hits: ReportHit[] = [];
  for (const rule of rules.rules) {
    if (!rule.statuses.includes(input.status)) continue;
    const jurisdiction = jurisdictionOf(rule, input);
    if (jurisdiction === null) continue;
    const base = { ruleId: rule.id, reportType: rule.reportType, jurisdiction };
    if (rule.reportType === 'suspicious_activity') {
      const matched = input.reasons.filter((r) => rule.reasons?.includes(r));
      if (matched.length > 0)
        hits.push({ ...base, trigger: 'reason', windowTotalCents: null, reasons: matched });
      continue;
    }
    // Only payments in the rule's currency count: no conversion (docs/decisions/0025).
    if (input.currency !== rule.currency || rule.thresholdCents === undefined) continue;
    if (rule.window === '24h') {
      const total = input.senderOutgoing24hCents + input.amountCents;
      if (input.amountCents >= rule.thresholdCents) {
        hits.push({ ...base, trigger: 'amount', windowTotalCents: total, reasons: [] });
      } else if (total >= rule.thresholdCents) {
        hits.push({ ...base, trigger: 'aggregate_24h', windowTotalCents: total, reasons: [] });
      }
    } else if (input.amountCents >= rule.thresholdCents) {
      hits.push({ ...base, trigger: 'amount', windowTotalCents: null, reasons: [] });
    }
  }
  return hits;
}

/** The fields a report type's rows carry: every field any of its rules asks for, in REPORT_FIELDS order. */
export function reportFields(rules: ReportingRules, type: ReportType): ReportField[] {
  const asked = new Set<string>(rules.rules.filter((r) => r.reportType === type).flatMap((r) => r.fields));
  return REPORT_FIELDS.filter((f) => asked.has(f));
}

/** A report type a client named, by own-property lookup (a type named "constructor" is no type). */
export function reportTypeOf(name: string): ReportType | null {
  return (REPORT_TYPES as readonly string[]).includes(name) ? (name as ReportType) : null;
}

/** A row of a report as stored (table report_entries): ids and numbers, no personal data. */
export interface ReportEntry {
  seq: number;
  reportType: ReportType;
  ruleId: string;
  paymentId: string;
  /** When the payment came under the rule: its transaction's time. Reports are periods of this. */
  createdAtMs: number;
  /** The index of the payment's audit entry, appended in the same transaction. */
  auditIndex: number;
  jurisdiction: string;
  trigger: ReportHit['trigger'];
  windowTotalCents: number | null;
  reasons: string[];
  caseId: string | null;
}

/** What a payment's transaction queues: the entry, before the audit log gives its entry an index. */
export type ReportEntryDraft = Omit<ReportEntry, 'seq' | 'auditIndex'>;

export const CASE_STATUSES = ['open', 'filed', 'dismissed'] as const;
export type CaseStatus = (typeof CASE_STATUSES)[number];
export type CaseDecision = Exclude<CaseStatus, 'open'>;

/** A suspicious-activity candidate for compliance to file (a SAR) or dismiss, once. */
export interface ComplianceCase {
  id: string;
  status: CaseStatus;
  paymentId: string;
  ruleId: string;
  /** The AML reason codes that opened it. */
  reasons: string[];
  /** The payment's audit entry (the case opened in its transaction). */
  auditIndex: number;
  createdAtMs: number;
  decidedAtMs: number | null;
  /** The API key that decided it. */
  decidedBy: string | null;
  /** The decision's note, encrypted (it may name people): never echoed, never audited. */
  decisionNoteEnc: string | null;
}

export type CaseDraft = Pick<ComplianceCase, 'id' | 'paymentId' | 'ruleId' | 'reasons' | 'createdAtMs'>;
