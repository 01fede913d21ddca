import type { Features } from './policy.ts';

/**
 * Test mode (the sandbox) in the domain's terms: which mode a secret belongs to, and the magic amounts that
 * force each outcome. Pure: the sandbox's storage, clock and routes are in src/app/sandbox.ts and
 * src/http/routes/sandbox.ts (docs/decisions/0026-sandbox.md).
 *
 * Live and test data never meet: each mode has its own store (a SQLite file, a PostgreSQL schema) and its own
 * copy of the API's routes, and a request reaches one of them by its key's mode.
 */
export const MODES = ['live', 'test'] as const;
export type Mode = (typeof MODES)[number];

/** A key's secret says its mode: `sk_live_…`, `sk_test_…` (as Stripe's do), so a log or a config file shows it. */
export const SECRET_PREFIX: Record<Mode, string> = { live: 'sk_live_', test: 'sk_test_' };

/**
 * The mode a presented secret is for, decided from the text alone (the router needs it before any lookup).
 * The demo token (DEMO_API_TOKEN) is a test key; any other secret without a mode prefix is a live key created
 * before modes existed. Whether the key exists is checked afterwards, in that mode's store only.
 */
export function modeOfSecret(secret: string, demoToken: string | null): Mode {
  if (secret.startsWith(SECRET_PREFIX.test)) return 'test';
  if (secret.startsWith(SECRET_PREFIX.live)) return 'live';
  return demoToken !== null && secret === demoToken ? 'test' : 'live';
}

/**
 * A magic amount: in test mode, a payment of exactly this many minor units gets these features set before
 * the policy is evaluated, so the real policy makes the documented decision and records why (the features are
 * stored with the decision; replaying them gives the same outcome). The values are what the default policy's
 * rules test (src/domain/default-policy.ts); a policy without such a rule ignores the trigger.
 */
export interface TestTrigger {
  amountCents: number;
  outcome: 'posted' | 'manual_review' | 'declined';
  /** The reason the decision carries (a review at 250000 or more also carries the fraud amount's). */
  reason: string | null;
  features: Features;
  /** The funds check (not a policy rule) declines it whatever the balance. */
  insufficientFunds?: true;
}

export const TEST_TRIGGERS: readonly TestTrigger[] = [
  {
    amountCents: 77_700,
    outcome: 'posted',
    reason: null,
    // The windowed fraud rules see a quiet account: a scenario can repeat this payment without being held.
    features: { sourceAttempts1m: 0, samePattern1m: 0, structuringCount24h: 0 },
  },
  {
    amountCents: 77_701,
    outcome: 'manual_review',
    reason: 'amount_above_review_threshold',
    features: { amountCents: 250_000 },
  },
  {
    amountCents: 77_702,
    outcome: 'manual_review',
    reason: 'suspicious_payment_note',
    features: { suspiciousNote: true },
  },
  {
    amountCents: 77_703,
    outcome: 'manual_review',
    reason: 'high_velocity_source_account',
    features: { sourceAttempts1m: 3 },
  },
  {
    amountCents: 77_704,
    outcome: 'manual_review',
    reason: 'repeated_payment_pattern',
    features: { samePattern1m: 1 },
  },
  {
    amountCents: 77_705,
    outcome: 'manual_review',
    reason: 'amount_above_fraud_review_threshold',
    features: { amountCents: 175_000 },
  },
  {
    amountCents: 77_706,
    outcome: 'manual_review',
    reason: 'possible_sanctions_match',
    features: { senderSanctions: 'possible' },
  },
  {
    amountCents: 77_707,
    outcome: 'manual_review',
    reason: 'structuring_suspected',
    features: { structuringCount24h: 3 },
  },
  {
    amountCents: 77_711,
    outcome: 'declined',
    reason: 'kyc_not_verified',
    features: { senderKycStatus: 'manual_review' },
  },
  {
    amountCents: 77_712,
    outcome: 'declined',
    reason: 'high_risk_jurisdiction',
    features: { senderHighRiskJurisdiction: true },
  },
  {
    amountCents: 77_713,
    outcome: 'declined',
    reason: 'sanctions_match',
    features: { senderSanctions: 'match' },
  },
  {
    amountCents: 77_714,
    outcome: 'declined',
    reason: 'insufficient_funds',
    features: {},
    insufficientFunds: true,
  },
  {
    amountCents: 77_715,
    outcome: 'declined',
    reason: 'kyc_limit_exceeded',
    features: { kycPerPaymentLimitExceeded: true },
  },
];

const TRIGGERS_BY_AMOUNT = new Map(TEST_TRIGGERS.map((t) => [t.amountCents, t]));

export function testTriggerFor(amountCents: number): TestTrigger | undefined {
  return TRIGGERS_BY_AMOUNT.get(amountCents);
}

/**
 * Webhook endpoints on this host fail every delivery in test mode, without any network traffic: the way to
 * watch retries, backoff and a disabled endpoint (RFC 2606 reserves `.test`, so it is nobody's real host).
 * `ok.sandbox.test` accepts every delivery the same way.
 */
export const FAILING_WEBHOOK_HOST = 'fail.sandbox.test';
export const ACCEPTING_WEBHOOK_HOST = 'ok.sandbox.test';

export function sandboxWebhookAnswer(url: URL): 'fail' | 'accept' | null {
  if (url.hostname === FAILING_WEBHOOK_HOST) return 'fail';
  if (url.hostname === ACCEPTING_WEBHOOK_HOST) return 'accept';
  return null;
}

/** How far one call may move the test clock, and how far ahead of real time it may be in all. */
export const TEST_CLOCK_ADVANCE_SECONDS_MAX = 366 * 24 * 3600;
export const TEST_CLOCK_OFFSET_MS_MAX = 10 * 366 * 24 * 3600 * 1000;
