/* Graph files: build -> save -> load gives the same graph (values, kinds, groups, data,
 * nodes, attributes of every kind, symbols, metadata) and bit-identical outputs;
 * save -> load -> save gives identical bytes; model files keep only the inference part;
 * checkpoints carry the training position; files are written atomically; the text and DOT
 * forms name what they should; foreign ONNX files (typed data fields, initializers listed as
 * inputs, unnamed nodes) load.
 *
 * `test_io --emit DIR` writes sample models with inputs and the outputs attune computes
 * (.npy) and a manifest.json, for tests/test_onnx_interop.py to check with onnx.checker and
 * ONNX Runtime; `test_io --resave IN OUT` loads a model and saves it again. */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attune/attune.h"
#include "attune/io.h"
#include "check.h"
#include "graph/ir.h"
#include "ops/op.h"
#include "onnx.pb-c.h"

/* ------------------------------------------------------------------------------------------ */
/* helpers */

static uint64_t rng_state = 0x5eed;
static double unif(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}

static void fill_f32(at_graph *g, at_val v, float lo, float hi) {
    at_shape s = at_value_shape(g, v);
    float *d = at_value_data(g, v);
    for (int64_t i = 0; i < at_shape_numel(&s); i++) d[i] = (float)(lo + (hi - lo) * unif());
}

static char tmpdir[256];

static void make_tmpdir(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/attune_test_io_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        exit(1);
    }
}

static void remove_tmpdir(void) {
    DIR *d = opendir(tmpdir);
    if (!d) return;
    struct dirent *e;
    char p[600];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(tmpdir);
}

static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* ------------------------------------------------------------------------------------------ */
/* graph comparison: by names, so value creation order may differ */

static bool dims_same(const at_graph *a, const at_graph *b, const at_shape *sa,
                      const at_shape *sb) {
    if (sa->rank != sb->rank) return false;
    for (int i = 0; i < sa->rank; i++) {
        int64_t x = sa->dim[i], y = sb->dim[i];
        if ((x >= 0) != (y >= 0)) return false;
        if (x >= 0 && x != y) return false;
        if (x < 0) {
            const char *nx = at_sym_name(a, x), *ny = at_sym_name(b, y);
            bool anon_x = nx && nx[0] == '_' && nx[1] == 'd';
            bool anon_y = ny && ny[0] == '_' && ny[1] == 'd';
            /* a symbol named by the user keeps its name; invented ones are just symbols */
            if (anon_x != anon_y) return false;
            if (!anon_x && strcmp(nx, ny) != 0) return false;
        }
    }
    return true;
}

static bool attr_same(const at_attr_rec *x, const at_attr_rec *y) {
    if (strcmp(x->name, y->name) || x->kind != y->kind) return false;
    switch (x->kind) {
    case AT_ATTR_INT:
        return x->i == y->i;
    case AT_ATTR_FLOAT:
        return memcmp(&x->f, &y->f, sizeof(float)) == 0;
    case AT_ATTR_STRING:
        return strcmp(x->s, y->s) == 0;
    case AT_ATTR_INTS:
        return x->n == y->n && (x->n == 0 || memcmp(x->ints, y->ints, sizeof(int64_t) * x->n) == 0);
    case AT_ATTR_FLOATS:
        return x->n == y->n &&
               (x->n == 0 || memcmp(x->floats, y->floats, sizeof(float) * x->n) == 0);
    case AT_ATTR_STRINGS:
        if (x->n != y->n) return false;
        for (int i = 0; i < x->n; i++)
            if (strcmp(x->strs[i], y->strs[i])) return false;
        return true;
    case AT_ATTR_TENSOR:
        return x->t->dtype == y->t->dtype && at_shape_equal(&x->t->shape, &y->t->shape) &&
               memcmp(x->t->data, y->t->data, at_tensor_nbytes(x->t)) == 0;
    default:
        return false;
    }
}

