import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { ConfigError, loadConfig } from '../src/config.ts';
import { inParallel, type ProcessResult, runMain } from './support/foundation.ts';
import {
  createTestDatabase,
  http,
  type ServerProcess,
  spawnServer,
  startTestApp,
  type TestDatabase,
  testEnv,
} from './support/harness.ts';

/**
 * Issue 13, production mode: NODE_ENV=production refuses, with one line naming the variable, what only suits
 * a laptop: development keys (DATA_ENCRYPTION_KEY / AUDIT_SIGNING_KEY not set), the demo admin token, and demo
 * data (SEED_DEMO_DATA must be an explicit false). Outside production the quick start keeps its defaults.
 */
const DATA_KEY = randomBytes(32).toString('base64');
const AUDIT_KEY = randomBytes(32).toString('base64');
/** A complete production environment (the database comes per test). */
const PRODUCTION = {
  NODE_ENV: 'production',
  DATA_ENCRYPTION_KEY: DATA_KEY,
  AUDIT_SIGNING_KEY: AUDIT_KEY,
  SEED_DEMO_DATA: 'false',
};

function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error;
  }
  assert.fail('expected a ConfigError');
}

/** What production refuses: the variable to change, and the environment that shows it. */
const REFUSALS: [string, string, Record<string, string>][] = [
  ['DATA_ENCRYPTION_KEY', 'must be set', { ...PRODUCTION, DATA_ENCRYPTION_KEY: '' }],
  ['AUDIT_SIGNING_KEY', 'must be set', { ...PRODUCTION, AUDIT_SIGNING_KEY: '' }],
  ['DEMO_API_TOKEN', 'must not be set', { ...PRODUCTION, DEMO_API_TOKEN: 'demo-fintech-token' }],
  ['SEED_DEMO_DATA', 'must be set to false', { ...PRODUCTION, SEED_DEMO_DATA: '' }],
  ['SEED_DEMO_DATA', 'must be set to false', { ...PRODUCTION, SEED_DEMO_DATA: 'true' }],
  [
    'WEBHOOK_ALLOW_PRIVATE_TARGETS',
    'must not be true',
    { ...PRODUCTION, WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true' },
  ],
];

describe('loadConfig in production', () => {
  for (const [variable, why, env] of REFUSALS) {
    test(`${variable}=${JSON.stringify(env[variable])}: ConfigError naming ${variable} (${why})`, () => {
      const error = configError(env);
      assert.equal(error.variable, variable);
      assert.ok(error.message.startsWith(`${variable}: ${why} when NODE_ENV=production`), error.message);
      assert.ok(!error.message.includes(DATA_KEY) && !error.message.includes('demo-fintech-token'));
    });
  }

  test('everything set explicitly: accepted; SEED_DEMO_DATA=0 is an explicit false too', () => {
    const config = loadConfig(PRODUCTION);
    assert.equal(config.production, true);
    assert.equal(config.seedDemoData, false);
    assert.equal(config.demoApiToken, null);
    assert.equal(loadConfig({ ...PRODUCTION, SEED_DEMO_DATA: '0' }).seedDemoData, false);
  });

  test('a malformed value is still named first (production checks run after parsing)', () => {
    assert.equal(
      configError({ ...PRODUCTION, DATA_ENCRYPTION_KEY: 'short' }).variable,
      'DATA_ENCRYPTION_KEY',
    );
    assert.equal(configError({ NODE_ENV: 'production', PORT: 'abc' }).variable, 'PORT');
  });

  test('outside production the development defaults stay (quick start without .env)', () => {
    for (const nodeEnv of [undefined, 'development', 'test']) {
      const config = loadConfig(nodeEnv === undefined ? {} : { NODE_ENV: nodeEnv });
      assert.equal(config.production, false, String(nodeEnv));
      assert.equal(config.seedDemoData, true);
      assert.equal(config.dataEncryptionKeys, null);
    }
  });
});

test('a mistyped NODE_ENV is refused, not run quietly in development mode', () => {
  for (const nodeEnv of ['Production', 'prod', 'production ', 'staging']) {
    const error = configError({ NODE_ENV: nodeEnv });
    assert.equal(error.variable, 'NODE_ENV', nodeEnv);
    assert.match(error.message, /must be one of development, production, test/);
  }
});

describe('a real process in production', () => {
  let db: TestDatabase;
  let results: ProcessResult[];
  let server: ServerProcess | undefined;

  before(async () => {
    db = await createTestDatabase();
    const env = (extra: Record<string, string>) => ({
      ...process.env,
      ...testEnv(db.url, { PORT: '0', HOST: '127.0.0.1', DEMO_API_TOKEN: '', ...extra }),
    });
    results = await inParallel(
      2,
      REFUSALS.slice(0, 4).map(
        ([, , extra]) =>
          () =>
            runMain(env(extra)),
      ),
    );
  });

  after(async () => {
    if (server !== undefined && server.child.exitCode === null && server.child.signalCode === null) {
      server.child.kill('SIGKILL');
      await server.exited;
    }
    await db.drop();
  });

  for (const [i, [variable]] of REFUSALS.slice(0, 4).entries()) {
    test(`${variable} not as production needs it: exit 2, one line "Configuration error: ${variable}: ..."`, () => {
      const result = results[i]!;
      const context = `stdout:\n${result.stdout}\nstderr:\n${result.stderr}`;
      assert.equal(result.signal, null, context);
      assert.equal(result.status, 2, context);
      const lines = result.stderr.split('\n').filter((l) => l.trim() !== '');
      assert.equal(lines.length, 1, context);
      assert.ok(lines[0]!.startsWith(`Configuration error: ${variable}: `), lines[0]);
      assert.match(lines[0]!, /NODE_ENV=production/);
      assert.ok(!`${result.stdout}${result.stderr}`.includes('    at '), `no stack trace\n${context}`);
    });
  }

  test('with everything set it starts: no demo data, no demo key, no development key', async () => {
    server = await spawnServer({ ...testEnv(db.url, { DEMO_API_TOKEN: '' }), ...PRODUCTION }, 60_000);
    const health = await http(server.baseUrl, 'GET', '/health');
    assert.equal(health.status, 200);
    const demo = await http(server.baseUrl, 'GET', '/v1/accounts', { token: 'demo-fintech-token' });
    assert.equal(demo.status, 401, 'no demo key');
    assert.doesNotMatch(server.output(), /development key|seeded the demo data/);
    server.child.kill('SIGTERM');
    assert.equal(await server.exited, 0);
  });
});

test('in-process start in production (createApp): no demo data is seeded', async () => {
  const t = await startTestApp({ env: { ...PRODUCTION, DEMO_API_TOKEN: '' } });
  try {
    assert.doesNotMatch(t.logs.text(), /seeded the demo data|development key/);
  } finally {
    await t.destroy();
  }
});
