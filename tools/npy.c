/* NumPy .npy reader and writer (see npy.h). The format: the magic "\x93NUMPY", a major and a
 * minor version byte, the header length (uint16 LE in 1.0, uint32 LE in 2.0 and 3.0), the
 * header (a Python dict literal padded with spaces and ended by '\n'), then the raw data. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "npy.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#error "npy.c reads and writes little-endian data in place: port it before using a big-endian host"
#endif

static const unsigned char MAGIC[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
/* No real array has a dim this large; it keeps products of dims far from overflow. */
#define MAX_DIM ((int64_t)1 << 40)

static const struct {
    const char *descr;
    at_dtype dt;
} DESCRS[] = {
    {"<f4", AT_F32}, {"<f2", AT_F16}, {"<i8", AT_I64},  {"<i4", AT_I32},
    {"|i1", AT_I8},  {"|u1", AT_U8},  {"|b1", AT_BOOL},
};

const char *at_npy_descr(at_dtype dt) {
    for (size_t i = 0; i < sizeof DESCRS / sizeof DESCRS[0]; i++)
        if (DESCRS[i].dt == dt) return DESCRS[i].descr;
    return NULL;
}

/* ---- header parsing ---- */

typedef struct hp {
    const char *s, *end;
    const char *name;
    at_err *err;
} hp;

static void skip_ws(hp *p) {
    while (p->s < p->end && (*p->s == ' ' || *p->s == '\t')) p->s++;
}

static bool lit(hp *p, char c) {
    skip_ws(p);
    if (p->s < p->end && *p->s == c) {
        p->s++;
        return true;
    }
    return false;
}

static at_status bad(hp *p, const char *what) {
    return at_err_set(p->err, AT_E_FORMAT, "%s: malformed .npy header: %s", p->name, what);
}

/* A quoted string without escapes (NumPy writes none in these keys and values). */
static at_status str(hp *p, const char **s, size_t *n) {
    skip_ws(p);
    if (p->s >= p->end || (*p->s != '\'' && *p->s != '"')) return bad(p, "expected a string");
    char q = *p->s++;
    const char *b = p->s;
    while (p->s < p->end && *p->s != q) {
        if (*p->s == '\\' || *p->s == '\n') return bad(p, "unexpected character in a string");
        p->s++;
    }
    if (p->s >= p->end) return bad(p, "unterminated string");
    *s = b;
    *n = (size_t)(p->s - b);
    p->s++;
    return AT_OK;
}

static bool word(hp *p, const char *w) {
    skip_ws(p);
    size_t n = strlen(w);
    if ((size_t)(p->end - p->s) >= n && !memcmp(p->s, w, n)) {
        const char *after = p->s + n;
        if (after < p->end &&
            ((*after >= 'a' && *after <= 'z') || (*after >= 'A' && *after <= 'Z') ||
             (*after >= '0' && *after <= '9') || *after == '_'))
            return false;
        p->s = after;
        return true;
    }
    return false;
}

static at_status parse_shape(hp *p, at_shape *shape) {
    if (!lit(p, '(')) return bad(p, "'shape' is not a tuple");
    shape->rank = 0;
    bool comma_after_last = false;
    for (;;) {
        skip_ws(p);
        if (lit(p, ')')) break;
        if (p->s >= p->end || *p->s < '0' || *p->s > '9')
            return bad(p, "'shape' holds something other than non-negative integers");
        int64_t d = 0;
        while (p->s < p->end && *p->s >= '0' && *p->s <= '9') {
            if (d > MAX_DIM)
                return at_err_set(p->err, AT_E_FORMAT, "%s: absurd shape: a dim over 2^40",
                                  p->name);
            d = d * 10 + (*p->s++ - '0');
        }
        if (d > MAX_DIM)
            return at_err_set(p->err, AT_E_FORMAT, "%s: absurd shape: dim %" PRId64 " is over 2^40",
                              p->name, d);
        if (shape->rank == AT_MAX_RANK)
            return at_err_set(p->err, AT_E_FORMAT,
                              "%s: the array has more than %d dims (attune's limit)", p->name,
                              AT_MAX_RANK);
        shape->dim[shape->rank++] = d;
        comma_after_last = lit(p, ',');
        if (!comma_after_last) {
            if (!lit(p, ')')) return bad(p, "expected ',' or ')' in 'shape'");
            break;
        }
    }
    /* Python: "(3)" is the integer 3; a 1-tuple is "(3,)". */
    if (shape->rank == 1 && !comma_after_last) return bad(p, "'shape' (n) is not a tuple");
    return AT_OK;
}

