import { existsSync } from 'node:fs';
import type { Services } from '../app/services.ts';
import { type BuildServicesOptions, buildServices } from '../app.ts';
import type { Config } from '../config.ts';
import { newId } from '../domain/ids.ts';
import type { Actor } from '../domain/types.ts';
import { openStore } from '../storage/open-store.ts';

/**
 * The start-up every `npm run keys` subcommand shares (src/cli/keys.ts, src/cli/reencrypt.ts): the services
 * wired as the server wires them, on the configured database, acting as `cli`.
 */
export type Output = (line: string) => void;

export const stdout: Output = (line) => process.stdout.write(`${line}\n`);
export const stderr: Output = (line) => process.stderr.write(`${line}\n`);

/** The actor of every change made from the command line (audited as `cli`, with admin rights). */
export const cliActor = (): Actor => ({ apiKeyId: 'cli', role: 'admin', requestId: newId('req') });

/**
 * Opens the store and wires the services as the server does, reports through `warn` any key variable that is
 * not set (its development key kept with the data is used; none is ever created here, see
 * src/security/dev-keys.ts), runs `fn`, waits for the committer to drain, and closes the store.
 */
export async function withServices<R>(
  config: Config,
  warn: Output,
  fn: (services: Services) => Promise<R>,
  options: Pick<BuildServicesOptions, 'auditKeyCheck'> = {},
): Promise<R> {
  // A command works on the server's database; a mistyped path must not create (and migrate) a new one.
  if (config.database.kind === 'sqlite' && !existsSync(config.database.path)) {
    throw new Error(
      `no database at ${config.database.path}: check DATABASE_URL (start the server once to create it)`,
    );
  }
  // No command decides a payment: the SQLite risk counters (a month of payments to read) are not rebuilt.
  const store = await openStore(config, Date.now, { riskCounters: false });
  try {
    const { services, generatedKeys } = await buildServices(config, store, {
      clock: Date.now,
      // Commands are submitted one at a time; a batch of one keeps each (a re-encryption slice too) its own
      // transaction.
      batchMax: 1,
      onFatal: (error) => {
        process.stderr.write(`keys: invariant violated: ${error.message}\n`);
        process.exit(70);
      },
      mayCreateDevKeys: false,
      ...options,
    });
    for (const variable of generatedKeys) {
      warn(
        `warning: ${variable} is not set: using a generated development key kept with the data. Set it in production.`,
      );
    }
    try {
      return await fn(services);
    } finally {
      await services.committer.drain();
    }
  } finally {
    await store.close();
  }
}
