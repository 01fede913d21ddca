import type { Run } from '../context.ts';
import { idempotentRetryAfterTimeout, replayAndKeyReuse } from './idempotency.ts';
import { eachOutcome, reviewResolvedBothWays } from './outcomes.ts';
import { pagingToTheEnd } from './paging.ts';
import { rateLimitBackOff } from './rate-limit.ts';
import { refunds } from './refunds.ts';
import { webhooksSignatureAndDedup } from './webhooks.ts';

export interface Scenario {
  name: string;
  run: (run: Run) => Promise<void>;
}

/** In order; paging runs late so that it finds the payments the others made. */
export const SCENARIOS: readonly Scenario[] = [
  { name: 'idempotent-retry-after-timeout', run: idempotentRetryAfterTimeout },
  { name: 'idempotent-replay-and-key-reuse', run: replayAndKeyReuse },
  { name: 'each-outcome', run: eachOutcome },
  { name: 'review-approved-and-rejected', run: reviewResolvedBothWays },
  { name: 'refunds', run: refunds },
  { name: 'webhook-signature-and-dedup', run: webhooksSignatureAndDedup },
  { name: 'paging-to-the-end', run: pagingToTheEnd },
  { name: 'rate-limit-back-off', run: rateLimitBackOff },
];
