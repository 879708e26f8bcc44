/**
 * Inputs shared by the program that runs under mpirun (`rank-program.ts`) and the test that checks
 * its output (`src/mpi-transport.test.ts`): each rank's contribution is a pure function of
 * (rank, seed, length), so the test recomputes every rank's data for its float64 references.
 */

/** A 32-bit PRNG (mulberry32) returning numbers in [0, 1). */
function uniformGenerator(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Rank `rank`'s contribution to the collective numbered `seed`: signed values of magnitude 1e-3..1e3. */
export function contribution(rank: number, seed: number, length: number): Float32Array {
  const next = uniformGenerator(seed * 7919 + rank * 104729 + length);
  const values = new Float32Array(length);
  for (let i = 0; i < length; i++) {
    const sign = next() < 0.5 ? -1 : 1;
    values[i] = sign * 10 ** (6 * next() - 3);
  }
  return values;
}

/** Values that probe float16 rounding: ties, subnormals, the overflow threshold, ±0, ±Inf, NaN. */
export const FLOAT16_PROBES: readonly number[] = [
  0, -0, 1, -1, 1 / 3, 0.1, 3.14159, -2.71828, 65504, 65519.99, 65520, -65520, 1e5, 2 ** -24, 2 ** -25,
  1.5 * 2 ** -25, 2 ** -26, 6e-5, 1e-7, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 2049, 2051, -2051, 1024.5, 1025.5,
  Infinity, -Infinity, NaN,
].map(Math.fround);

/** Rank 0's float16 probe buffer: {@link FLOAT16_PROBES} followed by `randomCount` values spanning float16's range. */
export function float16ProbeBuffer(randomCount: number): Float32Array {
  const next = uniformGenerator(20231129);
  const values = new Float32Array(FLOAT16_PROBES.length + randomCount);
  values.set(FLOAT16_PROBES);
  for (let i = 0; i < randomCount; i++) {
    const sign = next() < 0.5 ? -1 : 1;
    values[FLOAT16_PROBES.length + i] = sign * 2 ** (44 * next() - 28); // 2^-28 .. 2^16
  }
  return values;
}

/** Float32Array → base64 of its bytes, for printing results as JSON. */
export function encodeResult(values: Float32Array): string {
  return Buffer.from(values.buffer, values.byteOffset, values.byteLength).toString('base64');
}

/** The inverse of {@link encodeResult}. */
export function decodeResult(text: string): Float32Array {
  const bytes = Buffer.from(text, 'base64');
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  return new Float32Array(copy.buffer);
}
