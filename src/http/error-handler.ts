import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type {
  FastifyBaseLogger,
  FastifyError,
  FastifyReply,
  FastifyRequest,
  FastifySchemaValidationError,
} from 'fastify';
import { InvariantViolation } from '../domain/assert.ts';
import { AppError, ERROR_CATALOGUE, type ErrorCode, type ErrorDetail } from '../domain/errors.ts';
import { ownValue } from '../domain/own.ts';
import { isDatabaseUnavailable } from '../storage/errors.ts';
import {
  clearInFlight,
  clientRequestIdOf,
  inFlightRequestId,
  newRequestId,
  publicRequestId,
  requestIdHeaders,
} from './request-ids.ts';

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

/** The most validation details one error carries; the first ones are the most useful. */
export const VALIDATION_DETAILS_MAX = 20;

/** Retry-After when the code that refuses a request did not set a better one. */
export const RETRY_AFTER_DEFAULT_SECONDS = { 429: '1', 503: '5' } as const;

export function errorHandler(onFatal: (error: Error) => void) {
  return function handleError(error: FastifyError | Error, request: FastifyRequest, reply: FastifyReply) {
    if (connectionGone(request, reply)) {
      // Nobody to answer: the client hung up, or the clientError handler already wrote a 408 and closed.
      // A failure of ours is still logged; the client's own disconnect (a 4xx-like abort) is not an error.
      const statusCode = (error as FastifyError).statusCode;
      if (!(error instanceof AppError) && !(typeof statusCode === 'number' && statusCode < 500)) {
        request.log.error({ err: error, reqId: request.id }, 'request failed after the client left');
      }
      if (inFlightRequestId(request.raw.socket) === request.id) {
        clearInFlight(request.raw.socket, request.id);
        logAccess(request.log, { method: request.method, route: routeOf(request), statusCode: 499 }, request);
      }
      if (error instanceof InvariantViolation) onFatal(error);
      return;
    }
    const { code, message, details } = classify(error, request);
    const status = code === 'INTERNAL_ERROR' ? 500 : ERROR_CATALOGUE[code];
    if (status >= 500 && code !== 'SERVICE_UNAVAILABLE') {
      request.log.error({ err: error, reqId: request.id }, 'request failed');
    }
    // Answered before its body arrived (a 401 in onRequest, a 429, a 503): the rest of the body would be read
    // as the next request, or time out as 408 on a connection already answered. Close it after this response.
    if (!request.raw.complete) reply.header('connection', 'close');
    void reply
      .code(status)
      .send(errorBody(code, message, publicRequestId(request.id, request.headers), details));
    if (error instanceof InvariantViolation) onFatal(error);
  };
}

/** The request's socket is closed: the response cannot be written any more. */
function connectionGone(request: FastifyRequest, reply: FastifyReply): boolean {
  return reply.raw.destroyed === true || request.raw.socket?.destroyed === true;
}

function routeOf(request: FastifyRequest): string {
  return request.routeOptions?.url ?? 'unmatched';
}

/**
 * The one access line per request: method, route pattern, status, duration, the server's id (the logger's
 * reqId binding) and the client's correlation id when it sent one. No headers, bodies or query strings:
 * nothing personal or secret.
 */
export function logAccess(
  log: FastifyBaseLogger,
  line: { method: string; route: string; statusCode: number; durationMs?: number },
  request?: FastifyRequest,
): void {
  const clientRequestId = request ? clientRequestIdOf(request.headers) : null;
  log.info(clientRequestId === null ? line : { ...line, clientRequestId }, 'request');
}

/**
 * Errors the router raises before any hook runs (fastify's `frameworkErrors`): a URL whose percent-encoding
 * does not decode, a path parameter over the router's length limit. Same envelope and headers as the rest;
 * no hook runs for these, so the access line is written here.
 */
