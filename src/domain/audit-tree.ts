import type { AuditEntry } from './audit.ts';
import { canonicalJson } from './canonical-json.ts';
import { leafHash } from './merkle.ts';

/**
 * How an audit entry becomes a Merkle leaf: the RFC 8785 canonical JSON of the entry exactly as the API
 * returns it, minus `hash` (the same bytes the chain hash covers), hashed with RFC 6962's 0x00 leaf prefix.
 * An auditor recomputes every leaf from `GET /v1/audit-logs` output alone.
 */
export function auditLeafBytes(entry: Omit<AuditEntry, 'hash'>): string {
  return canonicalJson({
    id: entry.id,
    index: entry.index,
    timestamp: entry.timestamp,
    eventType: entry.eventType,
    actorId: entry.actorId,
    requestId: entry.requestId,
    resourceType: entry.resourceType,
    resourceId: entry.resourceId,
    metadata: entry.metadata,
    prevHash: entry.prevHash,
  });
}

export function auditLeafHash(entry: Omit<AuditEntry, 'hash'>): Buffer {
  return leafHash(auditLeafBytes(entry));
}
