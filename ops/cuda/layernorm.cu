/* CUDA kernels of LayerNormalization and its fused backward op (ops/layernorm.c).
 *
 * Forward: a warp per row ([rows, D] with D = prod(X.shape[axis:])): mean and variance in
 * double (two passes over the row, as the CPU), then Y, Mean and InvStdDev.
 * Backward: a warp per row for dX (row sums in double, then the closed form); dScale and dBias
 * are column sums over rows, taken per fixed chunk of rows into the workspace and the chunks
 * added in order, so the result does not depend on scheduling. */
#include <math.h>

#include "runtime/cuda/cuda_common.cuh"

enum { G_DY, G_X, G_SCALE, G_MEAN, G_INV, G_DMEAN, G_DINV };

static int ln_split(const at_node_rec *n, const at_shape *x, int64_t *rows, int64_t *D) {
    int axis = at_norm_axis(at_attr_int(n, "axis", -1), x->rank);
    if (axis < 0) return -1;
    *rows = at_dims_prod(x, 0, axis);
    *D = at_dims_prod(x, axis, x->rank);
    return axis;
}

static const float *in_f32(const at_kernel_ctx *k, int i) {
    return k->n_in > i ? (const float *)k->in[i].data : NULL;
}
static float *out_f32(const at_kernel_ctx *k, int j) {
    return k->n_out > j ? (float *)k->out[j].data : NULL;
}

/* mean and 1/sqrt(var + eps) of a row, by the whole warp; every lane gets the result. */
__device__ inline void warp_row_stats(const float *x, int64_t D, double eps, float *mean,
                                      float *inv) {
    int lane = threadIdx.x & 31;
    double s = 0;
    for (int64_t j = lane; j < D; j += 32) s += x[j];
    s = at_warp_sum(s);
    double m = D ? s / (double)D : 0;
    double v = 0;
    for (int64_t j = lane; j < D; j += 32) {
        double d = x[j] - m;
        v += d * d;
    }
    v = at_warp_sum(v);
    *mean = (float)m;
    *inv = (float)(1.0 / sqrt((D ? v / (double)D : 0) + eps));
}

#define WARP_ROWS_LOOP(r, rows)                                                                    \
    for (int64_t r = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); r < (rows);     \
         r += (int64_t)gridDim.x * (blockDim.x >> 5))

__global__ void ln_fwd_kernel(const float *x, const float *scale, const float *bias, float *y,
                              float *mo, float *io, int64_t rows, int64_t D, double eps) {
    int lane = threadIdx.x & 31;
    WARP_ROWS_LOOP(r, rows) {
        const float *xr = x + r * D;
        float *yr = y + r * D;
        float mean, inv;
        warp_row_stats(xr, D, eps, &mean, &inv);
        for (int64_t j = lane; j < D; j += 32) {
            float v = (xr[j] - mean) * inv * scale[j];
            yr[j] = bias ? v + bias[j] : v;
        }
        if (lane == 0) {
            if (mo) mo[r] = mean;
            if (io) io[r] = inv;
        }
    }
}

static at_status ln_cuda(at_kernel_ctx *k) {
    int64_t rows, D;
    if (ln_split(k->node, &k->in[0].shape, &rows, &D) < 0)
        return at_kernel_fail(k, AT_E_INVALID, "axis out of range");
    if (rows == 0) return AT_OK;
    double eps = at_attr_float(k->node, "epsilon", 1e-5f);
    ln_fwd_kernel<<<at_cu_grid(k, rows * 32), AT_CU_THREADS, 0, at_cu_stream(k)>>>(
        in_f32(k, 0), in_f32(k, 1), in_f32(k, 2), out_f32(k, 0), out_f32(k, 1), out_f32(k, 2), rows,
        D, eps);
    AT_CU_LAUNCHED(k, "ln_fwd_kernel");
    return AT_OK;
}

/* ---- backward ---- */

/* Row chunks of the dScale / dBias sums: a function of the shapes alone. */
static int64_t ln_chunks(int64_t rows, int64_t D) {
    int64_t c = D > 0 ? (65536 + D - 1) / D : 1;
    if (c > 1024) c = 1024;
    if (c > rows) c = rows;
    return c < 1 ? 1 : c;
}

/* Workspace: chunk partials (2 * chunks * D doubles), then per-row mean and inv (2 * rows
 * floats) when they are recomputed. */
static size_t ln_grad_ws(const at_kernel_ctx *k) {
    int64_t rows, D;
    if (ln_split(k->node, &k->in[G_X].shape, &rows, &D) < 0) return 0;
    return (size_t)(2 * ln_chunks(rows, D) * D) * sizeof(double) +
           (size_t)(2 * rows) * sizeof(float);
}

struct ln_grad_args {
    const float *dy, *x, *scale, *mean_in, *inv_in, *dmean, *dinv;
    float *dx, *row_mean, *row_inv;
    int64_t rows, D;
    double eps;
};

