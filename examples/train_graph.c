/* Builds a small MLP graph, adds its gradient and AdamW nodes, and trains
 * it on a synthetic task (is x0 * x1 > 0?) from C. Prints the loss and the
 * final accuracy; exits 1 if it did not learn. */
#include <stdio.h>
#include <stdlib.h>

#include <attune/attune.h>

enum { N = 256, H = 32 };

static float frand(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

int main(void) {
    at_graph *g = at_graph_new();
    int64_t B = at_sym(g, "B");
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(B, 2));
    at_val y = at_input(g, "y", AT_I64, AT_SHAPE(B));
    at_val lr = at_input(g, "lr", AT_F32, AT_SCALAR);
    at_val w1 = at_param(g, "w1", AT_F32, AT_SHAPE(2, H), 0);
    at_val b1 = at_param(g, "b1", AT_F32, AT_SHAPE(H), 0);
    at_val w2 = at_param(g, "w2", AT_F32, AT_SHAPE(H, 2), 0);
    unsigned seed = 7;
    float *p1 = at_value_data(g, w1), *p2 = at_value_data(g, w2);
    for (int i = 0; i < 2 * H; i++) p1[i] = frand(&seed), p2[i] = frand(&seed) * 0.3f;
    at_val logits = at_matmul(g, at_relu(g, at_add(g, at_matmul(g, x, w1), b1)), w2);
    at_val loss = at_softmax_cross_entropy(g, logits, y, AT_NONE, "mean", INT64_MIN);
    at_val params[3] = {w1, b1, w2}, grads[3], upd[3];
    at_backward(g, loss, params, 3, grads);
    at_adam_opts o = {0.9f, 0.999f, 1e-8f, 0.01f};
    at_adamw(g, 3, params, grads, lr, &o, upd);
    if (at_graph_status(g) != AT_OK) {
        fprintf(stderr, "build: %s\n", at_graph_error(g));
        return 1;
    }
    static float xd[N * 2];
    static int64_t yd[N];
    for (int i = 0; i < N; i++) {
        xd[2 * i] = frand(&seed), xd[2 * i + 1] = frand(&seed);
        yd[i] = xd[2 * i] * xd[2 * i + 1] > 0;
    }
    float lrv = 0.02f;
    at_feed feeds[3] = {{x, {AT_F32, AT_SHAPE(N, 2), xd}},
                        {y, {AT_I64, AT_SHAPE(N), yd}},
                        {lr, {AT_F32, AT_SCALAR, &lrv}}};
    at_err err;
    at_session *s = at_session_new(g, NULL, &err);
    if (!s) {
        fprintf(stderr, "session: %s\n", err.msg);
        return 1;
    }
    at_tensor out;
    for (int step = 0; step < 300; step++) {
        if (at_session_run(s, feeds, 3, &loss, 1, &out, upd, 3) != AT_OK) {
            fprintf(stderr, "run: %s\n", at_session_error(s));
            return 1;
        }
        if (step % 100 == 0) printf("step %3d loss %.4f\n", step, ((float *)out.data)[0]);
    }
    at_session_run(s, feeds, 1, &logits, 1, &out, NULL, 0);
    int right = 0;
    const float *l = out.data;
    for (int i = 0; i < N; i++) right += (l[2 * i + 1] > l[2 * i]) == (yd[i] == 1);
    printf("train accuracy %.1f%%\n", 100.0 * right / N);
    at_session_free(s);
    at_graph_free(g);
    return right >= N * 9 / 10 ? 0 : 1;
}
