/**
 * Payment receipt verification in the browser: no build step, no imports, only Web Crypto, TextEncoder and
 * atob, so the page can check a receipt without trusting the server's code. A receipt
 * (src/app/receipts.ts) is `{index, entry, inclusionProof, checkpoint}`; it verifies when
 *
 *   1. the pinned verifier key is well formed and its key hash matches its name and key (C2SP signed-note),
 *   2. the checkpoint carries a valid Ed25519 signature by that key and names its log (C2SP tlog-checkpoint),
 *   3. the entry's hash is the SHA-256 of its canonical JSON (RFC 8785) and it is the receipt's leaf,
 *   4. the inclusion proof leads from that leaf to the checkpoint's root (RFC 9162 section 2.1.3.2).
 *
 * The server side of each format: src/domain/signed-note.ts, src/domain/audit.ts, src/domain/merkle.ts.
 */

const ED25519 = 0x01;
const HASH_BYTES = 32;
const KEY_NAME = /^[\x21-\x2A\x2C-\x7E]{1,255}$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const DECIMAL = /^(0|[1-9][0-9]*)$/;
const SIGNATURE_LINE = /^\u2014 (\S+) ([A-Za-z0-9+/=]+)$/;
/** The fields an audit entry's hash covers, in the order src/domain/audit.ts lists them. */
const ENTRY_FIELDS = [
  'id',
  'index',
  'timestamp',
  'eventType',
  'actorId',
  'requestId',
  'resourceType',
  'resourceId',
  'metadata',
  'prevHash',
];

const utf8 = (text) => new TextEncoder().encode(text);
const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
const sameBytes = (a, b) => a.length === b.length && a.every((byte, i) => byte === b[i]);

/** Strict base64 (padded, no whitespace): atob alone would accept text the server never produces. */
function fromBase64(text, what) {
  if (typeof text !== 'string' || !BASE64.test(text)) throw new Error(`${what} is not base64`);
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

async function sha256(...parts) {
  const bytes = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let at = 0;
  for (const part of parts) {
    bytes.set(part, at);
    at += part.length;
  }
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
}

/**
 * Parses a C2SP verifier key, `<name>+<8 hex key hash>+<base64(0x01 || 32-byte Ed25519 key)>`, so a page can
 * show what it pinned before verifying anything. Only the syntax: verifyReceipt checks the key hash (async).
 */
export function parseVerifierKey(line) {
  if (typeof line !== 'string') throw new Error('the verifier key is not text');
  const text = line.replace(/\r?\n$/, '');
  // The base64 key may itself contain '+': the name and the key hash are the first two fields.
  const [name = '', keyHashHex = '', ...rest] = text.split('+');
  if (!KEY_NAME.test(name)) throw new Error('the verifier key has no valid name before its first "+"');
  if (!/^[0-9a-f]{8}$/.test(keyHashHex)) throw new Error('the verifier key hash is not 8 lowercase hex');
  const typedKey = fromBase64(rest.join('+'), 'the verifier key');
  if (typedKey.length !== 1 + HASH_BYTES || typedKey[0] !== ED25519) {
    throw new Error('the verifier key is not an Ed25519 key (0x01 followed by 32 bytes)');
  }
  return { name, keyHashHex, publicKey: typedKey.slice(1) };
}

/** The SHA-256 (hex) of a raw public key: what the server prints as the audit key's fingerprint. */
export async function keyFingerprint(publicKey) {
  return toHex(await sha256(publicKey));
}

/**
 * RFC 8785 canonical JSON for what audit entries hold, exactly as src/domain/canonical-json.ts writes it: keys
 * sorted by UTF-16 code units, undefined members skipped, numbers restricted to safe integers.
 */
export function canonicalJson(value) {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isSafeInteger(value)) throw new Error(`not a safe integer: ${value}`);
      return String(value);
    case 'object': {
      if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
      const members = Object.keys(value)
        .sort()
        .filter((key) => value[key] !== undefined)
        .map((key) => `${JSON.stringify(key)}:${canonicalJson(value[key])}`);
      return `{${members.join(',')}}`;
    }
    default:
      throw new Error(`canonical JSON cannot hold a ${typeof value}`);
  }
}

/** The key hash of C2SP signed-note: the first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key). */
async function noteKeyHash(name, publicKey) {
  return toHex((await sha256(utf8(name), Uint8Array.of(0x0a, ED25519), publicKey)).slice(0, 4));
}

/**
 * Opens a signed checkpoint: every signature line by the pinned key (its name AND key hash) must verify, and
 * there must be one; lines by other keys (witnesses) are ignored. Returns the checkpoint it signs.
 */
