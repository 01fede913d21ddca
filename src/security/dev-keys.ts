import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Config } from '../config.ts';
import type { Store } from '../storage/store.ts';
import { AUDIT_KEY_VARIABLE, DATA_KEY_VARIABLE, KeyMismatchError } from './key-fingerprints.ts';

/**
 * Development keys, used only when DATA_ENCRYPTION_KEY / AUDIT_SIGNING_KEY are not set (never in production:
 * src/config.ts refuses that). They are kept with the data: in a file beside the SQLite database, or in the
 * PostgreSQL database (created under its unique key, so several processes starting together share one key).
 *
 * Only the server creates them, on a database that has recorded no keys yet, and it warns loudly. A command
 * (the keys CLI) never creates a key: it uses development keys that already exist, with a warning, or stops
 * with one line naming the variable to set. A database that recorded its keys (src/app/key-rotation.ts) and
 * lost its development key file stops too, rather than getting a new key it cannot decrypt the data with.
 */
export interface KeyMaterial {
  dataKeys: Buffer[];
  auditSigningKey: string;
  /** The variables standing in for by development keys (warn about each). */
  generated: string[];
  /** Where the development keys are kept, for messages; null when both variables are set. */
  devKeysAt: string | null;
}

interface DevKeys {
  dataEncryptionKey: string;
  auditSigningKey: string;
}

export interface ResolveKeysOptions {
  /** Whether missing development keys may be created (the server outside production; never a command). */
  mayCreateDevKeys: boolean;
  /** Whether the database already recorded the keys its data was written with: then nothing is created. */
  keysRecorded: boolean;
}

const DEV_KEYS_SETTING = 'dev_keys';

function newDevKeys(): DevKeys {
  const { privateKey } = generateKeyPairSync('ed25519');
  const seed = privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(-32);
  return { dataEncryptionKey: randomBytes(32).toString('base64'), auditSigningKey: seed.toString('base64') };
}

function devKeysLocation(config: Config): string {
  const db = config.database;
  if (db.kind === 'sqlite') return join(dirname(db.path), 'dev-keys.json');
  if (db.kind === 'postgres') return `the database (settings row ${DEV_KEYS_SETTING})`;
  return 'memory';
}

/** The development keys kept with the data, or undefined when there are none. */
async function existingDevKeys(config: Config, store: Store): Promise<DevKeys | undefined> {
  const db = config.database;
  if (db.kind === 'sqlite-memory') return undefined;
  if (db.kind === 'sqlite') {
    const file = devKeysLocation(config);
    return existsSync(file) ? parseDevKeys(readFileSync(file, 'utf8'), file) : undefined;
  }
  const stored = await store.reads.getSetting(DEV_KEYS_SETTING);
  return stored === undefined ? undefined : parseDevKeys(stored, devKeysLocation(config));
}

/** A damaged key file names itself and what to do, instead of failing somewhere deep in key parsing. */
function parseDevKeys(text: string, where: string): DevKeys {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    value = undefined;
  }
  const keys = value as Partial<DevKeys> | undefined;
  if (
    typeof keys?.dataEncryptionKey !== 'string' ||
    typeof keys.auditSigningKey !== 'string' ||
    Buffer.from(keys.dataEncryptionKey, 'base64').length !== 32
  ) {
    throw new Error(
      `the development keys in ${where} are damaged (expected {"dataEncryptionKey", "auditSigningKey"}, base64): restore them, or set DATA_ENCRYPTION_KEY and AUDIT_SIGNING_KEY to the keys the data was written with`,
    );
  }
  return { dataEncryptionKey: keys.dataEncryptionKey, auditSigningKey: keys.auditSigningKey };
}

async function createDevKeys(config: Config, store: Store): Promise<DevKeys> {
  const db = config.database;
  if (db.kind === 'sqlite-memory') return newDevKeys();
  if (db.kind === 'sqlite') {
    const file = devKeysLocation(config);
    mkdirSync(dirname(file), { recursive: true });
    try {
      // 'wx' fails if another process created it first; then we read theirs.
      writeFileSync(file, JSON.stringify(newDevKeys(), null, 2), { flag: 'wx', mode: 0o600 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    return JSON.parse(readFileSync(file, 'utf8')) as DevKeys;
  }
  return JSON.parse(
    await store.getOrCreateSetting(DEV_KEYS_SETTING, () => JSON.stringify(newDevKeys())),
  ) as DevKeys;
}

export async function resolveKeys(
  config: Config,
  store: Store,
  options: ResolveKeysOptions,
): Promise<KeyMaterial> {
  const generated: string[] = [];
  if (config.dataEncryptionKeys === null) generated.push(DATA_KEY_VARIABLE);
  if (config.auditSigningKey === null) generated.push(AUDIT_KEY_VARIABLE);
  if (generated.length === 0) {
    return {
      dataKeys: config.dataEncryptionKeys!,
      auditSigningKey: config.auditSigningKey!,
      generated,
      devKeysAt: null,
    };
  }
  const where = devKeysLocation(config);
  let dev = await existingDevKeys(config, store);
  if (dev === undefined) {
    const variable = generated[0]!;
    if (options.keysRecorded) {
      throw new KeyMismatchError(
        variable,
        `${variable} is not set and no development key is kept with this database (${where}), which was written with keys: set ${generated.join(' and ')} to them, or restore the development keys`,
      );
    }
    if (!options.mayCreateDevKeys) {
      throw new KeyMismatchError(
        variable,
        `${variable} is not set and there are no development keys with this database (${where}): set ${generated.join(' and ')} to the keys the server uses (this command never creates a key)`,
      );
    }
    dev = await createDevKeys(config, store);
  }
  return {
    dataKeys: config.dataEncryptionKeys ?? [Buffer.from(dev.dataEncryptionKey, 'base64')],
    auditSigningKey: config.auditSigningKey ?? dev.auditSigningKey,
    generated,
    devKeysAt: where,
  };
}
