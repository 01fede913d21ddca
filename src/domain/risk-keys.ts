/**
 * What a payment counts, and over which windows it reads what was counted: the layout of the risk counters,
 * shared by the pipeline (src/app/risk-assessment.ts), which reads and counts, and the SQLite adapter, which
 * rebuilds its in-memory counters from the stored payments at start-up (src/storage/counter-memory.ts). One
 * layout, so a rebuilt counter is the counter the pipeline would have kept.
 */
import type { WindowTotals } from './features.ts';

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;

/** A key's running totals at a time: `count` events and `sumCents` in all, up to and including `atMs`. */
export interface CounterPoint {
  atMs: number;
  count: number;
  sumCents: bigint;
}

/** A key never counted: the base of every window, and its latest point. */
export const ZERO_POINT: CounterPoint = Object.freeze({ atMs: 0, count: 0, sumCents: 0n });

const SAFE_MAX = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * A window's totals: the latest point minus the window's base (the newest point at or before its start). The
 * sum is clamped to the safe integer range: attempts are counted before funds are checked, so a key can sum
 * many absurd amounts.
 */
export function windowTotals(latest: CounterPoint, base: CounterPoint): WindowTotals {
  const sum = latest.sumCents - base.sumCents;
  return { count: latest.count - base.count, sumCents: Number(sum > SAFE_MAX ? SAFE_MAX : sum) };
}

/**
 * A key and the windows (ms) to total it over; its latest point is always read too. `everOnly`: only whether
 * the key was ever counted matters (its latest count is 0 or more than 0; a store may answer 1 for "more").
 */
export interface CounterRequest {
  key: string;
  windowsMs: number[];
  everOnly?: boolean;
}

/** One event to count: a key, the amount, and the key's latest point as read in this transaction. */
export interface CounterEvent {
  key: string;
  amountCents: number;
  latest: CounterPoint;
  everOnly?: boolean;
}

export interface CounterKeys {
  source: string;
  pattern: string;
  pair: string;
  beneficiary: string;
  outgoing: string;
  nearThreshold: string;
}

/** The longest window any key is read over. */
export const COUNTER_WINDOW_MAX_MS = 30 * DAY_MS;

/** The keys of a payment from account `s` to account `d`. */
export function counterKeys(s: string, d: string, amountCents: number): CounterKeys {
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

/** Each key's windows, in the order `assessRisk` reads them. */
const WINDOWS_MS: Record<keyof CounterKeys, number[]> = {
  source: [MINUTE_MS, HOUR_MS, DAY_MS, 7 * DAY_MS],
  pattern: [MINUTE_MS],
  pair: [],
  beneficiary: [DAY_MS],
  outgoing: [DAY_MS, 30 * DAY_MS],
  nearThreshold: [DAY_MS],
};

/** The counters a payment reads, in the order `assessRisk` uses them. */
export function counterRequests(keys: CounterKeys): CounterRequest[] {
  return [
    { key: keys.source, windowsMs: WINDOWS_MS.source },
    { key: keys.pattern, windowsMs: WINDOWS_MS.pattern },
    // Only "has this source ever paid this destination" is a feature (newBeneficiary).
    { key: keys.pair, windowsMs: WINDOWS_MS.pair, everOnly: true },
    { key: keys.beneficiary, windowsMs: WINDOWS_MS.beneficiary },
    { key: keys.outgoing, windowsMs: WINDOWS_MS.outgoing },
    { key: keys.nearThreshold, windowsMs: WINDOWS_MS.nearThreshold },
  ];
}

/** The longest window of each key (0: the `everOnly` pair key, kept apart). */
const WINDOW_MAX_MS = Object.fromEntries(
  Object.entries(WINDOWS_MS).map(([name, windows]) => [name, Math.max(0, ...windows)]),
) as Record<keyof CounterKeys, number>;

/** A key one payment counts: which of its keys, the key, and the longest window it is read over. */
export interface CountedKey {
  name: keyof CounterKeys;
  key: string;
  windowMaxMs: number;
  everOnly?: true;
}

/**
 * What one payment counts, once it reached the risk step, whatever it decided: every attempt from the source,
 * of the pattern, of the pair and to the beneficiary; near-threshold attempts when its amount fell in the
 * structuring band; and the sender's outgoing total only for money that moved or is held (not declined).
 */
export function attemptCounts(
  keys: CounterKeys,
  counted: { inStructuringBand: boolean; declined: boolean },
): CountedKey[] {
  const names: (keyof CounterKeys)[] = ['source', 'pattern', 'pair', 'beneficiary'];
  if (counted.inStructuringBand) names.push('nearThreshold');
  if (!counted.declined) names.push('outgoing');
  return names.map((name) => ({
    name,
    key: keys[name],
    windowMaxMs: WINDOW_MAX_MS[name],
    ...(name === 'pair' ? { everOnly: true as const } : {}),
  }));
}
