/**
 * A payment's receipt, verified here in the browser (console/verify.js, WebCrypto): the checkpoint's Ed25519
 * signature against the pinned verifier key, and the entry's inclusion proof (RFC 9162) against the signed root.
 * The key is shown with its fingerprint, to compare with one obtained elsewhere (npm run keys, the deployment's
 * records). Without a pinned key the console uses the server's, and says so.
 */
import { useEffect, useState } from 'preact/hooks';
import { ErrorBox, html, Loading } from '../ui.js';
import { keyFingerprint, parseVerifierKey, verifyReceipt } from '../verify.js';

export function Receipt({ session, payment }) {
  const [state, setState] = useState({ result: null, error: null, key: null });
  const { served, pinned } = session.verifierKey;
  const verifierKey = pinned ?? served;

  useEffect(() => {
    let current = true;
    (async () => {
      // WebCrypto is only there in a secure context: say so before anything else tries to use it.
      if (!globalThis.crypto?.subtle) {
        throw new Error(
          'this page is not in a secure context (HTTPS, or localhost): the browser offers no WebCrypto to verify with',
        );
      }
      if (verifierKey === null)
        throw new Error('no verifier key: this server did not give one, and none was pinned');
      const parsed = parseVerifierKey(verifierKey);
      const fingerprint = (await keyFingerprint(parsed.publicKey)).slice(0, 16);
      const key = { name: parsed.name, fingerprint, mismatch: pinned !== null && pinned !== served };
      const { receipt } = await session.api.get(`/v1/payments/${encodeURIComponent(payment.id)}/receipt`);
      // With the payment shown: the receipt must be this payment's, not any genuine receipt.
      const result = await verifyReceipt(receipt, verifierKey, payment);
      if (current) setState({ result: { ...result, receipt }, error: null, key });
    })().catch((error) => current && setState({ result: null, error, key: null }));
    return () => {
      current = false;
    };
  }, [payment.id, verifierKey]);

  const { result, error, key } = state;
  return html`
    <section aria-labelledby="receipt" data-testid="receipt">
      <h2 id="receipt">Receipt</h2>
      <p class="muted">Proof that this payment's decision, its first audit entry, is in the signed audit log. Later events (an approval, a refund) are entries of their own.</p>
      ${error ? html`<${ErrorBox} error=${error} />` : ''}
      ${!error && result === null ? html`<${Loading} what="and verifying the receipt" />` : ''}
      ${
        result
          ? html`
        <p class=${result.verified ? 'verdict ok' : 'verdict bad'} data-testid="receipt-verdict" role="status">
          ${result.verified ? 'Verified' : `Not verified: ${result.checks.find((c) => !c.ok)?.name}`}
        </p>
        <p>Audit entry <strong>#${result.receipt?.index}</strong> (<code>${result.receipt?.entry?.eventType}</code>), in a log of ${String(result.receipt?.checkpoint ?? '').split('\n')[1] ?? '?'} entries signed by <code>${key.name}</code>.</p>
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
