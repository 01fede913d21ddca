import { Type } from 'typebox';
import { createPaymentBatch, readPaymentBatch } from '../../app/payment-batches.ts';
import type { Services } from '../../app/services.ts';
import { PAYMENT_BATCH_ITEMS_MAX } from '../../domain/payment-batch.ts';
import { CREATE_PAYMENTS, READ_PAYMENTS } from '../auth.ts';
import { idempotencyKeyOf, sendStored } from '../idempotency.ts';
import {
  ERROR_ENVELOPE_ID,
  errorResponse,
  IDEMPOTENCY_REPLAYED,
  idempotencyKeyHeader,
  jsonResponse,
  withExamples,
} from '../openapi.ts';
import { decodeBoundCursor, encodeBoundCursor, pageLimit } from '../paging.ts';
import { AccountBalance, PaymentBatch, ref, wrapper } from '../response-schemas.ts';
import { CreatePaymentBatchBody, IdParams, ListQuery } from '../schemas.ts';
import type { HttpApp } from '../types.ts';

/** The balances after a completed batch: every customer account it touched (two per payment at most). */
const BatchBalances = Type.Array(ref(AccountBalance), {
  maxItems: 2 * PAYMENT_BATCH_ITEMS_MAX,
  description:
    'the balances of the customer accounts the batch touched, right after it (a key scoped to customers sees ' +
    'its own customers’ accounts only); absent when the batch was rejected: nothing moved',
});

const payment = (sourceAccountId: string, destinationAccountId: string, amountCents: number) => ({
  sourceAccountId,
  destinationAccountId,
  amountCents,
  currency: 'USD',
});

/**
 * The object keys a batch body may hold: its two, and per payment its seven fields and up to 20 metadata keys
 * (src/http/json-body.ts caps other bodies at 1,000).
 */
const BATCH_JSON_KEYS_MAX = 2 + PAYMENT_BATCH_ITEMS_MAX * (7 + 20);

/** POST /v1/payment-batches and GET /v1/payment-batches/:id (src/app/payment-batches.ts). */
export function paymentBatchRoutes(app: HttpApp, services: Services): void {
  app.post(
    '/v1/payment-batches',
    {
      config: { roles: CREATE_PAYMENTS, jsonKeysMax: BATCH_JSON_KEYS_MAX },
      schema: {
        summary: 'Make a batch of payments',
        description:
          `Up to ${PAYMENT_BATCH_ITEMS_MAX} payments, each exactly as POST /v1/payments takes it and through the ` +
          'same checks, in order and in one transaction. `atomic: false`: each is decided on its own (posted, ' +
          'held for review or declined), and one that a single payment would answer with an error is a `failed` ' +
          'item with that error; 201. `atomic: true`: all post or none does: a payment that is declined, held ' +
          'for review or fails rejects the batch (422, `status: rejected`), nothing of it is applied, and every ' +
          'item says why. Either answer is stored under the Idempotency-Key and replayed byte for byte. An ' +
          'invalid payment makes the whole request a 400 naming it (`/payments/3/amountCents`). The whole body ' +
          'is at most 1,000,000 bytes.',
        operationId: 'createPaymentBatch',
        tags: ['payments'],
        requestHeaders: idempotencyKeyHeader(true),
        body: withExamples(CreatePaymentBatchBody, {
          payouts: {
            summary: 'Two payouts from Alice, all or none',
            value: {
              atomic: true,
              payments: [
                payment('acc_demo_alice_usd', 'acc_demo_bob_usd', 1250),
                payment('acc_demo_alice_usd', 'acc_demo_bob_usd', 2500),
              ],
            },
          },
          independent: {
            summary: 'Each decided on its own',
            value: {
              atomic: false,
              payments: [
                payment('acc_demo_alice_usd', 'acc_demo_bob_usd', 1250),
                payment('acc_demo_bob_usd', 'acc_demo_alice_usd', 9000000),
              ],
            },
          },
        }),
        response: {
          201: jsonResponse(
            'Applied: every payment decided (atomic: every one posted)',
            wrapper({ batch: ref(PaymentBatch), balances: BatchBalances }),
            IDEMPOTENCY_REPLAYED,
          ),
          400: errorResponse(400, ['IDEMPOTENCY_KEY_REQUIRED']),
          409: errorResponse(409, ['IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD']),
          422: jsonResponse(
            'An atomic batch refused (`status: rejected`): nothing of it was applied, each item says why. Stored ' +
              'and replayed like the 201. Or an error, not stored: BALANCE_LIMIT_EXCEEDED',
            Type.Union([wrapper({ batch: ref(PaymentBatch) }), Type.Ref(ERROR_ENVELOPE_ID)]),
            IDEMPOTENCY_REPLAYED,
          ),
        },
      },
    },
    async (req, reply) => {
      const key = idempotencyKeyOf(req);
      return sendStored(reply, await createPaymentBatch(services, req.actor, key, req.body));
    },
  );

  app.get(
    '/v1/payment-batches/:id',
    {
      config: { roles: READ_PAYMENTS },
      schema: {
        summary: 'Get a payment batch and a page of its items',
        description:
          'The batch as it was made, and its items in order, cursor-paged (`limit` 1..500, default 50), each ' +
          'with its payment as it is now (a held one may have been approved since) or its error. A key scoped ' +
          'to customers reads only the batches it made.',
        operationId: 'getPaymentBatch',
        tags: ['payments'],
        params: IdParams,
        querystring: ListQuery,
        response: {
          200: jsonResponse(
            'The batch, with a page of its items',
            wrapper({
              batch: ref(PaymentBatch),
              hasMore: Type.Boolean(),
              nextCursor: Type.Union([
                Type.String({
                  description: 'opaque: pass it as `cursor` for the next page; null on the last',
                }),
                Type.Null(),
              ]),
            }),
          ),
          404: errorResponse(404, ['PAYMENT_BATCH_NOT_FOUND']),
        },
      },
    },
    async (req) => {
      // The cursor is the position after the last item shown (its index + 1), bound to this batch.
      const list = `payment-batch-items|${req.params.id}`;
      const after = decodeBoundCursor(req.query.cursor, list);
      const page = await readPaymentBatch(
        services,
        req.actor,
        req.params.id,
        after - 1,
        pageLimit(req.query.limit),
      );
      return {
        batch: page.batch,
        hasMore: page.lastIndex !== null,
        nextCursor: encodeBoundCursor(page.lastIndex === null ? null : page.lastIndex + 1, list),
      };
    },
  );
}
