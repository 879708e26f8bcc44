/**
 * IDX files (the MNIST format) in the browser: bytes from a URL or a picked file, gzip-compressed
 * or not (gzip is recognised by its magic bytes and undone with the browser's own
 * `DecompressionStream`), parsed to dimensions and unsigned bytes.
 */

/** An IDX array of unsigned bytes: its dimensions and its data, row-major. */
export interface IdxBytes {
  readonly dims: readonly number[];
  readonly data: Uint8Array;
}

/** The bytes of a gzip member, inflated; other bytes as they are. */
export async function gunzipIfCompressed(bytes: Uint8Array): Promise<Uint8Array> {
  if (bytes[0] !== 0x1f || bytes[1] !== 0x8b) return bytes;
  const inflated = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new DecompressionStream('gzip'));
  return new Uint8Array(await new Response(inflated).arrayBuffer());
}

/**
 * Reads the IDX header (magic `0x00 0x00 0x08 <rank>`, then `rank` big-endian 32-bit sizes) and
 * returns the dimensions and the data that follows. Throws, naming `source`, on another element
 * type than unsigned bytes or on a truncated file.
 */
export function parseIdxBytes(bytes: Uint8Array, source: string): IdxBytes {
  if (bytes.length < 4 || bytes[0] !== 0 || bytes[1] !== 0) throw new Error(`parseIdxBytes: ${source} is not an IDX file (bad magic number)`);
  if (bytes[2] !== 0x08) throw new Error(`parseIdxBytes: ${source} holds IDX element type 0x${(bytes[2] ?? 0).toString(16)}, not unsigned bytes (0x08)`);
  const rank = bytes[3] ?? 0;
  const headerLength = 4 + 4 * rank;
  if (bytes.length < headerLength) throw new Error(`parseIdxBytes: ${source} has a truncated IDX header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims = Array.from({ length: rank }, (_, axis) => view.getUint32(4 + 4 * axis, false));
  const length = dims.reduce((product, size) => product * size, 1);
  if (bytes.length < headerLength + length) {
    throw new Error(`parseIdxBytes: ${source} is truncated (${bytes.length - headerLength} of ${length} data bytes)`);
  }
  return { dims, data: bytes.subarray(headerLength, headerLength + length) };
}
