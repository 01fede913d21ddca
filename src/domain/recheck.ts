import { computeFeatures, EMPTY_COUNTERS, type FeatureInput } from './features.ts';
import { type Evaluation, evaluatePolicy, type Features, type RiskPolicy } from './policy.ts';

/**
 * The re-check of a held payment at approval: what can change while a payment waits in review is the
 * parties (KYC status and tier, country, sanctions screening against the list loaded now) and the policy.
 * The payment's recorded features are replayed against the CURRENT policy with the party-derived features
 * replaced by their current values, computed by the same code as at payment time (computeFeatures). The
 * windowed counters are not read again: they now count this payment itself, so their recorded values stand.
 * Pure, like the policy: the caller gathers the current parties inside the approving transaction.
 */

/** The features that are recomputed from the parties as they are now; every other recorded value stands. */
export const RECHECKED_FEATURES = [
  'senderKycStatus',
  'receiverKycStatus',
  'senderKycTier',
  'senderHighRiskJurisdiction',
  'receiverHighRiskJurisdiction',
  'senderSanctions',
  'receiverSanctions',
  'senderSanctionsScoreBp',
  'receiverSanctionsScoreBp',
  // Amount against the current tier's per-payment limit (the daily and monthly limits need the counters).
  'kycPerPaymentLimitExceeded',
] as const;

export interface RecheckInput {
  amountCents: number;
  note: string | null;
  /** `payment.decision.features`, as recorded when the payment was held. */
  recorded: Features;
  /** The parties now: current KYC status, tier and country, and a screening against the current list. */
  sender: FeatureInput['sender'];
  receiver: FeatureInput['receiver'];
}

/**
 * The recorded features with the party-derived ones replaced by current values. A feature the recorded
 * decision lacks (added to the engine after the payment was held) takes its value as computed now, with
 * empty counters, so a current policy never names a feature the replay does not have.
 */
export function recheckFeatures(input: RecheckInput, policy: RiskPolicy): Features {
  const now = computeFeatures(
    {
      amountCents: input.amountCents,
      note: input.note,
      sender: input.sender,
      receiver: input.receiver,
      counters: EMPTY_COUNTERS,
    },
    policy,
  );
  const features: Features = { ...now, ...input.recorded };
  for (const name of RECHECKED_FEATURES) {
    const value = now[name];
    if (value !== undefined) features[name] = value;
  }
  return features;
}

export interface Recheck {
  /** False when the current policy declines the payment as it stands now. */
  approvable: boolean;
  /** The reason codes of the declining rules (codes only, no personal data); empty when approvable. */
  reasons: string[];
  evaluation: Evaluation;
  features: Features;
}

export function recheckHeldPayment(policy: RiskPolicy, input: RecheckInput): Recheck {
  const features = recheckFeatures(input, policy);
  const evaluation = evaluatePolicy(policy, features);
  const approvable = evaluation.outcome !== 'declined';
  const reasons = approvable
    ? []
    : [...new Set(evaluation.rules.filter((r) => r.outcome === 'decline').map((r) => r.reason))];
  return { approvable, reasons, evaluation, features };
}
