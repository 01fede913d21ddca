import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createAccount } from '../src/app/accounts.ts';
import { createPayment } from '../src/app/create-payment.ts';
import { createCustomer } from '../src/app/customers.ts';
import { assessRisk } from '../src/app/risk-assessment.ts';
import { SYSTEM_ACTOR } from '../src/app/services.ts';
import { createApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import type { Account } from '../src/domain/types.ts';

/**
 * `npm run bench:risk`: the cost of deciding a payment (steps 3-6: load accounts and parties, windowed
 * counters, sanctions screening, policy) with 100 prior payments and with 100,000, on the same accounts.
 * The counters must not scan history, so the two figures should be close (target: within 1.5×).
 */
const ACCOUNTS = 20;
const SAMPLES = 2_000;
const BATCH = 64;

const dir = mkdtempSync(join(tmpdir(), 'risk-bench-'));
const config = loadConfig({
  DATABASE_URL: `sqlite:${join(dir, 'p.db')}`,
  DATA_ENCRYPTION_KEY: Buffer.alloc(32, 3).toString('base64'),
  SEED_DEMO_DATA: 'false',
  LOG_LEVEL: 'warn',
});
const app = await createApp(config);
const { services } = app;
const actor = { ...SYSTEM_ACTOR, requestId: 'req_bench' };

const accounts: Pick<Account, 'id'>[] = [];
for (let i = 0; i < ACCOUNTS; i++) {
  // The app functions answer with the response bytes (what an idempotent replay repeats): parse them.
  const created = await createCustomer(services, actor, undefined, {
    name: `Bench ${i}`,
    country: 'US',
    documentReference: randomUUID(),
  });
  const customer = JSON.parse(created.body).customer as { id: string };
  const opened = await createAccount(services, actor, undefined, {
    customerId: customer.id,
    currency: 'USD',
    initialBalanceCents: 1e13,
  });
  accounts.push(JSON.parse(opened.body).account as { id: string });
}
const pick = () => {
  const i = Math.floor(Math.random() * ACCOUNTS);
  return [accounts[i]!, accounts[(i + 1 + Math.floor(Math.random() * (ACCOUNTS - 1))) % ACCOUNTS]!] as const;
};

let made = 0;
async function addPayments(target: number): Promise<void> {
  while (made < target) {
    const n = Math.min(BATCH * 8, target - made);
    await Promise.all(
      Array.from({ length: n }, () => {
        const [a, b] = pick();
        return createPayment(services, actor, randomUUID(), {
          sourceAccountId: a.id,
          destinationAccountId: b.id,
          amountCents: 1 + Math.floor(Math.random() * 1000),
          currency: 'USD',
        });
      }),
    );
    made += n;
  }
}

/** Mean microseconds per decision, measured inside write transactions (the way the pipeline runs it). */
async function decisionCostUs(): Promise<number> {
  let totalMs = 0;
  for (let done = 0; done < SAMPLES; done += BATCH) {
    const results = await Promise.all(
      Array.from({ length: BATCH }, () =>
        services.committer.submit(async (tx) => {
          const [a, b] = pick();
          const start = performance.now();
          const locked = await tx.lockAccounts([a.id, b.id]);
          const source = locked.get(a.id)!;
          const destination = locked.get(b.id)!;
          const parties = await tx.getCustomers([source.ownerCustomerId!, destination.ownerCustomerId!]);
          await assessRisk(tx.counters, tx.nowMs, services.policy, services.screening, {
            amountCents: 500,
            currency: 'USD',
            note: null,
            source,
            destination,
            sender: parties.get(source.ownerCustomerId!)!,
            receiver: parties.get(destination.ownerCustomerId!)!,
          });
          return performance.now() - start;
        }),
      ),
    );
    totalMs += results.reduce((x, y) => x + y, 0);
  }
  return (totalMs / SAMPLES) * 1000;
}

await addPayments(100);
await decisionCostUs(); // warm-up
const small = await decisionCostUs();
process.stdout.write(`decision cost with ${made} prior payments: ${small.toFixed(1)} µs\n`);
const t0 = Date.now();
await addPayments(100_000);
process.stdout.write(`(added ${made} payments in ${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
const large = await decisionCostUs();
process.stdout.write(`decision cost with ${made} prior payments: ${large.toFixed(1)} µs\n`);
process.stdout.write(`ratio: ${(large / small).toFixed(2)}× (target ≤ 1.5×)\n`);
await app.close();
rmSync(dir, { recursive: true, force: true });
