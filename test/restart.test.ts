import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  createTestDatabase,
  http,
  type ServerProcess,
  spawnServer,
  type TestDatabase,
  testEnv,
} from './support/harness.ts';

/**
 * Persistence across restarts of the real process (`src/main.ts`): what was acknowledged before a clean stop
 * (SIGTERM, exit 0) or a crash (SIGKILL, no chance to flush anything) is there after the next start, the
 * demo data is not seeded twice, and the ledger and audit chain still verify.
 */
let db: TestDatabase;
const started: ServerProcess[] = [];

before(async () => {
  db = await createTestDatabase();
});

after(async () => {
  // Whatever happened in the tests, no server outlives them.
  for (const server of started) {
    if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGKILL');
    await server.exited;
  }
  await db.drop();
});

async function start(): Promise<ServerProcess> {
  // The harness waits up to 20 s for /health by default; a loaded CI machine may need longer.
  const server = await spawnServer(testEnv(db.url), 60_000);
  started.push(server);
  return server;
}

async function createCustomer(
  server: ServerProcess,
  name: string,
  documentReference: string,
): Promise<string> {
  const res = await http(server.baseUrl, 'POST', '/v1/customers', {
    body: { name, country: 'US', documentReference },
  });
  assert.equal(res.status, 201, res.body);
  return res.json.customer.id;
}

async function assertCustomer(server: ServerProcess, id: string, name: string): Promise<void> {
  const res = await http(server.baseUrl, 'GET', `/v1/customers/${id}`);
  assert.equal(res.status, 200, `${id} after restart: ${res.body}`);
  assert.equal(res.json.customer.name, name);
}

async function assertConsistent(server: ServerProcess, expectedCustomers: number): Promise<void> {
  const customers = await http(server.baseUrl, 'GET', '/v1/customers?limit=500');
  assert.equal(customers.json.customers.length, expectedCustomers, 'the demo data is seeded once only');
  const ledger = await http(server.baseUrl, 'GET', '/v1/ledger/verify');
  assert.equal(ledger.json.verification.valid, true, ledger.body);
  const audit = await http(server.baseUrl, 'GET', '/v1/audit-logs/verify');
  assert.equal(audit.status, 200, audit.body);
  assert.equal(audit.json.verification.valid, true, audit.body);
}

test('acknowledged writes survive SIGTERM and SIGKILL', async () => {
  const first = await start();
  const one = await createCustomer(first, 'Rosalind Restart-One', 'RESTART-DOC-0001');
  first.child.kill('SIGTERM');
  assert.equal(await first.exited, 0, `a clean shutdown exits 0:\n${first.output()}`);

  const second = await start();
  await assertCustomer(second, one, 'Rosalind Restart-One');
  const two = await createCustomer(second, 'Barnaby Restart-Two', 'RESTART-DOC-0002');
  // A crash: no shutdown hook runs. The 201 above was only sent after the commit was durable.
  second.child.kill('SIGKILL');
  assert.equal(await second.exited, 'SIGKILL');

  const third = await start();
  await assertCustomer(third, one, 'Rosalind Restart-One');
  await assertCustomer(third, two, 'Barnaby Restart-Two');
  await assertConsistent(third, 4);
  // The documentReference uniqueness survived too.
  const duplicate = await http(third.baseUrl, 'POST', '/v1/customers', {
    body: { name: 'Someone Else', country: 'US', documentReference: 'RESTART-DOC-0002' },
  });
  assert.equal(duplicate.status, 409, duplicate.body);
  third.child.kill('SIGTERM');
  assert.equal(await third.exited, 0);
});
