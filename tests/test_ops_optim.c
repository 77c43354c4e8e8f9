/* The optimizer family: Increment, SGD, Adam, AdamW, ClipGlobalNorm.
 *
 * Part 1, harness rows: one step of each op on random inputs against a plain C reference
 * written from the torch.optim formulas in double. The in-place inputs pass through an
 * Identity first, so the update writes into an arena buffer and never into a feed.
 * Part 2, multi-step checks through the builders: params, moments and the step counter in the
 * graph's own buffers after each of several steps, against the same references; in-place
 * behaviour; ordering against other readers of a param; frozen parameter groups; clipping;
 * determinism over thread counts; errors. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attune/attune.h"
#include "check.h"
#include "op_harness.h"

/* ------------------------------------------------------------------------------------------ */
/* References (torch formulas, double precision). */

typedef struct sgd_cfg {
    double momentum, wd;
    int nesterov;
} sgd_cfg;

/* One SGD step on n elements; v may be NULL (no momentum buffer). */
static void sgd_ref_step(const sgd_cfg *c, double lr, int64_t n, double *p, const double *g,
                         double *v) {
    for (int64_t i = 0; i < n; i++) {
        double d = g[i] + c->wd * p[i];
        if (v) {
            v[i] = c->momentum * v[i] + d;
            d = c->nesterov ? d + c->momentum * v[i] : v[i];
        }
        p[i] -= lr * d;
    }
}

typedef struct adam_cfg {
    double b1, b2, eps, wd;
    int decoupled; /* AdamW */
} adam_cfg;

static void adam_ref_step(const adam_cfg *c, double lr, double t, int64_t n, double *p,
                          const double *g, double *m, double *v) {
    double bc1 = 1.0 - pow(c->b1, t), bc2 = 1.0 - pow(c->b2, t);
    for (int64_t i = 0; i < n; i++) {
        double gi = g[i];
        if (c->decoupled)
            p[i] *= 1.0 - lr * c->wd;
        else
            gi += c->wd * p[i];
        m[i] = c->b1 * m[i] + (1.0 - c->b1) * gi;
        v[i] = c->b2 * v[i] + (1.0 - c->b2) * gi * gi;
        double mhat = m[i] / bc1, vhat = v[i] / bc2;
        p[i] -= lr * mhat / (sqrt(vhat) + c->eps);
    }
}

/* Clips in place; returns the norm before clipping. */
static double clip_ref(int n, double **g, const int64_t *len, double max_norm) {
    double s = 0.0;
    for (int k = 0; k < n; k++)
        for (int64_t i = 0; i < len[k]; i++) s += g[k][i] * g[k][i];
    double norm = sqrt(s), scale = max_norm / (norm + 1e-6);
    if (scale > 1.0) scale = 1.0;
    for (int k = 0; k < n; k++)
        for (int64_t i = 0; i < len[k]; i++) g[k][i] *= scale;
    return norm;
}

static double *to_double(const at_tensor *t) {
    int64_t n = at_shape_numel(&t->shape);
    double *d = malloc((size_t)(n ? n : 1) * sizeof(double));
    for (int64_t i = 0; i < n; i++) d[i] = oh_get(t, i);
    return d;
}

static void put_f32(at_tensor *out, const at_tensor *like, const double *d) {
    out->dtype = AT_F32;
    out->shape = like->shape;
    int64_t n = at_shape_numel(&like->shape);
    for (int64_t i = 0; i < n; i++) ((float *)out->data)[i] = (float)d[i];
}

/* ------------------------------------------------------------------------------------------ */
/* Harness rows. */

static int build_increment(at_graph *g, const at_val *in, at_val *out) {
    at_val c = at_identity(g, in[0]);
    return at_node_add(g, "Increment", AT_DOMAIN_ATTUNE, &c, 1, out, 1, NULL, 0) < 0 ? -1 : 1;
}

static void ref_increment(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_in, (void)n_out;
    out[0].dtype = in[0].dtype;
    out[0].shape = in[0].shape;
    int64_t n = at_shape_numel(&in[0].shape);
    for (int64_t i = 0; i < n; i++) {
        if (in[0].dtype == AT_I64)
            ((int64_t *)out[0].data)[i] = ((const int64_t *)in[0].data)[i] + 1;
        else
            ((float *)out[0].data)[i] = ((const float *)in[0].data)[i] + 1.0f;
    }
}

static const sgd_cfg SGD_PLAIN = {0.0, 0.0, 0};
static const sgd_cfg SGD_MOM_WD = {0.9, 0.01, 0};
static const sgd_cfg SGD_NESTEROV = {0.8, 0.05, 1};

