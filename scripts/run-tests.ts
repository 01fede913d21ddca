import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../test/support/harness.ts';
import { findPgBin, startPgCluster } from './pg-cluster.ts';

/**
 * `npm run test:only`: the whole suite on SQLite, then again on a throwaway PostgreSQL cluster when its server
 * binaries are installed. With REQUIRE_POSTGRES=1 (set by .ci/run) a missing PostgreSQL fails the run instead
 * of skipping it, so CI can never silently test one backend only. Pass file paths to run a subset.
 */
function testFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === 'node_modules' ? [] : testFiles(path);
    return name.endsWith('.test.ts') ? [path] : [];
  });
}

const requested = process.argv.slice(2);
const files = requested.length > 0 ? requested : [...testFiles('src'), ...testFiles('test')].sort();

function runSuite(label: string, env: NodeJS.ProcessEnv): boolean {
  process.stdout.write(`\n=== test suite on ${label} (${files.length} files) ===\n`);
  const result = spawnSync(
    process.execPath,
    ['--import', 'tsx', '--test', '--test-reporter=spec', ...files],
    {
      stdio: 'inherit',
      env,
    },
  );
  return result.status === 0;
}

const results: Record<string, boolean> = {};
results['sqlite'] = runSuite('SQLite', { ...process.env, PG_TEST_ADMIN_URL: '' });

if (findPgBin() === null) {
  if (process.env['REQUIRE_POSTGRES'] === '1') {
    process.stderr.write('REQUIRE_POSTGRES=1 but PostgreSQL server binaries are not installed\n');
    results['postgres'] = false;
  } else {
    process.stdout.write(
      '\nPostgreSQL server binaries not found: the PostgreSQL run is SKIPPED (apt-get install postgresql)\n',
    );
  }
} else {
  const cluster = startPgCluster(await freePort());
  try {
    results['postgres'] = runSuite(`PostgreSQL (${cluster.adminUrl})`, {
      ...process.env,
      PG_TEST_ADMIN_URL: cluster.adminUrl,
    });
  } finally {
    cluster.stop();
  }
}

process.stdout.write(
  `\n=== backends: ${Object.entries(results)
    .map(([k, ok]) => `${k} ${ok ? 'passed' : 'FAILED'}`)
    .join(', ')} ===\n`,
);
process.exit(Object.values(results).every(Boolean) ? 0 : 1);