async function openCheckpoint(note, key) {
  if (typeof note !== 'string') throw new Error('the receipt has no checkpoint text');
  const split = note.lastIndexOf('\n\n');
  if (split < 0 || !note.endsWith('\n')) throw new Error('the checkpoint is not a signed note');
  const body = note.slice(0, split + 1);
  const keyId = `${key.name}+${key.keyHashHex}`;
  const ed25519 = { name: 'Ed25519' };
  const publicKey = await crypto.subtle.importKey('raw', key.publicKey, ed25519, false, ['verify']);
  let signed = false;
  for (const line of note.slice(split + 2, -1).split('\n')) {
    const match = SIGNATURE_LINE.exec(line);
    if (match === null) throw new Error(`malformed signature line ${JSON.stringify(line)}`);
    if (match[1] !== key.name) continue;
    const blob = fromBase64(match[2], 'a signature');
    if (blob.length < 4 || toHex(blob.slice(0, 4)) !== key.keyHashHex) continue;
    const valid =
      blob.length === 4 + 64 && (await crypto.subtle.verify(ed25519, publicKey, blob.slice(4), utf8(body)));
    if (!valid) throw new Error(`the signature by ${keyId} does not verify over the checkpoint`);
    signed = true;
  }
  if (!signed) throw new Error(`the checkpoint has no signature by ${keyId}`);

  const [origin, sizeText = '', rootText] = body.slice(0, -1).split('\n');
  if (origin !== key.name) {
    throw new Error(`the checkpoint origin ${JSON.stringify(origin)} is not ${key.name}`);
  }
  const treeSize = Number(sizeText);
  if (!DECIMAL.test(sizeText) || !Number.isSafeInteger(treeSize)) {
    throw new Error(`the checkpoint tree size ${JSON.stringify(sizeText)} is not a safe decimal integer`);
  }
  const root = fromBase64(rootText, 'the checkpoint root hash');
  if (root.length !== HASH_BYTES) throw new Error('the checkpoint root hash is not 32 bytes');
  return { keyId, treeSize, root, rootText };
}

/** The bytes an audit entry's hash and Merkle leaf cover: its canonical JSON without `hash`. */
function entryBytes(entry) {
  if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) throw new Error('no entry object');
  // A field the hash does not cover could be shown to the user unverified: refuse it.
  const extra = Object.keys(entry).find((k) => k !== 'hash' && !ENTRY_FIELDS.includes(k));
  if (extra !== undefined) throw new Error(`the entry has a field its hash does not cover: ${extra}`);
  return utf8(canonicalJson(Object.fromEntries(ENTRY_FIELDS.map((field) => [field, entry[field]]))));
}

/**
 * RFC 9162 section 2.1.3.2: the root that leaf `index` of a `treeSize`-leaf tree and its proof lead to, or
 * null when the proof has the wrong length. Division, not bit operators: those truncate to 32 bits.
 */
