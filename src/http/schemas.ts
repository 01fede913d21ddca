import { type Static, Type } from 'typebox';
import { ISO_DATE_TIME_PATTERN } from '../app/api-keys.ts';
import { EVENT_TYPES } from '../app/events.ts';
import { COUNTRY_CODES, CURRENCY_CODES } from '../domain/iso-codes.ts';
import { COUNTRY_PATTERN, CURRENCY_PATTERN } from '../domain/money.ts';
import { PAYMENT_BATCH_ITEMS_MAX } from '../domain/payment-batch.ts';
import { ACCOUNT_STATUSES, PAYMENT_STATUSES } from '../domain/types.ts';

/**
 * Request schemas: the edge where input is checked once. No coercion on bodies (a string "100" is not an
 * amount), unknown fields rejected, money a JSON integer within the safe range, codes upper-case exactly.
 */
// With ajv's `u` flag a paired surrogate is one code point outside this range; only lone ones match it.
const WELL_FORMED_UNICODE = '^[^\\uD800-\\uDFFF]*$';
const ID = Type.String({ pattern: '^[a-z]+_[A-Za-z0-9_]{1,60}$', maxLength: 64 });
const Cents = (minimum: number) => Type.Integer({ minimum, maximum: Number.MAX_SAFE_INTEGER });
// Text that is not silently trimmed (leading or trailing spaces are a client mistake) and holds no control
// characters or lone surrogates.
const TEXT_CHAR = '[^\\p{Cc}\\uD800-\\uDFFF]';
const TEXT_EDGE = '[^\\s\\p{Cc}\\uD800-\\uDFFF]';
const Text = (maxLength: number) =>
  Type.String({ minLength: 1, maxLength, pattern: `^${TEXT_EDGE}(?:${TEXT_CHAR}*${TEXT_EDGE})?$` });
// A person's or company's name: the shape only (no edge spaces, no lone surrogates). What cannot be a real
// name (control, format and bidi characters, nothing left once canonicalised) is refused by createCustomer
// with nameProblem's reason (src/domain/canonical-text.ts), so every such name gets the same message.
const NAME_CHAR = '[^\\uD800-\\uDFFF]';
const NAME_EDGE = '[^\\s\\uD800-\\uDFFF]';
const Name = Type.String({
  minLength: 1,
  maxLength: 200,
  pattern: `^${NAME_EDGE}(?:${NAME_CHAR}*${NAME_EDGE})?$`,
});
/**
 * Codes a client names: upper case exactly (the pattern, no trimming or re-casing), then one of the known
 * codes (src/domain/iso-codes.ts): "QQQ" and "ZZ" are well-formed but name nothing. Use these for every
 * currency or country in a body or a query filter.
 */
export const CurrencyCode = Type.String({ pattern: CURRENCY_PATTERN, enum: [...CURRENCY_CODES] });
export const CountryCode = Type.String({ pattern: COUNTRY_PATTERN, enum: [...COUNTRY_CODES] });

export const IdParams = Type.Object({ id: ID }, { additionalProperties: false });

export const PageQuery = {
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 50 })),
  cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
};
export const ListQuery = Type.Object(PageQuery, { additionalProperties: false });

export const CreateCustomerBody = Type.Object(
  {
    name: Name,
    country: CountryCode,
    documentReference: Text(100),
  },
  { additionalProperties: false },
);
export type CreateCustomerBody = Static<typeof CreateCustomerBody>;

/** An account's controls: at least one of them (src/app/account-controls.ts). */
export const AccountControlsBody = Type.Object(
  {
    status: Type.Optional(Type.Union(ACCOUNT_STATUSES.map((s) => Type.Literal(s)))),
    overdraftLimitCents: Type.Optional(Cents(0)),
    minimumBalanceCents: Type.Optional(Cents(0)),
  },
  { additionalProperties: false, minProperties: 1 },
);

export const KycDecisionBody = Type.Object(
  {
    kycStatus: Type.Union([
      Type.Literal('verified'),
      Type.Literal('manual_review'),
      Type.Literal('rejected'),
    ]),
    kycTier: Type.Optional(Type.String({ pattern: '^[a-z0-9_]{1,32}$' })),
    note: Type.Optional(Text(500)),
  },
  { additionalProperties: false },
);

export const CreateAccountBody = Type.Object(
  {
    customerId: ID,
    currency: CurrencyCode,
    initialBalanceCents: Type.Optional(Cents(0)),
  },
  { additionalProperties: false },
);
export type CreateAccountBody = Static<typeof CreateAccountBody>;

export const AccountListQuery = Type.Object(
  { ...PageQuery, customerId: Type.Optional(ID) },
  { additionalProperties: false },
);

export const CreatePaymentBody = Type.Object(
  {
    sourceAccountId: ID,
    destinationAccountId: ID,
    amountCents: Cents(1),
    currency: CurrencyCode,
    // Well-formed Unicode only: a lone surrogate cannot be stored as UTF-8 and would come back altered.
    note: Type.Optional(Type.String({ maxLength: 500, pattern: WELL_FORMED_UNICODE })),
    // Required between accounts of two currencies (an FX quote of this key: POST /v1/fx-quotes).
    quoteId: Type.Optional(Type.String({ pattern: '^fxq_[a-z0-9]{1,60}$', maxLength: 64 })),
    metadata: Type.Optional(
      // additionalProperties: false, or a key outside the pattern would escape the value check entirely.
      Type.Record(Type.String({ pattern: '^[A-Za-z0-9_.-]{1,40}$' }), Type.String({ maxLength: 500 }), {
        maxProperties: 20,
        additionalProperties: false,
      }),
    ),
  },
  { additionalProperties: false },
);
export type CreatePaymentBody = Static<typeof CreatePaymentBody>;

