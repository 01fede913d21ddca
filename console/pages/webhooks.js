/** Webhook endpoints (admin), their deliveries with status and attempts, and the test and retry actions. */
import { useState } from 'preact/hooks';
import { dateTime, shortId } from '../format.js';
import { ErrorBox, html, Loading, useLoad } from '../ui.js';

export function WebhooksPage({ session }) {
  const endpoints = useLoad(() => session.api.get('/v1/webhook-endpoints?limit=100'), []);
  if (endpoints.loading && endpoints.data === null) return html`<${Loading} what="webhook endpoints" />`;
  if (endpoints.error) return html`<${ErrorBox} error=${endpoints.error} />`;
  const list = endpoints.data.webhookEndpoints;
  return html`
    <h1>Webhooks</h1>
    ${list.length === 0 ? html`<p>No endpoints. Register one with <code>POST /v1/webhook-endpoints</code>.</p>` : ''}
    ${list.map((endpoint) => html`<${Endpoint} key=${endpoint.id} session=${session} endpoint=${endpoint} />`)}`;
}

function Endpoint({ session, endpoint }) {
  const deliveries = useLoad(
    () => session.api.get(`/v1/webhook-endpoints/${endpoint.id}/deliveries?limit=50`),
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
      ${deliveries.error ? html`<${ErrorBox} error=${deliveries.error} />` : ''}
      ${
        deliveries.data
          ? html`<div class="table-wrap"><table>
              <caption class="visually-hidden">Deliveries to ${endpoint.url}</caption>
              <thead><tr><th scope="col">Delivery</th><th scope="col">Event</th><th scope="col">Status</th><th scope="col" class="num">Attempts</th><th scope="col">Last result</th><th scope="col">Next attempt</th><th scope="col">Action</th></tr></thead>
              <tbody>${deliveries.data.deliveries.map(
                (
                  d,
                ) => html`<tr><td><code>${shortId(d.id)}</code></td><td><code>${d.eventType}</code></td><td>${d.status}</td><td class="num">${d.attempts}</td>
                  <td>${d.lastStatusCode ?? d.lastError ?? '—'}</td><td>${d.nextAttemptAt ? dateTime(d.nextAttemptAt) : '—'}</td>
                  <td>${d.status === 'failed' ? html`<button type="button" class="secondary" onClick=${() => act('Retry', `/v1/webhook-deliveries/${d.id}/retry`)}>Retry</button>` : ''}</td></tr>`,
              )}</tbody></table></div>`
          : ''
      }
    </section>`;
}
