/**
 * Own-property lookups, for every key a client (or a configuration file) can name that is resolved against a
 * plain object: KYC tiers, rule ids, status maps, error codes, roles. `key in record` and `record[key]` follow
 * the prototype chain, so "constructor", "__proto__", "toString" and "hasOwnProperty" are found in every
 * object: a tier named "constructor" would pass `in` and then read its limits as `undefined`.
 * `Object.hasOwn` sees only the record's own keys. (A `Map` or `Set` has no such chain: prefer one for new
 * lookup tables.)
 */
export function hasOwn(record: object, key: PropertyKey): boolean {
  return Object.hasOwn(record, key);
}

/** The record's own value under `key`, or undefined when the record itself has no such key. */
export function ownValue<V>(record: Readonly<Record<string, V>>, key: string): V | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}
