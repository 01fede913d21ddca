import type { DestinationStream, Logger } from 'pino';
import { syncDemoApiKey } from './app/api-keys.ts';
import { AuditLog, backfillAuditMerkle, startCheckpointer } from './app/audit-log.ts';
import { seedDemoData } from './app/demo-data.ts';
import { loadFxDesk } from './app/fx-quotes.ts';
import { reindexCustomerDocuments } from './app/identity-index.ts';
import {
  type CheckedKeys,
  checkKeysMatchData,
  KEY_WATCH_INTERVAL_MS,
  type KeyCheckOptions,
  keysRecorded,
  startKeyWatch,
} from './app/key-rotation.ts';
import { startSweeper } from './app/maintenance.ts';
import { loadReportingRules } from './app/reports.ts';
import { createScreening, loadRiskPolicy, loadSanctionsList } from './app/risk-config.ts';
import { TestClock } from './app/sandbox.ts';
import { type Services, SYSTEM_ACTOR } from './app/services.ts';
import type { Config } from './config.ts';
import { assert } from './domain/assert.ts';
import type { Mode } from './domain/sandbox.ts';
import { buildServer } from './http/server.ts';
import type { HttpApp } from './http/types.ts';
import { createLogger } from './logger.ts';
import { Metrics } from './metrics.ts';
import { AuditSigner } from './security/audit-signer.ts';
import { type KeyMaterial, resolveKeys } from './security/dev-keys.ts';
import { PiiCipher } from './security/pii-cipher.ts';
import { Committer } from './storage/committer.ts';
import { openStore, poolMaxFor } from './storage/open-store.ts';
import type { Store } from './storage/store.ts';
import { WebhookDispatcher } from './webhooks/dispatcher.ts';

/**
 * The composition root: opens storage (running migrations), resolves keys, wires the services, ensures the
 * demo key and data, builds the HTTP server and starts background sweeps. Tests call this too, so they run
 * the real thing.
 */
export interface App {
  server: HttpApp;
  /**
   * The test mode's services: the sandbox, where the demo key and the demo data live. Most tests work there,
   * through the demo key; `modes.live` is the live data.
   */
  services: Services;
  modes: Record<Mode, Services>;
  logger: Logger;
  /** Delivers test mode's webhooks in the background; tests may also call `dispatchOnce` directly. */
  dispatcher: WebhookDispatcher;
  /** Delivers live webhooks. */
  liveDispatcher: WebhookDispatcher;
  close(): Promise<void>;
}

export interface AppOptions {
  logStream?: DestinationStream;
  clock?: () => number;
  onFatal?: (error: Error) => void;
}

export const WRITE_QUEUE_MAX = 10_000;

export interface BuildServicesOptions {
  clock: () => number;
  onFatal: (error: Error) => void;
  batchMax: number;
  /** Whether missing development keys may be created: the server outside production only, never a command. */
  mayCreateDevKeys?: boolean;
  /** 'skip' only for `keys accept-audit-key`, which records the configured audit key instead of checking it. */
  auditKeyCheck?: KeyCheckOptions['auditKey'];
  /** Which data the store holds (default live); test mode runs on `testClock` (src/app/sandbox.ts). */
  mode?: Mode;
  testClock?: TestClock;
  /**
   * The keys the live store resolved: the sandbox's store uses the same ones (so one DATA_ENCRYPTION_KEY
   * rotation covers both), and never makes development keys of its own.
   */
  keys?: KeyMaterial;
}

/**
 * Wires the services over an open store: keys (dev keys when unset), the committer, PII cipher, risk policy,
 * sanctions screening and the audit log. Shared by the server and the keys CLI, so both write the same way.
 * Before anything else writes, the keys are checked against the ones the data was written with (recorded
 * the first time): a mismatch throws KeyMismatchError, one line naming the variable.
 */