__global__ void ln_grad_rows_kernel(ln_grad_args a) {
    int lane = threadIdx.x & 31;
    WARP_ROWS_LOOP(r, a.rows) {
        const float *xr = a.x + r * a.D, *gr = a.dy ? a.dy + r * a.D : NULL;
        float mean, inv;
        if (a.mean_in)
            mean = a.mean_in[r], inv = a.inv_in[r];
        else
            warp_row_stats(xr, a.D, a.eps, &mean, &inv);
        if (lane == 0) a.row_mean[r] = mean, a.row_inv[r] = inv;
        if (!a.dx) continue;
        double sg = 0, sgx = 0;
        if (gr) {
            for (int64_t j = lane; j < a.D; j += 32) {
                double xh = (double)(xr[j] - mean) * inv, g = (double)gr[j] * a.scale[j];
                sg += g;
                sgx += g * xh;
            }
            sg = at_warp_sum(sg);
            sgx = at_warp_sum(sgx);
        }
        double invD = a.D ? 1.0 / (double)a.D : 0;
        double mg = sg * invD, mgx = sgx * invD;
        double cm = a.dmean ? a.dmean[r] * invD : 0;
        double ci = a.dinv ? -(double)a.dinv[r] * inv * inv * invD : 0;
        float *dxr = a.dx + r * a.D;
        for (int64_t j = lane; j < a.D; j += 32) {
            double xh = (double)(xr[j] - mean) * inv;
            double g = gr ? (double)gr[j] * a.scale[j] : 0;
            dxr[j] = (float)(inv * (g - mg - xh * mgx) + cm + ci * xh);
        }
    }
}

__global__ void ln_grad_cols_kernel(const float *dy, const float *x, const float *row_mean,
                                    const float *row_inv, double *part, int64_t rows, int64_t D,
                                    int64_t chunks) {
    int64_t per = (rows + chunks - 1) / chunks;
    AT_GRID_LOOP(t, chunks * D) {
        int64_t c = t / D, j = t % D;
        int64_t r0 = c * per, r1 = r0 + per < rows ? r0 + per : rows;
        double s = 0, b = 0;
        for (int64_t r = r0; r < r1; r++) {
            float g = dy[r * D + j];
            double xh = (double)(x[r * D + j] - row_mean[r]) * row_inv[r];
            s += g * xh;
            b += g;
        }
        part[c * 2 * D + j] = s;
        part[c * 2 * D + D + j] = b;
    }
}

__global__ void ln_grad_sum_kernel(const double *part, float *dscale, float *dbias, int64_t D,
                                   int64_t chunks) {
    AT_GRID_LOOP(j, D) {
        double s = 0, b = 0;
        for (int64_t c = 0; c < chunks; c++) {
            s += part[c * 2 * D + j];
            b += part[c * 2 * D + D + j];
        }
        if (dscale) dscale[j] = (float)s;
        if (dbias) dbias[j] = (float)b;
    }
}

static at_status ln_grad_cuda(at_kernel_ctx *k) {
    int64_t rows, D;
    if (ln_split(k->node, &k->in[G_X].shape, &rows, &D) < 0)
        return at_kernel_fail(k, AT_E_INVALID, "axis out of range");
    size_t need = ln_grad_ws(k);
    if (need && (!k->ws || k->ws_size < need))
        return at_kernel_fail(k, AT_E_INTERNAL, "workspace of %zu bytes missing", need);
    int64_t chunks = ln_chunks(rows, D);
    double *part = (double *)k->ws;
    ln_grad_args a;
    a.dy = in_f32(k, G_DY);
    a.x = in_f32(k, G_X);
    a.scale = in_f32(k, G_SCALE);
    bool saved = in_f32(k, G_MEAN) && in_f32(k, G_INV);
    a.mean_in = saved ? in_f32(k, G_MEAN) : NULL;
    a.inv_in = saved ? in_f32(k, G_INV) : NULL;
    a.dmean = in_f32(k, G_DMEAN);
    a.dinv = in_f32(k, G_DINV);
    a.dx = out_f32(k, 0);
    a.row_mean = (float *)(part + 2 * chunks * D);
    a.row_inv = a.row_mean + rows;
    a.rows = rows;
    a.D = D;
    a.eps = at_attr_float(k->node, "epsilon", 1e-5f);
    float *dscale = out_f32(k, 1), *dbias = out_f32(k, 2);
    cudaStream_t s = at_cu_stream(k);
    if (rows > 0) {
        ln_grad_rows_kernel<<<at_cu_grid(k, rows * 32), AT_CU_THREADS, 0, s>>>(a);
        AT_CU_LAUNCHED(k, "ln_grad_rows_kernel");
    }
    if (!dscale && !dbias) return AT_OK;
    if (!a.dy || rows == 0) {
        /* No dY (only Mean or InvStdDev carry a gradient): the parameter sums are zero. */
        if (dscale) AT_CU_CHECK(k, cudaMemsetAsync(dscale, 0, (size_t)D * sizeof(float), s));
        if (dbias) AT_CU_CHECK(k, cudaMemsetAsync(dbias, 0, (size_t)D * sizeof(float), s));
        return AT_OK;
    }
    ln_grad_cols_kernel<<<at_cu_grid(k, chunks * D), AT_CU_THREADS, 0, s>>>(
        a.dy, a.x, a.row_mean, a.row_inv, part, rows, D, chunks);
    AT_CU_LAUNCHED(k, "ln_grad_cols_kernel");
    ln_grad_sum_kernel<<<at_cu_grid(k, D), AT_CU_THREADS, 0, s>>>(part, dscale, dbias, D, chunks);
    AT_CU_LAUNCHED(k, "ln_grad_sum_kernel");
    return AT_OK;
}

void at_cuda_register_layernorm(at_cuda_kernel_def *t) {
    AT_CUDA_REG(t, LayerNormalization, ln_cuda, NULL);
    AT_CUDA_REG(t, LayerNormGrad, ln_grad_cuda, ln_grad_ws);
}
