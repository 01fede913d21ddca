import { AppError } from '../domain/errors.ts';
import {
  consistencyProof,
  consistencyRanges,
  inclusionProof,
  inclusionRanges,
  type LeafRange,
  type MerkleNode,
  type NodeId,
  type NodeLookup,
  nodeKey,
  nodesFor,
  rootHash,
  rootRanges,
  verifyConsistency,
} from '../domain/merkle.ts';
import { checkpointBody } from '../domain/signed-note.ts';
import type { AuditSigner } from '../security/audit-signer.ts';
import type { Committer } from '../storage/committer.ts';
import type { AuditCheckpointRow, Store, Tx } from '../storage/store.ts';

/**
 * The verifiable audit log (docs/audit-log.md, docs/decisions/0007-verifiable-audit-log.md): roots and proofs
 * from the stored Merkle nodes, and signed checkpoints.
 *
 * Every proof or root is planned first (which perfect subtrees it needs), then read in ONE query of
 * O(log n) primary-key probes, then folded in memory: a proof over a million entries costs one round trip.
 *
 * Checkpoints are cut through the committer, under the audit head lock, so they serialise with appends and
 * with each other across processes. A checkpoint is signed only after checking that the tree it covers is an
 * extension of the last signed one (an RFC 9162 consistency proof over the stored nodes); the server never
 * signs a smaller tree or a rewritten history, it reports AUDIT_LOG_INCONSISTENT instead.
 */
export interface MerkleNodeSource {
  auditMerkleNodes(ids: NodeId[]): Promise<MerkleNode[]>;
}

function inconsistent(message: string): AppError {
  return new AppError('AUDIT_LOG_INCONSISTENT', message);
}

async function fetchLookup(source: MerkleNodeSource, ranges: LeafRange[]): Promise<NodeLookup> {
  const nodes = await source.auditMerkleNodes(nodesFor(ranges));
  const byKey = new Map(nodes.map((n) => [nodeKey(n), n.hash]));
  return (id) => {
    const hash = byKey.get(nodeKey(id));
    if (hash === undefined) throw inconsistent(`the audit log's Merkle node ${nodeKey(id)} is missing`);
    return hash;
  };
}

export async function treeRoot(source: MerkleNodeSource, size: number): Promise<Buffer> {
  return rootHash(size, await fetchLookup(source, rootRanges(size)));
}

export async function inclusionProofOf(
  source: MerkleNodeSource,
  index: number,
  size: number,
): Promise<Buffer[]> {
  return inclusionProof(index, size, await fetchLookup(source, inclusionRanges(index, size)));
}

export async function consistencyProofOf(
  source: MerkleNodeSource,
  from: number,
  to: number,
): Promise<Buffer[]> {
  return consistencyProof(from, to, await fetchLookup(source, consistencyRanges(from, to)));
}

/** One checkpoint cut, inside a command: lock, check against the last signed checkpoint, sign, store. */
export async function cutCheckpoint(tx: Tx, signer: AuditSigner): Promise<AuditCheckpointRow> {
  const size = await tx.lockAuditMerkleHead();
  const previous = await tx.latestAuditCheckpoint();
  if (previous !== undefined && previous.treeSize > size) {
    throw inconsistent(
      `the audit log holds ${size} entries but a checkpoint of ${previous.treeSize} was signed`,
    );
  }
  const root = await treeRoot(tx, size);
  if (previous !== undefined && previous.treeSize > 0) {
    const proof = await consistencyProofOf(tx, previous.treeSize, size);
    if (!verifyConsistency(previous.treeSize, size, previous.rootHash, root, proof)) {
      throw inconsistent(
        `the audit log is not an extension of its checkpoint of ${previous.treeSize} entries`,
      );
    }
  }
  if (previous !== undefined && previous.treeSize === size) return previous;
  const checkpoint: AuditCheckpointRow = {
    treeSize: size,
    rootHash: root,
    note: signer.signNote(checkpointBody(signer.name, size, root)),
    createdAtMs: tx.nowMs,
  };
  await tx.insertAuditCheckpoint(checkpoint);
  return checkpoint;
}

