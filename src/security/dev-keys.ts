import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Config } from '../config.ts';
import type { Store } from '../storage/store.ts';

/**
 * Development keys, used only when DATA_ENCRYPTION_KEY / AUDIT_SIGNING_KEY are not set. They are generated
 * once and kept with the data: in a file beside the SQLite database, or in the PostgreSQL database (created
 * under its unique key, so several processes starting together share one key). Start-up warns loudly.
 */
export interface KeyMaterial {
  dataKeys: Buffer[];
  auditSigningKey: string;
  generated: string[];
}

interface DevKeys {
  dataEncryptionKey: string;
  auditSigningKey: string;
}

function newDevKeys(): DevKeys {
  const { privateKey } = generateKeyPairSync('ed25519');
  const seed = privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(-32);
  return { dataEncryptionKey: randomBytes(32).toString('base64'), auditSigningKey: seed.toString('base64') };
}

async function loadDevKeys(config: Config, store: Store): Promise<DevKeys> {
  const db = config.database;
  if (db.kind === 'sqlite-memory') return newDevKeys();
  if (db.kind === 'sqlite') {
    const file = join(dirname(db.path), 'dev-keys.json');
    if (!existsSync(file)) {
      mkdirSync(dirname(file), { recursive: true });
      try {
        // 'wx' fails if another process created it first; then we read theirs.
        writeFileSync(file, JSON.stringify(newDevKeys(), null, 2), { flag: 'wx', mode: 0o600 });
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
    }
    return JSON.parse(readFileSync(file, 'utf8')) as DevKeys;
  }
  return JSON.parse(
    await store.getOrCreateSetting('dev_keys', () => JSON.stringify(newDevKeys())),
  ) as DevKeys;
}

export async function resolveKeys(config: Config, store: Store): Promise<KeyMaterial> {
  const generated: string[] = [];
  let dev: DevKeys | undefined;
  if (config.dataEncryptionKeys === null || config.auditSigningKey === null)
    dev = await loadDevKeys(config, store);
  if (config.dataEncryptionKeys === null) generated.push('DATA_ENCRYPTION_KEY');
  if (config.auditSigningKey === null) generated.push('AUDIT_SIGNING_KEY');
  return {
    dataKeys: config.dataEncryptionKeys ?? [Buffer.from(dev!.dataEncryptionKey, 'base64')],
    auditSigningKey: config.auditSigningKey ?? dev!.auditSigningKey,
    generated,
  };
}
