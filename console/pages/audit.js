/** The audit log: its size, the latest signed checkpoint, the server's verification, and the entries by page. */
import { useState } from 'preact/hooks';
import { query } from '../api.js';
import { dateTime } from '../format.js';
import { ErrorBox, html, Loading, useLoad } from '../ui.js';

const PAGE_SIZE = 25;

export function AuditPage({ session }) {
  const checkpoint = useLoad(() => session.api.getText('/v1/audit-logs/checkpoint'), []);
  const [verification, setVerification] = useState(null);
  const [cursors, setCursors] = useState([null]);
  const cursor = cursors[cursors.length - 1];
  const entries = useLoad(
    () => session.api.get(`/v1/audit-logs${query({ limit: PAGE_SIZE, cursor })}`),
    [cursor],
  );
  const verify = async () => {
    setVerification({ loading: true });
    try {
      setVerification({ result: await session.api.get('/v1/audit-logs/verify') });
    } catch (error) {
      setVerification({ error });
    }
  };
  const result = verification?.result?.verification;
  return html`
    <h1>Audit log</h1>
    <section aria-labelledby="checkpoint">
      <h2 id="checkpoint">Latest signed checkpoint</h2>
      ${checkpoint.error ? html`<${ErrorBox} error=${checkpoint.error} />` : ''}
      ${checkpoint.data ? html`<p>Log size <strong data-testid="log-size">${checkpoint.data.split('\n')[1]}</strong> entries.</p><pre class="note">${checkpoint.data}</pre>` : ''}
    </section>
    <section aria-labelledby="verify">
      <h2 id="verify">Verification</h2>
      <button type="button" onClick=${verify} disabled=${verification?.loading === true}>Verify the hash chain</button>
      ${verification?.error ? html`<${ErrorBox} error=${verification.error} />` : ''}
      ${
        result
          ? html`<p class=${result.valid ? 'verdict ok' : 'verdict bad'} role="status" data-testid="audit-verdict">${
              result.valid
                ? `Valid: ${result.size} entries checked`
                : `Broken at entry ${result.brokenAtIndex}: ${result.reason}`
            }</p>`
          : verification?.result
            ? html`<p role="status">Verification started as a job; check it with GET /v1/audit-logs/verify-jobs/:id.</p>`
            : ''
      }
    </section>
    <section aria-labelledby="entries">
      <h2 id="entries">Entries</h2>
      ${entries.error ? html`<${ErrorBox} error=${entries.error} />` : ''}
      ${entries.loading && entries.data === null ? html`<${Loading} what="entries" />` : ''}
      ${
        entries.data
          ? html`<div class="table-wrap"><table data-testid="audit-entries">
              <caption class="visually-hidden">Audit entries, in index order</caption>
              <thead><tr><th scope="col" class="num">#</th><th scope="col">Time</th><th scope="col">Event</th><th scope="col">Actor</th><th scope="col">Resource</th><th scope="col">Hash</th></tr></thead>
              <tbody>${entries.data.logs.map(
                (
                  e,
                ) => html`<tr><td class="num">${e.index}</td><td>${dateTime(e.timestamp)}</td><td><code>${e.eventType}</code></td><td><code>${e.actorId}</code></td>
                  <td>${e.resourceType === 'payment' ? html`<a href="#/payments/${e.resourceId}">${e.resourceId}</a>` : html`${e.resourceType} <code>${e.resourceId}</code>`}</td>
                  <td><code>${e.hash.slice(0, 12)}…</code></td></tr>`,
              )}</tbody></table></div>
            <div class="actions">
              <button type="button" class="secondary" disabled=${cursors.length === 1} onClick=${() => setCursors(cursors.slice(0, -1))}>Previous page</button>
              <button type="button" class="secondary" disabled=${!entries.data.hasMore} onClick=${() => setCursors([...cursors, entries.data.nextCursor])}>Next page</button>
            </div>`
          : ''
      }
    </section>`;
}