const CUT_ATTEMPTS_MAX = 3;

export class AuditLog {
  private inflightCut: Promise<AuditCheckpointRow> | null = null;

  constructor(
    private readonly store: Store,
    private readonly committer: Committer,
    readonly signer: AuditSigner,
  ) {}

  /**
   * The latest signed checkpoint, cut on demand: a new one when the log grew since the last (or when it
   * does not yet cover `minTreeSize` leaves). Concurrent callers share one cut.
   */
  async checkpoint(minTreeSize = 0): Promise<AuditCheckpointRow> {
    // In this order: the log only grows, so a size read after the checkpoint is never smaller than it.
    const latest = await this.store.reads.latestAuditCheckpoint();
    const size = await this.store.reads.auditMerkleSize();
    if (latest !== undefined && latest.treeSize > size) {
      throw inconsistent(
        `the audit log holds ${size} entries but a checkpoint of ${latest.treeSize} was signed`,
      );
    }
    const wantedSize = Math.max(size, minTreeSize);
    if (latest !== undefined && latest.treeSize >= wantedSize) return latest;
    for (let attempt = 1; ; attempt++) {
      // A cut already in flight may have pinned its size before our entry committed: then cut again.
      const cut = await this.sharedCut();
      if (cut.treeSize >= wantedSize || attempt >= CUT_ATTEMPTS_MAX) return cut;
    }
  }

  /**
   * The latest signed checkpoint if it covers at least `treeSize` entries, else a new one: for proofs about
   * entries already covered, which need no fresh cut.
   */
  async checkpointCovering(treeSize: number): Promise<AuditCheckpointRow> {
    const latest = await this.store.reads.latestAuditCheckpoint();
    // Signed by this process's key too: after `keys accept-audit-key` the last checkpoint still carries the
    // old key's signature, and a receipt must verify with the key GET /v1/audit-logs/public-key serves now.
    const covers = latest !== undefined && latest.treeSize >= treeSize;
    if (covers && this.signer.verifiesNote(latest.note)) return latest;
    return this.checkpoint(treeSize);
  }

  private sharedCut(): Promise<AuditCheckpointRow> {
    this.inflightCut ??= this.committer
      .submit((tx) => cutCheckpoint(tx, this.signer))
      .finally(() => {
        this.inflightCut = null;
      });
    return this.inflightCut;
  }
}

/** Start-up: gives every entry its Merkle nodes (after migration 3 on an existing log), in bounded chunks. */
const BACKFILL_CHUNK_LEAVES = 2000;

export async function backfillAuditMerkle(store: Store, committer: Committer): Promise<number> {
  const before = await store.reads.auditMerkleSize();
  for (;;) {
    const { merkleSize, size } = await committer.submit((tx) => tx.extendAuditMerkle(BACKFILL_CHUNK_LEAVES));
    if (merkleSize >= size) return merkleSize - before;
  }
}

/**
 * Cuts a checkpoint every `intervalMs` while the log grows (an idle tick is two cheap reads). A failure is
 * reported once per distinct message, not every tick: an inconsistent log is an alarm, not log noise.
 */
export function startCheckpointer(
  auditLog: AuditLog,
  intervalMs: number,
  onError: (error: unknown) => void,
): () => void {
  let running = false;
  let stopped = false;
  let lastError: string | null = null;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    auditLog
      .checkpoint()
      .then(() => {
        lastError = null;
      })
      .catch((error: unknown) => {
        const message = error instanceof Error ? error.message : String(error);
        if (!stopped && message !== lastError) onError(error);
        lastError = message;
      })
      .finally(() => {
        running = false;
      });
  }, intervalMs);
  timer.unref();
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