async function rootFromInclusionProof(index, treeSize, leaf, proof) {
  const half = (n) => Math.floor(n / 2);
  let fn = index;
  let sn = treeSize - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) return null;
    if (fn % 2 === 1 || fn === sn) {
      r = await sha256(Uint8Array.of(0x01), p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      r = await sha256(Uint8Array.of(0x01), r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 ? r : null;
}

/** The payment fields a payment's audit entry records (src/app/create-payment.ts), compared with the page's. */
const PAYMENT_FIELDS = ['amountCents', 'currency', 'sourceAccountId', 'destinationAccountId'];
/**
 * The entry that logs a payment's creation, by the decision's outcome. Later entries about the same payment (an
 * approval, a rejection, an expiry) record the same ids and amount but other facts: they are not its receipt.
 * tools/audit-verify/verify.ts checks the same.
 */
const CREATION_EVENTS = {
  posted: 'payment.posted',
  manual_review: 'payment.held_for_review',
  declined: 'payment.declined',
};

/**
 * Verifies a payment receipt against a pinned verifier key. Never throws: every problem becomes a failed
 * check with a message, and a check that needs a failed one is listed as skipped, so the page can show every
 * line. `verified` is true only when every check passed.
 *
 * With `payment` (the payment the page shows), a fifth check ties the proof to it: the entry must be that
 * payment's, with its amount, currency and accounts. Without it, a genuine receipt of ANOTHER payment would
 * verify, and a server that lies could show one.
 */
export async function verifyReceipt(receipt, verifierKeyLine, payment) {
  const r = receipt !== null && typeof receipt === 'object' ? receipt : {};
  const checks = [];
  const causes = new Map(); // check name -> the failed check that made it fail or skip
  const run = async (name, needs, check) => {
    const cause = needs.map((need) => causes.get(need)).find((c) => c !== undefined);
    if (cause !== undefined) {
      causes.set(name, cause);
      checks.push({ name, ok: false, detail: `not run: skipped because the "${cause}" check failed` });
      return;
    }
    try {
      checks.push({ name, ok: true, detail: await check() });
    } catch (error) {
      causes.set(name, name);
      checks.push({ name, ok: false, detail: error instanceof Error ? error.message : String(error) });
    }
  };

  let key;
  await run('verifier key', [], async () => {
    key = parseVerifierKey(verifierKeyLine);
    const expected = await noteKeyHash(key.name, key.publicKey);
    if (expected !== key.keyHashHex) {
      throw new Error(`key hash ${key.keyHashHex} does not match the name and key (expected ${expected})`);
    }
    const fingerprint = (await keyFingerprint(key.publicKey)).slice(0, 16);
    return `${key.name}, key hash ${key.keyHashHex} matches its name and key; fingerprint ${fingerprint}`;
  });

  let checkpoint;
  await run('checkpoint signature', ['verifier key'], async () => {
    checkpoint = await openCheckpoint(r.checkpoint, key);
    return `signed by ${checkpoint.keyId}: tree size ${checkpoint.treeSize}, root ${checkpoint.rootText}`;
  });

  let leafBytes;
  await run('entry hash', [], async () => {
    leafBytes = entryBytes(r.entry);
    const hash = toHex(await sha256(leafBytes));
    if (hash !== r.entry.hash) {
      throw new Error(`the entry says hash ${r.entry.hash}, its contents hash to ${hash}`);
    }
    if (r.entry.index !== r.index) {
      throw new Error(`the entry is #${r.entry.index}, the receipt says #${r.index}`);
    }
    return `the canonical entry hashes to ${hash}, as it says, and is the receipt's leaf #${r.index}`;
  });

  await run('inclusion proof', ['checkpoint signature', 'entry hash'], async () => {
    const { treeSize, root, rootText } = checkpoint;
    if (!Number.isSafeInteger(r.index) || r.index < 0 || r.index >= treeSize) {
      throw new Error(`leaf #${r.index} is not in the checkpoint's tree of ${treeSize}`);
    }
    if (!Array.isArray(r.inclusionProof)) throw new Error('the receipt has no inclusion proof list');
    const proof = r.inclusionProof.map((text, i) => {
      const hash = fromBase64(text, `proof hash ${i}`);
      if (hash.length !== HASH_BYTES) throw new Error(`proof hash ${i} is ${hash.length} bytes, not 32`);
      return hash;
    });
    const leaf = await sha256(Uint8Array.of(0x00), leafBytes);
    const computed = await rootFromInclusionProof(r.index, treeSize, leaf, proof);
    const where = `leaf #${r.index} of ${treeSize}`;
    if (computed === null) throw new Error(`${proof.length} proof hashes is the wrong number for ${where}`);
    if (!sameBytes(computed, root)) {
      throw new Error(`the proof for ${where} leads to a root that is not the checkpoint's ${rootText}`);
    }
    return `${proof.length} proof hashes lead from ${where} to the checkpoint's root ${rootText}`;
  });

  if (payment !== undefined) {
    await run('this payment', ['entry hash'], async () => {
      const { entry } = r;
      const metadata = entry.metadata ?? {};
      if (
        entry.resourceType !== 'payment' ||
        entry.resourceId !== payment.id ||
        metadata.paymentId !== payment.id
      ) {
        throw new Error(
          `the entry is about ${entry.resourceType} ${entry.resourceId}, not payment ${payment.id}`,
        );
      }
      const outcome = payment.decision?.outcome;
      const creation = Object.hasOwn(CREATION_EVENTS, metadata.status)
        ? CREATION_EVENTS[metadata.status]
        : undefined;
      if (entry.eventType !== creation || metadata.status !== outcome) {
        throw new Error(
          `the entry is ${entry.eventType}, not the ${outcome} decision that created payment ${payment.id}`,
        );
      }
      const differs = PAYMENT_FIELDS.find((field) => metadata[field] !== payment[field]);
      if (differs !== undefined) {
        throw new Error(
          `the entry records ${differs} ${metadata[differs]}, the payment shows ${payment[differs]}`,
        );
      }
      // The full decision the page explains (compliance, auditor and admin see it) is the one logged.
      if (
        Array.isArray(payment.decision?.rules) &&
        canonicalJson(metadata.decision) !== canonicalJson(payment.decision)
      ) {
        throw new Error('the decision the entry logs is not the decision the page shows');
      }
      return `the entry is payment ${payment.id}'s ${entry.eventType}: ${payment.amountCents} ${payment.currency} from ${payment.sourceAccountId} to ${payment.destinationAccountId}`;
    });
  }

  return { verified: checks.every((check) => check.ok), checks };
}
