import { createHash, createPublicKey, verify as verifySignature } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

/**
 * Offline verifier for the payment API's audit log. Self-contained ON PURPOSE: it imports nothing from the
 * server (a verifier must not trust the code paths it checks); everything is written from the public specs:
 *
 *   RFC 8785 (JSON canonicalization)     RFC 6962 / RFC 9162 section 2.1 (Merkle tree hashes and proofs)
 *   C2SP signed-note and tlog-checkpoint (Ed25519 signed checkpoints and verifier keys)
 *
 * Usage: USAGE below (also printed by --help). The file formats are described in docs/audit-log.md.
 */

const USAGE = `Usage: npm run audit:verify -- --key <key> [--checkpoint <file>] [--receipt <file>] [options]
       (at least one of --checkpoint and --receipt)

  --key <verifier key, or a file holding it>      required: "<name>+<key hash>+<base64(0x01 || key)>"
  --checkpoint <file>        a saved checkpoint (signed note, as served by GET /v1/audit-logs/checkpoint)
  --old-checkpoint <file>    an older saved checkpoint: the log must have only grown since; repeatable
  --receipt <file>           a payment receipt: the Prefer: receipt response of POST /v1/payments (or only its
                             receipt object); its entry must be in the signed tree and record that payment
  --entries <file>           audit entries (GET /v1/audit-logs pages, a JSON array, or {entry}); repeatable
  --proof <file>             a consistency proof (GET /v1/audit-logs/proofs/consistency) between the checkpoints
  --url <base URL> --token <auditor token>   fetch the consistency proof instead (token also AUDIT_VERIFY_TOKEN)
  --help                     this text

Every check prints one "ok" line; the first failure prints one line to stderr and exits 1 (2: bad usage).
`;

class VerificationFailure extends Error {}
class UsageError extends Error {}

const fail = (message: string): never => {
  throw new VerificationFailure(message);
};

// ---------------------------------------------------------------------------------------------------------
// RFC 8785: keys sorted by UTF-16 code units, no whitespace, ECMAScript string and number serialisation.

