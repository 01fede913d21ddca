#!/usr/bin/env node
// The workshop flow as a plain Node script (Node 20 or newer, no dependencies: global fetch only).
//
//   node examples/workshop-flow.mjs [baseUrl]        default http://localhost:3000
//   API_KEY=<admin key> node examples/workshop-flow.mjs   default demo-fintech-token (DEMO_API_TOKEN)
//
// It walks the same steps as examples/workshop.http, prints each step's status and the fields that matter,
// and exits with status 1 at the first unexpected answer. Every run creates its own customer and account and
// uses fresh Idempotency-Keys, so it can be run again and again against the same server. The key must be an
// admin key: the flow creates customers and accounts (admin), pays and refunds (payments), approves
// (compliance) and reads the audit log (auditor), and admin may do all of it.

import { randomUUID } from 'node:crypto';

const baseUrl = (process.argv[2] ?? 'http://localhost:3000').replace(/\/+$/, '');
const apiKey = process.env.API_KEY ?? 'demo-fintech-token';
// One id per run: the Idempotency-Keys and the document reference must not repeat across runs.
const run = randomUUID().slice(0, 8);

let step = 0;

/** Sends one request; fails the run unless the status is the one expected. Returns the parsed answer. */
async function call(title, method, path, { body, idempotencyKey, expect, auth = true } = {}) {
  step += 1;
  const headers = { accept: 'application/json' };
  if (auth) headers.authorization = `Bearer ${apiKey}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (idempotencyKey !== undefined) headers['idempotency-key'] = idempotencyKey;
  let response;
  try {
    response = await fetch(`${baseUrl}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    fail(
      `${method} ${path}: no answer from ${baseUrl} (${error.cause?.code ?? error.message}). Is the server running?`,
    );
  }
  const text = await response.text();
  const json =
    text.length > 0 && /json/.test(response.headers.get('content-type') ?? '') ? JSON.parse(text) : null;
  console.log(`\n${String(step).padStart(2)}. ${title}\n    ${method} ${path} -> ${response.status}`);
  if (response.status !== expect) {
    fail(`expected ${expect}, got ${response.status}: ${text.slice(0, 500)}`);
  }
  return { status: response.status, headers: response.headers, text, json };
}

function show(label, value) {
  console.log(`    ${label}: ${typeof value === 'string' ? value : JSON.stringify(value)}`);
}

function check(condition, message) {
  if (!condition) fail(message);
}

function fail(message) {
  console.error(`\nFAILED at step ${step}: ${message}`);
  process.exit(1);
}

// The demo data that every fresh database gets (SEED_DEMO_DATA=true): Bob's USD account receives here.
const BOB = 'acc_demo_bob_usd';

