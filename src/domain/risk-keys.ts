/**
 * What a payment counts, and over which windows it reads what was counted: the layout of the risk counters,
 * shared by the pipeline (src/app/risk-assessment.ts), which reads and counts, and the SQLite adapter, which
 * rebuilds its in-memory counters from the stored payments at start-up (src/storage/counter-memory.ts). One
 * layout, so a rebuilt counter is the counter the pipeline would have kept.
 */
const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;

/** A key's running totals at a time: `count` events and `sumCents` in all, up to and including `atMs`. */
export interface CounterPoint {
  atMs: number;
  count: number;
  sumCents: bigint;
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

/** The longest window of each key a payment counts (0: an `everOnly` key, kept apart). */
export function counterWindowMaxMs(keys: CounterKeys): Record<string, number> {
  const out: Record<string, number> = Object.create(null);
  for (const [name, key] of Object.entries(keys) as [keyof CounterKeys, string][])
    out[key] = Math.max(0, ...WINDOWS_MS[name]);
  return out;
}

/**
 * What one payment counts, once it reached the risk step, whatever it decided: every attempt from the source,
 * of the pattern, of the pair and to the beneficiary; near-threshold attempts when its amount fell in the
 * structuring band; and the sender's outgoing total only for money that moved or is held (not declined).
 */
export function attemptCounts(
  keys: CounterKeys,
  counted: { inStructuringBand: boolean; declined: boolean },
): { key: string; everOnly?: boolean }[] {
  const out: { key: string; everOnly?: boolean }[] = [
    { key: keys.source },
    { key: keys.pattern },
    { key: keys.pair, everOnly: true },
    { key: keys.beneficiary },
  ];
  if (counted.inStructuringBand) out.push({ key: keys.nearThreshold });
  if (!counted.declined) out.push({ key: keys.outgoing });
  return out;
}
