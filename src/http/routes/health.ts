import type { Services } from '../../app/services.ts';
import { errorBody } from '../error-handler.ts';
import type { HttpApp } from '../types.ts';

export function healthRoutes(app: HttpApp, services: Services): void {
  const startedAtMs = Date.now();
  app.get('/health', async () => ({
    status: 'ok',
    storage: services.store.dialect,
    // Group commit at work: how many writes shared each durable commit, on average.
    writes: {
      batches: services.committer.batchesApplied,
      commands: services.committer.commandsApplied,
    },
    uptimeSeconds: Math.floor((Date.now() - startedAtMs) / 1000),
  }));

  app.get('/ready', async (request, reply) => {
    try {
      await services.store.ping();
      return { status: 'ready' };
    } catch {
      return reply
        .code(503)
        .send(errorBody('SERVICE_UNAVAILABLE', 'the database does not answer', request.id));
    }
  });
}
