import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse } from 'csv-parse/sync';
import { loadReportingRules, type ReportExport, reportCsv } from '../src/app/reports.ts';
import { ConfigError } from '../src/config.ts';
import { DEFAULT_REPORTING_RULES } from '../src/domain/default-reporting-rules.ts';
import type { Role } from '../src/domain/types.ts';
import { reportRowsSql } from '../src/storage/reports-sql.ts';
import { auditLogs, type Json, type Party, party, pay, rawRows, usd } from './support/fixtures.ts';
import { assertError, createRoleKeys } from './support/foundation.ts';
import { backend, manualClock, startTestApp, type TestApp } from './support/harness.ts';

/**
 * Regulatory reporting (issue 18, docs/decisions/0025-regulatory-reporting.md): payments crossing each shipped
 * threshold land in the right report (and just under do not), the 24-hour aggregation of one source account,
 * suspicious-activity candidates opening cases, case decisions, audited exports, personal data by role, CSV,
 * and the index a report reads. The clock ticks a minute and more between payments, so the velocity and
 * repeated-pattern rules never fire.
 */
const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;

let t: TestApp;
let keys: Record<Role, string>;
const clock = manualClock(Date.UTC(2026, 2, 1));

before(async () => {
  t = await startTestApp({ clock: clock.now });
  keys = await createRoleKeys(t);
});
after(async () => {
  await t.destroy();
});

const iso = (ms: number) => new Date(ms).toISOString();

/** A period that starts after every earlier test's payments. */
function periodStart(): number {
  clock.advance(1000);
  return clock.now();
}

/** A payment a minute and a second after the last one, so no velocity rule sees them together. */
async function payLater(from: Party, to: Party, amountCents: number, extra = {}): Promise<Json> {
  clock.advance(MINUTE_MS + 1000);
  const res = await pay(t, usd(from, to, amountCents, extra));
  assert.ok([201, 202, 422].includes(res.status), res.body);
  return res.json.payment;
}

/** Every row of a report over [fromMs, now + 1 s), all pages, as `role`. */
async function reportRows(
  type: string,
  fromMs: number,
  role: Role = 'compliance',
  limit = 500,
): Promise<Json[]> {
  const rows: Json[] = [];
  let cursor: string | null = null;
  do {
    const query = `from=${iso(fromMs)}&to=${iso(clock.now() + 1000)}&limit=${limit}${cursor === null ? '' : `&cursor=${cursor}`}`;
    const res = await t.request('GET', `/v1/reports/${type}?${query}`, { token: keys[role] });
    assert.equal(res.status, 200, res.body);
    rows.push(...res.json.rows);
    cursor = res.json.nextCursor;
  } while (cursor !== null);
  return rows;
}

const rowsOf = (rows: Json[], paymentId: string) => rows.filter((r) => r.paymentId === paymentId);

