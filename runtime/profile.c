/* The text form of a session's kernel profile (opts.profile): what `attune run --profile`,
 * `attune bench --profile` and bench/infer.c print. Built on the public at_session_profile. */
#include <stdlib.h>
#include <string.h>

#include "attune/session.h"

typedef struct op_total {
    const char *op_type;
    int64_t calls;
    double ms;
} op_total;

static int cmp_total(const void *a, const void *b) {
    double x = ((const op_total *)a)->ms, y = ((const op_total *)b)->ms;
    return (x < y) - (x > y);
}

/* Sums rows by op type into t (room for n); returns the number of types. */
static int by_op_type(const at_profile_entry *rows, int n, op_total *t) {
    int nt = 0;
    for (int i = 0; i < n; i++) {
        int k = 0;
        while (k < nt && strcmp(t[k].op_type, rows[i].op_type)) k++;
        if (k == nt) t[nt++] = (op_total){rows[i].op_type, 0, 0.0};
        t[k].calls += rows[i].calls;
        t[k].ms += rows[i].ms;
    }
    qsort(t, (size_t)nt, sizeof *t, cmp_total);
    return nt;
}

at_status at_session_profile_write(const at_session *s, FILE *f, int top) {
    if (!s || !f) return AT_E_INVALID;
    int n = at_session_profile(s, NULL, 0);
    if (n < 0) return AT_E_NOMEM;
    at_profile_entry *rows = malloc(sizeof *rows * (size_t)(n + 1));
    op_total *t = malloc(sizeof *t * (size_t)(n + 1));
    if (!rows || !t || at_session_profile(s, rows, n) != n) {
        free(rows), free(t);
        return AT_E_NOMEM;
    }
    double total = 0.0;
    int64_t runs = 0;
    for (int i = 0; i < n; i++) {
        total += rows[i].ms;
        if (rows[i].calls > runs) runs = rows[i].calls;
    }
    if (!runs) runs = 1;
    fprintf(f, "profile: %d nodes, %lld runs, %.3f ms of kernels (%.3f ms a run)\n", n,
            (long long)runs, total, total / (double)runs);
    int nt = by_op_type(rows, n, t);
    fprintf(f, "  %-28s %7s %9s %12s\n", "op type", "share", "calls", "ms a run");
    for (int i = 0; i < nt; i++)
        fprintf(f, "  %-28s %6.1f%% %9lld %12.4f\n", t[i].op_type,
                total > 0 ? 100.0 * t[i].ms / total : 0.0, (long long)t[i].calls,
                t[i].ms / (double)runs);
    if (top <= 0) top = 10;
    fprintf(f, "  top nodes:\n");
    for (int i = 0; i < n && i < top; i++)
        fprintf(f, "  %-28s %6.1f%% %9lld %12.4f  %s\n", rows[i].op_type,
                total > 0 ? 100.0 * rows[i].ms / total : 0.0, (long long)rows[i].calls,
                rows[i].ms / (double)runs, rows[i].node);
    free(rows), free(t);
    return AT_OK;
}
