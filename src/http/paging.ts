import { createHash } from 'node:crypto';
import { AppError } from '../domain/errors.ts';

/**
 * Opaque cursors: base64url of the position after which the next page starts. Clients must not build them;
 * a cursor that does not decode is a 400.
 */
export function encodeCursor(position: number | null): string | null {
  return position === null ? null : Buffer.from(JSON.stringify({ p: position })).toString('base64url');
}

export function decodeCursor(cursor: string | undefined): number {
  return cursor === undefined ? 0 : cursorFields(cursor).position;
}

/**
 * A cursor bound to its list: it also carries a digest of the list it pages (which list, its order and its
 * filters), and is refused (400) with any other. Reusing a cursor with another filter or order would otherwise
 * silently skip or repeat rows.
 */
export function encodeBoundCursor(position: number | null, list: string): string | null {
  if (position === null) return null;
  return Buffer.from(JSON.stringify({ p: position, l: listDigest(list) })).toString('base64url');
}

export function decodeBoundCursor(cursor: string | undefined, list: string): number {
  if (cursor === undefined) return 0;
  const { position, digest } = cursorFields(cursor);
  if (digest !== listDigest(list)) {
    throw new AppError('VALIDATION_ERROR', 'cursor belongs to another list, filter or order', [
      {
        field: '/cursor',
        message: 'the cursor was made for another filter or order: start again without it',
      },
    ]);
  }
  return position;
}

/** A cursor's position (a safe, non-negative integer) and list digest, or the 400 for one that does not decode. */
function cursorFields(cursor: string): { position: number; digest: unknown } {
  let parsed: unknown = null;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    // the 400 below
  }
  const { p: position, l: digest } = (parsed ?? {}) as { p?: unknown; l?: unknown };
  if (typeof position !== 'number' || !Number.isSafeInteger(position) || position < 0) {
    throw new AppError('VALIDATION_ERROR', 'cursor is not valid', [
      { field: '/cursor', message: 'invalid cursor' },
    ]);
  }
  return { position, digest };
}

const listDigest = (list: string): string =>
  createHash('sha256').update(list).digest('base64url').slice(0, 12);

export function pageLimit(limit: number | undefined): number {
  return limit ?? 50;
}

/**
 * A cursor over a list ordered by (time, seq), bound to its list like encodeBoundCursor: the last row's time
 * and seq (regulatory reports, ordered by when each row was made; src/app/reports.ts).
 */
export function encodeBoundKeyset(
  position: { atMs: number; seq: number } | null,
  list: string,
): string | null {
  if (position === null) return null;
  return Buffer.from(JSON.stringify({ p: position.seq, t: position.atMs, l: listDigest(list) })).toString(
    'base64url',
  );
}

export function decodeBoundKeyset(
  cursor: string | undefined,
  list: string,
): { atMs: number; seq: number } | null {
  if (cursor === undefined) return null;
  const seq = decodeBoundCursor(cursor, list);
  const { t: atMs } = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as { t?: unknown };
  if (typeof atMs !== 'number' || !Number.isSafeInteger(atMs) || atMs < 0) {
    throw new AppError('VALIDATION_ERROR', 'cursor is not valid', [
      { field: '/cursor', message: 'invalid cursor' },
    ]);
  }
  return { atMs, seq };
}
