import { AppError } from '../domain/errors.ts';
import type { CaseDecision, ComplianceCase } from '../domain/reporting.ts';
import type { Actor } from '../domain/types.ts';
import { type IdempotentReply, jsonOutcome, optionalIdempotentRequest, runIdempotent } from './idempotent.ts';
import type { Services } from './services.ts';

/**
 * Compliance cases (docs/decisions/0025-regulatory-reporting.md): a payment declined or held for an AML reason
 * of a suspicious-activity rule opens a case in its own transaction (src/app/reports.ts). Compliance decides
 * it once: `filed` (a suspicious activity report was filed) or `dismissed`. The decision is audited with the
 * actor, in the same transaction; its note may name people, so it is stored encrypted and never echoed or
 * audited (as a reviewer's note: src/app/review.ts).
 */
const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** A case as the API shows it. */
export function caseView(c: ComplianceCase) {
  return {
    id: c.id,
    status: c.status,
    paymentId: c.paymentId,
    ruleId: c.ruleId,
    reasons: c.reasons,
    auditIndex: c.auditIndex,
    createdAt: iso(c.createdAtMs) as string,
    decidedAt: iso(c.decidedAtMs),
    decidedBy: c.decidedBy,
    noteProvided: c.decisionNoteEnc !== null,
  };
}

export function caseNotFound(): AppError {
  return new AppError('CASE_NOT_FOUND', 'case not found');
}

/** The lock that serialises decisions of one case, taken with the batch's other locks (global order). */
const caseLock = (id: string) => `case:${id}`;

/**
 * POST /v1/cases/:id/decide. Under an Idempotency-Key (optional) the answer is stored and replayed; a refusal
 * (404, 409 CASE_ALREADY_DECIDED) is thrown, so it is not stored.
 */
export async function decideCase(
  services: Services,
  actor: Actor,
  idempotencyKey: string | undefined,
  caseId: string,
  decision: CaseDecision,
  note: string | undefined,
): Promise<IdempotentReply> {
  const path = `/v1/cases/${caseId}/decide`;
  const request = optionalIdempotentRequest(actor, idempotencyKey, 'POST', path, { decision, note });
  return runIdempotent(services, request, () => {
    const noteEnc = note === undefined ? null : services.cipher.encrypt(note, 'case.decisionNote');
    return {
      locks: { names: [caseLock(caseId)] },
      execute: async (tx) => {
        const found = await tx.lockCase(caseId);
        if (found === undefined) throw caseNotFound();
        if (found.status !== 'open') {
          throw new AppError('CASE_ALREADY_DECIDED', `the case was already decided (${found.status})`);
        }
        await tx.decideCase(caseId, decision, actor.apiKeyId, noteEnc);
        const decided: ComplianceCase = {
          ...found,
          status: decision,
          decidedAtMs: tx.nowMs,
          decidedBy: actor.apiKeyId,
          decisionNoteEnc: noteEnc,
        };
        await tx.appendAudit({
          eventType: `case.${decision}`,
          actorId: actor.apiKeyId,
          requestId: actor.requestId,
          resourceType: 'case',
          resourceId: caseId,
          metadata: {
            caseId,
            paymentId: found.paymentId,
            ruleId: found.ruleId,
            reasons: found.reasons,
            statusFrom: found.status,
            statusTo: decision,
            // The payment's audit entry, which the case was opened with.
            paymentAuditIndex: found.auditIndex,
            noteProvided: noteEnc !== null,
          },
        });
        return jsonOutcome(200, { case: caseView(decided) }, caseId);
      },
    };
  });
}
