import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createApiKey } from '../app/api-keys.ts';
import { SYSTEM_ACTOR } from '../app/services.ts';
import { buildServices } from '../app.ts';
import { ConfigError, loadConfig } from '../config.ts';
import { ROLES, type Role } from '../domain/types.ts';
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
    const { services } = await buildServices(config, store, {
      clock: Date.now,
      batchMax: 1,
      onFatal: (error) => {
        process.stderr.write(`keys: invariant violated: ${error.message}\n`);
        process.exit(70);
      },
    });
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
