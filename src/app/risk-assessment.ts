import { assert } from '../domain/assert.ts';
import { type CounterSnapshot, computeFeatures, inStructuringBand } from '../domain/features.ts';
import { evaluatePolicy, type Features, type RiskPolicy } from '../domain/policy.ts';
import {
  attemptCounts,
  type CounterKeys,
  type CounterPoint,
  type CounterRequest,
  counterKeys,
  counterRequests,
} from '../domain/risk-keys.ts';
import type { SanctionsList, ScreeningResult } from '../domain/sanctions.ts';
import type { TestTrigger } from '../domain/sandbox.ts';
import { type Account, type Decision, type RuleHit, spendableCents } from '../domain/types.ts';
import type { Counters, CustomerRow } from '../storage/store.ts';

/**
 * Steps 4 to 6 of the pipeline: gather the risk context inside the payment's transaction (windowed counters,
 * sanctions screening of both parties), compute the named features, evaluate the policy, and add the two
 * checks no policy may switch off (currency, funds). Then, once decided, count this attempt.
 */
export interface RiskInput {
  amountCents: number;
  currency: string;
  note: string | null;
  source: Account;
  destination: Account;
  sender: CustomerRow;
  receiver: CustomerRow;
  /** A cross-currency payment's destination currency, from its FX quote (src/app/fx-quotes.ts); else null. */
  fxDestinationCurrency?: string | null;
  /** Test mode only: the magic amount's trigger (src/domain/sandbox.ts), applied to the features. */
  testTrigger?: TestTrigger;
}

export interface Screening {
  list: SanctionsList;
  /** Screens a customer against the list: cached per customer and list, so names are decrypted rarely. */
  screen(customer: CustomerRow): ScreeningResult;
}

type Windows = Awaited<ReturnType<Counters['windowsMany']>>[number];

export interface Assessment {
  decision: Decision;
  keys: CounterKeys;
  latest: Record<keyof CounterKeys, CounterPoint>;
  /** What the source account sent out (posted or held) in the 24 h before this payment: regulatory reporting. */
  senderOutgoing24hCents: number;
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
  return counterRequests(counterKeys(sourceAccountId, destinationAccountId, amountCents));
}

export async function assessRisk(
  counters: Counters,
  nowMs: number,
  policy: RiskPolicy,
  screening: Screening,
  input: RiskInput,
): Promise<Assessment> {
  const keys = counterKeys(input.source.id, input.destination.id, input.amountCents);
  const [source, pattern, pair, beneficiary, outgoing, near] = (await counters.windowsMany(
    counterRequests(keys),
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
  const computed = computeFeatures(
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
  // A sandbox trigger sets features, not outcomes: the real policy decides, and the stored features explain it.
  const features =
    input.testTrigger === undefined ? computed : { ...computed, ...input.testTrigger.features };
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
    senderOutgoing24hCents: snapshot.senderOutgoing.h24.sumCents,
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
  // The destination is paid in the payment's currency, or with an FX quote in the quote's. Amount rules above
  // compare the source amount, in the source currency's minor units.
  const destinationCurrency = input.fxDestinationCurrency ?? input.currency;
  const currencyOk =
    input.currency === input.source.currency && destinationCurrency === input.destination.currency;
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
  // The accounts' controls (POST /v1/accounts/:id/controls), read with the balances under the same lock: a
  // frozen account receives but does not send, a closed one does neither.
  for (const [side, account] of [
    ['source', input.source],
    ['destination', input.destination],
  ] as const) {
    const blocked = account.status === 'closed' || (side === 'source' && account.status === 'frozen');
    if (blocked) {
      system.push({
        rule: 'account_status',
        outcome: 'decline',
        reason: `${side}_account_${account.status}`,
        observed: { [`${side}AccountStatus`]: account.status },
      });
    }
  }
  // Funds are only comparable in the source account's currency: available down to the account's floor (its
  // minimum balance, or minus its overdraft limit).
  const short =
    spendableCents(input.source) < input.amountCents || input.testTrigger?.insufficientFunds === true;
  if (input.currency === input.source.currency && short) {
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
  counters: Counters,
  nowMs: number,
  policy: RiskPolicy,
  input: RiskInput,
  assessment: Assessment,
): Promise<void> {
  const { keys, latest, decision } = assessment;
  const counted = attemptCounts(keys, {
    inStructuringBand: inStructuringBand(input.amountCents, policy),
    declined: decision.outcome === 'declined',
  });
  await counters.addMany(
    counted.map(({ name, key, everOnly }) => ({
      key,
      amountCents: input.amountCents,
      latest: latest[name],
      ...(everOnly === true ? { everOnly } : {}),
    })),
    nowMs,
  );
  assert(decision.policyVersion === policy.version, 'the decision names the policy it was made under');
}
