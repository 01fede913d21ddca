import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

/**
 * The certification run's HTTP client: every request has a timeout, and only safe requests are retried (a GET,
 * or a POST that carries an Idempotency-Key), a bounded number of times, on a network error, a timeout, a 503 or
 * a 429, waiting Retry-After (capped) or a short backoff. `retries: 0` turns that off for a scenario that looks at
 * the first answer itself.
 */

export interface Answer {
  status: number;
  headers: Headers;
  text: string;
  // biome-ignore lint/suspicious/noExplicitAny: JSON bodies are checked field by field by the scenarios
  json: any;
}

export interface SendOptions {
  body?: unknown;
  idempotencyKey?: string;
  headers?: Record<string, string>;
  /** Retries after the first attempt (default: 2 for safe requests, 0 otherwise). */
  retries?: number;
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 15_000;
const DEFAULT_RETRIES = 2;
/** The longest Retry-After the client will wait before a retry; a longer one ends the retries. */
export const RETRY_AFTER_MAX_SECONDS = 30;

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Retry-After in whole seconds, or null when absent or not a number of seconds. */
export function retryAfterSeconds(headers: Headers): number | null {
  const value = headers.get('retry-after');
  return value !== null && /^\d{1,6}$/.test(value.trim()) ? Number(value) : null;
}

export class Client {
  /** Requests sent (retries included), for the report. */
  sent = 0;

  constructor(
    readonly baseUrl: string,
    private readonly key: string,
    private readonly timeoutMs = DEFAULT_TIMEOUT_MS,
  ) {}

  headersFor(options: SendOptions): Record<string, string> {
    const headers: Record<string, string> = {
      authorization: `Bearer ${this.key}`,
      accept: 'application/json',
      ...options.headers,
    };
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    if (options.idempotencyKey !== undefined) headers['idempotency-key'] = options.idempotencyKey;
    return headers;
  }

  async send(method: string, path: string, options: SendOptions = {}): Promise<Answer> {
    const safe = method === 'GET' || options.idempotencyKey !== undefined;
    const retries = options.retries ?? (safe ? DEFAULT_RETRIES : 0);
    for (let attempt = 0; ; attempt++) {
      let answer: Answer | undefined;
      let failure: Error | undefined;
      try {
        answer = await this.once(method, path, options);
      } catch (error) {
        failure = error as Error;
      }
      const retryable = failure !== undefined || answer?.status === 503 || answer?.status === 429;
      if (!retryable || attempt >= retries) {
        if (answer !== undefined) return answer;
        throw new Error(`${method} ${path}: ${failure?.message ?? 'no answer'}`);
      }
      const waitSeconds = answer === undefined ? null : retryAfterSeconds(answer.headers);
      if (waitSeconds !== null && waitSeconds > RETRY_AFTER_MAX_SECONDS) return answer!;
      await sleep(waitSeconds === null ? 250 * 2 ** attempt : waitSeconds * 1000);
    }
  }

  private async once(method: string, path: string, options: SendOptions): Promise<Answer> {
    this.sent++;
    const res = await fetch(`${this.baseUrl}${path}`, {
      method,
      headers: this.headersFor(options),
      signal: AbortSignal.timeout(options.timeoutMs ?? this.timeoutMs),
      ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
    });
    const text = await res.text();
    let json: unknown;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, headers: res.headers, text, json };
  }

  /**
   * Writes a POST completely and closes the connection before reading any of the answer: a client whose
   * timeout fired while the server was working. Resolves once the request bytes are handed to the socket.
   */
  postAndAbandon(path: string, options: SendOptions): Promise<void> {
    this.sent++;
    const url = new URL(`${this.baseUrl}${path}`);
    const body = JSON.stringify(options.body);
    const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve) => {
      const req = request(url, {
        method: 'POST',
        headers: { ...this.headersFor(options), 'content-length': String(Buffer.byteLength(body)) },
        agent: false,
      });
      req.on('error', () => resolve());
      req.end(body, () => {
        req.destroy();
        resolve();
      });
    });
  }
}
