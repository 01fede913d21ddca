/**
 * One payment: status, amounts, parties and their balances, the review actions (compliance), the decision
 * explained, the workshop's request flow for this payment, its ledger entries and refunds, and its receipt
 * verified in this page.
 */
import { useState } from 'preact/hooks';
import { requestFlow } from '../flow.js';
import { dateTime, money, shortId, value } from '../format.js';
import { ErrorBox, html, Loading, Status, useLoad } from '../ui.js';
import { Receipt } from './receipt.js';

export function PaymentPage({ session, id }) {
  const loaded = useLoad(async () => {
    const { api } = session;
    const view = await api.get(`/v1/payments/${encodeURIComponent(id)}`);
    const { sourceAccountId, destinationAccountId } = view.payment;
    const balances = await Promise.all(
      [sourceAccountId, destinationAccountId].map((account) =>
        // A balance that cannot be read is shown as its error, beside the rest of the page.
        api.get(`/v1/accounts/${encodeURIComponent(account)}/balance`).then(
          (b) => b.account,
          (error) => ({ error }),
        ),
      ),
    );
    return { ...view, balances };
  }, [id]);
  if (loaded.error) return html`<${ErrorBox} error=${loaded.error} />`;
  if (loaded.data === null) return html`<${Loading} what="the payment" />`;
  const { payment, ledgerEntries, refunds, balances, ledgerEntriesHasMore, refundsHasMore } = loaded.data;
  return html`
    <h1>Payment <code>${payment.id}</code> <${Status} status=${payment.status} /></h1>
    <${Summary} payment=${payment} />
    <${Parties} payment=${payment} balances=${balances} />
    ${
      payment.status === 'manual_review' && session.can('approvePayment')
        ? html`<${ReviewActions} session=${session} payment=${payment} onResolved=${loaded.reload} />`
        : ''
    }
    <${Decision} payment=${payment} />
    <${Flow} payment=${payment} ledgerEntries=${ledgerEntries} refunds=${refunds} partial=${ledgerEntriesHasMore || refundsHasMore} />
    <${Entries} entries=${ledgerEntries} />
    ${refunds.length > 0 ? html`<${Refunds} refunds=${refunds} />` : ''}
    ${
      session.can('getPaymentReceipt') && session.me.apiKey.customerIds === null
        ? html`<${Receipt} session=${session} payment=${payment} />`
        : ''
    }
  `;
}

function Summary({ payment }) {
  const rows = [
    [
      'Amount',
      html`<span data-testid="amount">${money(payment.amountCents, payment.currency)}</span> <span class="muted">(${payment.amountCents} minor units)</span>`,
    ],
    ['Created', dateTime(payment.createdAt)],
    ['Reasons', payment.reasons.length === 0 ? 'none' : payment.reasons.join(', ')],
    ['Refunded', money(payment.refundedCents, payment.currency)],
    ['Note', payment.note ?? '—'],
  ];
  if (payment.holdExpiresAt) rows.push(['Hold expires', dateTime(payment.holdExpiresAt)]);
  if (payment.resolution) {
    const r = payment.resolution;
    rows.push([
      'Resolution',
      `${r.outcome} by ${r.resolvedBy} at ${dateTime(r.resolvedAt)}${r.noteProvided ? ' (with a note)' : ''}`,
    ]);
  }
  if (payment.metadata)
    rows.push([
      'Metadata',
      Object.entries(payment.metadata)
        .map(([k, v]) => `${k}=${v}`)
        .join(', '),
    ]);
  return html`<dl class="facts">${rows.map(([k, v]) => html`<dt>${k}</dt><dd>${v}</dd>`)}</dl>`;
}

