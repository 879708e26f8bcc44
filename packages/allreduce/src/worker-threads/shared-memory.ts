/** The shared memory of a worker-threads group: its layout in words and regions, and waiting on it. */
import type { CollectiveKind } from '../transport';

// Shared memory layout, in Int32 words: a control block, then per rank a status block, then per
// buffer set (two, alternating by round) and rank a header; after the words, the data regions.
export const DOORBELL = 0; // incremented (and notified) by every event a waiting rank must look at
export const ABORT_STATE = 1; // 0: running; -1: an abort is being written; else an AbortCause
export const ABORT_REPORTER = 2; // the rank that aborted the group
export const ABORT_SEQUENCE = 3; // the collective it was in
export const ABORT_KIND = 4; // and its kind (index into KINDS)
export const CONTROL_WORDS = 5;

export const ARRIVED = 0; // the last round this rank has published its contribution for
export const STATUS = 1; // RankStatus
export const EXIT_CODE = 2; // when STATUS is EXITED
export const CULPRIT = 3; // 1 when this rank's failure aborted the group
export const RANK_WORDS = 4;

export const HEADER_KIND = 0;
export const HEADER_LENGTH = 1;
export const HEADER_OP = 2;
export const HEADER_PRECISION = 3;
export const HEADER_ROOT = 4;
export const HEADER_CHUNK = 5;
export const HEADER_WORDS = 6;

export const ACTIVE = 0;
export const CLOSED = 1;
export const EXITED = 2;

export const ABORT_TIMEOUT = 1;
export const ABORT_DEPARTED = 2;

export const KINDS: readonly CollectiveKind[] = ['allReduce', 'broadcast', 'barrier'];

/** Everything a rank needs to join a group: the shared memory and the group's settings. */
export interface GroupDescriptor {
  readonly memory: SharedArrayBuffer;
  readonly worldSize: number;
  readonly rank: number;
  readonly chunkBytes: number;
  readonly timeoutMs: number;
  readonly spin: boolean;
}

/** Typed views of a group's shared memory. */
export class SharedLayout {
  readonly words: Int32Array;
  readonly #worldSize: number;
  readonly #chunkBytes: number;
  readonly #dataOffset: number;
  readonly #memory: SharedArrayBuffer;

  static byteLength(worldSize: number, chunkBytes: number): number {
    return SharedLayout.#wordCount(worldSize) * 4 + 2 * worldSize * chunkBytes;
  }

  static #wordCount(worldSize: number): number {
    return CONTROL_WORDS + worldSize * RANK_WORDS + 2 * worldSize * HEADER_WORDS;
  }

  constructor(memory: SharedArrayBuffer, worldSize: number, chunkBytes: number) {
    this.#memory = memory;
    this.#worldSize = worldSize;
    this.#chunkBytes = chunkBytes;
    this.words = new Int32Array(memory, 0, SharedLayout.#wordCount(worldSize));
    this.#dataOffset = this.words.byteLength;
  }

  rankWord(rank: number, field: number): number {
    return CONTROL_WORDS + rank * RANK_WORDS + field;
  }

  headerWord(set: number, rank: number, field: number): number {
    return CONTROL_WORDS + this.#worldSize * RANK_WORDS + (set * this.#worldSize + rank) * HEADER_WORDS + field;
  }

  float32Region(set: number, rank: number, length: number): Float32Array {
    return new Float32Array(this.#memory, this.#regionOffset(set, rank), length);
  }

  float16Region(set: number, rank: number, length: number): Uint16Array {
    return new Uint16Array(this.#memory, this.#regionOffset(set, rank), length);
  }

  #regionOffset(set: number, rank: number): number {
    return this.#dataOffset + (set * this.#worldSize + rank) * this.#chunkBytes;
  }

  /** Wakes every rank waiting on the doorbell. */
  ring(): void {
    Atomics.add(this.words, DOORBELL, 1);
    Atomics.notify(this.words, DOORBELL);
  }
}

/**
 * `Atomics.waitAsync` (ES2024; in Node since 16), typed here because the project compiles against
 * the ES2022 library. Resolves when `array[index]` is notified or the timeout passes; at once when
 * the value is no longer `expected`.
 */
export const waitAsync = (
  Atomics as unknown as {
    waitAsync(
      array: Int32Array,
      index: number,
      expected: number,
      timeoutMs: number,
    ): { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<'ok' | 'timed-out'> };
  }
).waitAsync;

/** Whether `a` is at or after round `b`, robust to the Int32 wrap-around of round numbers. */
export function reached(a: number, b: number): boolean {
  return ((a - b) | 0) >= 0;
}