static at_status dtype_of(hp *p, const char *d, size_t n, at_dtype *dt) {
    for (size_t i = 0; i < sizeof DESCRS / sizeof DESCRS[0]; i++) {
        const char *x = DESCRS[i].descr;
        if (strlen(x) != n) continue;
        if (!memcmp(x, d, n)) {
            *dt = DESCRS[i].dt;
            return AT_OK;
        }
        /* Byte-sized types have no byte order: '<u1' and '=u1' are '|u1'. */
        if (x[0] == '|' && (d[0] == '<' || d[0] == '=') && !memcmp(x + 1, d + 1, n - 1)) {
            *dt = DESCRS[i].dt;
            return AT_OK;
        }
    }
    const char *supported = "float32 '<f4', float16 '<f2', int64 '<i8', int32 '<i4', int8 "
                            "'|i1', uint8 '|u1', bool '|b1'";
    int nn = n > 32 ? 32 : (int)n;
    if (n == 3 && d[0] == '>' && d[2] != '1')
        return at_err_set(p->err, AT_E_UNSUPPORTED,
                          "%s: big-endian dtype '%.*s' is not supported; save it little-endian "
                          "(x.astype(x.dtype.newbyteorder('<')))",
                          p->name, nn, d);
    if (n == 3 && !memcmp(d + 1, "f8", 2))
        return at_err_set(p->err, AT_E_UNSUPPORTED,
                          "%s: dtype float64 ('%.*s') is not supported; save float32 "
                          "(x.astype(numpy.float32))",
                          p->name, nn, d);
    return at_err_set(p->err, AT_E_UNSUPPORTED, "%s: dtype '%.*s' is not supported (supported: %s)",
                      p->name, nn, d, supported);
}