/* Returns NULL when a and b are the same graph, else what differs (static buffer). */
static const char *graph_diff(const at_graph *a, const at_graph *b) {
    static char why[512];
    if (a->n_vals != b->n_vals) {
        snprintf(why, sizeof why, "%d vs %d values", a->n_vals, b->n_vals);
        return why;
    }
    for (int v = 0; v < a->n_vals; v++) {
        const at_value_rec *x = &a->vals[v];
        at_val w = at_graph_find(b, x->name);
        if (w == AT_NONE) {
            snprintf(why, sizeof why, "value '%s' missing", x->name);
            return why;
        }
        const at_value_rec *y = &b->vals[w];
        if (x->dtype != y->dtype || x->kind != y->kind || x->group != y->group ||
            !dims_same(a, b, &x->shape, &y->shape) || (!x->data) != (!y->data)) {
            snprintf(why, sizeof why, "value '%s' differs (dtype %d/%d kind %d/%d group %d/%d)",
                     x->name, x->dtype, y->dtype, x->kind, y->kind, x->group, y->group);
            return why;
        }
        if (x->data) {
            int64_t n = at_shape_numel(&x->shape);
            if (memcmp(x->data, y->data, (size_t)n * at_dtype_size(x->dtype)) != 0) {
                snprintf(why, sizeof why, "data of '%s' differs", x->name);
                return why;
            }
        }
        if ((x->producer < 0) != (y->producer < 0)) {
            snprintf(why, sizeof why, "producer of '%s' differs", x->name);
            return why;
        }
    }
    if (a->n_inputs != b->n_inputs || a->n_outputs != b->n_outputs) return "input/output counts";
    for (int i = 0; i < a->n_inputs; i++)
        if (strcmp(a->vals[a->inputs[i]].name, b->vals[b->inputs[i]].name)) return "input order";
    for (int i = 0; i < a->n_outputs; i++)
        if (strcmp(a->vals[a->outputs[i]].name, b->vals[b->outputs[i]].name)) return "outputs";
    if (a->n_nodes != b->n_nodes) {
        snprintf(why, sizeof why, "%d vs %d nodes", a->n_nodes, b->n_nodes);
        return why;
    }
    for (int i = 0; i < a->n_nodes; i++) {
        const at_node_rec *x = &a->nodes[i], *y = &b->nodes[i];
        bool same = !strcmp(x->name, y->name) && !strcmp(x->op_type, y->op_type) &&
                    !strcmp(x->domain, y->domain) && x->n_in == y->n_in && x->n_out == y->n_out &&
                    x->n_attrs == y->n_attrs;
        for (int k = 0; same && k < x->n_in; k++)
            same = (x->in[k] == AT_NONE) == (y->in[k] == AT_NONE) &&
                   (x->in[k] == AT_NONE || !strcmp(a->vals[x->in[k]].name, b->vals[y->in[k]].name));
        for (int k = 0; same && k < x->n_out; k++)
            same = !strcmp(a->vals[x->out[k]].name, b->vals[y->out[k]].name);
        for (int k = 0; same && k < x->n_attrs; k++) same = attr_same(&x->attrs[k], &y->attrs[k]);
        if (!same) {
            snprintf(why, sizeof why, "node %d ('%s' %s) differs", i, x->name, x->op_type);
            return why;
        }
    }
    if (a->n_meta != b->n_meta) {
        snprintf(why, sizeof why, "%d vs %d metadata entries", a->n_meta, b->n_meta);
        return why;
    }
    for (int i = 0; i < a->n_meta; i++)
        if (strcmp(a->meta_keys[i], b->meta_keys[i]) || strcmp(a->meta_vals[i], b->meta_vals[i])) {
            snprintf(why, sizeof why, "metadata '%s' differs", a->meta_keys[i]);
            return why;
        }
    /* parameter order is what optimizers and checkpoints rely on */
    at_val pa[64], pb[64];
    int na = at_graph_params(a, ~0u, pa, 64), nb = at_graph_params(b, ~0u, pb, 64);
    if (na != nb) return "parameter count";
    for (int i = 0; i < na && i < 64; i++)
        if (strcmp(at_value_name(a, pa[i]), at_value_name(b, pb[i]))) return "parameter order";
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* sample graphs */

typedef struct mixed {
    at_val x, ids, probs, y, idsf, loss;
    at_val W, b, E;
} mixed;

/* Every attribute kind, an omitted optional input, params in three groups, a constant, a
 * state value, a symbolic batch dim, metadata with awkward characters. Standard ops only
 * (ONNX Runtime runs it). */
static at_graph *build_mixed(mixed *m) {
    at_graph *g = at_graph_new();
    int64_t B = at_sym(g, "B");
    m->x = at_input(g, "x", AT_F32, AT_SHAPE(B, 4));
    m->ids = at_input(g, "ids", AT_I64, AT_SHAPE(B));
    m->W = at_param(g, "enc.W", AT_F32, AT_SHAPE(4, 3), 0);
    m->b = at_param(g, "enc.b", AT_F32, AT_SHAPE(3), 2);
    m->E = at_param(g, "emb", AT_F32, AT_SHAPE(10, 3), 1);
    fill_f32(g, m->W, -1, 1);
    fill_f32(g, m->b, -0.5f, 0.5f);
    fill_f32(g, m->E, -1, 1);
    at_val st = at_state(g, "enc.W.m", AT_F32, AT_SHAPE(4, 3));
    fill_f32(g, st, 0, 1);
    at_val h = at_add(g, at_matmul(g, m->x, m->W), m->b);
    h = at_add(g, h, at_gather(g, m->E, m->ids, 0));
    h = at_leaky_relu(g, h, 0.1f); /* FLOAT */
    at_attr approx = AT_ATTR_S("approximate", "tanh");
    h = at_node1(g, "Gelu", &h, 1, &approx, 1); /* STRING */
    int64_t perm[2] = {1, 0};
    at_val t = at_transpose(g, h, 2, perm); /* INTS */
    float cdata[3] = {0.5f, -2.0f, 1.25f};
    at_tensor ct = {AT_F32, AT_SHAPE(3, 1), cdata};
    t = at_mul(g, t, at_constant(g, &ct)); /* TENSOR */
    float fl[3] = {0.25f, 1.5f, -0.75f};
    at_attr vf = AT_ATTR_FLOATS("value_floats", 3, fl);
    at_val c2 = at_node1(g, "Constant", NULL, 0, &vf, 1); /* FLOATS */
    at_val y = at_add(g, at_transpose(g, t, 2, perm), c2);
    /* Clip with the min omitted: an empty input slot */
    float hi = 2.0f;
    at_val hiv = at_const(g, "clip_hi", AT_F32, AT_SCALAR, &hi);
    at_val cin[3] = {y, AT_NONE, hiv};
    at_val yc;
    at_node_add(g, "Clip", "", cin, 3, &yc, 1, NULL, 0);
    m->y = yc;
    m->probs = at_softmax(g, yc, -1);
    m->idsf = at_cast(g, m->ids, AT_F32); /* INT */
    at_value_rename(g, m->probs, "probs");
    at_value_rename(g, m->y, "y");
    at_output(g, m->probs);
    at_output(g, m->y);
    at_output(g, m->idsf);
    at_graph_set_meta(g, "labels", "alpha,beta,gamma");
    at_graph_set_meta(g, "config", "{\"hidden\": 3,\n \"note\": \"tab\\there\"}");
    return g;
}

/* The mixed graph plus a loss, its backward and SGD with momentum (ai.attune ops, state). */
static at_graph *build_training(mixed *m) {
    at_graph *g = build_mixed(m);
    at_val lr = at_input(g, "lr", AT_F32, AT_SCALAR);
    at_val sq = at_mul(g, m->y, m->y);
    m->loss = at_reduce_mean(g, sq, 0, NULL, 0);
    at_value_rename(g, m->loss, "loss");
    at_val params[3] = {m->W, m->b, m->E}, grads[3], upd[3];
    at_backward(g, m->loss, params, 3, grads);
    at_sgd(g, 3, params, grads, lr, 0.9f, 0.0f, upd);
    return g;
}

/* ------------------------------------------------------------------------------------------ */
/* running */

typedef struct run_out {
    int n;
    at_tensor t[8];
    void *copy[8];
} run_out;

static void run_free(run_out *r) {
    for (int i = 0; i < r->n; i++) free(r->copy[i]);
    memset(r, 0, sizeof *r);
}

/* Deterministic feeds for every input of g, symbols bound to `batch`: floats in [-1, 1),
 * int64 in [0, 10), int32 (sequence lengths) in 1..batch. */
static int make_feeds(const at_graph *g, int64_t batch, at_feed *feeds, void **bufs) {
    int ni = at_graph_num_inputs(g);
    uint64_t saved = rng_state;
    rng_state = 777;
    for (int i = 0; i < ni && i < 8; i++) {
        at_val v = at_graph_input(g, i);
        at_shape sh = at_value_shape(g, v);
        for (int k = 0; k < sh.rank; k++)
            if (sh.dim[k] < 0) sh.dim[k] = batch;
        int64_t n = at_shape_numel(&sh);
        at_dtype dt = at_value_dtype(g, v);
        bufs[i] = calloc((size_t)n + 1, at_dtype_size(dt));
        for (int64_t k = 0; k < n; k++) {
            if (dt == AT_F32)
                ((float *)bufs[i])[k] = (float)(2 * unif() - 1);
            else if (dt == AT_I64)
                ((int64_t *)bufs[i])[k] = (int64_t)(unif() * 10);
            else if (dt == AT_I32)
                ((int32_t *)bufs[i])[k] = (int32_t)(1 + k % batch);
        }
        feeds[i] = (at_feed){v, {dt, sh, bufs[i]}};
    }
    rng_state = saved;
    return ni;
}

/* Runs g's outputs on make_feeds' feeds; copies the outputs into r. */
static at_status run_graph(at_graph *g, run_out *r, int64_t batch, char *msg, size_t cap) {
    memset(r, 0, sizeof *r);
    at_err err;
    at_session *s = at_session_new(g, NULL, &err);
    if (!s) {
        snprintf(msg, cap, "session: %s", err.msg);
        return err.code;
    }
    at_feed feeds[8];
    void *bufs[8] = {0};
    int ni = make_feeds(g, batch, feeds, bufs);
    int no = at_graph_num_outputs(g);
    at_val fetch[8];
    for (int i = 0; i < no; i++) fetch[i] = at_graph_output(g, i);
    at_status st = at_session_run(s, feeds, ni, fetch, no, r->t, NULL, 0);
    if (st != AT_OK) snprintf(msg, cap, "run: %s", at_session_error(s));
    for (int i = 0; st == AT_OK && i < no; i++) {
        size_t nb = at_tensor_nbytes(&r->t[i]);
        r->copy[i] = malloc(nb + 1);
        memcpy(r->copy[i], r->t[i].data, nb);
        r->t[i].data = r->copy[i];
        r->n++;
    }
    at_session_free(s);
    for (int i = 0; i < ni && i < 8; i++) free(bufs[i]);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* tests */

static void test_roundtrip_mixed(void) {
    mixed m;
    at_graph *g = build_mixed(&m);
    CHECK(at_graph_status(g) == AT_OK, "build: %s", at_graph_error(g));
    at_err err = {0};
    void *b1 = NULL, *b2 = NULL;
    size_t n1 = 0, n2 = 0;
    CHECK_OK(at_graph_save_bytes(g, NULL, &b1, &n1, &err));
    at_graph *h = at_graph_load_bytes(b1, n1, &err);
    CHECK(h != NULL, "load: %s", err.msg);
    if (h) {
        const char *d = graph_diff(g, h);
        CHECK(d == NULL, "round trip differs: %s", d);
        CHECK_OK(at_graph_save_bytes(h, NULL, &b2, &n2, &err));
        CHECK(n1 == n2 && memcmp(b1, b2, n1) == 0, "save-load-save bytes differ (%zu vs %zu)", n1,
              n2);
        /* bit-identical outputs */
        run_out ra, rb;
        char ma[600] = "", mb[600] = "";
        at_status sa = run_graph(g, &ra, 5, ma, sizeof ma),
                  sb = run_graph(h, &rb, 5, mb, sizeof mb);
        CHECK(sa == AT_OK && sb == AT_OK, "runs: %s %s", ma, mb);
        if (sa == AT_OK && sb == AT_OK) {
            CHECK(ra.n == rb.n && ra.n == 3, "output counts %d %d", ra.n, rb.n);
            for (int i = 0; i < ra.n && i < rb.n; i++)
                CHECK(at_tensor_nbytes(&ra.t[i]) == at_tensor_nbytes(&rb.t[i]) &&
                          memcmp(ra.t[i].data, rb.t[i].data, at_tensor_nbytes(&ra.t[i])) == 0,
                      "output %d differs after the round trip", i);
        }
        run_free(&ra);
        run_free(&rb);
        /* the group and kind survive */
        at_val W = at_graph_find(h, "enc.W"), b = at_graph_find(h, "enc.b");
        at_val st = at_graph_find(h, "enc.W.m"), hi = at_graph_find(h, "clip_hi");
        CHECK(at_value_kind_of(h, W) == AT_VALUE_PARAM && at_value_group(h, W) == 0, "W");
        CHECK(at_value_kind_of(h, b) == AT_VALUE_PARAM && at_value_group(h, b) == 2, "b");
        CHECK(at_value_kind_of(h, st) == AT_VALUE_STATE, "state kind");
        CHECK(at_value_kind_of(h, hi) == AT_VALUE_CONST, "const kind");
        CHECK(at_graph_meta(h, "attune.params") == NULL, "reserved keys are not metadata");
        at_shape xs = at_value_shape(h, at_graph_find(h, "x"));
        CHECK(xs.rank == 2 && xs.dim[0] < 0 && !strcmp(at_sym_name(h, xs.dim[0]), "B"),
              "symbolic batch dim");
        /* the builder keeps working on a loaded graph without name clashes */
        at_val extra = at_relu(h, at_graph_find(h, "y"));
        at_val extra2 = at_tanh(h, extra);
        CHECK(extra2 != AT_NONE && at_graph_status(h) == AT_OK, "building on a loaded graph: %s",
              at_graph_error(h));
    }
    free(b1);
    free(b2);
    at_graph_free(h);
    at_graph_free(g);
}

static void test_roundtrip_training(void) {
    mixed m;
    at_graph *g = build_training(&m);
    CHECK(at_graph_status(g) == AT_OK, "build: %s", at_graph_error(g));
    if (at_graph_status(g) != AT_OK) {
        at_graph_free(g);
        return;
    }
    at_err err = {0};
    char path[400];
    snprintf(path, sizeof path, "%s/train.onnx", tmpdir);
    CHECK_OK(at_graph_save(g, path, NULL, &err));
    CHECK(count_files(tmpdir) == 1, "no temporary file left behind (%d files)",
          count_files(tmpdir));
    at_graph *h = at_graph_load(path, &err);
    CHECK(h != NULL, "load: %s", err.msg);
    if (h) {
        const char *d = graph_diff(g, h);
        CHECK(d == NULL, "training graph round trip differs: %s", d);
        void *b1, *b2;
        size_t n1, n2;
        at_graph_save_bytes(g, NULL, &b1, &n1, &err);
        at_graph_save_bytes(h, NULL, &b2, &n2, &err);
        CHECK(n1 == n2 && memcmp(b1, b2, n1) == 0, "training graph bytes differ");
        free(b1);
        free(b2);
    }
    at_graph_free(h);

    /* a model file keeps only what the outputs need */
    snprintf(path, sizeof path, "%s/model.onnx", tmpdir);
    CHECK_OK(at_model_save(g, path, &err));
    h = at_graph_load(path, &err);
    CHECK(h != NULL, "model load: %s", err.msg);
    if (h) {
        CHECK(at_graph_num_inputs(h) == 2, "model inputs: %d (lr dropped)", at_graph_num_inputs(h));
        bool any_state = false, any_attune = false;
        for (int v = 0; v < at_graph_num_values(h); v++)
            any_state |= at_value_kind_of(h, v) == AT_VALUE_STATE;
        for (int i = 0; i < at_graph_num_nodes(h); i++)
            any_attune |= strcmp(at_node_domain(h, i), "") != 0;
        CHECK(!any_state && !any_attune, "model file has state or training ops");
        at_val p[8];
        CHECK(at_graph_params(h, ~0u, p, 8) == 3, "model keeps its params");
    }
    at_graph_free(h);

    /* a checkpoint carries the training position */
    snprintf(path, sizeof path, "%s/ckpt.onnx", tmpdir);
    at_checkpoint_info ci = {.step = 12345678901ull, .epoch = 7, .phase = 2, .rng_seed = 42};
    at_graph_set_meta(g, "attune.step", "1"); /* stale: the checkpoint's own value wins */
    CHECK_OK(at_checkpoint_save(g, &ci, path, &err));
    CHECK_OK(at_checkpoint_save(g, &ci, path, &err)); /* overwrite in place */
    CHECK(count_files(tmpdir) == 3, "files: %d", count_files(tmpdir));
    at_checkpoint_info back;
    h = at_checkpoint_load(path, &back, &err);
    CHECK(h != NULL, "checkpoint load: %s", err.msg);
    if (h) {
        CHECK(back.step == ci.step && back.epoch == 7 && back.phase == 2 && back.rng_seed == 42,
              "checkpoint info %llu %lld %d %llu", (unsigned long long)back.step,
              (long long)back.epoch, back.phase, (unsigned long long)back.rng_seed);
        CHECK(at_graph_meta(h, "attune.step") == NULL, "checkpoint keys not copied");
        int n_state = 0;
        for (int v = 0; v < at_graph_num_values(h); v++)
            n_state += at_value_kind_of(h, v) == AT_VALUE_STATE;
        CHECK(n_state >= 4, "optimizer state kept (%d)", n_state);
    }
    at_graph_free(h);
    h = at_graph_load(path, &err);
    CHECK(h && at_graph_meta(h, "attune.step") &&
              !strcmp(at_graph_meta(h, "attune.step"), "12345678901"),
          "a plain load shows the step as metadata");
    at_graph_free(h);
    snprintf(path, sizeof path, "%s/model.onnx", tmpdir);
    h = at_checkpoint_load(path, &back, &err);
    CHECK(!h && err.code == AT_E_FORMAT && strstr(err.msg, "not a checkpoint"),
          "a model file is not a checkpoint: %s", err.msg);
    at_graph_free(g);
}

static void test_save_errors(void) {
    at_err err = {0};
    mixed m;
    at_graph *g = build_mixed(&m);
    CHECK(at_graph_save(g, "/nonexistent-dir/x.onnx", NULL, &err) == AT_E_IO &&
              strstr(err.msg, "/nonexistent-dir/x.onnx"),
          "unwritable path: %s", err.msg);
    at_graph *bad = at_graph_new();
    at_input(bad, "x", AT_F32, AT_SHAPE(2));
    at_node1(bad, "NoSuchOp", NULL, 0, NULL, 0);
    void *b;
    size_t n;
    CHECK(at_graph_save_bytes(bad, NULL, &b, &n, &err) != AT_OK && strstr(err.msg, "NoSuchOp"),
          "a graph with a build error is not saved: %s", err.msg);
    at_graph_free(bad);
    at_graph_free(g);
}

static bool contains(const char *hay, const char *needle) {
    return strstr(hay, needle) != NULL;
}

static void test_text_and_dot(void) {
    mixed m;
    at_graph *g = build_training(&m);
    char *buf = NULL;
    size_t len = 0;
    int failed_before = check_failed;
    FILE *f = open_memstream(&buf, &len);
    CHECK_OK(at_graph_write_text(g, f));
    fclose(f);
    CHECK(contains(buf, "graph (float32[B,4] x, int64[B] ids, float32[] lr) => ("),
          "text header:\n%s", buf);
    CHECK(contains(buf, "param[group 2] float32[3] enc.b = {"), "param line");
    CHECK(contains(buf, "state float32[4,3] enc.W.m"), "state line");
    CHECK(contains(buf, "Gelu<approximate = \"tanh\">("), "string attr");
    CHECK(contains(buf, "LeakyRelu<alpha = 0.100000001>("), "float attr");
    CHECK(contains(buf, "Transpose<perm = [1, 0]>("), "ints attr");
    CHECK(contains(buf, "Constant<value = float32[3,1] = {0.5, -2.0, 1.25}>()"), "tensor attr");
    CHECK(contains(buf, "Constant<value_floats = [0.25, 1.5, -0.75]>()"), "floats attr");
    CHECK(contains(buf, ", , clip_hi)"), "empty input slot");
    CHECK(contains(buf, "ai.attune."), "custom-domain ops show their domain");
    CHECK(contains(buf, "\"config\": \"{\\\"hidden\\\": 3,\\n"), "metadata escaped");
    CHECK(contains(buf, "# float32[B,3]"), "output types");
    if (check_failed > failed_before) fprintf(stderr, "%s", buf);
    free(buf);
    buf = NULL;
    f = open_memstream(&buf, &len);
    CHECK_OK(at_graph_write_dot(g, f));
    fclose(f);
    CHECK(contains(buf, "digraph attune {") && contains(buf, "label=\"Gelu\\n") &&
              contains(buf, "enc.W\\nfloat32[4,3]") && contains(buf, "-> out0") &&
              buf[len - 2] == '}',
          "dot:\n%s", buf);
    free(buf);
    at_graph_free(g);
}

/* A file written the way other tools write them: typed data fields, an initializer also
 * listed as a graph input, unnamed nodes, a dim with no value, a node out of order. */
static void test_foreign(void) {
    Onnx__ModelProto m = ONNX__MODEL_PROTO__INIT;
    Onnx__GraphProto gp = ONNX__GRAPH_PROTO__INIT;
    Onnx__OperatorSetIdProto op = ONNX__OPERATOR_SET_ID_PROTO__INIT;
    Onnx__OperatorSetIdProto *ops[1] = {&op};
    op.has_version = 1;
    op.version = 17;
    m.has_ir_version = 1;
    m.ir_version = 8;
    m.graph = &gp;
    m.n_opset_import = 1;
    m.opset_import = ops;
    gp.name = "foreign";

    float wv[6] = {1, 2, 3, 4, 5, 6};
    int64_t wd[2] = {2, 3};
    Onnx__TensorProto w = ONNX__TENSOR_PROTO__INIT;
    w.name = "W";
    w.has_data_type = 1;
    w.data_type = 1;
    w.n_dims = 2;
    w.dims = wd;
    w.n_float_data = 6;
    w.float_data = wv;
    int32_t bv[3] = {1, 0, 1};
    int64_t bd[1] = {3};
    Onnx__TensorProto bt = ONNX__TENSOR_PROTO__INIT;
    bt.name = "mask";
    bt.has_data_type = 1;
    bt.data_type = 9;
    bt.n_dims = 1;
    bt.dims = bd;
    bt.n_int32_data = 3;
    bt.int32_data = bv;
    Onnx__TensorProto *inits[2] = {&w, &bt};
    gp.n_initializer = 2;
    gp.initializer = inits;

    /* inputs: X [?, 2] (a dim with no value) and W again (an overridable default) */
    Onnx__TensorShapeProto__Dimension d0 = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT,
                                      d1 = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT;
    d1.value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
    d1.dim_value = 2;
    Onnx__TensorShapeProto__Dimension *dims[2] = {&d0, &d1};
    Onnx__TensorShapeProto sh = ONNX__TENSOR_SHAPE_PROTO__INIT;
    sh.n_dim = 2;
    sh.dim = dims;
    Onnx__TypeProto__Tensor tt = ONNX__TYPE_PROTO__TENSOR__INIT;
    tt.has_elem_type = 1;
    tt.elem_type = 1;
    tt.shape = &sh;
    Onnx__TypeProto tp = ONNX__TYPE_PROTO__INIT;
    tp.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp.tensor_type = &tt;
    Onnx__ValueInfoProto xin = ONNX__VALUE_INFO_PROTO__INIT, win = ONNX__VALUE_INFO_PROTO__INIT;
    xin.name = "X";
    xin.type = &tp;
    win.name = "W";
    win.type = &tp;
    Onnx__ValueInfoProto *ins[2] = {&xin, &win};
    gp.n_input = 2;
    gp.input = ins;

    /* nodes, the consumer first: Y = Relu(H); H = MatMul(X, W) */
    char *n1_in[1] = {"H"}, *n1_out[1] = {"Y"}, *n2_in[2] = {"X", "W"}, *n2_out[1] = {"H"};
    Onnx__NodeProto n1 = ONNX__NODE_PROTO__INIT, n2 = ONNX__NODE_PROTO__INIT;
    n1.op_type = "Relu";
    n1.n_input = 1;
    n1.input = n1_in;
    n1.n_output = 1;
    n1.output = n1_out;
    n2.op_type = "MatMul";
    n2.n_input = 2;
    n2.input = n2_in;
    n2.n_output = 1;
    n2.output = n2_out;
    Onnx__NodeProto *nodes[2] = {&n1, &n2};
    gp.n_node = 2;
    gp.node = nodes;
    Onnx__ValueInfoProto yout = ONNX__VALUE_INFO_PROTO__INIT;
    yout.name = "Y";
    Onnx__ValueInfoProto *outs[1] = {&yout};
    gp.n_output = 1;
    gp.output = outs;

    size_t len = onnx__model_proto__get_packed_size(&m);
    uint8_t *buf = malloc(len);
    onnx__model_proto__pack(&m, buf);
    at_err err = {0};
    at_graph *g = at_graph_load_bytes(buf, len, &err);
    CHECK(g != NULL, "foreign load: %s", err.msg);
    if (g) {
        at_val W = at_graph_find(g, "W"), mask = at_graph_find(g, "mask");
        CHECK(at_value_kind_of(g, W) == AT_VALUE_CONST && at_graph_num_inputs(g) == 1,
              "W stays an initializer");
        CHECK(((float *)at_value_data(g, W))[5] == 6.0f, "float_data read");
        CHECK(at_value_dtype(g, mask) == AT_BOOL && ((uint8_t *)at_value_data(g, mask))[2] == 1,
              "int32_data bools read");
        at_val Y = at_graph_output(g, 0);
        at_shape ys = at_value_shape(g, Y);
        CHECK(ys.rank == 2 && ys.dim[0] < 0 && ys.dim[1] == 3, "Y shape");
        CHECK(at_graph_num_nodes(g) == 2 && !strcmp(at_node_op(g, 0), "MatMul"),
              "nodes put in order");
    }
    at_graph_free(g);
    free(buf);
}

/* ------------------------------------------------------------------------------------------ */
/* --emit: sample models for the ONNX interop test */

static int write_npy(const char *path, const at_tensor *t) {
    const char *descr = t->dtype == AT_F32    ? "<f4"
                        : t->dtype == AT_I64  ? "<i8"
                        : t->dtype == AT_I32  ? "<i4"
                        : t->dtype == AT_BOOL ? "|b1"
                                              : "|u1";
    char shape[200] = "(";
    for (int i = 0; i < t->shape.rank; i++)
        snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%lld,%s",
                 (long long)t->shape.dim[i], i + 1 < t->shape.rank ? " " : "");
    strcat(shape, ")");
    char hdr[400];
    int n = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                     descr, shape);
    while ((10 + n + 1) % 64) hdr[n++] = ' ';
    hdr[n++] = '\n';
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    unsigned char pre[10] = {
        0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(n & 255), (unsigned char)(n >> 8)};
    fwrite(pre, 1, 10, f);
    fwrite(hdr, 1, (size_t)n, f);
    fwrite(t->data, 1, at_tensor_nbytes(t), f);
    return fclose(f);
}

