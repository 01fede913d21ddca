import { createPrivateKey } from 'node:crypto';
import { KEY_NAME_PATTERN } from './domain/signed-note.ts';

/**
 * Configuration from the environment (and `.env`, loaded by main; the environment wins). Every variable is
 * parsed here, once; a bad value throws a ConfigError naming the variable, and main prints that one line.
 * Values of secret variables are never echoed.
 */
export type DatabaseConfig =
  | { kind: 'sqlite'; path: string }
  | { kind: 'sqlite-memory' }
  | { kind: 'postgres'; url: string };

export interface Config {
  port: number;
  host: string;
  database: DatabaseConfig;
  demoApiToken: string | null;
  seedDemoData: boolean;
  /** Base64 32-byte keys; the first encrypts, the rest only decrypt (rotation). Null: use a dev key. */
  dataEncryptionKeys: Buffer[] | null;
  auditSigningKey: string | null;
  /** The audit log's checkpoint origin, also its signing key's name (C2SP signed-note). */
  auditLogOrigin: string;
  auditCheckpointIntervalMs: number;
  logLevel: string;
  idempotencyRetentionMs: number;
  sweepIntervalMs: number;
  groupCommitBatchMax: number;
  pgPoolMax: number;
  /** A risk policy JSON file; null: the built-in seed policy. */
  riskPolicyPath: string | null;
  /** Regulatory reporting rules (a JSON file); null: the built-in rules (src/domain/default-reporting-rules.ts). */
  reportingRulesPath: string | null;
  /** A sanctions list in OFAC sdn.csv format; null: the synthetic sample in config/sanctions. */
  sanctionsListPath: string | null;
  /** A payment held for review longer than this is declined and its hold released by the sweep. */
  reviewHoldExpiryMs: number;
  /** FX rates JSON file (`{"rates": {"USD/EUR": "0.9235"}}`); null: the demo rates in config/fx-rates.json. */
  fxRatesPath: string | null;
  /** How long an FX quote can be used for a payment after it was created. */
  fxQuoteTtlMs: number;
  /** The audit log's full re-verification runs when the last one (in any process) is older than this; 0: never. */
  auditFullVerifyIntervalMs: number;
  webhooks: WebhookConfig;
  limits: LimitsConfig;
  /** A bearer token GET /metrics accepts besides admin and auditor API keys (null: API keys only). */
  metricsToken: string | null;
  /** NODE_ENV=production: refuses dev keys, a demo token and demo data (see docs/deployment.md). */
  production: boolean;
}

/** Abuse resistance: what one client (an API key, an address, a connection) may cost the others. */
export interface LimitsConfig {
  /** Requests per second per API key (token bucket refill); 0 turns per-key limiting off. */
  rateLimitPerSecond: number;
  /** Bucket size per API key: the burst a key may send at once. */
  rateLimitBurst: number;
  /** Failed authentications per client address per minute before 429. */
  authFailureLimitPerMinute: number;
  /** A request whose headers and body have not fully arrived within this is answered 408 and closed. */
  requestTimeoutMs: number;
  /** Open connections per process; beyond it new connections are refused. */
  connectionsMax: number;
  /** Event-loop delay beyond which new requests are shed with 503 + Retry-After; 0 turns shedding off. */
  eventLoopDelayMaxMs: number;
}

export interface WebhookConfig {
  /** Allow targets on private, loopback and link-local addresses (local development only). */
  allowPrivateTargets: boolean;
  /** Attempts per delivery before it is marked failed. */
  maxAttempts: number;
  /** First retry delay; each further retry doubles it (with jitter), up to backoffMaxMs. */
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** A receiver that has not answered within this is a failed attempt. */
  timeoutMs: number;
  /** How often each process looks for due deliveries. */
  dispatchIntervalMs: number;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
  }
}

type Env = Record<string, string | undefined>;

