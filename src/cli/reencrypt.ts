import { existsSync } from 'node:fs';
import { acceptAuditKey, reencryptData } from '../app/key-rotation.ts';
import type { Config } from '../config.ts';
import type { Mode } from '../domain/sandbox.ts';
import { shortFingerprint } from '../security/key-fingerprints.ts';
import type { KeysCommand } from './keys.ts';
import { cliActor, type Output, stderr, stdout, storePath, withServices } from './services.ts';

/**
 * The key-material subcommands of `npm run keys` (docs/deployment.md#rotating-keys):
 *
 *   reencrypt          with DATA_ENCRYPTION_KEY = the new key and DATA_ENCRYPTION_KEYS_PREVIOUS = the old
 *                      ones (as every server already runs): re-encrypts every stored value under the new key,
 *                      re-wraps the blind-index key, then records the new key alone. Resumable.
 *   accept-audit-key   with AUDIT_SIGNING_KEY = the new key: records it and appends an audit entry saying the
 *                      signing key changed (with the new verifier key).
 *
 * Like every keys subcommand they never create a key: without DATA_ENCRYPTION_KEY / AUDIT_SIGNING_KEY they use
 * the development keys kept with the data (with a warning), or stop with one line naming the variable.
 */
/** `keys reencrypt`: exit code 0 when every value is under the primary key and it is recorded alone. */
export async function reencrypt(config: Config, out: Output, warn: Output): Promise<number> {
  for (const mode of modesPresent(config)) {
    const code = await reencryptMode(config, mode, out, warn);
    if (code !== 0) return code;
  }
  return 0;
}

/**
 * The live data, and the sandbox's when it exists: both are under the same keys, so a rotation re-encrypts
 * both (a sandbox left under a retired key would stop the next start).
 */
function modesPresent(config: Config): Mode[] {
  const test = storePath(config, 'test');
  return test === null || existsSync(test) ? ['live', 'test'] : ['live'];
}

async function reencryptMode(config: Config, mode: Mode, out: Output, warn: Output): Promise<number> {
  const result = await withServices(
    config,
    warn,
    (services) =>
      reencryptData(services, cliActor(), {
        onSlice: (column, count) => {
          if (count > 0) warn(`${mode}: ${column}: ${count} values re-encrypted`);
        },
      }),
    { mode },
  );
  out(`${mode} data:`);
  const total = Object.values(result.reencrypted).reduce((a, b) => a + b, 0);
  out(`re-encrypted ${total} values under the data key ${shortFingerprint(result.primary)}`);
  for (const [column, count] of Object.entries(result.reencrypted)) {
    if (count > 0) out(`  ${column}: ${count}`);
  }
  out(
    result.retired.length === 0
      ? 'no previous data key was recorded: nothing to retire'
      : `retired ${result.retired.map(shortFingerprint).join(', ')}: remove ${result.retired.length === 1 ? 'it' : 'them'} from DATA_ENCRYPTION_KEYS_PREVIOUS`,
  );
  return 0;
}

/** `keys accept-audit-key`: records the configured AUDIT_SIGNING_KEY as the audit log's signing key. */
export async function acceptAuditSigningKey(config: Config, out: Output, warn: Output): Promise<number> {
  for (const mode of modesPresent(config)) {
    out(`${mode} data:`);
    const code = await acceptAuditKeyOf(config, mode, out, warn);
    if (code !== 0) return code;
  }
  return 0;
}

async function acceptAuditKeyOf(config: Config, mode: Mode, out: Output, warn: Output): Promise<number> {
  const result = await withServices(
    config,
    warn,
    (services) => acceptAuditKey(services, cliActor(), services.auditLog.signer),
    { auditKeyCheck: 'skip', mode },
  );
  if (!result.changed) {
    out(`AUDIT_SIGNING_KEY (public key ${shortFingerprint(result.fingerprint)}) is already the recorded key`);
    return 0;
  }
  out(
    `recorded the audit signing key ${shortFingerprint(result.fingerprint)} (was ${shortFingerprint(result.previousFingerprint)}); the change is in the audit log as audit.signing_key_changed`,
  );
  out('restart every process with the new AUDIT_SIGNING_KEY and give verifiers the new verifier key');
  return 0;
}

/** Entries for the keys CLI's dispatch table (src/cli/keys.ts). */
export const KEY_MATERIAL_COMMANDS: Record<string, KeysCommand> = {
  reencrypt: {
    usage: 'reencrypt   (after a DATA_ENCRYPTION_KEY rotation; see docs/deployment.md#rotating-keys)',
    options: {},
    run: async ({ positionals, config }) => {
      if (positionals.length > 0) {
        stderr('usage: npm run keys -- reencrypt');
        return 2;
      }
      return reencrypt(config, stdout, stderr);
    },
  },
  'accept-audit-key': {
    usage: 'accept-audit-key   (run with the new AUDIT_SIGNING_KEY; see docs/deployment.md#rotating-keys)',
    options: {},
    run: async ({ positionals, config }) => {
      if (positionals.length > 0) {
        stderr('usage: npm run keys -- accept-audit-key');
        return 2;
      }
      return acceptAuditSigningKey(config, stdout, stderr);
    },
  },
};
