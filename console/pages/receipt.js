/**
 * A payment's receipt, verified here in the browser (console/verify.js, WebCrypto): the checkpoint's Ed25519
 * signature against the pinned verifier key, and the entry's inclusion proof (RFC 9162) against the signed root.
 * The key is shown with its fingerprint, to compare with one obtained elsewhere (npm run keys, the deployment's
 * records). Without a pinned key the console uses the server's, and says so.
 */
import { useEffect, useState } from 'preact/hooks';
import { ErrorBox, html, Loading } from '../ui.js';
import { keyFingerprint, parseVerifierKey, verifyReceipt } from '../verify.js';

export function Receipt({ session, paymentId }) {
  const [state, setState] = useState({ result: null, error: null, key: null });
  const { served, pinned } = session.verifierKey;
  const verifierKey = pinned ?? served;

  useEffect(() => {
    let current = true;
    (async () => {
      const parsed = parseVerifierKey(verifierKey);
      const fingerprint = (await keyFingerprint(parsed.publicKey)).slice(0, 16);
      const key = { name: parsed.name, fingerprint, mismatch: pinned !== null && pinned !== served };
      if (!globalThis.crypto?.subtle) {
        throw new Error(
          'this page is not in a secure context (HTTPS or localhost): the browser offers no WebCrypto to verify with',
        );
      }
      const { receipt } = await session.api.get(`/v1/payments/${encodeURIComponent(paymentId)}/receipt`);
      const result = await verifyReceipt(receipt, verifierKey);
      if (current) setState({ result: { ...result, receipt }, error: null, key });
    })().catch((error) => current && setState({ result: null, error, key: null }));
    return () => {
      current = false;
    };
  }, [paymentId, verifierKey]);

  const { result, error, key } = state;
  return html`
    <section aria-labelledby="receipt" data-testid="receipt">
      <h2 id="receipt">Receipt</h2>
      ${error ? html`<${ErrorBox} error=${error} />` : ''}
      ${!error && result === null ? html`<${Loading} what="and verifying the receipt" />` : ''}
      ${
        result
          ? html`
        <p class=${result.verified ? 'verdict ok' : 'verdict bad'} data-testid="receipt-verdict" role="status">
          ${result.verified ? 'Verified' : `Not verified: ${result.checks.find((c) => !c.ok)?.name}`}
        </p>
        <p>Audit entry <strong>#${result.receipt.index}</strong> (<code>${result.receipt.entry.eventType}</code>), in a log of ${result.receipt.checkpoint.split('\n')[1]} entries signed by <code>${key.name}</code>.</p>
        <ul class="checks">
          ${result.checks.map((c) => html`<li class=${c.ok ? 'ok' : 'bad'}><strong>${c.ok ? '✓' : '✗'} ${c.name}</strong>: ${c.detail}</li>`)}
        </ul>`
          : ''
      }
      ${
        key
          ? html`<p class="muted" data-testid="key-fingerprint">
              ${pinned === null ? 'Verifier key from this server (pin one at sign-in to check against your own copy)' : 'Pinned verifier key'}: <code>${key.name}</code>, fingerprint (SHA-256) <code>${key.fingerprint}</code>${key.mismatch ? html`<strong class="bad"> — differs from the key this server serves</strong>` : ''}
            </p>`
          : ''
      }
    </section>`;
}
