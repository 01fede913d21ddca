import { assert } from '../domain/assert.ts';
import { newId } from '../domain/ids.ts';
import { type OutboxEvent, PING_EVENT_TYPE } from '../domain/types.ts';
import { nullableNum, nullableStr, num } from './row-values.ts';
import type { Row, SqlExecutor } from './sql-store.ts';
import type { DeliveryRetry, DeliveryStatus, WebhookDelivery, WebhookEndpointRow } from './store.ts';

/**
 * The SQL of webhook endpoints and deliveries beyond the outbox itself (docs/decisions/0015-standard-webhooks.md):
 * reading one delivery, rotating an endpoint's signing secrets, queueing a `ping`, and re-queueing a failed
 * delivery by hand. Shared by SqlReads and SqlTx, which delegate here; the row mappers serve sql-store.ts too.
 */

export function webhookEndpointFromRow(r: Row): WebhookEndpointRow {
  return {
    id: r['id'] as string,
    url: r['url'] as string,
    eventTypes: JSON.parse(r['event_types'] as string),
    secretEnc: r['secret_enc'] as string,
    createdAtMs: num(r['created_at_ms']),
    deletedAtMs: nullableNum(r['deleted_at_ms']),
    previousSecretExpiresAtMs: nullableNum(r['previous_secret_expires_at_ms']),
    secretRotatedAtMs: nullableNum(r['secret_rotated_at_ms']),
  };
}

/** A delivery row joined with its event's type (`event_type`). */
export function webhookDeliveryFromRow(r: Row): WebhookDelivery {
  return {
    id: r['id'] as string,
    eventId: r['event_id'] as string,
    eventType: r['event_type'] as string,
    endpointId: r['endpoint_id'] as string,
    status: r['status'] as DeliveryStatus,
    attempts: num(r['attempts']),
    nextAttemptAtMs: num(r['next_attempt_at_ms']),
    lastStatusCode: nullableNum(r['last_status_code']),
    lastError: nullableStr(r['last_error']),
    lastAttemptAtMs: nullableNum(r['last_attempt_at_ms']),
    createdAtMs: num(r['created_at_ms']),
    manualRetries: num(r['manual_retries']),
  };
}

/** A delivery of a live endpoint (a deleted endpoint's deliveries are gone from the API, like the endpoint). */
export async function getWebhookDelivery(db: SqlExecutor, id: string): Promise<WebhookDelivery | undefined> {
  const r = await db.get(
    `SELECT d.*, e.type AS event_type FROM webhook_deliveries d
       JOIN events e ON e.id = d.event_id
       JOIN webhook_endpoints w ON w.id = d.endpoint_id AND w.deleted_at_ms IS NULL
      WHERE d.id = ?`,
    [id],
  );
  return r && webhookDeliveryFromRow(r);
}

export async function lockWebhookEndpoint(
  db: SqlExecutor,
  id: string,
  forUpdate: string,
): Promise<WebhookEndpointRow | undefined> {
  const r = await db.get(
    `SELECT * FROM webhook_endpoints WHERE id = ? AND deleted_at_ms IS NULL${forUpdate}`,
    [id],
  );
  return r && webhookEndpointFromRow(r);
}

export async function saveWebhookEndpointSecrets(
  db: SqlExecutor,
  id: string,
  secretEnc: string,
  previousSecretExpiresAtMs: number | null,
  nowMs: number,
): Promise<void> {
  const changed = await db.run(
    `UPDATE webhook_endpoints SET secret_enc = ?, previous_secret_expires_at_ms = ?, secret_rotated_at_ms = ?
      WHERE id = ? AND deleted_at_ms IS NULL`,
    [secretEnc, previousSecretExpiresAtMs, nowMs, id],
  );
  assert(changed === 1, 'a rotated webhook endpoint is live and locked');
}

/**
 * The ping event and its single delivery. The event names no account or customer, so no scoped list shows it,
 * and the unscoped GET /v1/events leaves its type out: it is a connectivity test for one endpoint, not a change.
 */
export async function insertPingEvent(
  db: SqlExecutor,
  nowMs: number,
  endpointId: string,
  data: string,
): Promise<{ event: OutboxEvent; delivery: WebhookDelivery }> {
  const event: OutboxEvent = {
    id: newId('evt'),
    type: PING_EVENT_TYPE,
    resourceType: 'webhook_endpoint',
    resourceId: endpointId,
    data,
    createdAtMs: nowMs,
  };
  await db.run(
    'INSERT INTO events (id, type, resource_type, resource_id, data, created_at_ms) VALUES (?, ?, ?, ?, ?, ?)',
    [event.id, event.type, event.resourceType, event.resourceId, event.data, event.createdAtMs],
  );
  const delivery: WebhookDelivery = {
    id: newId('whd'),
    eventId: event.id,
    eventType: event.type,
    endpointId,
    status: 'pending',
    attempts: 0,
    nextAttemptAtMs: nowMs,
    lastStatusCode: null,
    lastError: null,
    lastAttemptAtMs: null,
    createdAtMs: nowMs,
    manualRetries: 0,
  };
  await db.run(
    `INSERT INTO webhook_deliveries (id, event_id, endpoint_id, status, attempts, next_attempt_at_ms, created_at_ms)
     VALUES (?, ?, ?, 'pending', 0, ?, ?)`,
    [delivery.id, event.id, endpointId, nowMs, nowMs],
  );
  return { event, delivery };
}

/**
 * One conditional UPDATE: only a `failed` delivery of a live endpoint goes back to `pending`, due now, its
 * budget of attempts starting afresh from the attempts it has (which keep counting). Two retries racing on
 * one delivery re-queue it once: on PostgreSQL the second UPDATE waits for the first's row lock, then finds
 * the row `pending` and changes nothing (callers also serialise on a named lock, see src/app/webhook-endpoints.ts).
 */
export async function retryWebhookDelivery(
  db: SqlExecutor,
  id: string,
  nowMs: number,
  createdSinceMs: number,
): Promise<DeliveryRetry> {
  const changed = await db.run(
    `UPDATE webhook_deliveries
        SET status = 'pending', next_attempt_at_ms = ?, attempts_at_retry = attempts,
            manual_retries = manual_retries + 1, locked_until_ms = 0, lease_token = NULL
      WHERE id = ? AND status = 'failed' AND created_at_ms >= ?
        AND EXISTS (SELECT 1 FROM webhook_endpoints w
                     WHERE w.id = webhook_deliveries.endpoint_id AND w.deleted_at_ms IS NULL)`,
    [nowMs, id, createdSinceMs],
  );
  const delivery = await getWebhookDelivery(db, id);
  if (delivery === undefined) {
    assert(changed === 0, 'a re-queued delivery can be read back');
    return { outcome: 'not_found' };
  }
  return { outcome: changed === 1 ? 'requeued' : 'not_retryable', delivery };
}
