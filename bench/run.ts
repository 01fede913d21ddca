import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import pg from 'pg';
import { findPgBin, startPgCluster } from '../scripts/pg-cluster.ts';
import { freePort } from '../test/support/harness.ts';
import { writeChart } from './chart.ts';
import { type OpenLoopRequest, type OpenLoopResult, openLoop } from './open-loop.ts';
import { preloadSqlite } from './preload.ts';

/**
 * `npm run bench`: durable payments through the full pipeline, measured against a fastify hello-world on the
 * same machine in the same run. Starts everything itself (SQLite in a temp dir; PostgreSQL when installed),
 * funds accounts, drives POST /v1/payments with autocannon (unique Idempotency-Keys, random account pairs),
 * and writes JSON + an SVG chart under bench/results/.
 *
 *   npm run bench -- --duration 10 --accounts 1000 --concurrency 1,8,32,64,128 [--scale] [--no-postgres]
 *   npm run bench -- --no-sqlite   (PostgreSQL only)
 */
const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    accounts: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '1,8,32,64,128' },
    scale: { type: 'boolean', default: false },
    'scale-accounts': { type: 'string', default: '1000000' },
    'scale-entries': { type: 'string', default: '10000000' },
    'no-postgres': { type: 'boolean', default: false },
    'no-sqlite': { type: 'boolean', default: false },
  },
});
const DURATION_S = Number(args.duration);
const LEVELS = args.concurrency.split(',').map(Number);
const TOKEN = 'bench-token-0001';
const DATA_KEY = Buffer.alloc(32, 9).toString('base64');
const OPENING_CENTS = 1_000_000_000;
const OPEN_LOOP_FRACTIONS = [0.4, 0.6, 0.8];

interface Point {
  concurrency: number;
  paymentsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  statuses: Record<string, number>;
}

