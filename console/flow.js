/**
 * The workshop's request flow for one payment: the eight steps of POST /v1/payments (src/app/create-payment.ts),
 * each with what it decided for THIS payment and the file that does it. Everything here is read from the
 * payment, its recorded decision, its ledger entries and its receipt: nothing is recomputed.
 */

/** Which step a fired rule belongs to, by its reason code (the default policy's; others go to the decision). */
const COMPLIANCE_REASONS = new Set([
  'kyc_not_verified',
  'receiver_kyc_rejected',
  'high_risk_jurisdiction',
  'sanctions_match',
  'possible_sanctions_match',
  'kyc_limit_exceeded',
  'amount_above_review_threshold',
  'suspicious_payment_note',
  'structuring_suspected',
]);
const FRAUD_REASONS = new Set([
  'high_velocity_source_account',
  'repeated_payment_pattern',
  'amount_above_fraud_review_threshold',
]);
const FUNDS_REASONS = new Set(['currency_mismatch', 'insufficient_funds']);
/**
 * The default policy's decline reasons: a `payments` key sees reason codes without their rules, and only these
 * say "declined" on their own; any other reason of a declined payment was a flag the decline outranked.
 */
const DECLINE_REASONS = new Set([
  'kyc_not_verified',
  'receiver_kyc_rejected',
  'high_risk_jurisdiction',
  'sanctions_match',
  'kyc_limit_exceeded',
  'currency_mismatch',
  'insufficient_funds',
]);
const CLASSIFIED = new Set([...COMPLIANCE_REASONS, ...FRAUD_REASONS, ...FUNDS_REASONS]);

const firedFor = (decision, reasons) => (decision.rules ?? []).filter((rule) => reasons.has(rule.reason));
const reasonsWith = (rules, outcome) =>
  rules
    .filter((rule) => rule.outcome === outcome)
    .map((rule) => rule.reason)
    .join(', ');

/** A step's verdict from the rules it fired: the strongest outcome wins, and each rule is named for its own. */
function verdict(rules, passed) {
  const declined = reasonsWith(rules, 'decline');
  const flagged = reasonsWith(rules, 'review');
  if (declined !== '') {
    return {
      state: 'declined',
      text: `declined: ${declined}${flagged === '' ? '' : `; flagged for review: ${flagged}`}`,
    };
  }
  if (flagged !== '') return { state: 'review', text: `review: ${flagged}` };
  return { state: 'passed', text: passed };
}

/**
 * The eight steps. `detail` is 'full' when the key may see the whole decision (features and rules); a payments
 * key sees only the outcome and reasons, and the steps say so instead of guessing.
 */
export function requestFlow({ payment, ledgerEntries, refunds = [], partial = false }) {
  const decision = payment.decision ?? {};
  const full = Array.isArray(decision.rules);
  const features = decision.features ?? {};
  const reasons = new Set(payment.reasons ?? []);
  const byReasons = (set) =>
    full
      ? firedFor(decision, set)
      : [...reasons]
          .filter((r) => set.has(r))
          .map((reason) => ({ reason, outcome: DECLINE_REASONS.has(reason) ? 'decline' : 'review' }));
  const compliance = byReasons(COMPLIANCE_REASONS);
  const fraud = byReasons(FRAUD_REASONS);
  const funds = byReasons(FUNDS_REASONS);
  // The payment's own posting: its entries minus those of its refunds (which reverse it, later).
  const refundTransactions = new Set(refunds.map((refund) => refund.ledgerTransactionId));
  const posted = ledgerEntries.filter(
    (entry) => entry.paymentId === payment.id && !refundTransactions.has(entry.transactionId),
  );
  // Rules of a custom policy whose reasons no step names (and allow rules): the decision step lists them.
  const other = full
    ? (decision.rules ?? []).filter((rule) => !CLASSIFIED.has(rule.reason))
    : [...reasons]
        .filter((reason) => !CLASSIFIED.has(reason))
        .map((reason) => ({ rule: 'policy', outcome: 'flagged', reason }));

  return [
    {
      name: 'Validate',
      file: 'src/http/routes/payments.ts, src/app/create-payment.ts',
      state: 'passed',
      text: `amountCents ${payment.amountCents} is a positive safe integer, currency ${payment.currency}, source ≠ destination; a 400 stores nothing`,
    },
    {
      name: 'Idempotency gate',
      file: 'src/app/idempotent.ts',
      state: 'passed',
      text: 'first execution under its Idempotency-Key, inside the transaction; a replay returns the stored response byte for byte',
    },
    {
      name: 'Load accounts',
      file: 'src/app/create-payment.ts',
      state: 'passed',
      text: `source ${payment.sourceAccountId} and destination ${payment.destinationAccountId} found and locked`,
    },
    {
      name: 'Compliance (KYC, AML, sanctions)',
      file: 'src/domain/policy.ts, src/domain/sanctions.ts, src/app/risk-assessment.ts',
      ...verdict(
        compliance,
        full
          ? `sender KYC ${features.senderKycStatus}, receiver KYC ${features.receiverKycStatus}, sanctions ${features.senderSanctions} / ${features.receiverSanctions}: no rule fired`
          : 'no compliance rule fired',
      ),
    },
    {
      name: 'Fraud (velocity, patterns)',
      file: 'src/domain/features.ts, src/domain/policy.ts',
      ...verdict(
        fraud,
        full
          ? `${features.sourceAttempts1m} earlier attempts from the source in 1 min, ${features.samePattern1m} repeats of this pattern: no rule fired`
          : 'no fraud rule fired',
      ),
    },
    {
      name: 'Funds and currency',
      file: 'src/app/risk-assessment.ts',
      ...verdict(
        funds,
        `both accounts hold ${payment.currency}, and the available balance covered the amount`,
      ),
    },
    {
      name: 'Decision and ledger',
      file: 'src/domain/policy.ts, src/domain/ledger.ts',
      state:
        payment.status === 'posted' ? 'passed' : payment.status === 'manual_review' ? 'review' : 'declined',
      text:
        decisionText(payment, decision, posted, refunds, other) +
        (partial ? ' (from the first 100 entries and refunds shown)' : ''),
    },
    {
      name: 'Audit and idempotency record',
      file: 'src/domain/audit.ts, src/app/idempotent.ts',
      state: 'passed',
      text: 'its audit entry (hash-chained, in the signed log) and the idempotency record were written in the same transaction as the payment',
    },
  ];
}

function decisionText(payment, decision, posted, refunds, other) {
  const score = typeof decision.score === 'number' ? `, score ${decision.score}` : '';
  const others = other.map((rule) => `${rule.rule} (${rule.outcome}: ${rule.reason})`).join(', ');
  const policy = `policy ${decision.policyVersion}${score}${others === '' ? '' : `; other rules: ${others}`}`;
  const refunded =
    refunds.length === 0
      ? ''
      : `; later ${refunds.length} refund(s), ${payment.refundedCents} minor units in all`;
  if (payment.resolution !== null && payment.resolution !== undefined) {
    const via = `${decision.outcome} at first (${policy}); then ${payment.resolution.outcome} by ${payment.resolution.resolvedBy}`;
    return payment.status === 'posted'
      ? `${via}: posted, ${posted.length} ledger entries${refunded}`
      : `${via}: hold released`;
  }
  if (payment.status === 'posted')
    return `posted (${policy}): ${posted.length} ledger entries, debits equal credits${refunded}`;
  if (payment.status === 'manual_review')
    return `manual review (${policy}): the amount is held on the source, nothing posted`;
  return `declined (${policy}): no money moved`;
}
