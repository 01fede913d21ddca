import type { FastifyReply, FastifyRequest } from 'fastify';
import type { IdempotentReply } from '../app/idempotent.ts';
import { AppError } from '../domain/errors.ts';
import { IDEMPOTENCY_KEY_PATTERN } from '../domain/idempotency.ts';

/**
 * The Idempotency-Key header on the way in, and stored responses on the way out. Required on payments and
 * refunds (the contract's), optional on every other state-changing POST: honoured when sent.
 */

/** The header, required and checked: 400 IDEMPOTENCY_KEY_REQUIRED (absent or empty) or VALIDATION_ERROR. */
export function idempotencyKeyOf(req: FastifyRequest): string {
  const key = req.headers['idempotency-key'];
  if (key === undefined || key === '') {
    throw new AppError(
      'IDEMPOTENCY_KEY_REQUIRED',
      'send an Idempotency-Key header (1..255 printable ASCII characters)',
    );
  }
  return checked(key);
}

/**
 * The header where it is optional: undefined when absent. Sent but malformed (empty included) is a 400
 * VALIDATION_ERROR: a client that sends the header means to be protected, so it is never silently ignored.
 */
export function optionalIdempotencyKeyOf(req: FastifyRequest): string | undefined {
  const key = req.headers['idempotency-key'];
  return key === undefined ? undefined : checked(key);
}

function checked(key: string | string[]): string {
  if (typeof key === 'string' && IDEMPOTENCY_KEY_PATTERN.test(key)) return key;
  throw new AppError('VALIDATION_ERROR', 'Idempotency-Key must be 1..255 printable ASCII characters', [
    { field: 'Idempotency-Key', message: 'must be 1..255 printable ASCII characters' },
  ]);
}

/**
 * Sends an idempotent response as its exact bytes, so every replay is identical, with
 * `Idempotency-Replayed: true|false` when a key was sent. `body` overrides the bytes sent (a receipt appended
 * after the stored ones).
 */
export function sendStored(reply: FastifyReply, result: IdempotentReply, body = result.body): FastifyReply {
  reply.code(result.statusCode).header('content-type', 'application/json; charset=utf-8');
  if (result.replayed !== null) reply.header('idempotency-replayed', result.replayed ? 'true' : 'false');
  return reply.send(body);
}
