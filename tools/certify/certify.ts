import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Client } from './client.ts';
import { Failure, type Options, Run } from './context.ts';
import { SCENARIOS } from './scenarios/index.ts';

/**
 * The partner certification run (issue 18): the scenarios an integration must handle, run against a sandbox with
 * a test key, one PASS or FAIL line each. Standalone like tools/audit-verify: it speaks to the API over HTTP
 * only and imports nothing from src/. What each scenario checks, the report and its JSON: docs/certification.md.
 */

const USAGE = `Usage: npm run certify -- --url <sandbox base URL> --key <test API key> [options]

  --url <base URL>           the sandbox, e.g. http://127.0.0.1:3000
  --key <secret>             an admin test key (sk_test_… or the demo token); also CERTIFY_KEY
  --json <file>              also write the report as JSON to this file
  --scenario <name>          run only this scenario; repeatable (names: see the report)
  --receiver-host <host>     where the run's webhook receiver listens (default 127.0.0.1)
  --receiver-port <port>     its port (default 0: any free port)
  --receiver-url <URL>       a public URL that forwards to the receiver, when the sandbox cannot reach it directly
  --help                     this text

One line per scenario: "PASS <name>" or "FAIL <name>: <what happened> — <what an integration must do>".
Exit 0: every scenario passed; 1: one or more failed; 2: bad usage, or the run was refused (a live key, a
sandbox that is not in test mode, a key it does not accept, a sandbox it cannot reach).
`;

class UsageError extends Error {}
/** The run must not (or cannot) start: exit 2. */
class Refusal extends Error {}

interface ScenarioResult {
  name: string;
  result: 'pass' | 'fail';
  durationMs: number;
  happened?: string;
  mustDo?: string;
}

function parseOptions(argv: string[]): (Options & { json: string | null; only: string[] }) | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      url: { type: 'string' },
      key: { type: 'string' },
      json: { type: 'string' },
      scenario: { type: 'string', multiple: true },
      'receiver-host': { type: 'string' },
      'receiver-port': { type: 'string' },
      'receiver-url': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return 'help';
  const key = values.key ?? process.env['CERTIFY_KEY'];
  if (values.url === undefined) throw new UsageError('--url is required (the sandbox base URL)');
  if (key === undefined || key === '') throw new UsageError('--key is required (a test API key)');
  let url: URL;
  try {
    url = new URL(values.url);
  } catch {
    throw new UsageError(`--url ${values.url} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new UsageError('--url must be http or https');
  const port = Number(values['receiver-port'] ?? '0');
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new UsageError('--receiver-port must be a port number (0: any free port)');
  }
  const unknown = (values.scenario ?? []).filter((name) => !SCENARIOS.some((s) => s.name === name));
  if (unknown.length > 0) {
    throw new UsageError(
      `unknown scenario ${unknown.join(', ')}: ${SCENARIOS.map((s) => s.name).join(', ')}`,
    );
  }
  return {
    url: url.toString().replace(/\/+$/, ''),
    key,
    receiverHost: values['receiver-host'] ?? '127.0.0.1',
    receiverPort: port,
    receiverUrl: values['receiver-url'] ?? null,
    json: values.json ?? null,
    only: values.scenario ?? [],
  };
}

/**
 * Refuses a live key locally, then asks the sandbox: GET /v1/test/clock answers a test key (200) and refuses a
 * live one (403 TEST_MODE_ONLY). A sandbox without the test clock (404) is certified without time control.
 */
async function preflight(run: Run, notes: string[]): Promise<string | null> {
  if (run.options.key.startsWith('sk_live_')) {
    throw new Refusal(
      'the key is a live key (sk_live_…): certification runs only against the sandbox with a test key',
    );
  }
  let clock: Awaited<ReturnType<Client['send']>>;
  try {
    clock = await run.client.send('GET', '/v1/test/clock');
  } catch (error) {
    throw new Refusal(`cannot reach ${run.options.url}: ${(error as Error).message}`);
  }
  const code = clock.json?.error?.code;
  if (clock.status === 403 && code === 'TEST_MODE_ONLY') {
    throw new Refusal(
      'certification runs only against the sandbox with a test key (the sandbox answered 403 TEST_MODE_ONLY)',
    );
  }
  if (clock.status === 401)
    throw new Refusal(`the sandbox does not accept this key (401 ${code ?? ''})`.trimEnd());
  run.testClock = clock.status === 200;
  if (!run.testClock) {
    notes.push(
      `the sandbox has no test clock (GET /v1/test/clock answered ${clock.status}): scenarios are not separated in time`,
    );
  }
  const me = await run.client.send('GET', '/v1/me');
  const role: string | null = me.json?.apiKey?.role ?? null;
  if (role !== 'admin') {
    notes.push(
      `the key's role is ${role ?? 'unknown'}: scenarios that open accounts, decide reviews or register webhooks need an admin test key`,
    );
  }
  return role;
}

async function runScenarios(run: Run, only: string[]): Promise<ScenarioResult[]> {
  const results: ScenarioResult[] = [];
  for (const scenario of SCENARIOS.filter((s) => only.length === 0 || only.includes(s.name))) {
    const started = Date.now();
    let result: ScenarioResult;
    try {
      await scenario.run(run);
      result = { name: scenario.name, result: 'pass', durationMs: Date.now() - started };
      process.stdout.write(`PASS ${scenario.name}\n`);
    } catch (error) {
      const failure =
        error instanceof Failure
          ? error
          : new Failure((error as Error).message, 'the sandbox must answer as docs/api.md says');
      result = {
        name: scenario.name,
        result: 'fail',
        durationMs: Date.now() - started,
        happened: failure.happened,
        mustDo: failure.mustDo,
      };
      process.stdout.write(`FAIL ${scenario.name}: ${failure.happened} — ${failure.mustDo}\n`);
    }
    results.push(result);
    await run.separate().catch(() => undefined);
  }
  return results;
}

async function main(argv: string[]): Promise<number> {
  const options = parseOptions(argv);
  if (options === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  const run = new Run(new Client(options.url, options.key), options);
  const startedAt = new Date().toISOString();
  const notes: string[] = [];
  const report = (fields: Record<string, unknown>) => {
    if (options.json === null) return;
    const base = { runId: run.runId, url: options.url, startedAt, finishedAt: new Date().toISOString() };
    writeFileSync(options.json, `${JSON.stringify({ ...base, ...fields, notes }, null, 2)}\n`);
  };
  let role: string | null;
  try {
    role = await preflight(run, notes);
  } catch (error) {
    if (error instanceof Refusal) report({ result: 'refused', refusal: error.message, scenarios: [] });
    throw error;
  }
  for (const note of notes) process.stderr.write(`certify: note: ${note}\n`);
  const results = await runScenarios(run, options.only);
  const failed = results.filter((r) => r.result === 'fail').length;
  process.stdout.write(
    `certify: ${results.length - failed} passed, ${failed} failed (run ${run.runId}, ${run.client.sent} requests)\n`,
  );
  report({
    result: failed === 0 ? 'pass' : 'fail',
    testClock: run.testClock,
    role,
    passed: results.length - failed,
    failed,
    scenarios: results,
  });
  return failed === 0 ? 0 : 1;
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (error) {
  if (error instanceof Refusal) {
    process.stderr.write(`certify: REFUSED: ${error.message}\n`);
  } else if (error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    process.stderr.write(`certify: ${(error as Error).message} (--help for usage)\n`);
  } else {
    process.stderr.write(`certify: ${(error as Error).message}\n`);
  }
  process.exitCode = 2;
}