export function frameworkErrorHandler(
  error: FastifyError,
  request: FastifyRequest,
  reply: FastifyReply,
): void {
  let code: ErrorCode = 'MALFORMED_REQUEST';
  let message = 'the request is not valid';
  if (error.code === 'FST_ERR_BAD_URL') {
    code = 'VALIDATION_ERROR';
    message = 'the URL is not valid: its percent-encoding does not decode to UTF-8';
  } else if (error.code === 'FST_ERR_MAX_PARAM_LENGTH') {
    code = 'VALIDATION_ERROR';
    message = 'a path segment is too long';
  }
  const status = ERROR_CATALOGUE[code];
  void reply
    .code(status)
    .headers(requestIdHeaders(request.id, clientRequestIdOf(request.headers)))
    .send(errorBody(code, message, publicRequestId(request.id, request.headers)));
  logAccess(request.log, { method: request.method, route: 'unmatched', statusCode: status }, request);
}

/**
 * Errors of Node's HTTP parser and timeouts, before (or instead of) a fastify request: headers over 16 KiB
 * (431), bytes that are not HTTP (400 MALFORMED_REQUEST), a request whose headers or body did not arrive
 * within REQUEST_TIMEOUT_MS (408, also when the handler already started waiting for the body). Written
 * straight to the socket in the one envelope, then the connection is closed. Nothing is written when a
 * response is already under way on the socket (it would corrupt it) or the socket cannot be written.
 */
export function clientErrorHandler(logger: FastifyBaseLogger) {
  return function onClientError(error: Error & { code?: string }, socket: Duplex): void {
    if (error.code === 'ECONNRESET' || socket.destroyed) return;
    const { code, message } = clientErrorOf(error.code);
    const status = ERROR_CATALOGUE[code];
    const inFlightId = inFlightRequestId(socket);
    const requestId = inFlightId ?? newRequestId();
    if (inFlightId !== undefined) clearInFlight(socket, inFlightId);
    // Node's own default handler makes the same check on this (internal, long-stable) field.
    const response = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
    if (socket.writable && response?.headersSent !== true) {
      const body = JSON.stringify(errorBody(code, message, requestId));
      const headers = {
        'content-type': 'application/json; charset=utf-8',
        'content-length': String(Buffer.byteLength(body)),
        connection: 'close',
        ...requestIdHeaders(requestId, null),
        ...(status === 503 || status === 429 ? { 'retry-after': RETRY_AFTER_DEFAULT_SECONDS[status] } : {}),
      };
      const head = Object.entries(headers).map(([name, value]) => `${name}: ${value}`);
      socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n${head.join('\r\n')}\r\n\r\n${body}`);
    }
    logger.info(
      { reqId: requestId, route: 'unparsed', statusCode: status, parserError: error.code ?? 'unknown' },
      'request',
    );
    socket.destroy();
  };
}

function clientErrorOf(nodeCode: string | undefined): { code: ErrorCode; message: string } {
  switch (nodeCode) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return {
        code: 'REQUEST_TIMEOUT',
        message: 'the request did not arrive in time; the connection is closed',
      };
    case 'HPE_HEADER_OVERFLOW':
      return { code: 'HEADERS_TOO_LARGE', message: 'the request line and headers exceed 16 KiB' };
    case 'HPE_INVALID_EOF_STATE':
      return { code: 'MALFORMED_REQUEST', message: 'the connection ended before the request was complete' };
    default:
      return { code: 'MALFORMED_REQUEST', message: 'the request is not valid HTTP/1.1' };
  }
}

function classify(
  error: FastifyError | Error,
  request: FastifyRequest,
): { code: ErrorCode; message: string; details?: ErrorDetail[] } {
  if (error instanceof AppError) return { code: error.code, message: error.message, details: error.details };
  const fastifyError = error as FastifyError;
  if (fastifyError.validation) {
    // Ajv reports every error (allErrors): a body with 50,000 unknown keys must not answer 50,000 details.
    const details = fastifyError.validation.slice(0, VALIDATION_DETAILS_MAX).map((v) => ({
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
  if (isDatabaseUnavailable(error)) {
    request.log.warn({ err: error, reqId: request.id }, 'the database is unavailable');
    return { code: 'SERVICE_UNAVAILABLE', message: 'the database is unavailable; retry later' };
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
