import { type TSchema, Type } from 'typebox';
import { DELIVERED_EVENT_TYPES, EVENT_TYPES } from '../app/events.ts';
import { RATE_PATTERN } from '../domain/fx.ts';
import {
  PAYMENT_BATCH_ITEM_STATUSES,
  PAYMENT_BATCH_ITEMS_MAX,
  PAYMENT_BATCH_STATUSES,
} from '../domain/payment-batch.ts';
import { MODES } from '../domain/sandbox.ts';
import { ACCOUNT_STATUSES, RESOLUTION_OUTCOMES, ROLES } from '../domain/types.ts';

/**
 * The JSON views clients receive (src/app/views.ts and the routes' own bodies), as TypeBox schemas for the
 * OpenAPI document. They document; they do not serialise (server.ts sends JSON.stringify's output), and every
 * object says `additionalProperties: false`, so a field a view gains without being documented here fails the
 * contract test (test/openapi-contract.test.ts) instead of going unnoticed.
 *
 * The shared shapes carry an `$id`: registerOpenApi (openapi.ts) adds them to the server, and the document
 * lists them under components/schemas; routes refer to them with `ref(Schema)`.
 */
const closed = { additionalProperties: false } as const;
const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);
const DateTime = (description?: string) =>
  Type.String({ format: 'date-time', ...(description === undefined ? {} : { description }) });
/** `<prefix>_…`: generated ids, and the fixed ones of the demo data (acc_demo_alice_usd, key_demo_admin). */
const Id = (prefix: string, description?: string) =>
  Type.String({
    pattern: `^${prefix}_[A-Za-z0-9_]{1,60}$`,
    ...(description === undefined ? {} : { description }),
  });
const Cents = (description: string) =>
  Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description });
const Currency = Type.String({ pattern: '^[A-Z]{3}$', description: 'ISO 4217 code' });
const SignedCents = (description: string) =>
  Type.Integer({ minimum: Number.MIN_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER, description });
const Count = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
const Sha256Hex = Type.String({ pattern: '^[0-9a-f]{64}$' });
const Base64Hash = Type.String({ pattern: '^[A-Za-z0-9+/]{43}=$', description: 'a SHA-256 hash, base64' });

/** A reference to a shared schema (one with an `$id`), as the document's components/schemas names it. */
export function ref(schema: TSchema & { $id?: string }) {
  if (schema.$id === undefined) throw new Error('ref() needs a schema with an $id');
  return Type.Ref(schema.$id);
}

export const Customer = Type.Object(
  {
    id: Id('cus'),
    name: Type.String({ description: 'as sent (stored encrypted)' }),
    country: Type.String({ pattern: '^[A-Z]{2}$', description: 'ISO 3166-1 alpha-2 (or XK)' }),
    kycStatus: Type.Union([
      Type.Literal('verified'),
      Type.Literal('manual_review'),
      Type.Literal('rejected'),
    ]),
    kycTier: Type.String({
      pattern: '^[a-z0-9_]{1,32}$',
      description: "one of the risk policy's tiers (basic, standard, enhanced in the default policy)",
    }),
    createdAt: DateTime(),
  },
  { ...closed, $id: 'Customer', title: 'Customer' },
);

export const Account = Type.Object(
  {
    id: Id('acc'),
    ownerCustomerId: Id('cus'),
    currency: Currency,
    availableBalanceCents: SignedCents('posted minus held (negative only within an overdraft limit)'),
    postedBalanceCents: SignedCents('the sum of the ledger entries on the account'),
    heldBalanceCents: Cents('reserved by payments held for review'),
    maskedAccountNumber: Type.String({ pattern: '^\\*\\*\\*\\* \\*\\*\\*\\* \\*\\*\\*\\* [0-9]{4}$' }),
    status: Type.Union(
      ACCOUNT_STATUSES.map((s) => Type.Literal(s)),
      {
        description: 'active: sends and receives; frozen: receives only; closed: neither',
      },
    ),
    overdraftLimitCents: Cents('the available balance may go down to its negative'),
    minimumBalanceCents: Cents('the available balance must stay at or above it'),
    createdAt: DateTime(),
  },
  { ...closed, $id: 'Account', title: 'Account' },
);

