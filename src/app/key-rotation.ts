import { RESPONSE_BODY_CONTEXT } from '../domain/idempotency.ts';
import type { Actor } from '../domain/types.ts';
import type { AuditSigner } from '../security/audit-signer.ts';
import type { KeyMaterial } from '../security/dev-keys.ts';
import {
  AUDIT_KEY_VARIABLE,
  auditKeyFingerprint,
  BLIND_INDEX_KEY_CONTEXT,
  checkAuditKey,
  checkDataKeys,
  DATA_KEY_VARIABLE,
  dataKeyFingerprint,
  KEY_RECORD_SETTING,
  KeyMismatchError,
  type KeyRecord,
  type KeySource,
  legacyAuditMismatch,
  legacyDataMismatch,
  legacyIndexMismatch,
  noteSignedBy,
  parseKeyRecord,
  serializeKeyRecord,
  shortFingerprint,
} from '../security/key-fingerprints.ts';
import { deriveIndexKey, ENVELOPE_KEY_PREFIX_CHARS, PiiCipher } from '../security/pii-cipher.ts';
import type { Committer } from '../storage/committer.ts';
import { ENCRYPTED_COLUMNS, type EncryptedColumn, type KeySamples } from '../storage/key-rotation-sql.ts';
import type { Store, Tx } from '../storage/store.ts';
import { DOCUMENT_INDEX_VERSION, documentIndexOf } from './identity-index.ts';
import type { Services } from './services.ts';

/**
 * Keys match the data, and the data key rotates without losing duplicate detection
 * (docs/decisions/0012-key-management.md).
 *
 * Start-up (`checkKeysMatchData`, before anything writes): the first process records the keys in one settings
 * row, under a named lock, so processes starting together agree; every later process compares its keys with
 * the record and refuses to start on a mismatch. A new primary data key whose predecessors are configured as
 * previous keys is the start of a rotation: it is added to the record. `reencryptData` (the keys CLI) then
 * re-encrypts every encrypted column under the primary in bounded slices, each one transaction, and finally
 * records the primary alone, so the previous keys can be removed.
 *
 * The blind index has its own key, kept in the record wrapped (encrypted) under a data key. A rotation
 * re-wraps it and never changes an index, so duplicate detection works before, during and after it, with any
 * mix of old and new processes running.
 */
const KEY_RECORD_LOCK = 'key-record';
const REENCRYPT_LOCK = 'key-rotation-reencrypt';
/** Stored values looked at per column when a database that never recorded its keys is first checked. */
const SAMPLES_PER_COLUMN = 5;
/** Rows (sequence numbers, or idempotency records) per re-encryption transaction. */
export const REENCRYPT_SLICE_ROWS = 500;
const INDEX_KEY_BYTES = 32;

/** The authenticated-data context of each encrypted column (what its writer passed to `encrypt`). */
export const ENCRYPTION_CONTEXTS: Record<EncryptedColumn, string> = {
  'customers.name_enc': 'customer.name',
  'customers.document_enc': 'customer.documentReference',
  'accounts.number_enc': 'account.number',
  'kyc_decisions.note_enc': 'customer.kycNote',
  'payments.resolution_note_enc': 'payment.resolutionNote',
  'refunds.reason_enc': 'refund.reason',
  'webhook_endpoints.secret_enc': 'webhook.secret',
  'idempotency_records.response_body': RESPONSE_BODY_CONTEXT,
  'compliance_cases.decision_note_enc': 'case.decisionNote',
};
const DOCUMENT_CONTEXT = ENCRYPTION_CONTEXTS['customers.document_enc'];
const ACCOUNT_NUMBER_CONTEXT = ENCRYPTION_CONTEXTS['accounts.number_enc'];

export interface KeyCheckOptions {
  /** 'check' on every start; 'skip' only for `accept-audit-key`, which records the configured key instead. */
  auditKey: 'check' | 'skip';
}

export interface CheckedKeys {
  /** The blind-index key, unwrapped. */
  indexKey: Buffer;
  /** What happened to the record: first written, a new primary data key added, or nothing. */
  recorded: 'first' | 'new-primary' | 'unchanged';
}

