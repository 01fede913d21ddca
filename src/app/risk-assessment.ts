import { assert } from '../domain/assert.ts';
import { type CounterSnapshot, computeFeatures, inStructuringBand } from '../domain/features.ts';
import { evaluatePolicy, type Features, type RiskPolicy } from '../domain/policy.ts';
import type { SanctionsList, ScreeningResult } from '../domain/sanctions.ts';
import { type Account, availableCents, type Decision, type RuleHit } from '../domain/types.ts';
import type { CounterPoint, CounterRequest, RiskCounters } from '../storage/risk-counters.ts';
import type { CustomerRow } from '../storage/store.ts';

/**
 * Steps 4 to 6 of the pipeline: gather the risk context inside the payment's transaction (windowed counters,
 * sanctions screening of both parties), compute the named features, evaluate the policy, and add the two
 * checks no policy may switch off (currency, funds). Then, once decided, count this attempt.
 */
const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;

export interface RiskInput {
  amountCents: number;
  currency: string;
  note: string | null;
  source: Account;
  destination: Account;
  sender: CustomerRow;
  receiver: CustomerRow;
}

export interface Screening {
  list: SanctionsList;
  /** Screens a customer against the list: cached per customer and list, so names are decrypted rarely. */
  screen(customer: CustomerRow): ScreeningResult;
}

interface Keys {
  source: string;
  pattern: string;
  pair: string;
  beneficiary: string;
  outgoing: string;
  nearThreshold: string;
}

type Windows = Awaited<ReturnType<RiskCounters['windowsMany']>>[number];

export interface Assessment {
  decision: Decision;
  keys: Keys;
  latest: Record<keyof Keys, CounterPoint>;
}

/** The keys of a payment from account `s` to account `d`. */
function counterKeys(s: string, d: string, amountCents: number): Keys {
  return {
    source: `src:${s}`,
    pattern: `pat:${s}:${d}:${amountCents}`,
    pair: `pair:${s}:${d}`,
    beneficiary: `ben:${d}`,
    // KYC limits are per source account, in its currency: sums across currencies would need FX rates.
    outgoing: `out:${s}`,
    nearThreshold: `near:${s}`,
  };
}

/** The counters a payment reads, in the order `assessRisk` uses them. */
function requestsFor(keys: Keys): CounterRequest[] {
  return [
    { key: keys.source, windowsMs: [MINUTE_MS, HOUR_MS, DAY_MS, 7 * DAY_MS] },
    { key: keys.pattern, windowsMs: [MINUTE_MS] },
    { key: keys.pair, windowsMs: [] },
    { key: keys.beneficiary, windowsMs: [DAY_MS] },
    { key: keys.outgoing, windowsMs: [DAY_MS, 30 * DAY_MS] },
    { key: keys.nearThreshold, windowsMs: [DAY_MS] },
  ];
}

/**
 * What a payment between these accounts will read, declared with its locks (`LockHints.counters`) so its
 * batch reads every payment's counters in one statement. Known from the request alone: the keys are the
 * accounts' ids and the amount.
 */
export function paymentCounterReads(
  sourceAccountId: string,
  destinationAccountId: string,
  amountCents: number,
): CounterRequest[] {
  return requestsFor(counterKeys(sourceAccountId, destinationAccountId, amountCents));
}