describe('thresholds', () => {
  test('travel rule: a USD 3,000 transfer is reported, USD 2,999.99 is not', async () => {
    const start = periodStart();
    const sender = await party(t, { balance: 5_000_000 });
    const receiver = await party(t);
    const at = await payLater(sender, receiver, 300_000);
    const under = await payLater(sender, receiver, 299_999);
    const rows = await reportRows('travel_rule', start);
    const [row] = rowsOf(rows, at.id);
    assert.ok(row, JSON.stringify(rows));
    assert.equal(row.ruleId, 'travel_rule');
    assert.equal(row.jurisdiction, 'US');
    assert.equal(row.trigger, 'amount');
    assert.equal(row.amountCents, 300_000);
    assert.equal(row.status, at.status);
    assert.equal(row.originatorName, sender.customer.name);
    assert.equal(row.beneficiaryName, receiver.customer.name);
    assert.equal(row.originatorCountry, 'US');
    assert.match(row.originatorAccountNumber, /^[0-9A-Z-]+$/);
    assert.deepEqual(rowsOf(rows, under.id), []);
    // The row names the payment's own audit entry.
    const entry = await t.request('GET', `/v1/audit-logs/entries/${row.auditIndex}`, { token: keys.auditor });
    assert.equal(entry.status, 200, entry.body);
    assert.equal(entry.json.entry.resourceId, at.id);
  });

  test('large transaction: USD 10,000 in one payment is reported, USD 9,999.99 (from a fresh account) is not', async () => {
    const start = periodStart();
    const sender = await party(t, { balance: 5_000_000 });
    const other = await party(t, { balance: 5_000_000 });
    const receiver = await party(t);
    const at = await payLater(sender, receiver, 1_000_000);
    const under = await payLater(other, receiver, 999_999);
    const rows = await reportRows('large_transaction', start);
    const [row] = rowsOf(rows, at.id);
    assert.ok(row, JSON.stringify(rows));
    assert.equal(row.trigger, 'amount');
    assert.equal(row.windowTotalCents, 1_000_000);
    assert.deepEqual(rowsOf(rows, under.id), []);
  });

  test('large transaction: the payment that takes a rolling 24 h over USD 10,000 is reported, and each later one while it stays over', async () => {
    const start = periodStart();
    const sender = await party(t, { balance: 5_000_000 });
    const receiver = await party(t);
    const first = await payLater(sender, receiver, 400_000);
    const second = await payLater(sender, receiver, 400_000);
    const crossing = await payLater(sender, receiver, 200_000);
    const later = await payLater(sender, receiver, 1_000);
    // A payment from another account of another customer does not add to this account's total.
    const rows = await reportRows('large_transaction', start);
    assert.deepEqual(rowsOf(rows, first.id), []);
    assert.deepEqual(rowsOf(rows, second.id), []);
    const [row] = rowsOf(rows, crossing.id);
    assert.ok(row, JSON.stringify(rows));
    assert.equal(row.trigger, 'aggregate_24h');
    assert.equal(row.windowTotalCents, 1_000_000);
    assert.equal(rowsOf(rows, later.id)[0]?.windowTotalCents, 1_001_000);
    // 24 hours after the first payments the window no longer holds them.
    clock.advance(24 * HOUR_MS);
    const fresh = await payLater(sender, receiver, 1_000);
    assert.deepEqual(rowsOf(await reportRows('large_transaction', start), fresh.id), []);
  });

  test('a payment in another currency does not count towards a USD threshold', async () => {
    const start = periodStart();
    const sender = await party(t, { balance: 5_000_000, currency: 'GBP' });
    const receiver = await party(t, { currency: 'GBP' });
    clock.advance(MINUTE_MS + 1000);
    const res = await pay(t, { ...usd(sender, receiver, 1_000_000), currency: 'GBP' });
    assert.ok([201, 202].includes(res.status), res.body);
    assert.deepEqual(rowsOf(await reportRows('large_transaction', start), res.json.payment.id), []);
    assert.deepEqual(rowsOf(await reportRows('travel_rule', start), res.json.payment.id), []);
  });
});

