import { described, expect, type Run } from '../context.ts';
import { POSTED } from './magic.ts';

const PAGE_SIZE = 2;
const PAGES_MAX = 1_000;
const OWN_PAYMENTS = 3;
const FOLLOW_CURSOR =
  'an integration must follow nextCursor, with the same filters, until hasMore is false, and never build cursors';

/**
 * 7. The run's payments, listed two at a time with a metadata filter, following nextCursor until hasMore is
 * false: every payment the run made is found, none twice. The scenario makes a few payments of its own, so it
 * also works alone.
 */
export async function pagingToTheEnd(run: Run): Promise<void> {
  const { from, to } = await run.pair();
  for (let i = 0; i < OWN_PAYMENTS; i++) {
    const answer = await run.pay({ from, to, amountCents: POSTED, tag: { certifyCase: 'paging' } });
    expect(
      answer.json?.payment?.id !== undefined,
      `a payment for the paging scenario answered ${described(answer)}`,
      'the sandbox must accept payments of the magic amount 77700',
    );
  }
  const seen = new Map<string, number>();
  let cursor: string | null = null;
  let pages = 0;
  for (;;) {
    expect(pages < PAGES_MAX, `more than ${PAGES_MAX} pages of ${PAGE_SIZE}`, FOLLOW_CURSOR);
    const query: string = cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`;
    const page = await run.client.send(
      'GET',
      `/v1/payments?limit=${PAGE_SIZE}&metadata[certifyRun]=${run.runId}${query}`,
    );
    pages++;
    expect(page.status === 200, `page ${pages} answered ${described(page)}`, FOLLOW_CURSOR);
    const items: { id: string; metadata?: Record<string, string> | null }[] = page.json.payments;
    expect(
      items.length <= PAGE_SIZE,
      `page ${pages} held ${items.length} payments with limit=${PAGE_SIZE}`,
      'an integration must ask for pages with limit and expect no more',
    );
    for (const item of items) {
      seen.set(item.id, (seen.get(item.id) ?? 0) + 1);
      expect(
        item.metadata?.['certifyRun'] === run.runId,
        `payment ${item.id} was listed under metadata[certifyRun]=${run.runId} without that metadata`,
        'an integration must be able to find its payments by metadata',
      );
    }
    if (!page.json.hasMore) {
      expect(
        page.json.nextCursor === null,
        `the last page (hasMore: false) carried nextCursor ${page.json.nextCursor}`,
        'an integration must stop at hasMore: false',
      );
      break;
    }
    expect(
      typeof page.json.nextCursor === 'string',
      `page ${pages} said hasMore: true without a nextCursor`,
      FOLLOW_CURSOR,
    );
    cursor = page.json.nextCursor;
  }
  const twice = [...seen].filter(([, n]) => n > 1).map(([id]) => id);
  expect(twice.length === 0, `listed more than once: ${twice.join(', ')}`, FOLLOW_CURSOR);
  const missing = [...run.payments].filter((id) => !seen.has(id));
  expect(
    missing.length === 0,
    `${missing.length} of the run's ${run.payments.size} payments were not listed: ${missing.join(', ')}`,
    FOLLOW_CURSOR,
  );
}
