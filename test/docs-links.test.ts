import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { test } from 'node:test';

/**
 * The repository carries its own contract: every link in its Markdown files points at a file inside it (and, with
 * a #fragment, at a heading that exists), never outside it. External standards are named in plain text.
 */
const ROOT = join(import.meta.dirname, '..');
const SKIPPED_DIRS = new Set(['node_modules', '.git', 'data', 'coverage']);

function markdownFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return SKIPPED_DIRS.has(name) ? [] : markdownFiles(path);
    return name.endsWith('.md') ? [path] : [];
  });
}

/** Markdown links and images, outside code spans and fenced blocks: `[text](target)` and `[text]: target`. */
function linksOf(markdown: string): string[] {
  const prose = markdown.replace(/^```[\s\S]*?^```/gm, '').replace(/`[^`\n]*`/g, '');
  const inline = [...prose.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((m) => m[1]!);
  const references = [...prose.matchAll(/^\s*\[[^\]]+\]:\s*(\S+)/gm)].map((m) => m[1]!);
  return [...inline, ...references];
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  const withoutFences = markdown.replace(/^```[\s\S]*?^```/gm, '');
  for (const match of withoutFences.matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const text = match[1]!.replace(/`/g, '').replace(/\[([^\]]*)\]\([^)]*\)/g, '$1');
    const slug = text
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const count = seen.get(slug) ?? 0;
    seen.set(slug, count + 1);
    anchors.add(count === 0 ? slug : `${slug}-${count}`);
  }
  for (const match of markdown.matchAll(/<a\s+(?:name|id)="([^"]+)"/g)) anchors.add(match[1]!);
  return anchors;
}

test('every Markdown link in the repository points inside it, at a file and heading that exist', () => {
  const files = markdownFiles(ROOT);
  assert.ok(files.some((f) => f.endsWith('README.md')) && files.some((f) => f.endsWith('api.md')));
  const problems: string[] = [];
  for (const file of files) {
    const where = relative(ROOT, file);
    const markdown = readFileSync(file, 'utf8');
    for (const link of linksOf(markdown)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(link)) {
        problems.push(`${where}: links outside the repository: ${link}`);
        continue;
      }
      const [path = '', fragment] = link.split('#', 2);
      const target = path === '' ? file : join(dirname(file), decodeURIComponent(path));
      if (!relative(ROOT, target) || relative(ROOT, target).startsWith('..')) {
        if (path !== '') problems.push(`${where}: links outside the repository: ${link}`);
      }
      if (path !== '' && !existsSync(target)) {
        problems.push(`${where}: no such file: ${link}`);
        continue;
      }
      if (
        fragment !== undefined &&
        target.endsWith('.md') &&
        !anchorsOf(readFileSync(target, 'utf8')).has(fragment)
      ) {
        problems.push(`${where}: no heading for #${fragment} in ${relative(ROOT, target)}`);
      }
    }
  }
  assert.deepEqual(problems, []);
});

test('the README and docs/api.md name no file outside the repository', () => {
  for (const file of ['README.md', 'docs/api.md']) {
    const text = readFileSync(join(ROOT, file), 'utf8');
    assert.doesNotMatch(text, /\.\.\/shared|CONTRACT\.md/, `${file} refers to a file outside the repository`);
  }
});
