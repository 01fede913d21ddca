import { createHash, randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { assert } from '../domain/assert.ts';
import { type AuditEntry, checkAuditLink, GENESIS_HASH } from '../domain/audit.ts';
import { auditLeafBytes } from '../domain/audit-tree.ts';
import { leafHash, type MerkleNode, nodeHash, nodesCompletedBy } from '../domain/merkle.ts';
import type { AuditSigner } from '../security/audit-signer.ts';
import type { Committer } from '../storage/committer.ts';
import {
  AUDIT_NODE_RANGES_MAX,
  type AuditCheckpointRow,
  type AuditVerificationState,
  type CurrencyTotals,
  type MerkleNodeRange,
  type Reads,
  type Store,
} from '../storage/store.ts';

/**
 * Recomputes the ledger and the audit chain from their rows. These scan a lot on purpose: they are the
 * auditor's tools, not the hot path. So they never hold the event loop for long: they read in pages sized to
 * take about SLICE_TARGET_MS each (SQLite reads are synchronous, so the read counts too) and give the loop a
 * turn (setImmediate) between pages, whatever the size of the data.
 */
const SLICE_TARGET_MS = 8;
const PAGE_ROWS_MIN = 16;
/** Audit entries per page at most: a page's parsed rows are what a minor GC during it has to copy. */
const PAGE_ROWS_MAX = 256;
/** A page grows at most this many times over the last: one fast page (cached rows) is no promise. */
const PAGE_GROWTH_MAX = 4;

/**
 * Sizes the next page from how long the last one took (rows x target / elapsed, growing at most
 * PAGE_GROWTH_MAX times), within [min, max], and yields to the event loop between pages. Elapsed time includes waiting for PostgreSQL, which only makes
 * pages smaller than they need to be there: more round trips, never a long slice.
 */
class Pacer {
  rows: number;
  private startedAt = performance.now();

  constructor(
    initialRows: number,
    private readonly maxRows = PAGE_ROWS_MAX,
  ) {
    this.rows = initialRows;
  }

  start(): void {
    this.startedAt = performance.now();
  }

  async pageDone(rows: number): Promise<void> {
    const elapsedMs = Math.max(performance.now() - this.startedAt, 0.05);
    if (rows > 0) {
      const ideal = Math.floor((rows * SLICE_TARGET_MS) / elapsedMs);
      this.rows = Math.min(this.maxRows, this.rows * PAGE_GROWTH_MAX, Math.max(PAGE_ROWS_MIN, ideal));
    }
    await nextTurn();
    this.startedAt = performance.now();
  }
}

// ---------------------------------------------------------------------------------------------------------
// The ledger

export interface LedgerVerification {
  valid: boolean;
  currencies: { currency: string; debitsCents: number | string; creditsCents: number | string }[];
  accountsChecked: number;
  mismatches: { accountId: string; problem: string }[];
}

type Mismatch = LedgerVerification['mismatches'][number];

// Totals can exceed 2^53 across a whole ledger: such a total is reported as a decimal string, exactly.
const exact = (v: bigint): number | string =>
  v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();

/** Accounts per page: each page is one statement of per-account sums (or the entries merged with them). */
const LEDGER_ACCOUNTS_PER_PAGE_MAX = 500;
/** Ledger entries or payments per window of a key-range scan. */
const LEDGER_ROWS_PER_WINDOW_MAX = 100_000;

/**
 * Every currency's debits equal its credits, every account's balances equal its entries and open holds, and
 * every payment agrees with its hold and refunds. How it reads depends on where the work happens:
 *
 * - SQLite runs queries on this thread, so no statement may scan an unbounded range: totals and payments are
 *   read in windows of seq, and each page of accounts (in id order) is merged with its entries read in
 *   bounded runs along the (account, seq) index. Entries up to a snapshot seq are fixed history (one writer:
 *   seq order is commit order); the entries after it are summed in the statement that reads the balance, so
 *   writes during the check never look like a mismatch.
 * - PostgreSQL runs each statement in the database, off the event loop, and a statement sees one snapshot:
 *   the per-account sums are read a page of accounts at a time; windows over seq are not used there because a
 *   transaction holding lower seqs may commit while the check runs.
 */
export function verifyLedger(store: Store, mismatchesMax = 100): Promise<LedgerVerification> {
  // Concurrent callers share the check in flight (per store and limit): N requests, one scan.
  const shared = ledgerChecksInFlight.get(store)?.get(mismatchesMax);
  if (shared !== undefined) return shared;
  const check = (
    store.dialect === 'sqlite'
      ? verifyLedgerInWindows(store.reads, mismatchesMax)
      : verifyLedgerByStatements(store.reads, mismatchesMax)
  ).finally(() => ledgerChecksInFlight.get(store)?.delete(mismatchesMax));
  const byLimit = ledgerChecksInFlight.get(store) ?? new Map<number, Promise<LedgerVerification>>();
  byLimit.set(mismatchesMax, check);
  ledgerChecksInFlight.set(store, byLimit);
  return check;
}

const ledgerChecksInFlight = new WeakMap<Store, Map<number, Promise<LedgerVerification>>>();

function ledgerResult(
  totals: CurrencyTotals[],
  accountsChecked: number,
  mismatches: Mismatch[],
  mismatchesMax: number,
): LedgerVerification {
  const unbalanced = totals
    .filter((t) => t.debitsCents !== t.creditsCents)
    .map((t) => ({ accountId: `*${t.currency}`, problem: 'debits do not equal credits for the currency' }));
  const all = [...unbalanced, ...mismatches].slice(0, mismatchesMax);
  return {
    valid: all.length === 0,
    currencies: totals.map((t) => ({
      currency: t.currency,
      debitsCents: exact(t.debitsCents),
      creditsCents: exact(t.creditsCents),
    })),
    accountsChecked,
    mismatches: all,
  };
}

function checkAccount(
  mismatches: Mismatch[],
  accountId: string,
  balances: {
    postedCents: number;
    entriesNetCents: bigint;
    heldCents: number;
    activeHoldsCents: bigint;
    runningBalancesChain: boolean;
    holdTotalsChain: boolean;
  },
): void {
  if (BigInt(balances.postedCents) !== balances.entriesNetCents) {
    mismatches.push({ accountId, problem: 'posted balance differs from the sum of its entries' });
  }
  if (!balances.runningBalancesChain) {
    mismatches.push({
      accountId,
      problem: 'an entry’s balanceAfterCents differs from the running sum of its entries',
    });
  }
  if (BigInt(balances.heldCents) !== balances.activeHoldsCents) {
    mismatches.push({ accountId, problem: 'held balance differs from its open holds' });
  }
  if (!balances.holdTotalsChain) {
    mismatches.push({
      accountId,
      problem: 'a hold’s running total differs from the running sum of its holds',
    });
  }
}

async function verifyLedgerByStatements(reads: Reads, mismatchesMax: number): Promise<LedgerVerification> {
  const totals = await reads.ledgerTotals();
  const mismatches: Mismatch[] = [];
  let accountsChecked = 0;
  let after = 0;
  const pacer = new Pacer(PAGE_ROWS_MIN * 4, LEDGER_ACCOUNTS_PER_PAGE_MAX);
  for (;;) {
    const pageRows = pacer.rows;
    const { checks, lastSeq } = await reads.accountChecks(after, pageRows);
    for (const c of checks) {
      accountsChecked += 1;
      if (mismatches.length >= mismatchesMax) continue;
      checkAccount(mismatches, c.accountId, {
        postedCents: c.postedBalanceCents,
        entriesNetCents: c.entriesNetCents,
        heldCents: c.heldBalanceCents,
        activeHoldsCents: c.activeHoldsCents,
        runningBalancesChain: c.runningBalanceBreaks === 0,
        holdTotalsChain: c.holdTotalBreaks === 0,
      });
    }
    await pacer.pageDone(checks.length);
    if (lastSeq === null || checks.length < pageRows) break;
    after = lastSeq;
  }
  // Holds are open reviews, nothing else; refunded totals are their refunds (whose postings the totals above
  // already proved balanced).
  for (const p of await reads.paymentChecks(mismatchesMax))
    mismatches.push({ accountId: p.paymentId, problem: p.problem });
  return ledgerResult(totals, accountsChecked, mismatches, mismatchesMax);
}

async function verifyLedgerInWindows(reads: Reads, mismatchesMax: number): Promise<LedgerVerification> {
  const bounds = await reads.ledgerCheckBounds();
  const snapshotSeq = bounds.ledgerSeq;

  const sums = new Map<string, CurrencyTotals>();
  const windows = new Pacer(PAGE_ROWS_MAX * 4, LEDGER_ROWS_PER_WINDOW_MAX);
  for (let after = 0; after < snapshotSeq; ) {
    const upto = Math.min(snapshotSeq, after + windows.rows);
    for (const t of await reads.ledgerTotals({ afterSeq: after, uptoSeq: upto })) {
      const sum = sums.get(t.currency) ?? { currency: t.currency, debitsCents: 0n, creditsCents: 0n };
      sum.debitsCents += t.debitsCents;
      sum.creditsCents += t.creditsCents;
      sums.set(t.currency, sum);
    }
    await windows.pageDone(upto - after);
    after = upto;
  }
  const totals = [...sums.values()].sort((a, b) => (a.currency < b.currency ? -1 : 1));

  const mismatches: Mismatch[] = [];
  let accountsChecked = 0;
  let afterId = '';
  let position = { accountId: '', seq: 0 };
  // The running balance the current account's next run must start from (its first run: from 0).
  let carriedBalanceCents = 0;
  const brokenChains = new Set<string>();
  const accountPages = new Pacer(PAGE_ROWS_MIN * 4, LEDGER_ACCOUNTS_PER_PAGE_MAX);
  const entryRuns = new Pacer(PAGE_ROWS_MAX * 4, LEDGER_ROWS_PER_WINDOW_MAX);
  for (;;) {
    const pageRows = accountPages.rows;
    const accounts = await reads.accountBalancesAfter(afterId, pageRows, snapshotSeq);
    await accountPages.pageDone(accounts.length);
    if (accounts.length === 0) break;
    const lastId = accounts[accounts.length - 1]!.accountId;
    // These accounts' entries up to the snapshot, in bounded runs (one busy account may hold millions).
    const nets = new Map<string, bigint>();
    for (;;) {
      const limit = entryRuns.rows;
      const runs = await reads.ledgerNetsByAccount(position, lastId, snapshotSeq, limit);
      let rows = 0;
      for (const run of runs) {
        nets.set(run.accountId, (nets.get(run.accountId) ?? 0n) + run.netCents);
        rows += run.rows;
        const startsFrom = run.accountId === position.accountId ? carriedBalanceCents : 0;
        if (run.runningBalanceBreaks > 0 || run.firstBalanceBeforeCents !== startsFrom) {
          if (brokenChains.size < mismatchesMax) brokenChains.add(run.accountId);
        }
        carriedBalanceCents = run.lastBalanceAfterCents;
        position = { accountId: run.accountId, seq: run.lastSeq };
      }
      await entryRuns.pageDone(rows);
      if (rows < limit) break;
    }
    for (const a of accounts) {
      accountsChecked += 1;
      if (mismatches.length >= mismatchesMax) continue;
      checkAccount(mismatches, a.accountId, {
        postedCents: a.postedBalanceCents,
        entriesNetCents: (nets.get(a.accountId) ?? 0n) + a.netAfterSnapshotCents,
        heldCents: a.heldBalanceCents,
        activeHoldsCents: a.activeHoldsCents,
        runningBalancesChain: !brokenChains.has(a.accountId),
        holdTotalsChain: a.holdTotalBreaks === 0,
      });
    }
    afterId = lastId;
    if (accounts.length < pageRows) break;
  }

  const payments = new Pacer(PAGE_ROWS_MAX * 4, LEDGER_ROWS_PER_WINDOW_MAX);
  for (let after = 0; after < bounds.paymentSeq && mismatches.length < mismatchesMax; ) {
    const upto = Math.min(bounds.paymentSeq, after + payments.rows);
    const range = { afterSeq: after, uptoSeq: upto };
    for (const p of await reads.paymentChecks(mismatchesMax - mismatches.length, range)) {
      mismatches.push({ accountId: p.paymentId, problem: p.problem });
    }
    await payments.pageDone(upto - after);
    after = upto;
  }
  return ledgerResult(totals, accountsChecked, mismatches, mismatchesMax);
}

// ---------------------------------------------------------------------------------------------------------
// The audit log

export interface AuditVerification {
  valid: boolean;
  brokenAtIndex: number | null;
  reason: string | null;
  size: number;
}

/**
 * incremental: the hash chain from the verified prefix (kept in the database, shared by every process) to
 * the head. full: everything from GENESIS, plus every stored Merkle node recomputed from the entries and the
 * latest signed checkpoint's root. Both check the head.
 */
export type AuditVerificationMode = 'incremental' | 'full';

/** One run's answer and what it covered. */
export interface AuditRunResult {
  verification: AuditVerification;
  /** The first index this run read (the verified prefix it started from; 0 for a full run). */
  verifiedFrom: number;
  /** Entries [0, verifiedUpTo) are known good after this run. */
  verifiedUpTo: number;
  /** The last full verification known when the run started (any process). */
  lastFull: AuditVerificationState['lastFull'];
}

/** The lock name of the verification state row (PostgreSQL advisory lock, so its commands never wait). */
export const AUDIT_VERIFICATION_LOCK = 'audit-verification';

interface Progress {
  /** Called after every page with the next index to check. */
  advanced(nextIndex: number, size: number, verifiedFrom: number): void;
  stopped(): boolean;
}

class Stopped extends Error {
  constructor() {
    super('the audit verification was stopped');
  }
}

/** Where a walk stands: the next index to check and the hash of the entry before it. */
interface Position {
  index: number;
  prevHash: string;
}

interface Break {
  index: number;
  reason: string;
  /** The good prefix before the break: entries [0, prefix.index), prefix.prevHash the hash of the last. */
  prefix: Position;
}

const sha256Hex = (text: string) => createHash('sha256').update(text).digest('hex');

/**
 * Walks the chain from `start` to `size` in paced pages; `onEntry` may add checks (the full run's tree).
 * Returns the first break, or the position after the last entry.
 */
async function walkChain(
  reads: Reads,
  start: Position,
  size: number,
  progress: Progress,
  verifiedFrom: number,
  onEntry?: (entry: AuditEntry, canonical: string) => string | null,
  beforePage?: (from: number, to: number) => Promise<void>,
): Promise<{ end: Position } | { broken: Break }> {
  const at: Position = { ...start };
  const pacer = new Pacer(PAGE_ROWS_MIN * 4);
  while (at.index < size) {
    if (progress.stopped()) throw new Stopped();
    pacer.start();
    const want = Math.min(pacer.rows, size - at.index);
    await beforePage?.(at.index, at.index + want);
    const page = await reads.listAuditEntries(at.index, want);
    if (page.length === 0) {
      return {
        broken: {
          index: at.index,
          reason: 'entry missing (the log is shorter than its head)',
          prefix: { ...at },
        },
      };
    }
    for (const entry of page) {
      // A page asks for at most size - index entries, so it only reaches past the end after a gap.
      if (at.index >= size) break;
      let problem: string | null;
      let canonical = '';
      if (onEntry === undefined) {
        problem = checkAuditLink(entry, at.index, at.prevHash);
      } else {
        // The same three checks as checkAuditLink, with the canonical bytes computed once for both hashes.
        canonical = auditLeafBytes(entry);
        problem =
          entry.index !== at.index
            ? `index gap: expected ${at.index}, found ${entry.index}`
            : entry.prevHash !== at.prevHash
              ? 'prevHash does not match the previous entry hash'
              : sha256Hex(canonical) !== entry.hash
                ? 'hash does not match the entry contents'
                : null;
        if (problem === null) problem = onEntry(entry, canonical);
      }
      if (problem !== null) return { broken: { index: at.index, reason: problem, prefix: { ...at } } };
      at.prevHash = entry.hash;
      at.index += 1;
    }
    progress.advanced(at.index, size, verifiedFrom);
    await pacer.pageDone(page.length);
  }
  return { end: at };
}

/** The chain's last entry must be the one its head names (a re-hashed or cut tail shows here). */
function headBreak(
  end: Position,
  head: { size: number; lastHash: string },
  beforeLast: Position,
): Break | null {
  if (head.size === 0 || end.prevHash === head.lastHash) return null;
  return { index: head.size - 1, reason: 'the chain head does not match the last entry', prefix: beforeLast };
}

/** Incremental: from the verified prefix to the head as it was when the run started. */
export async function verifyAuditIncrementally(
  store: Store,
  committer: Committer,
  progress: Progress,
  signer: AuditSigner,
): Promise<AuditRunResult> {
  const reads = store.reads;
  const state = trusted(await reads.auditVerificationState(), signer);
  const head = await reads.auditHead();
  const from = state.verifiedSize;
  const result = (verification: AuditVerification, verifiedUpTo: number): AuditRunResult => ({
    verification,
    verifiedFrom: from,
    verifiedUpTo,
    lastFull: state.lastFull,
  });
  progress.advanced(from, head.size, from);
  if (from > head.size) {
    const reason = `the log holds ${head.size} entries but ${from} were verified before (its tail was cut)`;
    return result(broken(head.size, reason, head.size), Math.min(from, head.size));
  }
  // The last verified entry must still be what was verified: the link into the unverified tail starts there.
  if (from > 0) {
    const [last] = await reads.listAuditEntries(from - 1, 1);
    const problem =
      last === undefined || last.index !== from - 1
        ? 'entry missing (the last verified entry is gone)'
        : last.hash !== state.verifiedHash
          ? 'the last verified entry was re-hashed since it was verified'
          : checkAuditLink(last, from - 1, last.prevHash);
    if (problem !== null) return result(broken(from - 1, problem, head.size), from - 1);
  }
  const start = { index: from, prevHash: state.verifiedHash };
  // The tail but its last entry first, so that a head mismatch leaves a known-good prefix before that entry.
  const body = await walkChain(reads, start, Math.max(from, head.size - 1), progress, from);
  let outcome: { end: Position } | { broken: Break } = body;
  if ('end' in body && body.end.index < head.size) {
    outcome = await walkChain(reads, body.end, head.size, progress, from);
  }
  const found =
    'broken' in outcome
      ? outcome.broken
      : headBreak(outcome.end, head, 'end' in body && head.size > from ? body.end : start);
  const prefix = found === null ? ('end' in outcome ? outcome.end : start) : found.prefix;
  if (prefix.index > from) {
    const mac = signer.mac(prefixText(prefix.index, prefix.prevHash));
    await committer.submit((tx) => tx.advanceAuditVerified(prefix.index, prefix.prevHash, mac), {
      names: [AUDIT_VERIFICATION_LOCK],
    });
  }
  if (found !== null) return result(broken(found.index, found.reason, head.size), prefix.index);
  // The tail is good; a break an earlier full run found (before the prefix) still stands until one passes.
  const full = state.lastFull;
  if (full !== null && full.brokenAtIndex !== null) {
    const when = new Date(full.atMs).toISOString();
    return result(
      broken(full.brokenAtIndex, `the full verification of ${when} found: ${full.reason}`, head.size),
      prefix.index,
    );
  }
  return result({ valid: true, brokenAtIndex: null, reason: null, size: head.size }, prefix.index);
}

/**
 * The stored Merkle nodes whose last leaf lies in [from, to): for each level, node i covers leaves
 * [i * 2^level, (i + 1) * 2^level) and is written when leaf (i + 1) * 2^level - 1 is appended.
 */
export function nodeRangesCompletedBy(from: number, to: number): MerkleNodeRange[] {
  const ranges: MerkleNodeRange[] = [];
  for (let level = 0, width = 1; width <= to; level += 1, width *= 2) {
    const firstIndex = Math.ceil((from + 1) / width) - 1;
    const lastIndex = Math.floor(to / width) - 1;
    if (firstIndex <= lastIndex) ranges.push({ level, firstIndex, lastIndex });
  }
  assert(ranges.length <= AUDIT_NODE_RANGES_MAX, 'node ranges fit one query');
  return ranges;
}

/**
 * The tree recomputed from the entries, one leaf at a time: `stack` holds the perfect subtrees of the prefix
 * (largest first), so every node a leaf completes is checked against the stored one, and the root of any
 * prefix (a checkpoint's size) is a fold over at most log2(n) hashes.
 */
class TreeCheck {
  private readonly stack: MerkleNode[] = [];
  private stored = new Map<string, Buffer>();
  private size = 0;

  constructor(
    private readonly reads: Reads,
    /** Leaves that have stored nodes (audit_head.merkle_size): only those are compared. */
    private readonly merkleSize: number,
    private readonly checkpoint: AuditCheckpointRow | undefined,
    private readonly signer: AuditSigner,
  ) {}

  async load(from: number, to: number): Promise<void> {
    const end = Math.min(to, this.merkleSize);
    this.stored = new Map();
    if (from >= end) return;
    for (const node of await this.reads.auditMerkleNodeRanges(nodeRangesCompletedBy(from, end))) {
      this.stored.set(`${node.level}:${node.index}`, node.hash);
    }
  }

  add(entry: AuditEntry, canonical: string): string | null {
    assert(entry.index === this.size, 'leaves are added in order');
    const completed = nodesCompletedBy(entry.index, leafHash(canonical), ({ level }) => {
      const sibling = this.stack[this.stack.length - 1 - level];
      assert(sibling !== undefined && sibling.level === level, 'the left sibling is on the stack');
      return sibling.hash;
    });
    this.stack.splice(this.stack.length - (completed.length - 1), completed.length - 1, completed.at(-1)!);
    this.size += 1;
    if (entry.index < this.merkleSize) {
      for (const node of completed) {
        const stored = this.stored.get(`${node.level}:${node.index}`);
        if (stored === undefined) return `Merkle node ${node.level}:${node.index} is missing`;
        if (!stored.equals(node.hash)) {
          return node.level === 0
            ? 'the stored Merkle leaf does not match the entry'
            : `the stored Merkle node ${node.level}:${node.index} does not match the entries`;
        }
      }
    }
    if (this.checkpoint !== undefined && this.checkpoint.treeSize === this.size)
      return this.checkCheckpoint();
    return null;
  }

  private root(): Buffer {
    let hash = this.stack[this.stack.length - 1]!.hash;
    for (let i = this.stack.length - 2; i >= 0; i--) hash = nodeHash(this.stack[i]!.hash, hash);
    return hash;
  }

  /**
   * Both the stored root and the signed note's root line must be the root of the entries, and the note must
   * carry a valid signature by the audit key: a rewritten history with a re-rooted note is caught here.
   */
  private checkCheckpoint(): string | null {
    const checkpoint = this.checkpoint!;
    if (!this.signer.verifiesNote(checkpoint.note)) {
      return `the checkpoint of ${checkpoint.treeSize} entries is not signed by the audit key`;
    }
    const root = this.root();
    const [, noteSize, noteRoot] = checkpoint.note.split('\n');
    if (
      !checkpoint.rootHash.equals(root) ||
      noteSize !== String(this.size) ||
      noteRoot !== root.toString('base64')
    ) {
      return `the signed checkpoint of ${checkpoint.treeSize} entries does not match the entries`;
    }
    return null;
  }
}

/** Full: every entry from GENESIS, every stored Merkle node, the latest checkpoint, the head. */
export async function verifyAuditFully(
  store: Store,
  committer: Committer,
  progress: Progress,
  signer: AuditSigner,
): Promise<AuditRunResult> {
  const reads = store.reads;
  const state = trusted(await reads.auditVerificationState(), signer);
  // In this order: the log only grows, so the head read after the checkpoint covers it (unless cut).
  const checkpoint = await reads.latestAuditCheckpoint();
  const head = await reads.auditHead();
  const size = head.size;
  progress.advanced(0, size, 0);
  const tree = new TreeCheck(reads, Math.min(head.merkleSize, size), checkpoint, signer);
  const genesis = { index: 0, prevHash: GENESIS_HASH };
  const walk = (start: Position, end: number) =>
    walkChain(
      reads,
      start,
      end,
      progress,
      0,
      (entry, canonical) => tree.add(entry, canonical),
      (from, to) => tree.load(from, to),
    );
  const body = await walk(genesis, Math.max(0, size - 1));
  const outcome = 'end' in body && size > 0 ? await walk(body.end, size) : body;
  let found: Break | null = 'broken' in outcome ? outcome.broken : null;
  if (found === null && 'end' in outcome) {
    found = headBreak(outcome.end, head, 'end' in body ? body.end : genesis);
    const end = outcome.end;
    if (found === null && checkpoint !== undefined && checkpoint.treeSize > size) {
      const reason = `a checkpoint of ${checkpoint.treeSize} entries was signed but the log holds ${size} (its tail was cut)`;
      found = { index: size, reason, prefix: end };
    }
    if (found === null && state.verifiedSize > size) {
      const reason = `the log holds ${size} entries but ${state.verifiedSize} were verified before (its tail was cut)`;
      found = { index: size, reason, prefix: end };
    }
  }
  const prefix = found === null ? (outcome as { end: Position }).end : found.prefix;
  await committer.submit(
    (tx) => {
      const outcome = {
        size,
        atMs: tx.nowMs,
        brokenAtIndex: found?.index ?? null,
        reason: found?.reason ?? null,
      };
      return tx.recordFullAuditVerification({
        size,
        brokenAtIndex: outcome.brokenAtIndex,
        reason: outcome.reason,
        prefixSize: prefix.index,
        prefixHash: prefix.prevHash,
        fullMac: signer.mac(fullText(outcome)),
        prefixMac: signer.mac(prefixText(prefix.index, prefix.prevHash)),
      });
    },
    { names: [AUDIT_VERIFICATION_LOCK] },
  );
  return {
    verification:
      found === null
        ? { valid: true, brokenAtIndex: null, reason: null, size }
        : broken(found.index, found.reason, size),
    verifiedFrom: 0,
    verifiedUpTo: prefix.index,
    lastFull: state.lastFull,
  };
}

/**
 * The server's own record of what it verified is data too: each part carries a MAC under a key derived from
 * the audit signing key, and a part whose MAC does not match is not trusted. An edited verified prefix counts
 * as none (the next incremental run walks from GENESIS), an edited full outcome as no full run. So editing the
 * record can cost a longer check, never hide a break. A changed signing key (accept-audit-key) has the same
 * effect once.
 */
function trusted(state: AuditVerificationState, signer: AuditSigner): AuditVerificationState {
  const prefixOk =
    state.verifiedSize === 0 ||
    signer.macMatches(prefixText(state.verifiedSize, state.verifiedHash), state.verifiedMac);
  const fullOk = state.lastFull === null || signer.macMatches(fullText(state.lastFull), state.fullMac);
  return {
    ...state,
    verifiedSize: prefixOk ? state.verifiedSize : 0,
    verifiedHash: prefixOk ? state.verifiedHash : GENESIS_HASH,
    lastFull: fullOk ? state.lastFull : null,
  };
}

const prefixText = (size: number, hash: string) => `audit-verified-prefix\n${size}\n${hash}`;
const fullText = (f: NonNullable<AuditVerificationState['lastFull']>) =>
  `audit-full-verification\n${f.size}\n${f.atMs}\n${f.brokenAtIndex ?? ''}\n${f.reason ?? ''}`;

function broken(index: number, reason: string, size: number): AuditVerification {
  return { valid: false, brokenAtIndex: index, reason, size };
}

// ---------------------------------------------------------------------------------------------------------
// Runs as jobs: single-flight per mode, kept in this process's memory

export type VerificationJobStatus = 'running' | 'completed' | 'failed';

export interface VerificationJob {
  readonly id: string;
  readonly mode: AuditVerificationMode;
  status: VerificationJobStatus;
  readonly startedAtMs: number;
  finishedAtMs: number | null;
  /** Known once the run has read its starting point and the head. */
  verifiedFrom: number | null;
  /** The next index to check: entries before it are done. */
  checkedUpTo: number | null;
  /** The log size the run verifies up to (the head when it started). */
  size: number | null;
  result: AuditRunResult | null;
  /** Why a run could not finish (the database did not answer, the process is stopping). No internals. */
  error: string | null;
  /** Settles (never rejects) when the run has finished, either way. */
  readonly done: Promise<void>;
}

/** Finished jobs kept for `GET .../verify-jobs/:id`; older ones are forgotten. */
export const VERIFICATION_JOBS_KEPT = 32;

const newJobId = () => `avj_${randomBytes(12).toString('hex')}`;

/**
 * Verification as a service. Concurrent incremental requests share the one running incremental run
 * (single-flight); at most one full run per process at a time, and asking for one while it runs returns it.
 * Runs yield between pages, so they share the loop with requests instead of stalling them. Job state lives in
 * this process only (several processes: ask the one that started it); the verified prefix and the last full
 * outcome live in the database, shared by all.
 */
export class AuditVerifier {
  private readonly running = new Map<AuditVerificationMode, VerificationJob>();
  private readonly jobs = new Map<string, VerificationJob>();
  private stopping = false;

  constructor(
    private readonly store: Store,
    private readonly committer: Committer,
    private readonly signer: AuditSigner,
    private readonly clock: () => number,
    private readonly onError: (error: unknown) => void = () => {},
  ) {}

  /**
   * Starts the full re-verification when the last one that finished (in any process; its record trusted only
   * with a valid MAC) is older than `intervalMs`, or there was none. An edit before the verified prefix is
   * invisible to incremental checks: this is what finds it without anyone asking.
   */
  async startFullIfDue(intervalMs: number): Promise<VerificationJob | null> {
    if (this.stopping || this.running.has('full')) return null;
    const state = trusted(await this.store.reads.auditVerificationState(), this.signer);
    const lastAtMs = state.lastFull?.atMs;
    if (lastAtMs !== undefined && this.clock() - lastAtMs < intervalMs) return null;
    return this.start('full');
  }

  /** The running run of this mode, or a new one. */
  start(mode: AuditVerificationMode): VerificationJob {
    const running = this.running.get(mode);
    if (running !== undefined) return running;
    let settle: () => void = () => {};
    const job: VerificationJob = {
      id: newJobId(),
      mode,
      status: 'running',
      startedAtMs: this.clock(),
      finishedAtMs: null,
      verifiedFrom: null,
      checkedUpTo: null,
      size: null,
      result: null,
      error: null,
      done: new Promise<void>((resolve) => {
        settle = resolve;
      }),
    };
    this.running.set(mode, job);
    this.remember(job);
    const progress: Progress = {
      advanced: (nextIndex, size, verifiedFrom) => {
        job.checkedUpTo = nextIndex;
        job.size = size;
        job.verifiedFrom = verifiedFrom;
      },
      stopped: () => this.stopping,
    };
    const run = mode === 'full' ? verifyAuditFully : verifyAuditIncrementally;
    // Started on the next turn: the caller gets the job before any of the work runs.
    void nextTurn()
      .then(() =>
        this.stopping
          ? Promise.reject(new Stopped())
          : run(this.store, this.committer, progress, this.signer),
      )
      .then(
        (result) => {
          job.result = result;
          job.checkedUpTo = result.verification.size;
          job.status = 'completed';
        },
        (error: unknown) => {
          job.status = 'failed';
          job.error =
            error instanceof Stopped
              ? 'the verification was stopped (the process is shutting down)'
              : 'the verification could not finish (a storage error); start it again';
          if (!(error instanceof Stopped)) this.onError(error);
        },
      )
      .finally(() => {
        job.finishedAtMs = this.clock();
        this.running.delete(mode);
        settle();
      });
    return job;
  }

  job(id: string): VerificationJob | undefined {
    return this.jobs.get(id);
  }

  /** Waits for the job at most `waitMs`; true when it has finished. */
  async waitFor(job: VerificationJob, waitMs: number): Promise<boolean> {
    if (job.status !== 'running' || waitMs <= 0) return job.status !== 'running';
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, waitMs);
    });
    await Promise.race([job.done, timeout]);
    clearTimeout(timer);
    return job.status !== 'running';
  }

  /** Stops the runs at their next page and waits for them (before the store closes). */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all([...this.running.values()].map((job) => job.done));
  }

  private remember(job: VerificationJob): void {
    this.jobs.set(job.id, job);
    // Maps iterate in insertion order: the oldest finished jobs go first; running ones are never dropped.
    for (const [id, old] of this.jobs) {
      if (this.jobs.size <= VERIFICATION_JOBS_KEPT) break;
      if (old.status !== 'running') this.jobs.delete(id);
    }
  }
}
