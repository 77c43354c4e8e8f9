/* Softmax, LogSoftmax and their backward ops against plain C references (double precision,
 * index arithmetic per element). */
#include "op_harness.h"

enum { SM, LOGSM, SMGRAD, LOGSMGRAD };

/* kind SM/LOGSM: out = f(in[0]); SMGRAD/LOGSMGRAD: out = f(dY = in[0], Y = in[1]). */
static void ref_sm(int kind, const at_tensor *in, int axis, at_tensor *out) {
    const at_tensor *x = &in[kind >= SMGRAD ? 1 : 0];
    int r = x->shape.rank;
    if (axis < 0) axis += r;
    int64_t C = x->shape.dim[axis], inner = 1, n = at_shape_numel(&x->shape);
    for (int d = axis + 1; d < r; d++) inner *= x->shape.dim[d];
    out->dtype = AT_F32;
    out->shape = x->shape;
    float *y = out->data;
    for (int64_t i = 0; i < n; i++) {
        int64_t o = i / (C * inner), in_ = i % inner, c0 = (i / inner) % C;
        int64_t base = o * C * inner + in_;
        if (kind == SM || kind == LOGSM) {
            double m = -INFINITY, s = 0;
            for (int64_t c = 0; c < C; c++) m = fmax(m, oh_get(x, base + c * inner));
            for (int64_t c = 0; c < C; c++) s += exp(oh_get(x, base + c * inner) - m);
            double xi = oh_get(x, i);
            y[i] = (float)(kind == SM ? exp(xi - m) / s : xi - m - log(s));
        } else {
            const at_tensor *dy = &in[0];
            double s = 0;
            for (int64_t c = 0; c < C; c++) {
                double g = oh_get(dy, base + c * inner);
                s += kind == SMGRAD ? g * oh_get(x, base + c * inner) : g;
            }
            double yi = oh_get(x, i), gi = oh_get(dy, i);
            y[i] = (float)(kind == SMGRAD ? yi * (gi - s) : gi - exp(yi) * s);
        }
        (void)c0;
    }
}

#define SM_DEF(id, kind, axis)                                                                     \
    static int id##_build(at_graph *g, const at_val *in, at_val *out) {                            \
        if (kind == SM) out[0] = at_softmax(g, in[0], axis);                                       \
        if (kind == LOGSM) out[0] = at_log_softmax(g, in[0], axis);                                \
        if (kind >= SMGRAD) {                                                                      \
            at_attr a = AT_ATTR_I("axis", axis);                                                   \
            at_node_add(g, kind == SMGRAD ? "SoftmaxGrad" : "LogSoftmaxGrad", AT_DOMAIN_ATTUNE,    \
                        in, 2, out, 1, &a, 1);                                                     \
        }                                                                                          \
        return 1;                                                                                  \
    }                                                                                              \
    static void id##_ref(const at_tensor *in, int n_in, at_tensor *out, int n_out) {               \
        (void)n_in;                                                                                \
        (void)n_out;                                                                               \
        ref_sm(kind, in, axis, &out[0]);                                                           \
    }

SM_DEF(sm_am1, SM, -1)
SM_DEF(sm_a0, SM, 0)
SM_DEF(sm_a1, SM, 1)
SM_DEF(sm_a2, SM, 2)
SM_DEF(logsm_am1, LOGSM, -1)
SM_DEF(logsm_a0, LOGSM, 0)
SM_DEF(logsm_a1, LOGSM, 1)
SM_DEF(logsm_am2, LOGSM, -2)
SM_DEF(smgrad_am1, SMGRAD, -1)
SM_DEF(smgrad_a1, SMGRAD, 1)
SM_DEF(logsmgrad_am1, LOGSMGRAD, -1)
SM_DEF(logsmgrad_a0, LOGSMGRAD, 0)

#define XIN(lo_, hi_, ...)                                                                         \
    { .dt = AT_F32, .shape = AT_SHAPE(__VA_ARGS__), .lo = (lo_), .hi = (hi_), .grad = true }
