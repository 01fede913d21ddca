import { createHash } from 'node:crypto';
import { assert } from './assert.ts';

/**
 * The RFC 6962 / RFC 9162 Merkle tree over the audit log, as pure functions.
 *
 *   leaf hash = SHA-256(0x00 || leaf bytes)        node hash = SHA-256(0x01 || left || right)
 *   MTH({}) = SHA-256(""); MTH of n > 1 leaves splits at k, the largest power of two smaller than n.
 *
 * Storage keeps only PERFECT subtrees (2^level leaves starting at index * 2^level), written once when their
 * last leaf is appended and never changed. Every range the RFC's recursion ever looks at starts on a
 * boundary of its own largest power of two, so its hash is a right fold over at most log2(n) perfect
 * subtrees. A proof is therefore planned first (which ranges, hence which perfect subtrees), the subtrees
 * are fetched in one go (O(log n) rows), and the hashes are folded here.
 */
export const HASH_BYTES = 32;

/** A perfect subtree: leaves [index * 2^level, (index + 1) * 2^level). Level 0 is a leaf hash. */
export interface NodeId {
  level: number;
  index: number;
}

export interface MerkleNode extends NodeId {
  hash: Buffer;
}

/** A half-open range of leaves [start, end). */
export interface LeafRange {
  start: number;
  end: number;
}

export type NodeLookup = (id: NodeId) => Buffer;

const sha256 = (...parts: Buffer[]): Buffer => {
  const h = createHash('sha256');
  for (const part of parts) h.update(part);
  return h.digest();
};

const LEAF_PREFIX = Buffer.from([0x00]);
const NODE_PREFIX = Buffer.from([0x01]);

export const EMPTY_ROOT = sha256();

