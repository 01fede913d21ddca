import type { WebhookConfig } from '../config.ts';
import type { RiskPolicy } from '../domain/policy.ts';
import type { ReportingRules } from '../domain/reporting.ts';
import type { Mode } from '../domain/sandbox.ts';
import type { Metrics } from '../metrics.ts';
import type { PiiCipher } from '../security/pii-cipher.ts';
import type { Committer } from '../storage/committer.ts';
import type { Store } from '../storage/store.ts';
import type { AuditLog } from './audit-log.ts';
import type { FxDesk } from './fx-quotes.ts';
import type { Screening } from './risk-assessment.ts';
import type { TestClock } from './sandbox.ts';

/** What the application layer needs, wired once in `src/app.ts` and handed to routes and jobs. */
export interface Services {
  /**
   * Which data these services hold: live, or the sandbox's test data (src/domain/sandbox.ts). Each mode has its
   * own store and its own Services; nothing here reaches the other mode's.
   */
  mode: Mode;
  /** Test mode: the sandbox's movable clock (`clock` reads it); live: null. */
  testClock: TestClock | null;
  store: Store;
  committer: Committer;
  cipher: PiiCipher;
  policy: RiskPolicy;
  /** Regulatory reporting rules (REPORTING_RULES_PATH, else the built-in ones): src/app/reports.ts. */
  reporting: ReportingRules;
  /** Sanctions screening against the loaded list (SANCTIONS_LIST_PATH). */
  screening: Screening;
  clock: () => number;
  idempotencyRetentionMs: number;
  reviewHoldExpiryMs: number;
  /** FX rates and the quote lifetime (FX_RATES_PATH, FX_QUOTE_TTL_SECONDS). */
  fx: FxDesk;
  /** How often the audit log's full re-verification is due (0: only on request). */
  auditFullVerifyIntervalMs: number;
  webhooks: WebhookConfig;
  /** Merkle proofs and signed checkpoints of the audit log. */
  auditLog: AuditLog;
  /** Prometheus metrics of this app (src/metrics.ts), served at GET /metrics. */
  metrics: Metrics;
}

/** Who writes: the API key id (never its secret) and the request id, stamped on audit entries and ledger rows. */
export const SYSTEM_ACTOR = { apiKeyId: 'system', role: 'admin', requestId: 'req_system' } as const;
