import { AppError } from '../domain/errors.ts';

/**
 * Instants in query strings (`at`, `from`, `to`): RFC 3339 date-times with an explicit offset, to the
 * millisecond. A time without an offset would be read in the server's zone, so it is refused; so is a date
 * that does not exist (Date.parse would roll 2026-02-30 over into March).
 */
const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})T([01]\d|2[0-3]):([0-5]\d):([0-5]\d)(\.\d{1,3})?(Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$/;

/** Earliest and latest instants accepted: the years 1970 to 9999 (the API's own timestamps are in this range). */
const INSTANT_MS_MIN = 0;
const INSTANT_MS_MAX = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

export function parseInstantMs(value: string, field: string): number {
  const match = RFC3339.exec(value);
  const invalid = () =>
    new AppError('VALIDATION_ERROR', `${field} must be an RFC 3339 date-time with an offset`, [
      { field: `/${field}`, message: 'e.g. 2026-12-01T09:30:00Z' },
    ]);
  if (match === null) throw invalid();
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth) throw invalid();
  const ms = Date.parse(value);
  if (!Number.isSafeInteger(ms) || ms < INSTANT_MS_MIN || ms > INSTANT_MS_MAX) throw invalid();
  return ms;
}
