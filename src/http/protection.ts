import { readFileSync } from 'node:fs';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import type { FastifyReply, FastifyRequest } from 'fastify';
import ipaddr from 'ipaddr.js';
import type { LimitsConfig } from '../config.ts';
import { assert } from '../domain/assert.ts';
import { AppError } from '../domain/errors.ts';
import type { RateLimitKind } from '../metrics.ts';
import type { HttpApp } from './types.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set when a limit here refused the request: counted by kind in the metrics (request-metrics.ts). */
    rejectedBy?: RateLimitKind;
  }
}

/**
 * What one client may cost the others, per process: connection timeouts, load shedding, and rate limits per
 * API key and per address for failed authentication. Every table here has a fixed maximum size.
 */

/** Most API keys / client addresses tracked at once; the least recently seen is forgotten first. */
export const RATE_LIMIT_KEYS_MAX = 10_000;
export const AUTH_FAILURE_ADDRESSES_MAX = 50_000;
/** Shedding samples the event-loop delay this often (the mean over the interval is compared). */
const SHEDDING_SAMPLE_INTERVAL_MS = 500;
const SHEDDING_RETRY_AFTER_SECONDS = 2;
/** The histogram's sampling resolution; its own timer adds this much to every measured delay. */
const SHEDDING_RESOLUTION_MS = 10;
/**
 * Liveness and readiness answer under load: an orchestrator must not restart or drain a busy process. So do
 * the metrics (two primary-key reads): an overloaded process is when operators need them.
 */
const SHEDDING_EXEMPT_ROUTES = new Set(['/health', '/ready', '/metrics']);

/**
 * Node's HTTP server timeouts from REQUEST_TIMEOUT_MS. Node checks for overdue requests every
 * `connectionsCheckingInterval`, so the request timeout is shortened by one interval: a request whose headers
 * and body have not fully arrived is answered 408 (see clientErrorHandler) and closed within requestTimeoutMs.
 * Between requests, an idle keep-alive connection is closed after three request timeouts, at most 72 s
 * (fastify's default: longer than the 60 s idle timeout of common load balancers, so they close first and
 * never reuse a connection the server is closing). A connection on which nothing moves during a request (say,
 * a client that stops reading the response) is destroyed after twice the request timeout, and never before
 * SOCKET_IDLE_MS_MIN: a handler may legitimately work that long without a byte moving (the audit verify
 * request waits up to 25 s), and the socket's idle timer must not cut its answer off.
 */
const SOCKET_IDLE_MS_MIN = 60_000;
export function timeoutOptions(limits: LimitsConfig) {
  const checkIntervalMs = Math.min(1000, Math.max(25, Math.floor(limits.requestTimeoutMs / 5)));
  const requestTimeoutMs = limits.requestTimeoutMs - checkIntervalMs;
  assert(requestTimeoutMs > 0, 'the request timeout outlasts its checking interval');
  return {
    requestTimeout: requestTimeoutMs,
    keepAliveTimeout: Math.min(72_000, 3 * limits.requestTimeoutMs),
    connectionTimeout: Math.max(2 * limits.requestTimeoutMs, SOCKET_IDLE_MS_MIN),
    http: {
      connectionsCheckingInterval: checkIntervalMs,
      headersTimeout: requestTimeoutMs,
      requestTimeout: requestTimeoutMs,
    },
  };
}

/**
 * Token buckets keyed by a string, in a Map used as an LRU (re-inserted on every use; the oldest entry is
 * dropped beyond `keysMax`). A forgotten key starts again with a full bucket, which is the generous error.
 * Hand-written because neither @fastify/rate-limit nor rate-limiter-flexible has a token bucket (both count
 * fixed windows), and the refill arithmetic is a few lines. The clock is monotonic, never the wall clock.
 */
