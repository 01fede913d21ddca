import { nameProblem } from '../domain/canonical-text.ts';
import { AppError, type ErrorDetail } from '../domain/errors.ts';
import { sanctionsLevel } from '../domain/features.ts';
import { newId } from '../domain/ids.ts';
import { hasOwn } from '../domain/own.ts';
import { screenName } from '../domain/sanctions.ts';
import type { Actor, KycStatus } from '../domain/types.ts';
import { isUniqueViolation } from '../storage/errors.ts';
import type { CustomerRow, Tx } from '../storage/store.ts';
import { type IdempotentReply, jsonOutcome, optionalIdempotentRequest, runIdempotent } from './idempotent.ts';
import { DOCUMENT_INDEX_VERSION, documentIndexOf, documentReferenceProblem } from './identity-index.ts';
import {
  declineHeldPaymentsOfSender,
  declineRemainingHeldPaymentsOfSender,
  heldPaymentsOfSender,
} from './review.ts';
import { requireCustomerInScope, requireUnscoped } from './scope.ts';
import type { Services } from './services.ts';
import { customerView } from './views.ts';

export interface NewCustomer {
  name: string;
  country: string;
  documentReference: string;
}

/**
 * Onboarding. A name that cannot be a real one (bidi, control or invisible formatting characters, nothing
 * left once canonicalised) or a document reference with no letter or digit is refused before anything is
 * written; both are stored exactly as sent. Personal data is encrypted before it reaches the database;
 * duplicates are found by a keyed hash (blind index) of the document reference's compact skeleton, so
 * look-alike, fullwidth, invisible or re-cased variants of one reference are one document
 * (src/app/identity-index.ts). The name is screened against the sanctions list; a customer
 * from a high-risk jurisdiction (the seed's rule) or whose name scores at least the policy's review score
 * starts in `manual_review`; others start `verified`, as in the seed, where a real deployment would call
 * its KYC provider. The screening result (score, list entry, list hash; no name) is kept with the customer.
 */
export async function createCustomer(
  services: Services,
  actor: Actor,
  idempotencyKey: string | undefined,
  input: NewCustomer,
): Promise<IdempotentReply> {
  requireUnscoped(actor, 'create customers'); // a new customer is in no key's scope (src/app/scope.ts)
  refuseUnrealIdentity(input);
  const request = optionalIdempotentRequest(actor, idempotencyKey, 'POST', '/v1/customers', input);
  try {
    // Encryption and screening only once the fast path found no stored answer.
    return await runIdempotent(services, request, () => {
      const row = buildCustomerRow(services, input);
      return {
        execute: async (tx) => {
          const created = await insertCustomer(tx, actor, row);
          return jsonOutcome(201, { customer: customerView(created, services.cipher) }, created.id);
        },
      };
    });
  } catch (error) {
    // Another process may win the race between our check and our insert: the unique index decides.
    if (isUniqueViolation(error)) throw customerExists();
    throw error;
  }
}

/** 400 VALIDATION_ERROR naming each field that cannot identify a real person or company. */
function refuseUnrealIdentity(input: NewCustomer): void {
  const details: ErrorDetail[] = [];
  const name = nameProblem(input.name);
  if (name !== null) details.push({ field: '/name', message: name });
  const document = documentReferenceProblem(input.documentReference);
  if (document !== null) details.push({ field: '/documentReference', message: document });
  if (details.length === 0) return;
  const summary = name !== null ? `name ${name}` : `documentReference ${document}`;
  throw new AppError('VALIDATION_ERROR', summary, details);
}

export async function insertCustomer(tx: Tx, actor: Actor, row: CustomerRow): Promise<CustomerRow> {
  if (await tx.customerExistsWithDocument(row.documentIndex)) throw customerExists();
  const stamped = { ...row, createdAtMs: tx.nowMs };
  await tx.insertCustomer(stamped);
  await tx.appendAudit({
    eventType: 'customer.created',
    actorId: actor.apiKeyId,
    requestId: actor.requestId,
    resourceType: 'customer',
    resourceId: stamped.id,
    metadata: {
      customerId: stamped.id,
      country: stamped.country,
      kycStatus: stamped.kycStatus,
      kycTier: stamped.kycTier,
      sanctionsListSha256: stamped.sanctionsListSha256,
      sanctionsScoreBp: stamped.sanctionsScoreBp,
      sanctionsEntryId: stamped.sanctionsEntryId,
    },
  });
  return stamped;
}

