import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { createApiKey } from '../src/app/api-keys.ts';
import { SYSTEM_ACTOR } from '../src/app/services.ts';
import { hashSecret } from '../src/security/api-keys.ts';
import { CertifyStub, type StubFaults } from './support/certify-stub.ts';
import { DEMO_TOKEN, listenOnLoopback, startTestApp } from './support/harness.ts';

/**
 * The partner certification run (issue 18), as a partner runs it: `tools/certify/certify.ts` in a child process,
 * against the real sandbox on a port, and against stub sandboxes that each break one rule of the contract, which
 * the run must name in its FAIL line. Behaviour is asserted (lines, exit codes, the JSON report), not timings.
 */

const cleanup: (() => Promise<void>)[] = [];
after(async () => {
  for (const fn of cleanup.reverse()) await fn();
});
const dir = mkdtempSync(join(tmpdir(), 'certify-test-'));
cleanup.push(async () => rmSync(dir, { recursive: true, force: true }));

interface Outcome {
  code: number | null;
  stdout: string;
  stderr: string;
  // biome-ignore lint/suspicious/noExplicitAny: the JSON report, checked field by field
  report: any;
}

let reports = 0;
/** Runs the CLI to its end (the server under test lives in this process, so never spawnSync). */
async function certify(url: string, key: string, ...extra: string[]): Promise<Outcome> {
  const json = join(dir, `report-${++reports}.json`);
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'tools/certify/certify.ts', '--url', url, '--key', key, '--json', json, ...extra],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  let report: unknown = null;
  try {
    report = JSON.parse(readFileSync(json, 'utf8'));
  } catch {
    // no report written
  }
  return { code, stdout, stderr, report };
}

const lineOf = (out: Outcome, name: string) =>
  out.stdout.split('\n').find((l) => l.split(/[ :]/)[1] === name);

async function stub(faults: StubFaults): Promise<CertifyStub> {
  const s = await new CertifyStub(faults).start();
  cleanup.push(() => s.stop());
  return s;
}

const sandbox = (async () => {
  const t = await startTestApp({
    env: {
      WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true',
      WEBHOOK_DISPATCH_INTERVAL_MS: '50',
      WEBHOOK_BACKOFF_BASE_MS: '100',
      WEBHOOK_BACKOFF_MAX_MS: '200',
    },
  });
  cleanup.push(() => t.destroy());
  const url = `http://127.0.0.1:${await listenOnLoopback(t)}`;
  return { t, url, outcome: await certify(url, DEMO_TOKEN) };
})();

test('(a) against the real sandbox, every scenario passes and the run exits 0', async () => {
  const { outcome } = await sandbox;
  assert.equal(outcome.code, 0, outcome.stdout + outcome.stderr);
  assert.match(outcome.stdout, /^certify: 8 passed, 0 failed/m);
  assert.equal(outcome.report.result, 'pass');
  assert.equal(outcome.report.runId.startsWith('cert_'), true);
  assert.deepEqual(
    outcome.report.scenarios.map((s: { result: string }) => s.result),
    Array(8).fill('pass'),
  );
});

test('(a) a live key of the real server is refused: exit 2, nothing run', async () => {
  const { t, url } = await sandbox;
  const live = (await createApiKey(t.app.modes.live, SYSTEM_ACTOR, 'admin', 'live admin')).secret;
  const out = await certify(url, live);
  assert.equal(out.code, 2, out.stdout + out.stderr);
  assert.match(out.stderr, /live/);
  // An unprefixed live key (created before modes) is refused by the server's answer, not the prefix.
  const legacy = `legacy-${live.slice('sk_live_'.length)}`;
  await t.app.modes.live.committer.submit((tx) =>
    tx.insertApiKey({
      id: 'key_legacy_live',
      name: 'legacy',
      role: 'admin',
      secretHash: hashSecret(legacy),
      createdAtMs: Date.now(),
      revokedAtMs: null,
      customerIds: null,
      expiresAtMs: null,
      previousSecretHash: null,
      previousSecretExpiresAtMs: null,
    }),
  );
  const refused = await certify(url, legacy);
  assert.equal(refused.code, 2, refused.stdout + refused.stderr);
  assert.match(refused.stderr, /TEST_MODE_ONLY|sandbox/);
});

