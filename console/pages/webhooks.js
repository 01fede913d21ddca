/** Webhook endpoints (admin), their deliveries with status and attempts, and the test and retry actions. */
import { useState } from 'preact/hooks';
import { query } from '../api.js';
import { dateTime, shortId } from '../format.js';
import { ErrorBox, html, More, usePages } from '../ui.js';

export function WebhooksPage({ session }) {
  const list = usePages(
    (cursor) => session.api.get(`/v1/webhook-endpoints${query({ limit: 20, cursor })}`),
    [],
  );
  const endpoints = list.pages.flatMap((page) => page.webhookEndpoints);
  return html`
    <h1>Webhooks</h1>
    ${endpoints.length === 0 && !list.loading && !list.error ? html`<p>No endpoints. Register one with <code>POST /v1/webhook-endpoints</code>.</p>` : ''}
    ${endpoints.map((endpoint) => html`<${Endpoint} key=${endpoint.id} session=${session} endpoint=${endpoint} />`)}
    <${More} list=${list} what="webhook endpoints" />`;
}

/** Deliveries are listed oldest first, 50 a page: "Load more" reaches the newest. */
function Endpoint({ session, endpoint }) {
  const deliveries = usePages(
    (cursor) =>
      session.api.get(`/v1/webhook-endpoints/${endpoint.id}/deliveries${query({ limit: 50, cursor })}`),
    [endpoint.id],
  );
  const [message, setMessage] = useState(null);
  const act = async (what, path) => {
    setMessage(null);
    try {
      await session.api.post(path, {});
      setMessage({ text: `${what}: queued` });
      deliveries.reload();
    } catch (error) {
      setMessage({ error });
    }
  };
  const rows = deliveries.pages.flatMap((page) => page.deliveries);
  return html`
    <section class="card wide" aria-label=${`Endpoint ${endpoint.url}`}>
      <h2><code>${endpoint.url}</code></h2>
      <p class="muted">${endpoint.id} · events: ${endpoint.events.join(', ')} · created ${dateTime(endpoint.createdAt)}</p>
      <div class="actions">
        <button type="button" class="secondary" onClick=${() => act('Test event', `/v1/webhook-endpoints/${endpoint.id}/test`)}>Send a test event</button>
        <button type="button" class="secondary" onClick=${deliveries.reload}>Reload deliveries</button>
      </div>
      ${message?.text ? html`<p role="status">${message.text}</p>` : ''}
      ${message?.error ? html`<${ErrorBox} error=${message.error} />` : ''}
      ${
        rows.length > 0
          ? html`<div class="table-wrap"><table>
              <caption class="visually-hidden">Deliveries to ${endpoint.url}, oldest first</caption>
              <thead><tr><th scope="col">Delivery</th><th scope="col">Event</th><th scope="col">Status</th><th scope="col" class="num">Attempts</th><th scope="col">Last result</th><th scope="col">Next attempt</th><th scope="col">Action</th></tr></thead>
              <tbody>${rows.map(
                (
                  d,
                ) => html`<tr><td class="id"><code>${shortId(d.id)}</code></td><td><code>${d.eventType}</code></td><td>${d.status}</td><td class="num">${d.attempts}</td>
                  <td>${d.lastStatusCode ?? d.lastError ?? '—'}</td><td>${d.nextAttemptAt ? dateTime(d.nextAttemptAt) : '—'}</td>
                  <td>${d.status === 'failed' ? html`<button type="button" class="secondary" onClick=${() => act('Retry', `/v1/webhook-deliveries/${d.id}/retry`)}>Retry</button>` : ''}</td></tr>`,
              )}</tbody></table></div>`
          : ''
      }
      ${rows.length === 0 && !deliveries.loading && !deliveries.error ? html`<p class="muted">No deliveries yet.</p>` : ''}
      <${More} list=${deliveries} what="deliveries" />
    </section>`;
}
