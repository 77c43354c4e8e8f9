/* NumPy .npy files (format versions 1.0, 2.0 and 3.0), the arrays `attune run` reads and
 * writes.
 *
 * Supported: little-endian or byte-sized dtypes '<f4' (float32), '<f2' (float16), '<i8'
 * (int64), '<i4' (int32), '|i1' (int8), '|u1' (uint8), '|b1' (bool); C order; rank up to
 * AT_MAX_RANK. Anything else (float64, big-endian, Fortran order, object arrays, structured
 * dtypes) is an error that says what the file holds and how to convert it.
 *
 * The header is parsed strictly (a Python dict literal with exactly the keys 'descr',
 * 'fortran_order' and 'shape') and the data size it implies is checked against the file's
 * length before anything is allocated, so a corrupt or hostile file gives one clear error,
 * never a crash or a huge allocation. Every message names the file. */
#ifndef ATTUNE_TOOLS_NPY_H
#define ATTUNE_TOOLS_NPY_H

#include <stddef.h>

#include "attune/status.h"
#include "attune/tensor.h"

/* Header size limit: a rank-8 header needs about 200 bytes; NumPy itself refuses headers
 * over 10000 bytes by default. */
#define AT_NPY_MAX_HEADER 65536

typedef struct at_npy_info {
    at_dtype dtype;
    at_shape shape;
    int major, minor;   /* format version */
    size_t data_offset; /* where the array data starts */
    size_t data_bytes;  /* numel * dtype size */
} at_npy_info;

/* Parses the header at the start of buf[0..len) of a file whose total length is file_len
 * (len may be less than file_len: a prefix that holds the whole header is enough). Checks
 * that the data fills exactly the rest of the file. name is used in messages. */
at_status at_npy_parse_header(const void *buf, size_t len, size_t file_len, const char *name,
                              at_npy_info *info, at_err *err);

/* Parses a whole file image: the header as above and, for bool arrays, that every byte is 0
 * or 1. On success the data lie at (const char *)buf + info->data_offset. Pure: no I/O, no
 * allocation; safe on any bytes (a fuzz target). */
at_status at_npy_parse(const void *buf, size_t len, const char *name, at_npy_info *info,
                       at_err *err);

/* Reads path into *out; out->data is malloc'ed (at least one byte, even for an empty array)
 * and freed by the caller with free(). */
at_status at_npy_read(const char *path, at_tensor *out, at_err *err);

/* The header for t (version 1.0, or 2.0 when it does not fit), padded so that the data start
 * at a multiple of 64 bytes. Writes at most cap bytes and returns the header's length, or 0
 * when the dtype cannot be written (*err set). */
size_t at_npy_header(const at_tensor *t, char *buf, size_t cap, at_err *err);

/* A whole file image in a malloc'ed buffer. */
at_status at_npy_encode(const at_tensor *t, void **buf, size_t *len, at_err *err);

/* Writes t to path: to a temporary file beside it, then renamed, so a failed write never
 * leaves a half-written array under the final name. */
at_status at_npy_write(const char *path, const at_tensor *t, at_err *err);

/* The NumPy descr of a dtype ("<f4"), or NULL when .npy files of it are not supported. */
const char *at_npy_descr(at_dtype dt);

#endif
