import { checkAuditLink, GENESIS_HASH } from '../domain/audit.ts';
import type { Store } from '../storage/store.ts';

/**
 * Recomputes the ledger and the audit chain from their rows. These scan everything on purpose: they are the
 * auditor's tools, not the hot path. Both read in bounded pages.
 */
const PAGE_SIZE = 1000;

export interface LedgerVerification {
  valid: boolean;
  currencies: { currency: string; debitsCents: number | string; creditsCents: number | string }[];
  accountsChecked: number;
  mismatches: { accountId: string; problem: string }[];
}

// Totals can exceed 2^53 across a whole ledger: such a total is reported as a decimal string, exactly.
const exact = (v: bigint): number | string =>
  v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();

export async function verifyLedger(store: Store, mismatchesMax = 100): Promise<LedgerVerification> {
  const totals = await store.reads.ledgerTotals();
  const mismatches: LedgerVerification['mismatches'] = [];
  for (const t of totals) {
    if (t.debitsCents !== t.creditsCents) {
      mismatches.push({
        accountId: `*${t.currency}`,
        problem: 'debits do not equal credits for the currency',
      });
    }
  }
  let accountsChecked = 0;
  let after = 0;
  for (;;) {
    const { checks, lastSeq } = await store.reads.accountChecks(after, PAGE_SIZE);
    for (const c of checks) {
      accountsChecked += 1;
      if (mismatches.length >= mismatchesMax) continue;
      if (BigInt(c.postedBalanceCents) !== c.entriesNetCents) {
        mismatches.push({
          accountId: c.accountId,
          problem: 'posted balance differs from the sum of its entries',
        });
      }
      if (BigInt(c.heldBalanceCents) !== c.activeHoldsCents) {
        mismatches.push({ accountId: c.accountId, problem: 'held balance differs from its open holds' });
      }
    }
    if (lastSeq === null || checks.length < PAGE_SIZE) break;
    after = lastSeq;
  }
  // Holds are open reviews, nothing else; refunded totals are their refunds (whose postings the totals above
  // already proved balanced).
  for (const p of await store.reads.paymentChecks(mismatchesMax)) {
    if (mismatches.length >= mismatchesMax) break;
    mismatches.push({ accountId: p.paymentId, problem: p.problem });
  }
  return {
    valid: mismatches.length === 0,
    currencies: totals.map((t) => ({
      currency: t.currency,
      debitsCents: exact(t.debitsCents),
      creditsCents: exact(t.creditsCents),
    })),
    accountsChecked,
    mismatches,
  };
}

export interface AuditVerification {
  valid: boolean;
  brokenAtIndex: number | null;
  reason: string | null;
  size: number;
}

export async function verifyAuditChain(store: Store): Promise<AuditVerification> {
  const size = await store.reads.auditSize();
  let expectedIndex = 0;
  let prevHash = GENESIS_HASH;
  while (expectedIndex < size) {
    const page = await store.reads.listAuditEntries(expectedIndex, PAGE_SIZE);
    if (page.length === 0)
      return broken(expectedIndex, 'entry missing (the log is shorter than its head)', size);
    for (const entry of page) {
      if (entry.index >= size) break;
      const problem = checkAuditLink(entry, expectedIndex, prevHash);
      if (problem !== null) return broken(expectedIndex, problem, size);
      prevHash = entry.hash;
      expectedIndex += 1;
    }
    if (page[page.length - 1]!.index >= size) break;
  }
  const head = await store.reads.auditHead();
  if (size > 0 && head.lastHash !== prevHash)
    return broken(size - 1, 'the chain head does not match the last entry', size);
  return { valid: true, brokenAtIndex: null, reason: null, size };
}

function broken(index: number, reason: string, size: number): AuditVerification {
  return { valid: false, brokenAtIndex: index, reason, size };
}
