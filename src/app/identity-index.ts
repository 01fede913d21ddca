import { CANONICALISATION_VERSION, compactSkeleton } from '../domain/canonical-text.ts';
import type { PiiCipher } from '../security/pii-cipher.ts';
import { isUniqueViolation } from '../storage/errors.ts';
import type { Tx } from '../storage/store.ts';
import { type Services, SYSTEM_ACTOR } from './services.ts';

/**
 * Duplicate detection on the canonical document reference (docs/decisions/0011-canonical-identity.md).
 *
 * The blind index of a document reference is the keyed hash of its compact skeleton, so "AB-12 34", "ab1234",
 * fullwidth digits, a zero-width space or a Cyrillic look-alike are one document; the encrypted reference is
 * kept exactly as sent. Rows written before that (document_index_version 0: the hash of the reference as
 * sent) are re-keyed at start-up, in bounded chunks, because SQL cannot decrypt.
 */

/** Which DOCUMENT_INDEX_VERSION keys on which canonicalisation: 0 is the reference as sent (no skeleton). */
const INDEX_VERSION_OF_CANONICALISATION = new Map<string, number>([['canon-1', 1]]);

/**
 * What `customers.document_index` hashes now. It moves with CANONICALISATION_VERSION: a new canonicalisation
 * changes which references are equal, so every row must be re-keyed. Bumping that version without adding it
 * above stops every start (and every test) here, instead of silently mixing two kinds of index.
 */
export const DOCUMENT_INDEX_VERSION = indexVersionOf(CANONICALISATION_VERSION);

function indexVersionOf(canonicalisation: string): number {
  const version = INDEX_VERSION_OF_CANONICALISATION.get(canonicalisation);
  if (version === undefined) {
    throw new Error(
      `no document index version for canonicalisation ${canonicalisation}: add one (src/app/identity-index.ts)`,
    );
  }
  return version;
}

const DOCUMENT_CONTEXT = 'customer.documentReference';

/** The blind index of a document reference at DOCUMENT_INDEX_VERSION. */
export function documentIndexOf(cipher: PiiCipher, documentReference: string): string {
  return cipher.blindIndex(compactSkeleton(documentReference), DOCUMENT_CONTEXT);
}

/** Why a document reference cannot identify anyone (nothing left once canonicalised), or null. */
export function documentReferenceProblem(documentReference: string): string | null {
  return compactSkeleton(documentReference) === '' ? 'must contain letters or digits' : null;
}

/**
 * The index value of a customer whose canonical document another customer already holds. Unique (it names
 * the customer itself), and never a blind index (those are 64 hex digits), so it matches no lookup.
 */
export function duplicateDocumentMarker(customerId: string): string {
  return `duplicate:${customerId}`;
}

export const REINDEX_CHUNK_ROWS = 500;
const REINDEX_LOCK_NAME = 'customer-document-reindex';
const UNIQUE_RACE_RETRIES_MAX = 5;
const DUPLICATES_PER_CHUNK_MAX = 8;

export interface ReindexResult {
  /** Rows now keyed on their canonical document reference. */
  rekeyed: number;
  /** Rows whose canonical document another customer already held: [this customer, the holder]. */
  duplicates: { customerId: string; duplicateOfCustomerId: string }[];
}

/**
 * Re-keys every customer whose document index is older than DOCUMENT_INDEX_VERSION: in chunks of
 * REINDEX_CHUNK_ROWS, each one transaction through the committer, under a named lock (on PostgreSQL an
 * advisory lock: one re-indexer at a time across processes, as migrations are). Idempotent: a row is
 * re-keyed once, and a start with nothing to do costs one index probe.
 *
 * Rows are taken oldest first. When a row's canonical index is already held by another customer (two
 * references that used to differ, "AB-1234" and "ab1234"), the holder keeps it and this row gets a duplicate
 * marker instead, with a `customer.document_duplicate` audit entry naming both customers (ids only) for
 * compliance to review. Nothing else about either customer changes.
 */
export async function reindexCustomerDocuments(
  services: Services,
  chunkRows = REINDEX_CHUNK_ROWS,
): Promise<ReindexResult> {
  const result: ReindexResult = { rekeyed: 0, duplicates: [] };
  let retries = 0;
  for (;;) {
    let chunk: { done: boolean } & ReindexResult;
    try {
      chunk = await services.committer.submit((tx) => reindexChunk(tx, services.cipher, chunkRows), {
        names: [REINDEX_LOCK_NAME],
      });
    } catch (error) {
      // A customer created by another process took a canonical index between our look-up and our update:
      // the chunk was undone; run it again, and the holder is found this time.
      if (isUniqueViolation(error) && retries < UNIQUE_RACE_RETRIES_MAX) {
        retries++;
        continue;
      }
      throw error;
    }
    result.rekeyed += chunk.rekeyed;
    result.duplicates.push(...chunk.duplicates);
    if (chunk.done) return result;
  }
}

async function reindexChunk(
  tx: Tx,
  cipher: PiiCipher,
  chunkRows: number,
): Promise<{ done: boolean } & ReindexResult> {
  const stale = await tx.customersWithDocumentIndexBefore(DOCUMENT_INDEX_VERSION, chunkRows);
  const rekeyed = stale.map((row) => ({
    id: row.id,
    documentIndex: documentIndexOf(cipher, cipher.decrypt(row.documentEnc, DOCUMENT_CONTEXT)),
  }));
  // Who holds each new index now (a row keyed before, or a stale row whose reference was already canonical);
  // then the rows of this chunk in order, so the first of two that collide holds it.
  const holders = await tx.customerIdsWithDocuments(rekeyed.map((r) => r.documentIndex));
  const out: { done: boolean } & ReindexResult = {
    done: stale.length < chunkRows,
    rekeyed: 0,
    duplicates: [],
  };
  const updates: { id: string; documentIndex: string }[] = [];
  for (const row of rekeyed) {
    const holder = holders.get(row.documentIndex);
    if (holder === undefined || holder === row.id) {
      holders.set(row.documentIndex, row.id);
      updates.push(row);
      out.rekeyed++;
      continue;
    }
    // A command appends few audit entries (the batch appends them together): the rest wait for the next chunk.
    if (out.duplicates.length === DUPLICATES_PER_CHUNK_MAX) {
      out.done = false;
      break;
    }
    updates.push({ id: row.id, documentIndex: duplicateDocumentMarker(row.id) });
    out.duplicates.push({ customerId: row.id, duplicateOfCustomerId: holder });
    await tx.appendAudit({
      eventType: 'customer.document_duplicate',
      actorId: SYSTEM_ACTOR.apiKeyId,
      requestId: SYSTEM_ACTOR.requestId,
      resourceType: 'customer',
      resourceId: row.id,
      metadata: {
        customerId: row.id,
        duplicateOfCustomerId: holder,
        documentIndexVersion: DOCUMENT_INDEX_VERSION,
        canonicalisation: CANONICALISATION_VERSION,
      },
    });
  }
  await tx.setCustomerDocumentIndexes(updates, DOCUMENT_INDEX_VERSION);
  return out;
}
