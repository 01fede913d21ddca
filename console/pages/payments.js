/** Payments, newest pages loaded on demand (GET /v1/payments, cursor-paged), filtered by status. */
import { useState } from 'preact/hooks';
import { query } from '../api.js';
import { dateTime, money, shortId } from '../format.js';
import { ErrorBox, html, Loading, More, Status, useLoad } from '../ui.js';

const STATUSES = ['', 'posted', 'manual_review', 'declined'];

export function PaymentsPage({ session }) {
  const [status, setStatus] = useState('');
  const [extra, setExtra] = useState([]);
  const first = useLoad(() => session.api.get(`/v1/payments${query({ status, limit: 50 })}`), [status]);
  const all = first.data === null ? [] : [first.data, ...extra];
  const last = all[all.length - 1];
  const more = async () =>
    setExtra([
      ...extra,
      await session.api.get(`/v1/payments${query({ status, limit: 50, cursor: last.nextCursor })}`),
    ]);
  return html`
    <h1>Payments</h1>
    <div class="filters">
      <label for="status-filter">Status</label>
      <select id="status-filter" value=${status} onChange=${(e) => {
        setExtra([]);
        setStatus(e.currentTarget.value);
      }}>
        ${STATUSES.map((s) => html`<option value=${s}>${s === '' ? 'any' : s}</option>`)}
      </select>
    </div>
    ${first.error ? html`<${ErrorBox} error=${first.error} />` : ''}
    ${first.loading && first.data === null ? html`<${Loading} what="payments" />` : ''}
    ${
      all.length > 0
        ? html`<div class="table-wrap"><table>
            <caption class="visually-hidden">Payments, oldest first</caption>
            <thead><tr><th scope="col">Payment</th><th scope="col">Status</th><th scope="col" class="num">Amount</th><th scope="col">From</th><th scope="col">To</th><th scope="col">Created</th></tr></thead>
            <tbody>${all
              .flatMap((page) => page.payments)
              .map(
                (
                  p,
                ) => html`<tr><td><a href="#/payments/${p.id}">${shortId(p.id)}</a></td><td><${Status} status=${p.status} /></td>
                <td class="num">${money(p.amountCents, p.currency)}</td><td>${shortId(p.sourceAccountId)}</td><td>${shortId(p.destinationAccountId)}</td><td>${dateTime(p.createdAt)}</td></tr>`,
              )}</tbody></table></div>
          <${More} hasMore=${last.hasMore} onMore=${more} />`
        : ''
    }
  `;
}
