/** What every page shares: the html tag, loading and error states, and a hook that loads API data. */
import htm from 'htm';
import { h } from 'preact';
import { useCallback, useEffect, useState } from 'preact/hooks';

export const html = htm.bind(h);

/**
 * Loads once per change of `deps`; `reload()` loads again (after an action). A page's data and its error are
 * its own: one failing call shows its message where it belongs, the rest of the page still works.
 */
export function useLoad(load, deps) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const run = useCallback(() => {
    let current = true;
    setState((s) => ({ ...s, loading: true }));
    load().then(
      (data) => current && setState({ data, error: null, loading: false }),
      (error) => current && setState({ data: null, error, loading: false }),
    );
    return () => {
      current = false;
    };
  }, deps);
  useEffect(run, [run]);
  return { ...state, reload: run };
}

export function ErrorBox({ error }) {
  if (!error) return null;
  const code = error.code ? html`<code>${error.code}</code> ` : '';
  const details = (error.details ?? []).map((d) => html`<li><code>${d.field ?? ''}</code> ${d.message}</li>`);
  return html`<div class="error" role="alert">${code}${error.message}${details.length > 0 ? html`<ul>${details}</ul>` : ''}</div>`;
}

export function Loading({ what }) {
  return html`<p class="muted" aria-live="polite">Loading ${what}…</p>`;
}

export function Status({ status }) {
  const label = status === 'manual_review' ? 'in review' : status;
  return html`<span class="status status-${status}" data-testid="status">${label}</span>`;
}

/** A "load more" button for cursor-paged lists. */
export function More({ hasMore, onMore }) {
  return hasMore ? html`<button type="button" class="secondary" onClick=${onMore}>Load more</button>` : null;
}
