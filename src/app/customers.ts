import { AppError } from '../domain/errors.ts';
import { newId } from '../domain/ids.ts';
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
 * hash (blind index) of the document reference. A customer from a high-risk jurisdiction starts in
 * `manual_review` (the seed's rule); others start `verified`, as in the seed, where a real deployment
 * would call its KYC provider.
 */
export async function createCustomer(
  services: Services,
  actor: Actor,
  input: NewCustomer,
): Promise<CustomerRow> {
  const { cipher, policy } = services;
  const kycStatus: KycStatus = policy.highRiskCountries.includes(input.country)
    ? 'manual_review'
    : 'verified';
  const row: CustomerRow = {
    id: newId('cus'),
    nameEnc: cipher.encrypt(input.name, 'customer.name'),
    country: input.country,
    kycStatus,
    documentIndex: cipher.blindIndex(input.documentReference, 'customer.documentReference'),
    documentEnc: cipher.encrypt(input.documentReference, 'customer.documentReference'),
    createdAtMs: 0,
  };
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
    metadata: { customerId: stamped.id, country: stamped.country, kycStatus: stamped.kycStatus },
  });
  return stamped;
}

function customerExists(): AppError {
  return new AppError('CUSTOMER_EXISTS', 'a customer with this document reference already exists');
}
