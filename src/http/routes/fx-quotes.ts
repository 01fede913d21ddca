import { createFxQuote } from '../../app/fx-quotes.ts';
import type { Services } from '../../app/services.ts';
import { CREATE_PAYMENTS } from '../auth.ts';
import { optionalIdempotencyKeyOf, sendStored } from '../idempotency.ts';
import {
  errorResponse,
  IDEMPOTENCY_REPLAYED,
  idempotencyKeyHeader,
  jsonResponse,
  withExamples,
} from '../openapi.ts';
import { FxQuote, ref, wrapper } from '../response-schemas.ts';
import { CreateFxQuoteBody } from '../schemas.ts';
import type { HttpApp } from '../types.ts';

/** POST /v1/fx-quotes: the rate a cross-currency payment will be posted at (src/app/fx-quotes.ts). */
export function fxQuoteRoutes(app: HttpApp, services: Services): void {
  app.post(
    '/v1/fx-quotes',
    {
      config: { roles: CREATE_PAYMENTS },
      schema: {
        summary: 'Quote a currency conversion',
        description:
          'Prices `sourceAmountCents` (minor units of sourceCurrency) in destinationCurrency at the configured rate, ' +
          'rounded down to a minor unit. A payment between accounts of these two currencies, made with the same ' +
          'API key for exactly this amount, must carry the quote as `quoteId` before `expiresAt`; each quote pays ' +
          'once. Under an Idempotency-Key a retry replays the first quote.',
        operationId: 'createFxQuote',
        tags: ['payments'],
        requestHeaders: idempotencyKeyHeader(false),
        body: withExamples(CreateFxQuoteBody, {
          usdToJpy: {
            summary: '$100.00 in yen',
            value: { sourceCurrency: 'USD', destinationCurrency: 'JPY', sourceAmountCents: 10000 },
          },
          usdToBhd: {
            summary: '$12.50 in Bahraini dinar (3 decimals)',
            value: { sourceCurrency: 'USD', destinationCurrency: 'BHD', sourceAmountCents: 1250 },
          },
        }),
        response: {
          201: jsonResponse('The quote', wrapper({ quote: ref(FxQuote) }), IDEMPOTENCY_REPLAYED),
          409: errorResponse(409, ['IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD']),
          422: errorResponse(422, ['FX_PAIR_NOT_OFFERED', 'FX_AMOUNT_OUT_OF_RANGE']),
        },
      },
    },
    async (req, reply) => {
      const quoted = await createFxQuote(services, req.actor, optionalIdempotencyKeyOf(req), req.body);
      return sendStored(reply, quoted);
    },
  );
}
