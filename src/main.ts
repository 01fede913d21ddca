import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { createApp } from './app.ts';
import { ConfigError, loadConfig } from './config.ts';

/**
 * `npm start`: load `.env` (the environment wins), parse the configuration (a bad value stops here with one
 * line naming the variable), start the app, and shut down cleanly on SIGTERM/SIGINT.
 */
if (existsSync('.env')) process.loadEnvFile('.env');

let config: ReturnType<typeof loadConfig>;
try {
  config = loadConfig(process.env);
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(`Configuration error: ${error.message}\n`);
    process.exit(2);
  }
  throw error;
}

let app: Awaited<ReturnType<typeof createApp>>;
try {
  // The address first: a start that cannot serve must not change shared state on its way out (start-up
  // revokes or re-keys the demo key for every process of the database, and runs migrations).
  await assertAddressFree(config.host, config.port);
  app = await createApp(config);
  await app.server.listen({ port: config.port, host: config.host });
} catch (error) {
  // One line, no stack: the operator needs the reason (a bad policy file, schema too new, database unreachable).
  const line =
    error instanceof ConfigError
      ? `Configuration error: ${error.message}`
      : `Start-up failed: ${(error as Error).message}`;
  process.stderr.write(`${line}\n`);
  process.exit(error instanceof ConfigError ? 2 : 1);
}

let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    app.logger.info({ signal }, 'shutting down');
    app
      .close()
      .then(() => process.exit(0))
      .catch((error) => {
        app.logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      });
  });
}

/** Listens on the address and lets go of it again; fails as listen would (EADDRINUSE, EACCES). */
function assertAddressFree(host: string, port: number): Promise<void> {
  if (port === 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', (error: NodeJS.ErrnoException) =>
      reject(new Error(`cannot listen on ${host}:${port} (${error.code ?? error.message})`)),
    );
    probe.listen({ port, host, exclusive: true }, () => probe.close(() => resolve()));
  });
}