typedef at_graph *(*builder_fn)(void);

static at_graph *emit_mixed(void) {
    mixed m;
    return build_mixed(&m);
}

static at_graph *emit_mlp(void) {
    at_graph *g = at_graph_new();
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(at_sym(g, "N"), 6));
    at_val w1 = at_param(g, "l1.W", AT_F32, AT_SHAPE(6, 8), 0);
    at_val b1 = at_param(g, "l1.b", AT_F32, AT_SHAPE(8), 0);
    at_val w2 = at_param(g, "l2.W", AT_F32, AT_SHAPE(5, 8), 0);
    at_val b2 = at_param(g, "l2.b", AT_F32, AT_SHAPE(5), 0);
    fill_f32(g, w1, -0.5f, 0.5f);
    fill_f32(g, b1, -0.1f, 0.1f);
    fill_f32(g, w2, -0.5f, 0.5f);
    fill_f32(g, b2, -0.1f, 0.1f);
    at_val h = at_tanh(g, at_gemm(g, x, w1, b1, 1.0f, 1.0f, 0, 0));
    at_val z = at_gemm(g, h, w2, b2, 0.5f, 2.0f, 0, 1);
    at_val y = at_log_softmax(g, z, 1);
    at_value_rename(g, y, "logp");
    at_output(g, y);
    at_output(g, at_sigmoid(g, z));
    return g;
}

