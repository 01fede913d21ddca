import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import helmet from '@fastify/helmet';
import type { FastifyReply } from 'fastify';
import { assert } from '../domain/assert.ts';
import { AppError } from '../domain/errors.ts';
import type { HttpApp } from './types.ts';

/**
 * The operator console (docs/console.md, docs/decisions/0020-console-without-a-build-step.md): static files
 * under GET /console, served from memory. The page is plain ES modules run as they are written: preact and
 * htm come from their npm packages (no CDN, works offline), and it calls the same public JSON API as any
 * client, with the API key the operator pastes in.
 *
 * Every file is read once at start-up from a fixed list, so a request can name only a file on that list: no
 * path from the URL ever reaches the file system. Each answer carries a strict Content-Security-Policy
 * (@fastify/helmet): scripts from this origin only, plus the one inline script there is, the import map,
 * allowed by its SHA-256; no inline styles, no frames, no other host to connect to.
 */
const CONSOLE_DIR = new URL('../../console/', import.meta.url);

/** The page's own files, by URL name. */
const OWN_FILES = [
  'index.html',
  'style.css',
  'app.js',
  'api.js',
  'ui.js',
  'format.js',
  'verify.js',
  'flow.js',
  'pages/sign-in.js',
  'pages/review.js',
  'pages/payments.js',
  'pages/payment.js',
  'pages/receipt.js',
  'pages/accounts.js',
  'pages/audit.js',
  'pages/webhooks.js',
] as const;

/**
 * The libraries, from their installed packages: each specifier resolved as an `import` would resolve it (the
 * package's ES module build, what a browser can run). The import map in index.html names these URLs.
 */
const VENDOR_FILES: Record<string, string> = {
  'vendor/preact.mjs': 'preact',
  'vendor/hooks.mjs': 'preact/hooks',
  'vendor/htm.mjs': 'htm',
};

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
};

interface ConsoleFile {
  body: Buffer;
  type: string;
  etag: string;
}

function consoleFile(name: string, body: Buffer): ConsoleFile {
  const type = TYPES[name.slice(name.lastIndexOf('.'))];
  assert(type !== undefined, `the console file ${name} has a known type`);
  const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`;
  return { body, type, etag };
}

function loadFiles(): Map<string, ConsoleFile> {
  const files = new Map<string, ConsoleFile>();
  for (const name of OWN_FILES) files.set(name, consoleFile(name, readFileSync(new URL(name, CONSOLE_DIR))));
  for (const [name, specifier] of Object.entries(VENDOR_FILES)) {
    files.set(name, consoleFile(name, readFileSync(fileURLToPath(import.meta.resolve(specifier)))));
  }
  return files;
}

/** The SHA-256 CSP source of the page's import map: the one inline script the policy admits. */
export function importMapHash(html: string): string {
  const match = /<script type="importmap">([^<]*)<\/script>/.exec(html);
  assert(match !== null, 'console/index.html has its import map');
  return `'sha256-${createHash('sha256').update(match[1]!).digest('base64')}'`;
}

export async function consoleRoutes(app: HttpApp): Promise<void> {
  const files = loadFiles();
  const index = files.get('index.html')!;
  await app.register(helmet, {
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'none'"],
        scriptSrc: ["'self'", importMapHash(index.body.toString('utf8'))],
        styleSrc: ["'self'"],
        imgSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        baseUri: ["'none'"],
        formAction: ["'none'"],
        frameAncestors: ["'none'"],
      },
    },
    // The page holds an API key in memory: it is never framed, and never sends its address elsewhere.
    referrerPolicy: { policy: 'no-referrer' },
    crossOriginEmbedderPolicy: true,
    // HTTPS and its HSTS policy belong to the deployment's TLS front (docs/deployment.md), not to this page.
    strictTransportSecurity: false,
  });

  // Revalidated on every load (no-cache) and answered 304 when unchanged: a new version shows at once.
  const send = (file: ConsoleFile, ifNoneMatch: string | undefined, reply: FastifyReply) => {
    void reply.header('etag', file.etag).header('cache-control', 'no-cache').type(file.type);
    if (ifNoneMatch === file.etag) return reply.code(304).send();
    return reply.send(file.body);
  };

  app.get('/console', { schema: { hide: true } }, async (req, reply) =>
    send(index, req.headers['if-none-match'], reply),
  );
  app.get('/console/*', { schema: { hide: true } }, async (req, reply) => {
    const name = (req.params as { '*': string })['*'];
    const file = name === 'index.html' ? undefined : files.get(name);
    if (file === undefined) throw new AppError('NOT_FOUND', 'no such console file');
    return send(file, req.headers['if-none-match'], reply);
  });
}