#define ROW1(name_, id, ...)                                                                       \
    {                                                                                              \
        .name = name_, .n_in = 1, .in = {__VA_ARGS__}, .build = id##_build, .ref = id##_ref,       \
        .atol = 1e-6, .rtol = 1e-5, .grad_atol = 1e-3, .grad_rtol = 1e-2                           \
    }
/* Big rows: a larger step keeps the float loss's rounding out of the difference quotient. */
#define ROW1L(name_, id, ...)                                                                      \
    {                                                                                              \
        .name = name_, .n_in = 1, .in = {__VA_ARGS__}, .build = id##_build, .ref = id##_ref,       \
        .atol = 1e-6, .rtol = 1e-5, .grad_atol = 1e-3, .grad_rtol = 1e-2, .fd_eps = 0.05           \
    }
#define ROW2(name_, id, ...)                                                                       \
    {                                                                                              \
        .name = name_, .n_in = 2, .in = {__VA_ARGS__}, .build = id##_build, .ref = id##_ref,       \
        .atol = 1e-5, .rtol = 1e-5, .grad_atol = 2e-3, .grad_rtol = 1e-2                           \
    }

int main(int argc, char **argv) {
    const oh_case cases[] = {
        ROW1("softmax_axis_m1", sm_am1, XIN(-3, 3, 4, 7)),
        ROW1("softmax_axis_m1_rank3", sm_am1, XIN(-3, 3, 2, 3, 5)),
        ROW1("softmax_axis_0", sm_a0, XIN(-3, 3, 5, 4)),
        ROW1("softmax_axis_0_rank3", sm_a0, XIN(-3, 3, 4, 3, 2)),
        ROW1("softmax_axis_1_middle", sm_a1, XIN(-3, 3, 2, 5, 3)),
        ROW1("softmax_axis_2_of_4", sm_a2, XIN(-3, 3, 2, 2, 4, 3)),
        ROW1("softmax_rank1", sm_am1, XIN(-3, 3, 6)),
        ROW1("softmax_size1_axis", sm_a1, XIN(-3, 3, 3, 1, 2)),
        ROW1("softmax_large_logits", sm_am1, XIN(80, 90, 3, 5)),
        ROW1L("softmax_large_rows", sm_am1, XIN(-5, 5, 300, 128)),
        ROW1L("softmax_large_middle", sm_a1, XIN(-5, 5, 8, 50, 100)),
        ROW1("logsoftmax_axis_m1", logsm_am1, XIN(-3, 3, 4, 7)),
        ROW1("logsoftmax_axis_0", logsm_a0, XIN(-3, 3, 5, 4)),
        ROW1("logsoftmax_axis_1_middle", logsm_a1, XIN(-3, 3, 2, 5, 3)),
        ROW1("logsoftmax_axis_m2_middle", logsm_am2, XIN(-3, 3, 3, 4, 2)),
        ROW1("logsoftmax_large_logits", logsm_am1, XIN(-90, -80, 3, 5)),
        ROW1L("logsoftmax_large_rows", logsm_am1, XIN(-5, 5, 300, 128)),
        ROW1L("logsoftmax_large_middle", logsm_a1, XIN(-5, 5, 8, 50, 100)),
        ROW2("softmaxgrad_axis_m1", smgrad_am1, XIN(-1, 1, 3, 5), XIN(0.05f, 1, 3, 5)),
        ROW2("softmaxgrad_axis_1", smgrad_a1, XIN(-1, 1, 2, 4, 3), XIN(0.05f, 1, 2, 4, 3)),
        ROW2("logsoftmaxgrad_axis_m1", logsmgrad_am1, XIN(-1, 1, 3, 5), XIN(-3, -0.1f, 3, 5)),
        ROW2("logsoftmaxgrad_axis_0", logsmgrad_a0, XIN(-1, 1, 4, 3), XIN(-3, -0.1f, 4, 3)),
    };
    return oh_run(cases, (int)(sizeof cases / sizeof cases[0]), "test_ops_softmax", argc, argv);
}
