import { Type } from 'typebox';
import type { Services } from '../../app/services.ts';
import { withinMs } from '../../domain/deadline.ts';
import { errorBody } from '../error-handler.ts';
import { errorResponse, jsonResponse } from '../openapi.ts';
import { publicRequestId } from '../request-ids.ts';
import type { HttpApp } from '../types.ts';

/** How long /ready waits for the database before answering 503 (an orchestrator's probe times out too). */
const READY_DEADLINE_MS = 2_000;

export function healthRoutes(app: HttpApp, services: Services): void {
  const startedAtMs = Date.now();
  app.get(
    '/health',
    {
      schema: {
        summary: 'Liveness: the process serves requests',
        description:
          'No key needed, never shed under load. `writes`: how many writes shared each durable commit.',
        operationId: 'getHealth',
        tags: ['operations'],
        response: {
          200: jsonResponse(
            'Alive',
            Type.Object(
              {
                status: Type.Literal('ok'),
                storage: Type.Union([Type.Literal('sqlite'), Type.Literal('postgres')]),
                writes: Type.Object(
                  { batches: Type.Integer({ minimum: 0 }), commands: Type.Integer({ minimum: 0 }) },
                  { additionalProperties: false },
                ),
                uptimeSeconds: Type.Integer({ minimum: 0 }),
              },
              { additionalProperties: false },
            ),
          ),
        },
      },
    },
    async () => ({
      status: 'ok',
      storage: services.store.dialect,
      // Group commit at work: how many writes shared each durable commit, on average.
      writes: {
        batches: services.committer.batchesApplied,
        commands: services.committer.commandsApplied,
      },
      uptimeSeconds: Math.floor((Date.now() - startedAtMs) / 1000),
    }),
  );

  app.get(
    '/ready',
    {
      schema: {
        summary: 'Readiness: the database answers',
        description:
          'No key needed, never shed under load; 503 SERVICE_UNAVAILABLE while the database does not answer.',
        operationId: 'getReady',
        tags: ['operations'],
        response: {
          200: jsonResponse(
            'Ready',
            Type.Object({ status: Type.Literal('ready') }, { additionalProperties: false }),
          ),
          503: errorResponse(503, ['SERVICE_UNAVAILABLE']),
        },
      },
    },
    async (request, reply) => {
      try {
        // A database that stopped answering is as unready as one that refuses: answer within the deadline.
        await withinMs(services.store.ping(), READY_DEADLINE_MS, 'the database');
        return { status: 'ready' };
      } catch {
        return reply
          .code(503)
          .send(
            errorBody(
              'SERVICE_UNAVAILABLE',
              'the database does not answer',
              publicRequestId(request.id, request.headers),
            ),
          );
      }
    },
  );
}
