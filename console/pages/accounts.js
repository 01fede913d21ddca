/**
 * Accounts with their balances (posted, held, available), and one account's page: its controls, its balance at
 * any past instant, and its statement (entries with the balance after each).
 */
import { useState } from 'preact/hooks';
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
  const a = account.data?.account;
  return html`
    <h1>Account <code>${id}</code></h1>
    ${account.error ? html`<${ErrorBox} error=${account.error} />` : ''}
    ${account.loading && account.data === null ? html`<${Loading} what="the account" />` : ''}
    ${
      a
        ? html`<div class="table-wrap"><table data-testid="account-balance"><thead><tr><th scope="col">Masked number</th><th scope="col">Currency</th>${BALANCE_HEADINGS}<th scope="col">Status</th><th scope="col">Limit</th></tr></thead>
            <tbody><tr><td>${a.maskedAccountNumber}</td><td>${a.currency}</td><${BalanceCells} account=${a} /><td data-testid="account-status">${a.status}</td><td>${limit(a)}</td></tr></tbody></table></div>
            <${BalanceAt} session=${session} id=${id} />
            <${Statement} session=${session} id=${id} currency=${a.currency} />`
        : ''
    }`;
}

/** The account's floor in words: what the available balance may go down to. */
function limit(account) {
  if (account.overdraftLimitCents > 0)
    return `overdraft ${money(account.overdraftLimitCents, account.currency)}`;
  if (account.minimumBalanceCents > 0)
    return `minimum ${money(account.minimumBalanceCents, account.currency)}`;
  return 'none';
}

/** A date input's day as the instant it starts, in UTC (the console shows every time in UTC). */
const dayStart = (day) => (day === '' ? undefined : `${day}T00:00:00Z`);
/** The instant after a date input's day: a statement's `to` is exclusive, so "to 2 Dec" includes 2 Dec. */
const dayAfter = (day) => {
  if (day === '') return undefined;
  const next = new Date(`${day}T00:00:00Z`);
  next.setUTCDate(next.getUTCDate() + 1);
  return next.toISOString();
};

/**
 * Balance history: the account's posted and held balance at any past instant (GET /v1/accounts/:id/balance?at=),
 * read from the running balances the ledger records.
 */
function BalanceAt({ session, id }) {
  const [at, setAt] = useState('');
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  async function show(event) {
    event.preventDefault();
    setError(null);
    setResult(null);
    try {
      const instant = `${at}:00Z`;
      setResult(
        await session.api.get(`/v1/accounts/${encodeURIComponent(id)}/balance${query({ at: instant })}`),
      );
    } catch (e) {
      setError(e);
    }
  }
  return html`
    <section aria-labelledby="balance-at">
      <h2 id="balance-at">Balance at a time</h2>
      <form class="inline-form" onSubmit=${show}>
        <label for="balance-at-time">Instant (UTC)</label>
        <input id="balance-at-time" type="datetime-local" required value=${at} onInput=${(e) => setAt(e.currentTarget.value)} />
        <button type="submit">Show</button>
      </form>
      <${ErrorBox} error=${error} />
      ${
        result
          ? html`<div class="table-wrap"><table data-testid="balance-at"><thead><tr><th scope="col">As of</th>${BALANCE_HEADINGS}</tr></thead>
              <tbody><tr><td>${dateTime(result.account.asOf)}</td><${BalanceCells} account=${result.account} /></tr></tbody></table></div>`
          : ''
      }
    </section>`;
}

/**
 * The statement: a period's entries, oldest first, each with the balance after it, between the opening and the
 * closing balance (GET /v1/accounts/:id/statement). Without dates, the whole history so far.
 */
function Statement({ session, id, currency }) {
  const [from, setFrom] = useState('');
  const [to, setTo] = useState('');
  const [period, setPeriod] = useState({ from: undefined, to: undefined });
  const list = usePages(
    (cursor) =>
      session.api.get(
        `/v1/accounts/${encodeURIComponent(id)}/statement${query({ from: period.from, to: period.to, limit: 100, cursor })}`,
      ),
    [id, period.from, period.to],
  );
  const first = list.pages[0];
  const entries = list.pages.flatMap((page) => page.entries);
  function apply(event) {
    event.preventDefault();
    setPeriod({ from: dayStart(from), to: dayAfter(to) });
  }
  return html`
    <section aria-labelledby="statement">
      <h2 id="statement">Statement</h2>
      <form class="inline-form" onSubmit=${apply}>
        <label for="statement-from">From (UTC day)</label>
        <input id="statement-from" type="date" value=${from} onInput=${(e) => setFrom(e.currentTarget.value)} />
        <label for="statement-to">To (UTC day, included)</label>
        <input id="statement-to" type="date" value=${to} onInput=${(e) => setTo(e.currentTarget.value)} />
        <button type="submit">Show</button>
      </form>
      <${ErrorBox} error=${list.error} />
      ${
        first
          ? html`<p data-testid="statement-summary">${period.from === undefined ? 'From the first entry' : dateTime(first.from)} to ${dateTime(first.to)}: opening <strong>${money(first.openingBalanceCents, currency)}</strong>, closing <strong>${money(first.closingBalanceCents, currency)}</strong>.</p>`
          : ''
      }
      ${first && entries.length === 0 && !list.loading ? html`<p class="muted">No entries in this period.</p>` : ''}
      ${
        entries.length > 0
          ? html`<div class="table-wrap"><table data-testid="account-entries">
              <caption class="visually-hidden">The statement's entries, oldest first, with the balance after each</caption>
              <thead><tr><th scope="col">Time</th><th scope="col">Payment</th><th scope="col">Direction</th><th scope="col" class="num">Amount</th><th scope="col" class="num">Balance after</th></tr></thead>
              <tbody>${entries.map(
                (e) =>
                  html`<tr><td>${dateTime(e.timestamp)}</td><td class="id">${e.paymentId ? html`<a href="#/payments/${e.paymentId}">${shortId(e.paymentId)}</a>` : '—'}</td><td>${e.direction}</td><td class="num">${money(e.amountCents, e.currency)}</td><td class="num">${money(e.balanceAfterCents, e.currency)}</td></tr>`,
              )}</tbody></table></div>`
          : ''
      }
      <${More} list=${list} what="entries" />
    </section>`;
}
