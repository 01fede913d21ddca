/**
 * The review queue (compliance): payments held for review, oldest first (GET /v1/payments?status=manual_review),
 * with amount, parties, age and the time left before the expiry sweep declines them. Each opens its payment,
 * where Approve and Reject are.
 */
import { query } from '../api.js';
import { duration, money, shortId } from '../format.js';
import { html, More, usePages } from '../ui.js';

export function ReviewQueuePage({ session }) {
  const list = usePages(
    (cursor) => session.api.get(`/v1/payments${query({ status: 'manual_review', limit: 50, cursor })}`),
    [],
  );
  const payments = list.pages.flatMap((page) => page.payments);
  const nowMs = Date.now();
  return html`
    <h1>Review queue</h1>
    <p class="muted">Payments held for review, oldest first. The amount is held on the source until a decision or the hold's expiry.</p>
    ${
      payments.length === 0 && !list.loading && !list.error
        ? html`<p data-testid="queue-empty">Nothing is waiting for review.</p>`
        : ''
    }
    ${
      payments.length > 0
        ? html`
      <div class="table-wrap">
        <table>
          <caption class="visually-hidden">Held payments</caption>
          <thead><tr><th scope="col">Payment</th><th scope="col" class="num">Amount</th><th scope="col">From</th><th scope="col">To</th><th scope="col">Reasons</th><th scope="col">Age</th><th scope="col">Hold expires in</th></tr></thead>
          <tbody>
            ${payments.map((p) => {
              const leftMs = Date.parse(p.holdExpiresAt) - nowMs;
              return html`<tr data-testid="queue-row">
                <td class="id"><a href="#/payments/${p.id}">${shortId(p.id)}</a></td>
                <td class="num">${money(p.amountCents, p.currency)}</td>
                <td class="id"><a href="#/accounts/${p.sourceAccountId}">${shortId(p.sourceAccountId)}</a></td>
                <td class="id"><a href="#/accounts/${p.destinationAccountId}">${shortId(p.destinationAccountId)}</a></td>
                <td>${p.reasons.join(', ')}</td>
                <td>${duration(nowMs - Date.parse(p.createdAt))}</td>
                <td class=${leftMs < 6 * 3600_000 ? 'warn' : ''}>${leftMs > 0 ? duration(leftMs) : 'due now (approval is refused)'}</td>
              </tr>`;
            })}
          </tbody>
        </table>
      </div>`
        : ''
    }
    <${More} list=${list} what="the review queue" />
  `;
}
