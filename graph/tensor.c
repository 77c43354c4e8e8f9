/* dtypes and shapes. */
#include <stdio.h>
#include <string.h>

#include "attune/tensor.h"

size_t at_dtype_size(at_dtype t) {
    switch (t) {
    case AT_F32:
    case AT_I32:
        return 4;
    case AT_I64:
        return 8;
    case AT_U8:
    case AT_I8:
    case AT_BOOL:
        return 1;
    case AT_F16:
    case AT_BF16:
        return 2;
    default:
        return 0;
    }
}

const char *at_dtype_name(at_dtype t) {
    switch (t) {
    case AT_F32:
        return "float32";
    case AT_U8:
        return "uint8";
    case AT_I8:
        return "int8";
    case AT_I32:
        return "int32";
    case AT_I64:
        return "int64";
    case AT_BOOL:
        return "bool";
    case AT_F16:
        return "float16";
    case AT_BF16:
        return "bfloat16";
    default:
        return "undefined";
    }
}

bool at_dtype_valid(int t) {
    return at_dtype_size((at_dtype)t) != 0;
}

at_shape at_shape_make(int rank, const int64_t *dims) {
    at_shape s;
    memset(&s, 0, sizeof s);
    if (rank < 0 || rank > AT_MAX_RANK) {
        s.rank = -1; /* invalid: every consumer rejects a negative rank */
        return s;
    }
    s.rank = rank;
    for (int i = 0; i < rank; i++) s.dim[i] = dims[i];
    return s;
}

int64_t at_shape_numel(const at_shape *s) {
    int64_t n = 1;
    for (int i = 0; i < s->rank; i++) {
        if (s->dim[i] < 0) return -1;
        n *= s->dim[i];
    }
    return n;
}

bool at_shape_is_concrete(const at_shape *s) {
    for (int i = 0; i < s->rank; i++)
        if (s->dim[i] < 0) return false;
    return true;
}

bool at_shape_equal(const at_shape *a, const at_shape *b) {
    if (a->rank != b->rank) return false;
    for (int i = 0; i < a->rank; i++)
        if (a->dim[i] != b->dim[i]) return false;
    return true;
}

const char *at_shape_str(const at_shape *s, char *buf, size_t cap) {
    size_t k = 0;
    if (!cap) return buf;
    buf[0] = 0;
    k += (size_t)snprintf(buf + k, cap - k, "[");
    for (int i = 0; i < s->rank && k < cap; i++) {
        if (s->dim[i] >= 0)
            k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? "," : "", (long long)s->dim[i]);
        else
            k += (size_t)snprintf(buf + k, cap - k, "%s?%lld", i ? "," : "",
                                  (long long)(-s->dim[i] - 1));
    }
    if (k < cap) snprintf(buf + k, cap - k, "]");
    return buf;
}

size_t at_tensor_nbytes(const at_tensor *t) {
    int64_t n = at_shape_numel(&t->shape);
    return n < 0 ? 0 : (size_t)n * at_dtype_size(t->dtype);
}