function canonicalize(value: unknown): string {
  if (value === null || typeof value === 'boolean') return JSON.stringify(value);
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) fail('an audit entry holds a number JSON cannot represent');
    return Object.is(value, -0) ? '0' : JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalize).join(',')}]`;
  if (typeof value === 'object') {
    const keys = Object.keys(value as object).sort(); // default sort compares UTF-16 code units
    const members = keys.map(
      (k) => `${JSON.stringify(k)}:${canonicalize((value as Record<string, unknown>)[k])}`,
    );
    return `{${members.join(',')}}`;
  }
  return fail(`an audit entry holds a ${typeof value}, which is not JSON`);
}

// ---------------------------------------------------------------------------------------------------------
// RFC 6962 hashing and RFC 9162 section 2.1.3.2 / 2.1.4.2 proof verification.

const sha256 = (...parts: Buffer[]): Buffer => {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return hash.digest();
};
const hashLeaf = (data: Buffer): Buffer => sha256(Buffer.from([0x00]), data);
const hashChildren = (left: Buffer, right: Buffer): Buffer => sha256(Buffer.from([0x01]), left, right);
// Arithmetic, not bit operators: JavaScript's bit operators truncate to 32 bits, tree sizes do not.
const lsb = (n: number): boolean => n % 2 === 1;
const half = (n: number): number => Math.floor(n / 2);
const isPowerOfTwo = (n: number): boolean => {
  let k = 1;
  while (k < n) k *= 2;
  return k === n;
};

/** MTH(D[n]) from the leaf hashes. */
function merkleTreeHash(leaves: Buffer[]): Buffer {
  if (leaves.length === 0) return sha256();
  if (leaves.length === 1) return leaves[0]!;
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return hashChildren(merkleTreeHash(leaves.slice(0, k)), merkleTreeHash(leaves.slice(k)));
}

function inclusionHolds(index: number, size: number, leaf: Buffer, path: Buffer[], root: Buffer): boolean {
  if (index >= size) return false;
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of path) {
    if (sn === 0) return false;
    if (lsb(fn) || fn === sn) {
      r = hashChildren(p, r);
      while (!lsb(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      r = hashChildren(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 && r.equals(root);
}

function consistencyHolds(
  first: number,
  second: number,
  firstRoot: Buffer,
  secondRoot: Buffer,
  path: Buffer[],
) {
  if (first > second) return false;
  if (first === second) return path.length === 0 && firstRoot.equals(secondRoot);
  if (first === 0) return path.length === 0;
  if (path.length === 0) return false;
  const proof = isPowerOfTwo(first) ? [firstRoot, ...path] : path;
  let fn = first - 1;
  let sn = second - 1;
  while (lsb(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  let fr = proof[0]!;
  let sr = proof[0]!;
  for (const c of proof.slice(1)) {
    if (sn === 0) return false;
    if (lsb(fn) || fn === sn) {
      fr = hashChildren(c, fr);
      sr = hashChildren(c, sr);
      while (!lsb(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      sr = hashChildren(sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 && fr.equals(firstRoot) && sr.equals(secondRoot);
}

// ---------------------------------------------------------------------------------------------------------
// C2SP signed-note (Ed25519, signature type 0x01) and tlog-checkpoint.

interface VerifierKey {
  name: string;
  keyHash: Buffer;
  publicKey: ReturnType<typeof createPublicKey>;
}

interface Checkpoint {
  label: string;
  origin: string;
  size: number;
  root: Buffer;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const strictBase64 = (text: string, what: string): Buffer => {
  const bytes = Buffer.from(text, 'base64');
  if (!BASE64.test(text) || bytes.toString('base64') !== text) fail(`${what} is not valid base64`);
  return bytes;
};

function parseVerifierKey(text: string): VerifierKey {
  const parts = text.trim().split('+');
  // The base64 key may itself contain '+': the name and hash are the first two fields.
  const [name, hashHex, ...rest] = parts;
  const typedKey = strictBase64(rest.join('+'), 'the verifier key');
  if (!name || !/^[0-9a-f]{8}$/.test(hashHex ?? '') || typedKey.length !== 33 || typedKey[0] !== 0x01) {
    throw new UsageError(
      'the verifier key must look like <name>+<8 hex digits>+<base64 of 0x01 and 32 bytes>',
    );
  }
  const rawKey = typedKey.subarray(1);
  const keyHash = sha256(Buffer.from(`${name}\n`, 'utf8'), typedKey).subarray(0, 4);
  if (keyHash.toString('hex') !== hashHex) fail('the verifier key hash does not match its name and key');
  const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), rawKey]);
  return { name, keyHash, publicKey: createPublicKey({ key: spki, format: 'der', type: 'spki' }) };
}

/**
 * Whether one signature line is by `key`, and if so whether it verifies. C2SP signed-note: a line is by a
 * known key only when both the key name and the key hash match; lines by other keys are ignored (a note may
 * carry witnesses' cosignatures), but a line by the known key that fails to verify rejects the whole note.
 */
function signatureLine(
  line: string,
  text: string,
  key: VerifierKey,
  label: string,
): 'other' | 'valid' | 'bad' {
  const match = /^\u2014 (\S+) ([A-Za-z0-9+/=]+)$/.exec(line);
  if (match === null) fail(`${label}: malformed signature line`);
  if (match![1] !== key.name) return 'other';
  const blob = strictBase64(match![2]!, `${label}: a signature`);
  // 4 bytes of key hash and at least one of signature (Go's note.Open rejects shorter ones too).
  if (blob.length < 5) fail(`${label}: malformed signature line`);
  if (!blob.subarray(0, 4).equals(key.keyHash)) return 'other';
  const valid =
    blob.length === 68 && verifySignature(null, Buffer.from(text, 'utf8'), key.publicKey, blob.subarray(4));
  return valid ? 'valid' : 'bad';
}

/** Verifies the note's signatures by `key` and returns the checkpoint it signs. */
function openCheckpoint(note: string, key: VerifierKey, label: string): Checkpoint {
  const split = note.lastIndexOf('\n\n');
  if (split < 0 || !note.endsWith('\n')) fail(`${label}: not a signed note (no signature block)`);
  const text = note.slice(0, split + 1);
  const verdicts = note
    .slice(split + 2, -1)
    .split('\n')
    .map((line) => signatureLine(line, text, key, label));
  const keyId = `${key.name}+${key.keyHash.toString('hex')}`;
  // Every line by the pinned key must verify: one good line does not excuse a forged one beside it.
  if (verdicts.includes('bad')) fail(`${label}: a signature by ${keyId} does not verify`);
  if (!verdicts.includes('valid')) fail(`${label}: no valid signature by ${keyId}`);

  const [origin, sizeText, rootText] = text.slice(0, -1).split('\n');
  if (origin !== key.name)
    fail(`${label}: origin ${JSON.stringify(origin)} is not the key's log ${key.name}`);
  if (!/^(0|[1-9][0-9]{0,15})$/.test(sizeText ?? '') || !Number.isSafeInteger(Number(sizeText))) {
    fail(`${label}: the tree size is not a decimal integer`);
  }
  const root = strictBase64(rootText ?? '', `${label}: the root hash`);
  if (root.length !== 32) fail(`${label}: the root hash is not 32 bytes`);
  return { label, origin: origin!, size: Number(sizeText), root };
}

