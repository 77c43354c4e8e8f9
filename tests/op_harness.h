/* The table-driven op harness (DESIGN.md section 9). A test file lists
 * op_case rows; oh_run() runs, for each row:
 *   check: the op's outputs against a plain C reference;
 *   grad:  the analytic gradient of L = sum_j w_j . y_j (random w) with
 *          respect to every input marked .grad, against central finite
 *          differences on up to OH_MAX_FD elements per input.
 * Tolerances are in the row. Inputs are random (seeded by the row's name)
 * within [lo, hi), kept at least min_abs away from 0 to stay off kinks. */
#ifndef ATTUNE_TESTS_OP_HARNESS_H
#define ATTUNE_TESTS_OP_HARNESS_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attune/attune.h"

#define OH_MAX_IN  8
#define OH_MAX_OUT 4
#define OH_MAX_FD  48
#define OH_REF_CAP (1 << 20) /* elements a reference output may hold */

typedef struct oh_input {
    at_dtype dt;
    at_shape shape;
    float lo, hi;     /* floats uniform in [lo, hi); ints uniform in [lo, hi) */
    float min_abs;    /* floats: resample while |x| < min_abs */
    bool grad;        /* check the gradient w.r.t. this input */
    const void *data; /* fixed contents instead of random ones (optional) */
} oh_input;

typedef struct oh_case {
    const char *name;
    int n_in;
    oh_input in[OH_MAX_IN];
    /* Builds the op on the inputs; writes its outputs; returns their count. */
    int (*build)(at_graph *g, const at_val *in, at_val *out);
    /* The plain reference: sets each out[j]'s dtype and shape and fills its
     * data (pre-allocated, OH_REF_CAP elements of 8 bytes). NULL: no check. */
    void (*ref)(const at_tensor *in, int n_in, at_tensor *out, int n_out);
    double atol, rtol;           /* forward tolerance */
    double grad_atol, grad_rtol; /* gradient tolerance */
    double fd_eps;               /* finite-difference step (0: 1e-2) */
    unsigned grad_outputs;       /* outputs in L (bitmask; 0: every float output) */
} oh_case;

/* ---- small utilities ---- */

