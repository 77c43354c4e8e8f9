/* Small standard ops that no family owns, added so that models exported by
 * other tools load: Erf (torch.onnx.export writes exact GELU as
 * x * 0.5 * (1 + Erf(x / sqrt 2)) before opset 20). */
#include <math.h>

#include "ops/op.h"

#define PAR_MIN 32768 /* below this many elements threads cost more than they give */

static const at_attr_schema no_attrs[] = {{NULL, 0, false}};

/* ---- Erf ---- */

static at_status erf_infer(at_infer_ctx *c) {
    if (c->in_dtype[0] != AT_F32)
        return at_infer_fail(c, AT_E_SHAPE, "float32 only, got %s", at_dtype_name(c->in_dtype[0]));
    c->out_dtype[0] = AT_F32;
    c->out_shape[0] = c->in_shape[0];
    return AT_OK;
}

static at_status erf_cpu(at_kernel_ctx *k) {
    const float *x = k->in[0].data;
    float *y = k->out[0].data;
    int64_t n = at_shape_numel(&k->out[0].shape);
#pragma omp parallel for num_threads(k->threads) if (n > PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = erff(x[i]);
    return AT_OK;
}

/* d erf(x) / dx = 2 / sqrt(pi) * exp(-x^2) */
static at_status erf_grad(at_grad_ctx *c) {
    at_graph *g = c->g;
    at_val x = at_grad_in(c, 0);
    at_val e = at_exp(g, at_neg(g, at_mul(g, x, x)));
    c->dx[0] = at_mul(g, c->dy[0], at_mul(g, e, at_const_f32(g, 1.1283791670955126f)));
    return at_graph_status(g);
}

const at_op_def at_op_def_Erf = {
    .name = "Erf",
    .domain = AT_DOMAIN_ONNX,
    .min_in = 1,
    .max_in = 1,
    .min_out = 1,
    .max_out = 1,
    .attrs = no_attrs,
    .infer = erf_infer,
    .cpu = erf_cpu,
    .grad = erf_grad,
};

at_val at_erf(at_graph *g, at_val x) {
    return at_node1(g, "Erf", &x, 1, NULL, 0);
}
