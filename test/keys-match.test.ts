import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { before, describe, test } from 'node:test';
import { KEY_RECORD_SETTING } from '../src/security/key-fingerprints.ts';
import { databasesForFile, type Json, keyRecord, rawRows, rawSql, refusedStart } from './support/fixtures.ts';
import { inParallel, type ProcessResult, runKeysCli, runMain } from './support/foundation.ts';
import { backend, startTestApp, type TestApp, type TestDatabase, testEnv } from './support/harness.ts';

/**
 * Issue 13, "keys match the data": the database records what its data was written with (fingerprints of the
 * data keys, the wrapped blind-index key, the audit public key), and a process with other keys refuses to start
 * with one line naming the variable, before it writes anything. Development keys too: a database whose
 * development keys were replaced or lost refuses instead of getting a new key. And no command creates a key.
 */
const K1 = randomBytes(32).toString('base64');
const K2 = randomBytes(32).toString('base64');
const seed = () => randomBytes(32).toString('base64');

const freshDatabase = databasesForFile();

/** Starts the real app; the caller closes it. */
const start = (db: TestDatabase, env: Record<string, string>) => startTestApp({ db, env });

async function customerCount(db: TestDatabase): Promise<number> {
  const [row] = await rawRows(db, 'SELECT COUNT(*) AS n FROM customers');
  return Number(row.n);
}

async function createCustomer(t: TestApp, documentReference: string): Promise<Json> {
  return t.request('POST', '/v1/customers', {
    body: { name: 'Keys Match Customer', country: 'NL', documentReference },
  });
}