at_status at_npy_parse_header(const void *buf, size_t len, size_t file_len, const char *name,
                              at_npy_info *info, at_err *err) {
    const unsigned char *b = buf;
    if (!name) name = "<npy>";
    if (!info || (!buf && len)) return at_err_set(err, AT_E_INVALID, "%s: NULL argument", name);
    memset(info, 0, sizeof *info);
    if (len > file_len) len = file_len;
    if (file_len == 0)
        return at_err_set(err, AT_E_FORMAT, "%s: empty file (not a .npy file)", name);
    if (len < sizeof MAGIC || memcmp(b, MAGIC, sizeof MAGIC)) {
        if (len >= 4 && !memcmp(b, "PK\x03\x04", 4))
            return at_err_set(err, AT_E_FORMAT,
                              "%s: a zip archive (.npz?), not a .npy file; save each array "
                              "with numpy.save",
                              name);
        if (len < sizeof MAGIC && file_len < sizeof MAGIC)
            return at_err_set(err, AT_E_FORMAT, "%s: truncated: %zu bytes, not a .npy file", name,
                              file_len);
        return at_err_set(err, AT_E_FORMAT, "%s: not a .npy file (bad magic)", name);
    }
    if (len < 8) return at_err_set(err, AT_E_FORMAT, "%s: truncated .npy preamble", name);
    int major = b[6], minor = b[7];
    if (major < 1 || major > 3 || minor != 0)
        return at_err_set(err, AT_E_UNSUPPORTED,
                          "%s: .npy format version %d.%d is not supported (1.0, 2.0, 3.0 are)",
                          name, major, minor);
    size_t pre = major == 1 ? 10 : 12;
    if (len < pre) return at_err_set(err, AT_E_FORMAT, "%s: truncated .npy preamble", name);
    size_t hlen =
        major == 1 ? (size_t)b[8] | (size_t)b[9] << 8
                   : (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
    if (hlen > AT_NPY_MAX_HEADER)
        return at_err_set(err, AT_E_FORMAT, "%s: .npy header of %zu bytes is absurd (limit %d)",
                          name, hlen, AT_NPY_MAX_HEADER);
    if (pre + hlen > file_len)
        return at_err_set(err, AT_E_FORMAT,
                          "%s: truncated: the header needs %zu bytes, the file has %zu", name,
                          pre + hlen, file_len);
    if (pre + hlen > len)
        return at_err_set(err, AT_E_INVALID, "%s: the buffer holds only part of the header", name);
    const char *h = (const char *)b + pre;
    for (size_t i = 0; i < hlen; i++)
        if ((unsigned char)h[i] >= 0x80 || (h[i] < 0x20 && h[i] != '\n' && h[i] != '\t'))
            return at_err_set(err, AT_E_FORMAT, "%s: malformed .npy header: byte 0x%02x at %zu",
                              name, (unsigned char)h[i], i);
    if (hlen == 0 || h[hlen - 1] != '\n')
        return at_err_set(err, AT_E_FORMAT,
                          "%s: malformed .npy header: it does not end with a "
                          "newline",
                          name);
    hp p = {h, h + hlen - 1, name, err};
    at_status st;
    if (!lit(&p, '{')) return bad(&p, "expected '{'");
    bool have_descr = false, have_fortran = false, have_shape = false, fortran = false;
    const char *descr = NULL;
    size_t descr_n = 0;
    at_shape shape = {0};
    for (;;) {
        if (lit(&p, '}')) break;
        const char *k;
        size_t kn;
        if ((st = str(&p, &k, &kn)) != AT_OK) return st;
        if (!lit(&p, ':')) return bad(&p, "expected ':' after a key");
        if (kn == 5 && !memcmp(k, "descr", 5)) {
            if (have_descr) return bad(&p, "'descr' given twice");
            have_descr = true;
            skip_ws(&p);
            if (p.s < p.end && *p.s == '[')
                return at_err_set(err, AT_E_UNSUPPORTED,
                                  "%s: structured dtypes are not supported; save a plain array",
                                  name);
            if ((st = str(&p, &descr, &descr_n)) != AT_OK) return st;
        } else if (kn == 13 && !memcmp(k, "fortran_order", 13)) {
            if (have_fortran) return bad(&p, "'fortran_order' given twice");
            have_fortran = true;
            if (word(&p, "True"))
                fortran = true;
            else if (!word(&p, "False"))
                return bad(&p, "'fortran_order' is neither True nor False");
        } else if (kn == 5 && !memcmp(k, "shape", 5)) {
            if (have_shape) return bad(&p, "'shape' given twice");
            have_shape = true;
            if ((st = parse_shape(&p, &shape)) != AT_OK) return st;
        } else {
            char msg[96];
            snprintf(msg, sizeof msg, "unknown key '%.*s'", kn > 32 ? 32 : (int)kn, k);
            return bad(&p, msg);
        }
        if (!lit(&p, ',')) {
            if (!lit(&p, '}')) return bad(&p, "expected ',' or '}'");
            break;
        }
    }
    skip_ws(&p);
    if (p.s != p.end) return bad(&p, "text after the closing '}'");
    if (!have_descr || !have_fortran || !have_shape)
        return bad(&p, !have_descr     ? "no 'descr'"
                       : !have_fortran ? "no 'fortran_order'"
                                       : "no 'shape'");
    at_dtype dt = AT_UNDEFINED;
    if ((st = dtype_of(&p, descr, descr_n, &dt)) != AT_OK) return st;
    /* Rank < 2 arrays are the same in either order, and NumPy writes them as C order, but a
     * file saying True was written by someone who meant it: reject it all the same. */
    if (fortran)
        return at_err_set(err, AT_E_UNSUPPORTED,
                          "%s: Fortran-order arrays are not supported; save a C-order copy "
                          "(numpy.ascontiguousarray(x))",
                          name);
    size_t esz = at_dtype_size(dt);
    size_t avail = file_len - pre - hlen;
    /* Elements that fit in the file bound the product before it can overflow. */
    size_t numel = 1, cap = avail / esz;
    bool zero = false;
    for (int i = 0; i < shape.rank; i++)
        if (shape.dim[i] == 0) zero = true;
    if (zero) {
        numel = 0;
    } else {
        for (int i = 0; i < shape.rank; i++) {
            size_t d = (size_t)shape.dim[i];
            if (numel > cap / d) {
                char sb[160];
                return at_err_set(err, AT_E_FORMAT,
                                  "%s: truncated or absurd shape: %s needs more than the %zu data "
                                  "bytes in the file",
                                  name, at_shape_str(&shape, sb, sizeof sb), avail);
            }
            numel *= d;
        }
    }
    size_t need = numel * esz;
    if (need != avail) {
        char sb[160];
        at_shape_str(&shape, sb, sizeof sb);
        if (need > avail)
            return at_err_set(err, AT_E_FORMAT,
                              "%s: truncated: %s %s needs %zu data bytes, the file has %zu", name,
                              at_dtype_name(dt), sb, need, avail);
        return at_err_set(err, AT_E_FORMAT,
                          "%s: %zu bytes after the data of %s %s (not one .npy array?)", name,
                          avail - need, at_dtype_name(dt), sb);
    }
    info->dtype = dt;
    info->shape = shape;
    info->major = major;
    info->minor = minor;
    info->data_offset = pre + hlen;
    info->data_bytes = need;
    return AT_OK;
}

static at_status check_bools(const unsigned char *d, size_t n, const char *name, at_err *err) {
    for (size_t i = 0; i < n; i++)
        if (d[i] > 1)
            return at_err_set(err, AT_E_FORMAT, "%s: bool element %zu is %u, not 0 or 1", name, i,
                              d[i]);
    return AT_OK;
}

at_status at_npy_parse(const void *buf, size_t len, const char *name, at_npy_info *info,
                       at_err *err) {
    at_status st = at_npy_parse_header(buf, len, len, name, info, err);
    if (st != AT_OK) return st;
    if (info->dtype == AT_BOOL)
        return check_bools((const unsigned char *)buf + info->data_offset, info->data_bytes,
                           name ? name : "<npy>", err);
    return AT_OK;
}

/* ---- files ---- */

static bool read_full(int fd, void *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        got += (size_t)r;
    }
    return true;
}

