import type { Actor } from '../domain/types.ts';
import { isUniqueViolation } from '../storage/errors.ts';
import { openAccount } from './accounts.ts';
import { insertCustomer } from './customers.ts';
import type { Services } from './services.ts';

/** The workshop's demo customers and accounts (contract: "Demo data"), created on an empty database only. */
const DEMO = [
  {
    customer: {
      id: 'cus_demo_alice',
      name: 'Alice Carter',
      country: 'US',
      documentReference: 'DEMO-PASSPORT-ALICE-001',
    },
    account: {
      id: 'acc_demo_alice_usd',
      currency: 'USD',
      initialBalanceCents: 300_000,
      accountNumber: '4400000012345678',
    },
  },
  {
    customer: {
      id: 'cus_demo_bob',
      name: 'Bob Chen',
      country: 'US',
      documentReference: 'DEMO-PASSPORT-BOB-001',
    },
    account: {
      id: 'acc_demo_bob_usd',
      currency: 'USD',
      initialBalanceCents: 50_000,
      accountNumber: '4400000098765432',
    },
  },
];

export async function seedDemoData(services: Services, actor: Actor): Promise<boolean> {
  const { cipher } = services;
  try {
    return await services.committer.submit(async (tx) => {
      const existing = await services.store.reads.listCustomers({ after: 0, limit: 1 });
      const already = await tx.getCustomers(DEMO.map((d) => d.customer.id));
      if (existing.items.length > 0 || already.size > 0) return false;
      for (const { customer, account } of DEMO) {
        await insertCustomer(tx, actor, {
          id: customer.id,
          nameEnc: cipher.encrypt(customer.name, 'customer.name'),
          country: customer.country,
          kycStatus: 'verified',
          documentIndex: cipher.blindIndex(customer.documentReference, 'customer.documentReference'),
          documentEnc: cipher.encrypt(customer.documentReference, 'customer.documentReference'),
          createdAtMs: 0,
        });
        await openAccount(tx, cipher, actor, { customerId: customer.id, ...account });
      }
      return true;
    });
  } catch (error) {
    // Several processes starting at once on one PostgreSQL: one seeds, the others find it done.
    if (isUniqueViolation(error)) return false;
    throw error;
  }
}