test('(b) a sandbox that runs a retried POST again: exit 1 and a FAIL idempotent-retry line that says so', async () => {
  const s = await stub({ noIdempotency: true });
  const out = await certify(s.url, 'sk_test_stub');
  assert.equal(out.code, 1, out.stdout + out.stderr);
  const line = lineOf(out, 'idempotent-retry-after-timeout') ?? '';
  assert.match(line, /^FAIL idempotent-retry-after-timeout: .*second payment pay_\w+ for the retry/);
  assert.match(line, / — an integration must retry a timed-out POST with the same Idempotency-Key/);
  assert.match(lineOf(out, 'idempotent-replay-and-key-reuse') ?? '', /^FAIL /);
  // The fault is named where it is, not everywhere: the stub's webhooks are right.
  assert.equal(lineOf(out, 'webhook-signature-and-dedup'), 'PASS webhook-signature-and-dedup');
  const failed = out.report.scenarios.find(
    (r: { name: string }) => r.name === 'idempotent-retry-after-timeout',
  );
  assert.equal(failed.result, 'fail');
  assert.match(failed.happened, /second payment/);
  assert.match(failed.mustDo, /same Idempotency-Key/);
});

test('(c) a sandbox that redelivers a webhook under a new webhook-id: exit 1 and a FAIL webhook dedup line', async () => {
  const s = await stub({ newWebhookIdOnRetry: true });
  const out = await certify(s.url, 'sk_test_stub');
  assert.equal(out.code, 1, out.stdout + out.stderr);
  const line = lineOf(out, 'webhook-signature-and-dedup') ?? '';
  assert.match(
    line,
    /^FAIL webhook-signature-and-dedup: the redelivery .* came with webhook-id evt_\w+, the first/,
  );
  assert.match(line, /deduplicate on webhook-id/);
  assert.equal(lineOf(out, 'idempotent-retry-after-timeout'), 'PASS idempotent-retry-after-timeout');
  assert.equal(lineOf(out, 'paging-to-the-end'), 'PASS paging-to-the-end');
  // The run cleaned up: its endpoint was deleted.
  assert.ok(s.requests.some((r) => r.startsWith('DELETE /v1/webhook-endpoints/')));
});

test('(d) a live key is refused before any request, and a sandbox answering TEST_MODE_ONLY is refused: exit 2', async () => {
  const s = await stub({ liveKey: true });
  const live = await certify(s.url, 'sk_live_0123456789');
  assert.equal(live.code, 2);
  assert.match(live.stderr, /REFUSED: .*live key.*only against the sandbox with a test key/);
  assert.equal(live.stdout, '');
  assert.deepEqual(s.requests, [], 'nothing is sent with a live key');
  assert.equal(live.report.result, 'refused');

  const refused = await certify(s.url, 'sk_test_but_live_server');
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /REFUSED: certification runs only against the sandbox with a test key/);
  assert.deepEqual(s.requests, ['GET /v1/test/clock']);
});

test('a key that may not create customers: the run pays between the accounts GET /v1/accounts lists', async () => {
  const s = await stub({ noCreate: true });
  const out = await certify(s.url, 'sk_test_payments', '--scenario', 'idempotent-retry-after-timeout');
  assert.equal(out.code, 0, out.stdout + out.stderr);
  assert.equal(lineOf(out, 'idempotent-retry-after-timeout'), 'PASS idempotent-retry-after-timeout');
  assert.ok(s.requests.includes('GET /v1/accounts'));
  assert.ok(!s.requests.includes('POST /v1/accounts'), 'no account was opened');
  assert.deepEqual(out.report.scenarios.length, 1);
});

test('usage errors exit 2', async () => {
  const out = await certify('not a url', 'sk_test_x');
  assert.equal(out.code, 2);
  assert.match(out.stderr, /--url .* is not a URL/);
});