at_status at_npy_read(const char *path, at_tensor *out, at_err *err) {
    if (!path || !out) return at_err_set(err, AT_E_INVALID, "at_npy_read: NULL argument");
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return at_err_set(err, AT_E_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        at_status st = at_err_set(err, AT_E_IO, "%s: %s", path, strerror(errno));
        close(fd);
        return st;
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return at_err_set(err, AT_E_IO, "%s: not a regular file", path);
    }
    size_t file_len = (size_t)sb.st_size;
    unsigned char pre[12 + AT_NPY_MAX_HEADER];
    size_t n = file_len < sizeof pre ? file_len : sizeof pre;
    if (!read_full(fd, pre, n)) {
        close(fd);
        return at_err_set(err, AT_E_IO, "%s: read failed", path);
    }
    at_npy_info info;
    at_status st = at_npy_parse_header(pre, n, file_len, path, &info, err);
    if (st != AT_OK) {
        close(fd);
        return st;
    }
    void *data = malloc(info.data_bytes ? info.data_bytes : 1);
    if (!data) {
        close(fd);
        return at_err_set(err, AT_E_NOMEM, "%s: out of memory for %zu bytes", path,
                          info.data_bytes);
    }
    if (lseek(fd, (off_t)info.data_offset, SEEK_SET) < 0 || !read_full(fd, data, info.data_bytes)) {
        free(data);
        close(fd);
        return at_err_set(err, AT_E_IO, "%s: short read (did the file change?)", path);
    }
    close(fd);
    if (info.dtype == AT_BOOL && (st = check_bools(data, info.data_bytes, path, err)) != AT_OK) {
        free(data);
        return st;
    }
    out->dtype = info.dtype;
    out->shape = info.shape;
    out->data = data;
    return AT_OK;
}

/* ---- writing ---- */

