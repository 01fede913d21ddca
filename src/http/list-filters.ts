import { parseIsoTime } from '../app/api-keys.ts';
import { AppError } from '../domain/errors.ts';
import type { PaymentStatus } from '../domain/types.ts';
import type { ListFilter } from '../storage/store.ts';
import { METADATA_FILTER_KEY } from './schemas.ts';

/**
 * The filters of GET /v1/payments and GET /v1/ledger (issue 17), from the query the route schema has checked
 * (shapes: ids, digits, RFC 3339 instants, `metadata[key]` names and values) to a ListFilter, with the checks
 * a schema cannot make: amounts within the safe integers, calendar dates, ranges that are not inverted, and
 * how many metadata pairs. Each is a 400 VALIDATION_ERROR naming the parameter.
 */

/** Metadata pairs per request at most: each one past the first is a primary-key probe per row read. */
export const METADATA_FILTERS_MAX = 5;

const METADATA_PARAM = new RegExp(`^metadata\\[(${METADATA_FILTER_KEY})\\]$`);

/** The query's filter parameters, as the route schemas declare them (metadata[...] as extra string keys). */
export interface ListFilterQuery {
  accountId?: string;
  counterpartyAccountId?: string;
  createdFrom?: string;
  createdTo?: string;
  amountMin?: string;
  amountMax?: string;
  status?: PaymentStatus;
}

function invalid(field: string, message: string): AppError {
  return new AppError('VALIDATION_ERROR', `${field} ${message}`, [{ field: `/${field}`, message }]);
}

function amountOf(text: string | undefined, field: string): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isSafeInteger(value)) {
    throw invalid(field, `must be a whole number of minor units, at most ${Number.MAX_SAFE_INTEGER}`);
  }
  return value;
}

/**
 * The `metadata[key]=value` pairs, sorted by key (one pair per key: a repeated parameter is an array, which
 * the schema refuses). Only the query's own keys are read, so `metadata[__proto__]` is a key like any other.
 */
function metadataOf(query: object): [string, string][] {
  const pairs: [string, string][] = [];
  for (const [param, value] of Object.entries(query)) {
    const key = METADATA_PARAM.exec(param)?.[1];
    if (key === undefined || typeof value !== 'string') continue;
    pairs.push([key, value]);
    if (pairs.length > METADATA_FILTERS_MAX) {
      throw invalid('metadata', `takes at most ${METADATA_FILTERS_MAX} key=value pairs per request`);
    }
  }
  return pairs.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

export function listFilterOf(query: ListFilterQuery): ListFilter {
  const filter: ListFilter = {
    accountId: query.accountId,
    counterpartyAccountId: query.counterpartyAccountId,
    createdFromMs:
      query.createdFrom === undefined ? undefined : parseIsoTime(query.createdFrom, '/createdFrom'),
    createdToMs: query.createdTo === undefined ? undefined : parseIsoTime(query.createdTo, '/createdTo'),
    amountMin: amountOf(query.amountMin, 'amountMin'),
    amountMax: amountOf(query.amountMax, 'amountMax'),
    status: query.status,
    metadata: metadataOf(query),
  };
  const { createdFromMs: from, createdToMs: to, amountMin, amountMax } = filter;
  if (from !== undefined && to !== undefined && from >= to) {
    throw invalid('createdFrom', 'must be before createdTo (createdFrom is inclusive, createdTo exclusive)');
  }
  if (amountMin !== undefined && amountMax !== undefined && amountMin > amountMax) {
    throw invalid('amountMin', 'must not be greater than amountMax (both are inclusive)');
  }
  return filter;
}

/**
 * What a cursor is bound to besides the list's own prefix (src/http/paging.ts): every filter that is set, in
 * one canonical text (instants as milliseconds, metadata sorted by key), leaving out those the prefix already
 * names. Empty when none is set, so the cursors of lists without the new filters stay as they were.
 */
export function filterBinding(filter: ListFilter, inPrefix: readonly (keyof ListFilter)[]): string {
  const bound = Object.entries(filter).filter(
    ([name, value]) =>
      !inPrefix.includes(name as keyof ListFilter) &&
      value !== undefined &&
      !(Array.isArray(value) && value.length === 0),
  );
  return bound.length === 0 ? '' : `|${JSON.stringify(bound)}`;
}
