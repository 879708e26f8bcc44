/**
 * Every code block of README.md, docs/ and the package READMEs, tested as a user would meet it:
 * blocks tagged `ts`, `typescript` or `js` are type-checked together with `tsc --strict` against
 * the built packages (the workspace links in node_modules, resolved through their exports maps to
 * dist/) and then each is run on its own with tsx under a time limit; `sh`, `console` and `text`
 * blocks are not run; any other tag, or none, fails. A fragment names a prelude from
 * test/docs/preludes/ with `<!-- prelude: NAME -->` on the line before its fence: the prelude's
 * exports are imported into the block; `<!-- continues -->` (or `<!-- continues; prelude: NAME -->`)
 * runs the previous runnable block of the same file first, in the same module (see
 * docs/contributing.md).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { type DocBlock, INERT_TAGS, RUNNABLE_TAGS, documentationFiles, extractBlocks } from './extract.js';

const run = promisify(execFile);
const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const here = join(repoRoot, 'test', 'docs');
const generated = join(here, '.generated');
const preludes = join(here, 'preludes');
/** Wall-clock limit for one block's run. */
const BLOCK_TIME_LIMIT_MS = 120_000;

/**
 * Blocks that fail because of a library bug, not a docs bug. Each is asserted to still fail with
 * the error shown, so the list cannot rot: delete an entry when its fix lands.
 */
const knownLibraryBugs: readonly { file: string; heading: string; error: string }[] = [];

const allBlocks: DocBlock[] = documentationFiles(repoRoot).flatMap((file) =>
  extractBlocks(file, readFileSync(join(repoRoot, file), 'utf8')),
);
const runnable = allBlocks.filter((block) => RUNNABLE_TAGS.has(block.tag));

/** Where a block is written: one module per block, named after its file and line. */
function modulePath(block: DocBlock): string {
  const extension = block.tag === 'js' ? 'mjs' : 'ts';
  return join(generated, `${block.file.replace(/[/.]/g, '_')}_L${block.line}.${extension}`);
}

/** The names a prelude file exports (`export const|let|function|class NAME`). */
function preludeExports(name: string): string[] {
  const path = join(preludes, `${name}.ts`);
  if (!existsSync(path)) throw new Error(`prelude '${name}' not found: expected ${path}`);
  return [...readFileSync(path, 'utf8').matchAll(/^export\s+(?:async\s+)?(?:const|let|function|class)\s+(\w+)/gm)].map((m) => m[1] ?? '');
}

/** A block and the blocks it continues (see `DocBlock.continues`), first block first. */
function chainOf(block: DocBlock): DocBlock[] {
  if (!block.continues) return [block];
  const before = runnable.filter((other) => other.file === block.file && other.line < block.line);
  const previous = before.at(-1);
  if (previous === undefined) throw new Error(`${block.file}:${block.line}: 'continues' but no runnable block comes before it`);
  return [...chainOf(previous), block];
}

/** Lines of a block's module before its own code: those of the blocks it continues. */
function prefixLines(block: DocBlock): number {
  return chainOf(block).slice(0, -1).reduce((sum, earlier) => sum + earlier.code.split('\n').length, 0);
}

/**
 * The module text of a block: the code of the blocks it continues, then its own. The preludes'
 * imports go on the first line (no new line), so line k of a block that continues nothing is
 * line `block.line + k` of the Markdown file.
 */
function moduleText(block: DocBlock): string {
  const chain = chainOf(block);
  const names = [...new Set(chain.flatMap((part) => (part.prelude === undefined ? [] : [part.prelude])))];
  const preludeImports = names.map((name) => `import { ${preludeExports(name).join(', ')} } from '../preludes/${name}.js'; `).join('');
  return `${preludeImports}${chain.map((part) => part.code).join('\n')}\n`;
}

/** tsc's messages, each turned into `file:line:col message` of the Markdown file. */
function typeErrors(output: string): string[] {
  const byModule = new Map(runnable.map((block) => [modulePath(block), block]));
  return output.split('\n').filter((line) => line.includes('error TS')).map((line) => {
    const at = /^(.*?)\((\d+),(\d+)\): (.*)$/.exec(line);
    const block = at ? byModule.get(join(repoRoot, at[1] ?? '')) ?? byModule.get(at[1] ?? '') : undefined;
    return at && block ? `${block.file}:${block.line + Number(at[2]) - prefixLines(block)}:${at[3]} ${at[4]}` : line;
  });
}

