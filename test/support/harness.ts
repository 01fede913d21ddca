import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pg from 'pg';
import { type App, createApp } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';

/**
 * Test harness: the real app on a real database. The backend comes from the environment the test runner
 * sets (scripts/run-tests.ts): SQLite files in a temp dir by default, or a fresh database in the throwaway
 * PostgreSQL cluster when PG_TEST_ADMIN_URL is set. HTTP goes through fastify's inject (the real router,
 * hooks and serialisers; no socket).
 */
export const DEMO_TOKEN = 'demo-fintech-token';
export const TEST_DATA_KEY = Buffer.alloc(32, 7).toString('base64');

export const backend = process.env['PG_TEST_ADMIN_URL'] ? 'postgres' : 'sqlite';

export interface TestDatabase {
  url: string;
  /** The SQLite file (undefined on PostgreSQL). */
  sqlitePath?: string;
  drop(): Promise<void>;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const adminUrl = process.env['PG_TEST_ADMIN_URL'];
  if (adminUrl) {
    const name = `t_${randomBytes(6).toString('hex')}`;
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    const url = new URL(adminUrl);
    url.pathname = `/${name}`;
    return {
      url: url.toString(),
      async drop() {
        const c = new pg.Client({ connectionString: adminUrl });
        await c.connect();
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        await c.end();
      },
    };
  }
  const dir = mkdtempSync(join(tmpdir(), 'payments-test-'));
  const sqlitePath = join(dir, 'payments.db');
  return {
    url: `sqlite:${sqlitePath}`,
    sqlitePath,
    drop: async () => rmSync(dir, { recursive: true, force: true }),
  };
}

export function testEnv(databaseUrl: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    DATABASE_URL: databaseUrl,
    DEMO_API_TOKEN: DEMO_TOKEN,
    DATA_ENCRYPTION_KEY: TEST_DATA_KEY,
    LOG_LEVEL: 'info',
    // The edge limits stay on but out of reach: suites send many requests with one key (the demo token) and
    // many bad secrets from one address, and run on a busy machine. Tests of the limits set their own.
    RATE_LIMIT_PER_SECOND: '1000000',
    AUTH_FAILURE_LIMIT_PER_MINUTE: '1000000',
    // Off: a test that blocks the loop on purpose (building a big log) must not shed its own next request;
    // test/slow-clients.test.ts turns it on to test it.
    EVENT_LOOP_DELAY_MAX_MS: '0',
    // Off: tests decide when a full audit verification runs (test/bounded-reads.test.ts turns the schedule on).
    AUDIT_FULL_VERIFY_INTERVAL_MS: '0',
    ...extra,
  };
}

/** Collects log lines in memory so a test can read what the service logged. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.lines.push(
      ...chunk
        .toString('utf8')
        .split('\n')
        .filter((l) => l !== ''),
    );
    done();
  }
  text(): string {
    return this.lines.join('\n');
  }
}

export interface TestResponse {
  status: number;
  headers: Record<string, unknown>;
  body: string;
  // biome-ignore lint/suspicious/noExplicitAny: parsed JSON bodies, checked field by field by the assertions
  json: any;
}

export interface RequestOptions {
  token?: string | null;
  body?: unknown;
  headers?: Record<string, string>;
  idempotencyKey?: string;
}

export interface TestApp {
  app: App;
  db: TestDatabase;
  logs: LogCapture;
  request(method: string, url: string, options?: RequestOptions): Promise<TestResponse>;
  /** Stops the app; the database stays (for restart tests) until `destroy`. */
  close(): Promise<void>;
  destroy(): Promise<void>;
}

export interface StartOptions {
  db?: TestDatabase;
  env?: Record<string, string>;
  clock?: () => number;
  /** Called with the app before the server is ready: add hooks (e.g. onRoute) that must see every route. */
  beforeReady?: (app: App) => void;
}

export async function startTestApp(options: StartOptions = {}): Promise<TestApp> {
  const db = options.db ?? (await createTestDatabase());
  const logs = new LogCapture();
  const config = loadConfig(testEnv(db.url, options.env));
  const fatal: Error[] = [];
  const app = await createApp(config, {
    logStream: logs,
    ...(options.clock ? { clock: options.clock } : {}),
    onFatal: (error) => {
      fatal.push(error);
    },
  });
  options.beforeReady?.(app);
  await app.server.ready();
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await app.close();
    if (fatal.length > 0) throw new Error(`invariant violated during the test: ${fatal[0]!.message}`);
  };
  return {
    app,
    db,
    logs,
    request: (method, url, opts = {}) => inject(app, method, url, opts),
    close,
    async destroy() {
      await close();
      await db.drop();
    },
  };
}

