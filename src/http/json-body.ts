import { isUtf8 } from 'node:buffer';
import type { FastifyRequest } from 'fastify';
import { AppError, type ErrorDetail } from '../domain/errors.ts';
import type { HttpApp } from './types.ts';

/**
 * The JSON body parser: fastify's own (secure-json-parse, so `__proto__` and `constructor.prototype` keys are
 * still refused), plus three checks it lacks, each linear in the body's length:
 * - nesting deeper than JSON_DEPTH_MAX is 400 INVALID_JSON (no request schema nests more than a few levels,
 *   and it bounds the recursion of the walk below);
 * - every string, values and keys at any depth, must be storable on both backends: no U+0000 (PostgreSQL
 *   text cannot hold it) and well-formed UTF-16 (a lone surrogate has no UTF-8 form). Otherwise 400
 *   VALIDATION_ERROR naming the field's JSON pointer;
 * - a key that appears twice in one object is 400 INVALID_JSON (JSON.parse keeps the last one silently, so the
 *   client and the server could read different bodies).
 * Duplicates are detected cheaply: the scan counts the keys written in the text, the walk counts the keys
 * the parsed objects hold; each object holds fewer only if it had a duplicate. Only then is the text scanned
 * again, with a set of keys per object, to name the duplicate. No maintained npm library detects duplicate
 * keys without a second full JSON parser in JavaScript, so the scanner is this small one.
 */
export const JSON_DEPTH_MAX = 32;
/**
 * Object keys per body. The largest request schema names a few dozen (metadata has at most 20); without a cap a
 * 1 MB body of 70,000 keys holds the event loop for ~100 ms in parsing and checks alone. The scan stops at the
 * first key past it, before JSON.parse.
 */
export const JSON_KEYS_MAX = 1_000;

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * A route whose body is a list of objects (POST /v1/payment-batches) allows more keys than JSON_KEYS_MAX:
     * as many as its schema can hold. The body's byte limit still bounds the parse.
     */
    jsonKeysMax?: number;
  }
}
/** Pointers in error details are cut to this length: a key can be as long as the body. */
const POINTER_CHARS_MAX = 200;

export function useJsonBody(app: HttpApp, bodyLimitBytes: number): void {
  const parse = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser(
    'application/json',
    { parseAs: 'buffer', bodyLimit: bodyLimitBytes },
    (request, body, done) => {
      // Decoding as text would silently turn malformed UTF-8 into U+FFFD and store that: refused instead.
      if (!isUtf8(body as Buffer)) {
        done(new AppError('INVALID_JSON', 'the body is not valid UTF-8'), undefined);
        return;
      }
      const text = (body as Buffer).toString('utf8');
      // The structure scan runs first: it bounds the depth before anything recursive sees the body.
      const keysMax = request.routeOptions.config.jsonKeysMax ?? JSON_KEYS_MAX;
      const structure = scanJsonStructure(text, { keysMax });
      if (structure.tooDeepAt !== null) {
        done(new AppError('INVALID_JSON', `the body nests deeper than ${JSON_DEPTH_MAX} levels`), undefined);
        return;
      }
      if (structure.keyCount > keysMax) {
        const message = `the body has more than ${keysMax} object keys`;
        done(new AppError('VALIDATION_ERROR', message, [{ field: '/body', message }]), undefined);
        return;
      }
      parse(request, text, (error, value) => {
        if (error) return done(error, undefined);
        const walk = walkParsed(value);
        if (walk.bad !== null) {
          const field = walk.bad.field === '' ? '/body' : walk.bad.field;
          return done(
            new AppError('VALIDATION_ERROR', 'the body has text that cannot be stored', [
              { field, message: walk.bad.message },
            ]),
            undefined,
          );
        }
        if (walk.keyCount !== structure.keyCount) {
          const pointer = findDuplicateKey(text) ?? '/body';
          return done(
            new AppError('INVALID_JSON', 'the body has a duplicate key', [
              { field: pointer, message: 'appears more than once in its object' },
            ]),
            undefined,
          );
        }
        done(null, value);
      });
    },
  );
}

interface Frame {
  isObject: boolean;
  /** In an object: the next string is a key (after `{` or `,`). */
  expectKey: boolean;
  /** The current member's key (object) or index (array), for the pointer of a problem. */
  key: string;
  index: number;
  /** Keys seen so far in this object, when looking for a duplicate. */
  keys: Set<string> | null;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const COMMA = 0x2c;

export interface Structure {
  /** How many object keys the text writes (duplicates included); the scan stops once it passes keysMax. */
  keyCount: number;
  /** The pointer where nesting passes depthMax, or null. */
  tooDeepAt: string | null;
  /** With `findDuplicate`: the pointer of the first duplicate key, or null. */
  duplicateAt: string | null;
}

/**
 * One pass over the text. The text may be malformed: the scan then stops quietly and JSON.parse reports the
 * error. Strings are skipped with indexOf, so each character is looked at a bounded number of times.
 * With `findDuplicate`, keys are decoded (so "a" and "\u0061" are one key) and kept per object.
 */
export function scanJsonStructure(
  text: string,
  options: { depthMax?: number; keysMax?: number; findDuplicate?: boolean } = {},
): Structure {
  const depthMax = options.depthMax ?? JSON_DEPTH_MAX;
  const keysMax = options.keysMax ?? JSON_KEYS_MAX;
  const findDuplicate = options.findDuplicate ?? false;
  const result: Structure = { keyCount: 0, tooDeepAt: null, duplicateAt: null };
  const stack: Frame[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const end = closingQuote(text, i);
      if (end < 0) return result;
      const top = stack.at(-1);
      if (top?.isObject && top.expectKey) {
        result.keyCount += 1;
        if (result.keyCount > keysMax) return result;
        top.expectKey = false;
        if (top.keys !== null) {
          const key = decodeKey(text, i, end);
          if (key === undefined) return result;
          if (top.keys.has(key)) {
            result.duplicateAt = pointerOf(stack, key);
            return result;
          }
          top.keys.add(key);
          top.key = key;
        }
      }
      i = end + 1;
      continue;
    }
    if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      if (stack.length >= depthMax) {
        result.tooDeepAt = pointerOf(stack);
        return result;
      }
      const isObject = c === OPEN_OBJECT;
      stack.push({
        isObject,
        expectKey: isObject,
        key: '',
        index: 0,
        keys: isObject && findDuplicate ? new Set() : null,
      });
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      stack.pop();
    } else if (c === COMMA) {
      const top = stack.at(-1);
      if (top?.isObject) top.expectKey = true;
      else if (top) top.index += 1;
    }
    i += 1;
  }
  return result;
}

