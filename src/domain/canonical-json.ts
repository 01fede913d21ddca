import { assert } from './assert.ts';

/**
 * Canonical JSON per RFC 8785 (JCS) for the values this service produces: objects with keys sorted by UTF-16
 * code units, no whitespace, strings escaped as ECMAScript's JSON.stringify does, and numbers restricted to
 * safe integers (so the ES number serialisation RFC 8785 requires is simply the decimal integer). An outside
 * verifier can recompute audit hashes and request fingerprints from the JSON alone.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    assert(Number.isSafeInteger(value), 'canonicalJson only serialises safe integers');
    return String(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  throw new TypeError(`canonicalJson cannot serialise a ${typeof value}`);
}
