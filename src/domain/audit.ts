import { createHash } from 'node:crypto';
import { assert } from './assert.ts';
import { canonicalJson } from './canonical-json.ts';

/**
 * The tamper-evident audit chain. Each entry's `hash` is SHA-256 (hex) over the canonical JSON (RFC 8785) of
 * the entry exactly as the API returns it, minus `hash`; `prevHash` links it to the entry before, the first
 * one to "GENESIS". Editing or deleting a middle entry breaks every later link. Metadata carries ids, amounts
 * and decisions only: never personal data or secrets.
 */
export const GENESIS_HASH = 'GENESIS';

export type AuditValue = string | number | boolean | null | AuditValue[] | { [key: string]: AuditValue };
export type AuditMetadata = { [key: string]: AuditValue };

export interface AuditDraft {
  eventType: string;
  actorId: string;
  requestId: string;
  resourceType: string;
  resourceId: string;
  metadata: AuditMetadata;
}

export interface AuditEntry extends AuditDraft {
  id: string;
  index: number;
  timestamp: string;
  prevHash: string;
  hash: string;
}

/**
 * The canonical JSON (RFC 8785) of an entry without its hash: what the chain hash covers, and the bytes of its
 * Merkle leaf (src/domain/audit-tree.ts).
 */
export function auditEntryCanonical(entry: Omit<AuditEntry, 'hash'>): string {
  const {
    id,
    index,
    timestamp,
    eventType,
    actorId,
    requestId,
    resourceType,
    resourceId,
    metadata,
    prevHash,
  } = entry;
  const body = {
    id,
    index,
    timestamp,
    eventType,
    actorId,
    requestId,
    resourceType,
    resourceId,
    metadata,
    prevHash,
  };
  return canonicalJson(body);
}

const sha256Hex = (text: string): string => createHash('sha256').update(text).digest('hex');

export function auditEntryHash(entry: Omit<AuditEntry, 'hash'>): string {
  return sha256Hex(auditEntryCanonical(entry));
}

export function sealAuditEntry(
  draft: AuditDraft,
  link: { index: number; prevHash: string },
  id: string,
  timestampMs: number,
): AuditEntry {
  return sealAuditEntryCanonical(draft, link, id, timestampMs).entry;
}

/** Seals an entry, and returns its canonical bytes too (its Merkle leaf's): computed once on the write path. */
export function sealAuditEntryCanonical(
  draft: AuditDraft,
  link: { index: number; prevHash: string },
  id: string,
  timestampMs: number,
): { entry: AuditEntry; canonical: string } {
  assert(Number.isSafeInteger(link.index) && link.index >= 0, 'audit index is a non-negative integer');
  assert(
    link.index === 0 ? link.prevHash === GENESIS_HASH : link.prevHash.length === 64,
    'audit link is sane',
  );
  const timestamp = new Date(timestampMs).toISOString();
  const unsealed = { ...draft, id, index: link.index, timestamp, prevHash: link.prevHash };
  const canonical = auditEntryCanonical(unsealed);
  return { entry: { ...unsealed, hash: sha256Hex(canonical) }, canonical };
}

export type ChainBreak = { index: number; reason: string };

/**
 * Checks one entry against the expected link; returns what is wrong, or null. Called entry by entry so a
 * verifier can stream a log of any size.
 */
export function checkAuditLink(
  entry: AuditEntry,
  expectedIndex: number,
  expectedPrevHash: string,
): string | null {
  if (entry.index !== expectedIndex) return `index gap: expected ${expectedIndex}, found ${entry.index}`;
  if (entry.prevHash !== expectedPrevHash) return 'prevHash does not match the previous entry hash';
  if (auditEntryHash(entry) !== entry.hash) return 'hash does not match the entry contents';
  return null;
}
