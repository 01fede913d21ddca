import { assert } from './assert.ts';
import { compactSkeleton } from './canonical-text.ts';
import type { Features, RiskPolicy } from './policy.ts';
import type { KycStatus } from './types.ts';

/**
 * Turns what the pipeline gathered (parties, amounts, windowed counters, sanctions scores) into the named
 * features the policy's rules are written against. Pure, so a decision can be replayed from its recorded
 * features. Features hold ids' properties and numbers only, never names or other personal data.
 */
export interface WindowTotals {
  count: number;
  sumCents: number;
}

/** Exact totals over sliding windows, read before this payment is counted. */
export interface CounterSnapshot {
  sourceAttempts: { m1: WindowTotals; h1: WindowTotals; h24: WindowTotals; d7: WindowTotals };
  samePattern1m: number;
  /** Earlier attempts from this source to this destination (within retention: 35 days). */
  pairAttempts: number;
  beneficiaryIncoming24h: WindowTotals;
  /** What the sender's customer already sent out (posted or held), for the KYC tier limits. */
  senderOutgoing: { h24: WindowTotals; d30: WindowTotals };
  /** Earlier payments from the source just under the structuring threshold in the last 24 h. */
  nearThreshold24h: number;
}

export type SanctionsLevel = 'none' | 'possible' | 'match';

export interface FeatureInput {
  amountCents: number;
  note: string | null;
  sender: { kycStatus: KycStatus; country: string; kycTier: string; sanctionsScoreBp: number };
  receiver: { kycStatus: KycStatus; country: string; sanctionsScoreBp: number };
  counters: CounterSnapshot;
}

/** Scores are basis points (0..10000); the policy states its thresholds as similarities (0..1). */
export function sanctionsLevel(scoreBp: number, policy: RiskPolicy): SanctionsLevel {
  if (scoreBp >= Math.round(policy.sanctions.declineScore * 10_000)) return 'match';
  if (scoreBp >= Math.round(policy.sanctions.reviewScore * 10_000)) return 'possible';
  return 'none';
}

/** Whether an amount falls in the structuring band [bandStart% of threshold, threshold). */
export function inStructuringBand(amountCents: number, policy: RiskPolicy): boolean {
  const { thresholdCents, bandStartPercent } = policy.structuring;
  return amountCents * 100 >= thresholdCents * bandStartPercent && amountCents < thresholdCents;
}

/** The policy's suspicious-note terms as skeletons, computed once per policy. */
const termSkeletons = new WeakMap<RiskPolicy, string[]>();

/**
 * Keyword rules compare skeletons with separators removed (src/domain/canonical-text.ts): "crypto-mixer",
 * "cryptomixer", "crypto  mixer", a no-break or zero-width space and a Cyrillic "с" all contain the term
 * "crypto mixer".
 */
export function noteHasSuspiciousTerm(note: string | null, policy: RiskPolicy): boolean {
  if (note === null || note === '') return false;
  let terms = termSkeletons.get(policy);
  if (terms === undefined) {
    terms = policy.suspiciousNoteTerms.map(compactSkeleton);
    termSkeletons.set(policy, terms);
  }
  const text = compactSkeleton(note);
  return terms.some((term) => text.includes(term));
}

/** The sender's tier limits: an own property only (a tier named "constructor" is no tier), else the default. */
export function tierLimits(policy: RiskPolicy, tier: string): RiskPolicy['kycTiers'][string] {
  const name = Object.hasOwn(policy.kycTiers, tier) ? tier : policy.defaultKycTier;
  const limits = policy.kycTiers[name];
  assert(limits !== undefined, 'the default KYC tier is a tier of the policy (checked when it is loaded)');
  return limits;
}

export function computeFeatures(input: FeatureInput, policy: RiskPolicy): Features {
  const { amountCents, counters: c } = input;
  const tier = tierLimits(policy, input.sender.kycTier);
  const average7d =
    c.sourceAttempts.d7.count === 0 ? 0 : c.sourceAttempts.d7.sumCents / c.sourceAttempts.d7.count;
  const inBand = inStructuringBand(amountCents, policy);
  return {
    amountCents,
    roundAmount: amountCents % 100_00 === 0,
    suspiciousNote: noteHasSuspiciousTerm(input.note, policy),
    senderKycStatus: input.sender.kycStatus,
    receiverKycStatus: input.receiver.kycStatus,
    senderKycTier: input.sender.kycTier,
    senderHighRiskJurisdiction: policy.highRiskCountries.includes(input.sender.country),
    receiverHighRiskJurisdiction: policy.highRiskCountries.includes(input.receiver.country),
    senderSanctions: sanctionsLevel(input.sender.sanctionsScoreBp, policy),
    receiverSanctions: sanctionsLevel(input.receiver.sanctionsScoreBp, policy),
    senderSanctionsScoreBp: input.sender.sanctionsScoreBp,
    receiverSanctionsScoreBp: input.receiver.sanctionsScoreBp,
    sourceAttempts1m: c.sourceAttempts.m1.count,
    sourceAttempts1h: c.sourceAttempts.h1.count,
    sourceAttempts24h: c.sourceAttempts.h24.count,
    sourceAttempts7d: c.sourceAttempts.d7.count,
    sourceAmount24hCents: c.sourceAttempts.h24.sumCents,
    samePattern1m: c.samePattern1m,
    newBeneficiary: c.pairAttempts === 0,
    beneficiaryIncoming24h: c.beneficiaryIncoming24h.count,
    // A ratio, clamped so an absurd amount still yields a safe integer (features are hashed canonically).
    amountToAverage7dPercent:
      average7d === 0 ? 0 : Math.min(Number.MAX_SAFE_INTEGER, Math.round((amountCents / average7d) * 100)),
    structuringCount24h: inBand ? c.nearThreshold24h + 1 : 0,
    kycPerPaymentLimitExceeded: amountCents > tier.perPaymentCents,
    kycDailyLimitExceeded: c.senderOutgoing.h24.sumCents + amountCents > tier.dailyCents,
    kycMonthlyLimitExceeded: c.senderOutgoing.d30.sumCents + amountCents > tier.monthlyCents,
  };
}

const NO_TOTALS: WindowTotals = { count: 0, sumCents: 0 };

/** Counters with nothing counted: for a feature map that does not depend on history (checks and re-checks). */
export const EMPTY_COUNTERS: CounterSnapshot = {
  sourceAttempts: { m1: NO_TOTALS, h1: NO_TOTALS, h24: NO_TOTALS, d7: NO_TOTALS },
  samePattern1m: 0,
  pairAttempts: 0,
  beneficiaryIncoming24h: NO_TOTALS,
  senderOutgoing: { h24: NO_TOTALS, d30: NO_TOTALS },
  nearThreshold24h: 0,
};

const SAMPLE_INPUT: FeatureInput = {
  amountCents: 1,
  note: null,
  sender: { kycStatus: 'verified', country: 'US', kycTier: '', sanctionsScoreBp: 0 },
  receiver: { kycStatus: 'verified', country: 'US', sanctionsScoreBp: 0 },
  counters: EMPTY_COUNTERS,
};

/** The features a policy's rules may name: checked when a policy is loaded, not when a payment runs. */
export function unknownFeatures(policy: RiskPolicy): string[] {
  const known = computeFeatures(SAMPLE_INPUT, policy);
  const named = policy.rules.flatMap((rule) =>
    [...(rule.all ?? []), ...(rule.any ?? [])].map((c) => c.feature),
  );
  return [...new Set(named.filter((name) => !Object.hasOwn(known, name)))];
}
