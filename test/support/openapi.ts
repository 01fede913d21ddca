import assert from 'node:assert/strict';
import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import {
  type RequestOptions,
  type StartOptions,
  startTestApp,
  type TestApp,
  type TestResponse,
} from './harness.ts';

/**
 * The OpenAPI document as a contract: every response a test receives is checked against it (status, body,
 * content type, headers), and the routes the server registered are compared with the operations it lists.
 * test/openapi-contract.test.ts drives it through the workshop flow and the lifecycle.
 */

// biome-ignore lint/suspicious/noExplicitAny: the OpenAPI document is untyped JSON, read key by key
type Json = any;

const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;

/** Headers the server sends that a client reads: each one it sends must be documented for that response. */
const CONTRACT_HEADER =
  /^(x-.*|ratelimit-.*|retry-after|idempotency-replayed|preference-applied|allow|location)$/;

/** A route as the server registered it (collected with an onRoute hook before the server is ready). */
export interface RegisteredRoute {
  method: string;
  url: string;
  hidden: boolean;
  hasParams: boolean;
  hasBody: boolean;
  hasQuery: boolean;
}

/** Like harness.ts's startTestApp, and records every route the server registers. */
export async function startRecordedApp(
  options: StartOptions = {},
): Promise<{ t: TestApp; routes: RegisteredRoute[] }> {
  const routes: RegisteredRoute[] = [];
  // Before ready(): the routes are declared in plugins, which load (and inherit this hook) during ready().
  const t = await startTestApp({
    ...options,
    beforeReady: (app) => {
      app.server.addHook('onRoute', (route) => {
        const schema = route.schema ?? {};
        for (const method of Array.isArray(route.method) ? route.method : [route.method]) {
          routes.push({
            method: String(method),
            url: route.url,
            hidden: schema.hide === true,
            hasParams: schema.params !== undefined,
            hasBody: schema.body !== undefined,
            hasQuery: schema.querystring !== undefined,
          });
        }
      });
    },
  });
  return { t, routes };
}

/** The document validates as OpenAPI (3.1) with an independent validator; returns the version it found. */
export async function assertValidOpenApi(document: Json): Promise<string> {
  const validator = new Validator();
  // A copy: the validator may annotate what it is given.
  const result = await validator.validate(structuredClone(document));
  assert.ok(result.valid, `the document is not valid OpenAPI: ${JSON.stringify(result.errors, null, 1)}`);
  return String(validator.version);
}

/** A JSON pointer (RFC 6901) from its tokens. */
const pointer = (tokens: string[]) =>
  `#/${tokens.map((t) => t.replace(/~/g, '~0').replace(/\//g, '~1')).join('/')}`;

function atPointer(document: Json, ref: string): Json {
  assert.ok(ref.startsWith('#/'), `only local references are expected: ${ref}`);
  return ref
    .slice(2)
    .split('/')
    .map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce((node, token) => (node === undefined ? undefined : node[token]), document);
}

/** What one response of an operation was matched against, for the coverage report. */
export interface Exchange {
  operation: string;
  status: number;
}

interface Operation {
  key: string;
  method: string;
  template: string;
  pattern: RegExp;
  node: Json;
  tokens: string[];
}

/**
 * The checker. `call` sends a request through the test app and checks the answer; `check` checks an answer
 * already received. A failure names the request, the status and what does not match.
 */
export class Contract {
  readonly document: Json;
  private readonly ajv: Ajv2020;
  private readonly compiled = new Map<string, ValidateFunction>();
  private readonly templates: { template: string; pattern: RegExp; params: number }[];
  /** operation key (`GET /v1/payments/{id}`) → statuses seen. */
  readonly seen = new Map<string, Set<number>>();