static at_graph *emit_attention(void) {
    at_graph *g = at_graph_new();
    int64_t B = at_sym(g, "B"), T = at_sym(g, "T");
    at_val x = at_input(g, "tokens", AT_F32, AT_SHAPE(B, T, 8));
    at_val sc = at_param(g, "ln.scale", AT_F32, AT_SHAPE(8), 0);
    at_val bi = at_param(g, "ln.bias", AT_F32, AT_SHAPE(8), 0);
    at_val wq = at_param(g, "Wq", AT_F32, AT_SHAPE(8, 8), 0);
    fill_f32(g, sc, 0.5f, 1.5f);
    fill_f32(g, bi, -0.2f, 0.2f);
    fill_f32(g, wq, -0.4f, 0.4f);
    at_val h = at_layer_norm(g, x, sc, bi, -1, 1e-5f);
    at_val q = at_matmul(g, h, wq);
    int64_t perm[3] = {0, 2, 1};
    at_val s = at_matmul(g, q, at_transpose(g, h, 3, perm));
    at_val scale = at_const_f32(g, 0.35f);
    at_val p = at_softmax(g, at_mul(g, s, scale), -1);
    at_val ctx = at_matmul(g, p, h);
    int64_t ax[1] = {1};
    at_val pooled = at_reduce_mean(g, ctx, 1, ax, 0);
    at_val mx = at_reduce_max(g, ctx, 1, ax, 0);
    at_val both = at_concat(g, 2, (at_val[]){pooled, mx}, -1);
    at_val sq = at_sqrt(g, at_add(g, at_mul(g, both, both), at_const_f32(g, 1.0f)));
    at_val out = at_div(g, at_sub(g, sq, at_exp(g, at_neg(g, both))), at_const_f32(g, 3.0f));
    at_value_rename(g, out, "features");
    at_output(g, out);
    at_output(g, p);
    return g;
}

