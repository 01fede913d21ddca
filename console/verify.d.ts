/** Types for console/verify.js (plain JavaScript for the browser), so TypeScript tests can import it. */

export interface VerifierKey {
  name: string;
  keyHashHex: string;
  publicKey: Uint8Array;
}

export interface ReceiptCheck {
  name: 'verifier key' | 'checkpoint signature' | 'entry hash' | 'inclusion proof' | 'this payment';
  ok: boolean;
  detail: string;
}

export interface ReceiptVerification {
  verified: boolean;
  checks: ReceiptCheck[];
}

export function parseVerifierKey(line: string): VerifierKey;
export function keyFingerprint(publicKey: Uint8Array): Promise<string>;
export function canonicalJson(value: unknown): string;
/** `receipt` is untrusted input (parsed JSON): anything that is not a receipt fails verification. */
export function verifyReceipt(
  receipt: unknown,
  verifierKeyLine: string,
  /** The payment the receipt must be about (its id, amount, currency and accounts); adds the "this payment" check. */
  payment?: {
    id: string;
    amountCents: number;
    currency: string;
    sourceAccountId: string;
    destinationAccountId: string;
    /** Its outcome names the creation entry; a full decision (with `rules`) must equal the logged one. */
    decision: { outcome: string; rules?: unknown[]; [field: string]: unknown };
  },
): Promise<ReceiptVerification>;
