/** Payments, cursor-paged (GET /v1/payments), newest first by default, filtered by status. */
import { useState } from 'preact/hooks';
import { query } from '../api.js';
import { dateTime, money, shortId } from '../format.js';
import { html, More, Status, usePages } from '../ui.js';

const STATUSES = ['', 'posted', 'manual_review', 'declined'];

export function PaymentsPage({ session }) {
  const [status, setStatus] = useState('');
  const [order, setOrder] = useState('desc');
  const list = usePages(
    (cursor) => session.api.get(`/v1/payments${query({ status, order, limit: 50, cursor })}`),
    [status, order],
  );
  const payments = list.pages.flatMap((page) => page.payments);
  return html`
    <h1>Payments</h1>
    <div class="filters">
      <label for="status-filter">Status</label>
      <select id="status-filter" value=${status} onChange=${(e) => setStatus(e.currentTarget.value)}>
        ${STATUSES.map((s) => html`<option value=${s}>${s === '' ? 'any' : s}</option>`)}
      </select>
      <label for="order-filter">Order</label>
      <select id="order-filter" value=${order} onChange=${(e) => setOrder(e.currentTarget.value)}>
        <option value="desc">newest first</option>
        <option value="asc">oldest first</option>
      </select>
    </div>
    ${
      payments.length > 0
        ? html`<div class="table-wrap"><table>
            <caption class="visually-hidden">Payments, ${order === 'desc' ? 'newest' : 'oldest'} first</caption>
            <thead><tr><th scope="col">Payment</th><th scope="col">Status</th><th scope="col" class="num">Amount</th><th scope="col">From</th><th scope="col">To</th><th scope="col">Created</th></tr></thead>
            <tbody>${payments.map(
              (
                p,
              ) => html`<tr><td class="id"><a href="#/payments/${p.id}">${shortId(p.id)}</a></td><td><${Status} status=${p.status} /></td>
                <td class="num">${money(p.amountCents, p.currency)}</td><td class="id">${shortId(p.sourceAccountId)}</td><td class="id">${shortId(p.destinationAccountId)}</td><td>${dateTime(p.createdAt)}</td></tr>`,
            )}</tbody></table></div>`
        : ''
    }
    ${payments.length === 0 && !list.loading && !list.error ? html`<p>No payments${status === '' ? '' : ` with status ${status}`}.</p>` : ''}
    <${More} list=${list} what="payments" />
  `;
}
