import { existsSync } from 'node:fs';
import { keysRecorded } from '../app/key-rotation.ts';
import { TestClock } from '../app/sandbox.ts';
import type { Services } from '../app/services.ts';
import { type BuildServicesOptions, buildServices } from '../app.ts';
import type { Config } from '../config.ts';
import { newId } from '../domain/ids.ts';
import type { Mode } from '../domain/sandbox.ts';
import type { Actor } from '../domain/types.ts';
import { type KeyMaterial, resolveKeys } from '../security/dev-keys.ts';
import { openStore, sandboxPath } from '../storage/open-store.ts';
import type { Store } from '../storage/store.ts';

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
  options: Pick<BuildServicesOptions, 'auditKeyCheck'> & { mode?: Mode } = {},
): Promise<R> {
  const mode = options.mode ?? 'live';
  // A command works on the server's database; a mistyped path must not create (and migrate) a new one.
  const path = storePath(config, mode);
  if (path !== null && !existsSync(path)) {
    throw new Error(`no database at ${path}: check DATABASE_URL (start the server once to create it)`);
  }
  // The test store uses the keys the live store resolves (development keys are kept with the live data).
  const keys =
    mode === 'test'
      ? await withStore(config, 'live', async (store) => resolveLiveKeys(config, store))
      : undefined;
  return withStore(config, mode, async (store) => {
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
      mode,
      ...(mode === 'test' ? { testClock: new TestClock(Date.now) } : {}),
      ...(keys === undefined ? {} : { keys }),
      ...(options.auditKeyCheck === undefined ? {} : { auditKeyCheck: options.auditKeyCheck }),
    });
    if (mode === 'live') {
      for (const variable of generatedKeys) {
        warn(
          `warning: ${variable} is not set: using a generated development key kept with the data. Set it in production.`,
        );
      }
    }
    try {
      return await fn(services);
    } finally {
      await services.committer.drain();
    }
  });
}

/** The SQLite file a mode's data is in (null: not a file). */
export function storePath(config: Config, mode: Mode): string | null {
  if (config.database.kind !== 'sqlite') return null;
  return mode === 'test' ? sandboxPath(config.database.path) : config.database.path;
}

async function withStore<R>(config: Config, mode: Mode, fn: (store: Store) => Promise<R>): Promise<R> {
  // No command decides a payment: the SQLite risk counters (a month of payments to read) are not rebuilt.
  const store = await openStore(config, Date.now, { riskCounters: false, mode });
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

async function resolveLiveKeys(config: Config, store: Store): Promise<KeyMaterial> {
  return resolveKeys(config, store, { mayCreateDevKeys: false, keysRecorded: await keysRecorded(store) });
}
