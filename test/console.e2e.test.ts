import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { after, before, test } from 'node:test';
import { type Browser, chromium, type Page } from 'playwright-core';
import { apiKey, type Json, type Party, party, pay } from './support/fixtures.ts';
import { backend, listenOnLoopback, startTestApp, type TestApp } from './support/harness.ts';

/**
 * The operator console (issue 16) end to end: a real server on a socket, driven in headless Chromium (Debian's
 * `chromium` package through playwright-core; .ci/run installs it). A compliance officer signs in, opens a
 * held payment from the review queue, reads its explanation, approves it and sees it posted and the balances
 * move; a posted payment's receipt verifies in the page, and fails once its proof is tampered with; a
 * `payments` key sees no review actions.
 *
 * `CONSOLE_SCREENSHOTS=<dir>` also saves the main pages there (the README shows docs/console/).
 */
const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOTS = process.env['CONSOLE_SCREENSHOTS'];
const ALICE = 'acc_demo_alice_usd';
const BOB = 'acc_demo_bob_usd';
const HELD_CENTS = 260_000;

if (!existsSync(CHROMIUM) && process.env['REQUIRE_BROWSER'] !== '1') {
  test.skip(`the console end to end (no ${CHROMIUM}: apt-get install chromium)`);
} else {
  defineTests();
}

