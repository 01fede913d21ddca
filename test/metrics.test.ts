import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { createApiKey } from '../src/app/api-keys.ts';
import { SYSTEM_ACTOR } from '../src/app/services.ts';
import { ConfigError, loadConfig } from '../src/config.ts';
import { apiKey, party, pay, REVIEW_AMOUNT, usd } from './support/fixtures.ts';
import { assertError } from './support/foundation.ts';
import { startTestApp, type TestApp, type TestResponse } from './support/harness.ts';

/**
 * GET /metrics (issue 14): the Prometheus text exposition, parsed strictly here (every sample line, HELP and TYPE
 * for every family, complete histograms), protected by an auditor or admin API key or by METRICS_TOKEN; and its
 * counters move with what the API does: payments by outcome and reason (a replay never counts twice), requests
 * by route template and status, group-commit batches, refunds and reviews, rate-limit rejections by kind. The
 * audit log size is the log's.
 */
const METRICS_TOKEN = `mt_${randomBytes(32).toString('base64url')}`;

let t: TestApp;
let auditor: string;
let paymentsKey: string;

before(async () => {
  t = await startTestApp({ env: { METRICS_TOKEN } });
  auditor = (await apiKey(t, 'auditor')).token;
  paymentsKey = (await apiKey(t, 'payments')).token;
});

after(async () => {
  await t?.destroy();
});