static int build_sgd_cfg(at_graph *g, const at_val *in, at_val *out, const sgd_cfg *c, int with_v) {
    at_attr attrs[3] = {AT_ATTR_F("momentum", (float)c->momentum),
                        AT_ATTR_F("weight_decay", (float)c->wd),
                        AT_ATTR_I("nesterov", c->nesterov)};
    at_val x[4] = {at_identity(g, in[0]), in[1], in[2], with_v ? at_identity(g, in[3]) : AT_NONE};
    int n_out = with_v ? 2 : 1;
    if (at_node_add(g, "SGD", AT_DOMAIN_ATTUNE, x, with_v ? 4 : 3, out, n_out, attrs, 3) < 0)
        return -1;
    return n_out;
}
static int build_sgd_plain(at_graph *g, const at_val *in, at_val *out) {
    return build_sgd_cfg(g, in, out, &SGD_PLAIN, 0);
}
static int build_sgd_mom(at_graph *g, const at_val *in, at_val *out) {
    return build_sgd_cfg(g, in, out, &SGD_MOM_WD, 1);
}
static int build_sgd_nesterov(at_graph *g, const at_val *in, at_val *out) {
    return build_sgd_cfg(g, in, out, &SGD_NESTEROV, 1);
}

static void ref_sgd_cfg(const at_tensor *in, int n_in, at_tensor *out, const sgd_cfg *c) {
    int64_t n = at_shape_numel(&in[0].shape);
    double *p = to_double(&in[0]), *g = to_double(&in[1]);
    double *v = n_in > 3 ? to_double(&in[3]) : NULL;
    sgd_ref_step(c, oh_get(&in[2], 0), n, p, g, v);
    put_f32(&out[0], &in[0], p);
    if (v) put_f32(&out[1], &in[3], v);
    free(p), free(g), free(v);
}
static void ref_sgd_plain(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_out;
    ref_sgd_cfg(in, n_in, out, &SGD_PLAIN);
}
static void ref_sgd_mom(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_out;
    ref_sgd_cfg(in, n_in, out, &SGD_MOM_WD);
}
static void ref_sgd_nesterov(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_out;
    ref_sgd_cfg(in, n_in, out, &SGD_NESTEROV);
}

static const adam_cfg ADAM_DEFAULT = {0.9, 0.999, 1e-8, 0.0, 0};
static const adam_cfg ADAM_L2 = {0.8, 0.99, 1e-6, 0.1, 0};
static const adam_cfg ADAMW_DEFAULT = {0.9, 0.999, 1e-8, 0.01, 1};
static const adam_cfg ADAMW_STRONG = {0.5, 0.9, 1e-3, 0.3, 1};

/* Attributes are set only where they differ from the op's defaults, so the defaults are
 * tested too. */
static int build_adam_cfg(at_graph *g, const at_val *in, at_val *out, const adam_cfg *c) {
    at_attr attrs[4];
    int na = 0;
    if (c->b1 != 0.9) attrs[na++] = AT_ATTR_F("beta1", (float)c->b1);
    if (c->b2 != 0.999) attrs[na++] = AT_ATTR_F("beta2", (float)c->b2);
    if (c->eps != 1e-8) attrs[na++] = AT_ATTR_F("epsilon", (float)c->eps);
    if (c->wd != (c->decoupled ? 0.01 : 0.0)) attrs[na++] = AT_ATTR_F("weight_decay", (float)c->wd);
    at_val x[6] = {at_identity(g, in[0]), in[1], at_identity(g, in[2]),
                   at_identity(g, in[3]), in[4], in[5]};
    const char *op = c->decoupled ? "AdamW" : "Adam";
    return at_node_add(g, op, AT_DOMAIN_ATTUNE, x, 6, out, 3, attrs, na) < 0 ? -1 : 3;
}
static void ref_adam_cfg(const at_tensor *in, at_tensor *out, const adam_cfg *c) {
    int64_t n = at_shape_numel(&in[0].shape);
    double *p = to_double(&in[0]), *g = to_double(&in[1]);
    double *m = to_double(&in[2]), *v = to_double(&in[3]);
    adam_ref_step(c, oh_get(&in[5], 0), oh_get(&in[4], 0), n, p, g, m, v);
    put_f32(&out[0], &in[0], p);
    put_f32(&out[1], &in[0], m);
    put_f32(&out[2], &in[0], v);
    free(p), free(g), free(m), free(v);
}
#define ADAM_ROW_FNS(tag, cfg)                                                                     \
    static int build_##tag(at_graph *g, const at_val *in, at_val *out) {                           \
        return build_adam_cfg(g, in, out, &cfg);                                                   \
    }                                                                                              \
    static void ref_##tag(const at_tensor *in, int n_in, at_tensor *out, int n_out) {              \
        (void)n_in, (void)n_out;                                                                   \
        ref_adam_cfg(in, out, &cfg);                                                               \
    }
ADAM_ROW_FNS(adam, ADAM_DEFAULT)
ADAM_ROW_FNS(adam_l2, ADAM_L2)
ADAM_ROW_FNS(adamw, ADAMW_DEFAULT)
ADAM_ROW_FNS(adamw_strong, ADAMW_STRONG)

