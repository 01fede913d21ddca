import { Counter, collectDefaultMetrics, Gauge, Histogram, type Metric, Registry } from 'prom-client';
import { withinMs } from './domain/deadline.ts';
import type { PaymentStatus } from './domain/types.ts';
import { hashSecret, parseBearer, secretMatches } from './security/api-keys.ts';
import type { CommitterObserver } from './storage/committer.ts';
import type { Reads } from './storage/store.ts';

/**
 * Prometheus metrics (prom-client), served at GET /metrics (src/http/routes/metrics.ts; docs/deployment.md,
 * "Metrics"). One registry per app, never prom-client's global one: tests run several apps in one process.
 *
 * Labels are low-cardinality by construction: a route is its TEMPLATE (`/v1/payments/:id`, or `unmatched`), a
 * method is one of the few Node's parser accepts, a status is a number, and every other label value comes from
 * a fixed list below or from the loaded risk policy's reason codes (capped). No id, key or client text is ever
 * a label value.
 *
 * Counting costs a few map lookups and prom-client's increments; what the database knows (the audit log's size,
 * the latest checkpoint) is read at scrape time only, two primary-key reads per scrape.
 */
export const METRICS_PREFIX = 'payments_';

export const RATE_LIMIT_KINDS = ['per_key', 'auth_failure', 'load_shed'] as const;
/** Why the edge refused a request (src/http/protection.ts): 429 per key or per address, 503 while shedding. */
export type RateLimitKind = (typeof RATE_LIMIT_KINDS)[number];

export const WEBHOOK_RESULTS = ['succeeded', 'retrying', 'failed'] as const;
/** One delivery attempt: delivered, failed with attempts left, or failed for good (WEBHOOK_MAX_ATTEMPTS). */
export type WebhookResult = (typeof WEBHOOK_RESULTS)[number];

export const REVIEW_RESOLUTIONS = ['approved', 'rejected', 'hold_expired'] as const;
export type ReviewResolution = (typeof REVIEW_RESOLUTIONS)[number];

/** How long a scrape waits for the audit log's two reads before leaving those series out. */
const SCRAPE_DATABASE_DEADLINE_MS = 1_000;
const PAYMENT_OUTCOMES: readonly PaymentStatus[] = ['posted', 'manual_review', 'declined'];
/** Reason codes come from the risk policy (at most 200 rules) and two system checks; beyond this, `other`. */
const REASON_LABELS_MAX = 256;
/** A route template for requests no route matched (404, 405). */
export const UNMATCHED_ROUTE = 'unmatched';

const HTTP_SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const COMMIT_SECONDS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];
const WEBHOOK_LAG_SECONDS_BUCKETS = [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 24 * 3600];

/** What the gauges read at scrape time (wired in src/app.ts once the services exist). */
export interface ScrapeSources {
  committer: {
    readonly queuedCommands: number;
    readonly commandsInFlight: number;
    readonly batchesApplying: number;
  };
  reads: Pick<Reads, 'auditSize' | 'latestAuditCheckpoint'>;
  clock: () => number;
}

export interface MetricsOptions {
  /** METRICS_TOKEN: a bearer token GET /metrics accepts besides API keys; null or absent: none. */
  scrapeToken?: string | null;
  /**
   * Whether the process's own metrics (CPU, memory, event-loop lag) are included: not in test mode's registry,
   * where a sandbox key could watch live load through them.
   */
  processMetrics?: boolean;
}

type HttpLabels = { route: string; method: string; status_code: string };

export class Metrics implements CommitterObserver {
  readonly registry = new Registry();
  private readonly scrapeTokenHash: string | null;
  private sources: ScrapeSources | null = null;

  private readonly httpRequests: Counter<keyof HttpLabels>;
  private readonly httpDuration: Histogram<keyof HttpLabels>;
  /** route → method → status → labels: each combination's labels object is made once, not per request. */
  private readonly httpLabels = new Map<string, Map<string, Map<number, HttpLabels>>>();
  private readonly rateLimitRejections: Counter<'kind'>;
  private readonly payments: Counter<'outcome'>;
  private readonly paymentReasons: Counter<'outcome' | 'reason'>;
  private readonly reasonLabels = new Map<string, { outcome: string; reason: string }>();
  private readonly refunds: Counter;
  private readonly reviewResolutions: Counter<'resolution'>;
  private readonly batchSize: Histogram;
  private readonly commitSeconds: Histogram;
  private readonly queueDepth: Gauge;
  private readonly commandsInFlight: Gauge;
  private readonly batchesInFlight: Gauge;
  private readonly webhookDeliveries: Counter<'result'>;
  private readonly webhookLag: Histogram;
  private readonly auditEntries: Gauge;
  private readonly checkpointAge: Gauge;
  private readonly checkpointTreeSize: Gauge;