static at_graph *emit_conv(void) {
    at_graph *g = at_graph_new();
    at_val x = at_input(g, "signal", AT_F32, AT_SHAPE(at_sym(g, "B"), 3, 12));
    at_val w = at_param(g, "conv.W", AT_F32, AT_SHAPE(4, 3, 3), 0);
    at_val b = at_param(g, "conv.b", AT_F32, AT_SHAPE(4), 0);
    fill_f32(g, w, -0.5f, 0.5f);
    fill_f32(g, b, -0.1f, 0.1f);
    at_val y = at_relu(g, at_conv1d(g, x, w, b, 1, 1, 1, 1, 1));
    at_val y2 = at_conv1d(g, y, at_const(g, "conv2.W", AT_F32, AT_SHAPE(4, 4, 2), NULL), AT_NONE, 0,
                          1, 2, 1, 1);
    int64_t ax[1] = {2};
    at_output(g, at_reduce_sum(g, y, 1, ax, 1));
    at_output(g, y2);
    return g;
}

static bool op_has_attr(const char *op, const char *attr) {
    int k = at_op_lookup(op, "");
    for (const at_attr_schema *a = k >= 0 ? at_op_table[k]->attrs : NULL; a && a->name; a++)
        if (!strcmp(a->name, attr)) return true;
    return false;
}

