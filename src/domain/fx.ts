import { assert, assertSafeInteger } from './assert.ts';
import { currencyExponent } from './iso-codes.ts';

/**
 * Foreign exchange arithmetic, pure (docs/decisions/0021-fx-quotes.md). A rate is a decimal STRING, never a
 * float: "151.37" in the pair USD/JPY means 1 USD buys 151.37 JPY (market convention: the price of one unit of
 * the first currency in the second). Amounts are integer minor units (ISO 4217 exponents: JPY 0, USD 2, BHD 3),
 * and the conversion is exact integer arithmetic (BigInt), rounded DOWN to the destination's minor unit: the
 * payee never gets more than the rate says, and the sub-unit remainder stays with the house. Rounding down is
 * also what a client can reproduce without a rounding-mode argument.
 */

/** At most 12 digits before and 12 after the point: more than any traded rate needs, and the BigInts stay small. */
export const RATE_PATTERN = '^(0|[1-9][0-9]{0,11})(\\.[0-9]{1,12})?$';
const RATE_REGEX = new RegExp(RATE_PATTERN);

/** A parsed rate: `units / 10^scale`, e.g. "151.37" is 15137 / 10^2. `text` is the canonical form shown. */
export interface Rate {
  text: string;
  units: bigint;
  scale: number;
}

/** A rate from its decimal text; null when it is malformed or not positive. Trailing zeros are kept as given. */
export function parseRate(text: string): Rate | null {
  if (!RATE_REGEX.test(text)) return null;
  const [whole, fraction = ''] = text.split('.') as [string, string?];
  const units = BigInt(whole + fraction);
  if (units === 0n) return null;
  return { text, units, scale: fraction.length };
}

export type Conversion =
  | { ok: true; destinationAmountCents: number }
  | { ok: false; problem: 'zero' | 'too_large' };

/**
 * Converts `sourceAmountCents` (minor units of the source currency) at `rate` into minor units of the
 * destination currency, rounded down:
 *
 *   destination = floor(source × units × 10^destExp / (10^scale × 10^sourceExp))
 *
 * `zero`: the amount is too small to buy one destination minor unit; `too_large`: beyond the safe integers.
 */
export function convert(
  sourceAmountCents: number,
  rate: Rate,
  sourceCurrency: string,
  destinationCurrency: string,
): Conversion {
  assertSafeInteger(sourceAmountCents, 'FX source amount');
  assert(sourceAmountCents > 0, 'an FX source amount is positive');
  const sourceExp = currencyExponent(sourceCurrency);
  const destinationExp = currencyExponent(destinationCurrency);
  assert(sourceExp !== null && destinationExp !== null, 'FX currencies have ISO 4217 exponents');
  const numerator = BigInt(sourceAmountCents) * rate.units * 10n ** BigInt(destinationExp);
  const denominator = 10n ** BigInt(rate.scale + sourceExp);
  // BigInt division truncates toward zero, which for positive operands is rounding down.
  const destination = numerator / denominator;
  if (destination === 0n) return { ok: false, problem: 'zero' };
  if (destination > BigInt(Number.MAX_SAFE_INTEGER)) return { ok: false, problem: 'too_large' };
  return { ok: true, destinationAmountCents: Number(destination) };
}

/** `USD/JPY`: the key of a pair in the rates table, source first. */
export const pairKey = (sourceCurrency: string, destinationCurrency: string) =>
  `${sourceCurrency}/${destinationCurrency}`;

export const PAIR_PATTERN = /^([A-Z]{3})\/([A-Z]{3})$/;

/** At most this many pairs in a rates table: a bound on what start-up reads and keeps. */
export const RATE_PAIRS_MAX = 2000;

/**
 * A validated table of rates by pair. Each direction is its own entry: USD/EUR is not derived from EUR/USD,
 * because a desk's buy and sell rates differ (the spread), and an inverse would need rounding of its own.
 */
export type RateTable = ReadonlyMap<string, Rate>;

/** Parses `{"USD/JPY": "151.37", ...}`; returns the table or the first problem, in words. */
export function parseRateTable(
  input: unknown,
): { ok: true; table: RateTable } | { ok: false; problem: string } {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    return { ok: false, problem: 'rates must be an object of "SRC/DST": "decimal rate"' };
  }
  const entries = Object.entries(input);
  if (entries.length > RATE_PAIRS_MAX) return { ok: false, problem: `at most ${RATE_PAIRS_MAX} pairs` };
  const table = new Map<string, Rate>();
  for (const [pair, value] of entries) {
    const match = PAIR_PATTERN.exec(pair);
    if (match === null) return { ok: false, problem: `pair ${JSON.stringify(pair)} is not "SRC/DST"` };
    const [, source, destination] = match as unknown as [string, string, string];
    if (source === destination) return { ok: false, problem: `pair ${pair} names one currency twice` };
    for (const code of [source, destination]) {
      if (currencyExponent(code) === null) {
        return { ok: false, problem: `pair ${pair}: ${code} is not an ISO 4217 currency with minor units` };
      }
    }
    const rate = typeof value === 'string' ? parseRate(value) : null;
    if (rate === null) {
      return { ok: false, problem: `pair ${pair}: the rate must be a positive decimal string like "1.0825"` };
    }
    table.set(pair, rate);
  }
  return { ok: true, table };
}

/** A quote as stored: the terms a payment may use once, by the key that asked for it, until it expires. */
export interface FxQuote {
  id: string;
  apiKeyId: string;
  sourceCurrency: string;
  destinationCurrency: string;
  sourceAmountCents: number;
  /** The rate's decimal text (`Rate.text`), exactly as quoted. */
  rate: string;
  destinationAmountCents: number;
  requestId: string;
  createdAtMs: number;
  expiresAtMs: number;
  /** The payment that used it; null while unused. */
  paymentId: string | null;
  usedAtMs: number | null;
}

/**
 * What a cross-currency payment records of its quote (payments.fx): the payment's own `amountCents` and
 * `currency` are the source side; this is the other side and the rate that links them. An approval posts
 * exactly these amounts, whenever it happens (the rate was locked in when the payment was made).
 */
export interface FxTerms {
  quoteId: string;
  rate: string;
  destinationAmountCents: number;
  destinationCurrency: string;
}
