import { createPayment } from '../../app/create-payment.ts';
import { prefersReceipt, withReceipt } from '../../app/receipts.ts';
import type { Services } from '../../app/services.ts';
import { ledgerEntryView, paymentView } from '../../app/views.ts';
import { AppError } from '../../domain/errors.ts';
import { IDEMPOTENCY_KEY_PATTERN } from '../../domain/idempotency.ts';
import { CREATE_PAYMENTS, READ_PAYMENTS } from '../auth.ts';
import { decodeCursor, encodeCursor, pageLimit } from '../paging.ts';
import { CreatePaymentBody, IdParams, PaymentListQuery } from '../schemas.ts';
import type { HttpApp } from '../types.ts';

const LEDGER_ENTRIES_PER_PAYMENT_MAX = 100;

export function paymentRoutes(app: HttpApp, services: Services): void {
  const reads = services.store.reads;

  app.post(
    '/v1/payments',
    { config: { roles: CREATE_PAYMENTS }, schema: { body: CreatePaymentBody } },
    async (req, reply) => {
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
      return {
        payments: page.items.map(paymentView),
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
      return { payment: paymentView(payment), ledgerEntries: entries.items.map(ledgerEntryView) };
    },
  );
}
