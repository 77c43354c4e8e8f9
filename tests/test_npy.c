/* The .npy reader and writer of the attune command (tools/npy.c): round trips of every dtype,
 * files laid out as NumPy writes them, and malformed, truncated and hostile files. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "tools/npy.c" /* the command's sources are not in libattune */

/* A file image: preamble for `major`, the header text as given (no padding added), data. */
static unsigned char *make_file(int major, const char *header, const void *data, size_t nd,
                                size_t *len) {
    size_t hl = strlen(header), pre = major == 1 ? 10 : 12;
    unsigned char *b = malloc(pre + hl + nd + 1);
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (unsigned char)major;
    b[7] = 0;
    b[8] = (unsigned char)(hl & 0xff);
    b[9] = (unsigned char)(hl >> 8 & 0xff);
    if (major != 1) {
        b[10] = (unsigned char)(hl >> 16 & 0xff);
        b[11] = (unsigned char)(hl >> 24 & 0xff);
    }
    memcpy(b + pre, header, hl);
    if (nd) memcpy(b + pre + hl, data, nd);
    *len = pre + hl + nd;
    return b;
}

static at_status parse_text(int major, const char *header, const void *data, size_t nd,
                            at_npy_info *info, at_err *e) {
    size_t len;
    unsigned char *b = make_file(major, header, data, nd, &len);
    at_status st = at_npy_parse(b, len, "t.npy", info, e);
    free(b);
    return st;
}

static void fill(void *p, size_t n, unsigned seed) {
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        b[i] = (unsigned char)(seed >> 16);
    }
}

static void test_round_trips(void) {
    const at_dtype dts[] = {AT_F32, AT_F16, AT_I64, AT_I32, AT_I8, AT_U8, AT_BOOL};
    const at_shape shapes[] = {
        AT_SCALAR,
        AT_SHAPE(0),
        AT_SHAPE(3),
        AT_SHAPE(2, 3),
        AT_SHAPE(4, 0, 2),
        AT_SHAPE(1, 2, 1, 3),
        AT_SHAPE(1, 2, 1, 2, 1, 2, 1, 3),
    };
    char dir[] = "/tmp/attune_test_npy_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            at_tensor t = {dts[d], shapes[s], NULL};
            size_t nb = at_tensor_nbytes(&t);
            unsigned char *data = malloc(nb + 1);
            fill(data, nb, (unsigned)(d * 31 + s));
            if (dts[d] == AT_BOOL)
                for (size_t i = 0; i < nb; i++) data[i] &= 1;
            t.data = data;
            void *buf = NULL;
            size_t len = 0;
            at_err e = {0};
            CHECK_OK(at_npy_encode(&t, &buf, &len, &e));
            at_npy_info info;
            at_status st = at_npy_parse(buf, len, "mem", &info, &e);
            CHECK(st == AT_OK, "parse %s rank %d: %s", at_dtype_name(dts[d]), (int)shapes[s].rank,
                  e.msg);
            if (st == AT_OK) {
                CHECK(info.dtype == dts[d], "dtype %d", info.dtype);
                CHECK(at_shape_equal(&info.shape, &shapes[s]), "shape");
                CHECK(info.data_offset % 64 == 0, "offset %zu", info.data_offset);
                CHECK(info.data_bytes == nb, "bytes %zu vs %zu", info.data_bytes, nb);
                CHECK(info.major == 1 && info.minor == 0, "version");
                CHECK(!nb || !memcmp((char *)buf + info.data_offset, data, nb), "data");
            }
            char path[256];
            snprintf(path, sizeof path, "%s/a_%zu_%zu.npy", dir, d, s);
            CHECK_OK(at_npy_write(path, &t, &e));
            at_tensor r;
            st = at_npy_read(path, &r, &e);
            CHECK(st == AT_OK, "read %s: %s", path, e.msg);
            if (st == AT_OK) {
                CHECK(r.dtype == dts[d] && at_shape_equal(&r.shape, &shapes[s]), "read meta");
                CHECK(r.data != NULL, "data allocated even when empty");
                CHECK(!nb || !memcmp(r.data, data, nb), "read data");
                free(r.data);
            }
            unlink(path);
            free(buf);
            free(data);
        }
    rmdir(dir);
}

