import type { FastifyRequest } from 'fastify';
import { createPayment } from '../../app/create-payment.ts';
import { prefersReceipt, withReceipt } from '../../app/receipts.ts';
import { createRefund } from '../../app/refunds.ts';
import { type ReviewAction, resolveReview } from '../../app/review.ts';
import { paymentScopeOf, readScopeOf, scopeOf } from '../../app/scope.ts';
import type { Services } from '../../app/services.ts';
import { decisionDetailFor, ledgerEntryView, paymentView, refundView } from '../../app/views.ts';
import { AppError } from '../../domain/errors.ts';
import { CREATE_PAYMENTS, READ_PAYMENTS, REFUND_PAYMENTS, REVIEW_PAYMENTS } from '../auth.ts';
import { idempotencyKeyOf, optionalIdempotencyKeyOf, sendStored } from '../idempotency.ts';
import { decodeCursor, encodeCursor, pageLimit } from '../paging.ts';
import { CreatePaymentBody, IdParams, PaymentListQuery, RefundBody, ReviewBody } from '../schemas.ts';
import type { HttpApp } from '../types.ts';

/**
 * What one payment's page shows at most: every partial refund adds a refund and two ledger entries, so a payment
 * refunded a cent at a time could otherwise make this read unbounded. `…HasMore` says when there are more; the
 * ledger lists them all with paging (GET /v1/ledger?paymentId=).
 */
const LEDGER_ENTRIES_PER_PAYMENT_MAX = 100;
const REFUNDS_PER_PAYMENT_MAX = 100;

export function paymentRoutes(app: HttpApp, services: Services): void {
  const reads = services.store.reads;

  app.post(
    '/v1/payments',
    { config: { roles: CREATE_PAYMENTS }, schema: { body: CreatePaymentBody } },
    async (req, reply) => {
      const key = idempotencyKeyOf(req);
      // The stored (and replayed) body shows the decision as the caller's role may see it (req.actor).
      const result = await createPayment(services, req.actor, key, req.body);
      // `Prefer: receipt` appends a computed receipt after the stored bytes (src/app/receipts.ts). Not for a
      // scoped key: the receipt's audit entry holds the full decision, the counterparty's features included,
      // which a key limited to some customers must not see (RFC 7240: a preference may be ignored).
      const receipt = prefersReceipt(req.headers.prefer) && scopeOf(req.actor) === null;
      const withProof = receipt ? await withReceipt(services, result.body) : null;
      if (withProof !== null) reply.header('preference-applied', 'receipt');
      // The body is sent as the stored string, byte for byte, so every replay is identical.
      return sendStored(reply, result, withProof ?? result.body);
    },
  );

  app.get(
    '/v1/payments',
    { config: { roles: READ_PAYMENTS }, schema: { querystring: PaymentListQuery } },
    async (req) => {
      const page = await reads.listPayments(
        { after: decodeCursor(req.query.cursor), limit: pageLimit(req.query.limit) },
        req.query.status,
        await readScopeOf(reads, req.actor),
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
      // A scoped key: 404 unless a side is its customers'; then only the entries on its side(s).
      const scope = await paymentScopeOf(reads, req.actor, payment);
      const entries = await reads.listLedgerEntries(
        { after: 0, limit: LEDGER_ENTRIES_PER_PAYMENT_MAX },
        { paymentId: payment.id },
        scope,
      );
      const refunds = await reads.listRefunds(payment.id, REFUNDS_PER_PAYMENT_MAX + 1);
      return {
        payment: paymentView(payment, decisionDetailFor(req.actor)),
        ledgerEntries: entries.items.map(ledgerEntryView),
        ledgerEntriesHasMore: entries.nextAfter !== null,
        refunds: refunds.slice(0, REFUNDS_PER_PAYMENT_MAX).map((r) => refundView(r, services.cipher)),
        refundsHasMore: refunds.length > REFUNDS_PER_PAYMENT_MAX,
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
        // Idempotency-Key optional: honoured when sent (the stored body shows the decision as req.actor may).
        const key = optionalIdempotencyKeyOf(req);
        const note = req.body?.note;
        return sendStored(reply, await resolveReview(services, req.actor, key, req.params.id, action, note));
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