// --- a strict parser of the text exposition format 0.0.4 ---------------------------------------------------

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Family {
  type: string;
  help: string;
  samples: Sample[];
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL = '[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*"';
const VALUE = '[-+]?(?:[0-9]+(?:\\.[0-9]*)?|\\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?Inf|NaN';
const SAMPLE_LINE = new RegExp(
  `^(${NAME})(?:\\{((?:${LABEL})(?:,${LABEL})*)?,?\\})? (${VALUE})(?: -?[0-9]+)?$`,
  'i',
);
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parseValue(text: string): number {
  const lower = text.toLowerCase();
  if (lower === 'nan') return Number.NaN;
  if (lower === '+inf' || lower === 'inf') return Number.POSITIVE_INFINITY;
  if (lower === '-inf') return Number.NEGATIVE_INFINITY;
  return Number(text);
}

function parseLabels(text: string | undefined): Record<string, string> {
  const labels: Record<string, string> = {};
  if (text === undefined) return labels;
  for (const match of text.matchAll(new RegExp(LABEL, 'g'))) {
    const pair = match[0];
    const eq = pair.indexOf('=');
    const name = pair.slice(0, eq);
    assert.ok(!(name in labels), `label ${name} appears once`);
    labels[name] = pair.slice(eq + 2, -1).replace(/\\(["\\n])/g, (_m, c: string) => (c === 'n' ? '\n' : c));
  }
  return labels;
}

/** The families of an exposition, checked line by line; throws (an assertion) on anything malformed. */
function parseExposition(text: string): Map<string, Family> {
  assert.ok(text.endsWith('\n'), 'the exposition ends with a newline');
  const families = new Map<string, Family>();
  const declared = new Map<string, { help?: string; type?: string }>();
  const seriesSeen = new Set<string>();
  let current: string | null = null;
  const familyOf = (sampleName: string): string | null => {
    for (const candidate of [
      sampleName,
      sampleName.replace(/_bucket$/, ''),
      sampleName.replace(/_sum$/, ''),
      sampleName.replace(/_count$/, ''),
    ]) {
      const type = declared.get(candidate)?.type;
      if (type === undefined) continue;
      if (candidate === sampleName) return candidate;
      if (type === 'histogram' || (type === 'summary' && !sampleName.endsWith('_bucket'))) return candidate;
    }
    return null;
  };
  for (const line of text.slice(0, -1).split('\n')) {
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
    if (meta !== null) {
      const [, kind, name, rest] = meta as unknown as [string, 'HELP' | 'TYPE', string, string];
      assert.match(name, new RegExp(`^${NAME}$`), `a valid metric name: ${line}`);
      const entry = declared.get(name) ?? {};
      assert.ok(!families.has(name) || current === name, `${name}: HELP and TYPE come before its samples`);
      if (kind === 'HELP') {
        assert.equal(entry.help, undefined, `one HELP for ${name}`);
        entry.help = rest;
      } else {
        assert.equal(entry.type, undefined, `one TYPE for ${name}`);
        assert.ok(TYPES.has(rest), `a known type: ${line}`);
        entry.type = rest;
      }
      declared.set(name, entry);
      continue;
    }
    if (line.startsWith('#')) continue; // a comment
    const sample = SAMPLE_LINE.exec(line);
    assert.ok(sample !== null, `a valid sample line: ${JSON.stringify(line)}`);
    const [, name, labelText, valueText] = sample as unknown as [string, string, string | undefined, string];
    const family = familyOf(name);
    assert.ok(family !== null, `${name} belongs to a family declared with TYPE before it`);
    const entry = declared.get(family)!;
    assert.ok(entry.help !== undefined, `${family} has a HELP line`);
    if (current !== family) {
      assert.ok(!families.has(family), `the samples of ${family} are together`);
      families.set(family, { type: entry.type!, help: entry.help, samples: [] });
      current = family;
    }
    const labels = parseLabels(labelText);
    const series = `${name}{${Object.keys(labels)
      .sort()
      .map((k) => `${k}=${labels[k]}`)
      .join(',')}}`;
    assert.ok(!seriesSeen.has(series), `one sample per series: ${series}`);
    seriesSeen.add(series);
    families.get(family)!.samples.push({ name, labels, value: parseValue(valueText) });
  }
  for (const [name, entry] of declared) {
    assert.ok(entry.help !== undefined && entry.type !== undefined, `${name} has both HELP and TYPE`);
    if (!families.has(name)) families.set(name, { type: entry.type, help: entry.help, samples: [] });
  }
  for (const [name, family] of families) if (family.type === 'histogram') checkHistogram(name, family);
  return families;
}

/** Per label set: buckets by ascending `le` up to +Inf, cumulative, +Inf equal to _count, and a _sum. */
function checkHistogram(name: string, family: Family): void {
  const groups = new Map<string, { buckets: [number, number][]; sum?: number; count?: number }>();
  for (const sample of family.samples) {
    const { le, ...rest } = sample.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const group = groups.get(key) ?? { buckets: [] };
    groups.set(key, group);
    if (sample.name === `${name}_bucket`) {
      assert.ok(le !== undefined, `${name}_bucket has an le label`);
      group.buckets.push([parseValue(le), sample.value]);
    } else if (sample.name === `${name}_sum`) group.sum = sample.value;
    else if (sample.name === `${name}_count`) group.count = sample.value;
    else assert.fail(`${sample.name} is not part of histogram ${name}`);
  }
  for (const [key, group] of groups) {
    assert.ok(group.buckets.length > 0, `${name}${key} has buckets`);
    assert.ok(group.sum !== undefined && group.count !== undefined, `${name}${key} has _sum and _count`);
    const bounds = group.buckets.map(([le]) => le);
    assert.deepEqual(
      bounds,
      [...bounds].sort((a, b) => a - b),
      `${name}${key}: buckets in ascending le`,
    );
    assert.equal(bounds.at(-1), Number.POSITIVE_INFINITY, `${name}${key} has an le="+Inf" bucket`);
    for (let i = 1; i < group.buckets.length; i++) {
      assert.ok(group.buckets[i]![1] >= group.buckets[i - 1]![1], `${name}${key}: buckets are cumulative`);
    }
    assert.equal(group.buckets.at(-1)![1], group.count, `${name}${key}: the +Inf bucket is the count`);
  }
}

/** The value of one series (labels exactly as given); undefined when absent. */
function seriesValue(
  families: Map<string, Family>,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  for (const family of families.values()) {
    for (const sample of family.samples) {
      if (sample.name !== name) continue;
      const keys = Object.keys(sample.labels);
      if (keys.length === Object.keys(labels).length && keys.every((k) => sample.labels[k] === labels[k])) {
        return sample.value;
      }
    }
  }
  return undefined;
}

/** Test mode's metrics by default: the tests' traffic is the demo key's (a test key's, like `auditor`). */
async function scrape(app: TestApp = t, token: string = auditor): Promise<Map<string, Family>> {
  const res = await app.request('GET', '/metrics', { token });
  assert.equal(res.status, 200, res.body);
  return parseExposition(res.body);
}

const P = 'payments_';

// --- access ------------------------------------------------------------------------------------------------

describe('who may read GET /metrics', () => {
  test('no credentials: 401 AUTH_REQUIRED', async () => {
    assertError(await t.request('GET', '/metrics', { token: null }), 401, 'AUTH_REQUIRED');
  });

  test('a payments key: 403 FORBIDDEN', async () => {
    assertError(await t.request('GET', '/metrics', { token: paymentsKey }), 403, 'FORBIDDEN');
  });

  test('an auditor key and an admin key: 200, the Prometheus text format', async () => {
    for (const token of [auditor, undefined]) {
      const res: TestResponse = await t.request('GET', '/metrics', token === undefined ? {} : { token });
      assert.equal(res.status, 200, res.body);
      assert.equal(res.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
      assert.ok(res.body.includes(`# TYPE ${P}http_requests_total counter`), 'the body is not JSON-encoded');
      assert.ok(typeof res.headers['x-request-id'] === 'string');
    }
  });

  test('an auditor key scoped to customers: 403 (the metrics span every customer)', async () => {
    const customer = (await party(t)).customerId;
    const { secret } = await createApiKey(t.app.services, SYSTEM_ACTOR, 'auditor', 'scoped auditor', {
      customerIds: [customer],
    });
    assertError(await t.request('GET', '/metrics', { token: secret }), 403, 'FORBIDDEN');
  });

  test('METRICS_TOKEN: 200 without any API key; a wrong token is 401 AUTH_INVALID', async () => {
    const res = await t.request('GET', '/metrics', { token: METRICS_TOKEN });
    assert.equal(res.status, 200, res.body);
    assert.equal(res.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
    const head = await t.app.server.inject({
      method: 'HEAD',
      url: '/metrics',
      headers: { authorization: `Bearer ${METRICS_TOKEN}` },
    });
    assert.equal(head.statusCode, 200);
    const wrong = `${METRICS_TOKEN.slice(0, -1)}${METRICS_TOKEN.endsWith('A') ? 'B' : 'A'}`;
    assertError(await t.request('GET', '/metrics', { token: wrong }), 401, 'AUTH_INVALID');
    // The token opens /metrics only.
    assertError(await t.request('GET', '/v1/payments', { token: METRICS_TOKEN }), 401, 'AUTH_INVALID');
    const withQuery = await t.request('GET', '/metrics?x=1', { token: METRICS_TOKEN });
    assert.equal(withQuery.status, 200, withQuery.body);
  });

  test('without METRICS_TOKEN set, a token is just an unknown key (401); METRICS_TOKEN is at least 32 characters', async () => {
    const plain = await startTestApp();
    try {
      assertError(await plain.request('GET', '/metrics', { token: METRICS_TOKEN }), 401, 'AUTH_INVALID');
      assert.equal((await plain.request('GET', '/metrics')).status, 200);
    } finally {
      await plain.destroy();
    }
    const short = 'x'.repeat(31);
    assert.throws(
      () => loadConfig({ METRICS_TOKEN: short }),
      (error: unknown) =>
        error instanceof ConfigError && error.variable === 'METRICS_TOKEN' && !error.message.includes(short),
    );
    assert.equal(loadConfig({ METRICS_TOKEN: 'y'.repeat(32) }).metricsToken, 'y'.repeat(32));
    assert.equal(loadConfig({}).metricsToken, null);
  });

  test('documented in the OpenAPI document: text/plain, roles auditor and admin', async () => {
    const spec = (await t.request('GET', '/openapi.json', { token: null })).json;
    const operation = spec.paths['/metrics'].get;
    assert.deepEqual(operation['x-roles'], ['admin', 'auditor']);
    assert.deepEqual(operation.tags, ['operations']);
    assert.equal(typeof operation.summary, 'string');
    assert.deepEqual(Object.keys(operation.responses['200'].content), ['text/plain']);
    assert.deepEqual(operation.responses['200'].content['text/plain'].schema, { type: 'string' });
    assert.ok(operation.responses['401'] && operation.responses['403']);
    // The token's twin of the route (no roles) is not in the document.
    assert.deepEqual(Object.keys(spec.paths['/metrics']), ['get']);
  });
});

// --- the exposition ----------------------------------------------------------------------------------------

describe('the exposition', () => {
  test('is valid text format, with every family this API promises and the standard process metrics', async () => {
    // Live mode's registry (METRICS_TOKEN): the process metrics are there, and only there.
    const families = await scrape(t, METRICS_TOKEN);
    const expected: [string, string][] = [
      [`${P}http_requests_total`, 'counter'],
      [`${P}http_request_duration_seconds`, 'histogram'],
      [`${P}created_total`, 'counter'],
      [`${P}decision_reasons_total`, 'counter'],
      [`${P}refunds_total`, 'counter'],
      [`${P}review_resolutions_total`, 'counter'],
      [`${P}commit_batch_size`, 'histogram'],
      [`${P}commit_duration_seconds`, 'histogram'],
      [`${P}write_queue_depth`, 'gauge'],
      [`${P}commands_in_flight`, 'gauge'],
      [`${P}commit_batches_in_flight`, 'gauge'],
      [`${P}webhook_deliveries_total`, 'counter'],
      [`${P}webhook_delivery_lag_seconds`, 'histogram'],
      [`${P}audit_log_entries`, 'gauge'],
      [`${P}audit_checkpoint_age_seconds`, 'gauge'],
      [`${P}audit_checkpoint_tree_size`, 'gauge'],
      [`${P}rate_limit_rejections_total`, 'counter'],
      ['process_cpu_seconds_total', 'counter'],
      ['process_resident_memory_bytes', 'gauge'],
      ['nodejs_eventloop_lag_seconds', 'gauge'],
      ['nodejs_eventloop_lag_p99_seconds', 'gauge'],
      ['nodejs_heap_size_used_bytes', 'gauge'],
    ];
    for (const [name, type] of expected) {
      assert.equal(families.get(name)?.type, type, `${name} is a ${type}`);
    }
    for (const result of ['succeeded', 'retrying', 'failed']) {
      assert.equal(typeof seriesValue(families, `${P}webhook_deliveries_total`, { result }), 'number');
    }
    for (const kind of ['per_key', 'auth_failure', 'load_shed']) {
      assert.equal(typeof seriesValue(families, `${P}rate_limit_rejections_total`, { kind }), 'number');
    }
    // Test mode's registry leaves the process out: a sandbox key must not watch live load through it.
    const sandbox = await scrape();
    assert.equal(sandbox.get('process_cpu_seconds_total'), undefined);
    assert.equal(sandbox.get(`${P}created_total`)?.type, 'counter');
    // Labels are low-cardinality: route templates, never ids.
    for (const sample of families.get(`${P}http_requests_total`)!.samples) {
      assert.ok(!/(pay|cus|acc|key)_[0-9a-z]{8,}/.test(sample.labels['route']!), sample.labels['route']);
    }
  });

  test('the parser is strict: it refuses what Prometheus would', () => {
    const good = '# HELP a_total A.\n# TYPE a_total counter\na_total{x="1"} 2\n';
    assert.equal(parseExposition(good).get('a_total')?.samples[0]?.value, 2);
    for (const bad of [
      '# TYPE a_total counter\na_total 1\n', // no HELP
      '# HELP a_total A.\na_total 1\n', // no TYPE
      '# HELP a_total A.\n# TYPE a_total counter\na_total one\n',
      '# HELP a_total A.\n# TYPE a_total counter\na_total{x=1} 1\n',
      '# HELP a_total A.\n# TYPE a_total counter\na_total 1', // no final newline
      '# HELP h A.\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n', // no +Inf
      '# HELP h A.\n# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_count 1\n', // no _sum
    ]) {
      assert.throws(() => parseExposition(bad), `refused: ${JSON.stringify(bad)}`);
    }
  });
});

// --- counters move -----------------------------------------------------------------------------------------

describe('counters move with the API', () => {
  test('each mode has its own metrics: METRICS_TOKEN reads live mode’s, a test key the sandbox’s', async () => {
    const created = (f: Map<string, Family>) =>
      seriesValue(f, `${P}created_total`, { outcome: 'posted' }) ?? 0;
    const [liveBefore, testBefore] = [await scrape(t, METRICS_TOKEN), await scrape()];
    const [sender, receiver] = [await party(t, { balance: 10_000 }), await party(t)];
    assert.equal((await pay(t, usd(sender, receiver, 100))).status, 201);
    assert.equal(created(await scrape()) - created(testBefore), 1);
    assert.equal(created(await scrape(t, METRICS_TOKEN)) - created(liveBefore), 0);
  });

  test('payments by outcome and reason, once each (a replay counts as a request, not a payment)', async () => {
    const sender = await party(t, { balance: 1_000_000 });
    const receiver = await party(t, { balance: 0 });
    const before = await scrape();
    const created = (outcome: string, f: Map<string, Family>) =>
      seriesValue(f, `${P}created_total`, { outcome }) ?? 0;
    const requests = (status: string, f: Map<string, Family>) =>
      seriesValue(f, `${P}http_requests_total`, {
        route: '/v1/payments',
        method: 'POST',
        status_code: status,
      }) ?? 0;
    const reason = (outcome: string, code: string, f: Map<string, Family>) =>
      seriesValue(f, `${P}decision_reasons_total`, { outcome, reason: code }) ?? 0;
    const batches = (f: Map<string, Family>) => seriesValue(f, `${P}commit_batch_size_count`) ?? 0;

    const posted = await pay(t, usd(sender, receiver, 1_000));
    assert.equal(posted.status, 201, posted.body);
    const replay = await pay(t, usd(sender, receiver, 1_000), { key: posted.key });
    assert.equal(replay.status, 201);
    assert.equal(replay.headers['idempotency-replayed'], 'true');
    const declined = await pay(t, usd(receiver, sender, 5_000_000));
    assert.equal(declined.status, 422, declined.body);
    const held = await pay(t, usd(sender, receiver, REVIEW_AMOUNT));
    assert.equal(held.status, 202, held.body);
    const after = await scrape();

    assert.equal(created('posted', after) - created('posted', before), 1, 'the replay is not a payment');
    assert.equal(created('declined', after) - created('declined', before), 1);
    assert.equal(created('manual_review', after) - created('manual_review', before), 1);
    assert.equal(requests('201', after) - requests('201', before), 2, 'POST /v1/payments 201: both answers');
    assert.equal(requests('422', after) - requests('422', before), 1);
    for (const code of declined.json.payment.reasons as string[]) {
      assert.equal(reason('declined', code, after) - reason('declined', code, before), 1, code);
    }
    assert.ok((declined.json.payment.reasons as string[]).includes('insufficient_funds'));
    for (const code of held.json.payment.reasons as string[]) {
      assert.equal(reason('manual_review', code, after) - reason('manual_review', code, before), 1, code);
    }
    assert.ok(batches(after) - batches(before) >= 3, 'three payments committed in at least one batch each');
    assert.ok(
      (seriesValue(after, `${P}commit_batch_size_sum`) ?? 0) >
        (seriesValue(before, `${P}commit_batch_size_sum`) ?? 0),
    );
    assert.ok((seriesValue(after, `${P}commit_duration_seconds_count`) ?? 0) >= batches(after));
    const duration = seriesValue(after, `${P}http_request_duration_seconds_count`, {
      route: '/v1/payments',
      method: 'POST',
      status_code: '201',
    });
    assert.equal(duration, requests('201', after), 'every counted request has its duration');
    assert.equal(seriesValue(after, `${P}write_queue_depth`), 0);
    assert.equal(seriesValue(after, `${P}commands_in_flight`), 0);

    // Refunds and reviews, once each, a replay not counted.
    const refunds = (f: Map<string, Family>) => seriesValue(f, `${P}refunds_total`) ?? 0;
    const approved = (f: Map<string, Family>) =>
      seriesValue(f, `${P}review_resolutions_total`, { resolution: 'approved' }) ?? 0;
    const refundKey = `refund-${randomBytes(8).toString('hex')}`;
    const refundPath = `/v1/payments/${posted.json.payment.id}/refunds`;
    for (let i = 0; i < 2; i++) {
      const res = await t.request('POST', refundPath, {
        body: { amountCents: 100 },
        idempotencyKey: refundKey,
      });
      assert.equal(res.status, 201, res.body);
    }
    const approve = await t.request('POST', `/v1/payments/${held.json.payment.id}/approve`, { body: {} });
    assert.equal(approve.status, 201, approve.body);
    const last = await scrape();
    assert.equal(refunds(last) - refunds(after), 1);
    assert.equal(approved(last) - approved(after), 1);
  });

  test('a request no route matches is counted under the route "unmatched"', async () => {
    const before = await scrape();
    const labels = { route: 'unmatched', method: 'GET', status_code: '404' };
    assert.equal((await t.request('GET', '/v1/no-such-thing/pay_0123456789')).status, 404);
    const after = await scrape();
    assert.equal(
      (seriesValue(after, `${P}http_requests_total`, labels) ?? 0) -
        (seriesValue(before, `${P}http_requests_total`, labels) ?? 0),
      1,
    );
  });

  test('the audit log size is the number of entries; the latest checkpoint has an age', async () => {
    await pay(t, usd(await party(t, { balance: 10_000 }), await party(t), 100));
    const deadline = Date.now() + 10_000;
    let families = await scrape();
    // The checkpointer signs within AUDIT_CHECKPOINT_INTERVAL_MS (1 s) once the log grew.
    while (seriesValue(families, `${P}audit_checkpoint_age_seconds`) === undefined && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      families = await scrape();
    }
    const total = (await t.request('GET', '/v1/audit-logs?limit=1')).json.total;
    assert.equal(seriesValue(families, `${P}audit_log_entries`), total);
    const age = seriesValue(families, `${P}audit_checkpoint_age_seconds`);
    assert.ok(age !== undefined && age >= 0 && age < 60, `checkpoint age ${age}`);
    const treeSize = seriesValue(families, `${P}audit_checkpoint_tree_size`);
    assert.ok(treeSize !== undefined && treeSize > 0 && treeSize <= total);
  });

  test('webhook attempts: by result, with the lag from the event to the attempt', async () => {
    const before = await scrape();
    t.app.services.metrics.webhookAttempt('succeeded', 1_500);
    t.app.services.metrics.webhookAttempt('retrying', 250);
    const after = await scrape();
    const delta = (result: string) =>
      (seriesValue(after, `${P}webhook_deliveries_total`, { result }) ?? 0) -
      (seriesValue(before, `${P}webhook_deliveries_total`, { result }) ?? 0);
    assert.equal(delta('succeeded'), 1);
    assert.equal(delta('retrying'), 1);
    assert.equal(delta('failed'), 0);
    const sum = (f: Map<string, Family>) => seriesValue(f, `${P}webhook_delivery_lag_seconds_sum`) ?? 0;
    assert.ok(Math.abs(sum(after) - sum(before) - 1.75) < 1e-9);
  });
});

test('rate-limit rejections are counted by kind', async () => {
  const limited = await startTestApp({
    env: {
      METRICS_TOKEN,
      RATE_LIMIT_PER_SECOND: '1',
      RATE_LIMIT_BURST: '1',
      AUTH_FAILURE_LIMIT_PER_MINUTE: '1',
    },
  });
  try {
    const key = (await apiKey(limited, 'auditor')).token;
    const first = await limited.request('GET', '/v1/accounts', { token: key });
    assert.equal(first.status, 200, first.body);
    assertError(await limited.request('GET', '/v1/accounts', { token: key }), 429, 'RATE_LIMITED');
    // One failed authentication spends the address's allowance; the next authenticated request is refused.
    assert.equal(
      (await limited.request('GET', '/v1/accounts', { token: 'sk_not_a_key_at_all' })).status,
      401,
    );
    assertError(await limited.request('GET', '/v1/accounts', { token: key }), 429, 'RATE_LIMITED');
    // The address is now refused before any credential is looked at, the metrics token's included (like an
    // API key's), so this reads the registry directly.
    assert.equal((await limited.request('GET', '/metrics', { token: METRICS_TOKEN })).status, 429);
    // Each mode counts what its keys were refused: the test key's here, the metrics token's in live mode.
    const rejections = async (kind: string) => {
      let total = 0;
      for (const services of Object.values(limited.app.modes)) {
        const families = parseExposition(await services.metrics.scrape());
        total += seriesValue(families, `${P}rate_limit_rejections_total`, { kind }) ?? 0;
      }
      return total;
    };
    assert.equal(await rejections('per_key'), 1);
    assert.equal(await rejections('auth_failure'), 2);
    assert.equal(await rejections('load_shed'), 0);
  } finally {
    await limited.destroy();
  }
});

test('load shedding is counted as load_shed, and /metrics answers while shedding', async () => {
  const shedding = await startTestApp({ env: { METRICS_TOKEN, EVENT_LOOP_DELAY_MAX_MS: '10' } });
  try {
    // Sustained lag (busy chunks with a yield between them), as in test/slow-clients.test.ts.
    const lag = async (ms: number) => {
      const until = Date.now() + ms;
      while (Date.now() < until) {
        const chunkEnd = Date.now() + 60;
        while (Date.now() < chunkEnd) {
          // busy
        }
        await new Promise((resolve) => setImmediate(resolve));
      }
    };
    let shed = 0;
    let exempt: TestResponse | undefined;
    for (let attempt = 0; attempt < 6 && shed === 0; attempt += 1) {
      await lag(1500);
      const res = await shedding.request('GET', '/v1/accounts', { token: 'sk_not_a_key' });
      if (res.status === 503) {
        shed += 1;
        exempt = await shedding.request('GET', '/metrics', { token: METRICS_TOKEN });
      }
    }
    assert.equal(shed, 1, 'a request was shed');
    assert.equal(exempt?.status, 200, '/metrics is exempt from shedding');
    // The shed request named no test key: live mode's, which METRICS_TOKEN reads.
    const families = await scrape(shedding, METRICS_TOKEN);
    assert.equal(seriesValue(families, `${P}rate_limit_rejections_total`, { kind: 'load_shed' }), 1);
    assert.equal(
      seriesValue(families, `${P}http_requests_total`, {
        route: '/v1/accounts',
        method: 'GET',
        status_code: '503',
      }),
      1,
    );
  } finally {
    await shedding.destroy();
  }
});