/** Encrypts, indexes and screens a new customer's data; the row is stamped with its time when inserted. */
export function buildCustomerRow(services: Services, input: NewCustomer & { id?: string }): CustomerRow {
  const { cipher, policy, screening } = services;
  const screened = screenName(screening.list, input.name);
  const listed = sanctionsLevel(screened.scoreBp, policy) !== 'none';
  const kycStatus: KycStatus =
    policy.highRiskCountries.includes(input.country) || listed ? 'manual_review' : 'verified';
  return {
    id: input.id ?? newId('cus'),
    nameEnc: cipher.encrypt(input.name, 'customer.name'),
    country: input.country,
    kycStatus,
    documentIndex: documentIndexOf(cipher, input.documentReference),
    documentIndexVersion: DOCUMENT_INDEX_VERSION,
    documentEnc: cipher.encrypt(input.documentReference, 'customer.documentReference'),
    kycTier: policy.defaultKycTier,
    sanctionsListSha256: screening.list.sha256,
    sanctionsScoreBp: screened.scoreBp,
    sanctionsEntryId: screened.entryId,
    sanctionsAliasId: screened.aliasId,
    createdAtMs: 0,
  };
}

export interface KycDecision {
  kycStatus: KycStatus;
  kycTier?: string | undefined;
  note?: string | undefined;
}

/**
 * A compliance officer's KYC decision: status and/or tier. Audited with the actor; the note may name people,
 * so it is stored encrypted and never put in the audit metadata. A rejection also declines the customer's
 * payments held for review as sender, releasing their holds, in the same transaction (up to
 * KYC_CASCADE_CHUNK_MAX; the rest by bounded follow-up commands: src/app/review.ts).
 */
export async function decideKyc(
  services: Services,
  actor: Actor,
  idempotencyKey: string | undefined,
  customerId: string,
  decision: KycDecision,
): Promise<IdempotentReply> {
  requireCustomerInScope(actor, customerId); // scoped key: in scope, or 404 (src/app/scope.ts)
  const tier = decision.kycTier;
  if (tier !== undefined && !hasOwn(services.policy.kycTiers, tier)) {
    throw new AppError(
      'VALIDATION_ERROR',
      `kycTier must be one of ${Object.keys(services.policy.kycTiers).join(', ')}`,
      [{ field: '/kycTier', message: 'unknown tier' }],
    );
  }
  const rejecting = decision.kycStatus === 'rejected';
  const path = `/v1/customers/${customerId}/kyc`;
  const request = optionalIdempotentRequest(actor, idempotencyKey, 'POST', path, decision);
  const decided = await runIdempotent(services, request, async () => {
    const noteEnc =
      decision.note === undefined ? null : services.cipher.encrypt(decision.note, 'customer.kycNote');
    // The holds' accounts are declared so the transaction locks them first, as every review path does.
    const cascade = rejecting
      ? await heldPaymentsOfSender(services, customerId)
      : { held: [], accountIds: [] };
    return {
      locks: { accountIds: cascade.accountIds },
      execute: async (tx) => {
        const before = (await tx.getCustomers([customerId])).get(customerId);
        if (before === undefined) throw new AppError('CUSTOMER_NOT_FOUND', 'customer not found');
        const after = { ...before, kycStatus: decision.kycStatus, kycTier: tier ?? before.kycTier };
        await tx.recordKycDecision(before, after, noteEnc, actor);
        const heldPaymentsDeclined = rejecting
          ? await declineHeldPaymentsOfSender(tx, actor, customerId, cascade.held)
          : 0;
        await tx.appendAudit({
          eventType: 'customer.kyc_updated',
          actorId: actor.apiKeyId,
          requestId: actor.requestId,
          resourceType: 'customer',
          resourceId: customerId,
          metadata: {
            customerId,
            kycStatusFrom: before.kycStatus,
            kycStatusTo: after.kycStatus,
            kycTierFrom: before.kycTier,
            kycTierTo: after.kycTier,
            noteProvided: noteEnc !== null,
            heldPaymentsDeclined,
          },
        });
        // No name or note in the event: receivers learn the new status and fetch the customer if they may.
        await tx.appendEvent({
          type: 'customer.kyc_updated',
          resourceType: 'customer',
          resourceId: customerId,
          data: JSON.stringify({
            customer: {
              id: customerId,
              kycStatus: after.kycStatus,
              kycTier: after.kycTier,
              kycStatusFrom: before.kycStatus,
            },
          }),
        });
        return jsonOutcome(200, { customer: customerView(after, services.cipher) }, customerId);
      },
    };
  });
  // Also after a replay: the follow-up only finishes this decision's cascade (a crash may have cut it short),
  // and does nothing once the customer is no longer rejected or has no held payments left.
  if (rejecting) await declineRemainingHeldPaymentsOfSender(services, actor, customerId);
  return decided;
}

function customerExists(): AppError {
  return new AppError('CUSTOMER_EXISTS', 'a customer with this document reference already exists');
}
