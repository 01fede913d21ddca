/**
 * The one error catalogue: every client-visible error code and its HTTP status. Codes are stable API; the
 * messages are for humans and never contain personal data or secrets.
 */
export const ERROR_CATALOGUE = {
  VALIDATION_ERROR: 400,
  INVALID_JSON: 400,
  MALFORMED_REQUEST: 400,
  IDEMPOTENCY_KEY_REQUIRED: 400,
  AUTH_REQUIRED: 401,
  AUTH_INVALID: 401,
  FORBIDDEN: 403,
  // The sandbox (src/domain/sandbox.ts): a test-mode route called with a live key; a key made for the other mode.
  TEST_MODE_ONLY: 403,
  MODE_MISMATCH: 403,
  NOT_FOUND: 404,
  CUSTOMER_NOT_FOUND: 404,
  ACCOUNT_NOT_FOUND: 404,
  PAYMENT_NOT_FOUND: 404,
  SOURCE_ACCOUNT_NOT_FOUND: 404,
  DESTINATION_ACCOUNT_NOT_FOUND: 404,
  AUDIT_ENTRY_NOT_FOUND: 404,
  WEBHOOK_ENDPOINT_NOT_FOUND: 404,
  WEBHOOK_DELIVERY_NOT_FOUND: 404,
  API_KEY_NOT_FOUND: 404,
  FX_QUOTE_NOT_FOUND: 404,
  PAYMENT_BATCH_NOT_FOUND: 404,
  // Regulatory reporting (src/app/reports.ts, src/app/cases.ts).
  REPORT_TYPE_NOT_FOUND: 404,
  CASE_NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  REQUEST_TIMEOUT: 408,
  CUSTOMER_EXISTS: 409,
  IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD: 409,
  IDEMPOTENCY_KEY_IN_USE: 409,
  PAYMENT_NOT_IN_REVIEW: 409,
  PAYMENT_NO_LONGER_APPROVABLE: 409,
  PAYMENT_HOLD_EXPIRED: 409,
  PAYMENT_NOT_REFUNDABLE: 409,
  // Account controls (src/app/account-controls.ts): what a frozen or closed account refuses, and closing one
  // that still holds money.
  ACCOUNT_FROZEN: 409,
  ACCOUNT_CLOSED: 409,
  ACCOUNT_NOT_EMPTY: 409,
  ACCOUNT_BELOW_NEW_LIMIT: 409,
  API_KEY_NOT_ACTIVE: 409,
  API_KEY_LAST_ADMIN: 409,
  API_KEY_NOT_ROTATABLE: 409,
  WEBHOOK_DELIVERY_NOT_RETRYABLE: 409,
  CASE_ALREADY_DECIDED: 409,
  PAYLOAD_TOO_LARGE: 413,
  URI_TOO_LONG: 414,
  UNSUPPORTED_CONTENT_TYPE: 415,
  INSUFFICIENT_FUNDS: 422,
  BALANCE_LIMIT_EXCEEDED: 422,
  REFUND_EXCEEDS_PAYMENT: 422,
  WEBHOOK_TARGET_FORBIDDEN: 422,
  // Foreign exchange (src/app/fx-quotes.ts): a quote that cannot be given, or cannot be used by this payment.
  FX_PAIR_NOT_OFFERED: 422,
  FX_AMOUNT_OUT_OF_RANGE: 422,
  FX_QUOTE_EXPIRED: 422,
  FX_QUOTE_USED: 422,
  FX_QUOTE_MISMATCH: 422,
  // An atomic payment batch's items (src/app/payment-batches.ts): why an item did not post, or was undone.
  PAYMENT_DECLINED: 422,
  PAYMENT_HELD_FOR_REVIEW: 422,
  BATCH_ITEM_NOT_APPLIED: 422,
  RATE_LIMITED: 429,
  HEADERS_TOO_LARGE: 431,
  INTERNAL_ERROR: 500,
  AUDIT_CHAIN_INVALID: 500,
  AUDIT_LOG_INCONSISTENT: 500,
  SERVICE_UNAVAILABLE: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

export interface ErrorDetail {
  field?: string;
  message: string;
}

/** A failure the client can act on (or an operational one like 503), mapped to its status in one place. */
export class AppError extends Error {
  override name = 'AppError';
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: ErrorDetail[] | undefined;

  constructor(code: ErrorCode, message: string, details?: ErrorDetail[]) {
    super(message);
    this.code = code;
    this.status = ERROR_CATALOGUE[code];
    this.details = details;
  }
}