/** Runs one block with tsx; resolves to '' on success, else the error (exit status and output tail). */
async function runBlock(block: DocBlock): Promise<string> {
  try {
    await run(process.execPath, ['--import', 'tsx', modulePath(block)], {
      cwd: generated, timeout: BLOCK_TIME_LIMIT_MS, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024,
    });
    return '';
  } catch (error) {
    const failure = error as { code?: number | string; killed?: boolean; stderr?: string; stdout?: string };
    const why = failure.killed ? `ran past ${BLOCK_TIME_LIMIT_MS / 1000} s` : `exit ${String(failure.code)}`;
    return `${why}\n${`${failure.stdout ?? ''}${failure.stderr ?? ''}`.slice(-3000)}`;
  }
}

const isKnownBug = (block: DocBlock) => knownLibraryBugs.find((bug) => bug.file === block.file && bug.heading === block.heading);
let typeCheck: string[] = [];

beforeAll(async () => {
  rmSync(generated, { recursive: true, force: true });
  mkdirSync(generated, { recursive: true });
  for (const block of runnable) writeFileSync(modulePath(block), moduleText(block));
  writeFileSync(join(generated, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      strict: true, noEmit: true, target: 'es2022', module: 'nodenext', moduleResolution: 'nodenext',
      lib: ['es2022', 'dom'], types: ['node'], skipLibCheck: true, allowJs: true, checkJs: true,
    },
    include: ['*.ts', '*.mjs', '../preludes/*.ts'],
  }, null, 2));
  try {
    await run(process.execPath, [join(repoRoot, 'node_modules/typescript/bin/tsc'), '-p', generated, '--pretty', 'false'], { cwd: repoRoot, maxBuffer: 64 * 1024 * 1024 });
  } catch (error) {
    typeCheck = typeErrors((error as { stdout?: string }).stdout ?? String(error));
  }
});

describe('docs code blocks', () => {
  it('every block has a known language tag', () => {
    const unknown = allBlocks.filter((block) => !RUNNABLE_TAGS.has(block.tag) && !INERT_TAGS.has(block.tag));
    expect(unknown.map((block) => `${block.file}:${block.line}: tag '${block.tag}'`)).toEqual([]);
  });

  it('every prelude named is used and exists', () => {
    const named = new Set(runnable.flatMap((block) => (block.prelude === undefined ? [] : [block.prelude])));
    for (const name of named) expect(preludeExports(name).length, `prelude ${name} exports nothing`).toBeGreaterThan(0);
    const files = readdirSync(preludes).filter((file) => file.endsWith('.ts')).map((file) => file.replace(/\.ts$/, ''));
    expect(files.filter((name) => !named.has(name)), 'unused preludes').toEqual([]);
  });

  it('every known library bug names a block that exists', () => {
    for (const bug of knownLibraryBugs) {
      expect(runnable.some((block) => block.file === bug.file && block.heading === bug.heading), `${bug.file} › ${bug.heading}`).toBe(true);
    }
  });

  it('type-checks with tsc --strict', () => {
    const expected = typeCheck.filter((message) => !runnable.some((block) => isKnownBug(block) && message.startsWith(`${block.file}:`) && lineIn(block, message)));
    expect(expected).toEqual([]);
  });

  for (const block of runnable) {
    const known = isKnownBug(block);
    it(`${block.file}:${block.line} (${block.heading}) ${known ? 'still fails (known library bug)' : 'runs'}`, async () => {
      const error = await runBlock(block);
      if (known) {
        const typeErrorsHere = typeCheck.filter((message) => message.startsWith(`${block.file}:`) && lineIn(block, message));
        expect(`${error}\n${typeErrorsHere.join('\n')}`, `${block.file}:${block.line} now passes: delete its knownLibraryBugs entry`).toContain(known.error);
      } else {
        expect(error, `${block.file}:${block.line} (${block.heading})`).toBe('');
      }
    }, BLOCK_TIME_LIMIT_MS + 10_000);
  }
});

/** Whether a mapped tsc message `file:line:...` falls inside the block. */
function lineIn(block: DocBlock, message: string): boolean {
  const line = Number(message.slice(block.file.length + 1).split(':')[0]);
  return line > block.line && line <= block.line + block.code.split('\n').length;
}
