import assert from 'node:assert/strict';
import { generateKeyPairSync, verify } from 'node:crypto';
import { test } from 'node:test';
import { createApiKey } from '../src/app/api-keys.ts';
import { SYSTEM_ACTOR } from '../src/app/services.ts';
import { ConfigError, loadConfig } from '../src/config.ts';
import { getText } from './support/audit-log.ts';
import { startTestApp } from './support/harness.ts';

/** The verifiable log's configuration: origin, checkpoint interval, and the signing key in both encodings. */
function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error;
  }
  assert.fail('expected a ConfigError');
}

test('defaults: origin localhost/payments-audit, a checkpoint every second', () => {
  const config = loadConfig({});
  assert.equal(config.auditLogOrigin, 'localhost/payments-audit');
  assert.equal(config.auditCheckpointIntervalMs, 1000);
});

test('bad values stop start-up with one line naming the variable', () => {
  for (const origin of ['has space', 'a+b', 'tab\there']) {
    assert.equal(configError({ AUDIT_LOG_ORIGIN: origin }).variable, 'AUDIT_LOG_ORIGIN');
  }
  for (const interval of ['0', '-5', 'soon', '1.5']) {
    assert.equal(
      configError({ AUDIT_CHECKPOINT_INTERVAL_MS: interval }).variable,
      'AUDIT_CHECKPOINT_INTERVAL_MS',
    );
  }
  const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({
    format: 'pem',
    type: 'pkcs8',
  });
  const error = configError({ AUDIT_SIGNING_KEY: String(rsa) });
  assert.equal(error.variable, 'AUDIT_SIGNING_KEY');
  assert.doesNotMatch(error.message, /BEGIN/, 'the key is never echoed');
  assert.equal(configError({ AUDIT_SIGNING_KEY: 'not-a-key' }).variable, 'AUDIT_SIGNING_KEY');
});

test('a PKCS#8 PEM key and a custom origin sign checkpoints that verify with that key', async () => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pem = String(privateKey.export({ format: 'pem', type: 'pkcs8' }));
  const t = await startTestApp({
    env: { AUDIT_SIGNING_KEY: pem, AUDIT_LOG_ORIGIN: 'payments.example.com/audit' },
  });
  try {
    // The configured key signs live mode's log (the sandbox's is signed by a key derived from it).
    const live = (await createApiKey(t.app.modes.live, SYSTEM_ACTOR, 'admin', 'live admin')).secret;
    await t.request('POST', '/v1/customers', {
      token: live,
      body: { name: 'Pem Test', country: 'NL', documentReference: 'PEM-0001' },
    });
    const vkey = (await getText(t, '/v1/audit-logs/public-key', live)).trim();
    const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
    assert.ok(vkey.startsWith('payments.example.com/audit+'));
    assert.ok(vkey.endsWith(Buffer.concat([Buffer.from([1]), raw]).toString('base64')));
    const sandboxKey = (await getText(t, '/v1/audit-logs/public-key')).trim();
    assert.ok(sandboxKey.startsWith('payments.example.com/audit/sandbox+'), sandboxKey);
    const note = await getText(t, '/v1/audit-logs/checkpoint', live);
    const [text, signatureLine] = note.split('\n\n') as [string, string];
    assert.ok(text.startsWith('payments.example.com/audit\n'));
    const signature = Buffer.from(signatureLine.trim().split(' ')[2]!, 'base64').subarray(4);
    assert.ok(verify(null, Buffer.from(`${text}\n`), publicKey, signature));
    assert.doesNotMatch(t.logs.text(), /AUDIT_SIGNING_KEY is not set/);
  } finally {
    await t.destroy();
  }
});
