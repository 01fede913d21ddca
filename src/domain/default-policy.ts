import type { RiskPolicy } from './policy.ts';

/**
 * The built-in policy: the workshop seed's compliance and fraud rules with its thresholds, plus the checks
 * a regulated payment service cannot run without (sanctions screening, KYC tier limits, structuring). It is
 * data, not code: a file given by RISK_POLICY_PATH replaces it (config/risk-policy.example.json is a copy).
 */
export const DEFAULT_POLICY: RiskPolicy = {
  version: 'seed-2025-02',
  highRiskCountries: ['KP', 'IR', 'SY'],
  suspiciousNoteTerms: ['crypto mixer', 'money mule', 'cash pickup'],
  sanctions: { declineScore: 0.95, reviewScore: 0.85 },
  structuring: { thresholdCents: 250_000, bandStartPercent: 90 },
  kycTiers: {
    basic: { perPaymentCents: 100_000, dailyCents: 250_000, monthlyCents: 1_000_000 },
    standard: { perPaymentCents: 10_000_000, dailyCents: 50_000_000, monthlyCents: 200_000_000 },
    enhanced: { perPaymentCents: 1_000_000_000, dailyCents: 5_000_000_000, monthlyCents: 20_000_000_000 },
  },
  defaultKycTier: 'standard',
  rules: [
    {
      id: 'sender_kyc',
      outcome: 'decline',
      reason: 'kyc_not_verified',
      score: 100,
      all: [{ feature: 'senderKycStatus', op: '!=', value: 'verified' }],
    },
    {
      id: 'receiver_kyc',
      outcome: 'decline',
      reason: 'receiver_kyc_rejected',
      score: 100,
      all: [{ feature: 'receiverKycStatus', op: '==', value: 'rejected' }],
    },
    {
      id: 'jurisdiction',
      outcome: 'decline',
      reason: 'high_risk_jurisdiction',
      score: 100,
      any: [
        { feature: 'senderHighRiskJurisdiction', op: '==', value: true },
        { feature: 'receiverHighRiskJurisdiction', op: '==', value: true },
      ],
    },
    {
      id: 'sanctions_match',
      outcome: 'decline',
      reason: 'sanctions_match',
      score: 100,
      any: [
        { feature: 'senderSanctions', op: '==', value: 'match' },
        { feature: 'receiverSanctions', op: '==', value: 'match' },
      ],
    },
    {
      id: 'kyc_limits',
      outcome: 'decline',
      reason: 'kyc_limit_exceeded',
      score: 60,
      any: [
        { feature: 'kycPerPaymentLimitExceeded', op: '==', value: true },
        { feature: 'kycDailyLimitExceeded', op: '==', value: true },
        { feature: 'kycMonthlyLimitExceeded', op: '==', value: true },
      ],
    },
    {
      id: 'possible_sanctions_match',
      outcome: 'review',
      reason: 'possible_sanctions_match',
      score: 50,
      any: [
        { feature: 'senderSanctions', op: '==', value: 'possible' },
        { feature: 'receiverSanctions', op: '==', value: 'possible' },
      ],
    },
    {
      id: 'aml_amount',
      outcome: 'review',
      reason: 'amount_above_review_threshold',
      score: 30,
      all: [{ feature: 'amountCents', op: '>=', value: 250_000 }],
    },
    {
      id: 'aml_note',
      outcome: 'review',
      reason: 'suspicious_payment_note',
      score: 40,
      all: [{ feature: 'suspiciousNote', op: '==', value: true }],
    },
    {
      id: 'velocity',
      outcome: 'review',
      reason: 'high_velocity_source_account',
      score: 30,
      all: [{ feature: 'sourceAttempts1m', op: '>=', value: 3 }],
    },
    {
      id: 'repeated_pattern',
      outcome: 'review',
      reason: 'repeated_payment_pattern',
      score: 20,
      all: [{ feature: 'samePattern1m', op: '>=', value: 1 }],
    },
    {
      id: 'fraud_amount',
      outcome: 'review',
      reason: 'amount_above_fraud_review_threshold',
      score: 20,
      all: [{ feature: 'amountCents', op: '>=', value: 175_000 }],
    },
    {
      id: 'structuring',
      outcome: 'review',
      reason: 'structuring_suspected',
      score: 50,
      all: [{ feature: 'structuringCount24h', op: '>=', value: 3 }],
    },
  ],
};