export async function buildServices(
  config: Config,
  store: Store,
  options: BuildServicesOptions,
): Promise<{
  services: Services;
  generatedKeys: string[];
  keysRecorded: CheckedKeys['recorded'];
  keys: KeyMaterial;
}> {
  const keys =
    options.keys ??
    (await resolveKeys(config, store, {
      mayCreateDevKeys: options.mayCreateDevKeys ?? false,
      keysRecorded: await keysRecorded(store),
    }));
  const mode = options.mode ?? 'live';
  assert((mode === 'test') === (options.testClock !== undefined), 'test mode, and only it, has a test clock');
  // Each mode has its own registry: GET /metrics with a test key shows the sandbox's (src/http/server.ts).
  const metrics = new Metrics({ scrapeToken: config.metricsToken, processMetrics: mode === 'live' });
  const committer = new Committer(store, {
    batchMax: options.batchMax,
    queueMax: Math.max(options.batchMax, WRITE_QUEUE_MAX),
    batchesInFlightMax: batchesInFlightMax(store, poolMaxFor(config, mode)),
    onFatal: options.onFatal,
    observer: metrics,
  });
  metrics.watch({ committer, reads: store.reads, clock: options.clock });
  const liveSigner = AuditSigner.fromConfig(keys.auditSigningKey, config.auditLogOrigin);
  // Test mode's audit log is signed by a key and name of its own (AuditSigner.sandbox).
  const signer = mode === 'test' ? liveSigner.sandbox() : liveSigner;
  const checked = await checkKeysMatchData(store, committer, keys, signer, {
    auditKey: options.auditKeyCheck ?? 'check',
  });
  const cipher = new PiiCipher(keys.dataKeys, { indexKey: checked.indexKey });
  const services: Services = {
    mode,
    testClock: options.testClock ?? null,
    store,
    committer,
    cipher,
    policy: loadRiskPolicy(config.riskPolicyPath),
    reporting: loadReportingRules(config.reportingRulesPath),
    screening: createScreening(loadSanctionsList(config.sanctionsListPath), cipher),
    clock: options.clock,
    idempotencyRetentionMs: config.idempotencyRetentionMs,
    reviewHoldExpiryMs: config.reviewHoldExpiryMs,
    fx: loadFxDesk(config.fxRatesPath, config.fxQuoteTtlMs),
    auditFullVerifyIntervalMs: config.auditFullVerifyIntervalMs,
    webhooks: config.webhooks,
    auditLog: new AuditLog(store, committer, signer),
    metrics,
  };
  return { services, generatedKeys: keys.generated, keysRecorded: checked.recorded, keys };
}

/**
 * SQLite has one writer. On PostgreSQL half the pool applies batches concurrently; the other half stays free
 * for reads (GETs, the refunds' idempotency fast path) and the background jobs.
 */
function batchesInFlightMax(store: Store, poolMax: number): number {
  return store.dialect === 'postgres' ? Math.max(1, Math.floor(poolMax / 2)) : 1;
}

export async function createApp(config: Config, options: AppOptions = {}): Promise<App> {
  const logger = createLogger(config.logLevel, options.logStream);
  const clock = options.clock ?? Date.now;
  const onFatal = options.onFatal ?? crash(logger);
  const live = await startEnvironment(config, { mode: 'live', logger, clock, onFatal });
  let test: Environment;
  try {
    test = await startEnvironment(config, {
      mode: 'test',
      logger,
      clock,
      onFatal,
      keys: live.keys,
    });
  } catch (error) {
    await live.stop();
    throw error;
  }
  const server = buildServer(
    { live: live.services, test: test.services },
    {
      logger,
      onFatal,
      limits: config.limits,
      demoToken: config.demoApiToken,
      seedDemoData: config.seedDemoData,
    },
  );
  return {
    server,
    services: test.services,
    modes: { live: live.services, test: test.services },
    logger,
    dispatcher: test.dispatcher,
    liveDispatcher: live.dispatcher,
    async close() {
      // The server first (no new requests), then each mode's background work, queue and store.
      await server.close();
      await Promise.all([live.stop(), test.stop()]);
    },
  };
}

/** How soon test mode's background work sees a test clock moved (or reset) by another process. */
const TEST_CLOCK_FOLLOW_MS = 1_000;

/** One mode's services and the background work that keeps them (src/domain/sandbox.ts: the two modes). */
interface Environment {
  services: Services;
  dispatcher: WebhookDispatcher;
  keys: KeyMaterial;
  stop(): Promise<void>;
}

interface EnvironmentOptions {
  mode: Mode;
  logger: Logger;
  clock: () => number;
  onFatal: (error: Error) => void;
  /** The test mode's: the live store's keys (see BuildServicesOptions). */
  keys?: KeyMaterial;
}

/**
 * Opens one mode's store (running migrations), wires its services, prepares its data (Merkle backfill,
 * identity re-index, the demo key and data) and starts its sweeps, checkpoints and webhook deliveries.
 */
