/* dtypes, shapes (with symbolic dims) and plain tensors.
 *
 * Everything here is a value type or a pure function: no allocation, no
 * global state; every function is thread-safe. */
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

/* Bytes per element; 0 for AT_UNDEFINED or a number that is no at_dtype. */
size_t at_dtype_size(at_dtype t);
/* "float32", "int64", ...; "undefined" for unknown values. Static string,
 * never NULL. */
const char *at_dtype_name(at_dtype t);
/* Whether t is one of the at_dtype values above other than AT_UNDEFINED
 * (e.g. to check a number read from a file before casting it). */
bool at_dtype_valid(int t);

#define AT_MAX_RANK 8

/* A dim >= 0 is a size. A dim < 0 is a symbol of the graph that owns the
 * shape: symbol k is stored as -(k + 1) (see at_sym()). Ranks are static,
 * 0 (a scalar) to AT_MAX_RANK; a shape with rank -1 is the "invalid shape"
 * that some calls return on bad arguments. dim[] beyond rank is ignored. */
typedef struct at_shape {
    int32_t rank;
    int64_t dim[AT_MAX_RANK];
} at_shape;

/* A shape of the given rank with dims[0..rank) (dims may be NULL when rank
 * is 0). A rank outside 0..AT_MAX_RANK gives the invalid shape (rank -1),
 * which the graph builder rejects (AT_E_SHAPE). */
at_shape at_shape_make(int rank, const int64_t *dims);
/* A shape literal, usable in static initializers: AT_SHAPE(2, 3). */
#define AT_SHAPE(...)                                                                              \
    ((at_shape){.rank = (int32_t)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)),             \
                .dim = {__VA_ARGS__}})
#define AT_SCALAR ((at_shape){.rank = 0})

/* Number of elements (1 for a scalar, 0 when a dim is 0); -1 when a dim is
 * symbolic. s must be non-NULL. */
int64_t at_shape_numel(const at_shape *s);
/* True when no dim is symbolic. */
bool at_shape_is_concrete(const at_shape *s);
/* Same rank and the same dims (symbols compare by code, so only shapes of
 * one graph compare meaningfully). */
bool at_shape_equal(const at_shape *a, const at_shape *b);
/* Writes "[2,16,256]" into buf (cap bytes, always NUL-terminated when
 * cap > 0, truncated to fit) and returns buf. Symbols print as "?k" since
 * their names live in the graph (at_graph_shape_str prints names). */
const char *at_shape_str(const at_shape *s, char *buf, size_t cap);

/* A dense, row-major (C order) tensor view: dtype, concrete shape and a
 * pointer to at_tensor_nbytes() bytes. The struct never owns its data; who
 * does is stated by the call that hands out the tensor (feeds: the caller;
 * fetched outputs: the session, until its next run). */
typedef struct at_tensor {
    at_dtype dtype;
    at_shape shape;
    void *data;
} at_tensor;

/* numel * dtype size; 0 when the shape is symbolic or the dtype unknown. */
size_t at_tensor_nbytes(const at_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