/* The exact bytes NumPy 1.x/2.x writes for numpy.save("x.npy", numpy.arange(6, dtype="<f4")
 * .reshape(2, 3)): the header padded with spaces to 118 bytes so the data start at 128. */
static void test_numpy_layout(void) {
    float v[6] = {0, 1, 2, 3, 4, 5};
    at_tensor t = {AT_F32, AT_SHAPE(2, 3), v};
    char hdr[256];
    at_err e = {0};
    size_t h = at_npy_header(&t, hdr, sizeof hdr, &e);
    const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    CHECK(h == 128, "header length %zu", h);
    CHECK(!memcmp(hdr, "\x93NUMPY\x01\x00\x76\x00", 10), "preamble");
    CHECK(!memcmp(hdr + 10, dict, strlen(dict)), "dict text");
    CHECK(hdr[127] == '\n' && hdr[126] == ' ', "padding and newline");
    at_tensor t1 = {AT_I64, AT_SHAPE(7), NULL};
    int64_t z[7] = {0};
    t1.data = z;
    h = at_npy_header(&t1, hdr, sizeof hdr, &e);
    CHECK(strstr(hdr + 10, "'shape': (7,), }") != NULL, "1-D tuple has a trailing comma");
    at_tensor t0 = {AT_BOOL, AT_SCALAR, z};
    h = at_npy_header(&t0, hdr, sizeof hdr, &e);
    CHECK(strstr(hdr + 10, "'descr': '|b1'") && strstr(hdr + 10, "'shape': (), }"), "scalar");

    /* Variants NumPy and other writers produce: key order, quotes, spacing, v2 and v3. */
    at_npy_info info;
    CHECK_OK(parse_text(1, "{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}  \n", v, 24,
                        &info, &e));
    CHECK(info.shape.rank == 2 && info.shape.dim[1] == 3, "any key order");
    CHECK_OK(parse_text(2, "{\"descr\":\"<i4\",\"fortran_order\":False,\"shape\":(6,)}\n", v, 24,
                        &info, &e));
    CHECK(info.dtype == AT_I32 && info.major == 2 && info.data_offset == 12 + 51, "v2, quotes");
    CHECK_OK(parse_text(3, "{'descr': '|u1', 'fortran_order': False, 'shape': (4, ), }\n", v, 4,
                        &info, &e));
    CHECK(info.dtype == AT_U8 && info.major == 3 && info.shape.dim[0] == 4, "v3");
    CHECK_OK(parse_text(1, "{'descr': '<u1', 'fortran_order': False, 'shape': (4,), }\n", v, 4,
                        &info, &e));
    CHECK(info.dtype == AT_U8, "'<u1' is '|u1'");
    CHECK_OK(parse_text(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }\n", v, 0,
                        &info, &e));
    CHECK(info.data_bytes == 0, "empty array");
}

typedef struct bad_case {
    int major;
    const char *header;
    size_t data; /* data bytes after the header */
    at_status want;
    const char *msg; /* a substring of the message */
} bad_case;

