/* Status codes returned by every attune call. */
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

/* Short constant name of a status ("AT_E_SHAPE"). Never NULL. Thread-safe. */
const char *at_status_str(at_status s);

/* An error report: a status and a message that says what, where and why.
 * Functions that have no object to keep their error in take an at_err *,
 * which may be NULL when the caller does not want the message. */
typedef struct at_err {
    at_status code;
    char msg[1024];
} at_err;

/* Sets *e (if e is non-NULL) and returns code. printf-style. */
at_status at_err_set(at_err *e, at_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#ifdef __cplusplus
}
#endif
#endif
