import { AppError } from '../domain/errors.ts';
import { sanctionsLevel } from '../domain/features.ts';
import { newId } from '../domain/ids.ts';
import { screenName } from '../domain/sanctions.ts';
import type { Actor, KycStatus } from '../domain/types.ts';
import { isUniqueViolation } from '../storage/errors.ts';
import type { CustomerRow, Tx } from '../storage/store.ts';
import type { Services } from './services.ts';

export interface NewCustomer {
  name: string;
  country: string;
  documentReference: string;
}

/**
 * Onboarding. Personal data is encrypted before it reaches the database; duplicates are found by a keyed
 * hash (blind index) of the document reference. The name is screened against the sanctions list; a customer
 * from a high-risk jurisdiction (the seed's rule) or whose name scores at least the policy's review score
 * starts in `manual_review`; others start `verified`, as in the seed, where a real deployment would call
 * its KYC provider. The screening result (score, list entry, list hash; no name) is kept with the customer.
 */
export async function createCustomer(
  services: Services,
  actor: Actor,
  input: NewCustomer,
): Promise<CustomerRow> {
  const row = buildCustomerRow(services, input);
  try {
    return await services.committer.submit((tx) => insertCustomer(tx, actor, row));
  } catch (error) {
    // Another process may win the race between our check and our insert: the unique index decides.
    if (isUniqueViolation(error)) throw customerExists();
    throw error;
  }
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
    documentIndex: cipher.blindIndex(input.documentReference, 'customer.documentReference'),
    documentEnc: cipher.encrypt(input.documentReference, 'customer.documentReference'),
    kycTier: policy.defaultKycTier,
    sanctionsListSha256: screening.list.sha256,
    sanctionsScoreBp: screened.scoreBp,
    sanctionsEntryId: screened.entryId,
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
 * so it is stored encrypted and never put in the audit metadata.
 */
export async function decideKyc(
  services: Services,
  actor: Actor,
  customerId: string,
  decision: KycDecision,
): Promise<CustomerRow> {
  const tier = decision.kycTier;
  if (tier !== undefined && !(tier in services.policy.kycTiers)) {
    throw new AppError(
      'VALIDATION_ERROR',
      `kycTier must be one of ${Object.keys(services.policy.kycTiers).join(', ')}`,
      [{ field: '/kycTier', message: 'unknown tier' }],
    );
  }
  const noteEnc =
    decision.note === undefined ? null : services.cipher.encrypt(decision.note, 'customer.kycNote');
  return services.committer.submit(async (tx) => {
    const before = (await tx.getCustomers([customerId])).get(customerId);
    if (before === undefined) throw new AppError('CUSTOMER_NOT_FOUND', 'customer not found');
    const after = { ...before, kycStatus: decision.kycStatus, kycTier: tier ?? before.kycTier };
    await tx.recordKycDecision(before, after, noteEnc, actor);
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
    return after;
  });
}

function customerExists(): AppError {
  return new AppError('CUSTOMER_EXISTS', 'a customer with this document reference already exists');
}