export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; atMs: number }>();

  constructor(
    readonly ratePerSecond: number,
    readonly burst: number,
    private readonly keysMax: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    assert(ratePerSecond > 0 && burst >= 1 && keysMax >= 1, 'a token bucket needs a rate, a burst and room');
  }

  /** The bucket's tokens now, refilled for the time since it was last touched; the entry moves to the end. */
  private refill(key: string): { tokens: number; atMs: number } {
    const nowMs = this.now();
    const bucket = this.buckets.get(key);
    let state: { tokens: number; atMs: number };
    if (bucket === undefined) {
      state = { tokens: this.burst, atMs: nowMs };
    } else {
      const refilled = bucket.tokens + ((nowMs - bucket.atMs) * this.ratePerSecond) / 1000;
      state = { tokens: Math.min(this.burst, refilled), atMs: nowMs };
      this.buckets.delete(key);
    }
    this.buckets.set(key, state);
    if (this.buckets.size > this.keysMax) {
      const oldest = this.buckets.keys().next().value as string;
      this.buckets.delete(oldest);
    }
    return state;
  }

  /** Spends `cost` tokens when there are that many (a cost above the burst is charged as the burst). */
  take(key: string, cost = 1): BucketState {
    const state = this.refill(key);
    const charge = Math.min(cost, this.burst);
    const allowed = state.tokens >= charge;
    if (allowed) state.tokens -= charge;
    return this.describe(state.tokens, allowed, charge);
  }

  /** Looks without spending: would a request now be admitted? */
  peek(key: string): BucketState {
    const bucket = this.buckets.get(key);
    if (bucket === undefined) return this.describe(this.burst, true);
    const state = this.refill(key);
    return this.describe(state.tokens, state.tokens >= 1);
  }

  get size(): number {
    return this.buckets.size;
  }

  private describe(tokens: number, allowed: boolean, needed = 1): BucketState {
    return {
      allowed,
      remaining: Math.max(0, Math.floor(tokens)),
      // Whole seconds, at least 1: until the tokens the request needs are back.
      retryAfterSeconds: Math.max(1, Math.ceil((needed - tokens) / this.ratePerSecond)),
      resetSeconds: Math.max(0, Math.ceil((this.burst - tokens) / this.ratePerSecond)),
    };
  }
}

export interface BucketState {
  allowed: boolean;
  /** Whole requests left in the bucket. */
  remaining: number;
  /** Seconds until one more request would be admitted (meaningful when not allowed). */
  retryAfterSeconds: number;
  /** Seconds until the bucket is full again. */
  resetSeconds: number;
}

/**
 * Per API key: a token bucket of RATE_LIMIT_BURST refilled at RATE_LIMIT_PER_SECOND, checked in preParsing,
 * after the onRequest authentication and before the body is read. Every response to a limited key carries
 * RateLimit-Limit / -Remaining / -Reset (IETF draft "RateLimit header fields for HTTP"); a 429 also carries
 * Retry-After. Off when RATE_LIMIT_PER_SECOND is 0.
 */
export function perKeyRateLimit(limits: LimitsConfig) {
  if (limits.rateLimitPerSecond === 0) return null;
  const buckets = new TokenBuckets(limits.rateLimitPerSecond, limits.rateLimitBurst, RATE_LIMIT_KEYS_MAX);
  return async function limitPerKey(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const apiKeyId = request.actor?.apiKeyId;
    if (apiKeyId === undefined) return;
    const state = buckets.take(apiKeyId, requestCost(request));
    reply.header('ratelimit-limit', String(buckets.burst));
    reply.header('ratelimit-remaining', String(state.remaining));
    reply.header('ratelimit-reset', String(state.allowed ? state.resetSeconds : state.retryAfterSeconds));
    if (!state.allowed) {
      request.rejectedBy = 'per_key';
      reply.header('retry-after', String(state.retryAfterSeconds));
      throw new AppError(
        'RATE_LIMITED',
        'this API key sends too many requests; retry after Retry-After seconds',
      );
    }
  };
}

/** A list page costs one token per LIST_ROWS_PER_TOKEN rows it asks for. */
const LIST_ROWS_PER_TOKEN = 50;

/**
 * What a request costs in tokens: 1, or for a list page its `limit` in units of 50 rows (a page of 500 costs
 * 10). Counting requests alone let one key stay under its rate with 400 concurrent pages of 500 (800 KB each)
 * and stall every other client; the cost makes the bucket measure the work, not the calls.
 */
export function requestCost(request: FastifyRequest): number {
  if (request.method !== 'GET') return 1;
  const limit = (request.query as { limit?: unknown } | undefined)?.limit;
  // Before validation the query is text; out-of-range values are refused later, so only their cost matters here.
  const rows =
    typeof limit === 'string' && /^[0-9]{1,4}$/.test(limit)
      ? Number(limit)
      : typeof limit === 'number' && Number.isSafeInteger(limit)
        ? limit
        : 0;
  return Math.max(1, Math.ceil(rows / LIST_ROWS_PER_TOKEN));
}

/**
 * Per client address: AUTH_FAILURE_LIMIT_PER_MINUTE 401s, refilled evenly over a minute. `gate` runs as an
 * onRequest hook before authentication, so an address out of tokens gets 429 on every authenticated route
 * before its secret is even hashed or looked up; `count` (onResponse) spends a token per 401.
 */
