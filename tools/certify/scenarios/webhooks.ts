import { sleep } from '../client.ts';
import { described, expect, Failure, type Run } from '../context.ts';
import { type Delivery, TOLERANCE_SECONDS, verifyDelivery, WebhookReceiver } from '../receiver.ts';
import { POSTED } from './magic.ts';

const WAIT_MS = 30_000;
const POLL_MS = 100;
/** Polls between two looks for a delivery the sandbox gave up on (then retried by hand). */
const RETRY_CHECK_EVERY = 20;
const DEDUPLICATE =
  'an integration must process each webhook-id once (deduplicate on webhook-id): the sandbox must send every ' +
  'attempt of an event with the same webhook-id';
const VERIFY =
  'an integration must verify webhook-signature on the raw body with the endpoint secret and refuse stale ' +
  'webhook-timestamps';

type Parsed = { id?: string; type?: string; data?: { payment?: { id?: string } } };
const parsed = (body: string): Parsed => {
  try {
    return JSON.parse(body) as Parsed;
  } catch {
    return {};
  }
};
const header = (d: Delivery, name: string) => String(d.headers[name] ?? '');

/**
 * 6. Webhooks: the run's receiver is registered for payment.posted; a payment's event must arrive signed so that
 * a Standard Webhooks verifier accepts it (and the same verifier refuses it tampered or late). The receiver fails
 * the first attempt, and the redelivery must carry the same webhook-id and body, so a receiver can deduplicate.
 * The endpoint is deleted at the end.
 */
export async function webhooksSignatureAndDedup(run: Run): Promise<void> {
  const receiver = new WebhookReceiver();
  const local = await receiver.start(run.options.receiverHost, run.options.receiverPort);
  const url = run.options.receiverUrl ?? local;
  let endpointId: string | null = null;
  try {
    const registered = await run.client.send('POST', '/v1/webhook-endpoints', {
      idempotencyKey: run.key('webhook'),
      body: { url, events: ['payment.posted'] },
    });
    expect(
      registered.status === 201,
      `registering the receiver ${url} answered ${described(registered)}`,
      registered.json?.error?.code === 'WEBHOOK_TARGET_FORBIDDEN'
        ? 'pass --receiver-url with a public URL that forwards to this receiver, or allow private targets on a ' +
            'local sandbox (WEBHOOK_ALLOW_PRIVATE_TARGETS=true)'
        : 'webhook endpoints are registered with an admin test key (POST /v1/webhook-endpoints)',
    );
    endpointId = registered.json.webhookEndpoint.id as string;
    const secret: string = registered.json.webhookEndpoint.secret;

    const tag = run.key('webhook');
    receiver.answer = (body) => {
      const event = parsed(body);
      const first = !receiver.deliveries.some(
        (d) => parsed(d.body).data?.payment?.id === event.data?.payment?.id,
      );
      return first && body.includes(tag) ? 503 : 204;
    };
    const { from, to } = await run.pair();
    const paid = await run.pay({ from, to, amountCents: POSTED, tag: { certifyCase: tag } });
    expect(paid.status === 201, `a payment of ${POSTED} answered ${described(paid)}`, 'post 77700');
    const paymentId: string = paid.json.payment.id;
    const ofPayment = () => receiver.deliveries.filter((d) => parsed(d.body).data?.payment?.id === paymentId);

    const firstArrived = await waitFor(() => ofPayment()[0]);
    expect(
      firstArrived !== undefined,
      `no payment.posted delivery for ${paymentId} reached ${url} within ${WAIT_MS / 1000} s`,
      'the receiver must be reachable from the sandbox: pass --receiver-url with a URL that forwards to it',
    );
    checkSignature(secret, firstArrived);

    let polls = 0;
    const redelivered = await waitFor(async () => {
      if (++polls % RETRY_CHECK_EVERY === 0) await retryFailed(run, endpointId!);
      return ofPayment()[1];
    });
    expect(
      redelivered !== undefined,
      `the first attempt for ${paymentId} was answered 503 and no redelivery came within ${WAIT_MS / 1000} s`,
      'an integration must answer 2xx only once it has processed an event: the sandbox must retry otherwise',
    );
    const [firstId, againId] = [header(firstArrived, 'webhook-id'), header(redelivered, 'webhook-id')];
    expect(
      againId === firstId,
      `the redelivery of the payment.posted event for ${paymentId} came with webhook-id ${againId}, the first ` +
        `attempt with ${firstId}: a receiver that deduplicates on webhook-id would process it twice`,
      DEDUPLICATE,
    );
    expect(
      redelivered.body === firstArrived.body,
      `the redelivery of ${firstId} carried another body than the first attempt`,
      DEDUPLICATE,
    );
    checkSignature(secret, redelivered);
  } finally {
    if (endpointId !== null) await run.client.send('DELETE', `/v1/webhook-endpoints/${endpointId}`);
    await receiver.stop();
  }
}

/**
 * The delivery verifies, its timestamp judged against this machine's clock as a real receiver judges it (the
 * sandbox signs in real time, whatever its test clock says); the same verifier refuses it with the body changed,
 * and when it arrives too late.
 */
function checkSignature(secret: string, delivery: Delivery): void {
  const nowSeconds = Math.floor(Date.now() / 1000);
  const id = header(delivery, 'webhook-id');
  const event = parsed(delivery.body);
  expect(
    event.id === id,
    `the delivery's webhook-id ${id} is not the event id ${event.id} in its body`,
    'an integration must deduplicate on webhook-id, which equals the event id',
  );
  const why = verifyDelivery(secret, delivery.headers, delivery.body, nowSeconds);
  expect(why === null, `the delivery ${id} did not verify with the endpoint secret: ${why}`, VERIFY);
  const tampered = delivery.body.replace(/}\s*$/, ',"amountCents":1}');
  const late = Number(header(delivery, 'webhook-timestamp')) + TOLERANCE_SECONDS + 1;
  if (verifyDelivery(secret, delivery.headers, tampered, nowSeconds) === null) {
    throw new Failure(`a tampered body of ${id} verified`, VERIFY);
  }
  if (verifyDelivery(secret, delivery.headers, delivery.body, late) === null) {
    throw new Failure(`${id} verified ${TOLERANCE_SECONDS + 1} s after its timestamp`, VERIFY);
  }
}

/** Sends a failed delivery of the endpoint again (when the sandbox gave up before the receiver answered 2xx). */
async function retryFailed(run: Run, endpointId: string): Promise<void> {
  const list = await run.client.send('GET', `/v1/webhook-endpoints/${endpointId}/deliveries?limit=100`);
  const failed: { id: string }[] = (list.json?.deliveries ?? []).filter(
    (d: { status?: string }) => d.status === 'failed',
  );
  for (const delivery of failed) {
    await run.client.send('POST', `/v1/webhook-deliveries/${delivery.id}/retry`, { body: {} });
  }
}

async function waitFor<T>(probe: () => T | undefined | Promise<T | undefined>): Promise<T | undefined> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const value = await probe();
    if (value !== undefined || Date.now() > deadline) return value;
    await sleep(POLL_MS);
  }
}