/**
 * A payment batch: every payment exactly as POST /v1/payments takes it (so an invalid one is named by its place:
 * `/payments/3/amountCents`), at most PAYMENT_BATCH_ITEMS_MAX of them.
 */
export const CreatePaymentBatchBody = Type.Object(
  {
    atomic: Type.Boolean({
      description: 'true: all post or none does; false: each payment is decided on its own',
    }),
    payments: Type.Array(CreatePaymentBody, { minItems: 1, maxItems: PAYMENT_BATCH_ITEMS_MAX }),
  },
  { additionalProperties: false },
);
export type CreatePaymentBatchBody = Static<typeof CreatePaymentBatchBody>;

/** A quote to convert `sourceAmountCents` (minor units of sourceCurrency) into destinationCurrency. */
export const CreateFxQuoteBody = Type.Object(
  {
    sourceCurrency: CurrencyCode,
    destinationCurrency: CurrencyCode,
    sourceAmountCents: Cents(1),
  },
  { additionalProperties: false },
);
export type CreateFxQuoteBody = Static<typeof CreateFxQuoteBody>;

/** `asc` (the default): oldest first; `desc`: newest first. A cursor keeps the order it was made for. */
const Order = Type.Optional(
  Type.Union([Type.Literal('asc'), Type.Literal('desc')], {
    description: 'oldest first (asc, default) or newest first',
  }),
);

/**
 * The filters of the payment and ledger lists (issue 17; checked further, and turned into a ListFilter, by
 * src/http/list-filters.ts). Amounts are decimal digits, not JSON numbers: a query string is text, and "1e3",
 * "0x10" or " 12" (which type coercion would take) are not amounts.
 */
const AmountFilter = (description: string) =>
  Type.Optional(
    Type.String({
      pattern: '^(0|[1-9][0-9]{0,15})$',
      description: `${description}, in minor units: a decimal integer up to ${Number.MAX_SAFE_INTEGER}`,
    }),
  );
const InstantFilter = (description: string) =>
  Type.Optional(
    Type.String({
      pattern: ISO_DATE_TIME_PATTERN,
      description: `${description}: an RFC 3339 instant with its offset, e.g. 2026-01-31T12:00:00Z (milliseconds at most)`,
    }),
  );
const StatusFilter = Type.Optional(Type.Union(PAYMENT_STATUSES.map((s) => Type.Literal(s))));
/** `metadata[key]=value`: the key as in CreatePaymentBody's metadata; the value any text without NUL. */
export const METADATA_FILTER_KEY = '[A-Za-z0-9_.-]{1,40}';
const METADATA_FILTERS = {
  patternProperties: {
    [`^metadata\\[${METADATA_FILTER_KEY}\\]$`]: Type.String({
      maxLength: 500,
      pattern: '^[^\\u0000\\uD800-\\uDFFF]*$',
    }),
  },
};
const ListFilters = {
  accountId: Type.Optional(ID),
  counterpartyAccountId: Type.Optional(ID),
  createdFrom: InstantFilter('created at or after (inclusive)'),
  createdTo: InstantFilter('created before (exclusive)'),
  amountMin: AmountFilter('amount at least (inclusive)'),
  amountMax: AmountFilter('amount at most (inclusive)'),
  order: Order,
};

export const PaymentListQuery = Type.Object(
  { ...PageQuery, ...ListFilters, status: StatusFilter },
  { additionalProperties: false, ...METADATA_FILTERS },
);

/** An instant in a query string (RFC 3339 with an offset, calendar-checked by parseIsoTime). */
const InstantParam = (description: string) =>
  Type.Optional(Type.String({ minLength: 1, maxLength: 40, description }));

export const StatementQuery = Type.Object(
  {
    ...PageQuery,
    from: InstantParam('start of the period, inclusive (RFC 3339); default: the beginning'),
    to: InstantParam('end of the period, exclusive (RFC 3339); default: now'),
  },
  { additionalProperties: false },
);

export const BalanceQuery = Type.Object(
  { at: InstantParam('the balance as of this instant, inclusive (RFC 3339); default: now') },
  { additionalProperties: false },
);

export const LedgerQuery = Type.Object(
  { ...PageQuery, ...ListFilters, paymentId: Type.Optional(ID), status: StatusFilter },
  { additionalProperties: false, ...METADATA_FILTERS },
);

/** Approve or reject a payment in review; the note is the reviewer's (stored encrypted). */
export const ReviewBody = Type.Object({ note: Type.Optional(Text(500)) }, { additionalProperties: false });

export const RefundBody = Type.Object(
  { amountCents: Type.Optional(Cents(1)), reason: Type.Optional(Text(500)) },
  { additionalProperties: false },
);

export const CreateWebhookEndpointBody = Type.Object(
  {
    url: Type.String({ minLength: 1, maxLength: 2000, pattern: '^https?://[\\x21-\\x7E]+$' }),
    events: Type.Array(Type.Union(EVENT_TYPES.map((t) => Type.Literal(t))), {
      minItems: 1,
      maxItems: EVENT_TYPES.length,
      uniqueItems: true,
    }),
  },
  { additionalProperties: false },
);