// ---------------------------------------------------------------------------------------------------------
// Audit entries: the chain (prevHash/hash) and the Merkle leaves, recomputed from the JSON alone.

type Entry = Record<string, unknown> & { index: number; hash: string; prevHash: string };

function withoutHash(entry: Entry): Record<string, unknown> {
  const { hash: _hash, ...rest } = entry;
  return rest;
}

const entryLeaf = (entry: Entry): Buffer => hashLeaf(Buffer.from(canonicalize(withoutHash(entry)), 'utf8'));
const entryChainHash = (entry: Entry): string =>
  sha256(Buffer.from(canonicalize(withoutHash(entry)), 'utf8')).toString('hex');

function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new UsageError(`cannot read JSON from ${path}: ${(error as Error).message}`);
  }
}

function isEntry(value: unknown): value is Entry {
  const e = value as Entry;
  return (
    typeof e === 'object' &&
    e !== null &&
    Number.isSafeInteger(e.index) &&
    typeof e.hash === 'string' &&
    typeof e.prevHash === 'string'
  );
}

function loadEntries(paths: string[]): Entry[] {
  const byIndex = new Map<number, Entry>();
  for (const path of paths) {
    const json = readJson(path) as { logs?: unknown; entries?: unknown; entry?: unknown };
    const list = Array.isArray(json)
      ? json
      : (json.logs ?? json.entries ?? (json.entry ? [json.entry] : null));
    if (!Array.isArray(list))
      throw new UsageError(`${path} holds no audit entries (logs, entries or an array)`);
    for (const entry of list) {
      if (!isEntry(entry)) fail(`${path}: an item is not an audit entry`);
      const seen = byIndex.get(entry.index);
      if (seen !== undefined && canonicalize(seen) !== canonicalize(entry)) {
        fail(`entry ${entry.index} appears twice with different contents`);
      }
      byIndex.set(entry.index, entry);
    }
  }
  const entries = [...byIndex.values()].sort((a, b) => a.index - b.index);
  entries.forEach((entry, position) => {
    if (entry.index !== position)
      fail(`entry ${position} is missing from the entries (deleted or not dumped)`);
  });
  return entries;
}

function checkChain(entries: Entry[]): void {
  let previous = 'GENESIS';
  for (const entry of entries) {
    if (entry.prevHash !== previous)
      fail(`entry ${entry.index}: prevHash does not link to entry ${entry.index - 1}`);
    if (entryChainHash(entry) !== entry.hash) fail(`entry ${entry.index}: hash does not match its contents`);
    previous = entry.hash;
  }
}

// ---------------------------------------------------------------------------------------------------------
// The checks.

interface Options {
  key: VerifierKey;
  checkpoint: Checkpoint | null;
  older: Checkpoint[];
  receiptPath: string | null;
  entries: Entry[] | null;
  proofPath: string | null;
  url: string | null;
  token: string | null;
}

const say = (line: string) => process.stdout.write(`ok   ${line}\n`);

interface Receipt {
  index: number;
  entry: Entry;
  inclusionProof: unknown[];
  checkpoint: string;
}

type Json = Record<string, unknown>;
const isObject = (value: unknown): value is Json =>
  typeof value === 'object' && value !== null && !Array.isArray(value);
const show = (value: unknown): string => JSON.stringify(value) ?? 'missing';

