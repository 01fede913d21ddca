import { retryAfterSeconds, sleep } from '../client.ts';
import { described, expect, type Run } from '../context.ts';
import { POSTED } from './magic.ts';

const WAIT_MAX_SECONDS = 60;
const BACK_OFF =
  'an integration must answer 429 by waiting Retry-After seconds, then retrying the same request with the ' +
  'same Idempotency-Key';

/**
 * 8. The sandbox answers a payment 429 RATE_LIMITED with Retry-After (the `Test-Simulate: rate_limited` header)
 * without running it; waiting Retry-After and retrying with the same key must then make the payment, once.
 */
export async function rateLimitBackOff(run: Run): Promise<void> {
  const { from, to } = await run.pair();
  const key = run.key('ratelimit');
  const tag = { certifyCase: key };
  const body = run.paymentBody({ from, to, amountCents: POSTED, tag });
  const limited = await run.client.send('POST', '/v1/payments', {
    idempotencyKey: key,
    body,
    headers: { 'test-simulate': 'rate_limited' },
    retries: 0,
  });
  run.record(limited);
  expect(
    limited.status === 429 && limited.json?.error?.code === 'RATE_LIMITED',
    `the sandbox did not simulate a 429 (Test-Simulate: rate_limited answered ${described(limited)})`,
    'the sandbox must support Test-Simulate: rate_limited; ' + BACK_OFF,
  );
  const wait = retryAfterSeconds(limited.headers);
  expect(
    wait !== null && wait <= WAIT_MAX_SECONDS,
    `the 429 carried Retry-After ${limited.headers.get('retry-after')}, not a number of seconds up to ${WAIT_MAX_SECONDS}`,
    BACK_OFF,
  );
  await sleep(wait * 1000);
  const retry = await run.client.send('POST', '/v1/payments', { idempotencyKey: key, body, retries: 0 });
  run.record(retry);
  expect(
    retry.status === 201,
    `the retry ${wait} s after the 429 answered ${described(retry)}, not 201 posted`,
    BACK_OFF,
  );
  const listed = await run.paymentsTagged(tag);
  expect(
    listed.length === 1,
    `${listed.length} payments exist after a 429 and one retry`,
    `${BACK_OFF}; a 429 means the request did not run`,
  );
}
