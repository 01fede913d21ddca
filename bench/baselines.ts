import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import Fastify from 'fastify';
import type { PaymentRequest } from '../src/app/create-payment.ts';

/**
 * The two reference servers of `npm run bench` (issue 15), started by bench/run.ts next to the hello-world (a)
 * and the real API (d), and driven by the same load generator at the same concurrency levels:
 *
 *   (b) BASELINE=validated  fastify POST /v1/payments: the payment body checked by a JSON schema (the fields
 *       and limits of src/http/schemas.ts CreatePaymentBody), the Idempotency-Key and bearer token checked, and a
 *       payment-shaped JSON reply of ~1.3 KB (the shape and size of the real 201), built per request. No I/O.
 *   (c) BASELINE=durable    (b) plus one row per request inserted into SQLite (WAL, synchronous=FULL) before
 *       the reply, with group commit: requests that arrive while a batch commits wait and go together into
 *       the next transaction (one fsync), up to 64 per batch, applied synchronously on the event loop, as
 *       src/storage/committer.ts does with the real store. `BASELINE_DB` names the file.
 *
 * (c) is what a durable HTTP write costs on this machine; the real API's target is a quarter of it.
 * GET /stats (bench-only) reports (c)'s batches and rows, so the run can say what batch size it reached.
 */
const MODE = process.env['BASELINE'] ?? 'validated';
if (MODE !== 'validated' && MODE !== 'durable') throw new Error(`BASELINE must be validated or durable`);
const TOKEN = process.env['DEMO_API_TOKEN'] ?? 'bench-token-0001';
const BATCH_MAX = 64;