/** The file is the whole POST /v1/payments response ({payment, ..., receipt}) or the bare receipt. */
function readReceipt(path: string): { receipt: Receipt; response: Json | null } {
  const json = readJson(path);
  const response = isObject(json) && 'receipt' in json ? json : null;
  const receipt = (response === null ? json : response['receipt']) as Partial<Receipt> | null;
  if (
    !isObject(receipt) ||
    !Number.isSafeInteger(receipt.index) ||
    !isEntry(receipt.entry) ||
    !Array.isArray(receipt.inclusionProof)
  ) {
    throw new UsageError(`${path} is not a receipt ({index, entry, inclusionProof, checkpoint})`);
  }
  if (typeof receipt.checkpoint !== 'string') throw new UsageError(`${path}: the receipt has no checkpoint`);
  return { receipt: receipt as Receipt, response };
}

// What the server logs when a payment is created, by its creation-time status (the status a receipt's
// response shows). Later entries about the same payment (review, refund) record other facts: a receipt built
// on one of them, with a genuine proof, would vouch for a payment that entry does not describe.
const CREATION_EVENTS = new Map([
  ['posted', 'payment.posted'],
  ['manual_review', 'payment.held_for_review'],
  ['declined', 'payment.declined'],
]);

// The response's payment fields a payer relies on, and the metadata fields the entry logs them under.
const PAYMENT_FIELDS = [
  ['id', 'paymentId'],
  ['status', 'status'],
  ['amountCents', 'amountCents'],
  ['currency', 'currency'],
  ['sourceAccountId', 'sourceAccountId'],
  ['destinationAccountId', 'destinationAccountId'],
] as const;

/** The entry must log a payment's creation; returns its metadata. */
function creationMetadata(entry: Entry): Json {
  const metadata = isObject(entry['metadata']) ? entry['metadata'] : {};
  const status = metadata['status'];
  const expected = typeof status === 'string' ? CREATION_EVENTS.get(status) : undefined;
  if (entry['resourceType'] !== 'payment' || expected === undefined || entry['eventType'] !== expected) {
    fail(
      `the receipt's entry ${entry.index} (${String(entry['eventType'])}) does not log a payment's creation`,
    );
  }
  if (entry['resourceId'] !== metadata['paymentId']) {
    fail(
      `the receipt's entry ${entry.index} is about ${show(entry['resourceId'])} but logs payment ${show(metadata['paymentId'])}`,
    );
  }
  return metadata;
}

/** Every field of the response's payment that the entry logs must be what it logs. */
function checkPayment(response: Json, entry: Entry, metadata: Json): void {
  const payment = isObject(response['payment'])
    ? response['payment']
    : fail('the response holds no payment to compare with its receipt');
  for (const [field, logged] of PAYMENT_FIELDS) {
    if (payment[field] !== metadata[logged]) {
      fail(
        `payment.${field} in the response is ${show(payment[field])} but entry ${entry.index} logs ${logged} ${show(metadata[logged])}`,
      );
    }
  }
  if ('ledgerPosted' in response && response['ledgerPosted'] !== (metadata['status'] === 'posted')) {
    fail(
      `the response says ledgerPosted ${show(response['ledgerPosted'])} but entry ${entry.index} logs status ${show(metadata['status'])}`,
    );
  }
}

function checkReceipt(path: string, options: Options): Checkpoint {
  const { receipt, response } = readReceipt(path);
  const checkpoint = openCheckpoint(receipt.checkpoint, options.key, 'the receipt checkpoint');
  say(`the receipt's checkpoint (size ${checkpoint.size}) is signed by ${options.key.name}`);
  const entry = receipt.entry;
  if (entry.index !== receipt.index)
    fail(`the receipt names index ${receipt.index} but holds entry ${entry.index}`);
  if (entryChainHash(entry) !== entry.hash)
    fail(`the receipt's entry ${entry.index}: hash does not match its contents`);
  const path_ = receipt.inclusionProof.map((h) =>
    strictBase64(typeof h === 'string' ? h : '', 'an inclusion proof hash'),
  );
  if (!inclusionHolds(entry.index, checkpoint.size, entryLeaf(entry), path_, checkpoint.root)) {
    fail(`entry ${entry.index} is NOT included in the receipt's checkpoint of size ${checkpoint.size}`);
  }
  say(
    `entry ${entry.index} (${String(entry['eventType'])} ${String(entry['resourceId'])}) is included in it`,
  );
  // Only now is the entry known to be logged: compare the payment the payer was shown with it.
  const metadata = creationMetadata(entry);
  if (response === null) {
    process.stdout.write(`note a bare receipt: no payment response to compare with entry ${entry.index}\n`);
  } else {
    checkPayment(response, entry, metadata);
    say(`the response's payment (id, status, amount, currency, accounts) is what entry ${entry.index} logs`);
  }
  if (options.entries !== null && options.entries.length > entry.index) {
    if (canonicalize(options.entries[entry.index]) !== canonicalize(entry)) {
      fail(`entry ${entry.index} in the entries differs from the one in the receipt`);
    }
    say(`the entries hold the receipt's entry unchanged`);
  }
  return checkpoint;
}