static int build_clip(at_graph *g, const at_val *in, at_val *out, int n, float max_norm) {
    if (at_clip_global_norm(g, n, in, max_norm, out, &out[n]) != AT_OK) return -1;
    return n + 1;
}
static void ref_clip(const at_tensor *in, int n_in, at_tensor *out, double max_norm) {
    double *g[OH_MAX_IN] = {0};
    int64_t len[OH_MAX_IN] = {0};
    for (int k = 0; k < n_in; k++) g[k] = to_double(&in[k]), len[k] = at_shape_numel(&in[k].shape);
    double norm = clip_ref(n_in, g, len, max_norm);
    for (int k = 0; k < n_in; k++) put_f32(&out[k], &in[k], g[k]), free(g[k]);
    out[n_in].dtype = AT_F32;
    out[n_in].shape = at_shape_make(0, NULL);
    ((float *)out[n_in].data)[0] = (float)norm;
}
static int build_clip3_1(at_graph *g, const at_val *in, at_val *out) {
    return build_clip(g, in, out, 3, 1.0f);
}
static void ref_clip3_1(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_out;
    ref_clip(in, n_in, out, 1.0);
}
static int build_clip3_100(at_graph *g, const at_val *in, at_val *out) {
    return build_clip(g, in, out, 3, 100.0f);
}
static void ref_clip3_100(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_out;
    ref_clip(in, n_in, out, 100.0);
}
static int build_clip2_5(at_graph *g, const at_val *in, at_val *out) {
    return build_clip(g, in, out, 2, 5.0f);
}
static void ref_clip2_5(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_out;
    ref_clip(in, n_in, out, 5.0);
}
static int build_clip1_0(at_graph *g, const at_val *in, at_val *out) {
    return build_clip(g, in, out, 1, 0.5f);
}
static void ref_clip1_0(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_out;
    ref_clip(in, n_in, out, 0.5);
}

static const float LR_01[1] = {0.1f}, LR_001[1] = {0.01f}, LR_005[1] = {0.05f};
static const float T1[1] = {1.0f}, T3[1] = {3.0f}, T7[1] = {7.0f};
static const int64_t T5_I64[1] = {5}, I64_41[1] = {41};
static const float ZEROS[6] = {0};

#define SCALAR_F32(ptr)                                                                            \
    { .dt = AT_F32, .shape = at_shape_make(0, NULL), .data = (ptr) }
#define FIXED(dt_, shp, ptr)                                                                       \
    { .dt = (dt_), .shape = shp, .data = (ptr) }