/** Headers (demo token unless told otherwise, Idempotency-Key) and the JSON body of a test request. */
function requestParts(options: RequestOptions): {
  headers: Record<string, string>;
  body: string | undefined;
} {
  const headers: Record<string, string> = { ...options.headers };
  const token = options.token === undefined ? DEMO_TOKEN : options.token;
  if (token !== null) headers['authorization'] = `Bearer ${token}`;
  if (options.idempotencyKey !== undefined) headers['idempotency-key'] = options.idempotencyKey;
  if (options.body === undefined) return { headers, body: undefined };
  headers['content-type'] ??= 'application/json';
  return { headers, body: typeof options.body === 'string' ? options.body : JSON.stringify(options.body) };
}

export async function inject(
  app: App,
  method: string,
  url: string,
  options: RequestOptions = {},
): Promise<TestResponse> {
  const { headers, body: payload } = requestParts(options);
  const res = await app.server.inject({
    method: method as 'GET',
    url,
    headers,
    ...(payload === undefined ? {} : { payload }),
  });
  let json: unknown;
  try {
    json = res.body === '' ? undefined : JSON.parse(res.body);
  } catch {
    json = undefined;
  }
  return { status: res.statusCode, headers: res.headers, body: res.body, json };
}

/** A controllable clock for windows and expiry. */
export function manualClock(startMs = Date.UTC(2026, 0, 1)): {
  now: () => number;
  advance(ms: number): void;
} {
  let t = startMs;
  return {
    now: () => t,
    advance: (ms) => {
      t += ms;
    },
  };
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

export interface ServerProcess {
  child: ChildProcess;
  port: number;
  baseUrl: string;
  output(): string;
  /** Resolves with the exit code (or signal) once the process has ended. */
  exited: Promise<number | string | null>;
}

/** Starts `src/main.ts` as a real process (for restart, SIGTERM and kill -9 tests) and waits for /health. */
export async function spawnServer(env: Record<string, string>, timeoutMs = 20_000): Promise<ServerProcess> {
  const port = await freePort();
  let out = '';
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | string | null>((resolve) =>
    child.on('exit', (code, signal) => resolve(code ?? signal)),
  );
  const baseUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`server exited early:\n${out}`);
    try {
      const res = await fetch(`${baseUrl}/health`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`server did not start in time:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { child, port, baseUrl, output: () => out, exited };
}

export async function http(
  baseUrl: string,
  method: string,
  path: string,
  options: RequestOptions = {},
): Promise<TestResponse> {
  const { headers, body } = requestParts(options);
  const res = await fetch(`${baseUrl}${path}`, { method, headers, ...(body === undefined ? {} : { body }) });
  const text = await res.text();
  let json: unknown;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: Object.fromEntries(res.headers.entries()), body: text, json };
}

/** Listens on a free loopback port (for tests that need a real socket: timeouts, Node's parser errors). */
export async function listenOnLoopback(t: TestApp): Promise<number> {
  await t.app.server.listen({ port: 0, host: '127.0.0.1' });
  const address = t.app.server.server.address();
  if (typeof address !== 'object' || address === null) throw new Error('not listening');
  return address.port;
}

export interface RawExchange {
  /** Everything the server sent before the connection closed (or the wait ended). */
  received: string;
  /** Whether the server closed the connection within the wait. */
  closed: boolean;
  elapsedMs: number;
  /** The first response in `received`, parsed (undefined when nothing came back). */
  response?: { status: number; headers: Record<string, string>; body: string; json: unknown };
}

/**
 * Writes raw bytes to the server and waits until it closes the connection or `waitMs` passes. For what
 * fetch and inject cannot send: stalled bodies, oversized headers, bytes that are not HTTP.
 */
export function rawHttp(port: number, payload: string, waitMs: number): Promise<RawExchange> {
  return new Promise((resolve) => {
    const startedMs = Date.now();
    let received = '';
    let done = false;
    const socket = connect(port, '127.0.0.1', () => socket.write(payload));
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ received, closed, elapsedMs: Date.now() - startedMs, ...parseRawResponse(received) });
    };
    const timer = setTimeout(() => finish(false), waitMs);
    socket.on('data', (chunk) => {
      received += chunk.toString('utf8');
    });
    socket.on('close', () => finish(true));
    socket.on('error', () => finish(true));
  });
}

function parseRawResponse(text: string): Pick<RawExchange, 'response'> {
  const headEnd = text.indexOf('\r\n\r\n');
  if (headEnd < 0) return {};
  const [statusLine, ...lines] = text.slice(0, headEnd).split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const length = Number(headers['content-length'] ?? 0);
  const body = text.slice(headEnd + 4, headEnd + 4 + length);
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    json = undefined;
  }
  return { response: { status: Number(statusLine!.split(' ')[1]), headers, body, json } };
}