static at_graph *emit_lstm(void) {
    at_graph *g = at_graph_new();
    int64_t T = at_sym(g, "T"), B = at_sym(g, "B");
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(T, B, 4));
    at_val lens = at_input(g, "lens", AT_I32, AT_SHAPE(B));
    at_val w = at_param(g, "lstm.W", AT_F32, AT_SHAPE(2, 20, 4), 0);
    at_val r = at_param(g, "lstm.R", AT_F32, AT_SHAPE(2, 20, 5), 0);
    at_val bb = at_param(g, "lstm.B", AT_F32, AT_SHAPE(2, 40), 0);
    fill_f32(g, w, -0.4f, 0.4f);
    fill_f32(g, r, -0.4f, 0.4f);
    fill_f32(g, bb, -0.1f, 0.1f);
    at_val y, yh;
    if (op_has_attr("LSTM", "activations")) {
        /* the STRINGS attribute kind, where the LSTM schema takes activations */
        const char *acts[6] = {"Sigmoid", "Tanh", "Tanh", "Sigmoid", "Tanh", "Tanh"};
        at_attr a[3] = {AT_ATTR_I("hidden_size", 5), AT_ATTR_S("direction", "bidirectional"),
                        AT_ATTR_STRS("activations", 6, acts)};
        at_val in[5] = {x, w, r, bb, lens}, out[2];
        at_node_add(g, "LSTM", "", in, 5, out, 2, a, 3);
        y = out[0];
        yh = out[1];
    } else {
        at_lstm(g, x, w, r, bb, lens, AT_NONE, AT_NONE, 5, "bidirectional", &y, &yh, NULL);
    }
    at_output(g, y);
    at_output(g, yh);
    return g;
}

