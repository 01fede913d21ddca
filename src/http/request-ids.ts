import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

/**
 * Request ids. The server always makes its own (`req_<24 hex>`, request.id): logs, ledger rows and audit
 * entries record that one. A client's sane X-Request-Id is its correlation id: echoed in the X-Request-Id
 * response header and in the error envelope's `requestId` (the contract: the envelope names the request the
 * way the header does), logged as `clientRequestId` in the access line beside the server's id,
 * never written as the server's id. X-Server-Request-Id always carries the server's id.
 */
export const CLIENT_REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

export function newRequestId(): string {
  return `req_${randomBytes(12).toString('hex')}`;
}

export function clientRequestIdOf(headers: IncomingHttpHeaders): string | null {
  const sent = headers['x-request-id'];
  return typeof sent === 'string' && CLIENT_REQUEST_ID_PATTERN.test(sent) ? sent : null;
}

/** The id a client sees for its request (X-Request-Id, the envelope's `requestId`): its own, else the server's. */
export function publicRequestId(serverId: string, headers: IncomingHttpHeaders): string {
  return clientRequestIdOf(headers) ?? serverId;
}

/** The two response headers, as a plain record (for fastify replies and raw socket writes alike). */
export function requestIdHeaders(serverId: string, clientId: string | null): Record<string, string> {
  return { 'x-request-id': clientId ?? serverId, 'x-server-request-id': serverId };
}

/**
 * The id of the request in flight on a socket, so a 408 written straight to the socket by the clientError
 * handler names the same request as the logs. Weak: a socket that is gone takes its entry with it.
 */
const inFlight = new WeakMap<object, string>();

export function markInFlight(socket: object | null | undefined, requestId: string): void {
  if (socket) inFlight.set(socket, requestId);
}

export function clearInFlight(socket: object | null | undefined, requestId: string): void {
  if (socket && inFlight.get(socket) === requestId) inFlight.delete(socket);
}

export function inFlightRequestId(socket: object): string | undefined {
  return inFlight.get(socket);
}