static int run_rows(int argc, char **argv) {
    const oh_case cases[] = {
        {.name = "Increment f32 scalar",
         .n_in = 1,
         .in = {{.dt = AT_F32, .shape = at_shape_make(0, NULL), .lo = -50, .hi = 50}},
         .build = build_increment,
         .ref = ref_increment},
        {.name = "Increment i64 [1]",
         .n_in = 1,
         .in = {FIXED(AT_I64, AT_SHAPE(1), I64_41)},
         .build = build_increment,
         .ref = ref_increment},
        {.name = "SGD plain [3,4]",
         .n_in = 3,
         .in = {OH_F32_NG(-2, 2, 3, 4), OH_F32_NG(-1, 1, 3, 4), SCALAR_F32(LR_01)},
         .build = build_sgd_plain,
         .ref = ref_sgd_plain,
         .atol = 1e-6,
         .rtol = 1e-5},
        {.name = "SGD momentum 0.9 wd 0.01 [2,3,5]",
         .n_in = 4,
         .in = {OH_F32_NG(-2, 2, 2, 3, 5), OH_F32_NG(-1, 1, 2, 3, 5), SCALAR_F32(LR_005),
                OH_F32_NG(-0.5f, 0.5f, 2, 3, 5)},
         .build = build_sgd_mom,
         .ref = ref_sgd_mom,
         .atol = 1e-6,
         .rtol = 1e-5},
        {.name = "SGD nesterov momentum 0.8 wd 0.05 [7]",
         .n_in = 4,
         .in = {OH_F32_NG(-2, 2, 7), OH_F32_NG(-1, 1, 7), SCALAR_F32(LR_01),
                OH_F32_NG(-0.5f, 0.5f, 7)},
         .build = build_sgd_nesterov,
         .ref = ref_sgd_nesterov,
         .atol = 1e-6,
         .rtol = 1e-5},
        {.name = "Adam defaults t=3 [2,3,4]",
         .n_in = 6,
         .in = {OH_F32_NG(-2, 2, 2, 3, 4), OH_F32_NG(-1, 1, 2, 3, 4),
                OH_F32_NG(-0.1f, 0.1f, 2, 3, 4), OH_F32_NG(0, 0.01f, 2, 3, 4), SCALAR_F32(T3),
                SCALAR_F32(LR_001)},
         .build = build_adam,
         .ref = ref_adam,
         .atol = 1e-6,
         .rtol = 1e-5},
        {.name = "Adam L2 wd 0.1 betas 0.8/0.99 t=1 [5,3]",
         .n_in = 6,
         .in = {OH_F32_NG(-2, 2, 5, 3), OH_F32_NG(-1, 1, 5, 3), FIXED(AT_F32, AT_SHAPE(5, 3), NULL),
                FIXED(AT_F32, AT_SHAPE(5, 3), NULL), SCALAR_F32(T1), SCALAR_F32(LR_01)},
         .build = build_adam_l2,
         .ref = ref_adam_l2,
         .atol = 1e-6,
         .rtol = 1e-5},
        {.name = "AdamW defaults t=7 [4,6]",
         .n_in = 6,
         .in = {OH_F32_NG(-2, 2, 4, 6), OH_F32_NG(-1, 1, 4, 6), OH_F32_NG(-0.1f, 0.1f, 4, 6),
                OH_F32_NG(0, 0.01f, 4, 6), SCALAR_F32(T7), SCALAR_F32(LR_005)},
         .build = build_adamw,
         .ref = ref_adamw,
         .atol = 1e-6,
         .rtol = 1e-5},
        {.name = "AdamW wd 0.3 betas 0.5/0.9 eps 1e-3 t int64=5 [9]",
         .n_in = 6,
         .in = {OH_F32_NG(-2, 2, 9), OH_F32_NG(-1, 1, 9), OH_F32_NG(-0.1f, 0.1f, 9),
                OH_F32_NG(0, 0.01f, 9), FIXED(AT_I64, at_shape_make(0, NULL), T5_I64),
                SCALAR_F32(LR_01)},
         .build = build_adamw_strong,
         .ref = ref_adamw_strong,
         .atol = 1e-6,
         .rtol = 1e-5},
        {.name = "ClipGlobalNorm clips (3 grads, max_norm 1)",
         .n_in = 3,
         .in = {OH_F32_NG(-1, 1, 5, 7), OH_F32_NG(-1, 1, 3), OH_F32_NG(-1, 1, 2, 2, 2)},
         .build = build_clip3_1,
         .ref = ref_clip3_1,
         .atol = 1e-6,
         .rtol = 1e-5},
        {.name = "ClipGlobalNorm no clip (max_norm 100)",
         .n_in = 3,
         .in = {OH_F32_NG(-1, 1, 5, 7), OH_F32_NG(-1, 1, 3), OH_F32_NG(-1, 1, 2, 2, 2)},
         .build = build_clip3_100,
         .ref = ref_clip3_100,
         .atol = 0,
         .rtol = 0},
        {.name = "ClipGlobalNorm many chunks [3,5000] + [7]",
         .n_in = 2,
         .in = {OH_F32_NG(-1, 1, 3, 5000), OH_F32_NG(-30, 30, 7)},
         .build = build_clip2_5,
         .ref = ref_clip2_5,
         .atol = 1e-6,
         .rtol = 1e-5},
        {.name = "ClipGlobalNorm all zero",
         .n_in = 1,
         .in = {FIXED(AT_F32, AT_SHAPE(2, 3), ZEROS)},
         .build = build_clip1_0,
         .ref = ref_clip1_0,
         .atol = 0,
         .rtol = 0},
    };
    return oh_run(cases, (int)(sizeof cases / sizeof *cases), "optim rows", argc, argv);
}

/* ------------------------------------------------------------------------------------------ */
/* Multi-step checks through the builders. */

#define NP    2
#define STEPS 6
static const int64_t P_LEN[NP] = {12, 5};

static void fill_param(at_graph *g, at_val p, int k, double *ref) {
    float *d = at_value_data(g, p);
    for (int64_t i = 0; i < P_LEN[k]; i++) {
        d[i] = (float)(0.3 * sin(1.7 * (double)i + k) + 0.1 * k);
        ref[i] = d[i];
    }
}

/* Gradient of step s for param k: varies in sign and size, and is exactly zero somewhere. */
static void make_grad(int s, int k, float *gr) {
    for (int64_t i = 0; i < P_LEN[k]; i++)
        gr[i] = (i % 5 == 4) ? 0.0f : (float)(cos(0.9 * (double)i + 2.1 * s + k) * (1 + s % 3));
}

static float *vdata(at_graph *g, const char *name) {
    at_val v = at_graph_find(g, name);
    return v == AT_NONE ? NULL : at_value_data(g, v);
}

/* Largest |got - want| / (0.1 + |want|): relative, with an absolute floor for values near 0. */
static double max_err(const float *got, const double *want, int64_t n) {
    double e = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(got[i] - want[i]) / (0.1 + fabs(want[i]));
        if (!(d <= e)) e = d; /* NaN propagates as failure */
    }
    return e;
}

