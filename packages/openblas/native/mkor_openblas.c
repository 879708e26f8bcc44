/*
 * mkor_openblas: the native half of @mkor/openblas, written against the plain N-API C headers.
 *
 * gemm(view, aOffset, bOffset, cOffset, batch, m, n, k, transposeA, transposeB,
 *      aBatchStride, bBatchStride, cBatchStride)
 * computes, for i < batch, C_i = op(A_i) . op(B_i) in float32 with OpenBLAS's cblas_sgemm (row
 * major, alpha 1, beta 0), directly on the memory of `view` (a Uint8Array over an ArrayBuffer or a
 * SharedArrayBuffer, e.g. a WebAssembly.Memory's buffer): offsets are bytes from the start of the
 * view, strides are elements. The TypeScript wrapper validates every call with messages naming the
 * parameter; this file checks again that every operand lies inside the view, so no call through
 * the addon reads or writes out of bounds.
 *
 * info() returns { threads, config, coreName } of the loaded OpenBLAS.
 */
#include <cblas.h>
#include <limits.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>

#define CHECK(env, call)                                                      \
  do {                                                                        \
    if ((call) != napi_ok) {                                                  \
      napi_throw_error((env), NULL, "mkor_openblas: N-API call failed: " #call); \
      return NULL;                                                            \
    }                                                                         \
  } while (0)

enum { ARGUMENT_COUNT = 13 };

/* Whether `count` float32 matrices of `elements` elements, `stride` elements apart from `offset`
 * bytes on, fit in `length` bytes with `offset` a multiple of 4. All values non-negative. */
static bool operand_fits(int64_t offset, int64_t batch, int64_t stride, int64_t elements, size_t length) {
  if (offset < 0 || offset % 4 != 0 || stride < 0 || elements <= 0 || batch <= 0) return false;
  const uint64_t last = (uint64_t)(batch - 1) * (uint64_t)stride + (uint64_t)elements;
  if (last > (uint64_t)length / 4) return false;
  return (uint64_t)offset <= (uint64_t)length - last * 4;
}

static napi_value gemm(napi_env env, napi_callback_info info) {
  size_t argc = ARGUMENT_COUNT;
  napi_value argv[ARGUMENT_COUNT];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != ARGUMENT_COUNT) {
    napi_throw_type_error(env, NULL, "mkor_openblas.gemm: expects 13 arguments");
    return NULL;
  }
  bool is_typed_array = false;
  CHECK(env, napi_is_typedarray(env, argv[0], &is_typed_array));
  napi_typedarray_type type;
  size_t length = 0;
  void *data = NULL;
  if (is_typed_array) CHECK(env, napi_get_typedarray_info(env, argv[0], &type, &length, &data, NULL, NULL));
  if (!is_typed_array || type != napi_uint8_array) {
    napi_throw_type_error(env, NULL, "mkor_openblas.gemm: the memory must be a Uint8Array");
    return NULL;
  }
  /* aOffset, bOffset, cOffset, batch, m, n, k, then the three strides. */
  int64_t value[10];
  for (int i = 0; i < 7; i++) CHECK(env, napi_get_value_int64(env, argv[1 + i], &value[i]));
  for (int i = 0; i < 3; i++) CHECK(env, napi_get_value_int64(env, argv[10 + i], &value[7 + i]));
  bool transpose_a = false;
  bool transpose_b = false;
  CHECK(env, napi_get_value_bool(env, argv[8], &transpose_a));
  CHECK(env, napi_get_value_bool(env, argv[9], &transpose_b));
  const int64_t a_offset = value[0], b_offset = value[1], c_offset = value[2], batch = value[3];
  const int64_t m = value[4], n = value[5], k = value[6];
  const int64_t a_stride = value[7], b_stride = value[8], c_stride = value[9];
  if (m <= 0 || n <= 0 || k <= 0 || m > INT_MAX || n > INT_MAX || k > INT_MAX ||
      !operand_fits(a_offset, batch, a_stride, m * k, length) ||
      !operand_fits(b_offset, batch, b_stride, k * n, length) ||
      !operand_fits(c_offset, batch, c_stride, m * n, length)) {
    napi_throw_range_error(env, NULL, "mkor_openblas.gemm: an operand lies outside the memory or a size is invalid");
    return NULL;
  }
  uint8_t *bytes = (uint8_t *)data;
  const float *a = (const float *)(bytes + a_offset);
  const float *b = (const float *)(bytes + b_offset);
  float *c = (float *)(bytes + c_offset);
  const int lda = (int)(transpose_a ? m : k);
  const int ldb = (int)(transpose_b ? k : n);
  for (int64_t i = 0; i < batch; i++) {
    cblas_sgemm(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans, transpose_b ? CblasTrans : CblasNoTrans,
                (int)m, (int)n, (int)k, 1.0f, a + i * a_stride, lda, b + i * b_stride, ldb, 0.0f, c + i * c_stride,
                (int)n);
  }
  return NULL;
}

static napi_value library_info(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result, threads, config, core_name;
  CHECK(env, napi_create_object(env, &result));
  CHECK(env, napi_create_int32(env, openblas_get_num_threads(), &threads));
  CHECK(env, napi_create_string_utf8(env, openblas_get_config(), NAPI_AUTO_LENGTH, &config));
  CHECK(env, napi_create_string_utf8(env, openblas_get_corename(), NAPI_AUTO_LENGTH, &core_name));
  CHECK(env, napi_set_named_property(env, result, "threads", threads));
  CHECK(env, napi_set_named_property(env, result, "config", config));
  CHECK(env, napi_set_named_property(env, result, "coreName", core_name));
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value function;
  CHECK(env, napi_create_function(env, "gemm", NAPI_AUTO_LENGTH, gemm, NULL, &function));
  CHECK(env, napi_set_named_property(env, exports, "gemm", function));
  CHECK(env, napi_create_function(env, "info", NAPI_AUTO_LENGTH, library_info, NULL, &function));
  CHECK(env, napi_set_named_property(env, exports, "info", function));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
