/**
 * The operator console: a signed-in shell (who is signed in, what their role may open) and a page per hash
 * route. Pages are in pages/; each gets the session and calls the API itself. No build step: these modules run
 * as written, preact and htm come from their packages (docs/decisions/0020-console-without-a-build-step.md).
 */
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { createApi } from './api.js';
import { AccountPage, AccountsPage } from './pages/accounts.js';
import { AuditPage } from './pages/audit.js';
import { PaymentPage } from './pages/payment.js';
import { PaymentsPage } from './pages/payments.js';
import { ReviewQueuePage } from './pages/review.js';
import { SignIn } from './pages/sign-in.js';
import { WebhooksPage } from './pages/webhooks.js';
import { html } from './ui.js';

/** The pages, in the navigation's order; `needs` is the operation the role must be permitted (GET /v1/me). */
const PAGES = [
  { path: 'review', label: 'Review queue', needs: 'approvePayment', Page: ReviewQueuePage },
  { path: 'payments', label: 'Payments', needs: 'listPayments', Page: PaymentsPage },
  { path: 'accounts', label: 'Accounts', needs: 'listAccounts', Page: AccountsPage },
  { path: 'audit', label: 'Audit', needs: 'listAuditEntries', Page: AuditPage },
  { path: 'webhooks', label: 'Webhooks', needs: 'listWebhookEndpoints', Page: WebhooksPage },
];

/** A path segment as typed; a malformed escape (`%E0%A4%A`) is kept as it is rather than failing the page. */
function decodeSegment(segment) {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** `#/payments/pay_123` → ['payments', 'pay_123']. */
function currentRoute() {
  const parts = window.location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeSegment);
  return { page: parts[0] ?? '', id: parts[1] ?? null };
}

function useRoute() {
  const [route, setRoute] = useState(currentRoute);
  useEffect(() => {
    const onChange = () => setRoute(currentRoute());
    window.addEventListener('hashchange', onChange);
    return () => window.removeEventListener('hashchange', onChange);
  }, []);
  return route;
}

function Console() {
  // The whole session, key included, lives in this state: closing or reloading the tab forgets it.
  const [session, setSession] = useState(null);
  const route = useRoute();
  if (session === null) return html`<${SignIn} onSignedIn=${setSession} createApi=${createApi} />`;

  const can = (operation) => session.me.permissions.includes(operation);
  const pages = PAGES.filter((page) => can(page.needs));
  const signOut = () => {
    setSession(null);
    window.location.hash = '';
  };
  const shared = { session: { ...session, can }, id: route.id };
  let content;
  if (route.page === 'payments' && route.id !== null) content = html`<${PaymentPage} ...${shared} />`;
  else if (route.page === 'accounts' && route.id !== null) content = html`<${AccountPage} ...${shared} />`;
  else {
    const page = pages.find((p) => p.path === route.page) ?? pages[0];
    content =
      page === undefined
        ? html`<p>This key's role opens no page of the console.</p>`
        : html`<${page.Page} ...${shared} />`;
  }
  const active = route.page === '' ? pages[0]?.path : route.page;
  const { apiKey } = session.me;
  return html`
    <header class="top">
      <span class="brand">Payments console</span>
      <nav aria-label="Pages">
        <ul>
          ${pages.map(
            (page) =>
              html`<li><a href="#/${page.path}" aria-current=${page.path === active ? 'page' : undefined}>${page.label}</a></li>`,
          )}
        </ul>
      </nav>
      <span class="who" data-testid="who">
        <span>${apiKey.name}</span> · role <strong data-testid="role">${apiKey.role}</strong>
        ${apiKey.customerIds === null ? '' : html` · scoped to ${apiKey.customerIds.length} customer(s)`}
      </span>
      <button type="button" class="secondary" onClick=${signOut}>Sign out</button>
    </header>
    <main id="main">${content}</main>
  `;
}

render(html`<${Console} />`, document.getElementById('app'));