export const AccountBalance = Type.Object(
  {
    id: Id('acc'),
    currency: Currency,
    availableBalanceCents: SignedCents('posted minus held'),
    postedBalanceCents: SignedCents('the sum of the ledger entries on the account'),
    heldBalanceCents: Cents('reserved by payments held for review'),
    asOf: Type.Optional(DateTime('with `at`: the instant these balances are as of')),
  },
  { ...closed, $id: 'AccountBalance', title: 'AccountBalance' },
);

const FeatureValue = Type.Union([Type.Number(), Type.String(), Type.Boolean()]);

const RuleCondition = Type.Object(
  {
    feature: Type.String(),
    op: Type.Union(['>=', '>', '<=', '<', '==', '!=', 'in', 'notIn'].map((op) => Type.Literal(op))),
    value: Type.Union([FeatureValue, Type.Array(Type.Union([Type.Number(), Type.String()]))]),
  },
  closed,
);

export const RuleHit = Type.Object(
  {
    rule: Type.String({ description: "the policy rule's id (`currency` and `funds`: the system checks)" }),
    outcome: Type.Union([Type.Literal('decline'), Type.Literal('review'), Type.Literal('allow')]),
    reason: Type.String({ description: 'the reason code' }),
    score: Type.Optional(Type.Integer({ minimum: 0, maximum: 100, description: "the rule's weight" })),
    observed: Type.Record(Type.String(), Type.Union([FeatureValue, Type.Null()]), {
      description: 'the feature values the rule saw',
    }),
    conditions: Type.Optional(
      Type.Object(
        { all: Type.Array(RuleCondition), any: Type.Array(RuleCondition) },
        {
          ...closed,
          description:
            'what the observed values were compared with: the rule’s conditions when it fired (all of `all` and ' +
            'one of `any` held); absent for the system checks (currency, funds)',
        },
      ),
    ),
  },
  { ...closed, $id: 'RuleHit', title: 'RuleHit' },
);

const ScreenedParty = Type.Object(
  {
    scoreBp: Type.Integer({ minimum: 0, maximum: 10_000, description: 'best match, basis points' }),
    entryId: Nullable(Type.String({ description: 'the list entry matched best' })),
    aliasId: Nullable(Type.String({ description: 'the alias (alt.csv) matched, if any' })),
  },
  closed,
);

const Outcome = Type.Union([Type.Literal('posted'), Type.Literal('manual_review'), Type.Literal('declined')]);
const Reasons = Type.Array(Type.String(), { description: 'reason codes, e.g. insufficient_funds' });

export const DecisionFull = Type.Object(
  {
    outcome: Outcome,
    policyVersion: Type.String(),
    reasons: Reasons,
    rules: Type.Array(ref(RuleHit), { description: 'every rule that fired, with what it saw' }),
    score: Type.Integer({ minimum: 0, maximum: 100 }),
    features: Type.Record(Type.String(), FeatureValue, { description: 'every feature the policy read' }),
    sanctions: Type.Object(
      {
        listSha256: Sha256Hex,
        sender: ScreenedParty,
        receiver: ScreenedParty,
      },
      { ...closed, description: 'the screening version and both parties’ best matches' },
    ),
  },
  {
    ...closed,
    $id: 'DecisionFull',
    title: 'DecisionFull',
    description: 'The whole explainable decision: what compliance, auditor and admin keys see.',
  },
);

export const DecisionSummary = Type.Object(
  { outcome: Outcome, policyVersion: Type.String(), reasons: Reasons },
  {
    ...closed,
    $id: 'DecisionSummary',
    title: 'DecisionSummary',
    description:
      'What payments keys see (and webhook payloads and events): the outcome and its reason codes.',
  },
);

/** The rate's decimal text (src/domain/fx.ts): never a JSON number, so no client parses it into a float. */
const FxRate = Type.String({
  pattern: RATE_PATTERN,
  description:
    'destination major units per source major unit, as a decimal string (e.g. "151.37" for USD→JPY)',
});

