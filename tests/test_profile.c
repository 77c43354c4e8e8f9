/* The session profiler (opts.profile): counts per node, order, reset, the text form, and that
 * it stays off by default. */
#include <stdlib.h>
#include <string.h>

#include "attune/attune.h"
#include "check.h"

int main(void) {
    at_graph *g = at_graph_new();
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(64, 64));
    at_val y = at_tanh(g, at_matmul(g, x, x));
    at_val z = at_add(g, y, x);
    CHECK(z != AT_NONE, "building: %s", at_graph_error(g));
    float *xs = calloc(64 * 64, sizeof *xs);
    for (int i = 0; xs && i < 64 * 64; i++) xs[i] = (float)(i % 7) * 0.01f;
    at_feed f = {x, {AT_F32, AT_SHAPE(64, 64), xs}};
    at_tensor out;
    at_err e = {0};

    at_session *off = at_session_new(g, NULL, &e);
    CHECK_OK(at_session_run(off, &f, 1, &z, 1, &out, NULL, 0));
    CHECK(at_session_profile(off, NULL, 0) == 0, "profiling is on by default");
    at_session_free(off);

    at_session_opts o = at_session_defaults();
    o.profile = true;
    at_session *s = at_session_new(g, &o, &e);
    for (int i = 0; i < 3; i++) CHECK_OK(at_session_run(s, &f, 1, &z, 1, &out, NULL, 0));
    at_profile_entry rows[8];
    int n = at_session_profile(s, rows, 8);
    CHECK(n == 3, "%d nodes profiled, want 3", n);
    bool seen_mm = false;
    for (int i = 0; i < n && i < 8; i++) {
        CHECK(rows[i].calls == 3, "node %s: %lld calls", rows[i].node, (long long)rows[i].calls);
        CHECK(rows[i].ms >= 0, "node %s: %g ms", rows[i].node, rows[i].ms);
        if (i) CHECK(rows[i - 1].ms >= rows[i].ms, "not slowest first at %d", i);
        seen_mm |= !strcmp(rows[i].op_type, "MatMul");
    }
    CHECK(seen_mm, "no MatMul row");
    CHECK(at_session_profile(s, rows, 1) == 3, "a short buffer changes the count");
    CHECK(at_session_profile(s, NULL, 2) == -1, "NULL rows with cap 2 accepted");
    CHECK(at_session_profile(NULL, rows, 8) == -1, "NULL session accepted");

    FILE *t = tmpfile();
    CHECK(t != NULL, "tmpfile");
    if (t) {
        CHECK_OK(at_session_profile_write(s, t, 5));
        char buf[4096];
        rewind(t);
        size_t got = fread(buf, 1, sizeof buf - 1, t);
        buf[got] = 0;
        CHECK(strstr(buf, "3 nodes, 3 runs") && strstr(buf, "MatMul") && strstr(buf, "Tanh") &&
                  strstr(buf, "top nodes"),
              "text form:\n%s", buf);
        fclose(t);
    }
    CHECK(at_session_profile_write(s, NULL, 5) == AT_E_INVALID, "NULL file accepted");

    at_session_profile_reset(s);
    CHECK(at_session_profile(s, rows, 8) == 0, "reset left counts");
    CHECK_OK(at_session_run(s, &f, 1, &z, 1, &out, NULL, 0));
    CHECK(at_session_profile(s, rows, 8) == 3 && rows[0].calls == 1, "counting after reset");
    at_session_free(s);
    at_graph_free(g);
    free(xs);
    return check_done("test_profile");
}