function Parties({ payment, balances }) {
  const party = (label, accountId, balance) => html`
    <div class="card" data-testid=${`party-${label.toLowerCase()}`}>
      <h3>${label}</h3>
      <p><a href="#/accounts/${accountId}">${accountId}</a></p>
      ${
        balance.error && [403, 404].includes(balance.error.status)
          ? html`<p class="muted">Not visible to this key (a scoped key sees its own customers' accounts).</p>`
          : balance.error
            ? html`<${ErrorBox} error=${balance.error} />`
            : html`<dl class="facts compact">
              <dt>Posted</dt><dd data-testid="posted">${money(balance.postedBalanceCents, balance.currency)}</dd>
              <dt>Held</dt><dd data-testid="held">${money(balance.heldBalanceCents, balance.currency)}</dd>
              <dt>Available</dt><dd data-testid="available">${money(balance.availableBalanceCents, balance.currency)}</dd>
            </dl>`
      }
    </div>`;
  return html`<section aria-labelledby="parties"><h2 id="parties">Parties</h2><div class="cards">
    ${party('Source', payment.sourceAccountId, balances[0])}${party('Destination', payment.destinationAccountId, balances[1])}
  </div></section>`;
}

/** Approve or Reject, with an optional note; a refused approval shows the reasons the re-check found. */
function ReviewActions({ session, payment, onResolved }) {
  const [note, setNote] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  async function resolve(action) {
    setBusy(true);
    setError(null);
    try {
      await session.api.post(
        `/v1/payments/${encodeURIComponent(payment.id)}/${action}`,
        note.trim() === '' ? {} : { note: note.trim() },
      );
      onResolved();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }
  return html`
    <section aria-labelledby="review" class="review-actions">
      <h2 id="review">Review</h2>
      <label for="review-note">Reviewer note <span class="muted">(optional, stored encrypted)</span></label>
      <textarea id="review-note" maxlength="500" rows="2" value=${note} onInput=${(e) => setNote(e.currentTarget.value)}></textarea>
      <div class="actions">
        <button type="button" disabled=${busy} onClick=${() => resolve('approve')}>Approve</button>
        <button type="button" class="danger" disabled=${busy} onClick=${() => resolve('reject')}>Reject</button>
      </div>
      ${
        error?.code === 'PAYMENT_NO_LONGER_APPROVABLE'
          ? html`<div class="error" role="alert" data-testid="refusal">
              This payment can no longer be approved: the re-check would now decline it.
              <ul>${error.details.map((d) => html`<li><code>${d.message}</code></li>`)}</ul>
              Reject it to release the hold.
            </div>`
          : html`<${ErrorBox} error=${error} />`
      }
    </section>`;
}

function conditionText(condition) {
  return `${condition.feature} ${condition.op} ${value(condition.value)}`;
}

/** Each fired rule with what it saw against what it compares with, the score, sanctions and policy version. */
function Decision({ payment }) {
  const d = payment.decision;
  if (!Array.isArray(d.rules)) {
    return html`<section aria-labelledby="decision"><h2 id="decision">Decision</h2>
      <p>${d.outcome} under policy <code>${d.policyVersion}</code>${d.reasons.length > 0 ? `: ${d.reasons.join(', ')}` : ''}.</p>
      <p class="muted">The full explanation is for compliance, auditor and admin keys.</p></section>`;
  }
  const screened = (label, party) =>
    party === undefined
      ? ''
      : html`<li>${label}: best match ${(party.scoreBp / 100).toFixed(2)} %${party.entryId === null ? '' : html` (list entry <code>${party.entryId}</code>${party.aliasId ? html`, alias <code>${party.aliasId}</code>` : ''})`}</li>`;
  return html`
    <section aria-labelledby="decision" data-testid="decision">
      <h2 id="decision">Decision explained</h2>
      <p>Outcome <strong>${d.outcome}</strong>, score <strong data-testid="score">${d.score}</strong> of 100, policy version <code data-testid="policy-version">${d.policyVersion}</code>.</p>
      ${
        d.rules.length === 0
          ? html`<p>No rule fired.</p>`
          : html`<div class="table-wrap"><table>
              <caption class="visually-hidden">Rules that fired</caption>
              <thead><tr><th scope="col">Rule</th><th scope="col">Outcome</th><th scope="col">Reason</th><th scope="col">Saw</th><th scope="col">Against</th><th scope="col" class="num">Score</th></tr></thead>
              <tbody>${d.rules.map(
                (rule) => html`<tr data-testid="rule">
                  <td><code>${rule.rule}</code></td><td>${rule.outcome}</td><td><code>${rule.reason}</code></td>
                  <td>${Object.entries(rule.observed).map(([k, v]) => html`<div><code>${k}</code> = ${value(v)}</div>`)}</td>
                  <td>${
                    rule.conditions
                      ? html`${rule.conditions.all.map((c) => html`<div>${conditionText(c)}</div>`)}${
                          rule.conditions.any.length > 0
                            ? html`<div class="muted">any of:</div>${rule.conditions.any.map((c) => html`<div>${conditionText(c)}</div>`)}`
                            : ''
                        }`
                      : html`<span class="muted">${withoutConditions(rule)}</span>`
                  }</td>
                  <td class="num">${rule.score ?? '—'}</td>
                </tr>`,
              )}</tbody></table></div>`
      }
      <h3>Sanctions screening</h3>
      <ul>
        ${screened('Sender', d.sanctions?.sender)}${screened('Receiver', d.sanctions?.receiver)}
        <li class="muted">List version (SHA-256) <code>${d.sanctions?.listSha256?.slice(0, 16)}…</code></li>
      </ul>
      <details><summary>All features the rules could see</summary>
        <dl class="facts compact">${Object.entries(d.features ?? {}).map(([k, v]) => html`<dt><code>${k}</code></dt><dd>${value(v)}</dd>`)}</dl>
      </details>
    </section>`;
}

/** What a rule without recorded conditions compared: the two system checks say it by their name. */
function withoutConditions(rule) {
  if (rule.rule === 'funds') return 'amountCents > available balance (system check)';
  if (rule.rule === 'currency') return 'payment currency ≠ an account currency (system check)';
  return 'conditions not recorded (decided before decisions recorded them)';
}

function Flow({ payment, ledgerEntries, refunds, partial }) {
  const steps = requestFlow({ payment, ledgerEntries, refunds, partial });
  return html`
    <section aria-labelledby="flow">
      <h2 id="flow">Request flow</h2>
      <p class="muted">The eight steps of <code>POST /v1/payments</code> for this payment; steps 2 to 8 ran in one database transaction.</p>
      <ol class="flow" data-testid="flow">
        ${steps.map(
          (step) => html`<li class=${`step step-${step.state}`}>
            <strong>${step.name}</strong> <span class="step-state">${step.state}</span>
            <div>${step.text}</div>
            <div class="muted"><code>${step.file}</code></div>
          </li>`,
        )}
      </ol>
    </section>`;
}

function Entries({ entries }) {
  return html`
    <section aria-labelledby="entries">
      <h2 id="entries">Ledger entries</h2>
      ${
        entries.length === 0
          ? html`<p class="muted">None: no money moved.</p>`
          : html`<div class="table-wrap"><table data-testid="ledger">
              <caption class="visually-hidden">Ledger entries of this payment</caption>
              <thead><tr><th scope="col">Entry</th><th scope="col">Account</th><th scope="col">Direction</th><th scope="col" class="num">Amount</th><th scope="col">Time</th></tr></thead>
              <tbody>${entries.map(
                (e) =>
                  html`<tr><td><code>${shortId(e.id)}</code></td><td><a href="#/accounts/${e.accountId}">${e.accountId}</a></td><td>${e.direction}</td><td class="num">${money(e.amountCents, e.currency)}</td><td>${dateTime(e.timestamp)}</td></tr>`,
              )}</tbody></table></div>`
      }
    </section>`;
}

function Refunds({ refunds }) {
  return html`
    <section aria-labelledby="refunds">
      <h2 id="refunds">Refunds</h2>
      <div class="table-wrap"><table>
        <thead><tr><th scope="col">Refund</th><th scope="col" class="num">Amount</th><th scope="col">Reason</th><th scope="col">Time</th></tr></thead>
        <tbody>${refunds.map((r) => html`<tr><td><code>${shortId(r.id)}</code></td><td class="num">${money(r.amountCents, r.currency)}</td><td>${r.reason ?? '—'}</td><td>${dateTime(r.createdAt)}</td></tr>`)}</tbody>
      </table></div>
    </section>`;
}
