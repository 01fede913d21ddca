import type { FastifyReply, FastifyRequest } from 'fastify';
import { createPayment, type PaymentReply } from '../../app/create-payment.ts';
import { prefersReceipt, withReceipt } from '../../app/receipts.ts';
import { createRefund } from '../../app/refunds.ts';
import { type ReviewAction, resolveReview } from '../../app/review.ts';
import type { Services } from '../../app/services.ts';
import { decisionDetailFor, ledgerEntryView, paymentView, refundView } from '../../app/views.ts';
import { AppError } from '../../domain/errors.ts';
import { IDEMPOTENCY_KEY_PATTERN } from '../../domain/idempotency.ts';
import { CREATE_PAYMENTS, READ_PAYMENTS, REFUND_PAYMENTS, REVIEW_PAYMENTS } from '../auth.ts';
import { decodeCursor, encodeCursor, pageLimit } from '../paging.ts';
import { CreatePaymentBody, IdParams, PaymentListQuery, RefundBody, ReviewBody } from '../schemas.ts';
import type { HttpApp } from '../types.ts';

const LEDGER_ENTRIES_PER_PAYMENT_MAX = 100;

export function paymentRoutes(app: HttpApp, services: Services): void {
  const reads = services.store.reads;

  app.post(
    '/v1/payments',
    { config: { roles: CREATE_PAYMENTS }, schema: { body: CreatePaymentBody } },
    async (req, reply) => {
      const key = idempotencyKeyOf(req);
      // The stored (and replayed) body shows the decision as the caller's role may see it (req.actor).
      const result = await createPayment(services, req.actor, key, req.body);
      // `Prefer: receipt` appends a computed receipt after the stored bytes (src/app/receipts.ts).
      const withProof = prefersReceipt(req.headers.prefer) ? await withReceipt(services, result.body) : null;
      if (withProof !== null) reply.header('preference-applied', 'receipt');
      // The body is sent as the stored string, byte for byte, so every replay is identical.
      return reply
        .code(result.statusCode)
        .header('content-type', 'application/json; charset=utf-8')
        .header('idempotency-replayed', result.replayed ? 'true' : 'false')
        .send(withProof ?? result.body);
    },
  );

  app.get(
    '/v1/payments',
    { config: { roles: READ_PAYMENTS }, schema: { querystring: PaymentListQuery } },
    async (req) => {
      const page = await reads.listPayments(
        { after: decodeCursor(req.query.cursor), limit: pageLimit(req.query.limit) },
        req.query.status,
      );
      const detail = decisionDetailFor(req.actor);
      return {
        payments: page.items.map((p) => paymentView(p, detail)),
        hasMore: page.nextAfter !== null,
        nextCursor: encodeCursor(page.nextAfter),
      };
    },
  );

  app.get(
    '/v1/payments/:id',
    { config: { roles: READ_PAYMENTS }, schema: { params: IdParams } },
    async (req) => {
      const payment = await reads.getPayment(req.params.id);
      if (payment === undefined) throw new AppError('PAYMENT_NOT_FOUND', 'payment not found');
      const entries = await reads.listLedgerEntries(
        { after: 0, limit: LEDGER_ENTRIES_PER_PAYMENT_MAX },
        { paymentId: payment.id },
      );
      const refunds = await reads.listRefunds(payment.id);
      return {
        payment: paymentView(payment, decisionDetailFor(req.actor)),
        ledgerEntries: entries.items.map(ledgerEntryView),
        refunds: refunds.map((r) => refundView(r, services.cipher)),
      };
    },
  );

  // The review queue's resolutions (src/app/review.ts): approve posts the held amount (201), reject releases it.
  for (const action of ['approve', 'reject'] as const satisfies ReviewAction[]) {
    app.post(
      `/v1/payments/:id/${action}`,
      {
        config: { roles: REVIEW_PAYMENTS },
        schema: { params: IdParams, body: ReviewBody },
        preValidation: bodyOptional,
      },
      async (req, reply) => {
        const result = await resolveReview(services, req.actor, req.params.id, action, req.body?.note);
        const payment = paymentView(result.payment, decisionDetailFor(req.actor));
        return reply
          .code(action === 'approve' ? 201 : 200)
          .send({ payment, ledgerPosted: result.ledgerPosted });
      },
    );
  }

  app.post(
    '/v1/payments/:id/refunds',
    {
      config: { roles: REFUND_PAYMENTS },
      schema: { params: IdParams, body: RefundBody },
      preValidation: bodyOptional,
    },
    async (req, reply) => {
      const key = idempotencyKeyOf(req);
      return sendStored(reply, await createRefund(services, req.actor, key, req.params.id, req.body));
    },
  );
}

/** Every field of these bodies is optional, so no body at all means `{}` (not a 400). */
async function bodyOptional(req: FastifyRequest): Promise<void> {
  req.body ??= {};
}

/** The Idempotency-Key header, required and checked: 400 IDEMPOTENCY_KEY_REQUIRED or VALIDATION_ERROR. */
function idempotencyKeyOf(req: FastifyRequest): string {
  const key = req.headers['idempotency-key'];
  if (typeof key !== 'string' || key === '') {
    throw new AppError(
      'IDEMPOTENCY_KEY_REQUIRED',
      'send an Idempotency-Key header (1..255 printable ASCII characters)',
    );
  }
  if (!IDEMPOTENCY_KEY_PATTERN.test(key)) {
    throw new AppError('VALIDATION_ERROR', 'Idempotency-Key must be 1..255 printable ASCII characters', [
      { field: 'Idempotency-Key', message: 'must be 1..255 printable ASCII characters' },
    ]);
  }
  return key;
}

/** Sends a stored idempotent response as its exact bytes, so every replay is identical. */
function sendStored(reply: FastifyReply, result: PaymentReply): FastifyReply {
  return reply
    .code(result.statusCode)
    .header('content-type', 'application/json; charset=utf-8')
    .header('idempotency-replayed', result.replayed ? 'true' : 'false')
    .send(result.body);
}