/** What a cross-currency payment recorded of its quote (src/domain/fx.ts FxTerms). */
export const PaymentFx = Type.Object(
  {
    quoteId: Id('fxq'),
    rate: FxRate,
    destinationAmountCents: Type.Integer({
      minimum: 1,
      maximum: Number.MAX_SAFE_INTEGER,
      description: 'what the payee gets, in minor units of destinationCurrency',
    }),
    destinationCurrency: Currency,
  },
  {
    ...closed,
    $id: 'PaymentFx',
    title: 'PaymentFx',
    description:
      'the FX quote a cross-currency payment used: amountCents and currency are the source side, this the ' +
      'destination side; posted (now or on approval) at exactly these amounts',
  },
);

export const FxQuote = Type.Object(
  {
    id: Id('fxq'),
    sourceCurrency: Currency,
    destinationCurrency: Currency,
    sourceAmountCents: Type.Integer({
      minimum: 1,
      maximum: Number.MAX_SAFE_INTEGER,
      description: 'minor units of sourceCurrency (ISO 4217 exponent: JPY 0, USD 2, BHD 3)',
    }),
    rate: FxRate,
    destinationAmountCents: Type.Integer({
      minimum: 1,
      maximum: Number.MAX_SAFE_INTEGER,
      description: 'sourceAmountCents converted at rate, rounded down to a minor unit of destinationCurrency',
    }),
    createdAt: DateTime(),
    expiresAt: DateTime(
      'a payment must use the quote before this instant (FX_QUOTE_TTL_SECONDS after createdAt)',
    ),
  },
  { ...closed, $id: 'FxQuote', title: 'FxQuote' },
);

export const Payment = Type.Object(
  {
    id: Id('pay'),
    status: Outcome,
    sourceAccountId: Id('acc'),
    destinationAccountId: Id('acc'),
    amountCents: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }),
    currency: Currency,
    note: Nullable(Type.String()),
    metadata: Nullable(Type.Record(Type.String(), Type.String())),
    reasons: Reasons,
    decision: Type.Union([ref(DecisionFull), ref(DecisionSummary)], {
      description: 'full for compliance, auditor and admin keys; the summary for payments keys',
    }),
    refundedCents: Cents('the sum of its refunds'),
    resolution: Nullable(
      Type.Object(
        {
          outcome: Type.Union(RESOLUTION_OUTCOMES.map((o) => Type.Literal(o))),
          resolvedAt: DateTime(),
          resolvedBy: Type.String({ description: 'the API key that decided, or `system` for an expiry' }),
          noteProvided: Type.Boolean({ description: "the reviewer's note itself is never returned" }),
        },
        { ...closed, description: 'how a review ended; null while in review and for payments never held' },
      ),
    ),
    createdAt: DateTime(),
    holdExpiresAt: Nullable(
      DateTime(
        'while in review: when the expiry sweep releases the hold and declines the payment (createdAt + ' +
          'REVIEW_HOLD_EXPIRY_HOURS); null otherwise',
      ),
    ),
    // Optional only for responses stored before it existed (a replay repeats the stored bytes).
    fx: Type.Optional(Nullable(ref(PaymentFx))),
    // Optional only for responses stored before it existed (a replay repeats the stored bytes).
    batchId: Type.Optional(
      Nullable(
        Id('pbt', 'the payment batch it was made in (POST /v1/payment-batches); null when made alone'),
      ),
    ),
  },
  { ...closed, $id: 'Payment', title: 'Payment' },
);

// Payment batches (src/http/routes/payment-batches.ts; src/app/payment-batches.ts).
const BatchItemError = Type.Object(
  {
    code: Type.String({ description: 'an error code of the catalogue (docs/api.md)' }),
    message: Type.String(),
    details: Type.Optional(
      Type.Array(Type.Object({ field: Type.Optional(Type.String()), message: Type.String() }, closed)),
    ),
    reasons: Type.Optional(Reasons),
  },
  { ...closed, description: 'why the item has no payment' },
);
export const PaymentBatchItem = Type.Object(
  {
    index: Type.Integer({
      minimum: 0,
      maximum: PAYMENT_BATCH_ITEMS_MAX - 1,
      description: 'its place in `payments`',
    }),
    status: Type.Union(PAYMENT_BATCH_ITEM_STATUSES.map((s) => Type.Literal(s))),
    payment: Type.Optional(ref(Payment)),
    error: Type.Optional(BatchItemError),
  },
  {
    ...closed,
    $id: 'PaymentBatchItem',
    title: 'PaymentBatchItem',
    description: 'posted, manual_review, declined: with its `payment`; failed, not_applied: with its `error`',
  },
);
const BatchCount = (description: string) =>
  Type.Integer({ minimum: 0, maximum: PAYMENT_BATCH_ITEMS_MAX, description });
