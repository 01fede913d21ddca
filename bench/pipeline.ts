import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createPayment } from '../src/app/create-payment.ts';
import { createApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { hashSecret } from '../src/security/api-keys.ts';
import { preloadSqlite } from './preload.ts';

/**
 * `npm run bench:pipeline`: the payment pipeline in-process, without HTTP, so a profile (`--cpu-prof`) shows the
 * pipeline's own cost. `concurrency` payments are kept in flight for `duration` seconds on a temp SQLite file.
 *
 *   node --import tsx bench/pipeline.ts --duration 5 --concurrency 64 --accounts 1000
 */
const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '5' },
    concurrency: { type: 'string', default: '64' },
    accounts: { type: 'string', default: '1000' },
  },
});
const TOKEN = 'bench-token-0001';
const DATA_KEY = Buffer.alloc(32, 9).toString('base64');

const dir = mkdtempSync(join(tmpdir(), 'payments-pipeline-'));
const path = join(dir, 'payments.db');
const accounts = preloadSqlite({
  path,
  accounts: Number(args.accounts),
  transfers: 0,
  openingBalanceCents: 1_000_000_000,
  dataKeyBase64: DATA_KEY,
});
const config = loadConfig({
  DATABASE_URL: `sqlite:${path}`,
  DEMO_API_TOKEN: TOKEN,
  DATA_ENCRYPTION_KEY: DATA_KEY,
  SEED_DEMO_DATA: 'false',
  LOG_LEVEL: 'warn',
});
const app = await createApp(config);
const key = await app.services.store.reads.findApiKeyByHash(hashSecret(TOKEN));
if (key === undefined) throw new Error('bench key missing');
const actor = { apiKeyId: key.id, role: key.role, requestId: 'req_bench' };

let done = 0;
let seq = 0;
const deadline = Date.now() + Number(args.duration) * 1000;
async function worker(): Promise<void> {
  while (Date.now() < deadline) {
    const i = Math.floor(Math.random() * accounts.length);
    const j = (i + 1 + Math.floor(Math.random() * (accounts.length - 1))) % accounts.length;
    await createPayment(app.services, actor, `bench-${++seq}`, {
      sourceAccountId: accounts[i]!,
      destinationAccountId: accounts[j]!,
      amountCents: 1 + Math.floor(Math.random() * 100),
      currency: 'USD',
    });
    done += 1;
  }
}
const t0 = performance.now();
await Promise.all(Array.from({ length: Number(args.concurrency) }, worker));
const seconds = (performance.now() - t0) / 1000;
const { batchesApplied, commandsApplied } = app.services.committer;
process.stdout.write(
  `${Math.round(done / seconds)} payments/s in-process (c=${args.concurrency}), ${batchesApplied} batches, ${(commandsApplied / batchesApplied).toFixed(1)} commands/batch\n`,
);
await app.close();
rmSync(dir, { recursive: true, force: true });
