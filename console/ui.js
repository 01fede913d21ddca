/** What every page shares: the html tag, loading and error states, and the hooks that load API data. */
import htm from 'htm';
import { h } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';

export const html = htm.bind(h);

/**
 * Loads once per change of `deps` (what was shown for the previous deps is cleared at once); `reload()` loads
 * again and keeps the data on screen meanwhile (after an action). A page's data and its error are its own: one
 * failing call shows its message where it belongs, the rest of the page still works.
 */
export function useLoad(load, deps) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  // Each load cancels the one before it (a reload, or a load for other deps): only the latest answer shows.
  const cancel = useRef(() => {});
  const run = useCallback((keep) => {
    cancel.current();
    let current = true;
    cancel.current = () => {
      current = false;
    };
    setState((s) => ({ data: keep ? s.data : null, error: null, loading: true }));
    load().then(
      (data) => current && setState({ data, error: null, loading: false }),
      (error) => current && setState((s) => ({ data: keep ? s.data : null, error, loading: false })),
    );
  }, deps);
  useEffect(() => {
    run(false);
    return () => cancel.current();
  }, [run]);
  return { ...state, reload: () => run(true) };
}

/**
 * A cursor-paged list: `loadPage(cursor)` answers one page (`{hasMore, nextCursor, ...}`); `more()` appends the
 * next one. A change of `deps` (a filter) starts again, and an answer for older deps is dropped, so rows of two
 * filters never mix. An error keeps the pages loaded so far and is shown beside them.
 */
export function usePages(loadPage, deps) {
  const [state, setState] = useState({ pages: [], error: null, loading: true });
  const generation = useRef(0);
  const fetchPage = (cursor, previous) => {
    const mine = generation.current;
    setState({ pages: previous, error: null, loading: true });
    loadPage(cursor).then(
      (page) =>
        mine === generation.current && setState({ pages: [...previous, page], error: null, loading: false }),
      (error) => mine === generation.current && setState({ pages: previous, error, loading: false }),
    );
  };
  const restart = () => {
    generation.current += 1;
    fetchPage(null, []);
  };
  useEffect(restart, deps);
  const last = state.pages[state.pages.length - 1];
  return {
    ...state,
    hasMore: last?.hasMore === true,
    more: () => {
      if (!state.loading && last?.hasMore === true) fetchPage(last.nextCursor, state.pages);
    },
    reload: restart,
  };
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

/** The end of a paged list: its error, if the last page failed, and "Load more" while there is more. */
export function More({ list, what }) {
  return html`
    ${list.error ? html`<${ErrorBox} error=${list.error} />` : ''}
    ${list.loading ? html`<${Loading} what=${what} />` : ''}
    ${list.hasMore ? html`<button type="button" class="secondary" disabled=${list.loading} onClick=${list.more}>Load more</button>` : ''}`;
}
