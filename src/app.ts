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
import { type Services, SYSTEM_ACTOR } from './app/services.ts';
import type { Config } from './config.ts';
import { buildServer } from './http/server.ts';
import type { HttpApp } from './http/types.ts';
import { createLogger } from './logger.ts';
import { Metrics } from './metrics.ts';
import { AuditSigner } from './security/audit-signer.ts';
import { resolveKeys } from './security/dev-keys.ts';
import { PiiCipher } from './security/pii-cipher.ts';
import { Committer } from './storage/committer.ts';
import { openStore } from './storage/open-store.ts';
import type { Store } from './storage/store.ts';
import { WebhookDispatcher } from './webhooks/dispatcher.ts';

/**
 * The composition root: opens storage (running migrations), resolves keys, wires the services, ensures the
 * demo key and data, builds the HTTP server and starts background sweeps. Tests call this too, so they run
 * the real thing.
 */
export interface App {
  server: HttpApp;
  services: Services;
  logger: Logger;
  /** Delivers webhooks in the background; tests may also call `dispatchOnce` directly. */
  dispatcher: WebhookDispatcher;
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
): Promise<{ services: Services; generatedKeys: string[]; keysRecorded: CheckedKeys['recorded'] }> {
  const keys = await resolveKeys(config, store, {
    mayCreateDevKeys: options.mayCreateDevKeys ?? false,
    keysRecorded: await keysRecorded(store),
  });
  const metrics = new Metrics({ scrapeToken: config.metricsToken });
  const committer = new Committer(store, {
    batchMax: options.batchMax,
    queueMax: Math.max(options.batchMax, WRITE_QUEUE_MAX),
    batchesInFlightMax: batchesInFlightMax(store, config),
    onFatal: options.onFatal,
    observer: metrics,
  });
  metrics.watch({ committer, reads: store.reads, clock: options.clock });
  const signer = AuditSigner.fromConfig(keys.auditSigningKey, config.auditLogOrigin);
  const checked = await checkKeysMatchData(store, committer, keys, signer, {
    auditKey: options.auditKeyCheck ?? 'check',
  });
  const cipher = new PiiCipher(keys.dataKeys, { indexKey: checked.indexKey });
  const services: Services = {
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
  return { services, generatedKeys: keys.generated, keysRecorded: checked.recorded };
}

/**
 * SQLite has one writer. On PostgreSQL half the pool applies batches concurrently; the other half stays free
 * for reads (GETs, the refunds' idempotency fast path) and the background jobs.
 */
function batchesInFlightMax(store: Store, config: Config): number {
  return store.dialect === 'postgres' ? Math.max(1, Math.floor(config.pgPoolMax / 2)) : 1;
}

export async function createApp(config: Config, options: AppOptions = {}): Promise<App> {
  const logger = createLogger(config.logLevel, options.logStream);
  const clock = options.clock ?? Date.now;
  const onFatal = options.onFatal ?? crash(logger);
  const store = await openStore(config, clock);
  let built: Awaited<ReturnType<typeof buildServices>>;
  try {
    built = await buildServices(config, store, {
      clock,
      onFatal,
      batchMax: config.groupCommitBatchMax,
      // Production never gets here without both keys (src/config.ts); elsewhere the server may create them.
      mayCreateDevKeys: !config.production,
    });
  } catch (error) {
    // Keys that do not match the data: nothing was written; release the database before reporting.
    await store.close();
    throw error;
  }
  const { services, generatedKeys } = built;
  for (const variable of generatedKeys) {
    logger.warn(
      `${variable} is not set: using a generated development key kept with the data. Set it in production.`,
    );
  }
  if (built.keysRecorded === 'new-primary') {
    logger.warn(
      'DATA_ENCRYPTION_KEY is a new primary key: recorded beside the previous ones. Re-encrypt with `npm run keys -- reencrypt` once every process has it, then remove the old keys (docs/deployment.md#rotating-keys)',
    );
  }
  const { committer } = services;
  // Before anything appends: entries written before the Merkle tree existed get their nodes (migration 3).
  const backfilled = await backfillAuditMerkle(store, committer);
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
  // The demo key exists exactly while DEMO_API_TOKEN is set: created or re-activated with it, revoked without.
  const demoKey = await syncDemoApiKey(services, SYSTEM_ACTOR, config.demoApiToken);
  if (demoKey.change === 'revoked')
    logger.info('DEMO_API_TOKEN is not set: revoked the demo API key (audited)');
  if (demoKey.activeAdminKeys === 0) {
    logger.warn(
      'no active admin API key: create one with `npm run keys -- create --role admin --name <label>`',
    );
  }
  if (config.seedDemoData && (await seedDemoData(services, SYSTEM_ACTOR)))
    logger.info('seeded the demo data');
  const server = buildServer(services, { logger, onFatal, limits: config.limits });
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
    server,
    services,
    logger,
    dispatcher,
    async close() {
      stopSweeper();
      stopKeyWatch();
      stopCheckpointer();
      await dispatcher.stop();
      await server.close();
      await services.committer.drain();
      await store.close();
    },
  };
}

/** An invariant violation stops the process at once: corrupt state must never be served or committed. */
function crash(logger: Logger): (error: Error) => void {
  return (error) => {
    logger.fatal({ err: error }, 'invariant violated: stopping');
    process.exit(70);
  };
}