async function startEnvironment(config: Config, options: EnvironmentOptions): Promise<Environment> {
  const { mode, logger: parentLogger, onFatal } = options;
  const logger = parentLogger.child({ mode });
  // Test mode runs on its own clock (the real one plus what POST /v1/test/clock/advance added).
  const testClock = mode === 'test' ? new TestClock(options.clock) : undefined;
  const clock = testClock?.now ?? options.clock;
  const store = await openStore(config, clock, { mode });
  let built: Awaited<ReturnType<typeof buildServices>>;
  try {
    await testClock?.refresh(store.reads);
    built = await buildServices(config, store, {
      clock,
      onFatal,
      batchMax: config.groupCommitBatchMax,
      // Production never gets here without both keys (src/config.ts); elsewhere the server may create them.
      mayCreateDevKeys: !config.production,
      mode,
      ...(testClock === undefined ? {} : { testClock }),
      ...(options.keys === undefined ? {} : { keys: options.keys }),
    });
  } catch (error) {
    // Keys that do not match the data: nothing was written; release the database before reporting.
    await store.close();
    throw error;
  }
  const { services, generatedKeys } = built;
  if (mode === 'live') warnAboutKeys(logger, generatedKeys, built.keysRecorded);
  await prepareData(config, services, logger);
  const stopFollowing =
    testClock?.follow(store.reads, TEST_CLOCK_FOLLOW_MS, (error) =>
      logger.error({ err: error }, 'reading the test clock failed'),
    ) ?? (() => {});
  const stopSweeper = startSweeper(services, config.sweepIntervalMs, (error) =>
    logger.error({ err: error }, 'maintenance sweep failed'),
  );
  // A rotation begun by another process after this one started: switch to the new data key, or stop.
  const stopKeyWatch = startKeyWatch(services, KEY_WATCH_INTERVAL_MS, {
    switched: (primary) =>
      logger.warn({ keyFingerprint: primary.slice(0, 16) }, 'switched to the newest data key'),
    stale: (message) => onFatal(new Error(message)),
    error: (error) => logger.error({ err: error }, 'key record check failed'),
  });
  const stopCheckpointer = startCheckpointer(services.auditLog, config.auditCheckpointIntervalMs, (error) =>
    logger.error({ err: error }, 'audit checkpoint failed'),
  );
  const dispatcher = new WebhookDispatcher(services, logger, {
    onAttempt: (attempt) => services.metrics.webhookAttempt(attempt.result, attempt.lagMs),
  });
  dispatcher.start();
  return {
    services,
    dispatcher,
    keys: built.keys,
    async stop() {
      stopFollowing();
      stopSweeper();
      stopKeyWatch();
      stopCheckpointer();
      await dispatcher.stop();
      await services.committer.drain();
      await store.close();
    },
  };
}

function warnAboutKeys(logger: Logger, generatedKeys: string[], recorded: CheckedKeys['recorded']): void {
  for (const variable of generatedKeys) {
    logger.warn(
      `${variable} is not set: using a generated development key kept with the data. Set it in production.`,
    );
  }
  if (recorded === 'new-primary') {
    logger.warn(
      'DATA_ENCRYPTION_KEY is a new primary key: recorded beside the previous ones. Re-encrypt with `npm run keys -- reencrypt` once every process has it, then remove the old keys (docs/deployment.md#rotating-keys)',
    );
  }
}

/**
 * What a store needs before it serves: Merkle nodes for entries written before the tree existed, customers
 * re-keyed on the canonical document index, and the demo key and data. The demo key is a test key: it exists
 * in the test store while DEMO_API_TOKEN is set, and never in the live one (revoked there if an older version
 * put it there); the demo data is seeded into test mode only.
 */
async function prepareData(config: Config, services: Services, logger: Logger): Promise<void> {
  const { committer } = services;
  // Before anything appends: entries written before the Merkle tree existed get their nodes (migration 3).
  const backfilled = await backfillAuditMerkle(services.store, committer);
  if (backfilled > 0)
    logger.info({ entries: backfilled }, 'built the audit log Merkle tree for existing entries');
  // Customers written before the canonical document index (migration 7) are re-keyed before anyone onboards.
  const reindexed = await reindexCustomerDocuments(services);
  if (reindexed.rekeyed > 0 || reindexed.duplicates.length > 0) {
    logger.info(
      { rekeyed: reindexed.rekeyed, duplicates: reindexed.duplicates.length },
      're-keyed customer document indexes on the canonical document reference',
    );
  }
  for (const duplicate of reindexed.duplicates) {
    logger.warn(duplicate, 'two customers share one canonical document reference: review them (audited)');
  }
  const test = services.mode === 'test';
  const demoKey = await syncDemoApiKey(services, SYSTEM_ACTOR, test ? config.demoApiToken : null);
  if (demoKey.change === 'revoked') {
    logger.info(
      test
        ? 'DEMO_API_TOKEN is not set: revoked the demo API key (audited)'
        : 'the demo API key is a test key now: revoked its live copy (audited)',
    );
  }
  if (demoKey.activeAdminKeys === 0) {
    logger.warn(
      `no active admin API key (${services.mode} mode): create one with \`npm run keys -- create --mode ${services.mode} --role admin --name <label>\``,
    );
  }
  if (test && config.seedDemoData && (await seedDemoData(services, SYSTEM_ACTOR)))
    logger.info('seeded the demo data (test mode)');
}

/** An invariant violation stops the process at once: corrupt state must never be served or committed. */
function crash(logger: Logger): (error: Error) => void {
  return (error) => {
    logger.fatal({ err: error }, 'invariant violated: stopping');
    process.exit(70);
  };
}
