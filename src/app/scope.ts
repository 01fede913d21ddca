import { AppError } from '../domain/errors.ts';
import type { Actor, Payment } from '../domain/types.ts';
import type { CustomerScope, ReadScope, Reads } from '../storage/store.ts';

/**
 * Scoped API keys: the one place that decides what a key limited to some customers may see and move
 * (OWASP API1, broken object-level authorization). `actor.customerIds` is the key's scope; absent or null,
 * the key is unscoped and every function here returns at once, without a query: unscoped keys behave, and
 * cost, exactly as before.
 *
 * What a scoped key sees (lists are filtered in SQL, index-backed: src/storage/scoped-sql.ts):
 *   customers   its customers;
 *   accounts    the accounts they own;
 *   payments    those from or to one of those accounts (both parties' keys see a payment between them);
 *   ledger      the entries on those accounts only, never the counterparty's side of a posting;
 *   refunds     those of payments it sees;
 *   events      those about payments it sees and about its customers.
 *
 * The rule for everything else, per route:
 *   - A resource the request names that is outside the scope is answered exactly as if it did not exist:
 *     its normal 404 (`CUSTOMER_NOT_FOUND`, `ACCOUNT_NOT_FOUND`, `PAYMENT_NOT_FOUND`; a payment's source
 *     account: `SOURCE_ACCOUNT_NOT_FOUND`), never 403, so a key cannot learn what exists outside its scope. A
 *     list filtered on such a resource (`?customerId=`, `?accountId=`, `?paymentId=`) is empty, as for an id
 *     that does not exist.
 *   - Money moves only out of the scope: a payment's source account must be in scope (the destination may be
 *     any account: paying others is the point). A refund debits the payment's destination account, so it is
 *     allowed only when the destination is in scope; a payment the key sees only as its sender cannot be
 *     refunded by it (403 FORBIDDEN: the payment is visible, so nothing is revealed).
 *   - Review decisions capture or release the hold on the source account: a scoped key approves or rejects
 *     only payments its customers send (404 when it does not see the payment, 403 when it sees it only as
 *     the receiver). KYC decisions and account opening name a customer: in scope, or 404.
 *   - Global operations, which are about no customer or about all of them, are 403 FORBIDDEN ("a key scoped
 *     to customers may not …"): the audit log and its proofs, checkpoints and verification, ledger
 *     verification, webhook endpoints (they receive every event), and creating customers (a new customer is
 *     in no key's scope). API keys are managed by admin keys, which cannot be scoped (src/app/api-keys.ts);
 *     the admin-only checks here (customers, accounts, webhook endpoints) are defence in depth for a scoped
 *     admin key that would exist anyway.
 *
 * Where it is enforced: list and read routes (src/http/routes/*) pass the scope to the store; the app
 * functions that act on a named payment or customer call a `require…` below first; whole route families
 * are closed to scoped keys by one hook each (src/http/scope-guard.ts).
 */

/** A scope resolves to at most this many accounts; a bigger one is refused (403) rather than listed slowly. */
export const SCOPE_ACCOUNTS_MAX = 1_000;

/** The key's customers, or null when it is unscoped. */
export function scopeOf(actor: Actor): readonly string[] | null {
  return actor.customerIds ?? null;
}

/** Whether a customer (an account's owner; null for a system account) is within the actor's reach. */
export function inScope(actor: Actor, customerId: string | null | undefined): boolean {
  const scope = scopeOf(actor);
  return scope === null || (customerId != null && scope.includes(customerId));
}

/** The scope of a customer or account list: no query. */
export function customerScopeOf(actor: Actor): CustomerScope | null {
  const customerIds = scopeOf(actor);
  return customerIds === null ? null : { customerIds };
}

/** The scope of a payment, ledger or event list: the scope's accounts, one index-backed query. */
export async function readScopeOf(reads: Reads, actor: Actor): Promise<ReadScope | null> {
  const customerIds = scopeOf(actor);
  if (customerIds === null) return null;
  const accountIds =
    customerIds.length === 0 ? [] : await reads.accountIdsOwnedBy(customerIds, SCOPE_ACCOUNTS_MAX + 1);
  if (accountIds.length > SCOPE_ACCOUNTS_MAX) {
    throw new AppError(
      'FORBIDDEN',
      `the customers of this key own more than ${SCOPE_ACCOUNTS_MAX} accounts: lists need a key scoped to fewer customers`,
    );
  }
  return { customerIds, accountIds };
}

