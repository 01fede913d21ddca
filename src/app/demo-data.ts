import { AppError } from '../domain/errors.ts';
import type { Actor } from '../domain/types.ts';
import { isUniqueViolation } from '../storage/errors.ts';
import { openAccount, systemAccountId, systemAccountLockName } from './accounts.ts';
import { buildCustomerRow, insertCustomer } from './customers.ts';
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
  // Processes starting together seed one at a time (PostgreSQL's lock order, see accounts.ts): the later
  // ones then find the demo customers and do nothing.
  const locks = { names: ['demo-data', systemAccountLockName('USD')], accountIds: [systemAccountId('USD')] };
  try {
    return await services.committer.submit(async (tx) => {
      const existing = await services.store.reads.listCustomers({ after: 0, limit: 1 });
      const already = await tx.getCustomers(DEMO.map((d) => d.customer.id));
      if (existing.items.length > 0 || already.size > 0) return false;
      for (const { customer, account } of DEMO) {
        await insertCustomer(tx, actor, buildCustomerRow(services, customer));
        await openAccount(tx, cipher, actor, { customerId: customer.id, ...account });
      }
      return true;
    }, locks);
  } catch (error) {
    // Several processes starting at once on one PostgreSQL: one seeds, the others find it done (by the
    // unique index, or by the document check when the winner committed between our check and our insert).
    if (isUniqueViolation(error) || (error instanceof AppError && error.code === 'CUSTOMER_EXISTS'))
      return false;
    throw error;
  }
}
