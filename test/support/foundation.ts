import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { createApiKey } from '../../src/app/api-keys.ts';
import { SYSTEM_ACTOR } from '../../src/app/services.ts';
import type { Role } from '../../src/domain/types.ts';
import { backend, type TestApp, type TestDatabase, type TestResponse } from './harness.ts';

/**
 * Helpers for the foundation tests (auth, validation, encryption at rest, logs, config, migrations, ledger,
 * restart). Everything drives the real app; the raw-database readers exist only to look at what is at rest.
 */
export const ROLES = ['admin', 'payments', 'compliance', 'auditor'] as const satisfies readonly Role[];

/** One API key per role, created with the app's own code (there is no HTTP route for keys). */
export async function createRoleKeys(t: TestApp): Promise<Record<Role, string>> {
  const secrets = {} as Record<Role, string>;
  for (const role of ROLES) {
    const { secret } = await createApiKey(t.app.services, SYSTEM_ACTOR, role, `test ${role} key`);
    secrets[role] = secret;
  }
  return secrets;
}

/**
 * The contract's error shape: `{error: {code, message, requestId, details?}}`, the request id equal to the
 * X-Request-Id header, and never a 5xx for a client mistake.
 */
export function assertError(res: TestResponse, status: number, code: string, context = ''): void {
  const where = `${context} -> ${res.status} ${res.body.slice(0, 300)}`;
  assert.equal(res.status, status, `status ${where}`);
  assert.ok(res.json && typeof res.json === 'object', `JSON error body ${where}`);
  const error = res.json.error;
  assert.ok(error && typeof error === 'object', `an "error" object ${where}`);
  assert.equal(error.code, code, `error code ${where}`);
  assert.equal(typeof error.message, 'string', `error.message ${where}`);
  assert.ok(error.message.length > 0, `error.message is not empty ${where}`);
  assert.equal(typeof error.requestId, 'string', `error.requestId ${where}`);
  assert.equal(error.requestId, res.headers['x-request-id'], `requestId matches X-Request-Id ${where}`);
  const allowed = new Set(['code', 'message', 'requestId', 'details']);
  for (const key of Object.keys(error)) assert.ok(allowed.has(key), `unexpected error field ${key} ${where}`);
  if ('details' in error) assert.ok(Array.isArray(error.details), `details is an array ${where}`);
}

/** A JSON object from the API, shape checked by the assertions that read it. */
// biome-ignore lint/suspicious/noExplicitAny: response bodies are untyped JSON, like TestResponse.json
export type ApiObject = any;

/** Every item of a paged list (`limit`/`cursor`), following `nextCursor` to the end. */
export async function listAll(
  t: TestApp,
  path: string,
  listKey: string,
  token?: string,
): Promise<ApiObject[]> {
  const items: ApiObject[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 1000; page++) {
    const separator = path.includes('?') ? '&' : '?';
    const url: string = `${path}${separator}limit=500${cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`}`;
    const res = await t.request('GET', url, token === undefined ? {} : { token });
    assert.equal(res.status, 200, `GET ${url} -> ${res.status} ${res.body.slice(0, 200)}`);
    const pageItems = res.json[listKey];
    assert.ok(Array.isArray(pageItems), `GET ${url} carries ${listKey}`);
    items.push(...pageItems);
    if (!res.json.hasMore) return items;
    cursor = res.json.nextCursor;
    assert.equal(typeof cursor, 'string', `GET ${url}: hasMore comes with a nextCursor`);
  }
  throw new Error(`GET ${path}: more than 1000 pages`);
}

export interface StateCounts {
  customers: number;
  accounts: number;
  ledgerEntries: number;
  auditEntries: number;
}

/** What a rejected request must leave unchanged, seen through the API as the demo admin. */
export async function stateCounts(t: TestApp): Promise<StateCounts> {
  const [customers, accounts, ledgerEntries, auditEntries] = await Promise.all([
    listAll(t, '/v1/customers', 'customers'),
    listAll(t, '/v1/accounts', 'accounts'),
    listAll(t, '/v1/ledger', 'ledgerEntries'),
    listAll(t, '/v1/audit-logs', 'logs'),
  ]);
  return {
    customers: customers.length,
    accounts: accounts.length,
    ledgerEntries: ledgerEntries.length,
    auditEntries: auditEntries.length,
  };
}

/**
 * Everything the database holds, as bytes. SQLite: every file in the database's directory (the .db file, its
 * -wal and -shm, the sandbox's file, and anything else kept with the data), read raw. PostgreSQL: every row of
 * every table of both modes' schemas rendered as text (`row::text` covers every column, whatever its type).
 */
export async function rawDatabaseBytes(db: TestDatabase): Promise<Buffer> {
  if (backend === 'sqlite') {
    const dir = dirname(db.sqlitePath!);
    const files = readdirSync(dir)
      .map((name) => join(dir, name))
      .filter((path) => statSync(path).isFile());
    assert.ok(
      files.some((f) => f.endsWith('.db')),
      `the SQLite file is in ${dir}`,
    );
    return Buffer.concat(files.map((path) => readFileSync(path)));
  }
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    const tables = await client.query<{ table_name: string }>(
      "SELECT table_schema || '.' || table_name AS table_name FROM information_schema.tables WHERE table_schema IN ('public', 'sandbox') AND table_type = 'BASE TABLE'",
    );
    const chunks: string[] = [];
    for (const { table_name } of tables.rows) {
      const [schema, table] = table_name.split('.');
      const rows = await client.query<{ row: string }>(`SELECT t::text AS row FROM "${schema}"."${table}" t`);
      chunks.push(table_name, ...rows.rows.map((r) => r.row));
    }
    return Buffer.from(chunks.join('\n'), 'utf8');
  } finally {
    await client.end();
  }
}

/** The needles found in the haystack, as UTF-8 and as UTF-16LE (SQLite can store either encoding). */
export function findPlaintext(haystack: Buffer, needles: string[]): string[] {
  return needles.filter(
    (needle) =>
      haystack.includes(Buffer.from(needle, 'utf8')) || haystack.includes(Buffer.from(needle, 'utf16le')),
  );
}

export interface ProcessResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `node --import tsx src/main.ts` to completion (or until `timeoutMs`, then SIGKILL). Asynchronous, so
 * several start-ups can run at once.
 */
export function runMain(
  env: Record<string, string | undefined>,
  options: { cwd?: string; args?: string[]; timeoutMs?: number } = {},
): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, options.args ?? ['--import', 'tsx', 'src/main.ts'], {
      cwd: options.cwd ?? process.cwd(),
      env: env as NodeJS.ProcessEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    // Generous: a hung start-up must end, but a slow, loaded machine must not fail the test.
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 90_000);
    child.on('error', reject);
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr });
    });
  });
}

/**
 * Runs a command-line entry point, `node --import tsx <script> ...args`, to completion (like `runMain`), in the
 * test process's environment plus `env`.
 */
export function runScript(
  script: string,
  args: string[],
  env: Record<string, string | undefined> = {},
): Promise<ProcessResult> {
  return runMain({ ...process.env, ...env }, { args: ['--import', 'tsx', script, ...args] });
}

/** `npm run keys -- ...args` (src/cli/keys.ts), on the database and keys `env` names. */
export const runKeysCli = (env: Record<string, string | undefined>, args: string[]): Promise<ProcessResult> =>
  runScript('src/cli/keys.ts', args, env);

/** Runs the tasks with at most `limit` in flight; results in task order. */
export async function inParallel<T>(limit: number, tasks: (() => Promise<T>)[]): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const i = next++;
      results[i] = await tasks[i]!();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  return results;
}
