import { assert, assertSafeInteger } from './assert.ts';
import { type Account, availableCents, balanceFloorCents, type Direction } from './types.ts';

/**
 * Double-entry postings. Every account balance is credit-normal from the customer's point of view:
 * balance = sum(credits) - sum(debits). A payment debits the payer and credits the payee; an opening balance
 * debits the currency's system funding account (which therefore goes negative: it is where money enters).
 * Per currency, debits always equal credits, so all balances of a currency sum to zero.
 */
export type PostingKind = 'opening_balance' | 'payment' | 'refund';

export interface PostingLine {
  accountId: string;
  direction: Direction;
  amountCents: number;
}

export interface Posting {
  kind: PostingKind;
  currency: string;
  paymentId: string | null;
  lines: PostingLine[];
}

export const POSTING_LINES_MAX = 16;

/** Asserts the posting is balanced, non-trivial and in range; a posting that fails this is a bug. */
export function assertBalancedPosting(posting: Posting): void {
  assert(posting.lines.length >= 2 && posting.lines.length <= POSTING_LINES_MAX, 'posting has 2..16 lines');
  let debits = 0;
  let credits = 0;
  for (const line of posting.lines) {
    assertSafeInteger(line.amountCents, 'posting line amount');
    assert(line.amountCents > 0, 'posting line amounts are positive');
    if (line.direction === 'debit') debits += line.amountCents;
    else credits += line.amountCents;
  }
  assertSafeInteger(debits, 'posting debits');
  assert(debits === credits, `posting is unbalanced: debits ${debits} != credits ${credits}`);
}

export function transfer(
  kind: PostingKind,
  currency: string,
  paymentId: string | null,
  fromAccountId: string,
  toAccountId: string,
  amountCents: number,
): Posting {
  assert(fromAccountId !== toAccountId, 'a transfer moves money between two different accounts');
  return {
    kind,
    currency,
    paymentId,
    lines: [
      { accountId: fromAccountId, direction: 'debit', amountCents },
      { accountId: toAccountId, direction: 'credit', amountCents },
    ],
  };
}

export type BalanceChange = { accountId: string; postedBalanceCents: number };

/** The signed effect of one entry on its account's posted balance (credit-normal). */
export function signedCents(direction: Direction, amountCents: number): number {
  return direction === 'credit' ? amountCents : -amountCents;
}

/**
 * Computes each touched account's new posted balance, and each line's running balance (its account's posted
 * balance right after that line: what the entry records as `balanceAfterCents`), or returns the id of the
 * account whose balance would leave the safe integer range (a client-visible limit, not a bug). Asserts the
 * floors: a customer account's available balance never goes below its floor (0, its minimum balance, or minus
 * its overdraft limit; a limit is never set above what the account has, src/app/account-controls.ts); only
 * system accounts are unbounded. The database checks the same floor (migration 20).
 */
export function applyPosting(
  posting: Posting,
  accounts: ReadonlyMap<string, Account>,
):
  | { ok: true; changes: BalanceChange[]; lineBalancesAfter: number[] }
  | { ok: false; overflowAccountId: string } {
  assertBalancedPosting(posting);
  const balances = new Map<string, number>();
  const lineBalancesAfter: number[] = [];
  for (const line of posting.lines) {
    const account = accounts.get(line.accountId);
    assert(account !== undefined, `posting names an unloaded account ${line.accountId}`);
    assert(account.currency === posting.currency, 'posting currency equals every account currency');
    const before = balances.get(line.accountId) ?? account.postedBalanceCents;
    const after = before + signedCents(line.direction, line.amountCents);
    if (!Number.isSafeInteger(after)) return { ok: false, overflowAccountId: line.accountId };
    balances.set(line.accountId, after);
    lineBalancesAfter.push(after);
  }
  const changes: BalanceChange[] = [];
  for (const [accountId, postedBalanceCents] of balances) {
    const account = accounts.get(accountId)!;
    if (account.kind === 'customer') {
      assert(
        availableCents({ postedBalanceCents, heldBalanceCents: account.heldBalanceCents }) >=
          balanceFloorCents(account),
        `posting would take customer account ${accountId} below its floor`,
      );
    }
    changes.push({ accountId, postedBalanceCents });
  }
  assert(lineBalancesAfter.length === posting.lines.length, 'one running balance per line');
  return { ok: true, changes, lineBalancesAfter };
}

/** A hold reserves funds on a customer account: available drops (not below its floor), posted does not. */
export function heldAfter(account: Account, deltaCents: number): number {
  const held = account.heldBalanceCents + deltaCents;
  assertSafeInteger(held, 'held balance');
  assert(held >= 0, `held balance of ${account.id} would go negative`);
  assert(
    account.postedBalanceCents - held >= balanceFloorCents(account),
    `hold would overdraw ${account.id}`,
  );
  return held;
}