  constructor(document: Json) {
    this.document = document;
    this.ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
    (addFormats as unknown as (ajv: Ajv2020) => void)(this.ajv);
    this.ajv.addSchema(document, DOCUMENT_ID);
    this.templates = Object.keys(document.paths ?? {})
      .map((template) => ({
        template,
        pattern: new RegExp(
          `^${template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\\?\{[^/}]+\\?\}/g, '[^/]+')}$`,
        ),
        params: (template.match(/\{/g) ?? []).length,
      }))
      // A literal segment wins over a parameter (/verify-jobs/{id} is not /{index}).
      .sort((a, b) => a.params - b.params);
  }

  /** The operations of the document, `METHOD /template`. */
  operations(): string[] {
    return Object.entries(this.document.paths ?? {}).flatMap(([template, item]) =>
      HTTP_METHODS.filter((m) => (item as Json)[m] !== undefined).map(
        (m) => `${m.toUpperCase()} ${template}`,
      ),
    );
  }

  operation(method: string, template: string): Json {
    return this.document.paths?.[template]?.[method.toLowerCase()];
  }

  private find(method: string, path: string): Operation | { template: string; methods: string[] } | null {
    const found = this.templates.find((t) => t.pattern.test(path));
    if (found === undefined) return null;
    const item = this.document.paths[found.template];
    const node = item[method.toLowerCase()];
    if (node === undefined) {
      return {
        template: found.template,
        methods: HTTP_METHODS.filter((m) => item[m] !== undefined).map((m) => m.toUpperCase()),
      };
    }
    return {
      key: `${method.toUpperCase()} ${found.template}`,
      method: method.toUpperCase(),
      template: found.template,
      pattern: found.pattern,
      node,
      tokens: ['paths', found.template, method.toLowerCase()],
    };
  }

  /** A compiled validator for the schema at `ref` (a pointer into the document). */
  private validator(ref: string): ValidateFunction {
    let validate = this.compiled.get(ref);
    if (validate === undefined) {
      validate = this.ajv.compile({ $ref: `${DOCUMENT_ID}${ref}` });
      this.compiled.set(ref, validate);
    }
    return validate;
  }

  private validate(ref: string, value: unknown, what: string): void {
    const validate = this.validator(ref);
    if (!validate(value)) {
      const errors = (validate.errors ?? [])
        .slice(0, 8)
        .map((e) => `${e.instancePath || '/'} ${e.message ?? ''} ${JSON.stringify(e.params)}`)
        .join('; ');
      assert.fail(
        `${what} does not match its schema (${ref}): ${errors}\n${JSON.stringify(value).slice(0, 1500)}`,
      );
    }
  }

  /** Sends a request through the app and checks the answer; `expect` (a status) is asserted too. */
  async call(
    t: Pick<TestApp, 'request'>,
    method: string,
    url: string,
    options: RequestOptions = {},
    expect?: number,
  ): Promise<TestResponse> {
    const res = await t.request(method, url, options);
    if (expect !== undefined) {
      assert.equal(res.status, expect, `${method} ${url} -> ${res.status} ${res.body.slice(0, 500)}`);
    }
    this.check(method, url, res);
    return res;
  }

  /** Checks one answer against the document (see the class comment). */
  check(method: string, url: string, res: TestResponse): Exchange {
    const path = url.split('?')[0]!;
    const where = `${method} ${url} -> ${res.status}`;
    const found = this.find(method, path);
    if (found === null) {
      // No route: the edge's 404, in the envelope.
      assert.equal(res.status, 404, `${where}: no operation of the document matches this path`);
      this.checkEnvelope(res, where, 'NOT_FOUND');
      return { operation: 'unmatched', status: res.status };
    }
    if (!('node' in found)) {
      // A known path, another method: 405 with Allow naming exactly the documented methods.
      assert.equal(
        res.status,
        405,
        `${where}: the document has no ${method} operation on ${found.template} (it has ${found.methods.join(', ')})`,
      );
      this.checkEnvelope(res, where, 'METHOD_NOT_ALLOWED');
      const allowed = String(res.headers['allow'] ?? '')
        .split(',')
        .map((m) => m.trim())
        .filter((m) => m !== '' && m !== 'HEAD');
      assert.deepEqual(
        [...allowed].sort(),
        [...found.methods].sort(),
        `${where}: Allow lists the methods the document has for ${found.template}`,
      );
      return { operation: `405 ${found.template}`, status: res.status };
    }
    const responses = found.node.responses ?? {};
    let response = responses[String(res.status)];
    const tokens = [...found.tokens, 'responses', String(res.status)];
    if (response === undefined) {
      assert.fail(
        `${where}: status ${res.status} is not documented for ${found.key} (documented: ${Object.keys(responses).join(', ')})\n${res.body.slice(0, 500)}`,
      );
    }
    let ref = pointer(tokens);
    if (typeof response.$ref === 'string') {
      ref = response.$ref;
      response = atPointer(this.document, ref);
      assert.ok(response, `${where}: ${ref} resolves`);
    }
    // The body, by content type.
    const contentType = String(res.headers['content-type'] ?? '');
    const essence = contentType.split(';')[0]!.trim().toLowerCase();
    if (response.content === undefined) {
      assert.equal(res.body, '', `${where}: the document says no body`);
    } else {
      const media = response.content[essence];
      assert.ok(
        media,
        `${where}: content type ${contentType || '(none)'} is not documented (documented: ${Object.keys(response.content).join(', ')})`,
      );
      const schemaRef = `${ref}/content/${essence.replace(/~/g, '~0').replace(/\//g, '~1')}/schema`;
      if (essence === 'application/json') {
        assert.match(contentType, /charset=utf-8/i, `${where}: JSON is sent as UTF-8`);
        let body: unknown;
        try {
          body = JSON.parse(res.body);
        } catch {
          assert.fail(`${where}: the body is not JSON: ${res.body.slice(0, 200)}`);
        }
        this.validate(schemaRef, body, `${where}: the body`);
      } else {
        this.validate(schemaRef, res.body, `${where}: the body`);
      }
    }
    // The headers: each documented one that is present matches its schema; each contract header sent is documented.
    const documented = new Map<string, { ref: string; header: Json }>();
    for (const [name, declared] of Object.entries((response.headers ?? {}) as Record<string, Json>)) {
      const headerRef =
        typeof declared.$ref === 'string'
          ? declared.$ref
          : `${ref}/headers/${name.replace(/~/g, '~0').replace(/\//g, '~1')}`;
      documented.set(name.toLowerCase(), { ref: headerRef, header: atPointer(this.document, headerRef) });
    }
    for (const [name, { ref: headerRef, header }] of documented) {
      const value = res.headers[name];
      if (value === undefined) {
        assert.notEqual(header.required, true, `${where}: the required header ${name} is missing`);
        continue;
      }
      this.validate(`${headerRef}/schema`, String(value), `${where}: header ${name}: ${String(value)}`);
    }
    for (const name of Object.keys(res.headers)) {
      const lower = name.toLowerCase();
      if (!CONTRACT_HEADER.test(lower)) continue;
      assert.ok(
        documented.has(lower),
        `${where}: the header ${name} is sent but not documented for this response (documented: ${[...documented.keys()].join(', ')})`,
      );
    }
    const statuses = this.seen.get(found.key) ?? new Set<number>();
    statuses.add(res.status);
    this.seen.set(found.key, statuses);
    return { operation: found.key, status: res.status };
  }

  /** An answer outside any operation (unmatched path, 405): the error envelope with this code. */
  private checkEnvelope(res: TestResponse, where: string, code: string): void {
    assert.match(String(res.headers['content-type']), /^application\/json; charset=utf-8$/i, where);
    this.validate('#/components/schemas/ErrorEnvelope', res.json, `${where}: the error envelope`);
    assert.equal(res.json.error.code, code, `${where}: error code`);
    for (const name of ['x-request-id', 'x-server-request-id']) {
      assert.equal(typeof res.headers[name], 'string', `${where}: ${name} is sent`);
    }
  }

  /** Every example of every request body, parameter and header validates against its own schema. */
  assertExamplesValid(): number {
    let checked = 0;
    for (const [template, item] of Object.entries(this.document.paths ?? {}) as [string, Json][]) {
      for (const method of HTTP_METHODS) {
        const op = item[method];
        if (op === undefined) continue;
        const base = ['paths', template, method];
        for (const [type, media] of Object.entries(op.requestBody?.content ?? {}) as [string, Json][]) {
          const schemaRef = pointer([...base, 'requestBody', 'content', type, 'schema']);
          const examples = [
            ...(media.example === undefined ? [] : [media.example]),
            ...Object.values(media.examples ?? {}).map((e) => (e as Json).value),
          ];
          for (const example of examples) {
            this.validate(schemaRef, example, `the example of ${method.toUpperCase()} ${template}`);
            checked++;
          }
        }
        (op.parameters ?? []).forEach((parameter: Json, i: number) => {
          if (parameter.$ref !== undefined || parameter.example === undefined) return;
          const schemaRef = pointer([...base, 'parameters', String(i), 'schema']);
          this.validate(schemaRef, parameter.example, `the example of ${parameter.name} on ${template}`);
          checked++;
        });
      }
    }
    return checked;
  }
}

const DOCUMENT_ID = 'urn:contract:openapi.json';

/**
 * The routes the server registered against the document: each one (HEAD routes, which fastify adds for every
 * GET, and hidden ones such as /docs/* aside) is an operation of the document with its request parts and at
 * least one documented success response with a body schema (or 204). Returns the problems found.
 */
export function routeProblems(contract: Contract, routes: RegisteredRoute[]): string[] {
  const problems: string[] = [];
  for (const route of routes) {
    if (route.hidden || route.method === 'HEAD') continue;
    const template = route.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
    const op = contract.operation(route.method, template);
    const name = `${route.method} ${template}`;
    if (op === undefined) {
      problems.push(`${name}: registered, not in the document`);
      continue;
    }
    if (typeof op.summary !== 'string' || op.summary === '') problems.push(`${name}: no summary`);
    const parameters = (op.parameters ?? []) as Json[];
    const resolved = parameters.map((p) => (p.$ref ? atPointer(contract.document, p.$ref) : p));
    if (route.hasParams && !resolved.some((p) => p.in === 'path'))
      problems.push(`${name}: path parameters undocumented`);
    if (route.hasQuery && !resolved.some((p) => p.in === 'query'))
      problems.push(`${name}: query parameters undocumented`);
    if (route.hasBody && op.requestBody?.content?.['application/json']?.schema === undefined) {
      problems.push(`${name}: request body undocumented`);
    }
    const successes = Object.entries(op.responses ?? {}).filter(([status]) => status.startsWith('2'));
    const described = successes.filter(([status, r]) => {
      const response = (r as Json).$ref ? atPointer(contract.document, (r as Json).$ref) : (r as Json);
      return status === '204' || Object.values(response.content ?? {}).some((m) => (m as Json).schema);
    });
    if (described.length === 0) problems.push(`${name}: no success response with a body schema`);
  }
  return problems;
}
