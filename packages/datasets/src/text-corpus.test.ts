import { mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { DEBIAN_COMMON_LICENSES_DIR, loadTextCorpus, sampleWindows } from './text-corpus';

function corpusDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'mkor-corpus-'));
  writeFileSync(join(dir, 'a.txt'), 'abab\n\n  abab');
  writeFileSync(join(dir, 'b.txt'), 'ba ba ba z');
  symlinkSync(join(dir, 'a.txt'), join(dir, 'c.txt'));
  return dir;
}

describe('loadTextCorpus', () => {
  it('collapses whitespace, drops symlinked duplicates, maps rare characters to the unknown id and splits', () => {
    const corpus = loadTextCorpus({ paths: [corpusDir()], minCount: 2, testFraction: 0.25 });
    // Text: "abab abab ba ba ba z" (20 characters); 'z' is seen once → unknown.
    expect(corpus.files.map((f) => f.split('/').at(-1))).toEqual(['a.txt', 'b.txt']);
    expect(corpus.vocabulary).toEqual([' ', 'a', 'b']);
    expect(corpus.vocabularySize).toBe(4);
    expect(corpus.train.length + corpus.test.length).toBe(20);
    expect(corpus.test.length).toBe(5);
    expect(corpus.test.at(-1)).toBe(3);
    expect(Array.from(corpus.train.subarray(0, 5))).toEqual([1, 2, 1, 2, 0]);
  });

  it('rejects bad options and missing paths with clear errors', () => {
    expect(() => loadTextCorpus({ paths: [corpusDir()], testFraction: 1 })).toThrow(/^loadTextCorpus: testFraction/);
    expect(() => loadTextCorpus({ paths: [corpusDir()], minCount: 0 })).toThrow(/^loadTextCorpus: minCount/);
    expect(() => loadTextCorpus({ paths: ['/nonexistent/corpus'] })).toThrow(/^loadTextCorpus: .*does not exist/);
  });

  it.skipIf(!existsDefault())('reads the Debian licence texts by default', () => {
    const corpus = loadTextCorpus();
    expect(corpus.train.length).toBeGreaterThan(100_000);
    expect(corpus.vocabulary).toContain('e');
  });
});

function existsDefault(): boolean {
  try {
    loadTextCorpus({ paths: [DEBIAN_COMMON_LICENSES_DIR] });
    return true;
  } catch {
    return false;
  }
}

describe('sampleWindows', () => {
  it('returns next-token targets shifted by one', () => {
    const tokens = Int32Array.from({ length: 50 }, (_, i) => i);
    let k = 0;
    const { inputs, targets } = sampleWindows(tokens, 3, 4, () => [0, 0.5, 0.999][k++] as number);
    expect(Array.from(inputs)).toEqual([0, 1, 2, 3, 23, 24, 25, 26, 45, 46, 47, 48]);
    expect(Array.from(targets)).toEqual(Array.from(inputs, (t) => t + 1));
  });

  it('rejects windows longer than the tokens', () => {
    expect(() => sampleWindows(new Int32Array(4), 1, 4, Math.random)).toThrow(/^sampleWindows: /);
  });
});