function defineTests(): void {
  let t: TestApp;
  let base: string;
  let browser: Browser;
  let compliance: string;
  let payments: string;
  /** A second payer with room for several held payments (Alice's balance covers one). */
  let carol: Party;
  /** A webhook receiver that refuses every delivery: the webhooks page then shows failures and Retry. */
  let receiver: Server;
  let receiverUrl: string;
  /** Anything the page logged as an error (a Content-Security-Policy violation included) fails the test. */
  const pageErrors: string[] = [];

  before(async () => {
    receiver = createServer((_req, res) => res.writeHead(503).end());
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const address = receiver.address();
    assert.ok(typeof address === 'object' && address !== null);
    receiverUrl = `http://127.0.0.1:${address.port}/payments`;
    t = await startTestApp({
      env: {
        WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true',
        WEBHOOK_MAX_ATTEMPTS: '1',
        WEBHOOK_DISPATCH_INTERVAL_MS: '50',
      },
    });
    carol = await party(t, { balance: 5_000_000, name: 'Carol Diaz' });
    base = `http://127.0.0.1:${await listenOnLoopback(t)}`;
    compliance = (await apiKey(t, 'compliance', 'Dana (compliance)')).token;
    payments = (await apiKey(t, 'payments', 'checkout service')).token;
    browser = await chromium.launch({ executablePath: CHROMIUM });
    if (SCREENSHOTS !== undefined && backend === 'sqlite') mkdirSync(SCREENSHOTS, { recursive: true });
  });

  after(async () => {
    await browser?.close();
    await t?.destroy();
    receiver?.close();
  });

  async function newPage(viewport = { width: 1280, height: 800 }): Promise<Page> {
    const page = await browser.newPage({ viewport });
    page.on('pageerror', (error) => pageErrors.push(`pageerror: ${error.message}`));
    // Works offline: the page asks nothing of any other host (no CDN, no font, no analytics).
    page.on('request', (request) => {
      const url = request.url();
      if (!url.startsWith(`${base}/`) && !url.startsWith('data:'))
        pageErrors.push(`request elsewhere: ${url}`);
    });
    page.on('console', (message) => {
      // The browser logs every 4xx answer; those are the API's answers the page shows (the mistyped key's
      // 401, the stale approval's 409). A 5xx, a script error or a policy violation is a failure.
      const expected = /Failed to load resource: the server responded with a status of 4\d\d/.test(
        message.text(),
      );
      if (message.type() === 'error' && !expected) pageErrors.push(`console: ${message.text()}`);
    });
    return page;
  }

  /** Signs in by keyboard: the key field is focused by its label, typed into, and Enter submits. */
  async function signIn(page: Page, key: string): Promise<void> {
    await page.goto(`${base}/console`);
    await page.getByLabel('API key').focus();
    await page.keyboard.type(key);
    await page.keyboard.press('Enter');
    await page.getByTestId('role').waitFor();
  }

  async function screenshot(page: Page, name: string): Promise<void> {
    if (SCREENSHOTS === undefined || backend !== 'sqlite') return;
    await page.screenshot({ path: `${SCREENSHOTS}/${name}.png`, fullPage: true });
  }

  async function balance(accountId: string): Promise<Json> {
    return (await t.request('GET', `/v1/accounts/${accountId}/balance`)).json.account;
  }

  const money = (cents: number) =>
    new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' }).format(cents / 100);

  test('GET /console: the page and its modules, under a strict Content-Security-Policy', async () => {
    const res = await fetch(`${base}/console`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
    const csp = res.headers.get('content-security-policy') ?? '';
    assert.match(csp, /default-src 'none'/);
    assert.match(
      csp,
      /script-src 'self' 'sha256-[A-Za-z0-9+/=]+'(;|$)/,
      'own scripts and the import map only',
    );
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https?:/);
    assert.match(csp, /frame-ancestors 'none'/);
    // Only the files on the list: no path from the URL reaches the file system.
    for (const path of ['/console/../package.json', '/console/%2e%2e/package.json', '/console/nope.js']) {
      assert.equal((await fetch(`${base}${path}`)).status, 404, path);
    }
    assert.equal((await fetch(`${base}/console/vendor/preact.mjs`)).status, 200);
  });

  test('compliance: the queue, the explanation, Approve, and the balances move', async () => {
    const held = await pay(t, {
      sourceAccountId: ALICE,
      destinationAccountId: BOB,
      amountCents: HELD_CENTS,
      currency: 'USD',
      note: 'invoice 2026-118',
    });
    assert.equal(held.status, 202, held.body);
    const paymentId: string = held.json.payment.id;
    const before = { alice: await balance(ALICE), bob: await balance(BOB) };

    const page = await newPage();
    await signIn(page, compliance);
    assert.equal(await page.getByTestId('role').textContent(), 'compliance');
    // The key is in the tab's memory only.
    // (Page code as text: this file is type-checked without the DOM's types.)
    const stored = await page.evaluate(
      '({ local: localStorage.length, session: sessionStorage.length, cookie: document.cookie })',
    );
    assert.deepEqual(stored, { local: 0, session: 0, cookie: '' });
    assert.equal((await page.context().cookies()).length, 0);

    // The review queue opens first for compliance: the held payment with its amount and time left.
    await page.getByRole('heading', { name: 'Review queue' }).waitFor();
    const row = page.getByTestId('queue-row').filter({ hasText: paymentId.slice(0, 12) });
    await row.waitFor();
    assert.match(await row.innerText(), new RegExp(`\\${money(HELD_CENTS)}`));
    assert.match(await row.innerText(), /2 d 2\d h|71 h|3 d 0 h/, 'time left before the 72 h hold expires');
    await screenshot(page, 'review-queue');
    await row
      .getByRole('link', { name: paymentId.slice(0, 12), exact: false })
      .first()
      .click();

    // The explanation: each fired rule with what it saw and its threshold, the score, sanctions, policy.
    await page.getByRole('heading', { name: 'Decision explained' }).waitFor();
    const rules = page.getByTestId('rule');
    assert.equal(await rules.count(), 2);
    const amlRule = rules.filter({ hasText: 'aml_amount' });
    assert.match(await amlRule.innerText(), /amountCents = 260000/);
    assert.match(await amlRule.innerText(), /amountCents >= 250000/);
    assert.equal(await page.getByTestId('score').textContent(), '50');
    assert.equal(await page.getByTestId('policy-version').textContent(), 'seed-2025-02');
    assert.match(
      await page.getByTestId('decision').innerText(),
      /Sanctions screening[\s\S]*Sender: best match/,
    );
    // The request flow: the workshop's eight steps, each with what it decided and its file.
    const steps = page.getByTestId('flow').locator('li');
    assert.equal(await steps.count(), 8);
    assert.match(await steps.nth(3).innerText(), /Compliance[\s\S]*review: amount_above_review_threshold/);
    assert.match(await steps.nth(6).innerText(), /held on the source[\s\S]*src\/domain\/ledger\.ts/);
    await screenshot(page, 'payment-held');

    // Approve: posted, the hold gone, the money moved.
    await page.getByLabel(/Reviewer note/).fill('Invoice checked against the contract');
    await page.getByRole('button', { name: 'Approve' }).click();
    await page.getByTestId('status').filter({ hasText: 'posted' }).waitFor();
    assert.equal(
      await page.getByRole('button', { name: 'Approve' }).count(),
      0,
      'no review actions once posted',
    );
    const source = page.getByTestId('party-source');
    const destination = page.getByTestId('party-destination');
    assert.equal(
      await source.getByTestId('held').textContent(),
      money(before.alice.heldBalanceCents - HELD_CENTS),
    );
    assert.equal(
      await source.getByTestId('posted').textContent(),
      money(before.alice.postedBalanceCents - HELD_CENTS),
    );
    assert.equal(
      await destination.getByTestId('posted').textContent(),
      money(before.bob.postedBalanceCents + HELD_CENTS),
    );
    assert.equal(await page.getByTestId('ledger').locator('tbody tr').count(), 2, 'a debit and a credit');
    const after = await t.request('GET', `/v1/payments/${paymentId}`);
    assert.equal(after.json.payment.status, 'posted');
    assert.equal(after.json.payment.resolution.outcome, 'approved');
    await page.close();
  });

  test('a posted payment: its receipt is Verified in the page; a tampered proof is not', async () => {
    const posted = await pay(t, {
      sourceAccountId: carol.accountId,
      destinationAccountId: BOB,
      amountCents: 1_999,
      currency: 'USD',
    });
    assert.equal(posted.status, 201, posted.body);
    const paymentId: string = posted.json.payment.id;
    const page = await newPage();
    await signIn(page, compliance);
    await page.goto(`${base}/console#/payments/${paymentId}`);
    const verdict = page.getByTestId('receipt-verdict');
    await verdict.waitFor();
    assert.equal(await verdict.textContent(), 'Verified');
    // The key with its fingerprint, to compare with one obtained elsewhere.
    const publicKey = (await t.request('GET', '/v1/audit-logs/public-key')).body.trim();
    const fingerprint = await page.getByTestId('key-fingerprint').innerText();
    assert.ok(fingerprint.includes(publicKey.split('+')[0]!), fingerprint);
    assert.match(fingerprint, /fingerprint \(SHA-256\) [0-9a-f]{16}/);
    await screenshot(page, 'payment-posted-receipt');

    // Tampered in transit: one hash of the served proof flipped. The page must say it does not verify.
    await page.route(`**/v1/payments/${paymentId}/receipt`, async (route) => {
      const response = await route.fetch();
      const body = await response.json();
      const proof: string[] = body.receipt.inclusionProof;
      assert.ok(proof.length > 0, 'a proof to tamper with');
      const bytes = Buffer.from(proof[0]!, 'base64');
      bytes[0] = bytes[0]! ^ 0x01;
      proof[0] = bytes.toString('base64');
      await route.fulfill({ response, json: body });
    });
    await page.reload();
    await signIn(page, compliance); // a reload forgets the key: sign in again
    await page.goto(`${base}/console#/payments/${paymentId}`);
    await verdict.waitFor();
    assert.equal(await verdict.textContent(), 'Not verified: inclusion proof');
    assert.match(await page.getByTestId('receipt').innerText(), /✗ inclusion proof/);

    // A genuine receipt, but another payment's: every proof holds, and the page still refuses it.
    const other = await pay(t, {
      sourceAccountId: carol.accountId,
      destinationAccountId: BOB,
      amountCents: 2_001,
      currency: 'USD',
    });
    await page.unroute(`**/v1/payments/${paymentId}/receipt`);
    await page.route(`**/v1/payments/${paymentId}/receipt`, (route) =>
      route.continue({ url: `${base}/v1/payments/${other.json.payment.id}/receipt` }),
    );
    await page.reload();
    await signIn(page, compliance);
    await page.goto(`${base}/console#/payments/${paymentId}`);
    await verdict.waitFor();
    assert.equal(await verdict.textContent(), 'Not verified: this payment');
    await page.close();
  });

  test('a stale approval shows the refusal reasons; Reject then releases the hold', async () => {
    const dave = await party(t, { balance: 1_000_000, name: 'Dave Okafor' });
    const held = await pay(t, {
      sourceAccountId: dave.accountId,
      destinationAccountId: BOB,
      amountCents: HELD_CENTS,
      currency: 'USD',
    });
    assert.equal(held.status, 202, held.body);
    // While it waited, the sender's KYC went back to review: approving now would decline it.
    const kyc = await t.request('POST', `/v1/customers/${dave.customerId}/kyc`, {
      token: compliance,
      body: { kycStatus: 'manual_review' },
    });
    assert.equal(kyc.status, 200, kyc.body);
    const page = await newPage();
    await signIn(page, compliance);
    await page.goto(`${base}/console#/payments/${held.json.payment.id}`);
    await page.getByRole('button', { name: 'Approve' }).click();
    const refusal = page.getByTestId('refusal');
    await refusal.waitFor();
    assert.match(await refusal.innerText(), /can no longer be approved[\s\S]*kyc_not_verified/);
    assert.equal(await page.getByTestId('status').textContent(), 'in review', 'nothing changed');
    await page.getByRole('button', { name: 'Reject' }).click();
    await page.getByTestId('status').filter({ hasText: 'declined' }).waitFor();
    assert.equal(await page.getByTestId('party-source').getByTestId('held').textContent(), money(0));
    await page.close();
  });

  test('a payments key: no review queue, no Approve or Reject, the summary decision only', async () => {
    const held = await pay(t, {
      sourceAccountId: carol.accountId,
      destinationAccountId: BOB,
      amountCents: HELD_CENTS,
      currency: 'USD',
    });
    assert.equal(held.status, 202, held.body);
    const page = await newPage();
    // A mistyped key is said so, on the sign-in page.
    await page.goto(`${base}/console`);
    await page.getByLabel('API key').fill('sk_not_a_key');
    await page.getByRole('button', { name: 'Sign in' }).click();
    assert.match(await page.getByRole('alert').innerText(), /AUTH_INVALID/);
    await signIn(page, payments);
    assert.equal(await page.getByTestId('role').textContent(), 'payments');
    assert.equal(await page.getByRole('link', { name: 'Review queue' }).count(), 0);
    await page.goto(`${base}/console#/payments/${held.json.payment.id}`);
    await page.getByTestId('status').filter({ hasText: 'in review' }).waitFor();
    assert.equal(await page.getByRole('button', { name: 'Approve' }).count(), 0);
    assert.equal(await page.getByRole('button', { name: 'Reject' }).count(), 0);
    assert.match(
      await page.locator('main').innerText(),
      /full explanation is for compliance, auditor and admin/,
    );
    // Receipts hold the full decision: not for this role (a payments key gets one for its own POST only).
    assert.equal(await page.getByTestId('receipt').count(), 0);
    await page.close();
  });

  test('the admin pages: accounts, audit, webhooks; readable on a phone-sized window', async () => {
    const endpoint = await t.request('POST', '/v1/webhook-endpoints', {
      body: { url: receiverUrl, events: ['payment.posted'] },
    });
    assert.equal(endpoint.status, 201, endpoint.body);
    const page = await newPage();
    await signIn(page, 'demo-fintech-token');
    // Payments, newest first by default.
    const newest = (await t.request('GET', '/v1/payments?order=desc&limit=1')).json.payments[0].id;
    await page.goto(`${base}/console#/payments`);
    const firstRow = page.locator('table tbody tr').first();
    await firstRow.waitFor();
    assert.match(await firstRow.innerText(), new RegExp(newest.slice(0, 12)));
    await page.goto(`${base}/console#/accounts`);
    await page.getByTestId('accounts').waitFor();
    assert.match(await page.getByTestId('accounts').innerText(), /acc_demo_alice_usd/);
    await screenshot(page, 'accounts');
    // One account: its controls, its statement (each entry with the balance after it, between the opening and
    // closing balance), and its balance at a past instant, as the API answers them.
    await page.goto(`${base}/console#/accounts/${ALICE}`);
    await page.getByTestId('account-entries').waitFor();
    assert.equal(await page.getByTestId('account-status').innerText(), 'active');
    const statement = (await t.request('GET', `/v1/accounts/${ALICE}/statement?limit=500`)).json;
    const lastBalance = statement.entries[statement.entries.length - 1].balanceAfterCents;
    assert.match(
      await page.getByTestId('statement-summary').innerText(),
      /opening \$0\.00, closing \$[\d,.]+\./,
    );
    const rows = page.getByTestId('account-entries').locator('tbody tr');
    assert.equal(await rows.count(), Math.min(100, statement.entries.length));
    assert.match(await rows.first().innerText(), /\$[\d,.]+\s*$/, 'a balance after each entry');
    // The start of the current minute (a datetime-local input has minutes): a past instant.
    const afterFirst = new Date().toISOString().slice(0, 16);
    await page.getByLabel('Instant (UTC)').fill(afterFirst);
    await page.getByRole('button', { name: 'Show' }).first().click();
    await page.getByTestId('balance-at').waitFor();
    const then = (await t.request('GET', `/v1/accounts/${ALICE}/balance?at=${afterFirst}:00Z`)).json.account;
    const dollars = (cents: number) =>
      `$${(cents / 100).toLocaleString('en-US', { minimumFractionDigits: 2 })}`;
    assert.match(
      await page.getByTestId('balance-at').innerText(),
      new RegExp(dollars(then.postedBalanceCents).replace(/[$.]/g, '\\$&')),
    );
    assert.ok(typeof lastBalance === 'number');
    await screenshot(page, 'account-statement');
    await page.goto(`${base}/console#/audit`);
    await page.getByRole('button', { name: 'Verify the hash chain' }).click();
    assert.match(await page.getByTestId('audit-verdict').innerText(), /^Valid: \d+ entries checked/);
    await page.getByTestId('audit-entries').waitFor();
    await screenshot(page, 'audit');
    await page.goto(`${base}/console#/webhooks`);
    await page.getByRole('button', { name: 'Send a test event' }).click();
    await page.getByText('Test event: queued').waitFor();
    // The receiver refuses it; after its one attempt the delivery has failed and can be retried by hand.
    for (let i = 0; i < 100 && (await page.getByRole('button', { name: 'Retry' }).count()) === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      await page.getByRole('button', { name: 'Reload deliveries' }).click();
    }
    await page.getByRole('button', { name: 'Retry' }).first().click();
    await page.getByText('Retry: queued').waitFor();
    await screenshot(page, 'webhooks');
    await page.close();

    const phone = await newPage({ width: 390, height: 844 });
    await signIn(phone, compliance);
    const held = await pay(t, {
      sourceAccountId: carol.accountId,
      destinationAccountId: BOB,
      amountCents: HELD_CENTS,
      currency: 'USD',
    });
    await phone.goto(`${base}/console#/payments/${held.json.payment.id}`);
    await phone.getByRole('button', { name: 'Approve' }).waitFor();
    const overflow = Number(await phone.evaluate('document.documentElement.scrollWidth - window.innerWidth'));
    assert.ok(overflow <= 0, `the page fits a phone's width (${overflow} px too wide)`);
    await screenshot(phone, 'payment-phone');
    await phone.close();
  });

  test('the pages logged no error (a Content-Security-Policy violation would be one) and asked no other host', () => {
    assert.deepEqual(pageErrors, []);
  });
}