export const PaymentBatch = Type.Object(
  {
    id: Id('pbt'),
    atomic: Type.Boolean(),
    status: Type.Union(
      PAYMENT_BATCH_STATUSES.map((s) => Type.Literal(s)),
      {
        description:
          'completed: every item decided; rejected: an atomic batch refused, nothing of it applied',
      },
    ),
    counts: Type.Object(
      {
        total: BatchCount('items in the batch'),
        posted: BatchCount('items posted'),
        manualReview: BatchCount('items held for review'),
        declined: BatchCount('items declined'),
        failed: BatchCount('items that failed (an error, or in an atomic batch, not posted)'),
        notApplied: BatchCount('items of a rejected atomic batch undone because others failed'),
      },
      closed,
    ),
    createdAt: DateTime(),
    items: Type.Array(ref(PaymentBatchItem), { maxItems: PAYMENT_BATCH_ITEMS_MAX }),
  },
  { ...closed, $id: 'PaymentBatch', title: 'PaymentBatch' },
);

export const Refund = Type.Object(
  {
    id: Id('ref'),
    paymentId: Id('pay'),
    amountCents: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }),
    currency: Currency,
    reason: Nullable(Type.String()),
    ledgerTransactionId: Id('ltx'),
    createdAt: DateTime(),
  },
  { ...closed, $id: 'Refund', title: 'Refund' },
);

export const LedgerEntry = Type.Object(
  {
    id: Id('led'),
    transactionId: Id('ltx'),
    paymentId: Nullable(Id('pay')),
    accountId: Id('acc'),
    direction: Type.Union([Type.Literal('debit'), Type.Literal('credit')]),
    amountCents: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }),
    currency: Currency,
    balanceAfterCents: Type.Integer({
      minimum: Number.MIN_SAFE_INTEGER,
      maximum: Number.MAX_SAFE_INTEGER,
      description:
        "the account's posted balance right after this entry (its running balance, in minor units), " +
        'written with the entry',
    }),
    requestId: Type.String({ description: "the server's id of the request that wrote it" }),
    timestamp: DateTime(),
  },
  { ...closed, $id: 'LedgerEntry', title: 'LedgerEntry' },
);

export const Statement = Type.Object(
  {
    accountId: Id('acc'),
    currency: Currency,
    from: DateTime('start of the period, inclusive'),
    to: DateTime('end of the period, exclusive'),
    openingBalanceCents: SignedCents('posted balance before the period’s first entry'),
    closingBalanceCents: SignedCents('posted balance after the period’s last entry'),
    entries: Type.Array(ref(LedgerEntry), {
      maxItems: 500,
      description: 'this page of the period’s entries, oldest first, each with its running balance',
    }),
    hasMore: Type.Boolean(),
    nextCursor: Nullable(
      Type.String({
        description: 'opaque: pass it as `cursor` (with the same from and to) for the next page',
      }),
    ),
  },
  { ...closed, $id: 'Statement', title: 'Statement' },
);

export const AuditEntry = Type.Object(
  {
    id: Id('aud'),
    index: Count,
    timestamp: DateTime(),
    eventType: Type.String({ description: 'e.g. payment.posted, customer.kyc_updated, api_key.created' }),
    actorId: Type.String({ description: 'the API key that acted, or `system`/`cli`' }),
    requestId: Type.String(),
    resourceType: Type.String(),
    resourceId: Type.String(),
    metadata: Type.Object({}, { additionalProperties: true, description: 'ids, amounts, decisions' }),
    prevHash: Type.String({ pattern: '^(GENESIS|[0-9a-f]{64})$' }),
    hash: Sha256Hex,
  },
  {
    ...closed,
    $id: 'AuditEntry',
    title: 'AuditEntry',
    description: '`hash` is SHA-256 over the canonical JSON (RFC 8785) of the entry without `hash`.',
  },
);

