/** Recognises a unique-constraint violation from either driver (SQLite and PostgreSQL name them differently). */
export function isUniqueViolation(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === '23505';
}

/** Node socket errors of a database connection that is gone or cannot be made. */
const CONNECTION_ERROR_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/**
 * Whether an error says the database cannot be reached (rather than that a statement was wrong): a refused or
 * dropped connection, a connection that could not be made in time, or PostgreSQL's connection-exception class
 * (08) and shutdown codes (57P01-57P03). The request gets 503 and may be retried; it is not a bug.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  if (typeof code === 'string') {
    if (CONNECTION_ERROR_CODES.has(code) || code.startsWith('08')) return true;
    if (code === '57P01' || code === '57P02' || code === '57P03') return true;
  }
  // node-postgres's pool and client say these in words only.
  return (
    typeof message === 'string' &&
    /^(timeout exceeded when trying to connect|Connection terminated( unexpectedly| due to connection timeout)?)$/.test(
      message,
    )
  );
}