/** A mistyped NODE_ENV ("prod", "Production") must not quietly run a production database in development mode. */
const NODE_ENVS = ['development', 'production', 'test'];
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
const HOUR_MS = 3_600_000;
/** Older data keys kept for decryption: a rotation needs one; a few cover rotations that overlap. */
const PREVIOUS_DATA_KEYS_MAX = 8;

export function loadConfig(env: Env): Config {
  const rateLimitPerSecond = integer(env, 'RATE_LIMIT_PER_SECOND', 1000, 0, 1_000_000);
  const config: Config = {
    port: integer(env, 'PORT', 3000, 0, 65535),
    host: nonEmpty(env, 'HOST', '127.0.0.1'),
    database: databaseUrl(env),
    demoApiToken: demoApiToken(env),
    seedDemoData: boolean(env, 'SEED_DEMO_DATA', true),
    dataEncryptionKeys: dataKeys(env),
    auditSigningKey: auditKey(env),
    auditLogOrigin: keyName(env, 'AUDIT_LOG_ORIGIN', 'localhost/payments-audit'),
    auditCheckpointIntervalMs: integer(env, 'AUDIT_CHECKPOINT_INTERVAL_MS', 1000, 10, 86_400_000),
    logLevel: oneOf(env, 'LOG_LEVEL', 'info', LOG_LEVELS),
    idempotencyRetentionMs: integer(env, 'IDEMPOTENCY_RETENTION_HOURS', 24, 24, 24 * 365) * HOUR_MS,
    sweepIntervalMs: integer(env, 'SWEEP_INTERVAL_MS', 60_000, 10, 86_400_000),
    groupCommitBatchMax: integer(env, 'GROUP_COMMIT_BATCH_MAX', 64, 1, 1024),
    pgPoolMax: integer(env, 'PG_POOL_MAX', 10, 1, 200),
    riskPolicyPath: raw(env, 'RISK_POLICY_PATH') ?? null,
    reportingRulesPath: raw(env, 'REPORTING_RULES_PATH') ?? null,
    sanctionsListPath: raw(env, 'SANCTIONS_LIST_PATH') ?? null,
    reviewHoldExpiryMs: integer(env, 'REVIEW_HOLD_EXPIRY_HOURS', 72, 1, 24 * 365) * HOUR_MS,
    fxRatesPath: raw(env, 'FX_RATES_PATH') ?? null,
    fxQuoteTtlMs: integer(env, 'FX_QUOTE_TTL_SECONDS', 60, 1, 3600) * 1000,
    auditFullVerifyIntervalMs: intervalOrOff(
      env,
      'AUDIT_FULL_VERIFY_INTERVAL_MS',
      24 * HOUR_MS,
      1000,
      365 * 24 * HOUR_MS,
    ),
    webhooks: {
      allowPrivateTargets: boolean(env, 'WEBHOOK_ALLOW_PRIVATE_TARGETS', false),
      maxAttempts: integer(env, 'WEBHOOK_MAX_ATTEMPTS', 8, 1, 50),
      backoffBaseMs: integer(env, 'WEBHOOK_BACKOFF_BASE_MS', 1000, 1, 3_600_000),
      backoffMaxMs: integer(env, 'WEBHOOK_BACKOFF_MAX_MS', 3_600_000, 1, 86_400_000),
      timeoutMs: integer(env, 'WEBHOOK_TIMEOUT_MS', 10_000, 10, 120_000),
      dispatchIntervalMs: integer(env, 'WEBHOOK_DISPATCH_INTERVAL_MS', 1000, 5, 60_000),
    },
    limits: {
      rateLimitPerSecond,
      rateLimitBurst: integer(env, 'RATE_LIMIT_BURST', Math.max(1, 2 * rateLimitPerSecond), 1, 10_000_000),
      authFailureLimitPerMinute: integer(env, 'AUTH_FAILURE_LIMIT_PER_MINUTE', 60, 1, 1_000_000),
      requestTimeoutMs: integer(env, 'REQUEST_TIMEOUT_MS', 30_000, 100, 600_000),
      connectionsMax: integer(env, 'CONNECTIONS_MAX', 10_000, 1, 1_000_000),
      eventLoopDelayMaxMs: integer(env, 'EVENT_LOOP_DELAY_MAX_MS', 1000, 0, 60_000),
    },
    metricsToken: metricsToken(env),
    production: oneOf(env, 'NODE_ENV', 'development', NODE_ENVS) === 'production',
  };
  // After every value parsed: a malformed value is named first, then what production does not allow.
  if (config.production) refuseDevelopmentSettings(env, config);
  return config;
}

