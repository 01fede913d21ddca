/** Accounts with their balances (posted, held, available), and one account's ledger entries. */
import { query } from '../api.js';
import { dateTime, money, shortId } from '../format.js';
import { ErrorBox, html, Loading, More, useLoad, usePages } from '../ui.js';

function BalanceCells({ account }) {
  return html`<td class="num">${money(account.postedBalanceCents, account.currency)}</td>
    <td class="num">${money(account.heldBalanceCents, account.currency)}</td>
    <td class="num">${money(account.availableBalanceCents, account.currency)}</td>`;
}

const BALANCE_HEADINGS = html`<th scope="col" class="num">Posted</th><th scope="col" class="num">Held</th><th scope="col" class="num">Available</th>`;

export function AccountsPage({ session }) {
  const list = usePages((cursor) => session.api.get(`/v1/accounts${query({ limit: 100, cursor })}`), []);
  const accounts = list.pages.flatMap((page) => page.accounts);
  return html`
    <h1>Accounts</h1>
    ${
      accounts.length > 0
        ? html`<div class="table-wrap"><table data-testid="accounts">
            <caption class="visually-hidden">Accounts and balances</caption>
            <thead><tr><th scope="col">Account</th><th scope="col">Owner</th><th scope="col">Currency</th>${BALANCE_HEADINGS}</tr></thead>
            <tbody>${accounts.map(
              (a) =>
                html`<tr><td class="id"><a href="#/accounts/${a.id}">${a.id}</a></td><td class="id">${shortId(a.ownerCustomerId)}</td><td>${a.currency}</td><${BalanceCells} account=${a} /></tr>`,
            )}</tbody>
          </table></div>`
        : ''
    }
    <${More} list=${list} what="accounts" />`;
}

export function AccountPage({ session, id }) {
  const account = useLoad(() => session.api.get(`/v1/accounts/${encodeURIComponent(id)}`), [id]);
  return html`
    <h1>Account <code>${id}</code></h1>
    ${account.error ? html`<${ErrorBox} error=${account.error} />` : ''}
    ${account.loading && account.data === null ? html`<${Loading} what="the account" />` : ''}
    ${
      account.data
        ? html`<div class="table-wrap"><table data-testid="account-balance"><thead><tr><th scope="col">Masked number</th><th scope="col">Currency</th>${BALANCE_HEADINGS}</tr></thead>
            <tbody><tr><td>${account.data.account.maskedAccountNumber}</td><td>${account.data.account.currency}</td><${BalanceCells} account=${account.data.account} /></tr></tbody></table></div>`
        : ''
    }
    ${session.can('listLedgerEntries') ? html`<${AccountEntries} session=${session} id=${id} />` : html`<p class="muted">This key's role does not read the ledger; a payment's page shows its entries.</p>`}`;
}

function AccountEntries({ session, id }) {
  const list = usePages(
    (cursor) => session.api.get(`/v1/ledger${query({ accountId: id, limit: 100, cursor })}`),
    [id],
  );
  const entries = list.pages.flatMap((page) => page.ledgerEntries);
  return html`
    <h2>Ledger entries</h2>
    ${entries.length === 0 && !list.loading && !list.error ? html`<p class="muted">No entries yet.</p>` : ''}
    ${
      entries.length > 0
        ? html`<div class="table-wrap"><table data-testid="account-entries">
            <caption class="visually-hidden">Ledger entries of this account, oldest first</caption>
            <thead><tr><th scope="col">Time</th><th scope="col">Payment</th><th scope="col">Direction</th><th scope="col" class="num">Amount</th></tr></thead>
            <tbody>${entries.map(
              (e) =>
                html`<tr><td>${dateTime(e.timestamp)}</td><td class="id">${e.paymentId ? html`<a href="#/payments/${e.paymentId}">${shortId(e.paymentId)}</a>` : '—'}</td><td>${e.direction}</td><td class="num">${money(e.amountCents, e.currency)}</td></tr>`,
            )}</tbody></table></div>`
        : ''
    }
    <${More} list=${list} what="ledger entries" />`;
}