static void test_malformed(void) {
    static const bad_case cases[] = {
        {1, "{'descr': '<f4', 'fortran_order': False}\n", 0, AT_E_FORMAT, "no 'shape'"},
        {1, "{'descr': '<f4', 'shape': (1,)}\n", 4, AT_E_FORMAT, "no 'fortran_order'"},
        {1, "{'fortran_order': False, 'shape': (1,)}\n", 4, AT_E_FORMAT, "no 'descr'"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}\n", 4, AT_E_FORMAT,
         "unknown key 'x'"},
        {1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}\n", 4,
         AT_E_FORMAT, "twice"},
        {1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2)}\n", 16, AT_E_UNSUPPORTED,
         "Fortran"},
        {1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}\n", 4, AT_E_FORMAT,
         "neither True nor False"},
        {1, "{'descr': '<f4', 'fortran_order': Falsey, 'shape': (1,)}\n", 4, AT_E_FORMAT,
         "neither True nor False"},
        {1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1,)}\n", 8, AT_E_UNSUPPORTED,
         "float64"},
        {1, "{'descr': '>f4', 'fortran_order': False, 'shape': (1,)}\n", 4, AT_E_UNSUPPORTED,
         "big-endian"},
        {1, "{'descr': '|O', 'fortran_order': False, 'shape': (1,)}\n", 8, AT_E_UNSUPPORTED,
         "not supported"},
        {1, "{'descr': '<U3', 'fortran_order': False, 'shape': (1,)}\n", 12, AT_E_UNSUPPORTED,
         "'<U3'"},
        {1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,)}\n", 4,
         AT_E_UNSUPPORTED, "structured"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3)}\n", 12, AT_E_FORMAT,
         "not a tuple"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': 3}\n", 12, AT_E_FORMAT,
         "not a tuple"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}\n", 4, AT_E_FORMAT,
         "non-negative integers"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2.5,)}\n", 4, AT_E_FORMAT,
         "expected ','"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 1, 1, 1)}\n", 4,
         AT_E_FORMAT, "more than 8 dims"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", 4, AT_E_FORMAT, "newline"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)\n", 4, AT_E_FORMAT,
         "expected ',' or '}'"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} x\n", 4, AT_E_FORMAT,
         "after the closing"},
        {1, "{'descr': '<f4, 'fortran_order': False, 'shape': (1,)}\n", 4, AT_E_FORMAT,
         "expected ','"},
        {1, "{'descr': '<f4\\', 'fortran_order': False, 'shape': (1,)}\n", 4, AT_E_FORMAT,
         "unexpected character"},
        {1, "{'descr': '\xc3\xa9', 'fortran_order': False, 'shape': (1,)}\n", 4, AT_E_FORMAT,
         "byte 0xc3"},
        {1, "['descr', '<f4']\n", 4, AT_E_FORMAT, "expected '{'"},
        {1, "\n", 0, AT_E_FORMAT, "expected '{'"},
        /* Sizes: the header's promise against the file's length. */
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}\n", 20, AT_E_FORMAT,
         "truncated"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}\n", 28, AT_E_FORMAT,
         "4 bytes after the data"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627777,)}\n", 4, AT_E_FORMAT,
         "absurd shape"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,)}\n", 4,
         AT_E_FORMAT, "absurd shape"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1099511627776)}\n",
         4, AT_E_FORMAT, "absurd shape"},
        {1,
         "{'descr': '<i8', 'fortran_order': False, 'shape': (65536, 65536, 65536, 65536, 65536)}\n",
         64, AT_E_FORMAT, "absurd shape"},
    };
    char data[64] = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_case *c = &cases[i];
        at_npy_info info;
        at_err e = {0};
        at_status st = parse_text(c->major, c->header, data, c->data, &info, &e);
        CHECK(st == c->want, "case %zu (%s): status %s, want %s (%s)", i, c->header,
              at_status_str(st), at_status_str(c->want), e.msg);
        CHECK(strstr(e.msg, c->msg) != NULL, "case %zu: message '%s' lacks '%s'", i, e.msg, c->msg);
        CHECK(strncmp(e.msg, "t.npy: ", 7) == 0, "case %zu: message '%s' names no file", i, e.msg);
    }

    /* Preamble errors. */
    at_npy_info info;
    at_err e = {0};
    CHECK(at_npy_parse("", 0, "t.npy", &info, &e) == AT_E_FORMAT && strstr(e.msg, "empty"), "%s",
          e.msg);
    CHECK(at_npy_parse("\x93NUM", 4, "t.npy", &info, &e) == AT_E_FORMAT &&
              strstr(e.msg, "truncated"),
          "%s", e.msg);
    CHECK(at_npy_parse("GIF89a....", 10, "t.npy", &info, &e) == AT_E_FORMAT &&
              strstr(e.msg, "bad magic"),
          "%s", e.msg);
    CHECK(at_npy_parse("PK\x03\x04......", 10, "t.npy", &info, &e) == AT_E_FORMAT &&
              strstr(e.msg, ".npz"),
          "%s", e.msg);
    CHECK(at_npy_parse("\x93NUMPY\x04\x00\x10\x00", 10, "t.npy", &info, &e) == AT_E_UNSUPPORTED &&
              strstr(e.msg, "version 4.0"),
          "%s", e.msg);
    CHECK(at_npy_parse("\x93NUMPY\x01\x01\x10\x00", 10, "t.npy", &info, &e) == AT_E_UNSUPPORTED,
          "%s", e.msg);
    CHECK(at_npy_parse("\x93NUMPY\x01\x00\xff\xff", 10, "t.npy", &info, &e) == AT_E_FORMAT &&
              strstr(e.msg, "truncated"),
          "%s", e.msg);
    CHECK(at_npy_parse("\x93NUMPY\x02\x00\x00\x00\x00\x10", 12, "t.npy", &info, &e) ==
                  AT_E_FORMAT &&
              strstr(e.msg, "absurd"),
          "v2 header of 256 MiB: %s", e.msg);

    /* Bool bytes other than 0 and 1. */
    unsigned char bools[3] = {0, 1, 2};
    at_status st = parse_text(1, "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }\n",
                              bools, 3, &info, &e);
    CHECK(st == AT_E_FORMAT && strstr(e.msg, "element 2"), "%s", e.msg);
}