/**
 * NODE_ENV=production refuses what only suits a laptop: generated development keys (kept beside the data, so
 * a copy of the database is a copy of its keys), the demo admin token, and the demo customers with their
 * minted balances (SEED_DEMO_DATA defaults to true for the quick start, so production must say false).
 */
function refuseDevelopmentSettings(env: Env, config: Config): void {
  const why = 'when NODE_ENV=production';
  if (config.dataEncryptionKeys === null) {
    throw new ConfigError('DATA_ENCRYPTION_KEY', `must be set ${why} (openssl rand -base64 32)`);
  }
  if (config.auditSigningKey === null) {
    throw new ConfigError('AUDIT_SIGNING_KEY', `must be set ${why} (an Ed25519 private key)`);
  }
  if (config.demoApiToken !== null) {
    throw new ConfigError('DEMO_API_TOKEN', `must not be set ${why} (it is a well-known admin secret)`);
  }
  if (raw(env, 'SEED_DEMO_DATA') === undefined || config.seedDemoData) {
    throw new ConfigError(
      'SEED_DEMO_DATA',
      `must be set to false ${why} (demo customers and minted balances)`,
    );
  }
  if (config.webhooks.allowPrivateTargets) {
    throw new ConfigError(
      'WEBHOOK_ALLOW_PRIVATE_TARGETS',
      `must not be true ${why} (it turns off the SSRF guard on webhook URLs)`,
    );
  }
}

