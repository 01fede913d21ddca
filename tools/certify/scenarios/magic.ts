/**
 * The sandbox's magic amounts (test keys only): each forces its outcome and reason through the real policy.
 * 77700 posts with the fraud-window rules (velocity, repeated pattern, structuring) suppressed, so scenarios can
 * post it as often as they need.
 */
export const POSTED = 77_700;

export interface MagicAmount {
  amountCents: number;
  status: 201 | 202 | 422;
  outcome: 'posted' | 'manual_review' | 'declined';
  reason: string | null;
}

const review = (amountCents: number, reason: string): MagicAmount => ({
  amountCents,
  status: 202,
  outcome: 'manual_review',
  reason,
});
const decline = (amountCents: number, reason: string): MagicAmount => ({
  amountCents,
  status: 422,
  outcome: 'declined',
  reason,
});

export const MAGIC_AMOUNTS: readonly MagicAmount[] = [
  { amountCents: POSTED, status: 201, outcome: 'posted', reason: null },
  review(77_701, 'amount_above_review_threshold'),
  review(77_702, 'suspicious_payment_note'),
  review(77_703, 'high_velocity_source_account'),
  review(77_704, 'repeated_payment_pattern'),
  review(77_705, 'amount_above_fraud_review_threshold'),
  review(77_706, 'possible_sanctions_match'),
  review(77_707, 'structuring_suspected'),
  decline(77_711, 'kyc_not_verified'),
  decline(77_712, 'high_risk_jurisdiction'),
  decline(77_713, 'sanctions_match'),
  decline(77_714, 'insufficient_funds'),
];

/** Held for review on every sandbox: the magic amount, and a note the default policy holds anyway. */
export const HELD = { amountCents: 77_702, note: 'cash pickup (certification)' };
