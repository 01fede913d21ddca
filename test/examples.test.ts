import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, test } from 'node:test';
import { createTestDatabase, type ServerProcess, spawnServer, testEnv } from './support/harness.ts';

/**
 * examples/workshop-flow.mjs is the workshop flow a newcomer runs by hand: it must keep working against the real
 * server as the API changes (it exits non-zero at the first unexpected answer). Run twice: the script makes its
 * own customer and keys each time, so a second run against the same server must pass too.
 */
let server: ServerProcess;
before(async () => {
  const db = await createTestDatabase();
  server = await spawnServer(testEnv(db.url), 60_000);
});
after(async () => {
  server.child.kill('SIGTERM');
  await server.exited;
});

async function runExample(): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, ['examples/workshop-flow.mjs', server.baseUrl], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, output };
}

test('examples/workshop-flow.mjs walks the workshop flow against a real server, and again', async () => {
  for (const round of [1, 2]) {
    const { code, output } = await runExample();
    assert.equal(code, 0, `round ${round}:\n${output}`);
  }
});