export const Receipt = Type.Object(
  {
    index: Count,
    entry: ref(AuditEntry),
    inclusionProof: Type.Array(Base64Hash, { description: 'RFC 9162, leaf to root' }),
    checkpoint: Type.String({ description: 'the signed note (C2SP tlog-checkpoint) the proof leads to' }),
  },
  {
    ...closed,
    $id: 'Receipt',
    title: 'Receipt',
    description:
      "Proof that the payment's audit entry is in the log: entry `index` of the tree the signed checkpoint " +
      'commits to. The entry holds the full decision (the leaf hash covers it).',
  },
);

/** GET /v1/ledger/verify's result (src/app/verification.ts). */
export const LedgerVerification = Type.Object(
  {
    valid: Type.Boolean(),
    currencies: Type.Array(
      Type.Object(
        {
          currency: Currency,
          debitsCents: Type.Union([Count, Type.String({ pattern: '^[0-9]+$' })], {
            description: 'a decimal string beyond 2^53',
          }),
          creditsCents: Type.Union([Count, Type.String({ pattern: '^[0-9]+$' })], {
            description: 'a decimal string beyond 2^53',
          }),
        },
        closed,
      ),
    ),
    accountsChecked: Count,
    mismatches: Type.Array(Type.Object({ accountId: Type.String(), problem: Type.String() }, closed), {
      maxItems: 100,
    }),
  },
  { ...closed, $id: 'LedgerVerification', title: 'LedgerVerification' },
);

export const AuditVerification = Type.Object(
  {
    valid: Type.Boolean(),
    brokenAtIndex: Nullable(Count),
    reason: Nullable(Type.String()),
    size: Count,
  },
  { ...closed, $id: 'AuditVerification', title: 'AuditVerification' },
);

const VerificationMode = Type.Union([Type.Literal('incremental'), Type.Literal('full')]);

/** What a finished run of GET /v1/audit-logs/verify covered. */
export const AuditVerificationChecked = Type.Object(
  {
    mode: VerificationMode,
    jobId: Type.String({ pattern: '^avj_[0-9a-f]{24}$' }),
    verifiedFrom: Count,
    verifiedUpTo: Count,
    complete: Type.Literal(true),
    lastFullVerification: Nullable(
      Type.Object(
        {
          at: DateTime(),
          size: Count,
          valid: Type.Boolean(),
          brokenAtIndex: Nullable(Count),
          reason: Nullable(Type.String()),
        },
        closed,
      ),
    ),
  },
  { ...closed, $id: 'AuditVerificationChecked', title: 'AuditVerificationChecked' },
);

export const AuditVerificationJob = Type.Object(
  {
    id: Type.String({ pattern: '^avj_[0-9a-f]{24}$' }),
    mode: VerificationMode,
    status: Type.Union([Type.Literal('running'), Type.Literal('completed'), Type.Literal('failed')]),
    startedAt: DateTime(),
    finishedAt: Nullable(DateTime()),
    verifiedFrom: Nullable(Count),
    checkedUpTo: Nullable(Count),
    size: Nullable(Count),
    verification: Nullable(ref(AuditVerification)),
    verifiedUpTo: Nullable(Count),
    error: Nullable(Type.String()),
  },
  {
    ...closed,
    $id: 'AuditVerificationJob',
    title: 'AuditVerificationJob',
    description: 'Kept in the memory of the process that runs it (the last 32): poll that process.',
  },
);

export const ApiKey = Type.Object(
  {
    id: Id('key'),
    mode: Type.Union(
      MODES.map((m) => Type.Literal(m)),
      {
        description:
          'live: sees live data only; test: the sandbox’s data only (secret sk_live_… / sk_test_…)',
      },
    ),
    name: Type.String({ minLength: 1, maxLength: 100 }),
    role: Type.Union(ROLES.map((r) => Type.Literal(r))),
    customerIds: Nullable(Type.Array(Id('cus'), { minItems: 1, maxItems: 100 })),
    status: Type.Union([Type.Literal('active'), Type.Literal('revoked'), Type.Literal('expired')]),
    createdAt: DateTime(),
    expiresAt: Nullable(DateTime()),
    revokedAt: Nullable(DateTime()),
    lastRotatedAt: Nullable(DateTime()),
    previousSecretExpiresAt: Nullable(DateTime('the replaced secret works until then (rotation grace)')),
  },
  { ...closed, $id: 'ApiKey', title: 'ApiKey', description: 'Never a secret or a hash.' },
);