describe('suspicious activity and cases', () => {
  const caseOf = async (paymentId: string, start: number): Promise<Json> => {
    const [row] = rowsOf(await reportRows('suspicious_activity', start), paymentId);
    assert.ok(row, `a suspicious_activity row for ${paymentId}`);
    const res = await t.request('GET', `/v1/cases/${row.caseId}`, { token: keys.compliance });
    assert.equal(res.status, 200, res.body);
    assert.equal(res.json.case.paymentId, paymentId);
    assert.equal(res.json.case.status, 'open');
    assert.equal(res.json.case.auditIndex, row.auditIndex);
    return { row, case: res.json.case };
  };

  test('a sanctions match, a high-risk jurisdiction and structuring each open a case', async () => {
    const start = periodStart();
    const sender = await party(t, { balance: 5_000_000 });
    const sanctioned = await party(t, { name: 'Ivan Sidorenko' });
    const northKorea = await party(t, { country: 'KP' });
    const receiver = await party(t);
    const matched = await payLater(sender, sanctioned, 1_000);
    assert.ok(matched.reasons.includes('sanctions_match'));
    const sanctionsCase = await caseOf(matched.id, start);
    assert.deepEqual(sanctionsCase.row.reasons, ['sanctions_match']);
    assert.equal(sanctionsCase.row.beneficiaryName, 'Ivan Sidorenko');
    assert.equal(sanctionsCase.row.jurisdiction, '*');

    const highRisk = await payLater(sender, northKorea, 1_000);
    assert.ok(highRisk.reasons.includes('high_risk_jurisdiction'), JSON.stringify(highRisk.reasons));
    const highRiskCase = await caseOf(highRisk.id, start);
    assert.equal(highRiskCase.row.beneficiaryCountry, 'KP');

    // Three payments just under the structuring threshold (USD 2,500) in 24 hours: the third is held.
    await payLater(sender, receiver, 230_000);
    await payLater(sender, receiver, 231_000);
    const third = await payLater(sender, receiver, 232_000);
    assert.ok(third.reasons.includes('structuring_suspected'), JSON.stringify(third.reasons));
    const structuring = await caseOf(third.id, start);
    assert.deepEqual(structuring.case.reasons, ['structuring_suspected']);

    // A plain payment opens nothing.
    const plain = await payLater(sender, receiver, 1_000);
    assert.deepEqual(rowsOf(await reportRows('suspicious_activity', start), plain.id), []);
  });

  test('compliance files one case and dismisses another, each once, audited with the actor and without the note', async () => {
    const start = periodStart();
    const sender = await party(t, { balance: 1_000_000 });
    const sanctioned = await party(t, { name: 'Ivan Sidorenko' });
    const one = await caseOf((await payLater(sender, sanctioned, 1_000)).id, start);
    const two = await caseOf((await payLater(sender, sanctioned, 2_000)).id, start);

    const open = await t.request('GET', '/v1/cases?status=open&limit=500', { token: keys.auditor });
    assert.equal(open.status, 200, open.body);
    assert.ok(open.json.cases.some((c: Json) => c.id === one.case.id));

    const note = `Filed with FinCEN after calling Mr. Example ${randomUUID()}`;
    const decide = (id: string, body: Json, key?: string) =>
      t.request('POST', `/v1/cases/${id}/decide`, {
        token: keys.compliance,
        body,
        ...(key === undefined ? {} : { idempotencyKey: key }),
      });
    const key = `decide-${randomUUID()}`;
    const filed = await decide(one.case.id, { decision: 'filed', note }, key);
    assert.equal(filed.status, 200, filed.body);
    assert.equal(filed.json.case.status, 'filed');
    assert.equal(filed.json.case.noteProvided, true);
    assert.ok(!filed.body.includes(note), 'the note is not echoed');
    const replay = await decide(one.case.id, { decision: 'filed', note }, key);
    assert.equal(replay.status, 200);
    assert.equal(replay.headers['idempotency-replayed'], 'true');
    assert.equal(replay.body, filed.body);
    assertError(await decide(one.case.id, { decision: 'dismissed' }), 409, 'CASE_ALREADY_DECIDED');
    const dismissed = await decide(two.case.id, { decision: 'dismissed' });
    assert.equal(dismissed.status, 200, dismissed.body);
    assert.equal(dismissed.json.case.status, 'dismissed');
    assert.equal(dismissed.json.case.noteProvided, false);
    assertError(await decide('case_unknown', { decision: 'filed' }), 404, 'CASE_NOT_FOUND');
    assertError(
      await t.request('GET', '/v1/cases/case_unknown', { token: keys.compliance }),
      404,
      'CASE_NOT_FOUND',
    );
    // Auditors read cases but do not decide them; payments keys do neither.
    assertError(
      await t.request('POST', `/v1/cases/${two.case.id}/decide`, {
        token: keys.auditor,
        body: { decision: 'filed' },
      }),
      403,
      'FORBIDDEN',
    );
    assertError(await t.request('GET', '/v1/cases', { token: keys.payments }), 403, 'FORBIDDEN');

    const filedList = await t.request('GET', '/v1/cases?status=filed&limit=500', { token: keys.compliance });
    assert.ok(filedList.json.cases.some((c: Json) => c.id === one.case.id));
    assert.ok(!filedList.json.cases.some((c: Json) => c.id === two.case.id));

    const complianceKeyId = (await auditLogs(t)).find(
      (e: Json) => e.eventType === 'case.filed' && e.resourceId === one.case.id,
    );
    assert.ok(complianceKeyId, 'case.filed is audited');
    assert.match(complianceKeyId.actorId, /^key_/);
    assert.notEqual(complianceKeyId.actorId, 'key_demo_admin');
    assert.equal(complianceKeyId.metadata.noteProvided, true);
    assert.equal(complianceKeyId.metadata.statusTo, 'filed');
    assert.ok(!JSON.stringify(complianceKeyId).includes(note), 'no note in the audit log');
    const dismissal = (await auditLogs(t)).find(
      (e: Json) => e.eventType === 'case.dismissed' && e.resourceId === two.case.id,
    );
    assert.equal(dismissal.actorId, complianceKeyId.actorId);
    // The note is stored encrypted.
    const stored = await rawRows(t.db, 'SELECT decision_note_enc FROM compliance_cases WHERE id = ?', [
      one.case.id,
    ]);
    assert.match(stored[0].decision_note_enc, /^v1\./);
  });
});

