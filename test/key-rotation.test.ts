import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { checkRunningKeys, ENCRYPTION_CONTEXTS, reencryptData } from '../src/app/key-rotation.ts';
import { acceptAuditSigningKey, reencrypt } from '../src/cli/reencrypt.ts';
import { loadConfig } from '../src/config.ts';
import { BLIND_INDEX_KEY_CONTEXT } from '../src/security/key-fingerprints.ts';
import { keyId, PiiCipher } from '../src/security/pii-cipher.ts';
import { ENCRYPTED_COLUMNS, type EncryptedColumn } from '../src/storage/key-rotation-sql.ts';
import {
  databasesForFile,
  heldPayment,
  type Json,
  keyRecord,
  pay,
  rawRows,
  refusedStart,
  usd,
} from './support/fixtures.ts';
import { runKeysCli } from './support/foundation.ts';
import { backend, startTestApp, type TestApp, type TestDatabase, testEnv } from './support/harness.ts';

/**
 * Issue 13, key rotation that keeps duplicate detection. The data key rotates online: a process with the new
 * key as DATA_ENCRYPTION_KEY and the old one in DATA_ENCRYPTION_KEYS_PREVIOUS starts (and is recorded), still
 * finds duplicate customers (the blind index has its own key, wrapped under the data key), and
 * `npm run keys -- reencrypt` moves every stored value to the new key, after which the old key is no longer
 * needed and no longer accepted. The audit-signing key changes only through `accept-audit-key`, audited.
 */
