import { type Account, described, expect, type Run } from '../context.ts';
import { HELD, MAGIC_AMOUNTS } from './magic.ts';

/**
 * 3. Every outcome an integration must handle, forced by the magic amounts: posted (201), held for review (202)
 * and declined (422, a stored payment, not an error), each with its documented reason.
 */
export async function eachOutcome(run: Run): Promise<void> {
  const { from, to } = await run.pair();
  const wrong: string[] = [];
  for (const magic of MAGIC_AMOUNTS) {
    await run.separate();
    const answer = await run.pay({
      from,
      to,
      amountCents: magic.amountCents,
      tag: { certifyCase: 'outcomes' },
    });
    const payment = answer.json?.payment;
    const reasons: string[] = payment?.reasons ?? [];
    const ok =
      answer.status === magic.status &&
      payment?.status === magic.outcome &&
      (magic.reason === null || reasons.includes(magic.reason));
    if (!ok) {
      const expected = `${magic.status} ${magic.outcome}${magic.reason ? ` ${magic.reason}` : ''}`;
      const got = `${described(answer)}${reasons.length > 0 ? ` ${reasons.join(',')}` : ''}`;
      wrong.push(`${magic.amountCents} → ${got} (expected ${expected})`);
    }
  }
  expect(
    wrong.length === 0,
    `the magic amounts did not force their outcomes: ${wrong.join('; ')}`,
    'an integration must handle 201 posted, 202 manual_review and 422 declined (a payment, not an error) by ' +
      'status and reason; the sandbox must force each by its magic amount',
  );
}

/** A payment held for review, and the sender's available balance before it. */
async function held(run: Run, from: Account, to: Account): Promise<{ id: string; before: number }> {
  const before = await run.available(from);
  const answer = await run.pay({ from, to, ...HELD, tag: { certifyCase: 'review' } });
  expect(
    answer.status === 202 && answer.json?.payment?.status === 'manual_review',
    `a payment of ${HELD.amountCents} cents with the note "${HELD.note}" answered ${described(answer)}, not 202 ` +
      'manual_review',
    'an integration must treat 202 as "held for review": not paid yet, and not failed',
  );
  return { id: answer.json.payment.id, before };
}

/**
 * 4. A review resolved both ways: one held payment approved (201, posted), another rejected (200, declined),
 * its hold released so the sender's available balance is back where it was.
 */
export async function reviewResolvedBothWays(run: Run): Promise<void> {
  const { from, to } = await run.pair();
  const approved = await held(run, from, to);
  const decide = (action: 'approve' | 'reject', id: string) =>
    run.client.send('POST', `/v1/payments/${id}/${action}`, { idempotencyKey: run.key(action), body: {} });
  const approve = await decide('approve', approved.id);
  expect(
    approve.status === 201 && approve.json?.payment?.status === 'posted',
    `approving held payment ${approved.id} answered ${described(approve)}, not 201 posted`,
    'an integration must wait for payment.approved (or read the payment) before treating a held payment as paid; ' +
      'approving needs a key with the compliance or admin role',
  );
  await run.separate();
  const rejected = await held(run, from, to);
  const reject = await decide('reject', rejected.id);
  expect(
    reject.status === 200 && reject.json?.payment?.status === 'declined',
    `rejecting held payment ${rejected.id} answered ${described(reject)}, not 200 declined`,
    'an integration must handle payment.rejected: the held payment is declined and nothing moves',
  );
  const after = await run.available(from);
  expect(
    after === rejected.before,
    `after the rejection of ${rejected.id} the sender's available balance is ${after}, not ${rejected.before}: ` +
      'the hold was not released',
    'an integration must show a rejected payment as declined, with its held amount available again',
  );
}
