import { type AuditEntry, auditEntryCanonical } from './audit.ts';
import { leafHash } from './merkle.ts';

/**
 * How an audit entry becomes a Merkle leaf: the RFC 8785 canonical JSON of the entry exactly as the API
 * returns it, minus `hash` (the same bytes the chain hash covers), hashed with RFC 6962's 0x00 leaf prefix.
 * An auditor recomputes every leaf from `GET /v1/audit-logs` output alone.
 */
export function auditLeafBytes(entry: Omit<AuditEntry, 'hash'>): string {
  return auditEntryCanonical(entry);
}

export function auditLeafHash(entry: Omit<AuditEntry, 'hash'>): Buffer {
  return leafHash(auditLeafBytes(entry));
}