static uint64_t oh_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static uint64_t oh_next(uint64_t *st) {
    uint64_t z = (*st += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double oh_unif(uint64_t *st) {
    return (double)(oh_next(st) >> 11) / 9007199254740992.0;
}

static double oh_get(const at_tensor *t, int64_t i) {
    switch (t->dtype) {
    case AT_F32:
        return ((const float *)t->data)[i];
    case AT_I64:
        return (double)((const int64_t *)t->data)[i];
    case AT_I32:
        return ((const int32_t *)t->data)[i];
    case AT_BOOL:
    case AT_U8:
        return ((const uint8_t *)t->data)[i];
    default:
        return NAN;
    }
}

static void oh_fill(const oh_input *spec, void *data, int64_t n, uint64_t *st) {
    if (spec->data) {
        memcpy(data, spec->data, (size_t)n * at_dtype_size(spec->dt));
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        double u = spec->lo + (spec->hi - spec->lo) * oh_unif(st);
        switch (spec->dt) {
        case AT_F32:
            for (int k = 0; k < 100 && fabs(u) < spec->min_abs; k++)
                u = spec->lo + (spec->hi - spec->lo) * oh_unif(st);
            ((float *)data)[i] = (float)u;
            break;
        case AT_I64:
            ((int64_t *)data)[i] = (int64_t)floor(u);
            break;
        case AT_I32:
            ((int32_t *)data)[i] = (int32_t)floor(u);
            break;
        case AT_BOOL:
        case AT_U8:
            ((uint8_t *)data)[i] = (uint8_t)((int)floor(u) != 0);
            break;
        default:
            break;
        }
    }
}

/* ---- one case ---- */

typedef struct oh_state {
    at_graph *g;
    at_session *s;
    at_val in[OH_MAX_IN];
    at_val out[OH_MAX_OUT];
    int n_out;
    at_tensor feed_t[OH_MAX_IN];
    at_val loss;
    at_val w[OH_MAX_OUT];
} oh_state;

static int oh_fail(const oh_case *c, const char *what, const char *msg) {
    fprintf(stderr, "FAIL %s: %s: %s\n", c->name, what, msg);
    return 1;
}

/* L = sum_j sum(w_j * y_j) over the float outputs in the mask. */
static at_val oh_build_loss(oh_state *st, const oh_case *c, uint64_t *rng) {
    at_val loss = AT_NONE;
    for (int j = 0; j < st->n_out; j++) {
        if (c->grad_outputs && !(c->grad_outputs & (1u << j))) continue;
        if (at_value_dtype(st->g, st->out[j]) != AT_F32) continue;
        at_shape sh = at_value_shape(st->g, st->out[j]);
        int64_t n = at_shape_numel(&sh);
        if (n < 0) return AT_NONE;
        float *w = malloc((size_t)(n ? n : 1) * sizeof(float));
        if (!w) return AT_NONE;
        for (int64_t i = 0; i < n; i++) w[i] = (float)(oh_unif(rng) * 2.0 - 1.0);
        st->w[j] = at_const(st->g, NULL, AT_F32, sh, w);
        free(w);
        int64_t axes[AT_MAX_RANK];
        for (int a = 0; a < sh.rank; a++) axes[a] = a;
        at_val prod = at_mul(st->g, st->out[j], st->w[j]);
        at_val term = sh.rank ? at_reduce_sum(st->g, prod, sh.rank, axes, 0) : prod;
        loss = loss == AT_NONE ? term : at_add(st->g, loss, term);
    }
    return loss;
}

static double oh_eval_loss(oh_state *st, int n_in, int *ok) {
    at_feed feeds[OH_MAX_IN];
    for (int i = 0; i < n_in; i++) feeds[i] = (at_feed){st->in[i], st->feed_t[i]};
    at_tensor lt;
    if (at_session_run(st->s, feeds, n_in, &st->loss, 1, &lt, NULL, 0) != AT_OK) {
        *ok = 0;
        return 0;
    }
    return ((const float *)lt.data)[0];
}

static int oh_check_forward(const oh_case *c, oh_state *st) {
    at_feed feeds[OH_MAX_IN];
    for (int i = 0; i < c->n_in; i++) feeds[i] = (at_feed){st->in[i], st->feed_t[i]};
    at_tensor got[OH_MAX_OUT];
    if (at_session_run(st->s, feeds, c->n_in, st->out, st->n_out, got, NULL, 0) != AT_OK)
        return oh_fail(c, "run", at_session_error(st->s));
    if (!c->ref) return 0;
    at_tensor want[OH_MAX_OUT];
    for (int j = 0; j < st->n_out; j++) {
        want[j] = (at_tensor){0};
        want[j].data = calloc(OH_REF_CAP, 8);
        if (!want[j].data) return oh_fail(c, "ref", "out of memory");
    }
    c->ref(st->feed_t, c->n_in, want, st->n_out);
    int bad = 0;
    char msg[512];
    for (int j = 0; j < st->n_out && !bad; j++) {
        char a[96], b[96];
        if (want[j].dtype != got[j].dtype || !at_shape_equal(&want[j].shape, &got[j].shape)) {
            snprintf(msg, sizeof msg, "output %d: got %s %s, want %s %s", j,
                     at_dtype_name(got[j].dtype), at_shape_str(&got[j].shape, a, sizeof a),
                     at_dtype_name(want[j].dtype), at_shape_str(&want[j].shape, b, sizeof b));
            bad = oh_fail(c, "check", msg);
            break;
        }
        int64_t n = at_shape_numel(&got[j].shape);
        for (int64_t i = 0; i < n; i++) {
            double x = oh_get(&got[j], i), y = oh_get(&want[j], i);
            if (!(fabs(x - y) <= c->atol + c->rtol * fabs(y))) {
                snprintf(msg, sizeof msg, "output %d element %lld: got %.8g, want %.8g", j,
                         (long long)i, x, y);
                bad = oh_fail(c, "check", msg);
                break;
            }
        }
    }
    for (int j = 0; j < st->n_out; j++) free(want[j].data);
    return bad;
}

static int oh_check_grad(const oh_case *c, oh_state *st, uint64_t *rng) {
    at_val wrt[OH_MAX_IN], grads[OH_MAX_IN];
    int idx[OH_MAX_IN], n = 0;
    for (int i = 0; i < c->n_in; i++)
        if (c->in[i].grad) idx[n] = i, wrt[n++] = st->in[i];
    if (!n) return 0;
    if (at_backward(st->g, st->loss, wrt, n, grads) != AT_OK)
        return oh_fail(c, "backward", at_graph_error(st->g));
    at_err err;
    at_session_free(st->s);
    st->s = at_session_new(st->g, NULL, &err);
    if (!st->s) return oh_fail(c, "session", err.msg);
    at_feed feeds[OH_MAX_IN];
    for (int i = 0; i < c->n_in; i++) feeds[i] = (at_feed){st->in[i], st->feed_t[i]};
    at_tensor gt[OH_MAX_IN];
    if (at_session_run(st->s, feeds, c->n_in, grads, n, gt, NULL, 0) != AT_OK)
        return oh_fail(c, "run backward", at_session_error(st->s));
    /* copy: the views die at the next run */
    float *ana[OH_MAX_IN];
    for (int k = 0; k < n; k++) {
        size_t bytes = at_tensor_nbytes(&gt[k]);
        ana[k] = malloc(bytes ? bytes : 1);
        if (!ana[k]) return oh_fail(c, "grad", "out of memory");
        memcpy(ana[k], gt[k].data, bytes);
    }
    double eps = c->fd_eps > 0 ? c->fd_eps : 1e-2;
    int bad = 0;
    for (int k = 0; k < n && !bad; k++) {
        at_tensor *x = &st->feed_t[idx[k]];
        int64_t numel = at_shape_numel(&x->shape);
        int64_t checks = numel < OH_MAX_FD ? numel : OH_MAX_FD;
        for (int64_t q = 0; q < checks && !bad; q++) {
            int64_t i = numel <= OH_MAX_FD ? q : (int64_t)(oh_next(rng) % (uint64_t)numel);
            float *p = (float *)x->data + i, keep = *p;
            int ok = 1;
            *p = (float)(keep + eps);
            double lp = oh_eval_loss(st, c->n_in, &ok);
            *p = (float)(keep - eps);
            double lm = oh_eval_loss(st, c->n_in, &ok);
            *p = keep;
            if (!ok) {
                bad = oh_fail(c, "fd run", at_session_error(st->s));
                break;
            }
            double num = (lp - lm) / (2 * eps), an = ana[k][i];
            if (!(fabs(an - num) <= c->grad_atol + c->grad_rtol * fabs(num))) {
                char msg[256];
                snprintf(msg, sizeof msg, "d/d input %d [%lld]: analytic %.6g, numeric %.6g",
                         idx[k], (long long)i, an, num);
                bad = oh_fail(c, "grad", msg);
            }
        }
    }
    for (int k = 0; k < n; k++) free(ana[k]);
    return bad;
}

static int oh_run_case(const oh_case *c) {
    uint64_t rng = oh_hash(c->name);
    oh_state st;
    memset(&st, 0, sizeof st);
    int bad = 0;
    st.g = at_graph_new();
    if (!st.g) return oh_fail(c, "graph", "out of memory");
    for (int i = 0; i < c->n_in; i++) {
        char name[32];
        snprintf(name, sizeof name, "x%d", i);
        st.in[i] = at_input(st.g, name, c->in[i].dt, c->in[i].shape);
        st.feed_t[i] = (at_tensor){c->in[i].dt, c->in[i].shape, NULL};
        int64_t n = at_shape_numel(&c->in[i].shape);
        st.feed_t[i].data = calloc((size_t)(n ? n : 1), at_dtype_size(c->in[i].dt));
        if (!st.feed_t[i].data) return oh_fail(c, "inputs", "out of memory");
        oh_fill(&c->in[i], st.feed_t[i].data, n, &rng);
    }
    st.n_out = c->build(st.g, st.in, st.out);
    if (at_graph_status(st.g) != AT_OK || st.n_out <= 0) {
        bad = oh_fail(c, "build", at_graph_error(st.g));
        goto done;
    }
    at_err err;
    st.s = at_session_new(st.g, NULL, &err);
    if (!st.s) {
        bad = oh_fail(c, "session", err.msg);
        goto done;
    }
    bad = oh_check_forward(c, &st);
    if (bad) goto done;
    int any_grad = 0;
    for (int i = 0; i < c->n_in; i++) any_grad |= c->in[i].grad;
    if (any_grad) {
        st.loss = oh_build_loss(&st, c, &rng);
        if (st.loss == AT_NONE) {
            bad = oh_fail(c, "loss", at_graph_error(st.g));
            goto done;
        }
        bad = oh_check_grad(c, &st, &rng);
    }
done:
    at_session_free(st.s);
    at_graph_free(st.g);
    for (int i = 0; i < c->n_in; i++) free(st.feed_t[i].data);
    return bad;
}

/* Runs every row; prints one line a row and the closing count; returns the
 * process exit code. An optional filter (argv[1]) runs rows whose name
 * contains it. */
static int oh_run(const oh_case *cases, int n, const char *suite, int argc, char **argv) {
    int passed = 0, failed = 0;
    for (int i = 0; i < n; i++) {
        if (argc > 1 && !strstr(cases[i].name, argv[1])) continue;
        if (oh_run_case(&cases[i])) {
            failed++;
        } else {
            passed++;
            printf("ok   %s\n", cases[i].name);
        }
    }
    printf("%s: %d passed, %d failed\n", suite, passed, failed);
    return failed ? 1 : 0;
}

#define OH_F32(lo_, hi_, ...)                                                                      \
    { .dt = AT_F32, .shape = AT_SHAPE(__VA_ARGS__), .lo = (lo_), .hi = (hi_), .grad = true }
#define OH_F32_NG(lo_, hi_, ...)                                                                   \
    { .dt = AT_F32, .shape = AT_SHAPE(__VA_ARGS__), .lo = (lo_), .hi = (hi_) }
#define OH_I64(lo_, hi_, ...)                                                                      \
    { .dt = AT_I64, .shape = AT_SHAPE(__VA_ARGS__), .lo = (lo_), .hi = (hi_) }

#endif
