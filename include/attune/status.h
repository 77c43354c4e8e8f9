/* Status codes and error reports, shared by every attune call.
 *
 * Error handling follows one pattern throughout the API: a call returns an
 * at_status (AT_OK == 0 on success), or a pointer that is NULL on failure,
 * and the message saying what failed, where and why goes to one of three
 * places, stated per function:
 *   - an at_err * argument (functions with no object to keep it in);
 *   - the graph (builder calls: at_graph_status / at_graph_error);
 *   - the session (at_session_run: at_session_error).
 * Bad input gives an error status, never an abort. */
#ifndef ATTUNE_STATUS_H
#define ATTUNE_STATUS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum at_status {
    AT_OK = 0,
    AT_E_INVALID = 1,     /* bad argument, bad usage or bad input data */
    AT_E_SHAPE = 2,       /* shape or dtype mismatch */
    AT_E_NOMEM = 3,       /* allocation failed or size absurd */
    AT_E_IO = 4,          /* file system error */
    AT_E_FORMAT = 5,      /* corrupt or unsupported file contents */
    AT_E_UNSUPPORTED = 6, /* op, attribute or feature not implemented */
    AT_E_NUMERIC = 7,     /* non-finite value where a finite one is required */
    AT_E_INTERNAL = 8,    /* a bug in attune */
    AT_E_DEVICE = 9,      /* CUDA, cuBLAS or cuDNN failure, or no device */
} at_status;

/* The constant's name of a status ("AT_E_SHAPE"); "AT_E_UNKNOWN" for a value
 * that is no at_status. Never NULL; the string is static (do not free).
 * Thread-safe. */
const char *at_status_str(at_status s);

/* An error report: a status and a message that says what, where and why.
 * Functions that have no object to keep their error in take an at_err *,
 * which may be NULL when the caller does not want the message. The caller
 * owns the struct (usually on the stack). Its contents mean something only
 * after a call has failed; a successful call may leave it untouched. Use one
 * at_err per thread. */
typedef struct at_err {
    at_status code;
    char msg[1024];
} at_err;

/* Sets e->code and e->msg (printf-style, truncated to fit) when e is
 * non-NULL, and returns code, so `return at_err_set(e, AT_E_IO, ...)` reports
 * and returns in one line. For callers that extend attune (their own ops,
 * loaders) as much as for attune itself. Thread-safe for distinct e. */
at_status at_err_set(at_err *e, at_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#ifdef __cplusplus
}
#endif
#endif
