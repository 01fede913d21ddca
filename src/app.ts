import type { DestinationStream, Logger } from 'pino';
import { ensureDemoApiKey } from './app/api-keys.ts';
import { AuditLog, backfillAuditMerkle, startCheckpointer } from './app/audit-log.ts';
import { seedDemoData } from './app/demo-data.ts';
import { reindexCustomerDocuments } from './app/identity-index.ts';
import { startSweeper } from './app/maintenance.ts';
import { createScreening, loadRiskPolicy, loadSanctionsList } from './app/risk-config.ts';
import { type Services, SYSTEM_ACTOR } from './app/services.ts';
import type { Config } from './config.ts';
import { buildServer } from './http/server.ts';
import type { HttpApp } from './http/types.ts';
import { createLogger } from './logger.ts';
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

/**
 * Wires the services over an open store: keys (dev keys when unset), the committer, PII cipher, risk policy,
 * sanctions screening and the audit log. Shared by the server and the keys CLI, so both write the same way.
 */
export async function buildServices(
  config: Config,
  store: Store,
  options: { clock: () => number; onFatal: (error: Error) => void; batchMax: number },
): Promise<{ services: Services; generatedKeys: string[] }> {
  const keys = await resolveKeys(config, store);
  const committer = new Committer(store, {
    batchMax: options.batchMax,
    queueMax: Math.max(options.batchMax, WRITE_QUEUE_MAX),
    batchesInFlightMax: batchesInFlightMax(store, config),
    onFatal: options.onFatal,
  });
  const cipher = new PiiCipher(keys.dataKeys);
  const services: Services = {
    store,
    committer,
    cipher,
    policy: loadRiskPolicy(config.riskPolicyPath),
    screening: createScreening(loadSanctionsList(config.sanctionsListPath), cipher),
    clock: options.clock,
    idempotencyRetentionMs: config.idempotencyRetentionMs,
    reviewHoldExpiryMs: config.reviewHoldExpiryMs,
    webhooks: config.webhooks,
    auditLog: new AuditLog(
      store,
      committer,
      AuditSigner.fromConfig(keys.auditSigningKey, config.auditLogOrigin),
    ),
  };
  return { services, generatedKeys: keys.generated };
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
  const { services, generatedKeys } = await buildServices(config, store, {
    clock,
    onFatal,
    batchMax: config.groupCommitBatchMax,
  });
  for (const variable of generatedKeys) {
    logger.warn(
      `${variable} is not set: using a generated development key kept with the data. Set it in production.`,
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
  if (config.demoApiToken !== null) await ensureDemoApiKey(services, SYSTEM_ACTOR, config.demoApiToken);
  if (config.seedDemoData && (await seedDemoData(services, SYSTEM_ACTOR)))
    logger.info('seeded the demo data');
  const server = buildServer(services, { logger, onFatal });
  const stopSweeper = startSweeper(services, config.sweepIntervalMs, (error) =>
    logger.error({ err: error }, 'maintenance sweep failed'),
  );
  const stopCheckpointer = startCheckpointer(services.auditLog, config.auditCheckpointIntervalMs, (error) =>
    logger.error({ err: error }, 'audit checkpoint failed'),
  );
  const dispatcher = new WebhookDispatcher(services, logger);
  dispatcher.start();
  return {
    server,
    services,
    logger,
    dispatcher,
    async close() {
      stopSweeper();
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