export function leafHash(data: Buffer | string): Buffer {
  return sha256(LEAF_PREFIX, typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
}

export function nodeHash(left: Buffer, right: Buffer): Buffer {
  return sha256(NODE_PREFIX, left, right);
}

export const nodeKey = (id: NodeId): string => `${id.level}:${id.index}`;

/** The largest power of two <= n (n >= 1). A loop, not Math.log2, so it is exact up to 2^53. */
function largestPowerOfTwoAtMost(n: number): number {
  let k = 1;
  while (k * 2 <= n) k *= 2;
  return k;
}

/** The split point of RFC 6962: the largest power of two strictly smaller than n (n >= 2). */
function splitPoint(n: number): number {
  return largestPowerOfTwoAtMost(n - 1);
}

function levelOf(powerOfTwo: number): number {
  let level = 0;
  for (let k = 1; k < powerOfTwo; k *= 2) level += 1;
  return level;
}

/** The perfect subtrees that make up a range, largest (leftmost) first. */
export function perfectSubtrees(range: LeafRange): NodeId[] {
  assert(range.start >= 0 && range.end > range.start, 'a Merkle range holds at least one leaf');
  const ids: NodeId[] = [];
  let start = range.start;
  while (start < range.end) {
    const width = largestPowerOfTwoAtMost(range.end - start);
    assert(start % width === 0, 'Merkle ranges start on a boundary of their largest power of two');
    ids.push({ level: levelOf(width), index: start / width });
    start += width;
  }
  return ids;
}

/** MTH of a range, from its perfect subtrees: the RFC's split is always "largest perfect subtree | rest". */
export function rangeHash(range: LeafRange, lookup: NodeLookup): Buffer {
  const ids = perfectSubtrees(range);
  let hash = lookup(ids[ids.length - 1]!);
  for (let i = ids.length - 2; i >= 0; i--) hash = nodeHash(lookup(ids[i]!), hash);
  return hash;
}

/** The ranges whose hashes form the inclusion path of leaf `index` in a tree of `size` (RFC 9162 2.1.3.1). */
export function inclusionRanges(index: number, size: number): LeafRange[] {
  assert(index >= 0 && index < size, 'inclusion of a leaf inside the tree');
  const topDown: LeafRange[] = [];
  let start = 0;
  let end = size;
  while (end - start > 1) {
    const k = splitPoint(end - start);
    if (index < start + k) {
      topDown.push({ start: start + k, end });
      end = start + k;
    } else {
      topDown.push({ start, end: start + k });
      start += k;
    }
  }
  return topDown.reverse(); // the path runs from the leaf up
}

/** The ranges whose hashes form the consistency proof from `from` to `to` leaves (RFC 9162 2.1.4.1). */
export function consistencyRanges(from: number, to: number): LeafRange[] {
  assert(from >= 1 && from <= to, 'consistency between a non-empty tree and a larger or equal one');
  const topDown: LeafRange[] = [];
  let start = 0;
  let end = to;
  const oldEnd = from;
  let oldTreeIsWholeSubtree = true; // SUBPROOF's flag b: the old tree's root is known to the verifier
  while (end !== oldEnd) {
    const k = splitPoint(end - start);
    if (oldEnd - start <= k) {
      topDown.push({ start: start + k, end });
      end = start + k;
    } else {
      topDown.push({ start, end: start + k });
      start += k;
      oldTreeIsWholeSubtree = false;
    }
  }
  if (!oldTreeIsWholeSubtree) topDown.push({ start, end });
  return topDown.reverse();
}

/** Every perfect subtree the given ranges need, without duplicates. */
export function nodesFor(ranges: LeafRange[]): NodeId[] {
  const byKey = new Map<string, NodeId>();
  for (const range of ranges) for (const id of perfectSubtrees(range)) byKey.set(nodeKey(id), id);
  return [...byKey.values()];
}

export function rootRanges(size: number): LeafRange[] {
  return size === 0 ? [] : [{ start: 0, end: size }];
}

/**
 * The nodes that appending leaf `index` completes: the leaf itself, then each parent for as long as the node
 * just completed is a right child. `leftSibling` supplies the stored left halves.
 */
export function nodesCompletedBy(index: number, leaf: Buffer, leftSibling: NodeLookup): MerkleNode[] {
  const completed: MerkleNode[] = [{ level: 0, index, hash: leaf }];
  let hash = leaf;
  let level = 0;
  let position = index;
  while (position % 2 === 1) {
    hash = nodeHash(leftSibling({ level, index: position - 1 }), hash);
    level += 1;
    position = (position - 1) / 2;
    completed.push({ level, index: position, hash });
  }
  return completed;
}

/** The stored nodes `nodesCompletedBy(index, ...)` will ask for. */
export function leftSiblingsOf(index: number): NodeId[] {
  const ids: NodeId[] = [];
  let level = 0;
  let position = index;
  while (position % 2 === 1) {
    ids.push({ level, index: position - 1 });
    level += 1;
    position = (position - 1) / 2;
  }
  return ids;
}

/** An in-memory lookup over all leaf hashes (tests, and small trees): computes perfect subtrees on demand. */
export function lookupFromLeaves(leaves: Buffer[]): NodeLookup {
  const memo = new Map<string, Buffer>();
  const lookup: NodeLookup = (id) => {
    const key = nodeKey(id);
    const known = memo.get(key);
    if (known !== undefined) return known;
    let hash: Buffer;
    if (id.level === 0) {
      const leaf = leaves[id.index];
      assert(leaf !== undefined, `leaf ${id.index} exists`);
      hash = leaf;
    } else {
      const left = lookup({ level: id.level - 1, index: id.index * 2 });
      const right = lookup({ level: id.level - 1, index: id.index * 2 + 1 });
      hash = nodeHash(left, right);
    }
    memo.set(key, hash);
    return hash;
  };
  return lookup;
}

export function rootHash(size: number, lookup: NodeLookup): Buffer {
  return size === 0 ? EMPTY_ROOT : rangeHash({ start: 0, end: size }, lookup);
}

export function inclusionProof(index: number, size: number, lookup: NodeLookup): Buffer[] {
  return inclusionRanges(index, size).map((range) => rangeHash(range, lookup));
}

export function consistencyProof(from: number, to: number, lookup: NodeLookup): Buffer[] {
  return consistencyRanges(from, to).map((range) => rangeHash(range, lookup));
}

/** RFC 9162 2.1.3.2: recomputes the root from a leaf hash and its inclusion path. */
export function rootFromInclusionProof(
  index: number,
  size: number,
  leaf: Buffer,
  proof: Buffer[],
): Buffer | null {
  if (index < 0 || index >= size) return null;
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) return null;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 ? r : null;
}

export function verifyInclusion(
  index: number,
  size: number,
  leaf: Buffer,
  proof: Buffer[],
  root: Buffer,
): boolean {
  return rootFromInclusionProof(index, size, leaf, proof)?.equals(root) ?? false;
}

/** RFC 9162 2.1.4.2, plus the trivial cases: equal sizes need an empty proof and equal roots. */
export function verifyConsistency(
  from: number,
  to: number,
  fromRoot: Buffer,
  toRoot: Buffer,
  proof: Buffer[],
): boolean {
  if (from < 0 || from > to) return false;
  if (from === to) return proof.length === 0 && fromRoot.equals(toRoot);
  if (from === 0) return proof.length === 0;
  if (proof.length === 0) return false;
  const path = isPowerOfTwo(from) ? [fromRoot, ...proof] : [...proof];
  let fn = from - 1;
  let sn = to - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr = path[0]!;
  let sr = path[0]!;
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && fr.equals(fromRoot) && sr.equals(toRoot);
}

function isPowerOfTwo(n: number): boolean {
  return n > 0 && largestPowerOfTwoAtMost(n) === n;
}
