import { gunzipSync } from 'node:zlib';

/** An IDX array (the MNIST file format): its dimensions and its unsigned bytes, row-major. */
export interface IdxArray {
  readonly dims: readonly number[];
  readonly data: Uint8Array;
}

/**
 * Parses an IDX file of unsigned bytes (magic `0x00 0x00 0x08 <rank>`, big-endian dimensions),
 * gzip-compressed or not. Throws on any other element type or a truncated file.
 */
export function parseIdx(file: Uint8Array, source = 'IDX data'): IdxArray {
  const bytes = file[0] === 0x1f && file[1] === 0x8b ? new Uint8Array(gunzipSync(file)) : file;
  if (bytes.length < 4 || bytes[0] !== 0 || bytes[1] !== 0) {
    throw new Error(`${source}: not an IDX file (bad magic number)`);
  }
  if (bytes[2] !== 0x08) {
    throw new Error(`${source}: IDX element type 0x${(bytes[2] ?? 0).toString(16)} is not unsigned byte (0x08)`);
  }
  const rank = bytes[3] as number;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerBytes = 4 + 4 * rank;
  if (bytes.length < headerBytes) throw new Error(`${source}: truncated IDX header`);
  const dims = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i, false));
  const count = dims.reduce((a, b) => a * b, 1);
  if (bytes.length < headerBytes + count) {
    throw new Error(`${source}: truncated IDX data (${bytes.length - headerBytes} of ${count} bytes)`);
  }
  return { dims, data: bytes.subarray(headerBytes, headerBytes + count) };
}