async function startProcess(
  argv: string[],
  env: Record<string, string>,
  readyPath = '/health',
): Promise<{ child: ChildProcess; url: string }> {
  const port = await freePort();
  const child = spawn(process.execPath, argv, {
    env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 600; i++) {
    try {
      if ((await fetch(`${url}${readyPath}`)).ok) return { child, url };
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGKILL');
  throw new Error(`process ${argv.join(' ')} did not start`);
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.on('exit', r));
  child.kill('SIGTERM');
  await exited;
}

function summarize(concurrency: number, r: autocannon.Result): Point {
  const statuses: Record<string, number> = {};
  for (const [code, stat] of Object.entries(r.statusCodeStats ?? {}))
    statuses[code] = (stat as { count: number }).count;
  return {
    concurrency,
    paymentsPerSecond: Math.round(r.requests.average),
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    errors: r.errors + r.timeouts,
    statuses,
  };
}

/** A payment between a random pair of accounts, under a fresh Idempotency-Key. */
function paymentRequest(accounts: string[]): OpenLoopRequest {
  const i = Math.floor(Math.random() * accounts.length);
  const j = (i + 1 + Math.floor(Math.random() * (accounts.length - 1))) % accounts.length;
  return {
    path: '/v1/payments',
    headers: {
      'content-type': 'application/json',
      authorization: `Bearer ${TOKEN}`,
      'idempotency-key': randomUUID(),
    },
    body: JSON.stringify({
      sourceAccountId: accounts[i],
      destinationAccountId: accounts[j],
      amountCents: 1 + Math.floor(Math.random() * 100),
      currency: 'USD',
    }),
  };
}

/** Closed loop: `connections` clients, each sending its next payment when the last is answered. */
async function drivePayments(url: string, accounts: string[], connections: number): Promise<Point> {
  const result = await autocannon({
    url,
    connections,
    duration: DURATION_S,
    requests: [
      {
        method: 'POST',
        path: '/v1/payments',
        setupRequest: (req) => ({ ...req, ...paymentRequest(accounts) }),
      },
    ],
  });
  return summarize(connections, result);
}

async function helloCeiling(): Promise<Point> {
  const { child, url } = await startProcess(['--import', 'tsx', 'bench/hello-server.ts'], {}, '/hello');
  try {
    const r = await autocannon({ url: `${url}/hello`, connections: 64, duration: DURATION_S });
    return summarize(64, r);
  } finally {
    await stop(child);
  }
}

/**
 * The seed policy with its two per-minute fraud rules (velocity, repeated pattern) set out of reach. The load
 * generator is one client sending ~1,000 payments/s between a few accounts, which those rules rightly send to
 * review; whether they do depends on accounts ÷ rate, so the small and the 1M-account cases would take
 * different paths (hold vs. posting) and not be comparable. Every rule still runs and every counter is still
 * read and written: only the outcome is the same, `posted`, the path that writes the most.
 */
function benchPolicyPath(): string {
  const policy = JSON.parse(readFileSync('config/risk-policy.example.json', 'utf8')) as {
    version: string;
    rules: { id: string; all?: { value: unknown }[] }[];
  };
  for (const rule of policy.rules) {
    if (rule.id === 'velocity' || rule.id === 'repeated_pattern') rule.all![0]!.value = 1_000_000_000;
  }
  policy.version = `${policy.version}-bench`;
  const path = join(mkdtempSync(join(tmpdir(), 'payments-bench-policy-')), 'risk-policy.json');
  writeFileSync(path, JSON.stringify(policy));
  return path;
}
const BENCH_POLICY_PATH = benchPolicyPath();

function serverEnv(databaseUrl: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    DATABASE_URL: databaseUrl,
    DEMO_API_TOKEN: TOKEN,
    DATA_ENCRYPTION_KEY: DATA_KEY,
    SEED_DEMO_DATA: 'false',
    LOG_LEVEL: 'warn',
    RISK_POLICY_PATH: BENCH_POLICY_PATH,
    // One key sends everything, past its rate limit by design, and overload is the point of the top levels:
    // the bench measures the pipeline, not the limits in front of it.
    RATE_LIMIT_PER_SECOND: '0',
    EVENT_LOOP_DELAY_MAX_MS: '0',
    ...extra,
  };
}

async function sweep(url: string, accounts: string[], label: string): Promise<Point[]> {
  const points: Point[] = [];
  for (const c of LEVELS) {
    const p = await drivePayments(url, accounts, c);
    process.stdout.write(
      `  ${label} c=${String(c).padStart(3)}  ${String(p.paymentsPerSecond).padStart(6)} payments/s  p50 ${p.p50Ms} ms  p99 ${p.p99Ms} ms  ${JSON.stringify(p.statuses)}\n`,
    );
    points.push(p);
  }
  return points;
}

async function sqliteCase(accountsN: number, transfers: number, label: string) {
  const dir = mkdtempSync(join(tmpdir(), 'payments-bench-'));
  try {
    const path = join(dir, 'payments.db');
    const t0 = Date.now();
    const accounts = preloadSqlite({
      path,
      accounts: accountsN,
      transfers,
      openingBalanceCents: OPENING_CENTS,
      dataKeyBase64: DATA_KEY,
    });
    process.stdout.write(
      `  preloaded ${accountsN} accounts, ${2 * (accountsN + transfers)} ledger entries in ${Date.now() - t0} ms\n`,
    );
    const { child, url } = await startProcess(
      ['--import', 'tsx', 'src/main.ts'],
      serverEnv(`sqlite:${path}`),
    );
    try {
      const points = await sweep(url, accounts, label);
      const peak = points.reduce((a, b) => (b.paymentsPerSecond > a.paymentsPerSecond ? b : a));
      // Open loop at fixed fractions of the peak: where the p99 stays low, and what it is at 80 %.
      const openLoopPoints: OpenLoopResult[] = [];
      for (const fraction of OPEN_LOOP_FRACTIONS) {
        const r = await openLoop(url, Math.round(peak.paymentsPerSecond * fraction), DURATION_S, () =>
          paymentRequest(accounts),
        );
        process.stdout.write(
          `  ${label} open loop at ${fraction * 100}% of peak (${r.ratePerSecond}/s): p50 ${r.p50Ms} ms  p99 ${r.p99Ms} ms  max ${r.maxMs} ms  ${JSON.stringify(r.statuses)}\n`,
        );
        openLoopPoints.push(r);
      }
      const at80 = openLoopPoints[OPEN_LOOP_FRACTIONS.indexOf(0.8)]!;
      return { points, peak, openLoop: openLoopPoints, at80 };
    } finally {
      await stop(child);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function fundViaApi(url: string, n: number): Promise<string[]> {
  const ids: string[] = [];
  const post = async (path: string, body: unknown) => {
    const res = await fetch(`${url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify(body),
    });
    return (await res.json()) as Record<string, { id: string }>;
  };
  for (let i = 0; i < n; i++) {
    const c = await post('/v1/customers', {
      name: `Bench ${i}`,
      country: 'US',
      documentReference: `BENCH-${randomUUID()}`,
    });
    const a = await post('/v1/accounts', {
      customerId: c['customer']!.id,
      currency: 'USD',
      initialBalanceCents: OPENING_CENTS,
    });
    ids.push(a['account']!.id);
  }
  return ids;
}

async function postgresCase(accountsN: number) {
  const cluster = startPgCluster(await freePort());
  try {
    const admin = new pg.Client({ connectionString: cluster.adminUrl });
    await admin.connect();
    const results: Record<string, Point[]> = {};
    for (const [label, batchMax] of [
      ['postgres, one transaction per payment', '1'],
      ['postgres, group commit', '64'],
    ] as const) {
      const db = `bench_${batchMax}`;
      await admin.query(`CREATE DATABASE ${db}`);
      const url = new URL(cluster.adminUrl);
      url.pathname = `/${db}`;
      const { child, url: base } = await startProcess(
        ['--import', 'tsx', 'src/main.ts'],
        serverEnv(url.toString(), { GROUP_COMMIT_BATCH_MAX: batchMax, PG_POOL_MAX: '10' }),
      );
      try {
        const accounts = await fundViaApi(base, Math.min(accountsN, 200));
        results[label] = await sweep(base, accounts, label);
      } finally {
        await stop(child);
      }
    }
    await admin.end();
    return results;
  } finally {
    cluster.stop();
  }
}

const machine = {
  cpus: cpus().length,
  cpuModel: cpus()[0]?.model ?? 'unknown',
  memoryGiB: Math.round(totalmem() / 2 ** 30),
  node: process.version,
};
process.stdout.write(`machine: ${JSON.stringify(machine)}\n`);
const hello = await helloCeiling();
process.stdout.write(`hello-world ceiling: ${hello.paymentsPerSecond} req/s (c=64), p99 ${hello.p99Ms} ms\n`);
const report: Record<string, unknown> = {
  machine,
  durationSeconds: DURATION_S,
  helloWorldRequestsPerSecond: hello.paymentsPerSecond,
};
if (!args['no-sqlite']) {
  const small = await sqliteCase(Number(args.accounts), 0, 'sqlite');
  const ratioToHelloWorld = +(small.peak.paymentsPerSecond / hello.paymentsPerSecond).toFixed(3);
  report['sqlite'] = { ...small, ratioToHelloWorld };
  process.stdout.write(
    `sqlite peak ${small.peak.paymentsPerSecond}/s = ${ratioToHelloWorld} × hello-world\n`,
  );
  if (args.scale) {
    const transfers = Math.max(0, Number(args['scale-entries']) / 2 - Number(args['scale-accounts']));
    const scale = await sqliteCase(Number(args['scale-accounts']), transfers, 'sqlite-scale');
    report['sqliteScale'] = {
      ...scale,
      slowdownVsSmall: +(small.peak.paymentsPerSecond / scale.peak.paymentsPerSecond).toFixed(3),
    };
  }
}
if (!args['no-postgres'] && findPgBin() !== null) {
  const pgResults = await postgresCase(Number(args.accounts));
  const peakOf = (points: Point[] | undefined) => Math.max(...(points ?? []).map((p) => p.paymentsPerSecond));
  const single = peakOf(pgResults['postgres, one transaction per payment']);
  const grouped = peakOf(pgResults['postgres, group commit']);
  report['postgres'] = { ...pgResults, groupCommitSpeedup: +(grouped / single).toFixed(2) };
  process.stdout.write(
    `postgres: group commit ${grouped}/s vs one transaction per payment ${single}/s = ${(grouped / single).toFixed(2)}×\n`,
  );
}
mkdirSync('bench/results', { recursive: true });
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
writeFileSync(`bench/results/${stamp}.json`, `${JSON.stringify(report, null, 2)}\n`);
writeChart(`bench/results/${stamp}.svg`, report);
process.stdout.write(`wrote bench/results/${stamp}.json and .svg\n`);