const K1 = randomBytes(32).toString('base64');
const K2 = randomBytes(32).toString('base64');
const ENV_K1 = { DATA_ENCRYPTION_KEY: K1, WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true' };
const ENV_ROTATING = { ...ENV_K1, DATA_ENCRYPTION_KEY: K2, DATA_ENCRYPTION_KEYS_PREVIOUS: K1 };
const ENV_K2 = { ...ENV_K1, DATA_ENCRYPTION_KEY: K2 };

const freshDatabase = databasesForFile();

const newCustomer = (t: TestApp, documentReference: string, name = 'Rotation Customer') =>
  t.request('POST', '/v1/customers', { body: { name, country: 'NL', documentReference } });

/** Every stored envelope of every encrypted column, with its column. */
async function storedEnvelopes(db: TestDatabase): Promise<{ column: EncryptedColumn; value: string }[]> {
  const out: { column: EncryptedColumn; value: string }[] = [];
  for (const name of Object.keys(ENCRYPTED_COLUMNS) as EncryptedColumn[]) {
    const { table, column } = ENCRYPTED_COLUMNS[name];
    const rows = await rawRows(db, `SELECT ${column} AS value FROM ${table} WHERE ${column} IS NOT NULL`);
    for (const r of rows) if (String(r.value).startsWith('v1.')) out.push({ column: name, value: r.value });
  }
  return out;
}

const keyIdOf = (base64: string) => keyId(Buffer.from(base64, 'base64'));

/** Writes a value into every encrypted column through the API (the customer's document is `document`). */
async function writeEveryKindOfValue(t: TestApp, document: string): Promise<Json> {
  const customer = await newCustomer(t, document, 'Ada Rotation');
  assert.equal(customer.status, 201, customer.body);
  const kyc = await t.request('POST', `/v1/customers/${customer.json.customer.id}/kyc`, {
    body: { kycStatus: 'verified', note: 'passport checked in person' },
  });
  assert.equal(kyc.status, 200, kyc.body);
  const { sender, receiver, payment: held } = await heldPayment(t);
  const approved = await t.request('POST', `/v1/payments/${held.id}/approve`, {
    body: { note: 'called the sender' },
  });
  assert.equal(approved.status, 201, approved.body);
  const posted = await pay(t, usd(sender, receiver, 10_000));
  assert.equal(posted.status, 201, posted.body);
  const refundKey = `refund-${randomBytes(6).toString('hex')}`;
  const refund = await t.request('POST', `/v1/payments/${posted.json.payment.id}/refunds`, {
    body: { amountCents: 1_000, reason: 'parcel never arrived' },
    idempotencyKey: refundKey,
  });
  assert.equal(refund.status, 201, refund.body);
  const endpoint = await t.request('POST', '/v1/webhook-endpoints', {
    body: { url: 'http://127.0.0.1:9/hook', events: ['customer.kyc_updated'] },
  });
  assert.equal(endpoint.status, 201, endpoint.body);
  return {
    customerId: customer.json.customer.id,
    heldPaymentId: held.id,
    postedPaymentId: posted.json.payment.id,
    refund: { key: refundKey, body: refund.body },
  };
}

describe('rotating the data key', () => {
  test('K1 → K2 with K1 previous → reencrypt → K2 alone: duplicates found throughout, K1 refused at the end', async () => {
    const db = await freshDatabase();
    // 1. Everything written under K1.
    const t1 = await startTestApp({ db, env: ENV_K1 });
    const written = await writeEveryKindOfValue(t1, 'NL-ROT-0001');
    await t1.close();
    const underK1 = await storedEnvelopes(db);
    assert.ok(underK1.length >= 8, 'values in the encrypted columns');
    assert.ok(underK1.every((e) => e.value.startsWith(`v1.${keyIdOf(K1)}.`)));

    // 2. The new key as primary, the old one as previous: starts, and the rotation is recorded.
    const t2 = await startTestApp({ db, env: ENV_ROTATING });
    let during: Json;
    try {
      assert.match(t2.logs.text(), /DATA_ENCRYPTION_KEY is a new primary key/);
      assert.equal(
        (await keyRecord(db)).dataKeys.length,
        2,
        'both keys recorded while values are under both',
      );
      const duplicate = await newCustomer(t2, 'nl rot 0001');
      assert.equal(
        duplicate.status,
        409,
        `duplicate detection survives the new primary key: ${duplicate.body}`,
      );
      assert.equal(duplicate.json.error.code, 'CUSTOMER_EXISTS');
      during = await newCustomer(t2, 'NL-ROT-0002', 'Bo Rotation');
      assert.equal(during.status, 201, during.body);
      const list = await t2.request('GET', '/v1/customers?limit=500');
      assert.equal(list.status, 200, `old and new values both read: ${list.body}`);
      // On PostgreSQL the re-encryption runs while this server serves (online); SQLite has one writer, so
      // there it runs with the server stopped.
      if (backend === 'postgres') {
        const concurrent = newCustomer(t2, 'NL-ROT-0003');
        await runReencrypt(db);
        assert.equal((await concurrent).status, 201);
      }
    } finally {
      await t2.close();
    }

    // 3. Dropping K1 before re-encrypting is refused (values are still under it).
    if (backend === 'sqlite') {
      const early = await refusedStart(db, ENV_K2);
      assert.equal(early.variable, 'DATA_ENCRYPTION_KEYS_PREVIOUS');
      assert.match(early.message, /must still hold the data key with fingerprint [0-9a-f]{16}/);
      assert.match(early.message, /npm run keys -- reencrypt/);
    }

    // 4. Re-encrypt: every value, and the wrapped blind-index key, under K2; K2 recorded alone.
    if (backend === 'sqlite') await runReencrypt(db);
    const underK2 = await storedEnvelopes(db);
    assert.ok(underK2.length > underK1.length);
    const stale = underK2.filter((e) => !e.value.startsWith(`v1.${keyIdOf(K2)}.`));
    assert.deepEqual(stale, [], 'no value left under K1');
    const record = await keyRecord(db);
    assert.equal(record.dataKeys.length, 1);
    assert.ok(record.blindIndexKey.startsWith(`v1.${keyIdOf(K2)}.`), 'the index key is re-wrapped');
    const onlyK2 = new PiiCipher([Buffer.from(K2, 'base64')]);
    for (const { column, value } of underK2) onlyK2.decrypt(value, ENCRYPTION_CONTEXTS[column]);
    onlyK2.decrypt(record.blindIndexKey, BLIND_INDEX_KEY_CONTEXT);
    // A second run finds nothing to do.
    assert.match((await runReencrypt(db)).join('\n'), /re-encrypted 0 values[\s\S]*nothing to retire/);

    // 5. K2 alone: starts; duplicates of old and new customers found; everything reads.
    const t3 = await startTestApp({ db, env: ENV_K2 });
    try {
      for (const reference of ['NL ROT 0001', 'nl-rot-0002']) {
        const duplicate = await newCustomer(t3, reference);
        assert.equal(duplicate.status, 409, `${reference}: ${duplicate.body}`);
      }
      const customer = await t3.request('GET', `/v1/customers/${written.customerId}`);
      assert.equal(customer.status, 200, customer.body);
      assert.equal(customer.json.customer.name, 'Ada Rotation');
      const list = await t3.request('GET', '/v1/customers?limit=500');
      assert.equal(list.status, 200, list.body);
      assert.ok(list.json.customers.some((c: Json) => c.name === 'Bo Rotation'));
      const payment = await t3.request('GET', `/v1/payments/${written.postedPaymentId}`);
      assert.equal(payment.status, 200, payment.body);
      assert.equal(payment.json.refunds[0].reason, 'parcel never arrived');
      // The sealed idempotent response replays byte for byte under the new key.
      const replay = await t3.request('POST', `/v1/payments/${written.postedPaymentId}/refunds`, {
        body: { amountCents: 1_000, reason: 'parcel never arrived' },
        idempotencyKey: written.refund.key,
      });
      assert.equal(replay.status, 201, replay.body);
      assert.equal(replay.headers['idempotency-replayed'], 'true');
      assert.equal(replay.body, written.refund.body);
      const audit = await t3.request('GET', '/v1/audit-logs?limit=500');
      const rotated = audit.json.logs.filter((e: Json) => e.eventType === 'keys.data_key_rotated');
      assert.equal(rotated.length, 1, 'the rotation is audited once');
      assert.equal(rotated[0].metadata.keyFingerprint, record.dataKeys[0]);
      assert.equal(rotated[0].metadata.retiredKeyFingerprints.length, 1);
    } finally {
      await t3.close();
    }

    // 6. The old key alone is refused.
    const old = await refusedStart(db, ENV_K1);
    assert.equal(old.variable, 'DATA_ENCRYPTION_KEY');
    assert.match(old.message, /^DATA_ENCRYPTION_KEY does not match the key this database was written with/);
  });

  test('an interrupted re-encryption leaves every value readable, and the next run finishes it', async () => {
    const db = await freshDatabase();
    const t1 = await startTestApp({ db, env: ENV_K1 });
    for (let i = 0; i < 6; i++) assert.equal((await newCustomer(t1, `NL-INT-${i}`)).status, 201);
    await t1.close();
    const t2 = await startTestApp({ db, env: ENV_ROTATING });
    try {
      let slices = 0;
      await assert.rejects(
        reencryptData(
          t2.app.services,
          { apiKeyId: 'cli', role: 'admin', requestId: 'req_test' },
          {
            sliceRows: 2,
            onSlice: () => {
              if (++slices === 3) throw new Error('crash in the middle');
            },
          },
        ),
        /crash in the middle/,
      );
      const mixed = await storedEnvelopes(db);
      assert.ok(
        mixed.some((e) => e.value.startsWith(`v1.${keyIdOf(K1)}.`)),
        'some values still under K1',
      );
      assert.ok(
        mixed.some((e) => e.value.startsWith(`v1.${keyIdOf(K2)}.`)),
        'some already under K2',
      );
      assert.equal((await keyRecord(db)).dataKeys.length, 2, 'K1 is still recorded: it is still needed');
      const list = await t2.request('GET', '/v1/customers?limit=500');
      assert.equal(list.status, 200, list.body);
      assert.equal((await newCustomer(t2, 'nl-int-3')).status, 409);

      const done = await reencryptData(
        t2.app.services,
        { apiKeyId: 'cli', role: 'admin', requestId: 'req_test' },
        {
          sliceRows: 2,
        },
      );
      assert.equal(done.retired.length, 1);
      // The live store is under the same keys: `npm run keys -- reencrypt` re-encrypts both modes.
      await reencryptData(t2.app.modes.live, { apiKeyId: 'cli', role: 'admin', requestId: 'req_test' });
    } finally {
      await t2.close();
    }
    const stale = (await storedEnvelopes(db)).filter((e) => !e.value.startsWith(`v1.${keyIdOf(K2)}.`));
    assert.deepEqual(stale, []);
    const t3 = await startTestApp({ db, env: ENV_K2 });
    try {
      assert.equal((await t3.request('GET', '/v1/customers?limit=500')).status, 200);
    } finally {
      await t3.close();
    }
  });

  test('a process started before the rotation switches to the new key if it holds it, and is stale if not', async () => {
    const db = await freshDatabase();
    const first = await startTestApp({ db, env: ENV_K1 });
    await first.close();
    // Step 1 of the rotation: the new key is in DATA_ENCRYPTION_KEYS_PREVIOUS. And a process left behind.
    const ready = await startTestApp({ db, env: { ...ENV_K1, DATA_ENCRYPTION_KEYS_PREVIOUS: K2 } });
    const behind = await startTestApp({ db, env: ENV_K1 });
    const rotating = await startTestApp({ db, env: ENV_ROTATING }); // records K2 as the newest key
    try {
      assert.deepEqual(await checkRunningKeys(ready.app.services), {
        kind: 'switched',
        primary: (await keyRecord(db))!.dataKeys[0],
      });
      const customer = await newCustomer(ready, 'NL-SWITCH-0001', 'Switched Writer');
      assert.equal(customer.status, 201, customer.body);
      const [row] = await rawRows(db, 'SELECT name_enc FROM customers WHERE id = ?', [
        customer.json.customer.id,
      ]);
      assert.ok(String(row.name_enc).startsWith(`v1.${keyIdOf(K2)}.`), 'written under the new key at once');
      assert.deepEqual(await checkRunningKeys(ready.app.services), { kind: 'current' });

      const stale = await checkRunningKeys(behind.app.services);
      assert.equal(stale.kind, 'stale');
      assert.match(
        (stale as { message: string }).message,
        /^DATA_ENCRYPTION_KEY: another process began a rotation/,
      );
    } finally {
      await behind.close();
      await rotating.close();
      await ready.close();
    }
  });

  test('reencrypt runs only forwards: with the old key as primary it is refused and changes nothing', async () => {
    const db = await freshDatabase();
    const t1 = await startTestApp({ db, env: ENV_K1 });
    assert.equal((await newCustomer(t1, 'NL-BACK-0001')).status, 201);
    await t1.close();
    const t2 = await startTestApp({ db, env: ENV_ROTATING }); // the rotation starts: K2 is recorded, newest
    await t2.close();
    const backwards = await startTestApp({
      db,
      env: { ...ENV_K1, DATA_ENCRYPTION_KEY: K1, DATA_ENCRYPTION_KEYS_PREVIOUS: K2 },
    });
    try {
      const before = await storedEnvelopes(db);
      await assert.rejects(
        reencryptData(backwards.app.services, { apiKeyId: 'cli', role: 'admin', requestId: 'req_test' }),
        (e: Error) => e.name === 'KeyMismatchError' && /is not the newest key recorded/.test(e.message),
      );
      assert.deepEqual(await storedEnvelopes(db), before, 'nothing was re-encrypted');
      assert.deepEqual((await keyRecord(db))?.dataKeys.length, 2, 'both keys still recorded');
    } finally {
      await backwards.close();
    }
  });

  test('the `keys reencrypt` command of the real CLI (one line per result, never a key)', async () => {
    const db = await freshDatabase();
    const t1 = await startTestApp({ db, env: ENV_K1 });
    assert.equal((await newCustomer(t1, 'NL-CLI-0001')).status, 201);
    await t1.close();
    const result = await runKeysCli(testEnv(db.url, ENV_ROTATING), ['reencrypt']);
    const context = `stdout:\n${result.stdout}\nstderr:\n${result.stderr}`;
    assert.equal(result.status, 0, context);
    assert.match(result.stdout, /re-encrypted [1-9][0-9]* values under the data key [0-9a-f]{16}/, context);
    assert.match(
      result.stdout,
      /retired [0-9a-f]{16}: remove it from DATA_ENCRYPTION_KEYS_PREVIOUS/,
      context,
    );
    assert.ok(
      !`${result.stdout}${result.stderr}`.includes(K1) && !`${result.stdout}${result.stderr}`.includes(K2),
    );
    const t2 = await startTestApp({ db, env: ENV_K2 });
    await t2.close();
  });
});

describe('changing the audit-signing key deliberately', () => {
  test('another key is refused until accept-audit-key records it, with an audit entry naming the new verifier key', async () => {
    const db = await freshDatabase();
    const oldKey = randomBytes(32).toString('base64');
    const newKey = randomBytes(32).toString('base64');
    const t1 = await startTestApp({ db, env: { AUDIT_SIGNING_KEY: oldKey } });
    await t1.close();
    assert.equal((await refusedStart(db, { AUDIT_SIGNING_KEY: newKey })).variable, 'AUDIT_SIGNING_KEY');

    const out: string[] = [];
    const code = await acceptAuditSigningKey(
      loadConfig(testEnv(db.url, { AUDIT_SIGNING_KEY: newKey })),
      (l) => out.push(l),
      (l) => out.push(l),
    );
    assert.equal(code, 0);
    assert.match(out.join('\n'), /recorded the audit signing key [0-9a-f]{16} \(was [0-9a-f]{16}\)/);

    const t2 = await startTestApp({ db, env: { AUDIT_SIGNING_KEY: newKey } });
    try {
      const publicKey = await t2.request('GET', '/v1/audit-logs/public-key');
      const audit = await t2.request('GET', '/v1/audit-logs?limit=500');
      const changes = audit.json.logs.filter((e: Json) => e.eventType === 'audit.signing_key_changed');
      assert.equal(changes.length, 1);
      assert.equal(changes[0].actorId, 'cli');
      assert.equal(
        changes[0].metadata.verifierKey,
        publicKey.body.trim(),
        'the new verifier key is in the log',
      );
      const verify = await t2.request('GET', '/v1/audit-logs/verify');
      assert.equal(verify.status, 200, verify.body);
    } finally {
      await t2.close();
    }
    assert.equal((await refusedStart(db, { AUDIT_SIGNING_KEY: oldKey })).variable, 'AUDIT_SIGNING_KEY');

    // Accepting the key already recorded changes nothing.
    const again: string[] = [];
    await acceptAuditSigningKey(
      loadConfig(testEnv(db.url, { AUDIT_SIGNING_KEY: newKey })),
      (l) => again.push(l),
      (l) => again.push(l),
    );
    assert.match(again.join('\n'), /is already the recorded key/);
  });
});

describe('every encrypted column is re-encrypted', () => {
  test('every `encrypt(` context in src/ is in the rotation catalogue', () => {
    const known = new Set([...Object.values(ENCRYPTION_CONTEXTS), BLIND_INDEX_KEY_CONTEXT]);
    const constants: Record<string, string> = {
      RESPONSE_BODY_CONTEXT: ENCRYPTION_CONTEXTS['idempotency_records.response_body'],
      BLIND_INDEX_KEY_CONTEXT,
    };
    const found: string[] = [];
    for (const file of sourceFiles('src')) {
      const text = readFileSync(file, 'utf8');
      for (const match of text.matchAll(
        /\.encrypt\(([^()]|\([^()]*\))*?,\s*([A-Za-z_][\w.]*|'[^']*')\s*,?\s*\)/g,
      )) {
        const argument = match[2]!;
        // PiiCipher's own re-encryption passes its caller's context through.
        if (file.endsWith('pii-cipher.ts') && argument === 'context') continue;
        const context = argument.startsWith("'") ? argument.slice(1, -1) : constants[argument];
        assert.ok(context !== undefined, `${file}: encrypt(..., ${argument}): add it to ENCRYPTION_CONTEXTS`);
        assert.ok(known.has(context), `${file}: the context ${context} is not re-encrypted by key rotation`);
        found.push(context);
      }
    }
    for (const context of ['customer.name', 'account.number', 'refund.reason', 'webhook.secret']) {
      assert.ok(found.includes(context), `the scan finds ${context} (the pattern still matches the code)`);
    }
  });

  test('every *_enc column of the schema is in the catalogue', async () => {
    const db = await freshDatabase();
    const t = await startTestApp({ db });
    await t.close();
    const rows =
      backend === 'sqlite'
        ? await rawRows(
            db,
            `SELECT m.name AS table_name, p.name AS column_name FROM sqlite_master m, pragma_table_info(m.name) p
              WHERE m.type = 'table' AND p.name LIKE '%\\_enc' ESCAPE '\\'`,
          )
        : await rawRows(
            db,
            `SELECT table_name, column_name FROM information_schema.columns
              WHERE table_schema = 'public' AND column_name LIKE '%\\_enc'`,
          );
    const columns = rows.map((r: Json) => `${r.table_name}.${r.column_name}`).sort();
    assert.ok(columns.length >= 7, columns.join(', '));
    for (const column of columns)
      assert.ok(Object.hasOwn(ENCRYPTED_COLUMNS, column), `${column} is re-encrypted`);
  });
});

async function runReencrypt(db: TestDatabase): Promise<string[]> {
  const lines: string[] = [];
  const code = await reencrypt(
    loadConfig(testEnv(db.url, ENV_ROTATING)),
    (l) => lines.push(l),
    (l) => lines.push(l),
  );
  assert.equal(code, 0, lines.join('\n'));
  return lines;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return name.endsWith('.ts') && !name.endsWith('.test.ts') ? [path] : [];
  });
}