describe('a process with other keys than the data refuses to start', () => {
  test('another DATA_ENCRYPTION_KEY: refused, naming the variable and both fingerprints; nothing written', async () => {
    const db = await freshDatabase();
    const first = await start(db, { DATA_ENCRYPTION_KEY: K1 });
    const created = await createCustomer(first, 'NL-KM-0001');
    assert.equal(created.status, 201, created.body);
    await first.close();
    const record = await keyRecord(db);
    assert.equal(record.dataKeys.length, 1, 'one data key recorded');
    assert.doesNotMatch(
      JSON.stringify(record),
      new RegExp(K1.replace(/[+/=]/g, '.')),
      'never the key itself',
    );

    const customersBefore = await customerCount(db);
    const error = await refusedStart(db, { DATA_ENCRYPTION_KEY: K2 });
    assert.equal(error.variable, 'DATA_ENCRYPTION_KEY');
    assert.match(error.message, /^DATA_ENCRYPTION_KEY does not match the key this database was written with/);
    assert.match(error.message, /fingerprint [0-9a-f]{16}; expected [0-9a-f]{16}/);
    assert.match(error.message, /docs\/deployment\.md#rotating-keys/);
    assert.ok(error.message.includes(record.dataKeys[0].slice(0, 16)), 'names the recorded fingerprint');
    assert.equal(await customerCount(db), customersBefore, 'the refused process wrote nothing');
    assert.deepEqual(await keyRecord(db), record, 'the record is unchanged');

    // The right key still starts, and reads what was written.
    const again = await start(db, { DATA_ENCRYPTION_KEY: K1 });
    try {
      const list = await again.request('GET', '/v1/customers?limit=500');
      assert.equal(list.status, 200, list.body);
    } finally {
      await again.close();
    }
  });

  test('another AUDIT_SIGNING_KEY: refused, naming the variable and the deliberate way to change it', async () => {
    const db = await freshDatabase();
    const first = await start(db, { DATA_ENCRYPTION_KEY: K1, AUDIT_SIGNING_KEY: seed() });
    await first.close();
    const error = await refusedStart(db, { DATA_ENCRYPTION_KEY: K1, AUDIT_SIGNING_KEY: seed() });
    assert.equal(error.variable, 'AUDIT_SIGNING_KEY');
    assert.match(
      error.message,
      /^AUDIT_SIGNING_KEY does not match the key this database's audit log is signed with/,
    );
    assert.match(error.message, /npm run keys -- accept-audit-key/);
    // Without the variable, the development key kept with the data is another key too.
    const dev = await refusedStart(db, { DATA_ENCRYPTION_KEY: K1 });
    assert.equal(dev.variable, 'AUDIT_SIGNING_KEY');
    assert.match(
      dev.message,
      /^AUDIT_SIGNING_KEY is not set and no development key is kept with this database/,
    );
  });

  test('development keys replaced: refused; lost: refused, and no new development key is created', async () => {
    const db = await freshDatabase();
    const noKeys = { DATA_ENCRYPTION_KEY: '' };
    const first = await start(db, noKeys);
    assert.match(first.logs.text(), /DATA_ENCRYPTION_KEY is not set: using a generated development key/);
    assert.equal((await createCustomer(first, 'NL-KM-0002')).status, 201);
    await first.close();
    const devKeysFile =
      db.sqlitePath === undefined ? undefined : join(dirname(db.sqlitePath), 'dev-keys.json');
    // On PostgreSQL the development keys are kept with the live data (the sandbox's store uses the same keys).
    const [original] = await rawRows(db, "SELECT value FROM settings WHERE key = 'dev_keys'", [], 'live');

    // Replaced (another laptop's file, or another database's row).
    const replacement = JSON.stringify({ dataEncryptionKey: seed(), auditSigningKey: seed() });
    if (devKeysFile !== undefined) writeFileSync(devKeysFile, replacement);
    else await rawSql(db, "UPDATE settings SET value = ? WHERE key = 'dev_keys'", [replacement], 'live');
    const replaced = await refusedStart(db, noKeys);
    assert.equal(replaced.variable, 'DATA_ENCRYPTION_KEY');
    assert.match(
      replaced.message,
      /^DATA_ENCRYPTION_KEY is not set, and the development key in .* does not match the key this database was written with/,
    );

    // Damaged: a message that names the file and what to do, not a parse error from deep inside.
    for (const damaged of [
      '{}',
      'not json',
      JSON.stringify({ dataEncryptionKey: 'short', auditSigningKey: 'x' }),
    ]) {
      if (devKeysFile !== undefined) writeFileSync(devKeysFile, damaged);
      else await rawSql(db, "UPDATE settings SET value = ? WHERE key = 'dev_keys'", [damaged], 'live');
      await assert.rejects(start(db, noKeys), /the development keys in .* are damaged/, damaged);
    }

    // Lost.
    if (devKeysFile !== undefined) rmSync(devKeysFile);
    else await rawSql(db, "DELETE FROM settings WHERE key = 'dev_keys'", [], 'live');
    const lost = await refusedStart(db, noKeys);
    assert.equal(lost.variable, 'DATA_ENCRYPTION_KEY');
    assert.match(
      lost.message,
      /^DATA_ENCRYPTION_KEY is not set and no development key is kept with this database/,
    );
    if (devKeysFile !== undefined) assert.ok(!existsSync(devKeysFile), 'no new development key file');
    else {
      const rows = await rawRows(db, "SELECT value FROM settings WHERE key = 'dev_keys'", [], 'live');
      assert.equal(rows.length, 0, 'no new development key row');
      // Restored, the database starts again.
      await rawSql(db, "INSERT INTO settings (key, value) VALUES ('dev_keys', ?)", [original.value], 'live');
      const restored = await start(db, noKeys);
      await restored.close();
    }
  });

  test('a database written before the key record: checked against its stored values, then recorded', async () => {
    const db = await freshDatabase();
    const first = await start(db, { DATA_ENCRYPTION_KEY: K1 });
    assert.equal((await createCustomer(first, 'NL-KM-0003')).status, 201);
    await first.close();
    // As a build before the record wrote it: no record at all.
    await rawSql(db, 'DELETE FROM settings WHERE key = ?', [KEY_RECORD_SETTING]);
    const error = await refusedStart(db, { DATA_ENCRYPTION_KEY: K2 });
    assert.equal(error.variable, 'DATA_ENCRYPTION_KEY');
    assert.match(error.message, /does not match the key this database was written with/);
    assert.equal(await keyRecord(db), undefined, 'nothing recorded by the refused process');

    // The old key as a previous one: its blind indexes are found and kept (HKDF of the key that wrote them),
    // so the duplicate is still detected under the new primary.
    const rotated = await start(db, { DATA_ENCRYPTION_KEY: K2, DATA_ENCRYPTION_KEYS_PREVIOUS: K1 });
    try {
      const duplicate = await createCustomer(rotated, 'nl-km 0003');
      assert.equal(duplicate.status, 409, duplicate.body);
      assert.equal(duplicate.json.error.code, 'CUSTOMER_EXISTS');
    } finally {
      await rotated.close();
    }
    assert.equal((await keyRecord(db)).dataKeys.length, 2, 'both configured keys are recorded');
  });

  test('a database whose audit checkpoints were signed with another key (before the record) refuses', async () => {
    const db = await freshDatabase();
    const first = await start(db, { DATA_ENCRYPTION_KEY: K1, AUDIT_SIGNING_KEY: seed() });
    assert.equal((await first.request('GET', '/v1/audit-logs/checkpoint')).status, 200);
    await first.close();
    // Both modes' records (the checkpoint is test mode's: the demo key cut it).
    for (const mode of ['live', 'test'] as const) {
      await rawSql(db, 'DELETE FROM settings WHERE key = ?', [KEY_RECORD_SETTING], mode);
    }
    const error = await refusedStart(db, { DATA_ENCRYPTION_KEY: K1, AUDIT_SIGNING_KEY: seed() });
    assert.equal(error.variable, 'AUDIT_SIGNING_KEY');
    assert.match(error.message, /audit checkpoints were signed with/);
  });

  test('processes starting together on a new database record one set of keys and agree on it', {
    skip:
      backend === 'sqlite' ? 'one SQLite writer per process: concurrent starts are a PostgreSQL test' : false,
  }, async () => {
    const db = await freshDatabase();
    const apps = await Promise.all([1, 2, 3].map(() => start(db, { DATA_ENCRYPTION_KEY: K1 })));
    try {
      assert.equal((await createCustomer(apps[0]!, 'NL-KM-0004')).status, 201);
      for (const app of apps.slice(1)) {
        const duplicate = await createCustomer(app, 'NL-KM-0004');
        assert.equal(duplicate.status, 409, 'every process computes the same blind index');
      }
    } finally {
      for (const app of apps) await app.close();
    }
    assert.equal((await keyRecord(db)).dataKeys.length, 1);
  });
});

describe('the one line a real process prints', () => {
  let results: ProcessResult[];

  before(async () => {
    // A database written with K1 and audit key A; then one process with another key of each kind.
    const db = await freshDatabase();
    const audit = seed();
    const first = await start(db, { DATA_ENCRYPTION_KEY: K1, AUDIT_SIGNING_KEY: audit });
    await first.close();
    const env = (extra: Record<string, string>) => ({
      ...process.env,
      ...testEnv(db.url, { PORT: '0', HOST: '127.0.0.1', ...extra }),
    });
    results = await inParallel(2, [
      () => runMain(env({ DATA_ENCRYPTION_KEY: K2, AUDIT_SIGNING_KEY: audit })),
      () => runMain(env({ DATA_ENCRYPTION_KEY: K1, AUDIT_SIGNING_KEY: seed() })),
    ]);
  });

  for (const [i, variable] of [
    [0, 'DATA_ENCRYPTION_KEY'],
    [1, 'AUDIT_SIGNING_KEY'],
  ] as const) {
    test(`another ${variable}: exit 1, one stderr line "Start-up failed: ${variable} does not match ..."`, () => {
      const result = results[i]!;
      const context = `stdout:\n${result.stdout}\nstderr:\n${result.stderr}`;
      assert.equal(result.signal, null, context);
      assert.equal(result.status, 1, context);
      const lines = result.stderr.split('\n').filter((l) => l.trim() !== '');
      assert.equal(lines.length, 1, context);
      assert.match(
        lines[0]!,
        new RegExp(`^Start-up failed: ${variable} does not match the key this database`),
      );
      assert.ok(!`${result.stdout}${result.stderr}`.includes('    at '), `no stack trace\n${context}`);
      assert.ok(!`${result.stdout}${result.stderr}`.includes(K2), 'the key is never echoed');
    });
  }
});

describe('no command creates a key', () => {
  test('the keys CLI without key variables: one line naming DATA_ENCRYPTION_KEY, and nothing created', async () => {
    const db = await freshDatabase();
    const env = { DATABASE_URL: db.url, DATA_ENCRYPTION_KEY: '', AUDIT_SIGNING_KEY: '' };
    const result = await runKeysCli(env, ['list']);
    const context = `stdout:\n${result.stdout}\nstderr:\n${result.stderr}`;
    assert.equal(result.status, 1, context);
    const lines = result.stderr.split('\n').filter((l) => l.trim() !== '');
    assert.equal(lines.length, 1, context);
    if (db.sqlitePath !== undefined) {
      // No database file yet: the command refuses before anything, and creates neither a database nor keys.
      assert.match(lines[0]!, /no database at .*: check DATABASE_URL/);
      assert.ok(!existsSync(db.sqlitePath), 'no database file');
      assert.ok(!existsSync(join(dirname(db.sqlitePath), 'dev-keys.json')), 'no development key file');
      return;
    }
    assert.match(lines[0]!, /DATA_ENCRYPTION_KEY is not set and there are no development keys/);
    assert.match(lines[0]!, /set DATA_ENCRYPTION_KEY and AUDIT_SIGNING_KEY/);
    const devKeys = await rawRows(
      db,
      "SELECT key FROM settings WHERE key IN ('dev_keys', ?)",
      [KEY_RECORD_SETTING],
      'live',
    );
    assert.deepEqual(devKeys, [], 'no key in the database');
  });

  test('with the development keys the server created: used, with a warning on stderr', async () => {
    const db = await freshDatabase();
    const server = await start(db, { DATA_ENCRYPTION_KEY: '' });
    await server.close();
    const result = await runKeysCli(
      { DATABASE_URL: db.url, DATA_ENCRYPTION_KEY: '', AUDIT_SIGNING_KEY: '' },
      ['list'],
    );
    const context = `stdout:\n${result.stdout}\nstderr:\n${result.stderr}`;
    assert.equal(result.status, 0, context);
    assert.match(result.stderr, /DATA_ENCRYPTION_KEY is not set: using a generated development key/);
    assert.match(result.stderr, /AUDIT_SIGNING_KEY is not set/);
  });
});

test('the key record keeps no key in clear (the blind-index key is wrapped under the data key)', async () => {
  const db = await freshDatabase();
  const audit = generateKeyPairSync('ed25519');
  const pem = String(audit.privateKey.export({ format: 'pem', type: 'pkcs8' }));
  const app = await start(db, { DATA_ENCRYPTION_KEY: K1, AUDIT_SIGNING_KEY: pem });
  await app.close();
  const record = await keyRecord(db);
  assert.deepEqual(Object.keys(record).sort(), ['auditPublicKey', 'blindIndexKey', 'dataKeys', 'version']);
  assert.match(record.blindIndexKey, /^v1\.[0-9a-f]{8}\./, 'an envelope, not a key');
  assert.match(record.auditPublicKey, /^[0-9a-f]{64}$/);
});
