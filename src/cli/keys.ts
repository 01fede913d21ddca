import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createApiKey } from '../app/api-keys.ts';
import { AuditLog } from '../app/audit-log.ts';
import { createScreening, loadRiskPolicy, loadSanctionsList } from '../app/risk-config.ts';
import { type Services, SYSTEM_ACTOR } from '../app/services.ts';
import { ConfigError, loadConfig } from '../config.ts';
import { ROLES, type Role } from '../domain/types.ts';
import { AuditSigner } from '../security/audit-signer.ts';
import { resolveKeys } from '../security/dev-keys.ts';
import { PiiCipher } from '../security/pii-cipher.ts';
import { Committer } from '../storage/committer.ts';
import { openStore } from '../storage/open-store.ts';

/**
 * `npm run keys -- create --role auditor [--name "ops laptop"]`: creates an API key in the configured
 * database (same DATABASE_URL as the server) and prints its secret once. Only the hash is stored, so a lost
 * secret cannot be recovered: create a new key.
 */
const USAGE = 'usage: npm run keys -- create --role <admin|payments|compliance|auditor> [--name <label>]';

async function main(): Promise<number> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: { role: { type: 'string' }, name: { type: 'string' } },
  });
  const role = values.role as Role | undefined;
  if (positionals[0] !== 'create' || role === undefined || !ROLES.includes(role)) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  if (existsSync('.env')) process.loadEnvFile('.env');
  const config = loadConfig(process.env);
  const store = await openStore(config, Date.now);
  try {
    const keys = await resolveKeys(config, store);
    const committer = new Committer(store, { batchMax: 1, queueMax: 1, onFatal: (e) => Promise.reject(e) });
    const signer = AuditSigner.fromConfig(keys.auditSigningKey, config.auditLogOrigin);
    const cipher = new PiiCipher(keys.dataKeys);
    const services: Services = {
      store,
      committer,
      cipher,
      policy: loadRiskPolicy(config.riskPolicyPath),
      screening: createScreening(loadSanctionsList(config.sanctionsListPath), cipher),
      clock: Date.now,
      idempotencyRetentionMs: config.idempotencyRetentionMs,
      reviewHoldExpiryMs: config.reviewHoldExpiryMs,
      webhooks: config.webhooks,
      auditLog: new AuditLog(store, committer, signer),
    };
    const actor = { ...SYSTEM_ACTOR, apiKeyId: 'cli', requestId: 'req_cli_keys_create' };
    const { key, secret } = await createApiKey(services, actor, role, values.name ?? `${role} key`);
    process.stdout.write(`created API key ${key.id} (role ${role})\n`);
    process.stdout.write(`secret (shown once, store it now): ${secret}\n`);
    return 0;
  } finally {
    await store.close();
  }
}

main()
  .then((code) => process.exit(code))
  .catch((error) => {
    process.stderr.write(
      error instanceof ConfigError
        ? `Configuration error: ${error.message}\n`
        : `keys: ${(error as Error).message}\n`,
    );
    process.exit(1);
  });