function checkEntries(entries: Entry[], checkpoints: Checkpoint[]): void {
  checkChain(entries);
  say(`${entries.length} entries: every hash and prevHash link recomputes`);
  const leaves = entries.map(entryLeaf);
  for (const checkpoint of checkpoints) {
    if (leaves.length < checkpoint.size) {
      fail(
        `${checkpoint.label} commits to ${checkpoint.size} entries but only ${leaves.length} exist (the log was truncated or entries deleted)`,
      );
    }
    if (!merkleTreeHash(leaves.slice(0, checkpoint.size)).equals(checkpoint.root)) {
      fail(
        `the first ${checkpoint.size} entries do not hash to the root of ${checkpoint.label} (entries were changed, removed or reordered)`,
      );
    }
    say(`the first ${checkpoint.size} entries recompute the root of ${checkpoint.label}`);
  }
}

async function consistencyProofFor(
  older: Checkpoint,
  newer: Checkpoint,
  options: Options,
): Promise<Buffer[]> {
  let json: { consistencyProof?: { from?: unknown; to?: unknown; hashes?: unknown } };
  if (options.proofPath !== null) {
    json = readJson(options.proofPath) as typeof json;
  } else if (options.url !== null) {
    const url = `${options.url.replace(/\/$/, '')}/v1/audit-logs/proofs/consistency?from=${older.size}&to=${newer.size}`;
    const headers: Record<string, string> = options.token ? { authorization: `Bearer ${options.token}` } : {};
    const response = await fetch(url, { headers }).catch((error: Error) =>
      fail(`cannot fetch ${url}: ${error.message}`),
    );
    if (!response.ok)
      fail(
        `the server refused a consistency proof from ${older.size} to ${newer.size} (HTTP ${response.status})`,
      );
    json = (await response.json()) as typeof json;
  } else {
    throw new UsageError(`to check ${older.label} against ${newer.label}, give --entries, --proof or --url`);
  }
  const proof = json.consistencyProof;
  if (proof?.from !== older.size || proof.to !== newer.size || !Array.isArray(proof.hashes)) {
    throw new UsageError(`the consistency proof is not from ${older.size} to ${newer.size}`);
  }
  return proof.hashes.map((h: unknown) =>
    strictBase64(typeof h === 'string' ? h : '', 'a consistency proof hash'),
  );
}

function canProve(older: Checkpoint, newer: Checkpoint, options: Options): boolean {
  if (older.size >= newer.size || options.url !== null) return true;
  if (options.entries !== null && options.entries.length >= newer.size) return true;
  if (options.proofPath === null) return false;
  const proof = (readJson(options.proofPath) as { consistencyProof?: { from?: unknown; to?: unknown } })
    .consistencyProof;
  return proof?.from === older.size && proof.to === newer.size;
}

async function checkConsistency(older: Checkpoint, newer: Checkpoint, options: Options): Promise<void> {
  if (older.size > newer.size) {
    fail(
      `${newer.label} (size ${newer.size}) is smaller than ${older.label} (size ${older.size}): the log was truncated`,
    );
  }
  if (older.size === newer.size) {
    if (!older.root.equals(newer.root))
      fail(`${older.label} and ${newer.label} sign different roots for size ${older.size}: the log forked`);
    say(`${older.label} and ${newer.label} are the same tree`);
    return;
  }
  if (options.entries !== null && options.entries.length >= newer.size) {
    say(
      `${older.label} (size ${older.size}) is a prefix of ${newer.label} (size ${newer.size}), recomputed from the entries`,
    );
    return;
  }
  const proof = await consistencyProofFor(older, newer, options);
  if (!consistencyHolds(older.size, newer.size, older.root, newer.root, proof)) {
    fail(
      `${newer.label} (size ${newer.size}) is NOT consistent with ${older.label} (size ${older.size}): the log was rewritten`,
    );
  }
  say(`consistency proof from ${older.size} to ${newer.size} verifies: the log only grew`);
}

