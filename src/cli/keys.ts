import { existsSync } from 'node:fs';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import {
  type ApiKeyView,
  apiKeyView,
  createApiKey,
  parseIsoTime,
  revokeApiKey,
  rotateApiKey,
} from '../app/api-keys.ts';
import { type Config, ConfigError, loadConfig } from '../config.ts';
import { AppError } from '../domain/errors.ts';
import { MODES, type Mode } from '../domain/sandbox.ts';
import { ROLES, type Role } from '../domain/types.ts';
import type { ApiKeyPosition } from '../storage/store.ts';
import { KEY_MATERIAL_COMMANDS } from './reencrypt.ts';
import { cliActor, stderr, withServices } from './services.ts';

/**
 * `npm run keys -- <command> ...`: API key management on the configured database (same DATABASE_URL and
 * .env as the server), for operators with access to it: the way to create the first admin key, and the
 * recovery path when none is left. Every change is audited with the actor `cli`. Secrets are printed once
 * (stdout); only their hashes are stored, so a lost secret cannot be recovered: rotate or create a key.
 *
 * Subcommands are one entry each in COMMANDS below; adding one is one line there.
 */
type Options = NonNullable<ParseArgsConfig['options']>;
type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

export interface KeysCommand {
  usage: string;
  options: Options;
  /** Exit code: 0 done, 1 refused or failed, 2 usage. */
  run(args: { positionals: string[]; values: Values; config: Config }): Promise<number>;
}

/** The list prints at most this many keys (500 per query). */
const LIST_MAX = 10_000;

/** Subcommands by name: `npm run keys -- <name> ...`. One line adds one. */
const COMMANDS: Record<string, KeysCommand> = {
  create: {
    usage:
      'create --role <admin|payments|compliance|auditor> [--mode <live|test>] [--name <label>] [--customer <cus_id>]... [--expires-at <RFC 3339 time>]',
    options: {
      role: { type: 'string' },
      mode: { type: 'string' },
      name: { type: 'string' },
      customer: { type: 'string', multiple: true },
      'expires-at': { type: 'string' },
    },
    run: createCommand,
  },
  list: {
    usage: `list [--mode <live|test>] [--limit <1..${LIST_MAX}>]`,
    options: { limit: { type: 'string' }, mode: { type: 'string' } },
    run: listCommand,
  },
  revoke: {
    usage: 'revoke <key id> [--mode <live|test>]',
    options: { mode: { type: 'string' } },
    run: revokeCommand,
  },
  rotate: {
    usage: 'rotate <key id> [--mode <live|test>] [--grace-seconds <0..604800>]',
    options: { 'grace-seconds': { type: 'string' }, mode: { type: 'string' } },
    run: rotateCommand,
  },
  ...KEY_MATERIAL_COMMANDS, // reencrypt, accept-audit-key: data and audit key rotation (src/cli/reencrypt.ts)
};

function usage(): string {
  return `usage:\n${Object.values(COMMANDS)
    .map((c) => `  npm run keys -- ${c.usage}`)
    .join('\n')}\n`;
}

class UsageError extends Error {}

const str = (v: Values[string]): string | undefined => (typeof v === 'string' ? v : undefined);

/** `--mode`: which store's keys (live by default; test keys reach the sandbox's data only). */
function modeOf(values: Values): { mode: Mode } {
  const mode = str(values['mode']) ?? 'live';
  if (!MODES.includes(mode as Mode)) throw new UsageError();
  return { mode: mode as Mode };
}

async function createCommand({ positionals, values, config }: Parameters<KeysCommand['run']>[0]) {
  const role = str(values['role']) as Role | undefined;
  if (positionals.length > 0 || role === undefined || !ROLES.includes(role)) throw new UsageError();
  const name = str(values['name']) ?? `${role} key`;
  const customers = values['customer'];
  const customerIds = Array.isArray(customers) ? customers.map(String) : null;
  const expiresAt = str(values['expires-at']);
  const expiresAtMs = expiresAt === undefined ? null : parseIsoTime(expiresAt, '/expires-at');
  const { key, secret } = await withServices(
    config,
    stderr,
    (services) => createApiKey(services, cliActor(), role, name, { customerIds, expiresAtMs }),
    modeOf(values),
  );
  const scope = key.customerIds === null ? '' : `, ${key.customerIds.length} customer(s)`;
  const expiry = key.expiresAtMs === null ? '' : `, expires ${new Date(key.expiresAtMs).toISOString()}`;
  process.stdout.write(
    `created API key ${key.id} (${modeOf(values).mode} mode, role ${role}${scope}${expiry})\n`,
  );
  process.stdout.write(`secret (shown once, store it now): ${secret}\n`);
  return 0;
}

