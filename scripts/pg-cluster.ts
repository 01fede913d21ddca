import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A throwaway PostgreSQL cluster for tests and benchmarks: initdb + pg_ctl on a free port in a temp dir.
 * PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres` system user (created by
 * Debian's package) via runuser. fsync stays on: tests exercise the same durability as production.
 */
export interface PgCluster {
  adminUrl: string;
  port: number;
  stop(): void;
}

export function findPgBin(): string | null {
  const candidates = [process.env['PG_BIN'], ...pgLibDirs()].filter((d): d is string => Boolean(d));
  for (const dir of candidates)
    if (existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'pg_ctl'))) return dir;
  return null;
}

function pgLibDirs(): string[] {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return [];
  return readdirSync(base)
    .sort((a, b) => Number(b) - Number(a))
    .map((v) => join(base, v, 'bin'));
}

function asPostgresUser(bin: string, args: string[]): string[] {
  const isRoot = process.getuid?.() === 0;
  return isRoot ? ['runuser', '-u', 'postgres', '--', bin, ...args] : [bin, ...args];
}

function run(argv: string[]): void {
  const result = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${argv.join(' ')} failed:\n${result.stdout}\n${result.stderr}`);
}

export function startPgCluster(port: number): PgCluster {
  const bin = findPgBin();
  if (bin === null)
    throw new Error('PostgreSQL server binaries (initdb, pg_ctl) not found; apt-get install postgresql');
  const dir = mkdtempSync(join(tmpdir(), 'payments-pg-'));
  const dataDir = join(dir, 'data');
  const isRoot = process.getuid?.() === 0;
  if (isRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(dir, uid, gid);
  }
  chmodSync(dir, 0o700);
  run(
    asPostgresUser(join(bin, 'initdb'), [
      '-D',
      dataDir,
      '-U',
      'postgres',
      '--auth=trust',
      '-E',
      'UTF8',
      '--no-locale',
    ]),
  );
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=on`;
  run(
    asPostgresUser(join(bin, 'pg_ctl'), [
      '-D',
      dataDir,
      '-o',
      options,
      '-l',
      join(dir, 'log'),
      '-w',
      'start',
    ]),
  );
  return {
    adminUrl: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    stop() {
      spawnSync(
        asPostgresUser(join(bin, 'pg_ctl'), [])[0]!,
        asPostgresUser(join(bin, 'pg_ctl'), ['-D', dataDir, '-m', 'immediate', 'stop']).slice(1),
      );
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
