import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server, Socket } from 'node:net';
import { test } from 'node:test';
import { isDatabaseUnavailable } from '../src/storage/errors.ts';
import { apiKey } from './support/fixtures.ts';
import { assertError } from './support/foundation.ts';
import { backend, createTestDatabase, startTestApp } from './support/harness.ts';

/**
 * A PostgreSQL server that stops answering, or goes away, is an outage the API reports, not a bug it hides: /ready
 * answers 503 within its deadline, /metrics still answers (without the audit series), and a request that needs
 * the database gets 503 SERVICE_UNAVAILABLE, never a 500 or a connection held open for ever. The database is
 * reached through a TCP proxy that can freeze (stop forwarding) or refuse (close every connection).
 */
const METRICS_TOKEN = 'm'.repeat(40);

class DatabaseProxy {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private frozen = false;
  port = 0;
  constructor(target: { host: string; port: number }) {
    this.server = createServer((client) => {
      if (this.frozen) return void client.destroy();
      const upstream = new Socket().connect(target.port, target.host);
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.on('close', () => this.sockets.delete(socket));
        socket.on('error', () => {});
      }
      client.on('data', (d) => void (this.frozen || upstream.write(d)));
      upstream.on('data', (d) => void (this.frozen || client.write(d)));
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
  }
  async start(): Promise<this> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }
  /** Connections stay open and nothing passes either way: a database that hangs. */
  freeze(): void {
    this.frozen = true;
  }
  /** Every connection closed, new ones closed at once: a database that is gone. */
  refuse(): void {
    this.frozen = true;
    for (const socket of this.sockets) socket.destroy();
  }
  close(): void {
    this.refuse();
    this.server.close();
  }
}

test('connection failures are told apart from statement errors', () => {
  for (const unavailable of [
    { code: 'ECONNREFUSED' },
    { code: 'ECONNRESET' },
    { code: '08006' },
    { code: '57P01' },
    new Error('Connection terminated unexpectedly'),
    new Error('timeout exceeded when trying to connect'),
  ]) {
    assert.ok(isDatabaseUnavailable(unavailable), JSON.stringify(unavailable));
  }
  for (const other of [
    { code: '23505' },
    { code: '22P02' },
    new Error('boom'),
    null,
    undefined,
    { code: 8 },
  ]) {
    assert.ok(!isDatabaseUnavailable(other), JSON.stringify(other));
  }
});

test('PostgreSQL that hangs, then goes away: /ready 503 within its deadline, /metrics answers, requests 503', {
  skip: backend !== 'postgres' && 'PostgreSQL only (SQLite is a file in the process)',
}, async () => {
  const db = await createTestDatabase();
  const direct = new URL(db.url);
  const proxy = await new DatabaseProxy({ host: direct.hostname, port: Number(direct.port) }).start();
  const viaProxy = new URL(db.url);
  viaProxy.port = String(proxy.port);
  const t = await startTestApp({
    db: { url: viaProxy.toString(), drop: () => db.drop() },
    env: { METRICS_TOKEN },
  });
  try {
    const auditor = (await apiKey(t, 'auditor')).token;
    assert.equal((await t.request('GET', '/ready', { token: null })).status, 200);

    proxy.freeze();
    const startedMs = Date.now();
    const ready = await t.request('GET', '/ready', { token: null });
    assertError(ready, 503, 'SERVICE_UNAVAILABLE');
    assert.ok(Date.now() - startedMs < 10_000, 'answered within its deadline');
    const metrics = await t.request('GET', '/metrics', { token: METRICS_TOKEN });
    assert.equal(metrics.status, 200, metrics.body);
    assert.doesNotMatch(metrics.body, /^payments_audit_log_entries /m, 'the audit series are left out');
    assert.match(metrics.body, /^payments_http_requests_total\{/m);

    proxy.refuse();
    const refused = await t.request('GET', '/v1/accounts', { token: auditor });
    assertError(refused, 503, 'SERVICE_UNAVAILABLE', 'an API key cannot be looked up');
    assert.equal((await t.request('GET', '/health', { token: null })).status, 200, 'the process is alive');
  } finally {
    proxy.close();
    await t.destroy().catch(() => {});
    await db.drop();
  }
});