describe('exports', () => {
  test('every export is audited: actor, report, format, period and row count, no personal data', async () => {
    const start = periodStart();
    const sender = await party(t, { balance: 5_000_000, name: 'Audrey Exportwatch' });
    const receiver = await party(t);
    await payLater(sender, receiver, 300_000);
    const to = clock.now() + 1000;
    const res = await t.request(
      'GET',
      `/v1/reports/travel_rule?from=${iso(start)}&to=${iso(to)}&format=csv`,
      {
        token: keys.auditor,
      },
    );
    assert.equal(res.status, 200, res.body);
    const entries = (await auditLogs(t)).filter((e: Json) => e.eventType === 'report.exported');
    const entry = entries[entries.length - 1];
    assert.equal(entry.resourceId, 'travel_rule');
    assert.match(entry.actorId, /^key_/);
    assert.deepEqual(
      { ...entry.metadata },
      {
        reportType: 'travel_rule',
        format: 'csv',
        from: iso(start),
        to: iso(to),
        rowCount: 1,
        firstPage: true,
        hasMore: false,
        personalData: 'decrypted',
      },
    );
    assert.ok(!JSON.stringify(entries).includes('Exportwatch'));
  });

  test('personal data is decrypted for compliance and auditor keys only; admin gets it masked, payments keys 403', async () => {
    const start = periodStart();
    const sender = await party(t, { balance: 5_000_000 });
    const receiver = await party(t);
    const payment = await payLater(sender, receiver, 300_000);
    for (const role of ['compliance', 'auditor'] as const) {
      const [row] = rowsOf(await reportRows('travel_rule', start, role), payment.id);
      assert.equal(row.originatorName, sender.customer.name, role);
      assert.equal(typeof row.beneficiaryAccountNumber, 'string', role);
    }
    const masked = await t.request(
      'GET',
      `/v1/reports/travel_rule?from=${iso(start)}&to=${iso(clock.now() + 1)}`,
      {
        token: keys.admin,
      },
    );
    assert.equal(masked.status, 200, masked.body);
    assert.equal(masked.json.personalData, 'masked');
    const [row] = rowsOf(masked.json.rows, payment.id);
    assert.equal(row.originatorName, null);
    assert.equal(row.originatorAccountNumber, null);
    assert.equal(row.beneficiaryName, null);
    assert.equal(row.originatorCountry, 'US');
    assert.ok(!masked.body.includes(sender.customer.name));
    assertError(
      await t.request('GET', `/v1/reports/travel_rule?from=${iso(start)}&to=${iso(clock.now())}`, {
        token: keys.payments,
      }),
      403,
      'FORBIDDEN',
    );
  });

  test('CSV: RFC 4180, parsed back by csv-parse, commas and quotes round-trip, formulas neutralised', async () => {
    const start = periodStart();
    const sender = await party(t, { balance: 5_000_000, name: 'O"Brien, Anne "Nan"' });
    const receiver = await party(t, { name: '=HYPERLINK("http://x") Smith' });
    const payment = await payLater(sender, receiver, 300_000);
    const res = await t.request(
      'GET',
      `/v1/reports/travel_rule?from=${iso(start)}&to=${iso(clock.now() + 1)}&format=csv`,
      { token: keys.compliance },
    );
    assert.equal(res.status, 200, res.body);
    assert.equal(res.headers['content-type'], 'text/csv; charset=utf-8');
    assert.ok(res.body.endsWith('\r\n'));
    assert.ok(!/[^\r]\n/.test(res.body), 'every line ends with CRLF');
    const records = parse(res.body, { columns: true }) as Record<string, string>[];
    const row = records.find((r) => r['paymentId'] === payment.id);
    assert.ok(row, res.body);
    assert.equal(row['originatorName'], 'O"Brien, Anne "Nan"');
    assert.equal(row['beneficiaryName'], `'=HYPERLINK("http://x") Smith`);
    assert.equal(row['amountCents'], '300000');
    assert.equal(res.headers['x-next-cursor'], undefined);
  });

  test('CSV: fields with CR and LF are quoted and round-trip; every formula lead is guarded', () => {
    const report: ReportExport = {
      columns: ['a', 'b', 'c'],
      rows: [
        { a: 'line\nbreak', b: 'carriage\rreturn', c: 'both\r\n"q", x' },
        { a: '+1', b: '-2', c: '@sum' },
        { a: '\tTab', b: null, c: ['x', 'y'] },
      ],
      personalData: 'decrypted',
      next: null,
    };
    const text = reportCsv(report);
    const parsed = parse(text, { columns: true }) as Record<string, string>[];
    assert.deepEqual(parsed, [
      { a: 'line\nbreak', b: 'carriage\rreturn', c: 'both\r\n"q", x' },
      { a: "'+1", b: "'-2", c: "'@sum" },
      { a: "'\tTab", b: '', c: 'x y' },
    ]);
  });

  test('paging reaches the end, every row once; the cursor is bound to its report and period', async () => {
    const start = periodStart();
    const sender = await party(t, { balance: 5_000_000 });
    const receiver = await party(t);
    const made: string[] = [];
    for (let i = 0; i < 5; i++) made.push((await payLater(sender, receiver, 300_000 + i)).id);
    const paged = await reportRows('travel_rule', start, 'compliance', 2);
    assert.deepEqual(
      paged.map((r) => r.paymentId),
      made,
    );
    const first = await t.request(
      'GET',
      `/v1/reports/travel_rule?from=${iso(start)}&to=${iso(clock.now() + 1000)}&limit=2`,
      { token: keys.compliance },
    );
    assert.equal(first.json.hasMore, true);
    assertError(
      await t.request(
        'GET',
        `/v1/reports/travel_rule?from=${iso(start - 1)}&to=${iso(clock.now())}&cursor=${first.json.nextCursor}`,
        {
          token: keys.compliance,
        },
      ),
      400,
      'VALIDATION_ERROR',
    );
  });

  test('bad input: unknown types are 404 (own names only), periods are checked', async () => {
    const now = clock.now();
    const period = `from=${iso(now - HOUR_MS)}&to=${iso(now)}`;
    for (const type of ['ctr', 'constructor', '__proto__', 'toString']) {
      assertError(
        await t.request('GET', `/v1/reports/${type}?${period}`, { token: keys.compliance }),
        404,
        'REPORT_TYPE_NOT_FOUND',
        type,
      );
    }
    const bad = [
      `from=${iso(now)}&to=${iso(now - 1)}`,
      `from=${iso(now - 400 * 24 * HOUR_MS)}&to=${iso(now)}`,
      `to=${iso(now)}`,
      `from=yesterday&to=${iso(now)}`,
      `${period}&format=xlsx`,
      `from=2026-02-30T00:00:00Z&to=${iso(now)}`,
    ];
    for (const query of bad) {
      assertError(
        await t.request('GET', `/v1/reports/travel_rule?${query}`, { token: keys.compliance }),
        400,
        'VALIDATION_ERROR',
        query,
      );
    }
  });

  test('a report over a period reads the index report_entries_period, not the table', async (ctx) => {
    if (backend !== 'sqlite') {
      ctx.skip('EXPLAIN QUERY PLAN is SQLite’s');
      return;
    }
    for (const withCursor of [false, true]) {
      const params = withCursor ? ['travel_rule', 0, 1, 0, 0, 10] : ['travel_rule', 0, 1, 10];
      const plan = await rawRows(t.db, `EXPLAIN QUERY PLAN ${reportRowsSql(withCursor)}`, params);
      const text = plan.map((p: Json) => p.detail).join('\n');
      assert.match(
        text,
        /SEARCH r USING INDEX report_entries_period \(report_type=\? AND created_at_ms>\? AND created_at_ms<\?\)/,
        text,
      );
      assert.doesNotMatch(text, /SCAN/, text);
      assert.doesNotMatch(text, /TEMP B-TREE/, text);
    }
  });
});

