import type { FastifyError, FastifyReply, FastifyRequest, FastifySchemaValidationError } from 'fastify';
import { InvariantViolation } from '../domain/assert.ts';
import { AppError, type ErrorCode, type ErrorDetail } from '../domain/errors.ts';
import { ownValue } from '../domain/own.ts';

/**
 * The one place where an error becomes a response. Client mistakes keep their stable code; anything
 * unexpected is a 500 that says nothing about internals. An invariant violation also stops the process
 * (`onFatal`): the data may be wrong, and serving on would spread it.
 */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_CONTENT_TYPE',
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'VALIDATION_ERROR',
};

export function errorBody(code: ErrorCode, message: string, requestId: string, details?: ErrorDetail[]) {
  return {
    error: details === undefined ? { code, message, requestId } : { code, message, requestId, details },
  };
}

export function errorHandler(onFatal: (error: Error) => void) {
  return function handleError(error: FastifyError | Error, request: FastifyRequest, reply: FastifyReply) {
    const { code, message, details } = classify(error, request);
    const status = code === 'INTERNAL_ERROR' ? 500 : new AppError(code, message).status;
    if (status >= 500) request.log.error({ err: error, reqId: request.id }, 'request failed');
    if (code === 'RATE_LIMITED' && !reply.hasHeader('retry-after')) reply.header('retry-after', '1');
    void reply.code(status).send(errorBody(code, message, request.id, details));
    if (error instanceof InvariantViolation) onFatal(error);
  };
}

function classify(
  error: FastifyError | Error,
  request: FastifyRequest,
): { code: ErrorCode; message: string; details?: ErrorDetail[] } {
  if (error instanceof AppError) return { code: error.code, message: error.message, details: error.details };
  const fastifyError = error as FastifyError;
  if (fastifyError.validation) {
    const details = fastifyError.validation.map((v) => ({
      field: detailField(v, fastifyError.validationContext),
      message: v.message ?? 'is invalid',
    }));
    return {
      code: 'VALIDATION_ERROR',
      message: `the request ${fastifyError.validationContext ?? 'body'} is invalid`,
      details,
    };
  }
  // Own keys only: an error's `code` is free text (a library's, or a plugin's), never a prototype member.
  const mapped =
    typeof fastifyError.code === 'string' ? ownValue(FASTIFY_CODES, fastifyError.code) : undefined;
  if (mapped !== undefined) return { code: mapped, message: publicMessage(mapped) };
  if (fastifyError.statusCode === 429) return { code: 'RATE_LIMITED', message: 'too many requests' };
  if (
    typeof fastifyError.statusCode === 'number' &&
    fastifyError.statusCode >= 400 &&
    fastifyError.statusCode < 500
  ) {
    request.log.warn({ fastifyCode: fastifyError.code, reqId: request.id }, 'unmapped client error');
    return { code: 'VALIDATION_ERROR', message: 'the request is invalid' };
  }
  return { code: 'INTERNAL_ERROR', message: 'internal error; the request id identifies it in the logs' };
}

/**
 * The JSON pointer of the offending field. Ajv reports a missing or an unknown property on its parent object;
 * the client needs the property itself ("/name", "/nickname"), not just "/body".
 */
function detailField(v: FastifySchemaValidationError, context: string | undefined): string {
  const property = v.params['missingProperty'] ?? v.params['additionalProperty'];
  if (typeof property === 'string') return `${v.instancePath}/${property}`;
  return v.instancePath === '' ? `/${context ?? 'body'}` : v.instancePath;
}

function publicMessage(code: ErrorCode): string {
  switch (code) {
    case 'UNSUPPORTED_CONTENT_TYPE':
      return 'send the body as application/json';
    case 'PAYLOAD_TOO_LARGE':
      return 'the body is larger than 1,000,000 bytes';
    case 'INVALID_JSON':
      return 'the body is not valid JSON';
    default:
      return 'the request is invalid';
  }
}