static at_graph *emit_shapes(void) {
    at_graph *g = at_graph_new();
    int64_t B = at_sym(g, "B");
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(B, 6));
    at_val r = at_reshape(g, x, 3, (int64_t[]){0, 2, 3});
    at_val sl = at_slice(g, r, 1, (int64_t[]){1}, (int64_t[]){3}, (int64_t[]){2}, NULL);
    at_val un = at_unsqueeze(g, sl, 1, (int64_t[]){1});
    at_val sq = at_squeeze(g, un, 1, (int64_t[]){1});
    at_val parts[2];
    at_split_into(g, x, 1, 2, NULL, parts);
    at_val eq = at_equal(g, at_cast(g, at_cast(g, parts[0], AT_I64), AT_F32), parts[1]);
    at_val wh = at_where(g, eq, parts[0], at_abs(g, parts[1]));
    at_val shp = at_shape_of(g, wh);
    at_val ex = at_expand(g, at_const_f32(g, 0.5f), shp);
    at_val z = at_add(g, wh, ex);
    at_val dr = at_dropout(g, z, 0.3f, AT_NONE, NULL);
    at_val cs = at_constant_of_shape(g, shp, AT_F32, 1.5);
    at_output(g, sq);
    at_output(g, at_mul(g, dr, cs));
    at_output(g, at_pow(g, at_abs(g, z), at_const_f32(g, 1.5f)));
    return g;
}

/* Gradient reversal and stop-gradient in the forward path, a loss, SGD: the model file
 * writes both as Identity and drops lambda, lr and the training nodes. */
static at_graph *emit_grl(void) {
    at_graph *g = at_graph_new();
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(at_sym(g, "B"), 4));
    at_val lam = at_input(g, "lambda", AT_F32, AT_SCALAR);
    at_val lr = at_input(g, "lr", AT_F32, AT_SCALAR);
    at_val W = at_param(g, "W", AT_F32, AT_SHAPE(4, 3), 0);
    fill_f32(g, W, -1, 1);
    at_val r = at_gradient_reversal(g, at_matmul(g, x, W), lam);
    at_val y = at_add(g, r, at_stop_gradient(g, at_tanh(g, r)));
    at_val p = at_softmax(g, y, -1);
    at_value_rename(g, p, "probs");
    at_output(g, p);
    at_val loss = at_reduce_mean(g, at_mul(g, y, y), 0, NULL, 0);
    at_val grad, upd;
    at_backward(g, loss, &W, 1, &grad);
    at_sgd(g, 1, &W, &grad, lr, 0.0f, 0.0f, &upd);
    return g;
}

/* The training graph: passes onnx.checker (custom domains are not schema-checked), but
 * ONNX Runtime cannot run ai.attune ops, so it is checked only. */
