import { assert } from './assert.ts';

/**
 * Canonical JSON per RFC 8785 (JCS) for the values this service produces: objects with keys sorted by UTF-16
 * code units, no whitespace, strings escaped as ECMAScript's JSON.stringify does, and numbers restricted to
 * safe integers (so the ES number serialisation RFC 8785 requires is simply the decimal integer). An outside
 * verifier can recompute audit hashes and request fingerprints from the JSON alone.
 */
export function canonicalJson(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      assert(Number.isSafeInteger(value), 'canonicalJson only serialises safe integers');
      return String(value);
    case 'object':
      if (value === null) return 'null';
      return Array.isArray(value) ? canonicalArray(value) : canonicalObject(value as Record<string, unknown>);
    default:
      throw new TypeError(`canonicalJson cannot serialise a ${typeof value}`);
  }
}

// Loops and string appends rather than map/join: audit hashing serialises every entry, on the hot path.
function canonicalArray(items: unknown[]): string {
  let out = '[';
  for (let i = 0; i < items.length; i++) out += (i === 0 ? '' : ',') + canonicalJson(items[i]);
  return `${out}]`;
}

function canonicalObject(object: Record<string, unknown>): string {
  // The default sort compares UTF-16 code units, which is the order RFC 8785 asks for.
  const keys = Object.keys(object).sort();
  let out = '{';
  for (const key of keys) {
    const v = object[key];
    if (v === undefined) continue;
    out += `${out.length === 1 ? '' : ','}${JSON.stringify(key)}:${canonicalJson(v)}`;
  }
  return `${out}}`;
}