/** The pointer of the first duplicate key in the text, or null (the slower scan: only on the error path). */
export function findDuplicateKey(text: string): string | null {
  return scanJsonStructure(text, { findDuplicate: true }).duplicateAt;
}

/** The index of the quote that closes the string opening at `start`, or -1. */
function closingQuote(text: string, start: number): number {
  let from = start + 1;
  for (;;) {
    const q = text.indexOf('"', from);
    if (q < 0) return -1;
    // A quote preceded by an odd number of backslashes is escaped. Each run is counted once, for the quote
    // right after it, so this stays linear.
    let b = q - 1;
    while (b > start && text.charCodeAt(b) === BACKSLASH) b -= 1;
    if ((q - 1 - b) % 2 === 0) return q;
    from = q + 1;
  }
}

function decodeKey(text: string, start: number, end: number): string | undefined {
  const raw = text.slice(start + 1, end);
  if (!raw.includes('\\')) return raw;
  try {
    return JSON.parse(text.slice(start, end + 1)) as string;
  } catch {
    return undefined;
  }
}

function pointerOf(stack: Frame[], last?: string): string {
  const segments: (string | number)[] = [];
  // Every frame but the innermost names the member that holds the next frame.
  for (let f = 0; f < stack.length - 1; f += 1) {
    const frame = stack[f]!;
    segments.push(frame.isObject ? frame.key : frame.index);
  }
  if (last !== undefined) segments.push(last);
  return pointer(segments);
}

/** RFC 6901 (`~` is `~0`, `/` is `~1`), cut to POINTER_CHARS_MAX. */
function pointer(segments: readonly (string | number)[]): string {
  const text = segments.map((s) => `/${String(s).replaceAll('~', '~0').replaceAll('/', '~1')}`).join('');
  return text.length > POINTER_CHARS_MAX ? `${text.slice(0, POINTER_CHARS_MAX)}…` : text;
}

/** Not typed in lib ES2023; on String.prototype since Node 20 (V8 11.1). */
function isWellFormed(text: string): boolean {
  return (text as string & { isWellFormed(): boolean }).isWellFormed();
}

/** Why a string cannot be stored on both backends, or null. */
export function textProblem(text: string): string | null {
  if (text.includes('\u0000')) return 'must not contain U+0000';
  if (!isWellFormed(text)) return 'must be well-formed Unicode (no lone surrogates)';
  return null;
}

/**
 * Walks a parsed value: the first string (value or key) that cannot be stored, with its JSON pointer, and the
 * number of object keys it holds. Recursive, so callers bound the depth first (the body's by
 * scanJsonStructure; a query string is two levels at most). The path is a stack of segments, turned into a
 * pointer only for a problem.
 */
export function walkParsed(value: unknown): { bad: Required<ErrorDetail> | null; keyCount: number } {
  const path: (string | number)[] = [];
  let keyCount = 0;
  const visit = (node: unknown): Required<ErrorDetail> | null => {
    if (typeof node === 'string') {
      const problem = textProblem(node);
      return problem === null ? null : { field: pointer(path), message: problem };
    }
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i += 1) {
        path.push(i);
        const bad = visit(node[i]);
        path.pop();
        if (bad !== null) return bad;
      }
      return null;
    }
    if (node !== null && typeof node === 'object') {
      const keys = Object.keys(node);
      keyCount += keys.length;
      for (const key of keys) {
        path.push(key);
        const keyProblem = textProblem(key);
        const bad =
          keyProblem === null
            ? visit((node as Record<string, unknown>)[key])
            : { field: pointer(path), message: `the property name ${keyProblem}` };
        path.pop();
        if (bad !== null) return bad;
      }
    }
    return null;
  };
  const bad = visit(value);
  return { bad, keyCount };
}

/** Query-string and path parameters: the same storable-text rule as bodies, checked before validation. */
export function checkRequestText(query: unknown, params: unknown): void {
  const bad = walkParsed(query).bad ?? walkParsed(params).bad;
  if (bad !== null) {
    throw new AppError('VALIDATION_ERROR', 'the URL has text that cannot be stored', [bad]);
  }
}

/**
 * preValidation for routes whose body has only optional fields: no body at all means `{}` (not a 400). Pair it
 * with `schema.bodyOptional: true`, which tells the OpenAPI document the body may be left out (openapi.ts).
 */
export async function bodyOptional(req: FastifyRequest): Promise<void> {
  req.body ??= {};
}