export async function assessRisk(
  counters: RiskCounters,
  nowMs: number,
  policy: RiskPolicy,
  screening: Screening,
  input: RiskInput,
): Promise<Assessment> {
  const keys = counterKeys(input.source.id, input.destination.id, input.amountCents);
  const [source, pattern, pair, beneficiary, outgoing, near] = (await counters.windowsMany(
    requestsFor(keys),
    nowMs,
  )) as [Windows, Windows, Windows, Windows, Windows, Windows];
  const [m1, h1, h24, d7] = source.totals as [(typeof source.totals)[0], ...typeof source.totals];
  const snapshot: CounterSnapshot = {
    sourceAttempts: { m1: m1!, h1: h1!, h24: h24!, d7: d7! },
    samePattern1m: pattern.totals[0]!.count,
    pairAttempts: pair.latest.count,
    beneficiaryIncoming24h: beneficiary.totals[0]!,
    senderOutgoing: { h24: outgoing.totals[0]!, d30: outgoing.totals[1]! },
    nearThreshold24h: near.totals[0]!.count,
  };
  const senderScreen = screening.screen(input.sender);
  const receiverScreen = screening.screen(input.receiver);
  const features = computeFeatures(
    {
      amountCents: input.amountCents,
      note: input.note,
      sender: {
        ...party(input.sender),
        kycTier: input.sender.kycTier,
        sanctionsScoreBp: senderScreen.scoreBp,
      },
      receiver: { ...party(input.receiver), sanctionsScoreBp: receiverScreen.scoreBp },
      counters: snapshot,
    },
    policy,
  );
  const decision = decide(policy, features, input, {
    listSha256: screening.list.sha256,
    sender: senderScreen,
    receiver: receiverScreen,
  });
  return {
    decision,
    keys,
    latest: {
      source: source.latest,
      pattern: pattern.latest,
      pair: pair.latest,
      beneficiary: beneficiary.latest,
      outgoing: outgoing.latest,
      nearThreshold: near.latest,
    },
  };
}

const party = (c: CustomerRow) => ({ kycStatus: c.kycStatus, country: c.country });

/** Policy rules first; then the system checks that no policy can turn off. A decline outranks a review. */
function decide(
  policy: RiskPolicy,
  features: Features,
  input: RiskInput,
  sanctions: Decision['sanctions'],
): Decision {
  const evaluation = evaluatePolicy(policy, features);
  const system: RuleHit[] = [];
  const currencyOk =
    input.currency === input.source.currency && input.currency === input.destination.currency;
  if (!currencyOk) {
    system.push({
      rule: 'currency',
      outcome: 'decline',
      reason: 'currency_mismatch',
      observed: {
        paymentCurrency: input.currency,
        sourceCurrency: input.source.currency,
        destinationCurrency: input.destination.currency,
      },
    });
  }
  // Funds are only comparable in the source account's currency.
  if (input.currency === input.source.currency && availableCents(input.source) < input.amountCents) {
    system.push({
      rule: 'funds',
      outcome: 'decline',
      reason: 'insufficient_funds',
      observed: { amountCents: input.amountCents },
    });
  }
  if (system.length === 0) {
    return { ...evaluation, policyVersion: policy.version, features, sanctions };
  }
  const rules = [...evaluation.rules, ...system];
  const declines = rules.filter((r) => r.outcome === 'decline');
  const reviews = rules.filter((r) => r.outcome === 'review');
  const reasons = [...new Set([...declines, ...reviews].map((r) => r.reason))];
  return {
    outcome: 'declined',
    policyVersion: policy.version,
    reasons,
    rules,
    score: 100,
    features,
    sanctions,
  };
}

/** Counts this attempt (it reached the risk step); the outgoing total only counts money that moved or is held. */
export async function recordAttempt(
  counters: RiskCounters,
  nowMs: number,
  policy: RiskPolicy,
  input: RiskInput,
  assessment: Assessment,
): Promise<void> {
  const { keys, latest, decision } = assessment;
  const amount = input.amountCents;
  const events = [
    { key: keys.source, amountCents: amount, latest: latest.source },
    { key: keys.pattern, amountCents: amount, latest: latest.pattern },
    { key: keys.pair, amountCents: amount, latest: latest.pair },
    { key: keys.beneficiary, amountCents: amount, latest: latest.beneficiary },
  ];
  if (inStructuringBand(amount, policy)) {
    events.push({ key: keys.nearThreshold, amountCents: amount, latest: latest.nearThreshold });
  }
  if (decision.outcome !== 'declined')
    events.push({ key: keys.outgoing, amountCents: amount, latest: latest.outgoing });
  await counters.addMany(events, nowMs);
  assert(decision.policyVersion === policy.version, 'the decision names the policy it was made under');
}