enum { OPT_ADAM, OPT_ADAMW, OPT_SGD, OPT_SGD_MOM };

/* Builds net.w [4,3] and net.b [5] with fed gradients, steps them STEPS times through the
 * builder of `which`, and checks params and state after every step. */
static void check_multistep(int which, const char *label) {
    at_graph *g = at_graph_new();
    at_val p[NP], gin[NP], up[NP];
    p[0] = at_param(g, "net.w", AT_F32, AT_SHAPE(4, 3), 0);
    p[1] = at_param(g, "net.b", AT_F32, AT_SHAPE(5), 0);
    gin[0] = at_input(g, "grad.w", AT_F32, AT_SHAPE(4, 3));
    gin[1] = at_input(g, "grad.b", AT_F32, AT_SHAPE(5));
    at_val lr = at_input(g, "lr", AT_F32, at_shape_make(0, NULL));
    /* A reader of net.w that the update does not depend on: it must see the old values. */
    at_val two = at_const_f32(g, 2.0f);
    at_val w2 = at_mul(g, p[0], two);

    adam_cfg ac = {0.9, 0.999, 1e-8, 0.0, 0};
    sgd_cfg sc = {0.0, 0.0, 0};
    at_status st = AT_OK;
    if (which == OPT_ADAM) {
        at_adam_opts o = {0.85f, 0.995f, 1e-7f, 0.05f}; /* L2 for Adam */
        ac = (adam_cfg){0.85f, 0.995f, 1e-7f, 0.05f, 0};
        st = at_adam(g, NP, p, gin, lr, &o, up);
    } else if (which == OPT_ADAMW) {
        ac = (adam_cfg){0.9f, 0.999f, 1e-8f, 0.01f, 1}; /* NULL options: the defaults */
        st = at_adamw(g, NP, p, gin, lr, NULL, up);
    } else if (which == OPT_SGD) {
        sc = (sgd_cfg){0.0, 0.02f, 0};
        st = at_sgd(g, NP, p, gin, lr, 0.0f, 0.02f, up);
    } else {
        sc = (sgd_cfg){0.9f, 0.001f, 0};
        st = at_sgd(g, NP, p, gin, lr, 0.9f, 0.001f, up);
    }
    CHECK(st == AT_OK && at_graph_status(g) == AT_OK, "%s: build: %s", label, at_graph_error(g));
    if (st != AT_OK) {
        at_graph_free(g);
        return;
    }
    bool adam = which == OPT_ADAM || which == OPT_ADAMW;
    if (adam) {
        CHECK(at_graph_find(g, "net.adam_t") != AT_NONE, "%s: step counter net.adam_t", label);
        CHECK(at_value_kind_of(g, at_graph_find(g, "net.w.adam_m")) == AT_VALUE_STATE,
              "%s: net.w.adam_m is state", label);
    }
    if (which == OPT_SGD)
        CHECK(at_graph_find(g, "net.w.momentum_buffer") == AT_NONE,
              "%s: no velocity without momentum", label);

    double ref_p[NP][16], ref_m[NP][16] = {{0}}, ref_v[NP][16] = {{0}}, ref_buf[NP][16] = {{0}};
    float *pdata[NP];
    for (int k = 0; k < NP; k++) {
        fill_param(g, p[k], k, ref_p[k]);
        pdata[k] = at_value_data(g, p[k]);
    }
    at_err err;
    at_session *s = at_session_new(g, NULL, &err);
    CHECK(s != NULL, "%s: session: %s", label, err.msg);
    if (!s) {
        at_graph_free(g);
        return;
    }
    char nm[64];
    for (int step = 1; step <= STEPS; step++) {
        float gr[NP][16], lrv = (float)(0.05 / step); /* a schedule, fed each step */
        double gd[NP][16], old_w[16];
        for (int k = 0; k < NP; k++) {
            make_grad(step, k, gr[k]);
            for (int64_t i = 0; i < P_LEN[k]; i++) gd[k][i] = gr[k][i];
        }
        for (int64_t i = 0; i < P_LEN[0]; i++) old_w[i] = pdata[0][i];
        at_feed feeds[3] = {{gin[0], {AT_F32, AT_SHAPE(4, 3), gr[0]}},
                            {gin[1], {AT_F32, AT_SHAPE(5), gr[1]}},
                            {lr, {AT_F32, at_shape_make(0, NULL), &lrv}}};
        at_val fetch[2] = {w2, up[1]};
        at_tensor got[2];
        st = at_session_run(s, feeds, 3, fetch, 2, got, up, NP);
        CHECK(st == AT_OK, "%s step %d: run: %s", label, step, at_session_error(s));
        if (st != AT_OK) break;
        for (int k = 0; k < NP; k++) {
            if (adam)
                adam_ref_step(&ac, lrv, step, P_LEN[k], ref_p[k], gd[k], ref_m[k], ref_v[k]);
            else
                sgd_ref_step(&sc, lrv, P_LEN[k], ref_p[k], gd[k],
                             which == OPT_SGD_MOM ? ref_buf[k] : NULL);
        }
        /* The graph's own buffers hold the result: the update ran in place. */
        for (int k = 0; k < NP; k++) {
            CHECK(at_value_data(g, p[k]) == pdata[k], "%s: param buffer moved", label);
            double e = max_err(pdata[k], ref_p[k], P_LEN[k]);
            CHECK(e < 1e-5, "%s step %d: param %d rel err %.3g", label, step, k, e);
            const char *pn = at_value_name(g, p[k]);
            if (adam) {
                snprintf(nm, sizeof nm, "%s.adam_m", pn);
                float *m = vdata(g, nm);
                snprintf(nm, sizeof nm, "%s.adam_v", pn);
                float *v = vdata(g, nm);
                CHECK(m && v, "%s: moments of %s", label, pn);
                if (m && v) {
                    e = max_err(m, ref_m[k], P_LEN[k]);
                    CHECK(e < 1e-5, "%s step %d: m %d rel err %.3g", label, step, k, e);
                    e = max_err(v, ref_v[k], P_LEN[k]);
                    CHECK(e < 1e-5, "%s step %d: v %d rel err %.3g", label, step, k, e);
                }
            } else if (which == OPT_SGD_MOM) {
                snprintf(nm, sizeof nm, "%s.momentum_buffer", pn);
                float *b = vdata(g, nm);
                CHECK(b != NULL, "%s: velocity of %s", label, pn);
                if (b) {
                    e = max_err(b, ref_buf[k], P_LEN[k]);
                    CHECK(e < 1e-5, "%s step %d: velocity %d rel err %.3g", label, step, k, e);
                }
            }
        }
        if (adam) {
            float *t = vdata(g, "net.adam_t");
            CHECK(t && *t == (float)step, "%s: counter %g after step %d (one increment a step)",
                  label, t ? *t : -1.0, step);
        }
        /* The fetched update is the new param. */
        CHECK(memcmp(got[1].data, pdata[1], sizeof(float) * (size_t)P_LEN[1]) == 0,
              "%s step %d: fetched update differs from the param buffer", label, step);
        /* The other reader ran before the update (the planner's ordering). */
        int order_ok = 1;
        for (int64_t i = 0; i < P_LEN[0]; i++)
            order_ok &= ((const float *)got[0].data)[i] == (float)(2.0 * old_w[i]);
        CHECK(order_ok, "%s step %d: a reader of net.w saw the updated values", label, step);
    }
    /* A run that neither fetches nor targets an update leaves params and state alone. */
    float before[16];
    memcpy(before, pdata[0], sizeof(float) * (size_t)P_LEN[0]);
    {
        float gr0[16] = {0}, gr1[16] = {0}, lrv = 1.0f;
        at_feed feeds[3] = {{gin[0], {AT_F32, AT_SHAPE(4, 3), gr0}},
                            {gin[1], {AT_F32, AT_SHAPE(5), gr1}},
                            {lr, {AT_F32, at_shape_make(0, NULL), &lrv}}};
        at_tensor got;
        CHECK_OK(at_session_run(s, feeds, 3, &w2, 1, &got, NULL, 0));
        CHECK(memcmp(before, pdata[0], sizeof(float) * (size_t)P_LEN[0]) == 0,
              "%s: an evaluation run changed a param", label);
        if (adam) {
            float *t = vdata(g, "net.adam_t");
            CHECK(t && *t == (float)STEPS, "%s: an evaluation run moved the counter", label);
        }
    }
    at_session_free(s);
    at_graph_free(g);
}

