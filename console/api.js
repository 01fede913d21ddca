/**
 * The console's only way to the server: the public JSON API, with the operator's API key. The key lives in
 * this closure (in the tab's memory) and nowhere else: not in localStorage, not in a cookie, not in the URL.
 */

/** An API error: the envelope's stable code, message and details, and the HTTP status. */
export class ApiError extends Error {
  constructor(status, body) {
    const error = body?.error ?? {};
    super(error.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = error.code ?? 'HTTP_ERROR';
    this.details = Array.isArray(error.details) ? error.details : [];
    this.requestId = error.requestId ?? null;
  }
}

/**
 * Random hex from crypto.getRandomValues, which (unlike crypto.randomUUID) exists outside secure contexts too:
 * the console must still act when served over plain HTTP on a host name.
 */
function randomHex(bytes) {
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) =>
    b.toString(16).padStart(2, '0'),
  ).join('');
}

/** Makes the client for one signed-in key. `onUnauthorized` signs the tab out (a revoked or expired key). */
export function createApi(apiKey, onUnauthorized = () => {}) {
  /**
   * @param {string} method
   * @param {string} path
   * @param {{ body?: unknown, text?: boolean, idempotent?: boolean }} [options]
   */
  async function request(method, path, options = {}) {
    const { body, text = false, idempotent = false } = options;
    const headers = { authorization: `Bearer ${apiKey}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    // A fresh key per click: a retry of the same click by the browser is then safe, and never a second action.
    if (idempotent) headers['idempotency-key'] = `console-${randomHex(16)}`;
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
    });
    if (text && response.ok) return response.text();
    const parsed = await response.json().catch(() => null);
    if (!response.ok) {
      if (response.status === 401) onUnauthorized();
      throw new ApiError(response.status, parsed);
    }
    return parsed;
  }
  return {
    get: (path) => request('GET', path),
    getText: (path) => request('GET', path, { text: true }),
    post: (path, body) => request('POST', path, { body, idempotent: true }),
  };
}

/** A query string from an object, leaving out undefined and empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') search.set(name, String(value));
  }
  const text = search.toString();
  return text === '' ? '' : `?${text}`;
}
