import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import {
  consistencyProof,
  consistencyRanges,
  EMPTY_ROOT,
  inclusionProof,
  inclusionRanges,
  leafHash,
  lookupFromLeaves,
  type MerkleNode,
  nodeHash,
  nodeKey,
  nodesCompletedBy,
  nodesFor,
  rootHash,
  verifyConsistency,
  verifyInclusion,
} from './merkle.ts';

/**
 * The Merkle tree against the published RFC 6962 test vectors (the 8-leaf vectors of the Certificate
 * Transparency reference implementations), and against a literal transcription of RFC 6962 section 2.1's
 * recursive definitions for every tree up to 64 leaves.
 */
const hex = (b: Buffer) => b.toString('hex');
const dh = (s: string) => Buffer.from(s, 'hex');

const LEAF_INPUTS = [
  '',
  '00',
  '10',
  '2021',
  '3031',
  '40414243',
  '5051525354555657',
  '606162636465666768696a6b6c6d6e6f',
].map(dh);
const LEAVES = LEAF_INPUTS.map((d) => leafHash(d));

const ROOTS = [
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
];

const INCLUSION = [
  {
    index: 0,
    size: 8,
    path: [
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ],
  },
  {
    index: 5,
    size: 8,
    path: [
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  },
  { index: 2, size: 3, path: ['fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125'] },
  {
    index: 1,
    size: 5,
    path: [
      '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    ],
  },
];

const CONSISTENCY = [
  { from: 1, to: 1, proof: [] as string[] },
  {
    from: 1,
    to: 8,
    proof: [
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ],
  },
  {
    from: 6,
    to: 8,
    proof: [
      '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  },
  {
    from: 2,
    to: 5,
    proof: [
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    ],
  },
];

const lookup = lookupFromLeaves(LEAVES);

describe('RFC 6962 test vectors', () => {
  test('the empty tree is SHA-256 of nothing', () => {
    assert.equal(hex(EMPTY_ROOT), createHash('sha256').digest('hex'));
    assert.equal(
      hex(rootHash(0, lookup)),
      'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    );
  });

  test('roots for every tree size from 1 to 8', () => {
    for (const [i, root] of ROOTS.entries())
      assert.equal(hex(rootHash(i + 1, lookup)), root, `size ${i + 1}`);
  });

  for (const v of INCLUSION) {
    test(`inclusion proof of leaf ${v.index} in a tree of ${v.size}`, () => {
      const proof = inclusionProof(v.index, v.size, lookup);
      assert.deepEqual(proof.map(hex), v.path);
      const root = dh(ROOTS[v.size - 1]!);
      assert.ok(verifyInclusion(v.index, v.size, LEAVES[v.index]!, proof, root));
      // Wrong index, size, leaf, root, or a changed, missing or extra hash: each is rejected.
      assert.ok(!verifyInclusion(v.index + 1, v.size, LEAVES[v.index]!, proof, root));
      assert.ok(!verifyInclusion(v.index, v.size * 2, LEAVES[v.index]!, proof, root));
      assert.ok(!verifyInclusion(v.index, v.size, leafHash('WrongLeaf'), proof, root));
      assert.ok(!verifyInclusion(v.index, v.size, LEAVES[v.index]!, proof, EMPTY_ROOT));
      for (let i = 0; i < proof.length; i++) {
        const changed = proof.map((h, j) => (j === i ? EMPTY_ROOT : h));
        assert.ok(!verifyInclusion(v.index, v.size, LEAVES[v.index]!, changed, root));
      }
      assert.ok(!verifyInclusion(v.index, v.size, LEAVES[v.index]!, proof.slice(0, -1), root));
      assert.ok(!verifyInclusion(v.index, v.size, LEAVES[v.index]!, [...proof, root], root));
    });
  }

  for (const v of CONSISTENCY) {
    test(`consistency proof from ${v.from} to ${v.to}`, () => {
      const proof = consistencyProof(v.from, v.to, lookup);
      assert.deepEqual(proof.map(hex), v.proof);
      const [oldRoot, newRoot] = [dh(ROOTS[v.from - 1]!), dh(ROOTS[v.to - 1]!)];
      assert.ok(verifyConsistency(v.from, v.to, oldRoot, newRoot, proof));
      if (proof.length === 0) return;
      assert.ok(!verifyConsistency(v.from - 1, v.to, oldRoot, newRoot, proof));
      assert.ok(!verifyConsistency(v.from + 1, v.to, oldRoot, newRoot, proof));
      assert.ok(!verifyConsistency(v.from, v.to * 2, oldRoot, newRoot, proof));
      assert.ok(!verifyConsistency(v.from, v.to, leafHash('WrongRoot'), newRoot, proof));
      assert.ok(!verifyConsistency(v.from, v.to, oldRoot, leafHash('WrongRoot'), proof));
      assert.ok(!verifyConsistency(v.from, v.to, oldRoot, newRoot, []));
      assert.ok(!verifyConsistency(v.from, v.to, oldRoot, newRoot, proof.slice(0, -1)));
      assert.ok(!verifyConsistency(v.from, v.to, oldRoot, newRoot, [...proof, oldRoot]));
    });
  }

  test('a tree never proves consistency with a larger or a different one', () => {
    const [r1, r2] = [dh(ROOTS[0]!), dh(ROOTS[1]!)];
    assert.ok(!verifyConsistency(2, 1, r2, r1, []));
    assert.ok(!verifyConsistency(1, 1, r1, r2, []));
    assert.ok(!verifyConsistency(1, 1, r1, r1, [r1]));
  });
});

/** RFC 6962 section 2.1, transcribed literally (recursive, on arrays of leaf hashes). */
const k = (n: number) => 2 ** Math.ceil(Math.log2(n) - 1);
function MTH(d: Buffer[]): Buffer {
  if (d.length === 0) return EMPTY_ROOT;
  if (d.length === 1) return d[0]!;
  return nodeHash(MTH(d.slice(0, k(d.length))), MTH(d.slice(k(d.length))));
}
function PATH(m: number, d: Buffer[]): Buffer[] {
  if (d.length <= 1) return [];
  const s = k(d.length);
  return m < s
    ? [...PATH(m, d.slice(0, s)), MTH(d.slice(s))]
    : [...PATH(m - s, d.slice(s)), MTH(d.slice(0, s))];
}
function SUBPROOF(m: number, d: Buffer[], b: boolean): Buffer[] {
  if (m === d.length) return b ? [] : [MTH(d)];
  const s = k(d.length);
  return m <= s
    ? [...SUBPROOF(m, d.slice(0, s), b), MTH(d.slice(s))]
    : [...SUBPROOF(m - s, d.slice(s), false), MTH(d.slice(0, s))];
}

describe('every tree up to 64 leaves, against the RFC text', () => {
  const leaves = Array.from({ length: 64 }, (_, i) => leafHash(Buffer.from(`leaf ${i}`)));
  const all = lookupFromLeaves(leaves);

  test('roots, inclusion proofs and consistency proofs match and verify', () => {
    for (let n = 1; n <= 64; n++) {
      const d = leaves.slice(0, n);
      const root = rootHash(n, all);
      assert.equal(hex(root), hex(MTH(d)), `root of ${n}`);
      for (let m = 0; m < n; m++) {
        const proof = inclusionProof(m, n, all);
        assert.deepEqual(proof.map(hex), PATH(m, d).map(hex), `inclusion ${m} of ${n}`);
        assert.ok(verifyInclusion(m, n, leaves[m]!, proof, root), `verify inclusion ${m} of ${n}`);
      }
      for (let m = 1; m <= n; m++) {
        const proof = consistencyProof(m, n, all);
        assert.deepEqual(proof.map(hex), SUBPROOF(m, d, true).map(hex), `consistency ${m} to ${n}`);
        assert.ok(verifyConsistency(m, n, MTH(leaves.slice(0, m)), root, proof), `verify ${m} to ${n}`);
      }
    }
  });

  test('appending leaf by leaf stores exactly the perfect subtrees, each with its final hash', () => {
    const stored = new Map<string, Buffer>();
    for (let i = 0; i < leaves.length; i++) {
      const completed: MerkleNode[] = nodesCompletedBy(i, leaves[i]!, (id) => stored.get(nodeKey(id))!);
      for (const node of completed) {
        assert.ok(!stored.has(nodeKey(node)), 'a node is written once');
        stored.set(nodeKey(node), node.hash);
      }
    }
    assert.equal(stored.size, 2 * 64 - 1);
    for (const [key, hash] of stored) {
      const [level, index] = key.split(':').map(Number) as [number, number];
      assert.equal(hex(hash), hex(all({ level, index })), key);
    }
  });
});

test('proofs over huge trees need O(log n) stored nodes', () => {
  const size = 2 ** 45 + 12_345;
  for (const index of [0, 1, 2 ** 44, size - 1]) {
    assert.ok(nodesFor(inclusionRanges(index, size)).length <= 2 * 46, `inclusion of ${index}`);
  }
  for (const from of [1, 3, 2 ** 40 + 1, size - 1]) {
    assert.ok(nodesFor(consistencyRanges(from, size)).length <= 3 * 46, `consistency from ${from}`);
  }
});