describe('the rules as data', () => {
  test('config/reporting-rules.example.json is the built-in rules; a bad file names REPORTING_RULES_PATH', () => {
    const example = JSON.parse(readFileSync('config/reporting-rules.example.json', 'utf8'));
    assert.deepEqual(example, DEFAULT_REPORTING_RULES);
    assert.deepEqual(loadReportingRules('config/reporting-rules.example.json'), DEFAULT_REPORTING_RULES);
    const dir = mkdtempSync(join(tmpdir(), 'reporting-rules-'));
    const cases: [unknown, RegExp][] = [
      [
        { version: 'x', rules: [{ ...DEFAULT_REPORTING_RULES.rules[0], thresholdCents: undefined }] },
        /thresholdCents/,
      ],
      [{ version: 'x', rules: [{ ...DEFAULT_REPORTING_RULES.rules[0], jurisdictions: ['ZZ'] }] }, /ZZ/],
      [{ version: 'x', rules: [{ ...DEFAULT_REPORTING_RULES.rules[3], reasons: undefined }] }, /reasons/],
      [{ version: 'x', rules: [{ ...DEFAULT_REPORTING_RULES.rules[0], reportType: 'ctr' }] }, /reportType/],
    ];
    for (const [content, message] of cases) {
      const path = join(dir, 'rules.json');
      writeFileSync(path, JSON.stringify(content));
      assert.throws(
        () => loadReportingRules(path),
        (error: unknown) =>
          error instanceof ConfigError &&
          error.variable === 'REPORTING_RULES_PATH' &&
          message.test(error.message),
      );
    }
    writeFileSync(join(dir, 'broken.json'), '{');
    assert.throws(() => loadReportingRules(join(dir, 'broken.json')), ConfigError);
  });
});