function sources(keys: KeyMaterial): { data: KeySource; audit: KeySource } {
  const devKeysAt = (variable: string) => (keys.generated.includes(variable) ? keys.devKeysAt : null);
  return {
    data: { variable: DATA_KEY_VARIABLE, devKeysAt: devKeysAt(DATA_KEY_VARIABLE) },
    audit: { variable: AUDIT_KEY_VARIABLE, devKeysAt: devKeysAt(AUDIT_KEY_VARIABLE) },
  };
}

export type RunningKeysCheck =
  | { kind: 'current' }
  | { kind: 'switched'; primary: string }
  | { kind: 'stale'; variable: string; message: string };

/**
 * A running process and a rotation begun after it started. The start-up check cannot see what happens later: a
 * process started before a rotation would go on encrypting under the old key, during and after `reencrypt`,
 * and its values would be stranded once the old key is removed. So every process re-reads the record now and
 * then (startKeyWatch): when the newest recorded data key is one it holds (step 1 of the rotation put the new
 * key in DATA_ENCRYPTION_KEYS_PREVIOUS everywhere), it switches to it; when it does not hold it, or the audit
 * key was changed (accept-audit-key), it is stale and must stop.
 */
export async function checkRunningKeys(services: Services): Promise<RunningKeysCheck> {
  const stored = await services.store.reads.getSetting(KEY_RECORD_SETTING);
  if (stored === undefined) return { kind: 'current' };
  const record = parseKeyRecord(stored);
  const audit = auditKeyFingerprint(services.auditLog.signer.publicKey);
  if (record.auditPublicKey !== audit) {
    const message = `${AUDIT_KEY_VARIABLE} is no longer this database's audit key (accept-audit-key recorded ${shortFingerprint(record.auditPublicKey)}): restart with the new key`;
    return { kind: 'stale', variable: AUDIT_KEY_VARIABLE, message };
  }
  const newest = record.dataKeys[0]!;
  if (newest === services.cipher.primaryKeyFingerprint) return { kind: 'current' };
  if (services.cipher.usePrimary(newest)) return { kind: 'switched', primary: newest };
  const message = `${DATA_KEY_VARIABLE}: another process began a rotation to the data key ${shortFingerprint(newest)}, which this process does not hold; restart it with that key`;
  return { kind: 'stale', variable: DATA_KEY_VARIABLE, message };
}

const REENCRYPT_PASSES = 2;

/** How often each process re-reads the key record: one indexed read. */
export const KEY_WATCH_INTERVAL_MS = 10_000;