export const ApiKeySecret = Type.String({
  pattern: '^sk_(live|test)_[A-Za-z0-9_-]{43}$',
  description: 'shown in this response only (and in its replay under the same Idempotency-Key)',
});

// Webhooks (src/http/routes/webhooks.ts; docs/webhooks.md).
export const Event = Type.Object(
  {
    id: Id('evt'),
    type: Type.Union(EVENT_TYPES.map((t) => Type.Literal(t))),
    createdAt: DateTime(),
    data: Type.Object(
      {},
      {
        additionalProperties: true,
        description:
          '`{payment, refund?}` for payment events, `{customer}` for customer.kyc_updated, `{batch}` for ' +
          'payment_batch events (docs/webhooks.md)',
      },
    ),
  },
  {
    ...closed,
    description: 'As listed here and as POSTed to webhook endpoints (the same bytes of data)',
    $id: 'Event',
    title: 'Event',
  },
);

const endpointFields = {
  id: Id('whe'),
  url: Type.String(),
  events: Type.Array(Type.Union(EVENT_TYPES.map((t) => Type.Literal(t))), { minItems: 1 }),
  createdAt: DateTime(),
  secretRotatedAt: Nullable(DateTime('when the signing secret was last rotated')),
  previousSecretExpiresAt: Nullable(
    DateTime(
      'the replaced secret signs beside the current one until then (a past time: it no longer does; null: never rotated with a grace period)',
    ),
  ),
};
export const WebhookEndpoint = Type.Object(endpointFields, {
  ...closed,
  description: 'Never a signing secret',
  $id: 'WebhookEndpoint',
  title: 'WebhookEndpoint',
});
export const WebhookEndpointWithSecret = Type.Object(
  {
    ...endpointFields,
    secret: Type.String({
      pattern: '^whsec_[A-Za-z0-9+/]+={0,2}$',
      description:
        'the signing secret (whsec_ + base64 of 32 bytes): shown in this response only (and in its replay under ' +
        'the same Idempotency-Key)',
    }),
  },
  { ...closed, $id: 'WebhookEndpointWithSecret', title: 'WebhookEndpointWithSecret' },
);

export const WebhookDelivery = Type.Object(
  {
    id: Id('whd'),
    eventId: Id('evt'),
    eventType: Type.Union(DELIVERED_EVENT_TYPES.map((t) => Type.Literal(t))),
    endpointId: Id('whe'),
    status: Type.Union([Type.Literal('pending'), Type.Literal('succeeded'), Type.Literal('failed')]),
    attempts: Type.Integer({ minimum: 0, description: 'every attempt made, manual retries included' }),
    nextAttemptAt: Nullable(DateTime('when the next attempt is due (pending only)')),
    lastStatusCode: Nullable(Type.Integer({ minimum: 100, maximum: 999 })),
    lastError: Nullable(Type.String({ maxLength: 200 })),
    lastAttemptAt: Nullable(DateTime()),
    manualRetries: Type.Integer({
      minimum: 0,
      description: 'how often it was re-queued by hand after failing',
    }),
    createdAt: DateTime(),
  },
  { ...closed, $id: 'WebhookDelivery', title: 'WebhookDelivery' },
);

/** Every shared schema above, in the order components/schemas lists them. */
const CountryCode = Type.String({ pattern: '^[A-Z]{2}$', description: 'ISO 3166-1 alpha-2 (or XK)' });
const PersonalText = (description: string) =>
  Nullable(
    Type.String({
      description: `${description}: decrypted for compliance and auditor keys; null for admin keys (masked)`,
    }),
  );

