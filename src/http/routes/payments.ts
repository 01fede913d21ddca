import { Type } from 'typebox';
import { createPayment } from '../../app/create-payment.ts';
import { paymentReceipt, prefersReceipt, withReceipt } from '../../app/receipts.ts';
import { createRefund } from '../../app/refunds.ts';
import { type ReviewAction, resolveReview } from '../../app/review.ts';
import { paymentScopeOf, readScopeOf, requireUnscoped, scopeOf } from '../../app/scope.ts';
import type { Services } from '../../app/services.ts';
import { decisionDetailFor, ledgerEntryView, paymentView, refundView } from '../../app/views.ts';
import { AppError } from '../../domain/errors.ts';
import { CREATE_PAYMENTS, READ_PAYMENTS, READ_RECEIPTS, REFUND_PAYMENTS, REVIEW_PAYMENTS } from '../auth.ts';
import { idempotencyKeyOf, optionalIdempotencyKeyOf, sendStored } from '../idempotency.ts';
import { bodyOptional } from '../json-body.ts';
import { filterBinding, listFilterOf, METADATA_FILTERS_MAX } from '../list-filters.ts';
import {
  ERROR_ENVELOPE_ID,
  errorResponse,
  IDEMPOTENCY_REPLAYED,
  idempotencyKeyHeader,
  jsonResponse,
  preferHeader,
  withExamples,
} from '../openapi.ts';
import { decodeBoundCursor, encodeBoundCursor, pageLimit } from '../paging.ts';
import {
  AccountBalance,
  LedgerEntry,
  Payment,
  page,
  Receipt,
  Refund,
  ref,
  wrapper,
} from '../response-schemas.ts';
import { CreatePaymentBody, IdParams, PaymentListQuery, RefundBody, ReviewBody } from '../schemas.ts';
import type { HttpApp } from '../types.ts';

/**
 * What one payment's page shows at most: every partial refund adds a refund and two ledger entries, so a payment
 * refunded a cent at a time could otherwise make this read unbounded. `…HasMore` says when there are more; the
 * ledger lists them all with paging (GET /v1/ledger?paymentId=).
 */
const LEDGER_ENTRIES_PER_PAYMENT_MAX = 100;
const REFUNDS_PER_PAYMENT_MAX = 100;

/**
 * The balances a write that moves or holds money answers with (src/app/views.ts, resultingBalances): the
 * customer accounts it touched, after it, without another request.
 */
const ResultingBalances = Type.Array(ref(AccountBalance), {
  maxItems: 2,
  description:
    'the balances of the accounts this write touched, right after it (a key scoped to customers sees its own ' +
    'customers’ accounts only); a replay repeats them as they were',
});

/** `{payment, ledgerPosted, balances}`: the answer of a payment and of a review; `receipt` with `Prefer: receipt`. */
const paymentResult = (ledgerPosted: boolean, receipt: boolean) =>
  wrapper({
    payment: ref(Payment),
    ledgerPosted: Type.Literal(ledgerPosted),
    // Optional only for responses stored before it existed (a replay repeats the stored bytes).
    balances: Type.Optional(ResultingBalances),
    // With `Prefer: receipt` (src/app/receipts.ts).
    ...(receipt ? { receipt: Type.Optional(ref(Receipt)) } : {}),
  });
const PREFERENCE_APPLIED_RECEIPT = {
  'preference-applied': Type.String({ enum: ['receipt'], description: 'the receipt was added' }),
};
const PAYMENT_HEADERS = { ...IDEMPOTENCY_REPLAYED, ...PREFERENCE_APPLIED_RECEIPT };
const PAYMENT_EXAMPLES = {
  workshop: {
    summary: 'The workshop payment: $12.50 from Alice to Bob (posted, 201)',
    value: {
      sourceAccountId: 'acc_demo_alice_usd',
      destinationAccountId: 'acc_demo_bob_usd',
      amountCents: 1250,
      currency: 'USD',
    },
  },
  withNote: {
    summary: 'With a note and metadata',
    value: {
      sourceAccountId: 'acc_demo_alice_usd',
      destinationAccountId: 'acc_demo_bob_usd',
      amountCents: 1250,
      currency: 'USD',
      note: 'Dinner, 14 March',
      metadata: { invoice: 'INV-2026-0042' },
    },
  },
  heldForReview: {
    summary: '$2,500: held for review (202)',
    value: {
      sourceAccountId: 'acc_demo_alice_usd',
      destinationAccountId: 'acc_demo_bob_usd',
      amountCents: 250000,
      currency: 'USD',
    },
  },
  declined: {
    summary: "More than Bob's balance: declined, insufficient_funds (422)",
    value: {
      sourceAccountId: 'acc_demo_bob_usd',
      destinationAccountId: 'acc_demo_alice_usd',
      amountCents: 9000000,
      currency: 'USD',
    },
  },
};