export function authFailureLimit(limits: LimitsConfig) {
  const perMinute = limits.authFailureLimitPerMinute;
  const buckets = new TokenBuckets(perMinute / 60, perMinute, AUTH_FAILURE_ADDRESSES_MAX);
  return {
    async gate(request: FastifyRequest, reply: FastifyReply): Promise<void> {
      if (request.routeOptions.config.roles === undefined) return;
      const state = buckets.peek(clientNetwork(request.ip));
      if (state.allowed) return;
      request.rejectedBy = 'auth_failure';
      reply.header('retry-after', String(state.retryAfterSeconds));
      throw new AppError('RATE_LIMITED', 'too many failed authentications from this address; retry later');
    },
    async count(request: FastifyRequest, reply: FastifyReply): Promise<void> {
      if (reply.statusCode === 401) buckets.take(clientNetwork(request.ip));
    },
  };
}

/**
 * The unit one client controls: its IPv4 address, or its IPv6 /64 (a single host is routinely handed a whole
 * /64, so counting addresses would give it 2^64 fresh allowances). An IPv4-mapped address counts as its IPv4.
 */
export function clientNetwork(address: string): string {
  if (!ipaddr.isValid(address)) return address;
  let parsed = ipaddr.parse(address);
  if (parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress()) {
    parsed = (parsed as ipaddr.IPv6).toIPv4Address();
  }
  if (parsed.kind() === 'ipv4') return parsed.toString();
  const parts = (parsed as ipaddr.IPv6).parts.slice(0, 4);
  return `${parts.map((p) => p.toString(16)).join(':')}::/64`;
}

/**
 * Load shedding on event-loop delay: while the mean delay over the last sample interval is above
 * EVENT_LOOP_DELAY_MAX_MS (an interval with no loop turn at all counts as lagging: the loop was blocked for all
 * of it), new requests get 503 SERVICE_UNAVAILABLE with Retry-After instead of queueing behind the work already
 * admitted. /health and /ready are exempt. EVENT_LOOP_DELAY_MAX_MS=0 turns it off. Registered as an onRequest
 * hook after the request-id hook and before authentication, so a shed request costs no database lookup.
 *
 * perf_hooks' own histogram rather than @fastify/under-pressure: that plugin also samples memory on a timer,
 * and `process.memoryUsage()` throws EMFILE, uncaught, when the process is out of file descriptors, which is
 * exactly when a flood of connections is underway: the protection would take the process down.
 */
export function registerLoadShedding(app: HttpApp, limits: LimitsConfig): void {
  if (limits.eventLoopDelayMaxMs === 0) return;
  const histogram = monitorEventLoopDelay({ resolution: SHEDDING_RESOLUTION_MS });
  histogram.enable();
  let lagging = false;
  const timer = setInterval(() => {
    const meanMs = histogram.count === 0 ? Number.POSITIVE_INFINITY : histogram.mean / 1e6;
    lagging = meanMs - SHEDDING_RESOLUTION_MS > limits.eventLoopDelayMaxMs;
    histogram.reset();
  }, SHEDDING_SAMPLE_INTERVAL_MS);
  timer.unref();
  app.addHook('onClose', async () => {
    clearInterval(timer);
    histogram.disable();
  });
  app.addHook('onRequest', async (request, reply) => {
    if (!lagging) return;
    const route = request.routeOptions.url;
    if (route !== undefined && SHEDDING_EXEMPT_ROUTES.has(route)) return;
    // No log line of its own: shedding must stay cheap; the access line records the 503.
    request.rejectedBy = 'load_shed';
    reply.header('retry-after', String(SHEDDING_RETRY_AFTER_SECONDS));
    throw new AppError('SERVICE_UNAVAILABLE', 'the server is overloaded; retry after Retry-After seconds');
  });
}

/** Descriptors kept free for the database, log output and files when connections are capped. */
const DESCRIPTORS_RESERVED = 256;

/**
 * CONNECTIONS_MAX, but never more than the process's open-file limit allows (less a reserve): beyond it, accept
 * fails with EMFILE and the database and log writes that need a descriptor fail with it. Linux only
 * (/proc/self/limits); elsewhere the configured value stands.
 */
export function connectionsMaxFor(configured: number): { connectionsMax: number; fileLimit: number | null } {
  let fileLimit: number | null = null;
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = line === undefined ? undefined : /^Max open files\s+(\d+)/.exec(line)?.[1];
    if (soft !== undefined) fileLimit = Number(soft);
  } catch {
    // not Linux: keep the configured cap
  }
  if (fileLimit === null) return { connectionsMax: configured, fileLimit };
  return { connectionsMax: Math.max(1, Math.min(configured, fileLimit - DESCRIPTORS_RESERVED)), fileLimit };
}
