import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { advanceTestClock, resetSandbox, type SandboxGate, testClockView } from '../../app/sandbox.ts';
import type { Services } from '../../app/services.ts';
import { assert } from '../../domain/assert.ts';
import { AppError } from '../../domain/errors.ts';
import { TEST_CLOCK_ADVANCE_SECONDS_MAX } from '../../domain/sandbox.ts';
import { ADMIN_ONLY, ANY_ROLE } from '../auth.ts';
import { optionalIdempotencyKeyOf, sendStored } from '../idempotency.ts';
import { errorResponse, IDEMPOTENCY_REPLAYED, idempotencyKeyHeader, jsonResponse } from '../openapi.ts';
import { wrapper } from '../response-schemas.ts';
import type { HttpApp } from '../types.ts';

/**
 * The sandbox's controls, under /v1/test (docs/api.md#sandbox-test-mode). Both copies of the API have these
 * routes; the live copy answers 403 TEST_MODE_ONLY, so a live key learns what it called rather than getting a
 * 404, and can never move live time or erase live data.
 */
const TestClockBody = Type.Object(
  {
    now: Type.String({ format: 'date-time', description: 'test mode’s current time' }),
    offsetSeconds: Type.Integer({
      minimum: 0,
      description: 'how far test mode’s time runs ahead of real time',
    }),
  },
  { additionalProperties: false },
);

const AdvanceBody = Type.Object(
  {
    seconds: Type.Integer({
      minimum: 1,
      maximum: TEST_CLOCK_ADVANCE_SECONDS_MAX,
      description: 'how far to move the test clock forward (at most 366 days a call)',
    }),
  },
  { additionalProperties: false },
);

const ResetResult = Type.Object(
  {
    resetAt: Type.String({ format: 'date-time' }),
    demoDataSeeded: Type.Boolean({ description: 'the demo customers and accounts were created again' }),
  },
  { additionalProperties: false },
);

export const RESET_ROUTE = '/v1/test/reset';

export function sandboxRoutes(
  app: HttpApp,
  services: Services,
  options: { seedDemoData: boolean; gate: SandboxGate | null },
): void {
  const testOnly = (): void => {
    if (services.mode !== 'test') {
      throw new AppError('TEST_MODE_ONLY', 'this is a sandbox control: call it with a test key (sk_test_…)');
    }
  };
  app.get(
    '/v1/test/clock',
    {
      config: { roles: ANY_ROLE },
      schema: {
        summary: 'Read the test clock',
        description:
          'Test mode’s time: real time plus what POST /v1/test/clock/advance added. Test keys only (a live key: ' +
          '403 TEST_MODE_ONLY).',
        operationId: 'getTestClock',
        tags: ['sandbox'],
        response: {
          200: jsonResponse('The test clock', wrapper({ testClock: TestClockBody })),
          403: errorResponse(403, ['TEST_MODE_ONLY']),
        },
      },
    },
    async () => {
      testOnly();
      return testClockView(services.testClock!);
    },
  );

  app.post(
    '/v1/test/clock/advance',
    {
      config: { roles: ADMIN_ONLY },
      schema: {
        summary: 'Move the test clock forward',
        description:
          'Moves test mode’s time forward, for every process of the sandbox, then runs what falls due (a review ' +
          'hold past REVIEW_HOLD_EXPIRY_HOURS is declined and released before this answers; velocity windows ' +
          'close). Never backwards: a reset puts it back to real time. Audited. Test admin keys only.',
        operationId: 'advanceTestClock',
        tags: ['sandbox'],
        requestHeaders: idempotencyKeyHeader(false),
        body: AdvanceBody,
        response: {
          200: jsonResponse('The test clock after the move', wrapper({ testClock: TestClockBody }), {
            ...IDEMPOTENCY_REPLAYED,
          }),
          403: errorResponse(403, ['TEST_MODE_ONLY']),
          409: errorResponse(409, ['IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD']),
        },
      },
    },
    async (req, reply) => {
      testOnly();
      return sendStored(
        reply,
        await advanceTestClock(services, req.actor, optionalIdempotencyKeyOf(req), req.body),
      );
    },
  );

  app.post(
    RESET_ROUTE,
    {
      config: { roles: ADMIN_ONLY },
      schema: {
        summary: 'Delete all test data',
        description:
          'Deletes every customer, account, payment, ledger entry, webhook endpoint, event and audit entry of ' +
          'test mode (API keys stay), puts the test clock back to real time and seeds the demo data again. ' +
          'One transaction; the new audit log starts with the reset. Test admin keys only.',
        operationId: 'resetSandbox',
        tags: ['sandbox'],
        response: {
          200: jsonResponse('Reset', wrapper({ sandbox: ResetResult })),
          403: errorResponse(403, ['TEST_MODE_ONLY']),
        },
      },
    },
    async (req) => {
      testOnly();
      const { gate } = options;
      assert(gate !== null, 'test mode has its gate');
      // With no other test request of this process in flight, and none starting until it is done.
      return gate.exclusive(() => resetSandbox(services, req.actor, options));
    },
  );
}

/**
 * Test mode only: `Test-Simulate: rate_limited` answers this request 429 RATE_LIMITED (Retry-After: 1) without
 * running it, so a partner can exercise its back-off. Runs after authentication. Unknown values are a 400.
 */
export const SIMULATIONS = ['rate_limited'] as const;

export async function simulatedFailures(request: FastifyRequest, reply: FastifyReply): Promise<void> {
  const wanted = request.headers['test-simulate'];
  if (wanted === undefined) return;
  if (wanted !== 'rate_limited') {
    throw new AppError('VALIDATION_ERROR', `Test-Simulate must be one of: ${SIMULATIONS.join(', ')}`, [
      { field: 'Test-Simulate', message: 'unknown simulation' },
    ]);
  }
  void reply.header('retry-after', '1');
  throw new AppError(
    'RATE_LIMITED',
    'simulated (Test-Simulate: rate_limited): retry after Retry-After seconds',
  );
}
