/* Status names, error reports and the version query. */
#include <stdarg.h>
#include <stdio.h>

#include "attune/attune.h"

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