/* Params in groups 0 and 1; only group 0 gets updates. Group 1 must stay bit-identical
 * though it is read in the same runs, and must get no optimizer state. */
static void check_frozen_group(void) {
    at_graph *g = at_graph_new();
    at_val a = at_param(g, "enc.a", AT_F32, AT_SHAPE(6), 0);
    at_val b = at_param(g, "dec.b", AT_F32, AT_SHAPE(6), 1);
    at_val c = at_param(g, "enc.c", AT_F32, AT_SHAPE(2, 3), 0);
    at_val y = at_mul(g, at_add(g, a, b), a);
    at_val trainable[4];
    int n = at_graph_params(g, 1u << 0, trainable, 4);
    CHECK(n == 2 && trainable[0] == a && trainable[1] == c, "group 0 params: %d", n);
    at_val gin[2] = {at_input(g, "ga", AT_F32, AT_SHAPE(6)),
                     at_input(g, "gc", AT_F32, AT_SHAPE(2, 3))};
    at_val lr = at_input(g, "lr", AT_F32, at_shape_make(0, NULL)), up[2];
    CHECK_OK(at_adamw(g, 2, trainable, gin, lr, NULL, up));
    CHECK(at_graph_find(g, "dec.b.adam_m") == AT_NONE, "frozen param got state");
    CHECK(at_graph_find(g, "enc.adam_t") != AT_NONE, "counter named by the common prefix");
    float *pa = at_value_data(g, a), *pb = at_value_data(g, b), *pc = at_value_data(g, c);
    for (int i = 0; i < 6; i++)
        pa[i] = 0.1f * (float)i, pb[i] = 1.0f - 0.3f * (float)i, pc[i] = -0.2f * (float)i;
    float b0[6], a0[6];
    memcpy(b0, pb, sizeof b0);
    memcpy(a0, pa, sizeof a0);
    at_err err;
    at_session *s = at_session_new(g, NULL, &err);
    CHECK(s != NULL, "frozen: session: %s", err.msg);
    if (!s) {
        at_graph_free(g);
        return;
    }
    for (int step = 0; step < 4; step++) {
        float ga[6], gc[6], lrv = 0.1f;
        for (int i = 0; i < 6; i++) ga[i] = (float)(i + step) - 2.5f, gc[i] = 0.5f - (float)i;
        at_feed feeds[3] = {{gin[0], {AT_F32, AT_SHAPE(6), ga}},
                            {gin[1], {AT_F32, AT_SHAPE(2, 3), gc}},
                            {lr, {AT_F32, at_shape_make(0, NULL), &lrv}}};
        at_tensor got;
        CHECK_OK(at_session_run(s, feeds, 3, &y, 1, &got, up, 2));
    }
    CHECK(memcmp(b0, pb, sizeof b0) == 0, "frozen group 1 param changed");
    CHECK(memcmp(a0, pa, sizeof a0) != 0, "group 0 param did not change");
    at_session_free(s);
    at_graph_free(g);
}

