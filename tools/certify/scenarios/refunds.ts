import { described, expect, type Run } from '../context.ts';
import { POSTED } from './magic.ts';

const PARTIAL_CENTS = 20_000;

/**
 * 5. A posted payment refunded in part, then in full (201 each); one more cent is refused (4xx) and the balances
 * end where they started.
 */
export async function refunds(run: Run): Promise<void> {
  const { from, to } = await run.pair();
  const [fromBefore, toBefore] = [await run.available(from), await run.available(to)];
  const paid = await run.pay({ from, to, amountCents: POSTED, tag: { certifyCase: 'refunds' } });
  expect(
    paid.status === 201,
    `a payment of ${POSTED} cents answered ${described(paid)}, not 201 posted`,
    'the sandbox must post the magic amount 77700',
  );
  const id = paid.json.payment.id;
  const refund = (body: unknown) =>
    run.client.send('POST', `/v1/payments/${id}/refunds`, { idempotencyKey: run.key('refund'), body });

  const partial = await refund({ amountCents: PARTIAL_CENTS, reason: 'certification partial refund' });
  expect(
    partial.status === 201 && partial.json?.refund?.amountCents === PARTIAL_CENTS,
    `a partial refund of ${PARTIAL_CENTS} cents of ${id} answered ${described(partial)}`,
    'an integration must refund with POST /v1/payments/:id/refunds and an Idempotency-Key, giving amountCents ' +
      'for a partial refund',
  );
  const rest = await refund({});
  expect(
    rest.status === 201 && rest.json?.refund?.amountCents === POSTED - PARTIAL_CENTS,
    `refunding the rest of ${id} answered ${described(rest)}, not 201 for ${POSTED - PARTIAL_CENTS} cents`,
    'an integration must know that a refund without amountCents refunds what remains',
  );
  const over = await refund({ amountCents: 1 });
  expect(
    over.status >= 400 && over.status < 500,
    `refunding one more cent of the fully refunded ${id} answered ${described(over)}, not a 4xx refusal`,
    'an integration must never refund more than the payment (422 REFUND_EXCEEDS_PAYMENT), and keep track of ' +
      'refundedCents',
  );
  const [fromAfter, toAfter] = [await run.available(from), await run.available(to)];
  expect(
    fromAfter === fromBefore && toAfter === toBefore,
    `after a full refund the balances are ${fromAfter} and ${toAfter}, not ${fromBefore} and ${toBefore} as before ` +
      'the payment',
    'an integration must reconcile balances from the API (GET /v1/accounts/:id/balance) after refunds',
  );
  const read = await run.client.send('GET', `/v1/payments/${id}`);
  expect(
    read.json?.payment?.refundedCents === POSTED,
    `payment ${id} shows refundedCents ${read.json?.payment?.refundedCents}, not ${POSTED}`,
    'an integration must read refundedCents to know what remains refundable',
  );
}