/** A row of a regulatory report (src/app/reports.ts): fixed columns, then the fields its type's rules ask for. */
export const ReportRow = Type.Object(
  {
    ruleId: Type.String({ pattern: '^[a-z0-9_]{1,64}$', description: 'the reporting rule that put it here' }),
    paymentId: Id('pay'),
    reportedAt: DateTime(
      'when the payment came under the rule (its transaction); reports are periods of this',
    ),
    paymentCreatedAt: DateTime(),
    amountCents: Cents('the payment amount, in minor units of its currency'),
    currency: Currency,
    status: Type.Union([Type.Literal('posted'), Type.Literal('manual_review'), Type.Literal('declined')], {
      description: 'the payment status now',
    }),
    jurisdiction: Type.String({
      pattern: '^(\\*|[A-Z]{2})$',
      description:
        "the party's country that brought it under the rule, or * for a rule of every jurisdiction",
    }),
    trigger: Type.Union([Type.Literal('amount'), Type.Literal('aggregate_24h'), Type.Literal('reason')]),
    auditIndex: Type.Integer({
      minimum: 0,
      description:
        "the payment's audit entry (GET /v1/audit-logs/entries/{index}; its inclusion proof: GET /v1/audit-logs/proofs/inclusion)",
    }),
    originatorName: Type.Optional(PersonalText("the sender's name")),
    originatorAccountNumber: Type.Optional(PersonalText("the sender's account number")),
    originatorCountry: Type.Optional(Nullable(CountryCode)),
    beneficiaryName: Type.Optional(PersonalText("the receiver's name")),
    beneficiaryAccountNumber: Type.Optional(PersonalText("the receiver's account number")),
    beneficiaryCountry: Type.Optional(Nullable(CountryCode)),
    reasons: Type.Optional(
      Nullable(
        Type.Array(Type.String({ pattern: '^[a-z0-9_]{1,64}$' }), { description: 'AML reason codes' }),
      ),
    ),
    windowTotalCents: Type.Optional(
      Nullable(Cents("the source account's rolling 24-hour outgoing total, this payment included")),
    ),
    caseId: Type.Optional(Nullable(Id('case'))),
  },
  { ...closed, $id: 'ReportRow', title: 'ReportRow' },
);

export const ComplianceCase = Type.Object(
  {
    id: Id('case'),
    status: Type.Union([Type.Literal('open'), Type.Literal('filed'), Type.Literal('dismissed')]),
    paymentId: Id('pay'),
    ruleId: Type.String({ pattern: '^[a-z0-9_]{1,64}$' }),
    reasons: Type.Array(Type.String({ pattern: '^[a-z0-9_]{1,64}$' }), {
      description: 'the AML reason codes',
    }),
    auditIndex: Type.Integer({ minimum: 0, description: "the payment's audit entry, the case's opening" }),
    createdAt: DateTime(),
    decidedAt: Nullable(DateTime()),
    decidedBy: Nullable(Id('key', 'the API key that decided it')),
    noteProvided: Type.Boolean({
      description: 'whether the decision has a note (stored encrypted, not shown)',
    }),
  },
  { ...closed, $id: 'ComplianceCase', title: 'ComplianceCase' },
);

export const RESPONSE_COMPONENTS: readonly TSchema[] = [
  Customer,
  Account,
  AccountBalance,
  Payment,
  PaymentFx,
  PaymentBatch,
  PaymentBatchItem,
  FxQuote,
  DecisionFull,
  DecisionSummary,
  RuleHit,
  Refund,
  LedgerEntry,
  Statement,
  AuditEntry,
  Receipt,
  LedgerVerification,
  AuditVerification,
  AuditVerificationChecked,
  AuditVerificationJob,
  ApiKey,
  Event,
  WebhookEndpoint,
  WebhookEndpointWithSecret,
  WebhookDelivery,
  ReportRow,
  ComplianceCase,
];

/** A cursor-paged list: `{<items>: [...], hasMore, nextCursor}` (src/http/paging.ts). */
export function page(itemsKey: string, item: TSchema) {
  return Type.Object(
    {
      [itemsKey]: Type.Array(item, { maxItems: 500 }),
      hasMore: Type.Boolean(),
      nextCursor: Nullable(
        Type.String({ description: 'opaque: pass it as `cursor` for the next page; null on the last' }),
      ),
    },
    closed,
  );
}

/** An object with these properties and no others (the `{payment: …}` wrappers of single resources). */
export function wrapper(properties: Record<string, TSchema>) {
  return Type.Object(properties, closed);
}