async function listCommand({ positionals, values, config }: Parameters<KeysCommand['run']>[0]) {
  const limitText = str(values['limit']) ?? String(LIST_MAX);
  if (positionals.length > 0 || !/^[0-9]{1,5}$/.test(limitText)) throw new UsageError();
  const limit = Number(limitText);
  if (limit < 1 || limit > LIST_MAX) throw new UsageError();
  const { keys, more } = await withServices(
    config,
    stderr,
    async (services) => {
      const views: ApiKeyView[] = [];
      let after: ApiKeyPosition | null = null;
      for (;;) {
        const page = await services.store.reads.listApiKeys(after, Math.min(500, limit - views.length));
        const nowMs = Date.now();
        views.push(...page.items.map((k) => apiKeyView(k, nowMs, services.mode)));
        after = page.next;
        if (after === null || views.length >= limit) return { keys: views, more: after !== null };
      }
    },
    modeOf(values),
  );
  process.stdout.write(table(keys));
  if (more) process.stdout.write(`(more than ${limit} keys; raise --limit to see them)\n`);
  return 0;
}

async function revokeCommand({ positionals, values, config }: Parameters<KeysCommand['run']>[0]) {
  if (positionals.length !== 1) throw new UsageError();
  const result = await withServices(
    config,
    stderr,
    (services) =>
      // The CLI is the recovery path, so it may revoke the last admin key; it says so instead of refusing.
      revokeApiKey(services, cliActor(), positionals[0]!, {
        reason: 'revoked with the keys command',
        allowLastAdmin: true,
      }),
    modeOf(values),
  );
  process.stdout.write(
    result.changed ? `revoked API key ${result.key.id}\n` : `API key ${result.key.id} was already revoked\n`,
  );
  if (result.activeAdminKeys === 0) {
    process.stderr.write('warning: no active admin API key is left: npm run keys -- create --role admin\n');
  }
  return 0;
}

async function rotateCommand({ positionals, values, config }: Parameters<KeysCommand['run']>[0]) {
  const graceText = str(values['grace-seconds']) ?? '0';
  if (positionals.length !== 1 || !/^[0-9]{1,7}$/.test(graceText)) throw new UsageError();
  const { key, secret } = await withServices(
    config,
    stderr,
    (services) => rotateApiKey(services, cliActor(), positionals[0]!, Number(graceText)),
    modeOf(values),
  );
  process.stdout.write(`rotated API key ${key.id}\n`);
  process.stdout.write(`new secret (shown once, store it now): ${secret}\n`);
  process.stdout.write(
    key.previousSecretExpiresAtMs === null
      ? 'the old secret no longer works\n'
      : `the old secret works until ${new Date(key.previousSecretExpiresAtMs).toISOString()}\n`,
  );
  return 0;
}

/** A plain-text table; names are printable by validation, but older rows are sanitised for the terminal. */
function table(keys: ApiKeyView[]): string {
  const safe = (s: string) => s.replace(/[\p{C}\p{Zl}\p{Zp}]/gu, '?');
  const header = ['ID', 'ROLE', 'STATUS', 'CUSTOMERS', 'CREATED', 'EXPIRES', 'REVOKED', 'ROTATED', 'NAME'];
  const rows = keys.map((k) => [
    k.id,
    k.role,
    k.status,
    k.customerIds === null ? '-' : String(k.customerIds.length),
    k.createdAt ?? '-',
    k.expiresAt ?? '-',
    k.revokedAt ?? '-',
    k.lastRotatedAt ?? '-',
    safe(k.name),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .concat('\n');
  return [header, ...rows].map(line).join('') + (keys.length === 0 ? '(no API keys)\n' : '');
}

async function main(argv: string[]): Promise<number> {
  const name = argv[0];
  const command = name !== undefined && Object.hasOwn(COMMANDS, name) ? COMMANDS[name]! : undefined;
  if (command === undefined) {
    process.stderr.write(usage());
    return 2;
  }
  let parsed: { positionals: string[]; values: Values };
  try {
    parsed = parseArgs({
      args: argv.slice(1),
      allowPositionals: true,
      strict: true,
      options: command.options,
    });
  } catch (error) {
    process.stderr.write(`keys: ${(error as Error).message}\nusage: npm run keys -- ${command.usage}\n`);
    return 2;
  }
  if (existsSync('.env')) process.loadEnvFile('.env');
  const config = loadConfig(process.env);
  try {
    return await command.run({ ...parsed, config });
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`usage: npm run keys -- ${command.usage}\n`);
      return 2;
    }
    if (error instanceof AppError) {
      const details = (error.details ?? []).map((d) => ` (${d.field ?? ''}: ${d.message})`).join('');
      process.stderr.write(`keys: ${error.message}${details} [${error.code}]\n`);
      return 1;
    }
    throw error;
  }
}

main(process.argv.slice(2))
  .then((code) => process.exit(code))
  .catch((error) => {
    process.stderr.write(
      error instanceof ConfigError
        ? `Configuration error: ${error.message}\n`
        : `keys: ${(error as Error).message}\n`,
    );
    process.exit(1);
  });
