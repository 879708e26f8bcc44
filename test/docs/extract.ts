/**
 * Finds the fenced code blocks of the repository's Markdown documentation, with where they are
 * (file, line, heading) and what they declare (language tag, prelude).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

/** Language tags of blocks that are TypeScript or JavaScript to type-check and run. */
export const RUNNABLE_TAGS: ReadonlySet<string> = new Set(['ts', 'typescript', 'js']);
/** Language tags of blocks that are not run: shell commands, program output, plain text. */
export const INERT_TAGS: ReadonlySet<string> = new Set(['sh', 'console', 'text']);

/** One fenced code block of a Markdown file. */
export interface DocBlock {
  /** Path relative to the repository root, with forward slashes. */
  readonly file: string;
  /** 1-based line of the opening fence. */
  readonly line: number;
  /** The nearest heading above the block (without the `#`s), or '' before any heading. */
  readonly heading: string;
  /** The info string's first word ('' when the fence has none). */
  readonly tag: string;
  /** Name from a `<!-- prelude: NAME -->` comment on the line before the fence, if any. */
  readonly prelude: string | undefined;
  /**
   * Whether the comment on the line before the fence says `continues` (`<!-- continues -->`, or
   * `<!-- continues; prelude: NAME -->`): the block goes on from the previous runnable block of
   * the same file, whose code runs first in the same module.
   */
  readonly continues: boolean;
  /** The block's text, without the fences. */
  readonly code: string;
}

const FENCE = /^(\s*)(`{3,}|~{3,})\s*([^\s`]*)/;
const DIRECTIVE = /^\s*<!--(.*)-->\s*$/;
const PRELUDE = /prelude:\s*([a-z0-9-]+)/;

/** Every fenced block of one Markdown text; `file` only labels the result. */
export function extractBlocks(file: string, markdown: string): DocBlock[] {
  const lines = markdown.split('\n');
  const blocks: DocBlock[] = [];
  let heading = '';
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i] ?? '';
    const heading_ = /^#{1,6}\s+(.*)$/.exec(text);
    if (heading_) heading = (heading_[1] ?? '').trim();
    const open = FENCE.exec(text);
    if (!open) continue;
    const fence = open[2] ?? '```';
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const close = lines[j] ?? '';
      if (close.trim().startsWith(fence) && close.trim().replace(/[`~]/g, '') === '') break;
      body.push(close);
    }
    if (j === lines.length) throw new Error(`${file}:${i + 1}: code fence is never closed`);
    const directive = DIRECTIVE.exec(lines[i - 1] ?? '')?.[1] ?? '';
    blocks.push({
      file,
      line: i + 1,
      heading,
      tag: open[3] ?? '',
      prelude: PRELUDE.exec(directive)?.[1],
      continues: /\bcontinues\b/.test(directive),
      code: body.join('\n'),
    });
    i = j;
  }
  return blocks;
}

/** The documentation files whose blocks are tested: README.md, docs/**\/*.md, packages/*\/README.md. */
export function documentationFiles(repoRoot: string): string[] {
  const files = [join(repoRoot, 'README.md')];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.md')) files.push(path);
    }
  };
  walk(join(repoRoot, 'docs'));
  for (const entry of readdirSync(join(repoRoot, 'packages'), { withFileTypes: true })) {
    if (entry.isDirectory()) files.push(join(repoRoot, 'packages', entry.name, 'README.md'));
  }
  return files
    .filter((path) => { try { readFileSync(path); return true; } catch { return false; } })
    .map((path) => relative(repoRoot, path).split('\\').join('/'))
    .sort();
}