function raw(env: Env, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value === '' ? undefined : value;
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const value = raw(env, name);
  if (value === undefined) return fallback;
  if (!/^[0-9]{1,16}$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new ConfigError(name, `must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  return Number(value);
}

/** An interval in ms within [min, max], or 0 for off. */
function intervalOrOff(env: Env, name: string, fallback: number, min: number, max: number): number {
  const value = integer(env, name, fallback, 0, max);
  if (value !== 0 && value < min) throw new ConfigError(name, `must be 0 (off) or from ${min} to ${max}`);
  return value;
}

function nonEmpty(env: Env, name: string, fallback: string): string {
  const value = raw(env, name) ?? fallback;
  if (value.trim() !== value) throw new ConfigError(name, 'must not have surrounding spaces');
  return value;
}

function boolean(env: Env, name: string, fallback: boolean): boolean {
  const value = raw(env, name);
  if (value === undefined) return fallback;
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw new ConfigError(name, `must be true or false, got ${JSON.stringify(value)}`);
}

function oneOf(env: Env, name: string, fallback: string, allowed: string[]): string {
  const value = raw(env, name) ?? fallback;
  if (!allowed.includes(value)) throw new ConfigError(name, `must be one of ${allowed.join(', ')}`);
  return value;
}

function optionalSecret(env: Env, name: string): string | null {
  const value = raw(env, name);
  if (value === undefined) return null;
  if (!/^[\x21-\x7E]{8,512}$/.test(value)) {
    throw new ConfigError(name, 'must be 8 to 512 printable characters without spaces');
  }
  return value;
}

/** DEMO_API_TOKEN: a test-mode key's secret, so never one that names live mode (src/domain/sandbox.ts). */
function demoApiToken(env: Env): string | null {
  const value = optionalSecret(env, 'DEMO_API_TOKEN');
  if (value?.startsWith('sk_live_')) {
    throw new ConfigError('DEMO_API_TOKEN', 'is a test-mode key: it must not start with sk_live_');
  }
  return value;
}

/** METRICS_TOKEN: a scraper's secret, long enough not to be guessed (openssl rand -base64 32 gives 44). */
function metricsToken(env: Env): string | null {
  const value = raw(env, 'METRICS_TOKEN');
  if (value === undefined) return null;
  if (!/^[\x21-\x7E]{32,512}$/.test(value)) {
    throw new ConfigError(
      'METRICS_TOKEN',
      'must be 32 to 512 printable characters without spaces (openssl rand -base64 32)',
    );
  }
  // It reads live mode's metrics: a test key's prefix would route it to the sandbox's copy of the API.
  if (value.startsWith('sk_test_')) throw new ConfigError('METRICS_TOKEN', 'must not start with sk_test_');
  return value;
}

function databaseUrl(env: Env): DatabaseConfig {
  const value = raw(env, 'DATABASE_URL') ?? 'sqlite:./data/payments.db';
  if (value === 'sqlite::memory:') return { kind: 'sqlite-memory' };
  if (value.startsWith('sqlite:') && value.length > 'sqlite:'.length) {
    return { kind: 'sqlite', path: value.slice('sqlite:'.length) };
  }
  if (/^postgres(ql)?:\/\/./.test(value)) {
    try {
      new URL(value);
    } catch {
      throw new ConfigError('DATABASE_URL', 'is not a valid postgres:// URL');
    }
    return { kind: 'postgres', url: value };
  }
  throw new ConfigError(
    'DATABASE_URL',
    'must be sqlite:<path>, sqlite::memory: or postgres://user:pass@host:port/db',
  );
}

function base64Key(name: string, value: string): Buffer {
  const bytes = Buffer.from(value, 'base64');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(value) || bytes.length !== 32) {
    throw new ConfigError(name, 'must be 32 bytes encoded as base64 (openssl rand -base64 32)');
  }
  return bytes;
}

function dataKeys(env: Env): Buffer[] | null {
  const primary = raw(env, 'DATA_ENCRYPTION_KEY');
  const previous = raw(env, 'DATA_ENCRYPTION_KEYS_PREVIOUS');
  if (primary === undefined) {
    if (previous !== undefined)
      throw new ConfigError('DATA_ENCRYPTION_KEYS_PREVIOUS', 'needs DATA_ENCRYPTION_KEY');
    return null;
  }
  const older = (previous ?? '').split(',').filter((s) => s !== '');
  if (older.length > PREVIOUS_DATA_KEYS_MAX) {
    throw new ConfigError('DATA_ENCRYPTION_KEYS_PREVIOUS', `holds at most ${PREVIOUS_DATA_KEYS_MAX} keys`);
  }
  return [
    base64Key('DATA_ENCRYPTION_KEY', primary),
    ...older.map((k) => base64Key('DATA_ENCRYPTION_KEYS_PREVIOUS', k)),
  ];
}

function auditKey(env: Env): string | null {
  const value = raw(env, 'AUDIT_SIGNING_KEY');
  if (value === undefined) return null;
  if (value.includes('-----BEGIN PRIVATE KEY-----')) {
    let type: string | undefined;
    try {
      type = createPrivateKey(value).asymmetricKeyType;
    } catch {
      // reported below
    }
    if (type !== 'ed25519') throw new ConfigError('AUDIT_SIGNING_KEY', 'must be an Ed25519 private key');
    return value;
  }
  base64Key('AUDIT_SIGNING_KEY', value);
  return value;
}

/** A C2SP key name: one printable ASCII word without '+' (e.g. example.com/payments-audit). */
function keyName(env: Env, name: string, fallback: string): string {
  const value = raw(env, name) ?? fallback;
  if (!KEY_NAME_PATTERN.test(value)) {
    throw new ConfigError(
      name,
      "must be printable ASCII without spaces or '+' (e.g. example.com/payments-audit)",
    );
  }
  return value;
}
