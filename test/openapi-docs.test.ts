import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startTestApp, type TestApp } from './support/harness.ts';

/**
 * GET /docs (issue 14): the Swagger UI page works offline. Its HTML and every asset it references come from
 * this server (no CDN, no other host), with the right content types, and the page loads this server's own
 * OpenAPI document. Everything goes through inject: no network is involved.
 */
let t: TestApp;

before(async () => {
  t = await startTestApp();
});
after(async () => {
  await t?.destroy();
});

const get = (url: string) => t.request('GET', url, { token: null });

/** The `src` and `href` attribute values of an HTML page. */
function references(html: string): string[] {
  return [...html.matchAll(/\s(?:src|href)\s*=\s*["']([^"']+)["']/gi)].map((m) => m[1]!);
}

const CONTENT_TYPES: [RegExp, RegExp][] = [
  [/\.css$/, /^text\/css\b/],
  [/\.m?js$/, /^(application|text)\/javascript\b/],
  [/\.png$/, /^image\/png$/],
  [/\.svg$/, /^image\/svg\+xml\b/],
  [/\.html$/, /^text\/html\b/],
];

/** The code of a script with its comments removed (a comment may cite a web page; code must not fetch one). */
const withoutComments = (code: string) => code.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');

test('GET /docs: an HTML page, public, that references no other host', async () => {
  const page = await get('/docs');
  assert.equal(page.status, 200, page.body);
  assert.match(String(page.headers['content-type']), /^text\/html; charset=utf-8$/);
  assert.match(page.body, /<div id="swagger-ui">/);
  assert.doesNotMatch(page.body, /https?:\/\//i, 'no absolute URL: every asset is served here');
  assert.doesNotMatch(page.body, /(?:src|href)\s*=\s*["']\/\//i, 'no protocol-relative URL either');
});

test('every asset the page references is served here, with a sensible content type', async () => {
  const page = await get('/docs');
  const assets = references(page.body);
  assert.ok(
    assets.some((a) => a.endsWith('.js')) && assets.some((a) => a.endsWith('.css')),
    assets.join(' '),
  );
  for (const asset of assets) {
    assert.ok(asset.startsWith('/docs/'), `${asset}: under /docs, on this server`);
    const res = await get(asset);
    assert.equal(res.status, 200, `${asset} -> ${res.status}`);
    const type = String(res.headers['content-type']);
    const expected = CONTENT_TYPES.find(([path]) => path.test(asset));
    assert.ok(expected, `${asset}: an asset type this test knows`);
    assert.match(type, expected[1], `${asset}: ${type}`);
    assert.ok(res.body.length > 0, `${asset} is not empty`);
    if (asset.endsWith('.css')) {
      // Stylesheets load nothing from elsewhere: every url() is inline data or on this server.
      for (const [, target] of res.body.matchAll(/url\(\s*["']?([^"')]+)/g)) {
        assert.ok(
          target!.startsWith('data:') || !/^(https?:)?\/\//.test(target!),
          `${asset}: url(${target})`,
        );
      }
      assert.doesNotMatch(res.body, /@import\s+(url\()?["']?(https?:)?\/\//, `${asset}: no remote @import`);
    }
  }
});

test('the page loads this server’s OpenAPI document, and nothing from another host', async () => {
  const page = await get('/docs');
  const initializer = references(page.body).find((a) => a.endsWith('swagger-initializer.js'));
  assert.ok(initializer, 'the page has its initializer');
  const script = await get(initializer);
  assert.equal(script.status, 200);
  const code = withoutComments(script.body);
  assert.doesNotMatch(code, /https?:\/\//, 'the initializer names no other host');
  assert.match(code, /validatorUrl:\s*null/, 'no validator badge (it would call validator.swagger.io)');
  // @fastify/swagger-ui makes the page load the document through its own route, ./json (under /docs), which
  // must serve the same document as /openapi.json, byte for byte (both send the one cached text).
  assert.match(code, /url:\s*resolveUrl\('\.\/json'\)/, 'the page loads ./json');
  const loads = '/docs/json';
  const [shown, served] = await Promise.all([get(loads), get('/openapi.json')]);
  assert.equal(shown.status, 200);
  assert.equal(served.status, 200);
  assert.match(String(shown.headers['content-type']), /^application\/json\b/);
  assert.equal(shown.body, served.body, `${loads} is the same document as /openapi.json`);
  assert.ok(served.json.openapi.startsWith('3.1'));
  // The page's policy: its own assets only, no upgrade-insecure-requests (it would blank the page over HTTP).
  const csp = String(page.headers['content-security-policy']);
  assert.match(csp, /default-src 'self'/);
  assert.doesNotMatch(csp, /https:|upgrade-insecure-requests|swagger\.io/);
  // The OAuth2 redirect page the initializer names is here too.
  const redirect = /oauth2RedirectUrl:\s*resolveUrl\('\.\/([^']+)'\)/.exec(code)?.[1];
  if (redirect !== undefined) assert.equal((await get(`/docs/${redirect}`)).status, 200, redirect);
});

test('the docs are not in the document they show', async () => {
  const document = (await get('/openapi.json')).json;
  assert.deepEqual(
    Object.keys(document.paths).filter((path) => path.startsWith('/docs')),
    [],
    'the docs routes are hidden',
  );
});
