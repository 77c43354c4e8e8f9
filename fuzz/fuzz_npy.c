/* libFuzzer target: the .npy reader on arbitrary bytes.
 *
 * at_npy_parse must accept or refuse any bytes without crashing, and what it accepts must be
 * consistent: the data fill the rest of the buffer exactly, a prefix holding the header parses
 * the same, the file read from disk is the same array, and writing the array back gives a
 * file that parses to the same dtype, shape and bytes. */
#define _GNU_SOURCE /* mkdtemp */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "npy.h"

static char dir[256], path[300];

static void cleanup(void) {
    unlink(path);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    /* Every input is written to a file: memory-backed /dev/shm keeps that cheap. */
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%s/attune_fuzz_npy_XXXXXX", tmp);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        abort();
    }
    snprintf(path, sizeof path, "%s/a.npy", dir);
    atexit(cleanup);
    return 0;
}

static void fail(const char *what, const char *msg) {
    fprintf(stderr, "%s%s%s\n", what, msg ? ": " : "", msg ? msg : "");
    abort();
}

static void check_err(const char *what, at_status st, const at_err *e) {
    if (st != AT_OK && (e->code != st || e->msg[0] == '\0')) fail(what, "error without a message");
}

static int same_info(const at_npy_info *a, const at_npy_info *b) {
    return a->dtype == b->dtype && at_shape_equal(&a->shape, &b->shape) &&
           a->data_bytes == b->data_bytes;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    at_npy_info info;
    at_err e = {0};
    at_status st = at_npy_parse(data, size, "fuzz.npy", &info, &e);
    check_err("at_npy_parse", st, &e);

    /* The file reader sees the same bytes through a prefix buffer and read(). */
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        fail("cannot write the temporary file", path);
    at_tensor t;
    at_err re = {0};
    at_status rst = at_npy_read(path, &t, &re);
    check_err("at_npy_read", rst, &re);
    if ((rst == AT_OK) != (st == AT_OK)) {
        fprintf(stderr, "at_npy_parse says %s (%s), at_npy_read says %s (%s)\n", at_status_str(st),
                e.msg, at_status_str(rst), re.msg);
        abort();
    }
    if (st != AT_OK) return 0;

    if (info.data_offset > size || size - info.data_offset != info.data_bytes)
        fail("at_npy_parse", "the data do not fill the rest of the file");
    if (at_dtype_size(info.dtype) == 0 || !at_npy_descr(info.dtype))
        fail("at_npy_parse", "accepted a dtype it cannot name");
    at_tensor view = {info.dtype, info.shape, (void *)(data + info.data_offset)};
    if (at_tensor_nbytes(&view) != info.data_bytes)
        fail("at_npy_parse", "data_bytes != numel * size");

    at_npy_info pinfo;
    if (at_npy_parse_header(data, info.data_offset, size, "fuzz.npy", &pinfo, &e) != AT_OK ||
        !same_info(&info, &pinfo) || pinfo.data_offset != info.data_offset)
        fail("at_npy_parse_header on the header alone disagrees with at_npy_parse", e.msg);

    if (t.dtype != info.dtype || !at_shape_equal(&t.shape, &info.shape) ||
        (info.data_bytes && memcmp(t.data, view.data, info.data_bytes)))
        fail("at_npy_read disagrees with at_npy_parse", NULL);
    free(t.data);

    void *buf = NULL;
    size_t len = 0;
    if ((st = at_npy_encode(&view, &buf, &len, &e)) != AT_OK)
        fail("at_npy_encode of a parsed array failed", e.msg);
    at_npy_info info2;
    if (at_npy_parse(buf, len, "encoded", &info2, &e) != AT_OK)
        fail("the encoding of a parsed array does not parse", e.msg);
    if (!same_info(&info, &info2) || info2.data_offset % 64 != 0 ||
        (info.data_bytes &&
         memcmp((const char *)buf + info2.data_offset, view.data, info.data_bytes)))
        fail("encode + parse changed the array", NULL);
    free(buf);
    return 0;
}
