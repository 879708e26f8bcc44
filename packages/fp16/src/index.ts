export {
  FLOAT16_MAX,
  FLOAT16_MIN_NORMAL,
  FLOAT16_MIN_SUBNORMAL,
  FLOAT16_UNIT_ROUNDOFF,
  decodeFloat16,
  encodeFloat16,
  float16BitsToFloat32,
  float32ToFloat16Bits,
} from './float16';
export {
  BFLOAT16_MAX,
  BFLOAT16_UNIT_ROUNDOFF,
  bfloat16BitsToFloat32,
  decodeBfloat16,
  encodeBfloat16,
  float32ToBfloat16Bits,
} from './bfloat16';
export { dequantizeTensor, quantizeTensor, roundToHalf } from './tensor';
export type { HalfFormat, QuantizedTensor } from './tensor';
