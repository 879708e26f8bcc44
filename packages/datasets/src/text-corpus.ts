import { readFileSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Where Debian's `base-files` package (Essential: present on every Debian and Ubuntu system)
 * puts the full texts of the common free-software licences: about 300 KB of English prose once
 * the symbolic-link duplicates (`GPL` → `GPL-3`, ...) are dropped.
 */
export const DEBIAN_COMMON_LICENSES_DIR = '/usr/share/common-licenses';

/** Options of {@link loadTextCorpus}. */
export interface TextCorpusOptions {
  /**
   * Plain-text files or folders of them (every regular file directly inside, sorted by name).
   * Default `$MKOR_TEXT_CORPUS_DIR`, else {@link DEBIAN_COMMON_LICENSES_DIR}.
   */
  readonly paths?: readonly string[];
  /** Share of the characters, taken from the end, held out as the test split. Default 0.1. */
  readonly testFraction?: number;
  /** Characters seen fewer times than this map to the unknown token. Default 20. */
  readonly minCount?: number;
}

/** A character-level text corpus: the vocabulary and the text as token ids, split in two. */
export interface TextCorpus {
  /** The characters with an id, by id; id `vocabulary.length` is the unknown token. */
  readonly vocabulary: readonly string[];
  /** Number of token ids: `vocabulary.length + 1` (the unknown token). */
  readonly vocabularySize: number;
  /** The files read, in order, duplicates (same real path) removed. */
  readonly files: readonly string[];
  readonly train: Int32Array;
  readonly test: Int32Array;
}

/** The files named by `paths`: files as given, folders expanded to their regular files, duplicates removed. */
function corpusFiles(where: string, paths: readonly string[]): string[] {
  const seen = new Set<string>();
  const files: string[] = [];
  for (const path of paths) {
    let stat;
    try {
      stat = statSync(path);
    } catch {
      throw new Error(
        `${where}: ${path} does not exist. The default corpus is Debian's ${DEBIAN_COMMON_LICENSES_DIR} ` +
          '(package base-files); set MKOR_TEXT_CORPUS_DIR or pass paths to use another plain-text corpus.',
      );
    }
    const candidates = stat.isDirectory()
      ? readdirSync(path)
          .sort()
          .map((name) => join(path, name))
          .filter((file) => statSync(file).isFile())
      : [path];
    for (const file of candidates) {
      const real = realpathSync(file);
      if (seen.has(real)) continue;
      seen.add(real);
      files.push(file);
    }
  }
  if (files.length === 0) throw new Error(`${where}: no files in ${paths.join(', ')}`);
  return files;
}

/**
 * Loads a plain-text corpus for character-level language modelling (Node only): reads the
 * files, collapses runs of whitespace to one space (line breaks and indentation of licence
 * texts carry no language), builds a character vocabulary from the characters seen at least
 * `minCount` times (the rest share one unknown id) and splits the token ids into a training
 * part and a held-out test part (the last `testFraction` of the text).
 */
export function loadTextCorpus(options: TextCorpusOptions = {}): TextCorpus {
  const where = 'loadTextCorpus';
  const testFraction = options.testFraction ?? 0.1;
  if (!(Number.isFinite(testFraction) && testFraction > 0 && testFraction < 1)) {
    throw new RangeError(`${where}: testFraction must lie in (0, 1), got ${testFraction}`);
  }
  const minCount = options.minCount ?? 20;
  if (!(Number.isInteger(minCount) && minCount >= 1)) {
    throw new RangeError(`${where}: minCount must be an integer ≥ 1, got ${minCount}`);
  }
  const envDir = process.env.MKOR_TEXT_CORPUS_DIR;
  const paths = options.paths ?? [envDir !== undefined && envDir !== '' ? envDir : DEBIAN_COMMON_LICENSES_DIR];
  const files = corpusFiles(where, paths);
  const text = files
    .map((file) => readFileSync(file, 'utf8'))
    .join(' ')
    .replace(/\s+/g, ' ')
    .trim();
  const counts = new Map<string, number>();
  for (const character of text) counts.set(character, (counts.get(character) ?? 0) + 1);
  const vocabulary = [...counts.entries()]
    .filter(([, count]) => count >= minCount)
    .map(([character]) => character)
    .sort();
  const ids = new Map(vocabulary.map((character, id) => [character, id]));
  const unknown = vocabulary.length;
  const tokens = Int32Array.from(text, (character) => ids.get(character) ?? unknown);
  const testLength = Math.floor(tokens.length * testFraction);
  if (testLength < 2 || tokens.length - testLength < 2) {
    throw new RangeError(`${where}: the corpus (${tokens.length} characters) is too small to split`);
  }
  return {
    vocabulary,
    vocabularySize: vocabulary.length + 1,
    files,
    train: tokens.slice(0, tokens.length - testLength),
    test: tokens.slice(tokens.length - testLength),
  };
}

/**
 * `count` windows of `length + 1` consecutive tokens from `tokens`, starting at positions drawn
 * by `random` (a function returning numbers in [0, 1)): `inputs[i]` holds tokens `s … s+length−1`
 * and `targets[i]` the next tokens `s+1 … s+length` (row-major, `count × length` each).
 */
export function sampleWindows(
  tokens: Int32Array,
  count: number,
  length: number,
  random: () => number,
): { inputs: Int32Array; targets: Int32Array } {
  const where = 'sampleWindows';
  if (!(Number.isInteger(count) && count >= 1)) throw new RangeError(`${where}: count must be an integer ≥ 1, got ${count}`);
  if (!(Number.isInteger(length) && length >= 1)) throw new RangeError(`${where}: length must be an integer ≥ 1, got ${length}`);
  if (tokens.length < length + 1) {
    throw new RangeError(`${where}: windows of ${length + 1} tokens need at least that many tokens, got ${tokens.length}`);
  }
  const inputs = new Int32Array(count * length);
  const targets = new Int32Array(count * length);
  const starts = tokens.length - length;
  for (let i = 0; i < count; i++) {
    const start = Math.min(starts - 1, Math.floor(random() * starts));
    inputs.set(tokens.subarray(start, start + length), i * length);
    targets.set(tokens.subarray(start + 1, start + length + 1), i * length);
  }
  return { inputs, targets };
}