/* The clipping builder feeding SGD; the unclipped (fed) gradients stay untouched; the norm
 * is the same bits for 1 and 2 threads. */
static void check_clip_pipeline(void) {
    enum { N0 = 10000, N1 = 3 };
    static float g0[N0], g0_keep[N0];
    float g1[N1] = {3.0f, -4.0f, 12.0f};
    for (int i = 0; i < N0; i++) g0[i] = (float)sin(0.37 * i) * 0.05f;
    memcpy(g0_keep, g0, sizeof g0);
    float normv[2] = {0};
    for (int threads = 1; threads <= 2; threads++) {
        at_graph *g = at_graph_new();
        at_val p[2] = {at_param(g, "p0", AT_F32, AT_SHAPE(100, 100), 0),
                       at_param(g, "p1", AT_F32, AT_SHAPE(3), 0)};
        at_val gin[2] = {at_input(g, "g0", AT_F32, AT_SHAPE(100, 100)),
                         at_input(g, "g1", AT_F32, AT_SHAPE(3))};
        at_val lr = at_input(g, "lr", AT_F32, at_shape_make(0, NULL));
        at_val clipped[2], norm, up[2];
        CHECK_OK(at_clip_global_norm(g, 2, gin, 2.0f, clipped, &norm));
        CHECK_OK(at_sgd(g, 2, p, clipped, lr, 0.0f, 0.0f, up));
        at_session_opts o = at_session_defaults();
        o.threads = threads;
        at_err err;
        at_session *s = at_session_new(g, &o, &err);
        CHECK(s != NULL, "clip: session: %s", err.msg);
        if (!s) {
            at_graph_free(g);
            continue;
        }
        float lrv = 1.0f;
        at_feed feeds[3] = {{gin[0], {AT_F32, AT_SHAPE(100, 100), g0}},
                            {gin[1], {AT_F32, AT_SHAPE(3), g1}},
                            {lr, {AT_F32, at_shape_make(0, NULL), &lrv}}};
        at_tensor got;
        CHECK_OK(at_session_run(s, feeds, 3, &norm, 1, &got, up, 2));
        normv[threads - 1] = *(const float *)got.data;
        double gd0[N0], gd1[N1];
        for (int i = 0; i < N0; i++) gd0[i] = g0[i];
        for (int i = 0; i < N1; i++) gd1[i] = g1[i];
        double *gs[2] = {gd0, gd1};
        int64_t len[2] = {N0, N1};
        double want = clip_ref(2, gs, len, 2.0);
        CHECK(fabs(normv[threads - 1] - want) <= 1e-5 * want, "clip norm %.8g, want %.8g",
              normv[threads - 1], want);
        CHECK(memcmp(g0, g0_keep, sizeof g0) == 0, "clipping wrote into the fed gradient");
        /* p started at 0 and lr is 1: p = -clipped gradient. */
        const float *p1 = at_value_data(g, p[1]);
        for (int i = 0; i < N1; i++)
            CHECK(fabs(p1[i] + gd1[i]) <= 1e-6 + 1e-5 * fabs(gd1[i]), "p1[%d] = %g, want %g", i,
                  p1[i], -gd1[i]);
        at_session_free(s);
        at_graph_free(g);
    }
    CHECK(memcmp(&normv[0], &normv[1], sizeof(float)) == 0,
          "norm differs between 1 and 2 threads: %.9g vs %.9g", normv[0], normv[1]);
}

