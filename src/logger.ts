import pino, { type DestinationStream, type Logger } from 'pino';

/**
 * Operational logs: JSON lines. We never log bodies or headers, and redaction is the second line of defence
 * for anything that slips into a log object: credentials, secrets and the customers' personal data.
 */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'headers.authorization',
  'authorization',
  '*.authorization',
  'secret',
  '*.secret',
  'token',
  '*.token',
  'name',
  '*.name',
  'documentReference',
  '*.documentReference',
  'accountNumber',
  '*.accountNumber',
  'body',
  '*.body',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      redact: { paths: REDACTED_PATHS, censor: '[REDACTED]' },
      base: { service: 'payments-api' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination ?? pino.destination(1),
  );
}