  constructor(options: MetricsOptions = {}) {
    this.scrapeTokenHash = options.scrapeToken == null ? null : hashSecret(options.scrapeToken);
    const registers = [this.registry];
    const name = (suffix: string) => `${METRICS_PREFIX}${suffix}`;

    this.httpRequests = new Counter({
      name: name('http_requests_total'),
      help: 'HTTP requests answered, by route template, method and status code.',
      labelNames: ['route', 'method', 'status_code'],
      registers,
    });
    this.httpDuration = new Histogram({
      name: name('http_request_duration_seconds'),
      help: 'Time from receiving a request to sending its response, by route template, method and status code.',
      labelNames: ['route', 'method', 'status_code'],
      buckets: HTTP_SECONDS_BUCKETS,
      registers,
    });
    this.rateLimitRejections = new Counter({
      name: name('rate_limit_rejections_total'),
      help: 'Requests refused by the edge: per_key and auth_failure (429), load_shed (503).',
      labelNames: ['kind'],
      registers,
    });
    this.payments = new Counter({
      name: name('created_total'),
      help: 'Payments executed (replays not counted), by outcome: posted, manual_review or declined.',
      labelNames: ['outcome'],
      registers,
    });
    this.paymentReasons = new Counter({
      name: name('decision_reasons_total'),
      help: 'Reason codes of executed payments held for review or declined (a payment may have several).',
      labelNames: ['outcome', 'reason'],
      registers,
    });
    this.refunds = new Counter({
      name: name('refunds_total'),
      help: 'Refunds executed (replays not counted).',
      registers,
    });
    this.reviewResolutions = new Counter({
      name: name('review_resolutions_total'),
      help: 'Payments that left manual review: approved, rejected, or hold_expired (the sweep).',
      labelNames: ['resolution'],
      registers,
    });
    this.batchSize = new Histogram({
      name: name('commit_batch_size'),
      help: 'Commands per committed group-commit batch (one transaction, one fsync).',
      buckets: BATCH_SIZE_BUCKETS,
      registers,
    });
    this.commitSeconds = new Histogram({
      name: name('commit_duration_seconds'),
      help: 'Time to apply and commit one group-commit batch.',
      buckets: COMMIT_SECONDS_BUCKETS,
      registers,
    });
    this.queueDepth = new Gauge({
      name: name('write_queue_depth'),
      help: 'Commands waiting for a batch (at most 10,000; beyond, writes answer 503).',
      registers,
    });
    this.commandsInFlight = new Gauge({
      name: name('commands_in_flight'),
      help: 'Commands in the batches being applied now.',
      registers,
    });
    this.batchesInFlight = new Gauge({
      name: name('commit_batches_in_flight'),
      help: 'Batches being applied now (1 on SQLite; up to PG_POOL_MAX / 2 on PostgreSQL).',
      registers,
    });
    this.webhookDeliveries = new Counter({
      name: name('webhook_deliveries_total'),
      help: 'Webhook delivery attempts, by result: succeeded, retrying (failed, attempts left) or failed (no more).',
      labelNames: ['result'],
      registers,
    });
    this.webhookLag = new Histogram({
      name: name('webhook_delivery_lag_seconds'),
      help: "Time from an event's creation to a delivery attempt of it.",
      buckets: WEBHOOK_LAG_SECONDS_BUCKETS,
      registers,
    });
    this.auditEntries = new Gauge({
      name: name('audit_log_entries'),
      help: 'Entries in the audit log (absent when the database did not answer the scrape).',
      registers,
    });
    this.checkpointAge = new Gauge({
      name: name('audit_checkpoint_age_seconds'),
      help: 'Age of the latest signed audit checkpoint (absent before the first one).',
      registers,
    });
    this.checkpointTreeSize = new Gauge({
      name: name('audit_checkpoint_tree_size'),
      help: 'Entries the latest signed audit checkpoint covers (absent before the first one).',
      registers,
    });

    // Every fixed label value is present from the start at 0, so a rate() sees the first event.
    for (const kind of RATE_LIMIT_KINDS) this.rateLimitRejections.inc({ kind }, 0);
    for (const outcome of PAYMENT_OUTCOMES) this.payments.inc({ outcome }, 0);
    for (const resolution of REVIEW_RESOLUTIONS) this.reviewResolutions.inc({ resolution }, 0);
    for (const result of WEBHOOK_RESULTS) this.webhookDeliveries.inc({ result }, 0);
    // The registry holds the metric objects themselves (typed as their rendered form): register them here too.
    const metricsOfProcess = options.processMetrics === false ? [] : processMetrics().getMetricsAsArray();
    for (const metric of metricsOfProcess) {
      this.registry.registerMetric(metric as unknown as Metric);
    }
  }

  /** Sets what the gauges read at scrape time. */
  watch(sources: ScrapeSources): void {
    this.sources = sources;
  }

  /** The exposition content type (Prometheus text format 0.0.4). */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** Whether an Authorization header carries METRICS_TOKEN (compared as SHA-256 hashes, in constant time). */
  acceptsScrapeToken(authorization: string | undefined): boolean {
    if (this.scrapeTokenHash === null) return false;
    const secret = parseBearer(authorization);
    return secret !== null && secretMatches(secret, this.scrapeTokenHash);
  }