export function startKeyWatch(
  services: Services,
  intervalMs: number,
  on: { switched(primary: string): void; stale(message: string): void; error(error: unknown): void },
): () => void {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    checkRunningKeys(services)
      .then((check) => {
        if (check.kind === 'switched') on.switched(check.primary);
        if (check.kind === 'stale') on.stale(check.message);
      })
      .catch(on.error)
      .finally(() => {
        running = false;
      });
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

/** Whether the database has recorded its keys (then no development key may be created for it). */
export async function keysRecorded(store: Store): Promise<boolean> {
  return (await store.reads.getSetting(KEY_RECORD_SETTING)) !== undefined;
}

/**
 * Compares the configured keys with the ones the data was written with, recording them the first time, and
 * returns the blind-index key. Throws KeyMismatchError (one line naming the variable) when they differ.
 * A start with matching keys is one read; a write happens only the first time and when a rotation begins.
 */
export async function checkKeysMatchData(
  store: Store,
  committer: Committer,
  keys: KeyMaterial,
  signer: AuditSigner,
  options: KeyCheckOptions,
): Promise<CheckedKeys> {
  const configured = keys.dataKeys.map(dataKeyFingerprint);
  const auditFingerprint = auditKeyFingerprint(signer.publicKey);
  const source = sources(keys);
  const stored = await store.reads.getSetting(KEY_RECORD_SETTING);
  if (stored !== undefined) {
    const record = parseKeyRecord(stored);
    const dataKeys = checkDataKeys(record.dataKeys, configured, source.data);
    if (options.auditKey === 'check') checkAuditKey(record.auditPublicKey, auditFingerprint, source.audit);
    if (dataKeys === record.dataKeys)
      return { indexKey: unwrapIndexKey(record, keys), recorded: 'unchanged' };
  }
  // The first start, or a rotation's first start: decide and write under the lock, re-reading the record in
  // the transaction (another process may have written it since). Samples are read only for a first record.
  const samples = stored === undefined ? await store.reads.keySamples(SAMPLES_PER_COLUMN) : undefined;
  const latestCheckpoint = stored === undefined ? await store.reads.latestAuditCheckpoint() : undefined;
  return committer.submit(
    async (tx) => {
      const current = await tx.getSetting(KEY_RECORD_SETTING);
      if (current === undefined) {
        const record = firstRecord(keys, samples, latestCheckpoint?.note, signer, source, options);
        await tx.putSetting(KEY_RECORD_SETTING, serializeKeyRecord(record));
        return { indexKey: unwrapIndexKey(record, keys), recorded: 'first' as const };
      }
      const record = parseKeyRecord(current);
      const dataKeys = checkDataKeys(record.dataKeys, configured, source.data);
      if (options.auditKey === 'check') checkAuditKey(record.auditPublicKey, auditFingerprint, source.audit);
      if (dataKeys === record.dataKeys)
        return { indexKey: unwrapIndexKey(record, keys), recorded: 'unchanged' };
      await tx.putSetting(KEY_RECORD_SETTING, serializeKeyRecord({ ...record, dataKeys }));
      return { indexKey: unwrapIndexKey(record, keys), recorded: 'new-primary' as const };
    },
    { names: [KEY_RECORD_LOCK] },
  );
}

/**
 * The record of a database that has none: a new one, or one written before records existed. Its stored values
 * must decrypt with the configured keys; its blind indexes tell which configured key the index key derives
 * from (HKDF, as builds before 0012 did); its latest checkpoint must verify with the configured audit key.
 * Every configured data key is recorded (any of them may have written values); a rotation shrinks the list.
 */
function firstRecord(
  keys: KeyMaterial,
  samples: KeySamples | undefined,
  latestCheckpointNote: string | undefined,
  signer: AuditSigner,
  source: { data: KeySource; audit: KeySource },
  options: KeyCheckOptions,
): KeyRecord {
  const cipher = new PiiCipher(keys.dataKeys);
  for (const sample of samples?.envelopes ?? []) {
    try {
      cipher.decrypt(sample.value, ENCRYPTION_CONTEXTS[sample.column]);
    } catch {
      throw legacyDataMismatch(source.data);
    }
  }
  const indexKey = legacyIndexKey(keys.dataKeys, samples, source.data);
  if (
    options.auditKey === 'check' &&
    latestCheckpointNote !== undefined &&
    !noteSignedBy(latestCheckpointNote, signer.publicKey)
  ) {
    throw legacyAuditMismatch(source.audit, auditKeyFingerprint(signer.publicKey));
  }
  return {
    version: 1,
    dataKeys: [...new Set(keys.dataKeys.map(dataKeyFingerprint))],
    blindIndexKey: wrapIndexKey(cipher, indexKey),
    auditPublicKey: auditKeyFingerprint(signer.publicKey),
  };
}

/** The index key the stored blind indexes were computed with: HKDF of the configured key that reproduces them. */
function legacyIndexKey(dataKeys: Buffer[], samples: KeySamples | undefined, source: KeySource): Buffer {
  const comparable = (samples?.indexes ?? []).filter(
    (s) => s.kind === 'account.number' || s.indexVersion === 0 || s.indexVersion === DOCUMENT_INDEX_VERSION,
  );
  if (comparable.length === 0) return deriveIndexKey(dataKeys[0]!);
  let best: { key: Buffer; matches: number } | undefined;
  for (const dataKey of dataKeys) {
    const candidate = deriveIndexKey(dataKey);
    const cipher = new PiiCipher(dataKeys, { indexKey: candidate });
    let matches = 0;
    for (const sample of comparable) {
      if (indexOf(cipher, sample) === sample.blindIndex) matches++;
    }
    if (matches > 0 && (best === undefined || matches > best.matches)) best = { key: candidate, matches };
  }
  if (best === undefined) throw legacyIndexMismatch(source);
  return best.key;
}

function indexOf(cipher: PiiCipher, sample: KeySamples['indexes'][number]): string | undefined {
  let plain: string;
  try {
    plain = cipher.decrypt(
      sample.valueEnc,
      sample.kind === 'account.number' ? ACCOUNT_NUMBER_CONTEXT : DOCUMENT_CONTEXT,
    );
  } catch {
    return undefined;
  }
  if (sample.kind === 'account.number') return cipher.blindIndex(plain, ACCOUNT_NUMBER_CONTEXT);
  // Version 0 hashed the reference as sent; the current version its canonical skeleton (decision 0011).
  return sample.indexVersion === 0
    ? cipher.blindIndex(plain, DOCUMENT_CONTEXT)
    : documentIndexOf(cipher, plain);
}

function wrapIndexKey(cipher: PiiCipher, indexKey: Buffer): string {
  return cipher.encrypt(indexKey.toString('base64'), BLIND_INDEX_KEY_CONTEXT);
}

function unwrapIndexKey(record: KeyRecord, keys: KeyMaterial): Buffer {
  // Every recorded data key is configured (checked first), and the index key is wrapped under one of them.
  const indexKey = Buffer.from(
    new PiiCipher(keys.dataKeys).decrypt(record.blindIndexKey, BLIND_INDEX_KEY_CONTEXT),
    'base64',
  );
  if (indexKey.length !== INDEX_KEY_BYTES) throw new Error('the recorded blind-index key is not 32 bytes');
  return indexKey;
}

export interface ReencryptResult {
  /** Values re-encrypted under the primary key, per column. */
  reencrypted: Record<EncryptedColumn, number>;
  /** Fingerprints of the data keys the data no longer needs (now safe to remove from the configuration). */
  retired: string[];
  /** The primary key's fingerprint, now the only one recorded. */
  primary: string;
}

/**
 * Re-encrypts every encrypted value that is not under the primary key, column by column, in slices of
 * `sliceRows` rows: each slice is one transaction through the committer (under a named lock: one re-encrypter
 * at a time across processes), reads its values, re-encrypts them and writes each back only if the row still
 * holds what was read. A crash between slices leaves every value readable (old keys still decrypt); running it
 * again resumes, skipping what is done. Last, in one transaction, the blind-index key is re-wrapped under the
 * primary and the primary is recorded alone, with an audit entry naming the fingerprints retired.
 *
 * Precondition (docs/deployment.md#rotating-keys): every running process already has the new primary key, so
 * nothing writes under an old key while this runs.
 */
export async function reencryptData(
  services: Services,
  actor: Actor,
  options: { sliceRows?: number; onSlice?: (column: EncryptedColumn, reencrypted: number) => void } = {},
): Promise<ReencryptResult> {
  const { cipher, committer } = services;
  const sliceRows = options.sliceRows ?? REENCRYPT_SLICE_ROWS;
  const prefix = `v1.${cipher.primaryKeyId}.`;
  if (prefix.length !== ENVELOPE_KEY_PREFIX_CHARS) throw new Error('unexpected envelope key prefix');
  const reencrypted = Object.fromEntries(Object.keys(ENCRYPTED_COLUMNS).map((c) => [c, 0])) as Record<
    EncryptedColumn,
    number
  >;
  await requireNewestPrimary(services, cipher.primaryKeyFingerprint);
  // Twice: a value written under an old key while the first pass ran (a process that had not yet switched:
  // startKeyWatch switches or stops it within KEY_WATCH_INTERVAL_MS) is caught by the second.
  for (let pass = 1; pass <= REENCRYPT_PASSES; pass++) {
    for (const column of Object.keys(ENCRYPTED_COLUMNS) as EncryptedColumn[]) {
      const context = ENCRYPTION_CONTEXTS[column];
      let after: string | null = null;
      do {
        const from: string | null = after;
        const slice = await committer.submit(
          async (tx) => {
            const chunk = await tx.staleEncryptedValues(column, prefix, from, sliceRows);
            const rows = chunk.values.map((v) => ({
              rowKey: v.rowKey,
              before: v.value,
              after: cipher.reencrypt(v.value, context),
            }));
            const changed = rows.length === 0 ? 0 : await tx.replaceEncryptedValues(column, rows);
            return { next: chunk.next, changed };
          },
          { names: [REENCRYPT_LOCK] },
        );
        reencrypted[column] += slice.changed;
        options.onSlice?.(column, slice.changed);
        after = slice.next;
      } while (after !== null);
    }
  }
  const primary = cipher.primaryKeyFingerprint;
  const retired = await committer.submit(
    (tx) => recordPrimaryAlone(tx, services, actor, primary, reencrypted),
    { names: [KEY_RECORD_LOCK] },
  );
  return { reencrypted, retired, primary };
}

/**
 * Re-encryption runs only forwards: under the newest key the record knows (the one the last rotation
 * started with). Run with an older primary (say, the configuration from before the rotation), it would
 * re-encrypt new values back under the old key and then retire the key the running servers encrypt with.
 */
async function requireNewestPrimary(services: Services, primary: string): Promise<void> {
  const stored = await services.store.reads.getSetting(KEY_RECORD_SETTING);
  if (stored === undefined) throw new Error('this database has no key record: start the server once first');
  assertNewestPrimary(parseKeyRecord(stored).dataKeys, primary);
}

function assertNewestPrimary(recorded: string[], primary: string): void {
  if (recorded[0] === primary) return;
  throw new KeyMismatchError(
    DATA_KEY_VARIABLE,
    `${DATA_KEY_VARIABLE} is not the newest key recorded for this database (fingerprint ${shortFingerprint(primary)}; newest ${shortFingerprint(recorded[0]!)}): reencrypt runs with the new key as DATA_ENCRYPTION_KEY and the old ones in DATA_ENCRYPTION_KEYS_PREVIOUS`,
  );
}

async function recordPrimaryAlone(
  tx: Tx,
  services: Services,
  actor: Actor,
  primary: string,
  reencrypted: Record<EncryptedColumn, number>,
): Promise<string[]> {
  const stored = await tx.getSetting(KEY_RECORD_SETTING);
  if (stored === undefined) throw new Error('this database has no key record: start the server once first');
  const record = parseKeyRecord(stored);
  assertNewestPrimary(record.dataKeys, primary);
  const retired = record.dataKeys.filter((fp) => fp !== primary);
  const blindIndexKey = services.cipher.isUnderPrimaryKey(record.blindIndexKey)
    ? record.blindIndexKey
    : services.cipher.reencrypt(record.blindIndexKey, BLIND_INDEX_KEY_CONTEXT);
  if (retired.length === 0 && blindIndexKey === record.blindIndexKey) return [];
  await tx.putSetting(
    KEY_RECORD_SETTING,
    serializeKeyRecord({ ...record, dataKeys: [primary], blindIndexKey }),
  );
  await tx.appendAudit({
    eventType: 'keys.data_key_rotated',
    actorId: actor.apiKeyId,
    requestId: actor.requestId,
    resourceType: 'data_encryption_key',
    resourceId: primary,
    metadata: {
      keyFingerprint: primary,
      retiredKeyFingerprints: retired,
      valuesReencrypted: Object.values(reencrypted).reduce((a, b) => a + b, 0),
    },
  });
  return retired;
}

export type AcceptAuditKeyResult =
  | { changed: false; fingerprint: string }
  | { changed: true; fingerprint: string; previousFingerprint: string };

/**
 * The deliberate way to change the audit-signing key: run with the new AUDIT_SIGNING_KEY, it records the new
 * key's fingerprint and appends an audit entry saying the signing key changed (with the new verifier key), so
 * verifiers know to pin the new key from that entry on. Processes still configured with the old key refuse
 * to start afterwards.
 */
export async function acceptAuditKey(
  services: Services,
  actor: Actor,
  signer: AuditSigner,
): Promise<AcceptAuditKeyResult> {
  const fingerprint = auditKeyFingerprint(signer.publicKey);
  return services.committer.submit(
    async (tx) => {
      const stored = await tx.getSetting(KEY_RECORD_SETTING);
      if (stored === undefined)
        throw new Error('this database has no key record: start the server once first');
      const record = parseKeyRecord(stored);
      if (record.auditPublicKey === fingerprint) return { changed: false as const, fingerprint };
      await tx.putSetting(KEY_RECORD_SETTING, serializeKeyRecord({ ...record, auditPublicKey: fingerprint }));
      await tx.appendAudit({
        eventType: 'audit.signing_key_changed',
        actorId: actor.apiKeyId,
        requestId: actor.requestId,
        resourceType: 'audit_log',
        resourceId: signer.name,
        metadata: {
          previousPublicKeyFingerprint: record.auditPublicKey,
          publicKeyFingerprint: fingerprint,
          verifierKey: signer.verifierKey(),
        },
      });
      return { changed: true as const, fingerprint, previousFingerprint: record.auditPublicKey };
    },
    { names: [KEY_RECORD_LOCK] },
  );
}
