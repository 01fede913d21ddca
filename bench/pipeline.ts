import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createPayment } from '../src/app/create-payment.ts';
import { createApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { hashSecret } from '../src/security/api-keys.ts';
import { BENCH_POLICY_DESCRIPTION, benchPolicyPath, SEED_POLICY_FILE } from './policy.ts';
import { preloadSqlite } from './preload.ts';

/**
 * `npm run bench:pipeline`: the payment pipeline in-process, without HTTP, so a profile (`--cpu-prof`) shows the
 * pipeline's own cost. `concurrency` payments are kept in flight for `duration` seconds (or, with `--rate`,
 * started on a fixed schedule) on a temp SQLite file, or on a new database of the PostgreSQL server `--pg`.
 *
 * It runs the same risk policy as `npm run bench` (bench/policy.ts: the seed policy with its two per-minute
 * fraud rules out of reach), so every payment posts and the figure is the posting path's. `--seed-policy` runs
 * the seed policy unchanged instead: once a source account has sent 3 payments within a minute, its velocity
 * rule holds every further one for review (202, no ledger posting, a shorter path). How many that is depends on
 * rate × duration ÷ accounts (at 1,750/s for 5 s between 1,000 accounts, about two thirds), so such a figure is
 * neither the posting path's nor comparable with the HTTP bench's. The policy and the outcomes (HTTP status of
 * each reply: 201 posted, 202 held, 422 declined) are printed.
 *
 *   node --import tsx bench/pipeline.ts --duration 5 --concurrency 64 --accounts 1000 [--rate 800] [--seed-policy]
 *   node --import tsx bench/pipeline.ts --pg postgres://postgres@127.0.0.1:5432/postgres
 */
const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '5' },
    concurrency: { type: 'string', default: '64' },
    accounts: { type: 'string', default: '1000' },
    rate: { type: 'string', default: '0' },
    pg: { type: 'string' },
    'batch-max': { type: 'string', default: '64' },
    'seed-policy': { type: 'boolean', default: false },
  },
});
const TOKEN = 'bench-token-0001';
const DATA_KEY = Buffer.alloc(32, 9).toString('base64');

const dir = mkdtempSync(join(tmpdir(), 'payments-pipeline-'));
const OPENING_CENTS = 1_000_000_000;
let databaseUrl: string;
let accounts: string[] = [];
if (args.pg === undefined) {
  const path = join(dir, 'payments.db');
  accounts = preloadSqlite({
    path,
    accounts: Number(args.accounts),
    transfers: 0,
    openingBalanceCents: OPENING_CENTS,
    dataKeyBase64: DATA_KEY,
  });
  databaseUrl = `sqlite:${path}`;
} else {
  const admin = new pg.Client({ connectionString: args.pg });
  await admin.connect();
  const name = `bench_pipeline_${Date.now()}`;
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(args.pg);
  url.pathname = `/${name}`;
  databaseUrl = url.toString();
}
const policyPath = args['seed-policy'] ? SEED_POLICY_FILE : benchPolicyPath();
const config = loadConfig({
  DATABASE_URL: databaseUrl,
  DEMO_API_TOKEN: TOKEN,
  DATA_ENCRYPTION_KEY: DATA_KEY,
  SEED_DEMO_DATA: 'false',
  LOG_LEVEL: 'warn',
  GROUP_COMMIT_BATCH_MAX: args['batch-max'],
  RISK_POLICY_PATH: policyPath,
});
process.stdout.write(
  `policy: ${args['seed-policy'] ? `${SEED_POLICY_FILE} unchanged (seed policy: velocity holds a source's 4th payment within a minute and later ones)` : BENCH_POLICY_DESCRIPTION}\n`,
);
const app = await createApp(config);
if (args.pg !== undefined) accounts = await fundThroughApi(Number(args.accounts));
const key = await app.services.store.reads.findApiKeyByHash(hashSecret(TOKEN));
if (key === undefined) throw new Error('bench key missing');
const actor = { apiKeyId: key.id, role: key.role, requestId: 'req_bench' };

async function fundThroughApi(n: number): Promise<string[]> {
  const post = async (url: string, payload: unknown) => {
    const res = await app.server.inject({
      method: 'POST',
      url,
      headers: { authorization: `Bearer ${TOKEN}` },
      payload: payload as Record<string, unknown>,
    });
    return res.json() as Record<string, { id: string }>;
  };
  return Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const c = await post('/v1/customers', {
        name: `Bench ${i}`,
        country: 'US',
        documentReference: `PIPE-${i}`,
      });
      const a = await post('/v1/accounts', {
        customerId: c['customer']!.id,
        currency: 'USD',
        initialBalanceCents: OPENING_CENTS,
      });
      return a['account']!.id;
    }),
  );
}

let done = 0;
let seq = 0;
const outcomes: Record<string, number> = {};
const count = (reply: { statusCode: number }) => {
  outcomes[reply.statusCode] = (outcomes[reply.statusCode] ?? 0) + 1;
};
const latenciesMs: number[] = [];
const deadline = Date.now() + Number(args.duration) * 1000;
function onePayment(): Promise<unknown> {
  const i = Math.floor(Math.random() * accounts.length);
  const j = (i + 1 + Math.floor(Math.random() * (accounts.length - 1))) % accounts.length;
  return createPayment(app.services, actor, `bench-${++seq}`, {
    sourceAccountId: accounts[i]!,
    destinationAccountId: accounts[j]!,
    amountCents: 1 + Math.floor(Math.random() * 100),
    currency: 'USD',
  }).then(count);
}
async function worker(): Promise<void> {
  while (Date.now() < deadline) {
    const t = performance.now();
    await onePayment();
    latenciesMs.push(performance.now() - t);
    done += 1;
  }
}
/** Open loop: payments started on a fixed schedule, latency counted from when each was due. */
async function openLoop(ratePerSecond: number): Promise<void> {
  const t0 = performance.now();
  const pending: Promise<unknown>[] = [];
  let started = 0;
  while (Date.now() < deadline) {
    const due = Math.floor(((performance.now() - t0) * ratePerSecond) / 1000);
    for (; started < due; started++) {
      const dueMs = t0 + (started * 1000) / ratePerSecond;
      pending.push(
        onePayment().then(() => {
          latenciesMs.push(performance.now() - dueMs);
          done += 1;
        }),
      );
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.all(pending);
}
const t0 = performance.now();
if (Number(args.rate) > 0) await openLoop(Number(args.rate));
else await Promise.all(Array.from({ length: Number(args.concurrency) }, worker));
const seconds = (performance.now() - t0) / 1000;
latenciesMs.sort((a, b) => a - b);
const at = (q: number) => (latenciesMs[Math.floor(q * (latenciesMs.length - 1))] ?? 0).toFixed(1);
process.stdout.write(`latency ms: p50 ${at(0.5)}  p99 ${at(0.99)}  max ${at(1)}\n`);
const { batchesApplied, commandsApplied } = app.services.committer;
process.stdout.write(
  `${Math.round(done / seconds)} payments/s in-process (c=${args.concurrency}), ${batchesApplied} batches, ${(commandsApplied / batchesApplied).toFixed(1)} commands/batch\n`,
);
// 201 posted, 202 held for review, 422 declined: the bench policy should post every payment.
process.stdout.write(`outcomes (HTTP status: count): ${JSON.stringify(outcomes)}\n`);
await app.close();
rmSync(dir, { recursive: true, force: true });
if (!args['seed-policy']) rmSync(dirname(policyPath), { recursive: true, force: true });