async function main() {
  console.log(`Workshop flow against ${baseUrl} (run ${run})`);

  const health = await call('Health (no key needed)', 'GET', '/health', { expect: 200, auth: false });
  show('status', health.json.status);
  show('storage', health.json.storage);

  const accounts = await call('List accounts', 'GET', '/v1/accounts', { expect: 200 });
  for (const a of accounts.json.accounts.slice(0, 5)) {
    show(a.id, `${a.availableBalanceCents} ${a.currency} available`);
  }
  check(
    accounts.json.accounts.some((a) => a.id === BOB),
    `${BOB} is missing: start the server on a fresh database with SEED_DEMO_DATA=true (the default)`,
  );

  // A customer from a country that is not high-risk, whose name is on no list, starts `verified`.
  const created = await call('Create a customer', 'POST', '/v1/customers', {
    body: { name: 'Dana Whitfield', country: 'GB', documentReference: `WS-${run}` },
    idempotencyKey: `workshop-${run}-customer`,
    expect: 201,
  });
  const customer = created.json.customer;
  show('customer', `${customer.id} ${customer.name} (${customer.country}), kycStatus ${customer.kycStatus}`);

  // The compliance officer's decision: status and tier, audited with the key that made it.
  const kyc = await call('Record the KYC decision', 'POST', `/v1/customers/${customer.id}/kyc`, {
    body: { kycStatus: 'verified', kycTier: 'standard', note: 'Passport and proof of address checked' },
    idempotencyKey: `workshop-${run}-kyc`,
    expect: 200,
  });
  show('kyc', `${kyc.json.customer.kycStatus}, tier ${kyc.json.customer.kycTier}`);

  // The opening balance is a real ledger posting from the USD system funding account.
  const opened = await call('Open a funded USD account', 'POST', '/v1/accounts', {
    body: { customerId: customer.id, currency: 'USD', initialBalanceCents: 300000 },
    idempotencyKey: `workshop-${run}-account`,
    expect: 201,
  });
  const account = opened.json.account;
  show(
    'account',
    `${account.id} ${account.maskedAccountNumber}, ${account.availableBalanceCents} cents available`,
  );

  const payment = {
    sourceAccountId: account.id,
    destinationAccountId: BOB,
    amountCents: 1250,
    currency: 'USD',
  };
  const paymentKey = `workshop-${run}-payment-1`;
  const posted = await call('Pay 12.50 USD (posted)', 'POST', '/v1/payments', {
    body: payment,
    idempotencyKey: paymentKey,
    expect: 201,
  });
  const postedId = posted.json.payment.id;
  show('payment', `${postedId} ${posted.json.payment.status}, ledgerPosted ${posted.json.ledgerPosted}`);
  show('Idempotency-Replayed', posted.headers.get('idempotency-replayed'));

  const replay = await call('The same request again, same Idempotency-Key', 'POST', '/v1/payments', {
    body: payment,
    idempotencyKey: paymentKey,
    expect: 201,
  });
  show('Idempotency-Replayed', replay.headers.get('idempotency-replayed'));
  show('byte-identical body', replay.text === posted.text);
  check(
    replay.headers.get('idempotency-replayed') === 'true',
    'the replay is not marked Idempotency-Replayed: true',
  );
  check(replay.text === posted.text, 'the replayed body differs from the first one');

  const reused = await call('Same key, another amount', 'POST', '/v1/payments', {
    body: { ...payment, amountCents: 1300 },
    idempotencyKey: paymentKey,
    expect: 409,
  });
  show('error.code', reused.json.error.code);

  // 2,000.00 is at or above the fraud review threshold (175000) and below the AML one (250000).
  const held = await call('Pay 2,000.00 USD (held for review)', 'POST', '/v1/payments', {
    body: { ...payment, amountCents: 200000, note: 'Invoice 2026-118' },
    idempotencyKey: `workshop-${run}-payment-2`,
    expect: 202,
  });
  const heldId = held.json.payment.id;
  show('payment', `${heldId} ${held.json.payment.status}, reasons ${held.json.payment.reasons.join(', ')}`);

  const queue = await call('The review queue', 'GET', '/v1/payments?status=manual_review&limit=500', {
    expect: 200,
  });
  show('held payments on this page', queue.json.payments.length);
  show('hasMore', queue.json.hasMore);

  const balanceWhileHeld = await call('Balance while held', 'GET', `/v1/accounts/${account.id}/balance`, {
    expect: 200,
  });
  const b = balanceWhileHeld.json.account;
  show(
    'posted / held / available',
    `${b.postedBalanceCents} / ${b.heldBalanceCents} / ${b.availableBalanceCents}`,
  );

  const approved = await call('Approve it (compliance)', 'POST', `/v1/payments/${heldId}/approve`, {
    body: { note: 'Invoice matches the contract' },
    idempotencyKey: `workshop-${run}-approve`,
    expect: 201,
  });
  show('payment', `${approved.json.payment.status}, resolution ${approved.json.payment.resolution.outcome}`);

  // 1,000.00 is more than the 987.50 left available: a decline, and no money moves.
  const declined = await call('Pay more than is available (declined)', 'POST', '/v1/payments', {
    body: { ...payment, amountCents: 100000 },
    idempotencyKey: `workshop-${run}-payment-3`,
    expect: 422,
  });
  show(
    'payment',
    `${declined.json.payment.id} ${declined.json.payment.status}, reasons ${declined.json.payment.reasons.join(', ')}`,
  );

  const refund = await call('Refund 5.00 of the first payment', 'POST', `/v1/payments/${postedId}/refunds`, {
    body: { amountCents: 500, reason: 'Returned one item' },
    idempotencyKey: `workshop-${run}-refund-1`,
    expect: 201,
  });
  show('refund', `${refund.json.refund.id} ${refund.json.refund.amountCents} ${refund.json.refund.currency}`);

  const read = await call('Read the payment', 'GET', `/v1/payments/${postedId}`, { expect: 200 });
  show('status / refundedCents', `${read.json.payment.status} / ${read.json.payment.refundedCents}`);

  const ledger = await call('Its ledger entries', 'GET', `/v1/ledger?paymentId=${postedId}`, { expect: 200 });
  for (const e of ledger.json.ledgerEntries) {
    show(e.id, `${e.direction.padEnd(6)} ${String(e.amountCents).padStart(6)} ${e.currency} ${e.accountId}`);
  }
  check(
    ledger.json.ledgerEntries.length === 4,
    'a payment and its refund are two postings of two entries each',
  );

  const logs = await call('The audit log (first page of 3)', 'GET', '/v1/audit-logs?limit=3', {
    expect: 200,
  });
  show('entries in the log', logs.json.total);
  for (const e of logs.json.logs)
    show(`#${e.index}`, `${e.eventType} ${e.resourceId} ${e.hash.slice(0, 16)}…`);

  const verify = await call('Verify the audit chain', 'GET', '/v1/audit-logs/verify', { expect: 200 });
  show('verification', verify.json.verification);
  check(verify.json.verification.valid === true, 'the audit chain does not verify');

  const events = await call('The events (first page of 5)', 'GET', '/v1/events?limit=5', { expect: 200 });
  for (const e of events.json.events) show(e.id, `${e.type} ${e.createdAt}`);
  show('hasMore', events.json.hasMore);

  const books = await call('Verify the ledger', 'GET', '/v1/ledger/verify', { expect: 200 });
  show('valid', books.json.verification.valid);
  check(books.json.verification.valid === true, 'the ledger does not balance');

  console.log(`\nAll ${step} steps answered as expected.`);
}

main().catch((error) => fail(error.stack ?? String(error)));
