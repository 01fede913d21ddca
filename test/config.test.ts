import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ConfigError, loadConfig } from '../src/config.ts';
import { inParallel, type ProcessResult, runMain } from './support/foundation.ts';
import { testEnv } from './support/harness.ts';

/**
 * Configuration: `loadConfig` parses every variable once, with the documented defaults, and a bad value is a
 * ConfigError naming the variable (without echoing a secret). End to end, `node --import tsx src/main.ts`
 * with a bad value exits non-zero with ONE line on stderr naming the variable, and no stack trace.
 */
const KEY_32 = randomBytes(32).toString('base64');
const SECRET_VARIABLES = [
  'DEMO_API_TOKEN',
  'DATA_ENCRYPTION_KEY',
  'DATA_ENCRYPTION_KEYS_PREVIOUS',
  'AUDIT_SIGNING_KEY',
];

describe('loadConfig', () => {
  test('defaults: the contract table', () => {
    const config = loadConfig({});
    assert.equal(config.port, 3000);
    assert.equal(config.host, '127.0.0.1');
    assert.deepEqual(config.database, { kind: 'sqlite', path: './data/payments.db' });
    assert.equal(config.demoApiToken, null);
    assert.equal(config.seedDemoData, true);
    assert.equal(config.dataEncryptionKeys, null, 'no key: a dev key is generated later');
    assert.equal(config.auditSigningKey, null);
    assert.equal(config.logLevel, 'info');
    assert.equal(config.idempotencyRetentionMs, 24 * 3_600_000, 'idempotency keys are kept at least 24 h');
  });

  test('an empty value means "not set"', () => {
    const empty = Object.fromEntries(
      [
        'PORT',
        'HOST',
        'DATABASE_URL',
        'DEMO_API_TOKEN',
        'SEED_DEMO_DATA',
        'DATA_ENCRYPTION_KEY',
        'LOG_LEVEL',
      ].map((k) => [k, '']),
    );
    assert.deepEqual(loadConfig(empty), loadConfig({}));
  });

  const pem = generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  const VALID: [string, string, (c: ReturnType<typeof loadConfig>) => unknown, unknown][] = [
    ['PORT', '8080', (c) => c.port, 8080],
    ['PORT', '0', (c) => c.port, 0],
    ['PORT', '65535', (c) => c.port, 65535],
    ['HOST', '0.0.0.0', (c) => c.host, '0.0.0.0'],
    ['DATABASE_URL', 'sqlite::memory:', (c) => c.database, { kind: 'sqlite-memory' }],
    [
      'DATABASE_URL',
      'sqlite:/tmp/x/payments.db',
      (c) => c.database,
      { kind: 'sqlite', path: '/tmp/x/payments.db' },
    ],
    [
      'DATABASE_URL',
      'postgres://user:pass@db.internal:5432/payments',
      (c) => c.database,
      { kind: 'postgres', url: 'postgres://user:pass@db.internal:5432/payments' },
    ],
    [
      'DATABASE_URL',
      'postgresql://u@h/db',
      (c) => c.database,
      { kind: 'postgres', url: 'postgresql://u@h/db' },
    ],
    ['DEMO_API_TOKEN', 'demo-fintech-token', (c) => c.demoApiToken, 'demo-fintech-token'],
    ['SEED_DEMO_DATA', 'true', (c) => c.seedDemoData, true],
    ['SEED_DEMO_DATA', '1', (c) => c.seedDemoData, true],
    ['SEED_DEMO_DATA', 'false', (c) => c.seedDemoData, false],
    ['SEED_DEMO_DATA', '0', (c) => c.seedDemoData, false],
    ['DATA_ENCRYPTION_KEY', KEY_32, (c) => c.dataEncryptionKeys?.map((k) => k.toString('base64')), [KEY_32]],
    ['AUDIT_SIGNING_KEY', KEY_32, (c) => c.auditSigningKey, KEY_32],
    ['AUDIT_SIGNING_KEY', pem, (c) => c.auditSigningKey, pem],
    ...['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map(
      (level): [string, string, (c: ReturnType<typeof loadConfig>) => unknown, unknown] => [
        'LOG_LEVEL',
        level,
        (c) => c.logLevel,
        level,
      ],
    ),
  ];
  for (const [variable, value, read, expected] of VALID) {
    test(`${variable}=${value.slice(0, 40).replace(/\n/g, ' ')} is accepted`, () => {
      assert.deepEqual(read(loadConfig({ [variable]: value })), expected);
    });
  }

  test('DATA_ENCRYPTION_KEYS_PREVIOUS adds decrypt-only keys after the primary one', () => {
    const older = [randomBytes(32).toString('base64'), randomBytes(32).toString('base64')];
    const config = loadConfig({
      DATA_ENCRYPTION_KEY: KEY_32,
      DATA_ENCRYPTION_KEYS_PREVIOUS: older.join(','),
    });
    assert.deepEqual(
      config.dataEncryptionKeys?.map((k) => k.toString('base64')),
      [KEY_32, ...older],
    );
  });

  const INVALID: [string, string][] = [
    ['PORT', 'abc'],
    ['PORT', '-1'],
    ['PORT', '65536'],
    ['PORT', '3000.5'],
    ['PORT', ' 3000'],
    ['PORT', '1e3'],
    ['PORT', '0x50'],
    ['HOST', ' 127.0.0.1'],
    ['DATABASE_URL', 'mysql://x'],
    ['DATABASE_URL', 'sqlite:'],
    ['DATABASE_URL', 'postgres://'],
    ['DATABASE_URL', './data/payments.db'],
    ['DATABASE_URL', 'http://db:5432/x'],
    ['DEMO_API_TOKEN', 'short'],
    ['DEMO_API_TOKEN', 'has a space in it'],
    // The demo key is a test key: a live prefix would route it to the live copy of the API, where it is not.
    ['DEMO_API_TOKEN', 'sk_live_demo-token-1234'],
    ['METRICS_TOKEN', `sk_test_${'x'.repeat(40)}`],
    ['SEED_DEMO_DATA', 'yes'],
    ['SEED_DEMO_DATA', 'TRUE'],
    ['DATA_ENCRYPTION_KEY', 'tooshort'],
    ['DATA_ENCRYPTION_KEY', randomBytes(31).toString('base64')],
    ['DATA_ENCRYPTION_KEY', randomBytes(33).toString('base64')],
    ['DATA_ENCRYPTION_KEY', randomBytes(32).toString('hex')],
    ['AUDIT_SIGNING_KEY', 'not-a-key'],
    ['AUDIT_SIGNING_KEY', randomBytes(16).toString('base64')],
    ['LOG_LEVEL', 'loud'],
    ['LOG_LEVEL', 'INFO'],
    ['IDEMPOTENCY_RETENTION_HOURS', '1'],
    ['SWEEP_INTERVAL_MS', '0'],
    ['GROUP_COMMIT_BATCH_MAX', '0'],
    ['PG_POOL_MAX', 'many'],
  ];
  for (const [variable, value] of INVALID) {
    test(`${variable}=${JSON.stringify(value.slice(0, 30))} is a ConfigError naming ${variable}`, () => {
      assert.throws(
        () => loadConfig({ [variable]: value }),
        (error: unknown) => {
          assert.ok(error instanceof ConfigError, `a ConfigError, got ${String(error)}`);
          assert.equal(error.variable, variable);
          assert.ok(error.message.startsWith(variable), error.message);
          assert.ok(!error.message.includes('\n'), 'one line');
          if (SECRET_VARIABLES.includes(variable)) {
            assert.ok(!error.message.includes(value), `the secret value is not echoed: ${error.message}`);
          }
          return true;
        },
      );
    });
  }

  test('DATA_ENCRYPTION_KEYS_PREVIOUS without a primary key is refused', () => {
    assert.throws(
      () => loadConfig({ DATA_ENCRYPTION_KEYS_PREVIOUS: KEY_32 }),
      (error: unknown) => error instanceof ConfigError && error.variable === 'DATA_ENCRYPTION_KEYS_PREVIOUS',
    );
  });

  test('DATA_ENCRYPTION_KEYS_PREVIOUS holds at most 8 keys (a bounded list of keys to try)', () => {
    const keys = (n: number) => Array.from({ length: n }, () => randomBytes(32).toString('base64')).join(',');
    const env = (n: number) => ({ DATA_ENCRYPTION_KEY: KEY_32, DATA_ENCRYPTION_KEYS_PREVIOUS: keys(n) });
    assert.equal(loadConfig(env(8)).dataEncryptionKeys?.length, 9);
    assert.throws(
      () => loadConfig(env(9)),
      (error: unknown) => error instanceof ConfigError && error.variable === 'DATA_ENCRYPTION_KEYS_PREVIOUS',
    );
  });
});