export function paymentRoutes(app: HttpApp, services: Services): void {
  const reads = services.store.reads;

  app.post(
    '/v1/payments',
    {
      config: { roles: CREATE_PAYMENTS },
      schema: {
        summary: 'Make a payment',
        description:
          'Validation, the idempotency gate, KYC/AML and fraud checks, then one of three outcomes, committed ' +
          'atomically: `posted` (201, debit and credit), `manual_review` (202, the amount held), `declined` ' +
          "(422, nothing moves). The decision is shown as the caller's role may see it. A retry with the same " +
          'Idempotency-Key and body replays the first response byte for byte. Between accounts of two ' +
          'currencies the payment carries a live `quoteId` (POST /v1/fx-quotes) for exactly its amount and ' +
          'currencies, and posts two transfers at the quoted amounts through the FX pools; without one it is ' +
          'declined as `currency_mismatch`.',
        operationId: 'createPayment',
        tags: ['payments'],
        requestHeaders: {
          ...idempotencyKeyHeader(true),
          ...preferHeader(
            '`receipt`: add a receipt (the audit entry with an inclusion proof against a signed checkpoint) and ' +
              'answer `Preference-Applied: receipt`; ignored for keys scoped to customers',
            ['receipt'],
          ),
        },
        body: withExamples(CreatePaymentBody, PAYMENT_EXAMPLES),
        response: {
          201: jsonResponse('Posted: the money moved', paymentResult(true, true), PAYMENT_HEADERS),
          202: jsonResponse(
            'Held for review (manual_review): the amount is held on the source account',
            paymentResult(false, true),
            PAYMENT_HEADERS,
          ),
          400: errorResponse(400, ['IDEMPOTENCY_KEY_REQUIRED']),
          404: errorResponse(404, [
            'SOURCE_ACCOUNT_NOT_FOUND',
            'DESTINATION_ACCOUNT_NOT_FOUND',
            'FX_QUOTE_NOT_FOUND',
          ]),
          409: errorResponse(409, ['IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD']),
          422: jsonResponse(
            'Declined: the payment, stored and replayed like the others (nothing moved); or an error, not stored: ' +
              'BALANCE_LIMIT_EXCEEDED, FX_QUOTE_EXPIRED, FX_QUOTE_USED, FX_QUOTE_MISMATCH',
            Type.Union([paymentResult(false, true), Type.Ref(ERROR_ENVELOPE_ID)]),
            PAYMENT_HEADERS,
          ),
          500: errorResponse(500, ['AUDIT_LOG_INCONSISTENT']),
        },
      },
    },
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
    {
      config: { roles: READ_PAYMENTS },
      schema: {
        summary: 'List payments',
        description:
          'Oldest first, or newest first with `order=desc`; cursor-paged, and a cursor is only valid with the ' +
          'filters and order it was made for. `status=manual_review` is the review queue. Filters combine (all ' +
          'must hold): `accountId` (either side), `counterpartyAccountId` (with `accountId`: payments between ' +
          'the two; alone: payments with it on either side, for a scoped key those between it and the key’s ' +
          'accounts), `createdFrom` (inclusive) and `createdTo` (exclusive), `amountMin` and `amountMax` ' +
          `(inclusive, minor units), \`metadata[key]=value\` (exact, up to ${METADATA_FILTERS_MAX} pairs). A ` +
          'filtered page may hold fewer items than `limit`, even none, and still have `hasMore`: follow ' +
          '`nextCursor`. A scoped key lists the payments from or to its customers’ accounts.',
        operationId: 'listPayments',
        tags: ['payments'],
        querystring: PaymentListQuery,
        response: { 200: jsonResponse('A page of payments', page('payments', ref(Payment))) },
      },
    },
    async (req) => {
      const { status, order } = req.query;
      const filter = listFilterOf(req.query);
      // The cursor is bound to the order and every filter (the status first, as before filters were added).
      const list = `payments|${order ?? 'asc'}|${status ?? ''}${filterBinding(filter, ['status'])}`;
      const page = await reads.listPayments(
        {
          after: decodeBoundCursor(req.query.cursor, list),
          limit: pageLimit(req.query.limit),
          descending: order === 'desc',
        },
        filter,
        await readScopeOf(reads, req.actor),
      );
      const detail = decisionDetailFor(req.actor);
      return {
        payments: page.items.map((p) => paymentView(p, detail, services.reviewHoldExpiryMs)),
        hasMore: page.nextAfter !== null,
        nextCursor: encodeBoundCursor(page.nextAfter, list),
      };
    },
  );

  app.get(
    '/v1/payments/:id',
    {
      config: { roles: READ_PAYMENTS },
      schema: {
        summary: 'Get a payment, its ledger entries and refunds',
        description:
          'At most 100 ledger entries and 100 refunds; `…HasMore` says when there are more (GET /v1/ledger?paymentId= ' +
          'pages through all entries). A scoped key sees only the entries on its side.',
        operationId: 'getPayment',
        tags: ['payments'],
        params: IdParams,
        response: {
          200: jsonResponse(
            'The payment',
            wrapper({
              payment: ref(Payment),
              ledgerEntries: Type.Array(ref(LedgerEntry), { maxItems: LEDGER_ENTRIES_PER_PAYMENT_MAX }),
              ledgerEntriesHasMore: Type.Boolean(),
              refunds: Type.Array(ref(Refund), { maxItems: REFUNDS_PER_PAYMENT_MAX }),
              refundsHasMore: Type.Boolean(),
            }),
          ),
          404: errorResponse(404, ['PAYMENT_NOT_FOUND']),
        },
      },
    },
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
        payment: paymentView(payment, decisionDetailFor(req.actor), services.reviewHoldExpiryMs),
        ledgerEntries: entries.items.map(ledgerEntryView),
        ledgerEntriesHasMore: entries.nextAfter !== null,
        refunds: refunds.slice(0, REFUNDS_PER_PAYMENT_MAX).map((r) => refundView(r, services.cipher)),
        refundsHasMore: refunds.length > REFUNDS_PER_PAYMENT_MAX,
      };
    },
  );

  app.get(
    '/v1/payments/:id/receipt',
    {
      config: { roles: READ_RECEIPTS },
      schema: {
        summary: "A payment's receipt",
        description:
          'The same receipt as `Prefer: receipt` on POST /v1/payments, for any payment at any time: its audit ' +
          'entry, an inclusion proof (RFC 9162) and the signed checkpoint it leads to. Check it with the ' +
          'verifier key of GET /v1/audit-logs/public-key. The receipt is for the payment’s first audit entry, its ' +
          'decision. For compliance and auditor keys, not scoped ones: the entry holds the whole decision.',
        operationId: 'getPaymentReceipt',
        tags: ['payments'],
        params: IdParams,
        response: {
          200: jsonResponse('The receipt', wrapper({ receipt: ref(Receipt) })),
          404: errorResponse(404, ['PAYMENT_NOT_FOUND']),
          500: errorResponse(500, ['AUDIT_LOG_INCONSISTENT']),
        },
      },
    },
    async (req) => {
      requireUnscoped(req.actor, 'fetch receipts');
      const payment = await reads.getPayment(req.params.id);
      if (payment === undefined) throw new AppError('PAYMENT_NOT_FOUND', 'payment not found');
      return { receipt: await paymentReceipt(services, payment.id) };
    },
  );

  // The review queue's resolutions (src/app/review.ts): approve posts the held amount (201), reject releases it.
  const REVIEW_DOCS = {
    approve: {
      summary: 'Approve a payment held for review',
      description:
        'Re-checks the payment against what may have changed while it waited (both parties’ KYC, sanctions ' +
        'screening, jurisdictions, the current policy); if it would now be declined: 409 ' +
        'PAYMENT_NO_LONGER_APPROVABLE with the reason codes in `details`, and it stays in review. Otherwise the ' +
        'hold becomes a posting of exactly the held amount.',
      operationId: 'approvePayment',
      response: {
        201: jsonResponse('Approved and posted', paymentResult(true, false), IDEMPOTENCY_REPLAYED),
        409: errorResponse(409, [
          'PAYMENT_NOT_IN_REVIEW',
          'PAYMENT_NO_LONGER_APPROVABLE',
          'PAYMENT_HOLD_EXPIRED',
          'IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD',
        ]),
        422: errorResponse(422, ['BALANCE_LIMIT_EXCEEDED']),
      },
    },
    reject: {
      summary: 'Reject a payment held for review',
      description: 'Releases the hold; the payment is declined (resolution `rejected`).',
      operationId: 'rejectPayment',
      response: {
        200: jsonResponse(
          'Rejected: the hold is released',
          paymentResult(false, false),
          IDEMPOTENCY_REPLAYED,
        ),
        409: errorResponse(409, ['PAYMENT_NOT_IN_REVIEW', 'IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD']),
      },
    },
  } as const;
  for (const action of ['approve', 'reject'] as const satisfies ReviewAction[]) {
    const docs = REVIEW_DOCS[action];
    app.post(
      `/v1/payments/:id/${action}`,
      {
        config: { roles: REVIEW_PAYMENTS },
        schema: {
          summary: docs.summary,
          description: `${docs.description} A second call is 409 PAYMENT_NOT_IN_REVIEW. The body may be left out.`,
          operationId: docs.operationId,
          tags: ['payments'],
          params: IdParams,
          requestHeaders: idempotencyKeyHeader(false),
          body: withExamples(ReviewBody, {
            note: {
              summary: "The reviewer's note (stored encrypted)",
              value: { note: 'Source of funds verified' },
            },
            none: { summary: 'No note', value: {} },
          }),
          bodyOptional: true,
          response: { ...docs.response, 404: errorResponse(404, ['PAYMENT_NOT_FOUND']) },
        },
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
      schema: {
        summary: 'Refund a posted payment',
        description:
          'The remaining amount, or `amountCents` of it; partial refunds add up to the payment, not beyond. A ' +
          "refund posting from the receiver back to the payer: the receiver's available balance must cover it. " +
          'The body may be left out (a full refund).',
        operationId: 'refundPayment',
        tags: ['payments'],
        params: IdParams,
        requestHeaders: idempotencyKeyHeader(true),
        body: withExamples(RefundBody, {
          partial: {
            summary: 'Refund $5.00 of it',
            value: { amountCents: 500, reason: 'Customer returned one item' },
          },
          full: { summary: 'Refund what remains', value: {} },
        }),
        bodyOptional: true,
        response: {
          201: jsonResponse(
            'Refunded',
            wrapper({ refund: ref(Refund), balances: Type.Optional(ResultingBalances) }),
            IDEMPOTENCY_REPLAYED,
          ),
          400: errorResponse(400, ['IDEMPOTENCY_KEY_REQUIRED']),
          404: errorResponse(404, ['PAYMENT_NOT_FOUND']),
          409: errorResponse(409, [
            'PAYMENT_NOT_REFUNDABLE',
            'IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD',
          ]),
          422: errorResponse(422, ['REFUND_EXCEEDS_PAYMENT', 'INSUFFICIENT_FUNDS', 'BALANCE_LIMIT_EXCEEDED']),
        },
      },
      preValidation: bodyOptional,
    },
    async (req, reply) => {
      const key = idempotencyKeyOf(req);
      return sendStored(reply, await createRefund(services, req.actor, key, req.params.id, req.body));
    },
  );
}
