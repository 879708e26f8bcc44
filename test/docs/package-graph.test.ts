/**
 * The package table of docs/concepts.md ("The packages: the pipeline and the dependency graph")
 * against the packages as they are: every publishable package is listed once, with exactly the
 * `@mkor` packages its package.json depends on (dependencies and peer dependencies, `@mkor/core`
 * left out as the table says), its page exists, and no method package depends on another.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const METHOD_PACKAGES = ['@mkor/mkor', '@mkor/kfac', '@mkor/eva'];

interface Manifest {
  readonly name: string;
  readonly private?: boolean;
  readonly dependencies?: Readonly<Record<string, string>>;
  readonly peerDependencies?: Readonly<Record<string, string>>;
}

/** The publishable packages and the `@mkor` packages each depends on at run time, without `@mkor/core`. */
function publishedDependencies(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const entry of readdirSync(join(repoRoot, 'packages'), { withFileTypes: true })) {
    const path = join(repoRoot, 'packages', entry.name, 'package.json');
    if (!entry.isDirectory() || !existsSync(path)) continue;
    const manifest = JSON.parse(readFileSync(path, 'utf8')) as Manifest;
    if (manifest.private === true) continue;
    const names = Object.keys({ ...manifest.dependencies, ...manifest.peerDependencies });
    graph.set(manifest.name, names.filter((name) => name.startsWith('@mkor/') && name !== '@mkor/core').sort());
  }
  return graph;
}

/** The rows of the concepts page's package table: package, the packages named as its dependencies, the page it links. */
function documentedRows(): { name: string; dependencies: string[]; page: string | undefined }[] {
  const text = readFileSync(join(repoRoot, 'docs', 'concepts.md'), 'utf8');
  const section = text.split('## The packages: the pipeline and the dependency graph')[1]?.split('\n## ')[0] ?? '';
  return section
    .split('\n')
    .filter((line) => line.startsWith('| ') && !line.startsWith('| ---') && !line.startsWith('| stage '))
    .map((line) => {
      const cells = line.split(' | ');
      return {
        name: /`(@mkor\/[a-z0-9-]+)`/.exec(cells[1] ?? '')?.[1] ?? `unparsed row: ${line}`,
        dependencies: [...(cells[2] ?? '').matchAll(/@mkor\/[a-z0-9-]+/g)].map((match) => match[0]).sort(),
        page: /\]\(([^)]+)\)/.exec(cells[3] ?? '')?.[1],
      };
    });
}

describe('the package graph of docs/concepts.md', () => {
  const actual = publishedDependencies();
  const rows = documentedRows();

  it('lists every publishable package once', () => {
    expect(rows.map((row) => row.name).sort()).toEqual([...actual.keys()].sort());
  });

  it("gives each package exactly its package.json's @mkor dependencies", () => {
    for (const row of rows) expect(row.dependencies, row.name).toEqual(actual.get(row.name));
  });

  it('links a page that exists for each package', () => {
    for (const row of rows) {
      expect(row.page, row.name).toBeDefined();
      expect(existsSync(join(repoRoot, 'docs', row.page ?? '')), `${row.name}: ${row.page}`).toBe(true);
    }
  });

  it('has no method package depending on another', () => {
    for (const method of METHOD_PACKAGES) {
      expect((actual.get(method) ?? []).filter((name) => METHOD_PACKAGES.includes(name)), method).toEqual([]);
    }
  });
});
