import { requireUnscoped } from '../app/scope.ts';
import type { HttpApp } from './types.ts';

/**
 * Global operations are not for a key scoped to customers (src/app/scope.ts): every route under one of
 * `urlPrefixes` answers such a key 403 FORBIDDEN ("a key scoped to customers may not <what>"), before its body
 * is read. One hook per route module, so a route added there later is covered too. Runs after the auth hook
 * (registered first, in server.ts), which sets the actor; routes without authentication have none and pass.
 */
export function denyScopedKeys(
  app: HttpApp,
  urlPrefixes: readonly string[],
  what: string,
  /** Routes under a prefix that stay open to scoped keys (exact route patterns). */
  exempt: readonly string[] = [],
): void {
  app.addHook('onRequest', async (request) => {
    const url = request.routeOptions.url;
    if (url === undefined || request.actor === undefined || exempt.includes(url)) return;
    if (urlPrefixes.some((prefix) => url === prefix || url.startsWith(`${prefix}/`))) {
      requireUnscoped(request.actor, what);
    }
  });
}
