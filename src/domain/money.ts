import { assert } from './assert.ts';

/**
 * Money is an integer count of minor units (cents for USD), always a JS safe integer. We never use floats
 * and never parse a string twice: the HTTP schema rejects anything that is not a JSON integer in range.
 */
export const CENTS_MAX = Number.MAX_SAFE_INTEGER;

export const CURRENCY_PATTERN = '^[A-Z]{3}$';
export const COUNTRY_PATTERN = '^[A-Z]{2}$';

export function isPositiveCents(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0;
}

/** Adds two amounts, or returns null when the result would leave the safe integer range. */
export function addCents(a: number, b: number): number | null {
  assert(Number.isSafeInteger(a) && Number.isSafeInteger(b), 'addCents operands must be safe integers');
  const sum = a + b;
  return Number.isSafeInteger(sum) ? sum : null;
}
