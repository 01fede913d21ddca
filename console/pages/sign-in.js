/**
 * Sign-in: the operator pastes an API key. It is checked with GET /v1/me and then kept in the page's memory
 * only (no localStorage, no cookie): a reload or a closed tab signs out. The audit log's verifier key is fetched
 * once here; an operator who has one from elsewhere pastes it to pin it, and the console then verifies receipts
 * against that key and says so when the server's differs.
 */
import { useState } from 'preact/hooks';
import { ErrorBox, html } from '../ui.js';
import { parseVerifierKey } from '../verify.js';

export function SignIn({ onSignedIn, createApi }) {
  const [key, setKey] = useState('');
  const [pinned, setPinned] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  async function submit(event) {
    event.preventDefault();
    setError(null);
    const secret = key.trim();
    if (secret === '') return setError(new Error('Paste an API key.'));
    if (pinned.trim() !== '') {
      try {
        parseVerifierKey(pinned.trim());
      } catch (e) {
        return setError(new Error(`The pinned audit key is not a verifier key: ${e.message}`));
      }
    }
    setBusy(true);
    try {
      // A 401 after sign-in (the key was revoked or expired) reloads the page, which forgets the key; a 401 now
      // is a mistyped key, shown here.
      let signedIn = false;
      const api = createApi(secret, () => signedIn && window.location.reload());
      const me = await api.get('/v1/me');
      // The verifier key, for receipts; a page without it still works (receipts then say they cannot verify).
      const served = me.permissions.includes('getAuditPublicKey')
        ? await api.getText('/v1/audit-logs/public-key').then(
            (text) => text.trim(),
            () => null,
          )
        : null;
      signedIn = true;
      onSignedIn({ api, me, verifierKey: { served, pinned: pinned.trim() === '' ? null : pinned.trim() } });
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }

  return html`
    <main id="main" class="sign-in">
      <h1>Payments console</h1>
      <p class="muted">
        Sign in with an API key. It stays in this tab's memory: nothing is stored, and reloading the page signs you out.
      </p>
      <form onSubmit=${submit}>
        <label for="api-key">API key</label>
        <input id="api-key" type="password" autocomplete="off" spellcheck="false" required value=${key}
          onInput=${(e) => setKey(e.currentTarget.value)} />
        <label for="pinned-key">Pinned audit key <span class="muted">(optional: a verifier key you obtained elsewhere)</span></label>
        <input id="pinned-key" type="text" autocomplete="off" spellcheck="false" placeholder="name+1234abcd+AQ…"
          value=${pinned} onInput=${(e) => setPinned(e.currentTarget.value)} />
        <button type="submit" disabled=${busy}>${busy ? 'Signing in…' : 'Sign in'}</button>
      </form>
      <${ErrorBox} error=${error} />
    </main>
  `;
}
