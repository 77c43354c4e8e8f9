/* dtypes, shapes (with symbolic dims) and plain tensors. */
#ifndef ATTUNE_TENSOR_H
#define ATTUNE_TENSOR_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The numbers are ONNX's TensorProto.DataType, so files need no mapping. */
typedef enum at_dtype {
    AT_UNDEFINED = 0,
    AT_F32 = 1,
    AT_U8 = 2,
    AT_I8 = 3,
    AT_I32 = 6,
    AT_I64 = 7,
    AT_BOOL = 9, /* one byte, 0 or 1 */
    AT_F16 = 10,
    AT_BF16 = 16,
} at_dtype;

/* Bytes per element; 0 for an unknown dtype. */
size_t at_dtype_size(at_dtype t);
/* "float32", "int64", ...; "undefined" for unknown values. */
const char *at_dtype_name(at_dtype t);
bool at_dtype_valid(int t);

#define AT_MAX_RANK 8

/* A dim >= 0 is a size. A dim < 0 is a symbol of the graph that owns the
 * shape: symbol k is stored as -(k + 1) (see at_sym()). Ranks are static. */
typedef struct at_shape {
    int32_t rank;
    int64_t dim[AT_MAX_RANK];
} at_shape;

at_shape at_shape_make(int rank, const int64_t *dims);
/* A shape literal, usable in static initializers: AT_SHAPE(2, 3). */
#define AT_SHAPE(...)                                                                              \
    ((at_shape){.rank = (int32_t)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)),              \
                .dim = {__VA_ARGS__}})
#define AT_SCALAR ((at_shape){.rank = 0})

/* Number of elements; -1 when a dim is symbolic. */
int64_t at_shape_numel(const at_shape *s);
bool at_shape_is_concrete(const at_shape *s);
bool at_shape_equal(const at_shape *a, const at_shape *b);
/* "[B,16,256]" into buf (symbols printed as "?k" without a graph). */
const char *at_shape_str(const at_shape *s, char *buf, size_t cap);

/* A dense row-major tensor view. Who owns data is stated by the call that
 * hands out the tensor. */
typedef struct at_tensor {
    at_dtype dtype;
    at_shape shape;
    void *data;
} at_tensor;

size_t at_tensor_nbytes(const at_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