const ID = { type: 'string', minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' };
const bodySchema = {
  type: 'object',
  required: ['sourceAccountId', 'destinationAccountId', 'amountCents', 'currency'],
  additionalProperties: false,
  properties: {
    sourceAccountId: ID,
    destinationAccountId: ID,
    amountCents: { type: 'integer', minimum: 1, maximum: 9_007_199_254_740_991 },
    currency: { type: 'string', pattern: '^[A-Z]{3}$' },
    note: { type: 'string', maxLength: 500 },
    metadata: {
      type: 'object',
      maxProperties: 20,
      propertyNames: { pattern: '^[A-Za-z0-9_.-]{1,40}$' },
      additionalProperties: { type: 'string', maxLength: 500 },
    },
  },
} as const;
const headersSchema = {
  type: 'object',
  required: ['idempotency-key', 'authorization'],
  properties: {
    'idempotency-key': { type: 'string', minLength: 1, maxLength: 255, pattern: '^[\\x21-\\x7E]+$' },
    authorization: { type: 'string', minLength: 1 },
  },
} as const;

/** The same request as POST /v1/payments takes. */
type Body = PaymentRequest;

/** The real 201's shape (src/app/views.ts paymentView with its decision), ~1,300 bytes as JSON. */
function paymentReply(id: string, body: Body, createdAtMs: number) {
  return {
    payment: {
      id,
      status: 'posted',
      sourceAccountId: body.sourceAccountId,
      destinationAccountId: body.destinationAccountId,
      amountCents: body.amountCents,
      currency: body.currency,
      note: body.note ?? null,
      metadata: body.metadata ?? null,
      reasons: [],
      decision: {
        outcome: 'posted',
        reasons: [],
        rules: [],
        score: 0,
        policyVersion: 'seed-2025-02-bench',
        features: {
          amountCents: body.amountCents,
          roundAmount: body.amountCents % 100 === 0,
          suspiciousNote: false,
          senderKycStatus: 'verified',
          receiverKycStatus: 'verified',
          senderKycTier: 'standard',
          senderHighRiskJurisdiction: false,
          receiverHighRiskJurisdiction: false,
          senderSanctions: 'none',
          receiverSanctions: 'none',
          senderSanctionsScoreBp: 6100,
          receiverSanctionsScoreBp: 6134,
          sourceAttempts1m: 0,
          sourceAttempts1h: 0,
          sourceAttempts24h: 0,
          sourceAttempts7d: 0,
          sourceAmount24hCents: 0,
          samePattern1m: 0,
          newBeneficiary: true,
          beneficiaryIncoming24h: 0,
          amountToAverage7dPercent: 0,
          structuringCount24h: 0,
          kycPerPaymentLimitExceeded: false,
          kycDailyLimitExceeded: false,
          kycMonthlyLimitExceeded: false,
        },
        sanctions: {
          listSha256: '3678b3a115d7b9f032154268e0d10e008f507f4483b05a9744b4c5f1c161a610',
          sender: { scoreBp: 6100, entryId: '1007', aliasId: null },
          receiver: { scoreBp: 6134, entryId: '1005', aliasId: '503' },
        },
      },
      refundedCents: 0,
      resolution: null,
      createdAt: new Date(createdAtMs).toISOString(),
    },
    ledgerPosted: true,
  };
}

interface Row {
  id: string;
  idempotencyKey: string;
  body: Body;
  createdAtMs: number;
}

/** (c)'s group commit: a minimal standalone version of src/storage/committer.ts over one SQLite connection. */
function groupCommitter(path: string) {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec(`CREATE TABLE IF NOT EXISTS payments (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    source_account_id TEXT NOT NULL,
    destination_account_id TEXT NOT NULL,
    amount_cents INTEGER NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
  )`);
  const insert = db.prepare(
    `INSERT INTO payments (id, idempotency_key, source_account_id, destination_account_id, amount_cents, currency,
                           status, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, 'posted', ?)`,
  );
  const queue: { row: Row; resolve: () => void; reject: (e: unknown) => void }[] = [];
  let scheduled = false;
  const stats = { batches: 0, rows: 0, maxBatch: 0, maxBatchMs: 0 };

  const flush = (): void => {
    scheduled = false;
    const batch = queue.splice(0, BATCH_MAX);
    const t0 = performance.now();
    try {
      db.exec('BEGIN IMMEDIATE');
      for (const { row } of batch) {
        insert.run(
          row.id,
          row.idempotencyKey,
          row.body.sourceAccountId,
          row.body.destinationAccountId,
          row.body.amountCents,
          row.body.currency,
          row.createdAtMs,
        );
      }
      db.exec('COMMIT');
    } catch (error) {
      if (db.inTransaction) db.exec('ROLLBACK');
      for (const p of batch) p.reject(error);
      batch.length = 0;
    }
    stats.batches += 1;
    stats.rows += batch.length;
    stats.maxBatch = Math.max(stats.maxBatch, batch.length);
    stats.maxBatchMs = Math.max(stats.maxBatchMs, performance.now() - t0);
    for (const p of batch) p.resolve();
    if (queue.length > 0) schedule();
  };
  // setImmediate runs after this loop turn's I/O callbacks: requests that arrived together commit together,
  // and requests arriving while a batch commits (it is synchronous) wait for the next one.
  const schedule = (): void => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(flush);
  };
  return {
    stats,
    write(row: Row): Promise<void> {
      return new Promise((resolve, reject) => {
        queue.push({ row, resolve, reject });
        schedule();
      });
    },
    close: () => db.close(),
  };
}

const committer = MODE === 'durable' ? groupCommitter(process.env['BASELINE_DB'] ?? 'baseline.db') : null;
const app = Fastify({ logger: false });
app.post<{ Body: Body; Headers: { 'idempotency-key': string; authorization: string } }>(
  '/v1/payments',
  { schema: { body: bodySchema, headers: headersSchema } },
  async (request, reply) => {
    if (request.headers.authorization !== `Bearer ${TOKEN}`) return reply.code(401).send({ error: 'auth' });
    if (request.body.sourceAccountId === request.body.destinationAccountId)
      return reply.code(400).send({ error: 'same account' });
    const id = `pay_${randomBytes(13).toString('hex')}`;
    const createdAtMs = Date.now();
    if (committer !== null)
      await committer.write({
        id,
        idempotencyKey: request.headers['idempotency-key'],
        body: request.body,
        createdAtMs,
      });
    return reply.code(201).send(paymentReply(id, request.body, createdAtMs));
  },
);
app.get('/stats', async () => ({ mode: MODE, ...(committer?.stats ?? {}) }));
app.addHook('onClose', async () => committer?.close());
const port = Number(process.env['PORT'] ?? 3998);
await app.listen({ port, host: '127.0.0.1' });
for (const signal of ['SIGTERM', 'SIGINT'] as const)
  process.on(signal, () => void app.close().then(() => process.exit(0)));
