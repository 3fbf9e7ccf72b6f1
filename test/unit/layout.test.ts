import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * The layout the README's "Layout" section promises, checked on every run: which folder may import which, who
 * touches the credential tables, how long a file may grow. A change that breaks it fails here, not in review.
 */
const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SOURCE_FOLDERS = ['api', 'activities', 'workflows', 'worker', 'lib', 'sandbox', 'scripts'];

interface SourceFile {
  path: string;
  folder: string;
  text: string;
  imports: { target: string; typeOnly: boolean }[];
}

function walk(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

const IMPORT = /^(import|export)\s+(type\s+)?[^'"]*?from\s+'(\.[^']+)'/gm;

const files: SourceFile[] = SOURCE_FOLDERS.flatMap(walk).map((path) => {
  const text = readFileSync(join(root, path), 'utf8');
  const imports = [...text.matchAll(IMPORT)].map((m) => ({
    target: relative(root, resolve(root, dirname(path), m[3]!)),
    typeOnly: Boolean(m[2]),
  }));
  return { path, folder: path.split('/')[0]!, text, imports };
});

/** Which top-level folders each folder may import from (besides itself). */
const ALLOWED: Record<string, string[]> = {
  lib: ['migrations'],
  workflows: ['lib/domain.ts'],
  activities: ['lib', 'workflows/messages.ts'],
  api: ['lib', 'workflows/messages.ts', 'workflows/credential.ts'],
  worker: ['lib', 'activities', 'workflows'],
  sandbox: ['lib'],
  scripts: ['lib', 'api', 'worker', 'sandbox', 'workflows', 'activities'],
};

function allowed(file: SourceFile, target: string, typeOnly: boolean): boolean {
  if (target.split('/')[0] === file.folder) return true;
  // The activities' types are how a workflow names what it calls (proxyActivities); erased at build time.
  if (file.folder === 'workflows' && typeOnly && target.startsWith('activities/')) return true;
  const ok = ALLOWED[file.folder] ?? [];
  return ok.some((prefix) => target === prefix.replace(/\.ts$/, '.js') || target.startsWith(`${prefix}/`) || target === prefix);
}

describe('layout', () => {
  it('imports point one way: nothing below imports from above', () => {
    const upward = files.flatMap((f) => f.imports.filter((i) => !allowed(f, i.target, i.typeOnly)).map((i) => `${f.path} → ${i.target}`));
    expect(upward).toEqual([]);
  });

  it('the credential tables have one owner: lib/credentials (reads for the API, writes for the workflow)', () => {
    const touching = files
      .filter((f) => /\b(CredentialSchema|AuthorizationRequestSchema)\b/.test(f.text))
      .map((f) => f.path)
      .filter((p) => !p.startsWith('lib/credentials/') && p !== 'lib/db/entities.ts');
    expect(touching).toEqual([]);
  });

  it('the webhook tables have one owner: lib/webhooks', () => {
    const touching = files
      .filter((f) => /\bWebhook(Subscription|Event|Delivery)Schema\b/.test(f.text))
      .map((f) => f.path)
      .filter((p) => !p.startsWith('lib/webhooks/') && p !== 'lib/db/entities.ts');
    expect(touching).toEqual([]);
  });

  it('no source file over 300 lines', () => {
    const long = files.map((f) => ({ path: f.path, lines: f.text.split('\n').length })).filter((f) => f.lines > 300);
    expect(long).toEqual([]);
  });

  it('the workflow folder imports no I/O: only Temporal, its own modules and pure domain code', () => {
    const packages = files
      .filter((f) => f.folder === 'workflows')
      .flatMap((f) => [...f.text.matchAll(/from\s+'([^.'][^']*)'/g)].map((m) => m[1]!))
      .filter((p) => !p.startsWith('@temporalio/workflow') && p !== '@temporalio/common');
    expect(packages).toEqual([]);
  });
});