  /** The text exposition: the gauges are read first, then every metric is rendered. */
  async scrape(): Promise<string> {
    await this.readGauges();
    return this.registry.metrics();
  }

  // --- counted where it happens -------------------------------------------------------------------------

  /** One answered request (src/http/request-metrics.ts). `route` is the template, never the path. */
  httpRequest(route: string, method: string, statusCode: number, seconds: number): void {
    const labels = this.httpLabelsFor(route, method, statusCode);
    this.httpRequests.inc(labels);
    this.httpDuration.observe(labels, seconds);
  }

  rateLimited(kind: RateLimitKind): void {
    this.rateLimitRejections.inc({ kind });
  }

  /** A payment executed and committed (never a replay). */
  paymentDecided(outcome: PaymentStatus, reasons: readonly string[]): void {
    this.payments.inc({ outcome });
    for (const reason of reasons) this.paymentReasons.inc(this.reasonLabelsFor(outcome, reason));
  }

  refundCreated(): void {
    this.refunds.inc();
  }

  reviewResolved(resolution: ReviewResolution, count = 1): void {
    if (count > 0) this.reviewResolutions.inc({ resolution }, count);
  }

  /** The committer's observer: called once per committed batch. */
  batchCommitted(commands: number, seconds: number): void {
    this.batchSize.observe(commands);
    this.commitSeconds.observe(seconds);
  }

  /** One webhook delivery attempt, recorded: its result and the time since its event was created. */
  webhookAttempt(result: WebhookResult, lagMs: number): void {
    this.webhookDeliveries.inc({ result });
    this.webhookLag.observe(Math.max(0, lagMs) / 1000);
  }

  // ------------------------------------------------------------------------------------------------------

  private httpLabelsFor(route: string, method: string, statusCode: number): HttpLabels {
    let methods = this.httpLabels.get(route);
    if (methods === undefined) {
      methods = new Map();
      this.httpLabels.set(route, methods);
    }
    let statuses = methods.get(method);
    if (statuses === undefined) {
      statuses = new Map();
      methods.set(method, statuses);
    }
    let labels = statuses.get(statusCode);
    if (labels === undefined) {
      labels = { route, method, status_code: String(statusCode) };
      statuses.set(statusCode, labels);
    }
    return labels;
  }

  private reasonLabelsFor(outcome: string, reason: string): { outcome: string; reason: string } {
    const key = `${outcome} ${reason}`;
    let labels = this.reasonLabels.get(key);
    if (labels === undefined) {
      if (this.reasonLabels.size >= REASON_LABELS_MAX) return { outcome, reason: 'other' };
      labels = { outcome, reason };
      this.reasonLabels.set(key, labels);
    }
    return labels;
  }

  /**
   * The gauges: the committer's counts (in memory), and two primary-key reads (the audit head row, the latest
   * checkpoint). A database that does not answer leaves the audit series absent from this scrape: /metrics
   * answers while the database is down, which is when it is needed.
   */
  private async readGauges(): Promise<void> {
    const sources = this.sources;
    if (sources === null) return;
    this.queueDepth.set(sources.committer.queuedCommands);
    this.commandsInFlight.set(sources.committer.commandsInFlight);
    this.batchesInFlight.set(sources.committer.batchesApplying);
    let entries: number;
    let checkpoint: Awaited<ReturnType<Reads['latestAuditCheckpoint']>>;
    try {
      // A database that stopped answering must not hold the scrape: the audit series are left out instead.
      [entries, checkpoint] = await withinMs(
        Promise.all([sources.reads.auditSize(), sources.reads.latestAuditCheckpoint()]),
        SCRAPE_DATABASE_DEADLINE_MS,
        'the database',
      );
    } catch {
      for (const gauge of [this.auditEntries, this.checkpointAge, this.checkpointTreeSize]) gauge.remove();
      return;
    }
    this.auditEntries.set(entries);
    if (checkpoint === undefined) {
      this.checkpointAge.remove();
      this.checkpointTreeSize.remove();
    } else {
      this.checkpointAge.set(Math.max(0, sources.clock() - checkpoint.createdAtMs) / 1000);
      this.checkpointTreeSize.set(checkpoint.treeSize);
    }
  }
}

/**
 * prom-client's standard process and Node.js metrics (CPU, memory, heap, file descriptors, GC, event-loop lag),
 * collected once per process into a registry of their own and registered into every app's registry. They
 * describe the process, not an app; and each collection starts an event-loop delay monitor and a GC observer
 * that are never stopped, so collecting per app would leak both with every app a test builds.
 */
let sharedProcessRegistry: Registry | null = null;

function processMetrics(): Registry {
  if (sharedProcessRegistry === null) {
    sharedProcessRegistry = new Registry();
    collectDefaultMetrics({ register: sharedProcessRegistry });
  }
  return sharedProcessRegistry;
}