/** 403 for a global operation (`what`: "read the audit log") when the key is scoped. */
export function requireUnscoped(actor: Actor, what: string): void {
  if (scopeOf(actor) !== null) throw new AppError('FORBIDDEN', `a key scoped to customers may not ${what}`);
}

/** A customer the request names: in scope, or 404 CUSTOMER_NOT_FOUND as if it did not exist. No query. */
export function requireCustomerInScope(actor: Actor, customerId: string): void {
  if (!inScope(actor, customerId)) throw new AppError('CUSTOMER_NOT_FOUND', 'customer not found');
}

/** An account read by id: in scope (owned by a scope customer), or 404 ACCOUNT_NOT_FOUND. No query. */
export function requireAccountInScope(actor: Actor, account: { ownerCustomerId: string | null }): void {
  if (!inScope(actor, account.ownerCustomerId)) throw new AppError('ACCOUNT_NOT_FOUND', 'account not found');
}

/**
 * The scope as it applies to one payment: null when unscoped, else the payment's accounts that are in scope
 * (its ledger entries are listed on those only). 404 PAYMENT_NOT_FOUND when neither is. One query, for a
 * scoped key only: the owners of the payment's two accounts (owners never change, so committed state is
 * as good as the locked one).
 */
export async function paymentScopeOf(
  reads: Reads,
  actor: Actor,
  payment: Pick<Payment, 'sourceAccountId' | 'destinationAccountId'>,
): Promise<ReadScope | null> {
  const customerIds = scopeOf(actor);
  if (customerIds === null) return null;
  const sides = [payment.sourceAccountId, payment.destinationAccountId];
  const owners =
    customerIds.length === 0 ? new Map<string, string | null>() : await reads.accountOwners(sides);
  const accountIds = sides.filter((id) => inScope(actor, owners.get(id)));
  if (accountIds.length === 0) throw paymentNotFound();
  return { customerIds, accountIds };
}

/**
 * A review decision (approve, reject) captures or releases the hold on the payment's source account: a scoped
 * key decides only payments its customers send. Not visible at all: 404 PAYMENT_NOT_FOUND; visible as the
 * receiver only: 403 FORBIDDEN. A scoped key only: reads the payment and its accounts' owners.
 */
export async function requireReviewInScope(reads: Reads, actor: Actor, paymentId: string): Promise<void> {
  if (scopeOf(actor) === null) return;
  const payment = await reads.getPayment(paymentId);
  if (payment === undefined) throw paymentNotFound();
  await requireSideInScope(reads, actor, payment, 'sourceAccountId', 'decide only payments they send');
}

/**
 * A refund debits the payment's destination account: a scoped key may refund only payments its customers
 * received. Not visible at all: 404 PAYMENT_NOT_FOUND; visible as the sender only: 403 FORBIDDEN.
 */
export async function requireRefundInScope(
  reads: Reads,
  actor: Actor,
  payment: Pick<Payment, 'sourceAccountId' | 'destinationAccountId'>,
): Promise<void> {
  await requireSideInScope(
    reads,
    actor,
    payment,
    'destinationAccountId',
    'refund only payments they received',
  );
}

/** The payment is visible (else 404) and the side whose money the action moves is in scope (else 403). */
async function requireSideInScope(
  reads: Reads,
  actor: Actor,
  payment: Pick<Payment, 'sourceAccountId' | 'destinationAccountId'>,
  side: 'sourceAccountId' | 'destinationAccountId',
  what: string,
): Promise<void> {
  const scope = await paymentScopeOf(reads, actor, payment);
  if (scope !== null && !scope.accountIds.includes(payment[side])) {
    throw new AppError('FORBIDDEN', `a key scoped to customers may ${what}`);
  }
}

function paymentNotFound(): AppError {
  return new AppError('PAYMENT_NOT_FOUND', 'payment not found');
}