static at_graph *emit_training(void) {
    mixed m;
    return build_training(&m);
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        if ((unsigned char)*s < 32)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static int emit(const char *dir) {
    /* run: ONNX Runtime runs it; model: written as a model file (at_model_save) */
    struct {
        const char *name;
        builder_fn build;
        bool run, model;
    } models[] = {{"mixed", emit_mixed, true, false},         {"mlp", emit_mlp, true, false},
                  {"attention", emit_attention, true, false}, {"conv", emit_conv, true, false},
                  {"lstm", emit_lstm, true, false},           {"shapes", emit_shapes, true, false},
                  {"training", emit_training, false, false},  {"grl", emit_grl, true, true}};
    int nm = (int)(sizeof models / sizeof *models);
    char path[600];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    FILE *mf = fopen(path, "w");
    if (!mf) {
        perror(path);
        return 1;
    }
    fputs("{\"models\": [\n", mf);
    for (int k = 0; k < nm; k++) {
        const char *name = models[k].name;
        rng_state = 1000 + (uint64_t)k;
        at_graph *g = models[k].build();
        char error[1200] = "";
        at_err err = {0};
        at_status st = at_graph_status(g);
        if (st != AT_OK) snprintf(error, sizeof error, "build: %s", at_graph_error(g));
        snprintf(path, sizeof path, "%s/%s.onnx", dir, name);
        at_save_opts so = {.inference = models[k].model};
        if (!error[0] && at_graph_save(g, path, &so, &err) != AT_OK)
            snprintf(error, sizeof error, "save: %s", err.msg);
        /* attune runs what it reads back from the file, as ONNX Runtime will */
        at_graph_free(g);
        g = error[0] ? NULL : at_graph_load(path, &err);
        if (!error[0] && !g) snprintf(error, sizeof error, "load: %s", err.msg);
        fprintf(mf, "%s{\"name\": \"%s\", \"file\": \"%s.onnx\", \"run\": %s, ", k ? ",\n" : "",
                name, name, models[k].run ? "true" : "false");
        run_out ro = {0};
        if (!error[0] && models[k].run) run_graph(g, &ro, 5, error, sizeof error);
        fputs("\"inputs\": [", mf);
        if (!error[0] && models[k].run) {
            at_feed feeds[8];
            void *bufs[8] = {0};
            int ni = make_feeds(g, 5, feeds, bufs);
            for (int i = 0; i < ni; i++) {
                snprintf(path, sizeof path, "%s/%s.in%d.npy", dir, name, i);
                write_npy(path, &feeds[i].t);
                fprintf(mf, "%s[", i ? ", " : "");
                json_str(mf, at_value_name(g, feeds[i].val));
                fprintf(mf, ", \"%s.in%d.npy\"]", name, i);
                free(bufs[i]);
            }
        }
        fputs("], \"outputs\": [", mf);
        for (int i = 0; i < ro.n; i++) {
            snprintf(path, sizeof path, "%s/%s.out%d.npy", dir, name, i);
            write_npy(path, &ro.t[i]);
            fprintf(mf, "%s[", i ? ", " : "");
            json_str(mf, at_value_name(g, at_graph_output(g, i)));
            fprintf(mf, ", \"%s.out%d.npy\"]", name, i);
        }
        run_free(&ro);
        fputs("], \"error\": ", mf);
        if (error[0])
            json_str(mf, error);
        else
            fputs("null", mf);
        fputc('}', mf);
        at_graph_free(g);
    }
    fputs("\n]}\n", mf);
    fclose(mf);
    return 0;
}

/* Every sample model: same graph after the round trip, same bytes after a second save,
 * bit-identical outputs. */
static void test_roundtrip_samples(void) {
    struct {
        const char *name;
        builder_fn build;
        bool run;
    } models[] = {{"mlp", emit_mlp, true},       {"attention", emit_attention, true},
                  {"conv", emit_conv, true},     {"lstm", emit_lstm, true},
                  {"shapes", emit_shapes, true}, {"training", emit_training, false}};
    for (size_t k = 0; k < sizeof models / sizeof *models; k++) {
        at_graph *g = models[k].build();
        CHECK(at_graph_status(g) == AT_OK, "%s: build: %s", models[k].name, at_graph_error(g));
        at_err err = {0};
        void *b1 = NULL, *b2 = NULL;
        size_t n1 = 0, n2 = 0;
        at_graph *h = NULL;
        if (at_graph_status(g) == AT_OK && at_graph_save_bytes(g, NULL, &b1, &n1, &err) == AT_OK)
            h = at_graph_load_bytes(b1, n1, &err);
        CHECK(h != NULL, "%s: %s", models[k].name, err.msg);
        if (h) {
            const char *d = graph_diff(g, h);
            CHECK(d == NULL, "%s: round trip differs: %s", models[k].name, d);
            CHECK_OK(at_graph_save_bytes(h, NULL, &b2, &n2, &err));
            CHECK(n1 == n2 && !memcmp(b1, b2, n1), "%s: save-load-save bytes differ",
                  models[k].name);
        }
        if (h && models[k].run) {
            run_out ra, rb;
            char ma[600] = "", mb[600] = "";
            at_status sa = run_graph(g, &ra, 5, ma, sizeof ma);
            at_status sb = run_graph(h, &rb, 5, mb, sizeof mb);
            CHECK(sa == AT_OK && sb == AT_OK, "%s: runs: %s %s", models[k].name, ma, mb);
            for (int i = 0; sa == AT_OK && sb == AT_OK && i < ra.n; i++)
                CHECK(!memcmp(ra.t[i].data, rb.t[i].data, at_tensor_nbytes(&ra.t[i])),
                      "%s: output %d differs after the round trip", models[k].name, i);
            run_free(&ra);
            run_free(&rb);
        }
        free(b1);
        free(b2);
        at_graph_free(h);
        at_graph_free(g);
    }
}

static void test_model_identity_ops(void) {
    at_graph *g = emit_grl();
    CHECK(at_graph_status(g) == AT_OK, "grl build: %s", at_graph_error(g));
    at_save_opts so = {.inference = true};
    void *b = NULL;
    size_t n = 0;
    at_err err = {0};
    at_graph *h = NULL;
    if (at_graph_save_bytes(g, &so, &b, &n, &err) == AT_OK) h = at_graph_load_bytes(b, n, &err);
    CHECK(h != NULL, "grl model: %s", err.msg);
    if (h) {
        int identities = 0, custom = 0;
        for (int i = 0; i < at_graph_num_nodes(h); i++) {
            identities += !strcmp(at_node_op(h, i), "Identity");
            custom += strcmp(at_node_domain(h, i), "") != 0;
        }
        CHECK(identities == 2 && custom == 0, "identities %d, custom-domain nodes %d", identities,
              custom);
        CHECK(at_graph_num_inputs(h) == 1 && !strcmp(at_value_name(h, at_graph_input(h, 0)), "x"),
              "lambda and lr dropped: %d inputs", at_graph_num_inputs(h));
        run_out ra, rb;
        char ma[600] = "", mb[600] = "";
        at_status sa = run_graph(g, &ra, 5, ma, sizeof ma);
        at_status sb = run_graph(h, &rb, 5, mb, sizeof mb);
        CHECK(sa == AT_OK && sb == AT_OK, "grl runs: %s %s", ma, mb);
        if (sa == AT_OK && sb == AT_OK)
            CHECK(!memcmp(ra.t[0].data, rb.t[0].data, at_tensor_nbytes(&ra.t[0])),
                  "the model file computes what the training graph does");
        run_free(&ra);
        run_free(&rb);
    }
    free(b);
    at_graph_free(h);
    at_graph_free(g);
}

static int resave(const char *in, const char *out) {
    at_err err;
    at_graph *g = at_graph_load(in, &err);
    if (!g) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    at_status st = at_graph_save(g, out, NULL, &err);
    if (st != AT_OK) fprintf(stderr, "%s\n", err.msg);
    at_graph_free(g);
    return st == AT_OK ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--emit")) return emit(argv[2]);
    if (argc == 4 && !strcmp(argv[1], "--resave")) return resave(argv[2], argv[3]);
    make_tmpdir();
    test_roundtrip_mixed();
    test_roundtrip_training();
    test_roundtrip_samples();
    test_model_identity_ops();
    test_save_errors();
    test_text_and_dot();
    test_foreign();
    remove_tmpdir();
    return check_done("test_io");
}
