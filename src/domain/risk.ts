import type { Decision, KycStatus, RuleHit } from './types.ts';

/**
 * Compliance (KYC/AML) and fraud rules as pure functions of a context: no I/O, no clock. The pipeline
 * gathers the context (balances, parties, windowed counters) inside the payment's transaction and records
 * the decision with the payment, so the same context always yields the same decision.
 */
export interface RiskPolicy {
  version: string;
  highRiskCountries: string[];
  reviewThresholdCents: number;
  fraudReviewThresholdCents: number;
  suspiciousNoteTerms: string[];
  velocityWindowMs: number;
  /** A review fires when the source already made at least this many attempts inside the window. */
  velocityEarlierAttemptsMax: number;
  repeatedPatternWindowMs: number;
}

/** The seed's rules and thresholds. */
export const SEED_POLICY: RiskPolicy = {
  version: 'seed-2025-02',
  highRiskCountries: ['KP', 'IR', 'SY'],
  reviewThresholdCents: 250_000,
  fraudReviewThresholdCents: 175_000,
  suspiciousNoteTerms: ['crypto mixer', 'money mule', 'cash pickup'],
  velocityWindowMs: 60_000,
  velocityEarlierAttemptsMax: 3,
  repeatedPatternWindowMs: 60_000,
};

export interface Party {
  kycStatus: KycStatus;
  country: string;
}

export interface RiskContext {
  amountCents: number;
  currency: string;
  note: string | null;
  sender: Party;
  receiver: Party;
  sourceCurrency: string;
  destinationCurrency: string;
  sourceAvailableCents: number;
  /** Attempts from the source account that reached the risk step inside the velocity window, this one excluded. */
  earlierAttemptsFromSource: number;
  /** Earlier attempts with the same source, destination and amount inside the pattern window. */
  earlierSamePattern: number;
}

type Rule = (ctx: RiskContext, policy: RiskPolicy) => RuleHit | null;

const hit = (rule: string, outcome: RuleHit['outcome'], reason: string, observed: RuleHit['observed']) => ({
  rule,
  outcome,
  reason,
  observed,
});

/** Step 4, compliance: KYC of both parties and AML jurisdiction screening of BOTH parties. */
export const COMPLIANCE_RULES: Rule[] = [
  (c) =>
    c.sender.kycStatus === 'verified'
      ? null
      : hit('sender_kyc', 'decline', 'kyc_not_verified', { senderKycStatus: c.sender.kycStatus }),
  (c) =>
    c.receiver.kycStatus === 'rejected'
      ? hit('receiver_kyc', 'decline', 'receiver_kyc_rejected', { receiverKycStatus: c.receiver.kycStatus })
      : null,
  (c, p) =>
    p.highRiskCountries.includes(c.sender.country) || p.highRiskCountries.includes(c.receiver.country)
      ? hit('jurisdiction', 'decline', 'high_risk_jurisdiction', {
          senderHighRisk: p.highRiskCountries.includes(c.sender.country),
          receiverHighRisk: p.highRiskCountries.includes(c.receiver.country),
        })
      : null,
  (c, p) =>
    c.amountCents >= p.reviewThresholdCents
      ? hit('aml_amount', 'review', 'amount_above_review_threshold', {
          amountCents: c.amountCents,
          thresholdCents: p.reviewThresholdCents,
        })
      : null,
  (c, p) => {
    const note = (c.note ?? '').toLowerCase();
    // Both sides lower-cased: a term configured as "Gift Cards" must still match "gift cards".
    const matched = p.suspiciousNoteTerms.filter((term) => note.includes(term.toLowerCase()));
    return matched.length > 0
      ? hit('aml_note', 'review', 'suspicious_payment_note', { matchedTerms: matched.length })
      : null;
  },
];

/** Step 5, fraud: velocity and pattern rules over windowed counters, and the fraud amount threshold. */
export const FRAUD_RULES: Rule[] = [
  (c, p) =>
    c.earlierAttemptsFromSource >= p.velocityEarlierAttemptsMax
      ? hit('velocity', 'review', 'high_velocity_source_account', {
          earlierAttempts: c.earlierAttemptsFromSource,
          windowMs: p.velocityWindowMs,
        })
      : null,
  (c, p) =>
    c.earlierSamePattern > 0
      ? hit('repeated_pattern', 'review', 'repeated_payment_pattern', {
          earlierSamePattern: c.earlierSamePattern,
          windowMs: p.repeatedPatternWindowMs,
        })
      : null,
  (c, p) =>
    c.amountCents >= p.fraudReviewThresholdCents
      ? hit('fraud_amount', 'review', 'amount_above_fraud_review_threshold', {
          amountCents: c.amountCents,
          thresholdCents: p.fraudReviewThresholdCents,
        })
      : null,
];

/** Step 6, funds and currency: the payment currency equals both accounts'; available funds cover it. */
export const FUNDS_RULES: Rule[] = [
  (c) =>
    c.currency !== c.sourceCurrency || c.currency !== c.destinationCurrency
      ? hit('currency', 'decline', 'currency_mismatch', {
          paymentCurrency: c.currency,
          sourceCurrency: c.sourceCurrency,
          destinationCurrency: c.destinationCurrency,
        })
      : null,
  (c) =>
    c.currency === c.sourceCurrency && c.sourceAvailableCents < c.amountCents
      ? hit('funds', 'decline', 'insufficient_funds', { amountCents: c.amountCents })
      : null,
];

export function evaluate(rules: Rule[], ctx: RiskContext, policy: RiskPolicy): RuleHit[] {
  const hits: RuleHit[] = [];
  for (const rule of rules) {
    const result = rule(ctx, policy);
    if (result !== null) hits.push(result);
  }
  return hits;
}

/** Step 7, decision: a decline outranks a review; reasons list declines first, each once, in rule order. */
export function decide(hits: RuleHit[], policy: RiskPolicy): Decision {
  const declines = hits.filter((h) => h.outcome === 'decline');
  const reviews = hits.filter((h) => h.outcome === 'review');
  const outcome = declines.length > 0 ? 'declined' : reviews.length > 0 ? 'manual_review' : 'posted';
  const reasons = [...new Set([...declines, ...reviews].map((h) => h.reason))];
  return { outcome, policyVersion: policy.version, reasons, rules: hits };
}