/* Errors: a bad step counter at run time, shape and kind errors at build time, sticky
 * AT_NONE, unique state names for a second optimizer over the same params. */
static void check_errors(void) {
    at_graph *g = at_graph_new();
    at_val p = at_param(g, "w", AT_F32, AT_SHAPE(3), 0);
    at_val gr = at_input(g, "g", AT_F32, AT_SHAPE(3));
    at_val t = at_input(g, "t", AT_F32, at_shape_make(0, NULL));
    at_val lr = at_const_f32(g, 0.1f);
    at_val m = at_state(g, "m", AT_F32, AT_SHAPE(3)), v = at_state(g, "v", AT_F32, AT_SHAPE(3));
    at_val in[6] = {p, gr, m, v, t, lr}, out[3];
    CHECK(at_node_add(g, "Adam", AT_DOMAIN_ATTUNE, in, 6, out, 3, NULL, 0) >= 0, "Adam node: %s",
          at_graph_error(g));
    at_err err;
    at_session *s = at_session_new(g, NULL, &err);
    CHECK(s != NULL, "errors: session: %s", err.msg);
    if (s) {
        float gv[3] = {1, 2, 3}, tv = 0.0f;
        at_feed feeds[2] = {{gr, {AT_F32, AT_SHAPE(3), gv}},
                            {t, {AT_F32, at_shape_make(0, NULL), &tv}}};
        at_tensor got;
        at_status st = at_session_run(s, feeds, 2, &out[0], 1, &got, NULL, 0);
        CHECK(st == AT_E_INVALID, "t = 0 gave status %d", (int)st);
        CHECK(strstr(at_session_error(s), "step t") != NULL, "message: %s", at_session_error(s));
        at_session_free(s);
    }
    at_graph_free(g);

    g = at_graph_new();
    p = at_param(g, "w", AT_F32, AT_SHAPE(3), 0);
    at_val bad = at_input(g, "g", AT_F32, AT_SHAPE(4));
    at_val up[2];
    lr = at_const_f32(g, 0.1f);
    CHECK(at_adamw(g, 1, &p, &bad, lr, NULL, up) == AT_E_SHAPE, "grad [4] for param [3]");
    CHECK(up[0] == AT_NONE, "failed update is AT_NONE");
    at_graph_free(g);

    g = at_graph_new();
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(3));
    gr = at_input(g, "g", AT_F32, AT_SHAPE(3));
    lr = at_const_f32(g, 0.1f);
    CHECK(at_sgd(g, 1, &x, &gr, lr, 0.0f, 0.0f, up) == AT_E_INVALID, "update of an input");
    at_graph_free(g);

    g = at_graph_new();
    p = at_param(g, "w", AT_F32, AT_SHAPE(3), 0);
    gr = at_input(g, "g", AT_F32, AT_SHAPE(3));
    lr = at_const_f32(g, 0.1f);
    at_val none = AT_NONE;
    CHECK(at_adam(g, 1, &p, &none, lr, NULL, up) != AT_OK, "AT_NONE gradient");
    at_graph_free(g);

    g = at_graph_new();
    p = at_param(g, "w", AT_F32, AT_SHAPE(3), 0);
    gr = at_input(g, "g", AT_F32, AT_SHAPE(3));
    lr = at_const_f32(g, 0.1f);
    CHECK_OK(at_adamw(g, 1, &p, &gr, lr, NULL, &up[0]));
    CHECK_OK(at_adamw(g, 1, &p, &gr, lr, NULL, &up[1]));
    CHECK(at_graph_find(g, "adam_t") != AT_NONE && at_graph_find(g, "adam_t.1") != AT_NONE,
          "second optimizer gets its own counter");
    CHECK(at_graph_find(g, "w.adam_m") != AT_NONE && at_graph_find(g, "w.adam_m.1") != AT_NONE,
          "second optimizer gets its own moments");
    /* clipping: max_norm must be >= 0 */
    at_val c1;
    CHECK(at_clip_global_norm(g, 1, &gr, -1.0f, &c1, NULL) != AT_OK, "negative max_norm");
    at_graph_free(g);
}

int main(int argc, char **argv) {
    int rc = run_rows(argc, argv);
    if (argc > 1) return rc; /* a row filter runs the rows only */
    check_multistep(OPT_ADAM, "Adam");
    check_multistep(OPT_ADAMW, "AdamW");
    check_multistep(OPT_SGD, "SGD");
    check_multistep(OPT_SGD_MOM, "SGD momentum");
    check_frozen_group();
    check_clip_pipeline();
    check_errors();
    return check_done("optim steps") | rc;
}