/* Every prefix of a valid file fails cleanly; so does any one-byte change to the header that
 * makes it invalid, and a change that keeps it valid keeps the sizes consistent. */
static void test_truncation_and_mutation(void) {
    float v[6] = {1, 2, 3, 4, 5, 6};
    at_tensor t = {AT_F32, AT_SHAPE(2, 3), v};
    void *buf;
    size_t len;
    at_err e = {0};
    CHECK_OK(at_npy_encode(&t, &buf, &len, &e));
    at_npy_info info;
    int ok = 0;
    for (size_t n = 0; n < len; n++) ok += at_npy_parse(buf, n, "t.npy", &info, &e) == AT_OK;
    CHECK(ok == 0, "%d prefixes parsed", ok);
    unsigned char *m = malloc(len);
    unsigned seed = 12345;
    for (int it = 0; it < 20000; it++) {
        memcpy(m, buf, len);
        for (int k = 0; k < 1 + it % 3; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = (seed >> 8) % 128;
            seed = seed * 1103515245u + 12345u;
            m[pos] = (unsigned char)(seed >> 16);
        }
        if (at_npy_parse(m, len, "t.npy", &info, &e) == AT_OK) {
            CHECK(info.data_offset + info.data_bytes == len, "consistent sizes");
            CHECK(at_shape_numel(&info.shape) * (int64_t)at_dtype_size(info.dtype) ==
                      (int64_t)info.data_bytes,
                  "numel");
        } else {
            CHECK(e.msg[0] != 0, "an error has a message");
        }
    }
    free(m);
    free(buf);
}

static void test_files(void) {
    at_tensor r;
    at_err e = {0};
    CHECK(at_npy_read("/nonexistent/x.npy", &r, &e) == AT_E_IO &&
              strstr(e.msg, "/nonexistent/x.npy"),
          "%s", e.msg);
    CHECK(at_npy_read("/tmp", &r, &e) == AT_E_IO && strstr(e.msg, "not a regular file"), "%s",
          e.msg);
    float v = 1;
    at_tensor t = {AT_F32, AT_SCALAR, &v};
    CHECK(at_npy_write("/nonexistent/dir/x.npy", &t, &e) == AT_E_IO &&
              strstr(e.msg, "/nonexistent/dir/x.npy"),
          "%s", e.msg);
    at_tensor bf = {AT_BF16, AT_SHAPE(1), &v};
    CHECK(at_npy_write("/tmp/attune_bf16.npy", &bf, &e) == AT_E_UNSUPPORTED &&
              strstr(e.msg, "bfloat16") && access("/tmp/attune_bf16.npy", F_OK) != 0,
          "%s", e.msg);

    /* A file whose header says more data than it has, read from disk. */
    char path[] = "/tmp/attune_npy_trunc_XXXXXX";
    int fd = mkstemp(path);
    size_t len;
    unsigned char *b =
        make_file(1, "{'descr': '<i8', 'fortran_order': False, 'shape': (1000000000,), }\n",
                  "12345678", 8, &len);
    CHECK(write(fd, b, len) == (ssize_t)len, "write");
    close(fd);
    CHECK(at_npy_read(path, &r, &e) == AT_E_FORMAT && strstr(e.msg, "truncated") &&
              strstr(e.msg, path),
          "%s", e.msg);
    free(b);
    unlink(path);
}

int main(void) {
    test_round_trips();
    test_numpy_layout();
    test_malformed();
    test_truncation_and_mutation();
    test_files();
    return check_done("test_npy");
}
