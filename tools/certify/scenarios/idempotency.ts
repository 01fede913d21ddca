import { described, expect, type Run } from '../context.ts';
import { POSTED } from './magic.ts';

const RETRY_SAME_KEY =
  'an integration must retry a timed-out POST with the same Idempotency-Key and the same body (never a new key), ' +
  'and take the answer as the one payment';

/**
 * 1. A client times out: the POST is written, the connection dropped before the answer is read. Retrying with the
 * same key and body must give one payment, whether the first attempt ran (a replay) or never arrived (a first
 * execution); a second retry must replay it.
 */
export async function idempotentRetryAfterTimeout(run: Run): Promise<void> {
  const { from, to } = await run.pair();
  const tag = { certifyCase: run.key('timeout') };
  const key = run.key('timeout');
  const body = run.paymentBody({ from, to, amountCents: POSTED, tag });
  await run.client.postAndAbandon('/v1/payments', { idempotencyKey: key, body });

  const retry = await run.client.send('POST', '/v1/payments', { idempotencyKey: key, body });
  run.record(retry);
  const id = retry.json?.payment?.id;
  expect(
    [201, 202, 422].includes(retry.status) && typeof id === 'string',
    `the retry after a timeout answered ${described(retry)}, not a payment`,
    RETRY_SAME_KEY,
  );
  const again = await run.client.send('POST', '/v1/payments', { idempotencyKey: key, body });
  run.record(again);
  const againId = again.json?.payment?.id;
  expect(
    againId === id,
    `a second retry with the same Idempotency-Key answered ${againId ?? described(again)} where the first retry ` +
      `answered ${id}: the sandbox created a second payment ${againId ?? ''} for the retry`.trimEnd(),
    RETRY_SAME_KEY,
  );
  expect(
    again.headers.get('idempotency-replayed') === 'true',
    `the second retry of ${id} did not say Idempotency-Replayed: true (got ${again.headers.get('idempotency-replayed')})`,
    'an integration may use Idempotency-Replayed to tell a replay from a first execution',
  );
  const listed = await run.paymentsTagged(tag);
  expect(
    listed.length === 1,
    `${listed.length} payments exist for one Idempotency-Key (${listed.map((p) => p.id).join(', ') || 'none'}): ` +
      'the retries created more than one payment',
    RETRY_SAME_KEY,
  );
}

/**
 * 2. The same key and body replay the first answer byte for byte with Idempotency-Replayed: true; the same key
 * with another body is refused (409), never executed.
 */
export async function replayAndKeyReuse(run: Run): Promise<void> {
  const { from, to } = await run.pair();
  const tag = { certifyCase: run.key('replay') };
  const key = run.key('replay');
  const body = run.paymentBody({ from, to, amountCents: POSTED, tag });
  const first = await run.client.send('POST', '/v1/payments', { idempotencyKey: key, body });
  run.record(first);
  expect(
    first.status === 201,
    `a payment of ${POSTED} cents answered ${described(first)}, not 201 posted`,
    'the sandbox must post a payment of the magic amount 77700',
  );
  const replay = await run.client.send('POST', '/v1/payments', { idempotencyKey: key, body });
  expect(
    replay.status === first.status && replay.text === first.text,
    `the same Idempotency-Key and body answered ${described(replay)} with other bytes than the first answer`,
    'an integration must be able to rely on a replay being the first answer, byte for byte',
  );
  expect(
    replay.headers.get('idempotency-replayed') === 'true',
    `the replay did not carry Idempotency-Replayed: true (got ${replay.headers.get('idempotency-replayed')})`,
    'an integration must treat Idempotency-Replayed: true as "this already happened", not as a new payment',
  );
  const changed = { ...body, amountCents: POSTED + 1 };
  const reused = await run.client.send('POST', '/v1/payments', { idempotencyKey: key, body: changed });
  run.record(reused);
  expect(
    reused.status === 409 && reused.json?.error?.code === 'IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD',
    `the same Idempotency-Key with another amount answered ${described(reused)}, not 409 ` +
      'IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD',
    'an integration must use a new Idempotency-Key for every new payment, and the same one only for a retry',
  );
  const listed = await run.paymentsTagged(tag);
  expect(
    listed.length === 1,
    `${listed.length} payments exist for one Idempotency-Key (${listed.map((p) => p.id).join(', ')})`,
    'an integration must use one Idempotency-Key per payment; the sandbox must execute a key once',
  );
}
