import { AppError } from '../domain/errors.ts';

/**
 * Opaque cursors: base64url of the position after which the next page starts. Clients must not build them;
 * a cursor that does not decode is a 400.
 */
export function encodeCursor(position: number | null): string | null {
  return position === null ? null : Buffer.from(JSON.stringify({ p: position })).toString('base64url');
}

export function decodeCursor(cursor: string | undefined): number {
  if (cursor === undefined) return 0;
  try {
    const parsed: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    const position = (parsed as { p?: unknown }).p;
    if (typeof position === 'number' && Number.isSafeInteger(position) && position >= 0) return position;
  } catch {
    // fall through to the 400
  }
  throw new AppError('VALIDATION_ERROR', 'cursor is not valid', [
    { field: '/cursor', message: 'invalid cursor' },
  ]);
}

export function pageLimit(limit: number | undefined): number {
  return limit ?? 50;
}
