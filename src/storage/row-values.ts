import { assert } from '../domain/assert.ts';

/**
 * Reading a row's values, for every storage file: the drivers give 64-bit integers as numbers (better-sqlite3),
 * strings or bigints (pg), and the API only ever holds safe integers, so a larger one is a broken invariant.
 */
export const num = (v: unknown): number => {
  const n = typeof v === 'bigint' || typeof v === 'string' ? Number(v) : (v as number);
  assert(Number.isSafeInteger(n), `database returned a non-safe integer: ${String(v)}`);
  return n;
};
export const str = (v: unknown): string => v as string;
export const nullableNum = (v: unknown): number | null => (v === null || v === undefined ? null : num(v));
export const nullableStr = (v: unknown): string | null =>
  v === null || v === undefined ? null : (v as string);