describe('start-up with a bad value (a real process)', () => {
  let dir: string;
  // One per kind of check (the unit tests above cover every variable): each costs a node start-up.
  const BAD: [string, string][] = [
    ['PORT', 'abc'],
    ['DATABASE_URL', 'mysql://x'],
    ['DATA_ENCRYPTION_KEY', 'tooshort'],
    ['LOG_LEVEL', 'loud'],
    ['DEMO_API_TOKEN', 'short'],
  ];
  const results = new Map<string, ProcessResult>();
  let dotenvResult: ProcessResult;
  let envWinsResult: ProcessResult;

  /** A complete, valid environment (a throwaway database, a free port), so only `variable` is wrong. */
  const validEnv = () => ({
    ...process.env,
    ...testEnv(`sqlite:${join(dir, 'config.db')}`),
    PORT: '0',
    HOST: '127.0.0.1',
  });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'payments-config-'));
    // .env handling needs its own working directory; tsx and main.ts are then given as absolute paths.
    const args = ['--import', import.meta.resolve('tsx'), resolve('src/main.ts')];
    const dotenvCwd = mkdtempSync(join(dir, 'dotenv-'));
    writeFileSync(join(dotenvCwd, '.env'), 'LOG_LEVEL=loud\n');
    const envWinsCwd = mkdtempSync(join(dir, 'env-wins-'));
    writeFileSync(join(envWinsCwd, '.env'), 'DATABASE_URL=mysql://from-dotenv\n');

    const withoutLogLevel: Record<string, string | undefined> = validEnv();
    delete withoutLogLevel['LOG_LEVEL'];
    // A few start-ups at a time: each is a separate node process, and CI machines may have two cores.
    const [dotenv, envWins, ...bad] = await inParallel(3, [
      () => runMain(withoutLogLevel, { cwd: dotenvCwd, args }),
      // The environment's valid DATABASE_URL must win over the .env's bad one; LOG_LEVEL is then the first bad
      // value. (Were .env to win, DATABASE_URL, which loadConfig checks before LOG_LEVEL, would be named.)
      () => runMain({ ...validEnv(), LOG_LEVEL: 'loud' }, { cwd: envWinsCwd, args }),
      ...BAD.map(
        ([variable, value]) =>
          () =>
            runMain({ ...validEnv(), [variable]: value }),
      ),
    ]);
    dotenvResult = dotenv!;
    envWinsResult = envWins!;
    for (const [i, [variable, value]] of BAD.entries()) results.set(`${variable}=${value}`, bad[i]!);
  });

  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  function assertOneLineNaming(result: ProcessResult, variable: string, secretValue?: string): void {
    const context = `stdout:\n${result.stdout}\nstderr:\n${result.stderr}`;
    assert.equal(
      result.signal,
      null,
      `the process exited by itself (not killed after a timeout)\n${context}`,
    );
    assert.notEqual(result.status, 0, `a non-zero exit status\n${context}`);
    const lines = result.stderr.split('\n').filter((l) => l.trim() !== '');
    assert.equal(lines.length, 1, `exactly one line on stderr\n${context}`);
    assert.ok(lines[0]!.includes(variable), `the line names ${variable}: ${lines[0]}`);
    assert.ok(!`${result.stderr}${result.stdout}`.includes('    at '), `no stack trace\n${context}`);
    if (secretValue !== undefined) {
      assert.ok(!`${result.stderr}${result.stdout}`.includes(secretValue), 'the secret value is not echoed');
    }
  }

  for (const [variable, value] of BAD) {
    test(`${variable}=${JSON.stringify(value)}: exit != 0, one stderr line naming ${variable}, no stack`, () => {
      const secret = SECRET_VARIABLES.includes(variable) ? value : undefined;
      assertOneLineNaming(results.get(`${variable}=${value}`)!, variable, secret);
    });
  }

  test('.env in the working directory is read: its bad LOG_LEVEL stops start-up', () => {
    assertOneLineNaming(dotenvResult, 'LOG_LEVEL');
  });

  test('the environment wins over .env', () => {
    assertOneLineNaming(envWinsResult, 'LOG_LEVEL');
    assert.ok(!envWinsResult.stderr.includes('DATABASE_URL'), envWinsResult.stderr);
  });
});
