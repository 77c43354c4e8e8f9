/* Status names, error reports, quoting untrusted text in them, and the version query. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "attune/attune.h"
#include "graph/quote.h"

const char *at_status_str(at_status s) {
    switch (s) {
    case AT_OK:
        return "AT_OK";
    case AT_E_INVALID:
        return "AT_E_INVALID";
    case AT_E_SHAPE:
        return "AT_E_SHAPE";
    case AT_E_NOMEM:
        return "AT_E_NOMEM";
    case AT_E_IO:
        return "AT_E_IO";
    case AT_E_FORMAT:
        return "AT_E_FORMAT";
    case AT_E_UNSUPPORTED:
        return "AT_E_UNSUPPORTED";
    case AT_E_NUMERIC:
        return "AT_E_NUMERIC";
    case AT_E_INTERNAL:
        return "AT_E_INTERNAL";
    case AT_E_DEVICE:
        return "AT_E_DEVICE";
    }
    return "AT_E_UNKNOWN";
}

at_status at_err_set(at_err *e, at_status code, const char *fmt, ...) {
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        e->code = code;
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *at_version(void) {
    return AT_VERSION_STRING;
}

size_t at_utf8_seq(const unsigned char *p, size_t n) {
    unsigned char c = p[0];
    if (c < 0x80) return 1;
    size_t len;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff))) return 0;
    if (cp >= 0xd800 && cp <= 0xdfff) return 0;
    return len;
}

size_t at_escape(char *dst, size_t cap, const char *s, size_t n, size_t limit) {
    if (cap == 0) return 0;
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, k = 0;
    if (limit > n) limit = n;
    while (i < limit) {
        size_t len = u[i] < 0x20 || u[i] == 0x7f ? 0 : at_utf8_seq(u + i, n - i);
        /* C1 controls (U+0080..U+009F, 0xc2 0x80..0x9f) move a terminal as C0 ones do. */
        if (len == 2 && u[i] == 0xc2 && u[i + 1] < 0xa0) len = 0;
        if (len > limit - i) break; /* a character cut by the limit: leave it out whole */
        size_t out = len ? len : 4;
        if (k + out >= cap) break;
        if (len) {
            memcpy(dst + k, u + i, len);
        } else {
            snprintf(dst + k, 5, "\\x%02x", u[i]);
            len = 1;
        }
        k += out;
        i += len;
    }
    dst[k] = 0;
    return i;
}

const char *at_quote(char dst[AT_QUOTE_CAP], const char *s) {
    if (!s) s = "";
    size_t n = strlen(s);
    size_t used = at_escape(dst, AT_QUOTE_CAP - 32, s, n, AT_QUOTE_SHOW);
    if (used < n) {
        size_t k = strlen(dst);
        snprintf(dst + k, AT_QUOTE_CAP - k, "... (%zu bytes)", n);
    }
    return dst;
}

void at_msg_escape(char *msg, size_t cap) {
    char tmp[4096];
    size_t n = strnlen(msg, cap);
    if (n >= sizeof tmp) n = sizeof tmp - 1;
    memcpy(tmp, msg, n);
    at_escape(msg, cap, tmp, n, n);
}
