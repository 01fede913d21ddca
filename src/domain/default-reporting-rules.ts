import type { ReportField, ReportingRules } from './reporting.ts';

/** The EU's member states: the example EU rule's jurisdictions. */
const EU = ['AT', 'BE', 'BG', 'HR', 'CY', 'CZ', 'DK', 'EE', 'FI', 'FR', 'DE', 'GR', 'HU', 'IE', 'IT', 'LV'];
const EU_REST = ['LT', 'LU', 'MT', 'NL', 'PL', 'PT', 'RO', 'SK', 'SI', 'ES', 'SE'];

/** Name, account number and country of both parties (the Travel Rule's record, less the address). */
const BOTH_PARTIES: ReportField[] = [
  'originatorName',
  'originatorAccountNumber',
  'originatorCountry',
  'beneficiaryName',
  'beneficiaryAccountNumber',
  'beneficiaryCountry',
];

/**
 * The built-in reporting rules (docs/decisions/0025-regulatory-reporting.md; the table in docs/api.md names
 * each one's basis). Data, not code: a file given by REPORTING_RULES_PATH replaces them
 * (config/reporting-rules.example.json is a copy). Thresholds are minor units of the rule's currency; only
 * payments in that currency count (no conversion).
 */
export const DEFAULT_REPORTING_RULES: ReportingRules = {
  version: 'reporting-2026-01',
  rules: [
    {
      id: 'travel_rule',
      reportType: 'travel_rule',
      basis: 'US FinCEN Funds Travel Rule, 31 CFR 1010.410(f): transmittals of funds of USD 3,000 or more',
      jurisdictions: ['US'],
      statuses: ['posted', 'manual_review'],
      thresholdCents: 300_000,
      currency: 'USD',
      window: 'payment',
      // The rule asks for name, account number and address: the platform keeps a country, not an address.
      fields: BOTH_PARTIES,
    },
    {
      id: 'large_transaction',
      reportType: 'large_transaction',
      basis:
        'US currency transaction report threshold, 31 CFR 1010.311 and the aggregation of 1010.313: more than ' +
        'USD 10,000 by or for one person in one business day (here: at least USD 10,000, one payment or a ' +
        'rolling 24 hours of one source account)',
      jurisdictions: ['US'],
      statuses: ['posted', 'manual_review'],
      thresholdCents: 1_000_000,
      currency: 'USD',
      window: '24h',
      fields: [...BOTH_PARTIES, 'windowTotalCents'],
    },
    {
      id: 'eu_occasional_transaction',
      reportType: 'large_transaction',
      basis:
        'EU AML Directive (EU) 2015/849, Art. 11(b)(i): occasional transactions of EUR 15,000 or more (an ' +
        'example of a second jurisdiction; one payment, no aggregation)',
      jurisdictions: [...EU, ...EU_REST],
      statuses: ['posted', 'manual_review'],
      thresholdCents: 1_500_000,
      currency: 'EUR',
      window: 'payment',
      fields: [
        'originatorName',
        'originatorAccountNumber',
        'originatorCountry',
        'beneficiaryName',
        'beneficiaryCountry',
      ],
    },
    {
      id: 'suspicious_activity',
      reportType: 'suspicious_activity',
      basis:
        'Suspicious activity reports: US 31 CFR 1020.320 (banks; 1022.320 for money services businesses), EU AML ' +
        'Directive (EU) 2015/849, Art. 33: payments declined or held for the AML reasons below open a case',
      jurisdictions: ['*'],
      statuses: ['declined', 'manual_review'],
      reasons: [
        'sanctions_match',
        'possible_sanctions_match',
        'high_risk_jurisdiction',
        'structuring_suspected',
      ],
      fields: ['reasons', 'caseId', ...BOTH_PARTIES],
    },
  ],
};