async function run(options: Options): Promise<void> {
  const checkpoints: Checkpoint[] = [...options.older];
  if (options.checkpoint !== null) checkpoints.push(options.checkpoint);
  for (const checkpoint of checkpoints)
    say(`${checkpoint.label} (size ${checkpoint.size}) is signed by ${options.key.name}`);
  const receiptCheckpoint = options.receiptPath === null ? null : checkReceipt(options.receiptPath, options);
  if (receiptCheckpoint !== null) checkpoints.push(receiptCheckpoint);
  if (options.entries !== null) checkEntries(options.entries, checkpoints);
  const newest = options.checkpoint;
  if (newest === null) return;
  for (const older of options.older) await checkConsistency(older, newest, options);
  // The receipt's checkpoint against the saved one: checked when entries, a matching proof or --url allow it.
  if (receiptCheckpoint !== null) {
    if (canProve(receiptCheckpoint, newest, options))
      await checkConsistency(receiptCheckpoint, newest, options);
    else
      process.stdout.write(
        `note the receipt's checkpoint was not checked against the checkpoint (no proof source)\n`,
      );
  }
}

/** The options, or 'help' when --help asks for the usage text instead. */
function parseOptions(argv: string[]): Options | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      key: { type: 'string' },
      checkpoint: { type: 'string' },
      'old-checkpoint': { type: 'string', multiple: true },
      receipt: { type: 'string' },
      entries: { type: 'string', multiple: true },
      proof: { type: 'string' },
      url: { type: 'string' },
      token: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return 'help';
  if (values.key === undefined)
    throw new UsageError('--key is required (the log verifier key, or a file holding it)');
  let keyText = values.key;
  try {
    keyText = readFileSync(values.key, 'utf8');
  } catch {
    // not a file: the key itself
  }
  const key = parseVerifierKey(keyText);
  const readNote = (path: string) => {
    try {
      return readFileSync(path, 'utf8');
    } catch (error) {
      throw new UsageError(`cannot read ${path}: ${(error as Error).message}`);
    }
  };
  if (values.checkpoint === undefined && values.receipt === undefined) {
    throw new UsageError('give --checkpoint and/or --receipt');
  }
  const old = values['old-checkpoint'] ?? [];
  if (old.length > 0 && values.checkpoint === undefined)
    throw new UsageError('--old-checkpoint needs --checkpoint');
  return {
    key,
    checkpoint:
      values.checkpoint === undefined
        ? null
        : openCheckpoint(readNote(values.checkpoint), key, 'the checkpoint'),
    older: old.map((path, i) =>
      openCheckpoint(
        readNote(path),
        key,
        old.length === 1 ? 'the old checkpoint' : `old checkpoint ${i + 1}`,
      ),
    ),
    receiptPath: values.receipt ?? null,
    entries: values.entries === undefined ? null : loadEntries(values.entries),
    proofPath: values.proof ?? null,
    url: values.url ?? null,
    token: values.token ?? process.env['AUDIT_VERIFY_TOKEN'] ?? null,
  };
}

async function main(argv: string[]): Promise<void> {
  const options = parseOptions(argv);
  if (options === 'help') {
    process.stdout.write(USAGE);
    return;
  }
  await run(options);
  process.stdout.write('audit log verified\n');
}

try {
  await main(process.argv.slice(2));
} catch (error) {
  if (error instanceof VerificationFailure) {
    process.stderr.write(`audit-verify: FAILED: ${error.message}\n`);
    process.exitCode = 1;
  } else if (error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    process.stderr.write(`audit-verify: ${(error as Error).message} (--help for usage)\n`);
    process.exitCode = 2;
  } else {
    process.stderr.write(`audit-verify: FAILED: ${(error as Error).message}\n`);
    process.exitCode = 1;
  }
}