size_t at_npy_header(const at_tensor *t, char *buf, size_t cap, at_err *err) {
    const char *descr = t ? at_npy_descr(t->dtype) : NULL;
    if (!descr) {
        at_err_set(err, AT_E_UNSUPPORTED, "dtype %s cannot be written as .npy",
                   t ? at_dtype_name(t->dtype) : "?");
        return 0;
    }
    if (t->shape.rank < 0 || t->shape.rank > AT_MAX_RANK || !at_shape_is_concrete(&t->shape)) {
        at_err_set(err, AT_E_INVALID, "cannot write a tensor with rank %d or symbolic dims",
                   (int)t->shape.rank);
        return 0;
    }
    char dict[512];
    int n =
        snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < t->shape.rank; i++)
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%s%" PRId64, i ? ", " : "",
                      t->shape.dim[i]);
    n += snprintf(dict + n, sizeof dict - (size_t)n, "%s), }", t->shape.rank == 1 ? "," : "");
    size_t pre = 10, total = pre + (size_t)n + 1;
    total = (total + 63) / 64 * 64;
    int major = 1;
    if (total - pre > 65535) {
        pre = 12;
        total = (pre + (size_t)n + 1 + 63) / 64 * 64;
        major = 2;
    }
    if (total > cap) {
        at_err_set(err, AT_E_INVALID, "header buffer too small (%zu < %zu)", cap, total);
        return 0;
    }
    size_t hlen = total - pre;
    memcpy(buf, MAGIC, sizeof MAGIC);
    buf[6] = (char)major;
    buf[7] = 0;
    buf[8] = (char)(hlen & 0xff);
    buf[9] = (char)(hlen >> 8 & 0xff);
    if (major == 2) {
        buf[10] = (char)(hlen >> 16 & 0xff);
        buf[11] = (char)(hlen >> 24 & 0xff);
    }
    memcpy(buf + pre, dict, (size_t)n);
    memset(buf + pre + n, ' ', hlen - (size_t)n - 1);
    buf[total - 1] = '\n';
    return total;
}

at_status at_npy_encode(const at_tensor *t, void **buf, size_t *len, at_err *err) {
    if (!t || !buf || !len) return at_err_set(err, AT_E_INVALID, "at_npy_encode: NULL argument");
    char hdr[1024];
    size_t h = at_npy_header(t, hdr, sizeof hdr, err);
    if (!h) return err ? err->code : AT_E_INVALID;
    size_t nb = at_tensor_nbytes(t);
    if (nb && !t->data) return at_err_set(err, AT_E_INVALID, "at_npy_encode: no data");
    char *b = malloc(h + nb);
    if (!b) return at_err_set(err, AT_E_NOMEM, "out of memory for %zu bytes", h + nb);
    memcpy(b, hdr, h);
    if (nb) memcpy(b + h, t->data, nb);
    *buf = b;
    *len = h + nb;
    return AT_OK;
}

static bool write_full(int fd, const void *buf, size_t n) {
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, (const char *)buf + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        done += (size_t)w;
    }
    return true;
}

at_status at_npy_write(const char *path, const at_tensor *t, at_err *err) {
    if (!path || !t) return at_err_set(err, AT_E_INVALID, "at_npy_write: NULL argument");
    char hdr[1024];
    size_t h = at_npy_header(t, hdr, sizeof hdr, err);
    if (!h) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
        return at_err_set(err, err ? err->code : AT_E_INVALID, "%s: %s", path, msg);
    }
    size_t nb = at_tensor_nbytes(t);
    if (nb && !t->data) return at_err_set(err, AT_E_INVALID, "%s: no data to write", path);
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 16);
    if (!tmp) return at_err_set(err, AT_E_NOMEM, "out of memory");
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        at_status st = at_err_set(err, AT_E_IO, "%s: cannot create: %s", path, strerror(errno));
        free(tmp);
        return st;
    }
    mode_t um = umask(0);
    umask(um);
    at_status st = AT_OK;
    if (!write_full(fd, hdr, h) || (nb && !write_full(fd, t->data, nb)))
        st = at_err_set(err, AT_E_IO, "%s: write failed: %s", path, strerror(errno));
    else if (fchmod(fd, 0666 & ~um) != 0 || fsync(fd) != 0)
        st = at_err_set(err, AT_E_IO, "%s: write failed: %s", path, strerror(errno));
    if (close(fd) != 0 && st == AT_OK)
        st = at_err_set(err, AT_E_IO, "%s: write failed: %s", path, strerror(errno));
    if (st == AT_OK && rename(tmp, path) != 0)
        st = at_err_set(err, AT_E_IO, "%s: %s", path, strerror(errno));
    if (st != AT_OK) unlink(tmp);
    free(tmp);
    return st;
}
