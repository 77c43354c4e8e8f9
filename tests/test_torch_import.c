/* Import of files written by other tools.
 *
 * torch: tests/fixtures/torch_small.onnx, written by tools/export_torch_onnx.py with
 * torch.onnx.export (opset 17, dynamic batch and time axes; an embedding, multi-head attention,
 * LayerNorm, Conv1d, a BiLSTM, mean/max pooling and an MLP with exact GELU), loads and gives
 * PyTorch's outputs (tests/fixtures/torch_small.txt) within 1e-4 at two input shapes through
 * one session; saved again by attune (opset 21) and reloaded, it gives the same bits. The
 * same model exported at opset 9 (tests/fixtures/torch_small_opset9.onnx: Split, Unsqueeze,
 * ReduceSum/Mean/Max and Softmax in their attribute forms) gives the same outputs.
 * tests/fixtures/torch_missing.onnx (ops attune lacks) fails with one error naming each
 * missing op once.
 *
 * Older opsets: files built here at opsets 9 and 11 with the attribute forms of ReduceSum,
 * ReduceMean, ReduceMax, Squeeze, Unsqueeze, Split, Slice, Clip, Dropout and the 2-D
 * coercing Softmax / LogSoftmax load, compute what the old semantics say (plain C
 * references), and save as current-opset nodes.
 *
 * LSTM: an `activations` attribute spelling out the defaults is accepted and changes
 * nothing; any other activations are a clear error. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attune/attune.h"
#include "attune/io.h"
#include "check.h"
#include "fixture.h"
#include "onnx.pb-c.h"

#define TORCH_TOL 1e-4 /* max |attune - PyTorch|, float32 throughout */

static const char *src_dir(void) {
    const char *s = getenv("ATTUNE_SRC");
    return s ? s : "..";
}

/* ------------------------------------------------------------------------------------------ */
/* torch.onnx.export fixture */

static double max_abs_err(const at_tensor *got, const fx_rec *want, const char *what) {
    CHECK(got->dtype == AT_F32, "%s: dtype %d", what, (int)got->dtype);
    CHECK(got->shape.rank == want->rank, "%s: rank %d, PyTorch %d", what, (int)got->shape.rank,
          want->rank);
    for (int d = 0; d < want->rank && d < got->shape.rank; d++)
        CHECK(got->shape.dim[d] == want->dim[d], "%s: dim %d is %lld, PyTorch %lld", what, d,
              (long long)got->shape.dim[d], want->dim[d]);
    if (at_shape_numel(&got->shape) != want->n || got->dtype != AT_F32) return INFINITY;
    double e = 0;
    for (long long i = 0; i < want->n; i++) {
        double d = fabs(((const float *)got->data)[i] - want->v[i]);
        if (!(d <= e)) e = d; /* NaN wins */
    }
    return e;
}

static const char *const k_outputs[3] = {"logits", "seq", "attn"};

/* Runs g on every recorded input shape; compares with PyTorch; keeps the outputs of the last
 * run in keep[] (malloc'ed) when keep is non-NULL. Returns the largest error. */
static double run_torch(at_graph *g, const fx_file *fx, float **keep, size_t *keep_n) {
    static const char *const tags[2] = {"b2t5", "b3t4"};
    at_err err;
    at_session *s = at_session_new(g, NULL, &err);
    CHECK(s != NULL, "session: %s", err.msg);
    if (!s) return INFINITY;
    at_val tokens = at_graph_find(g, "tokens");
    at_val fetch[3];
    for (int j = 0; j < 3; j++) {
        fetch[j] = at_graph_find(g, k_outputs[j]);
        CHECK(fetch[j] != AT_NONE, "no value '%s'", k_outputs[j]);
    }
    double worst = 0;
    for (int r = 0; r < 2; r++) {
        char key[64];
        snprintf(key, sizeof key, "tokens_%s", tags[r]);
        const fx_rec *tk = fx_get(fx, key);
        if (!tk || tokens == AT_NONE || fetch[0] == AT_NONE) break;
        int64_t *ids = malloc(sizeof(int64_t) * (size_t)tk->n);
        for (long long i = 0; i < tk->n; i++) ids[i] = (int64_t)tk->v[i];
        at_feed feed = {tokens, {AT_I64, AT_SHAPE(tk->dim[0], tk->dim[1]), ids}};
        at_tensor out[3];
        at_status st = at_session_run(s, &feed, 1, fetch, 3, out, NULL, 0);
        CHECK(st == AT_OK, "run %s: %s", tags[r], at_session_error(s));
        for (int j = 0; st == AT_OK && j < 3; j++) {
            snprintf(key, sizeof key, "%s_%s", k_outputs[j], tags[r]);
            const fx_rec *want = fx_get(fx, key);
            if (!want) continue;
            double e = max_abs_err(&out[j], want, key);
            CHECK(e <= TORCH_TOL, "%s: max |attune - PyTorch| = %.3g > %.0e", key, e, TORCH_TOL);
            printf("  %-12s max |attune - PyTorch| = %.3g\n", key, e);
            if (!(e <= worst)) worst = e;
            if (keep && r == 1) {
                keep_n[j] = (size_t)at_shape_numel(&out[j].shape);
                keep[j] = malloc(sizeof(float) * (keep_n[j] ? keep_n[j] : 1));
                memcpy(keep[j], out[j].data, sizeof(float) * keep_n[j]);
            }
        }
        free(ids);
    }
    at_session_free(s);
    return worst;
}

static void test_torch_model(const char *file) {
    char path[600];
    fx_file fx;
    snprintf(path, sizeof path, "%s/tests/fixtures/torch_small.txt", src_dir());
    if (fx_load(&fx, path)) {
        CHECK(0, "cannot read %s", path);
        return;
    }
    snprintf(path, sizeof path, "%s/tests/fixtures/%s", src_dir(), file);
    at_err err;
    at_graph *g = at_graph_load(path, &err);
    CHECK(g != NULL, "load: %s", err.msg);
    if (!g) {
        fx_free(&fx);
        return;
    }
    printf("%s: %d nodes\n", file, at_graph_num_nodes(g));
    float *first[3] = {0};
    size_t first_n[3] = {0};
    double worst = run_torch(g, &fx, first, first_n);
    printf("%s: max |attune - PyTorch| over all outputs = %.3g (tolerance %.0e)\n", file, worst,
           TORCH_TOL);

    /* Saved by attune (every node now in its opset-21 form) and loaded again: same bits. */
    void *buf = NULL;
    size_t len = 0;
    CHECK_OK(at_graph_save_bytes(g, NULL, &buf, &len, &err));
    at_graph *g2 = buf ? at_graph_load_bytes(buf, len, &err) : NULL;
    CHECK(g2 != NULL, "reload: %s", err.msg);
    if (g2) {
        float *again[3] = {0};
        size_t again_n[3] = {0};
        run_torch(g2, &fx, again, again_n);
        for (int j = 0; j < 3; j++)
            CHECK(first[j] && again[j] && first_n[j] == again_n[j] &&
                      memcmp(first[j], again[j], sizeof(float) * first_n[j]) == 0,
                  "%s differs after save and reload", k_outputs[j]);
        for (int j = 0; j < 3; j++) free(again[j]);
        at_graph_free(g2);
    }
    free(buf);
    for (int j = 0; j < 3; j++) free(first[j]);
    at_graph_free(g);
    fx_free(&fx);
}

static int count_of(const char *hay, const char *needle) {
    int n = 0;
    size_t k = strlen(needle);
    for (const char *p = strstr(hay, needle); p; p = strstr(p + k, needle)) {
        /* whole op names only: "Sin" must not match inside "Sinh" */
        char after = p[k];
        if (!(after >= 'A' && after <= 'z')) n++;
    }
    return n;
}

static void test_torch_missing_ops(void) {
    char path[600];
    snprintf(path, sizeof path, "%s/tests/fixtures/torch_missing.onnx", src_dir());
    at_err err = {0};
    at_graph *g = at_graph_load(path, &err);
    CHECK(g == NULL, "a model of unknown ops loaded");
    at_graph_free(g);
    CHECK(err.code == AT_E_UNSUPPORTED, "code %d: %s", (int)err.code, err.msg);
    CHECK(strstr(err.msg, "torch_missing.onnx") != NULL, "the error names the file: %s", err.msg);
    CHECK(strstr(err.msg, "unknown ops:") != NULL, "%s", err.msg);
    /* Sin appears twice in the file and once in the message. */
    static const char *const ops[4] = {"CumSum", "TopK", "Sin", "Floor"};
    for (int i = 0; i < 4; i++)
        CHECK(count_of(err.msg, ops[i]) == 1, "'%s' named %d times: %s", ops[i],
              count_of(err.msg, ops[i]), err.msg);
    printf("torch_missing.onnx: %s\n", err.msg);
}

/* ------------------------------------------------------------------------------------------ */
/* A small protobuf-c model builder for the older-opset files */

static void *arena[4096];
static int n_arena;

static void *A(size_t n) {
    void *p = calloc(1, n ? n : 1);
    if (!p || n_arena == (int)(sizeof arena / sizeof *arena)) abort();
    arena[n_arena++] = p;
    return p;
}

static void arena_free(void) {
    while (n_arena) free(arena[--n_arena]);
}

static char *S(const char *s) {
    char *d = A(strlen(s) + 1);
    strcpy(d, s);
    return d;
}

typedef Onnx__AttributeProto AttributeProto;
typedef Onnx__NodeProto NodeProto;
typedef Onnx__ValueInfoProto ValueInfoProto;

static AttributeProto *attr_new(const char *name, Onnx__AttributeProto__AttributeType t) {
    AttributeProto *a = A(sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = S(name);
    a->has_type = 1;
    a->type = t;
    return a;
}

static AttributeProto *a_ints(const char *name, int n, const int64_t *v) {
    AttributeProto *a = attr_new(name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    a->n_ints = (size_t)n;
    a->ints = A(sizeof(int64_t) * (size_t)n);
    if (n) memcpy(a->ints, v, sizeof(int64_t) * (size_t)n);
    return a;
}
#define INTS(name, ...)                                                                            \
    a_ints(name, (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)),                        \
           (int64_t[]){__VA_ARGS__})

static AttributeProto *a_int(const char *name, int64_t v) {
    AttributeProto *a = attr_new(name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    a->has_i = 1;
    a->i = v;
    return a;
}

static AttributeProto *a_float(const char *name, float v) {
    AttributeProto *a = attr_new(name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    a->has_f = 1;
    a->f = v;
    return a;
}

/* names: comma-separated, "" between commas for an omitted input */
static char **split_names(const char *names, size_t *n) {
    *n = 0;
    if (!*names) return A(sizeof(char *));
    size_t cnt = 1;
    for (const char *p = names; *p; p++) cnt += *p == ',';
    char **v = A(sizeof(char *) * cnt);
    const char *p = names;
    for (size_t i = 0; i < cnt; i++) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        v[i] = A(l + 1);
        memcpy(v[i], p, l);
        p = e ? e + 1 : p + l;
    }
    *n = cnt;
    return v;
}

static NodeProto *node(const char *op, const char *ins, const char *outs, int n_attrs, ...) {
    NodeProto *n = A(sizeof *n);
    onnx__node_proto__init(n);
    n->op_type = S(op);
    n->input = split_names(ins, &n->n_input);
    n->output = split_names(outs, &n->n_output);
    n->n_attribute = (size_t)n_attrs;
    n->attribute = A(sizeof(AttributeProto *) * (size_t)(n_attrs + 1));
    va_list ap;
    va_start(ap, n_attrs);
    for (int i = 0; i < n_attrs; i++) n->attribute[i] = va_arg(ap, AttributeProto *);
    va_end(ap);
    return n;
}

/* A float tensor value; dims < 0 are the symbol "N"; rank < 0: no shape. */
static ValueInfoProto *vi(const char *name, int rank, const int64_t *dims) {
    ValueInfoProto *v = A(sizeof *v);
    onnx__value_info_proto__init(v);
    Onnx__TypeProto *tp = A(sizeof *tp);
    onnx__type_proto__init(tp);
    Onnx__TypeProto__Tensor *tt = A(sizeof *tt);
    onnx__type_proto__tensor__init(tt);
    v->name = S(name);
    v->type = tp;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    if (rank < 0) return v;
    Onnx__TensorShapeProto *sh = A(sizeof *sh);
    onnx__tensor_shape_proto__init(sh);
    tt->shape = sh;
    sh->n_dim = (size_t)rank;
    sh->dim = A(sizeof(void *) * (size_t)(rank + 1));
    for (int i = 0; i < rank; i++) {
        Onnx__TensorShapeProto__Dimension *d = A(sizeof *d);
        onnx__tensor_shape_proto__dimension__init(d);
        if (dims[i] >= 0) {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = dims[i];
        } else {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = S(dims[i] == -1 ? "N" : "M");
        }
        sh->dim[i] = d;
    }
    return v;
}

/* A float scalar initializer. */
static Onnx__TensorProto *scalar_init(const char *name, float v) {
    Onnx__TensorProto *t = A(sizeof *t);
    onnx__tensor_proto__init(t);
    t->name = S(name);
    t->has_data_type = 1;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    t->n_float_data = 1;
    t->float_data = A(sizeof(float));
    t->float_data[0] = v;
    return t;
}

/* Packs a model of default-domain opset `opset` (graph outputs untyped: the loader infers
 * them) and loads it. */
static at_graph *load_model(int64_t opset, NodeProto **nodes, int nn, ValueInfoProto *in,
                            const char *outs, Onnx__TensorProto **inits, int n_init, at_err *err) {
    Onnx__ModelProto m;
    onnx__model_proto__init(&m);
    Onnx__GraphProto gp;
    onnx__graph_proto__init(&gp);
    Onnx__OperatorSetIdProto op;
    onnx__operator_set_id_proto__init(&op);
    Onnx__OperatorSetIdProto *ops[1] = {&op};
    op.domain = "";
    op.has_version = 1;
    op.version = opset;
    m.has_ir_version = 1;
    m.ir_version = opset >= 13 ? 7 : 5;
    m.producer_name = "test_torch_import";
    m.graph = &gp;
    m.n_opset_import = 1;
    m.opset_import = ops;
    gp.name = "old";
    gp.n_node = (size_t)nn;
    gp.node = nodes;
    gp.n_input = 1;
    gp.input = &in;
    gp.n_initializer = (size_t)n_init;
    gp.initializer = inits;
    size_t n_out;
    char **names = split_names(outs, &n_out);
    gp.n_output = n_out;
    gp.output = A(sizeof(ValueInfoProto *) * n_out);
    for (size_t i = 0; i < n_out; i++) gp.output[i] = vi(names[i], -1, NULL);
    size_t len = onnx__model_proto__get_packed_size(&m);
    uint8_t *buf = A(len);
    onnx__model_proto__pack(&m, buf);
    return at_graph_load_bytes(buf, len, err);
}

/* ------------------------------------------------------------------------------------------ */
/* Older opsets */

enum { NB = 2, D1 = 3, D2 = 4, NX = NB * D1 * D2 };
#define X3(n, i, j) x[((n)*D1 + (i)) * D2 + (j)]

static float x[NX];

/* Runs g on x [NB, D1, D2] fed as "X"; fetches the named outputs. */
static at_session *run_old(at_graph *g, int n, const char *const *names, at_tensor *out) {
    at_err err;
    at_session *s = at_session_new(g, NULL, &err);
    CHECK(s != NULL, "session: %s", err.msg);
    if (!s) return NULL;
    at_val fetch[32];
    for (int i = 0; i < n; i++) {
        fetch[i] = at_graph_find(g, names[i]);
        CHECK(fetch[i] != AT_NONE, "no value '%s'", names[i]);
        if (fetch[i] == AT_NONE) {
            at_session_free(s);
            return NULL;
        }
    }
    at_feed feed = {at_graph_find(g, "X"), {AT_F32, AT_SHAPE(NB, D1, D2), x}};
    at_status st = at_session_run(s, &feed, 1, fetch, n, out, NULL, 0);
    CHECK(st == AT_OK, "run: %s", at_session_error(s));
    if (st != AT_OK) {
        at_session_free(s);
        return NULL;
    }
    return s;
}

static void expect_tensor(const at_tensor *t, const char *what, int rank, const int64_t *dims,
                          const float *want, double tol) {
    CHECK(t->dtype == AT_F32 && t->shape.rank == rank, "%s: dtype %d rank %d, expected rank %d",
          what, (int)t->dtype, (int)t->shape.rank, rank);
    if (t->shape.rank != rank) return;
    int64_t n = 1;
    for (int d = 0; d < rank; d++) {
        CHECK(t->shape.dim[d] == dims[d], "%s: dim %d is %lld, expected %lld", what, d,
              (long long)t->shape.dim[d], (long long)dims[d]);
        n *= dims[d];
    }
    if (at_shape_numel(&t->shape) != n) return;
    double e = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(((const float *)t->data)[i] - want[i]);
        if (!(d <= e)) e = d;
    }
    CHECK(e <= tol, "%s: max error %.3g", what, e);
}
#define EXPECT_T(t, what, want, tol, ...)                                                          \
    expect_tensor(t, what, (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)),              \
                  (int64_t[]){__VA_ARGS__}, want, tol)

/* softmax (or log-softmax) over n contiguous values */
static void softmax_ref(const float *in, float *out, int n, bool log_) {
    double m = -INFINITY, s = 0;
    for (int i = 0; i < n; i++) m = in[i] > m ? in[i] : m;
    for (int i = 0; i < n; i++) s += exp(in[i] - m);
    for (int i = 0; i < n; i++) out[i] = (float)(log_ ? in[i] - m - log(s) : exp(in[i] - m) / s);
}

/* Every attribute form that moved to an input, at opset 9 (before Slice 10, Clip 11,
 * Dropout 12 and the 13 changes). */
static void test_opset9(void) {
    const int64_t X_dims[3] = {-1, D1, D2};
    NodeProto *nodes[] = {
        node("ReduceSum", "X", "rs", 2, INTS("axes", 1), a_int("keepdims", 0)),
        node("ReduceMean", "X", "rm", 1, INTS("axes", -1)),
        node("ReduceMax", "X", "rx", 2, INTS("axes", 0, 2), a_int("keepdims", 0)),
        node("ReduceSum", "X", "rall", 1, a_int("keepdims", 0)),
        node("ReduceMax", "X", "xall", 2, a_ints("axes", 0, NULL), a_int("keepdims", 0)),
        node("Unsqueeze", "X", "u", 1, INTS("axes", 0)),
        node("Squeeze", "u", "sq", 1, INTS("axes", 0)),
        node("Split", "X", "s1,s2", 2, a_int("axis", 2), INTS("split", 1, 3)),
        node("Clip", "X", "c1", 2, a_float("min", -0.5f), a_float("max", 0.5f)),
        node("Clip", "X", "c2", 1, a_float("max", 0.2f)),
        node("Slice", "X", "sl", 3, INTS("starts", 1), INTS("ends", 3), INTS("axes", 2)),
        node("Dropout", "X", "dr", 1, a_float("ratio", 0.3f)),
        node("Softmax", "X", "sm", 0),
        node("LogSoftmax", "X", "ls", 1, a_int("axis", 2)),
        node("LogSoftmax", "X", "ls0", 1, a_int("axis", 0)),
    };
    int nn = (int)(sizeof nodes / sizeof *nodes);
    static const char *const outs[] = {"rs", "rm", "rx", "rall", "sq", "s1",  "s2",  "c1",
                                       "c2", "sl", "dr", "sm",   "ls", "ls0", "xall"};
    int no = (int)(sizeof outs / sizeof *outs);
    at_err err;
    at_graph *g = load_model(9, nodes, nn, vi("X", 3, X_dims),
                             "rs,rm,rx,rall,sq,s1,s2,c1,c2,sl,dr,sm,ls,ls0,xall", NULL, 0, &err);
    CHECK(g != NULL, "opset 9: %s", err.msg);
    if (!g) return;

    at_tensor out[32];
    at_session *s = run_old(g, no, outs, out);
    if (s) {
        float rs[NB * D2] = {0}, rm[NB * D1], rx[D1], rall = 0, xall = -INFINITY, c1[NX], c2[NX];
        float s1[NB * D1], s2[NB * D1 * 3], sl[NB * D1 * 2], sm[NX], ls[NX], ls0[NX];
        for (int n = 0; n < NB; n++)
            for (int i = 0; i < D1; i++)
                for (int j = 0; j < D2; j++) {
                    float v = X3(n, i, j);
                    rs[n * D2 + j] += v;
                    rall += v;
                    xall = v > xall ? v : xall;
                    c1[(n * D1 + i) * D2 + j] = v < -0.5f ? -0.5f : v > 0.5f ? 0.5f : v;
                    c2[(n * D1 + i) * D2 + j] = v > 0.2f ? 0.2f : v;
                    if (j == 0)
                        s1[n * D1 + i] = v;
                    else
                        s2[(n * D1 + i) * 3 + j - 1] = v;
                    if (j >= 1 && j < 3) sl[(n * D1 + i) * 2 + j - 1] = v;
                }
        for (int n = 0; n < NB; n++)
            for (int i = 0; i < D1; i++) {
                double m = 0;
                for (int j = 0; j < D2; j++) m += X3(n, i, j);
                rm[n * D1 + i] = (float)(m / D2);
            }
        for (int i = 0; i < D1; i++) {
            rx[i] = -INFINITY;
            for (int n = 0; n < NB; n++)
                for (int j = 0; j < D2; j++) rx[i] = X3(n, i, j) > rx[i] ? X3(n, i, j) : rx[i];
        }
        for (int n = 0; n < NB; n++) softmax_ref(x + n * D1 * D2, sm + n * D1 * D2, D1 * D2, false);
        for (int r = 0; r < NB * D1; r++) softmax_ref(x + r * D2, ls + r * D2, D2, true);
        softmax_ref(x, ls0, NX, true);

        EXPECT_T(&out[0], "ReduceSum axes=[1] (opset 9)", rs, 1e-5, NB, D2);
        EXPECT_T(&out[1], "ReduceMean axes=[-1] keepdims (opset 9)", rm, 1e-6, NB, D1, 1);
        EXPECT_T(&out[2], "ReduceMax axes=[0,2] (opset 9)", rx, 0, D1);
        EXPECT_T(&out[3], "ReduceSum without axes (opset 9)", &rall, 1e-5);
        EXPECT_T(&out[14], "ReduceMax axes=[] (opset 9)", &xall, 0);
        EXPECT_T(&out[4], "Unsqueeze + Squeeze axes=[0] (opset 9)", x, 0, NB, D1, D2);
        EXPECT_T(&out[5], "Split split=[1,3] #0 (opset 9)", s1, 0, NB, D1, 1);
        EXPECT_T(&out[6], "Split split=[1,3] #1 (opset 9)", s2, 0, NB, D1, 3);
        EXPECT_T(&out[7], "Clip min max (opset 9)", c1, 0, NB, D1, D2);
        EXPECT_T(&out[8], "Clip max only (opset 9)", c2, 0, NB, D1, D2);
        EXPECT_T(&out[9], "Slice starts/ends/axes (opset 9)", sl, 0, NB, D1, 2);
        EXPECT_T(&out[10], "Dropout ratio (opset 9)", x, 0, NB, D1, D2);
        EXPECT_T(&out[11], "Softmax default axis 1, coerced to 2-D (opset 9)", sm, 1e-6, NB, D1,
                 D2);
        EXPECT_T(&out[12], "LogSoftmax axis 2 (opset 9)", ls, 1e-5, NB, D1, D2);
        EXPECT_T(&out[13], "LogSoftmax axis 0, coerced to [1, -1] (opset 9)", ls0, 1e-5, NB, D1,
                 D2);

        /* Saved, the graph holds only current forms; loaded again it computes the same. */
        void *buf = NULL;
        size_t len = 0;
        CHECK_OK(at_graph_save_bytes(g, NULL, &buf, &len, &err));
        Onnx__ModelProto *m = buf ? onnx__model_proto__unpack(NULL, len, buf) : NULL;
        CHECK(m && m->n_opset_import >= 1 && m->opset_import[0]->version == AT_ONNX_OPSET,
              "resaved opset");
        for (size_t i = 0; m && i < m->graph->n_node; i++) {
            const NodeProto *n = m->graph->node[i];
            for (size_t k = 0; k < n->n_attribute; k++) {
                const char *an = n->attribute[k]->name;
                CHECK(strcmp(an, "axes") && strcmp(an, "split") && strcmp(an, "starts") &&
                          strcmp(an, "min") && strcmp(an, "ratio"),
                      "resaved %s keeps the old attribute '%s'", n->op_type, an);
            }
        }
        if (m) onnx__model_proto__free_unpacked(m, NULL);
        at_graph *g2 = buf ? at_graph_load_bytes(buf, len, &err) : NULL;
        CHECK(g2 != NULL, "reload: %s", err.msg);
        at_tensor out2[32];
        at_session *ss2 = g2 ? run_old(g2, no, outs, out2) : NULL;
        for (int i = 0; ss2 && i < no; i++)
            CHECK(at_tensor_nbytes(&out[i]) == at_tensor_nbytes(&out2[i]) &&
                      memcmp(out[i].data, out2[i].data, at_tensor_nbytes(&out[i])) == 0,
                  "%s differs after save and reload", outs[i]);
        at_session_free(ss2);
        at_graph_free(g2);
        free(buf);
        at_session_free(s);
    }
    at_graph_free(g);
}

/* Opset 11: Clip's min/max are inputs already (no conversion), ReduceSum / Squeeze still
 * take attributes, Softmax on the last axis is the same as now. */
static void test_opset11(void) {
    const int64_t X_dims[3] = {-1, D1, D2};
    Onnx__TensorProto *inits[2] = {scalar_init("lo", -0.25f), scalar_init("hi", 0.75f)};
    NodeProto *nodes[] = {
        node("Clip", "X,lo,hi", "c", 0),
        node("Clip", "X,,hi", "c_hi", 0),
        node("ReduceSum", "X", "rs", 1, INTS("axes", -2, 0)),
        node("Softmax", "X", "sm", 1, a_int("axis", -1)),
    };
    static const char *const outs[] = {"c", "c_hi", "rs", "sm"};
    at_err err;
    at_graph *g = load_model(11, nodes, 4, vi("X", 3, X_dims), "c,c_hi,rs,sm", inits, 2, &err);
    CHECK(g != NULL, "opset 11: %s", err.msg);
    if (!g) return;
    at_tensor out[4];
    at_session *s = run_old(g, 4, outs, out);
    if (s) {
        float c[NX], ch[NX], rs[D2] = {0}, sm[NX];
        for (int i = 0; i < NX; i++) {
            c[i] = x[i] < -0.25f ? -0.25f : x[i] > 0.75f ? 0.75f : x[i];
            ch[i] = x[i] > 0.75f ? 0.75f : x[i];
            rs[i % D2] += x[i];
        }
        for (int r = 0; r < NB * D1; r++) softmax_ref(x + r * D2, sm + r * D2, D2, false);
        EXPECT_T(&out[0], "Clip inputs (opset 11)", c, 0, NB, D1, D2);
        EXPECT_T(&out[1], "Clip max input only (opset 11)", ch, 0, NB, D1, D2);
        EXPECT_T(&out[2], "ReduceSum axes=[-2,0] keepdims (opset 11)", rs, 1e-5, 1, 1, D2);
        EXPECT_T(&out[3], "Softmax axis -1 (opset 11)", sm, 1e-6, NB, D1, D2);
        at_session_free(s);
    }
    at_graph_free(g);
}

static void expect_load_error(int64_t opset, NodeProto *n, int rank, const int64_t *dims,
                              at_status code, const char *part) {
    at_err err = {0};
    at_graph *g = load_model(opset, &n, 1, vi("X", rank, dims), n->output[0], NULL, 0, &err);
    CHECK(g == NULL, "opset %lld %s loaded", (long long)opset, n->op_type);
    at_graph_free(g);
    CHECK(err.code == code && strstr(err.msg, part), "opset %lld %s: code %d, '%s' (want '%s')",
          (long long)opset, n->op_type, (int)err.code, err.msg, part);
}

static void test_old_opset_errors(void) {
    const int64_t nm4[3] = {-1, -2, 4}, n34[3] = {-1, D1, D2};
    /* Softmax before 13 needs the 2-D coercion; with symbols on both sides of the axis the
     * view cannot be written as a Reshape with one -1. */
    expect_load_error(12, node("Softmax", "X", "y", 1, a_int("axis", 1)), 3, nm4, AT_E_UNSUPPORTED,
                      "coerces the input [N,M,4] to 2-D at axis 1");
    const int64_t huge[4] = {-1, (int64_t)1 << 31, (int64_t)1 << 31, (int64_t)1 << 31};
    expect_load_error(12, node("Softmax", "X", "y", 1, a_int("axis", 1)), 4, huge, AT_E_SHAPE,
                      "too many elements");
    /* From 13 on ReduceSum takes axes as an input: an attribute is not converted. */
    expect_load_error(13, node("ReduceSum", "X", "y", 1, INTS("axes", 1)), 3, n34, AT_E_INVALID,
                      "axes");
    /* An old attribute of the wrong kind. */
    expect_load_error(11, node("Squeeze", "X", "y", 1, a_int("axes", 1)), 3, n34, AT_E_FORMAT,
                      "attribute 'axes' must be ints in opset 11");
    expect_load_error(6, node("Relu", "X", "y", 0), 3, n34, AT_E_UNSUPPORTED,
                      "opset 6 is too old: attune reads opsets 7..");
}

/* ------------------------------------------------------------------------------------------ */
/* LSTM activations */

static void test_lstm_activations(void) {
    enum { T = 3, B = 2, I = 4, H = 3 };
    static const char *const dflt1[3] = {"Sigmoid", "Tanh", "Tanh"};
    static const char *const dflt2[6] = {"Sigmoid", "Tanh", "Tanh", "sigmoid", "tanh", "TANH"};
    static const char *const relu[6] = {"Sigmoid", "Tanh", "Tanh", "Sigmoid", "Relu", "Tanh"};
    for (int bidi = 0; bidi < 2; bidi++) {
        int D = bidi ? 2 : 1;
        at_graph *g = at_graph_new();
        at_val xv = at_input(g, "x", AT_F32, AT_SHAPE(T, B, I));
        float wd[2 * 4 * H * I], rd[2 * 4 * H * H];
        for (int i = 0; i < D * 4 * H * I; i++) wd[i] = (float)sin(0.7 * i);
        for (int i = 0; i < D * 4 * H * H; i++) rd[i] = (float)cos(1.3 * i) * 0.5f;
        at_val w = at_const(g, "W", AT_F32, AT_SHAPE(D, 4 * H, I), wd);
        at_val r = at_const(g, "R", AT_F32, AT_SHAPE(D, 4 * H, H), rd);
        const char *dir = bidi ? "bidirectional" : "forward";
        at_val in[3] = {xv, w, r};
        at_attr plain[2] = {AT_ATTR_I("hidden_size", H), AT_ATTR_S("direction", dir)};
        at_attr with[3] = {plain[0], plain[1],
                           AT_ATTR_STRS("activations", 3 * D, bidi ? dflt2 : dflt1)};
        at_val y0 = at_node1(g, "LSTM", in, 3, plain, 2);
        at_val y1 = at_node1(g, "LSTM", in, 3, with, 3);
        CHECK(at_graph_status(g) == AT_OK, "%s defaults: %s", dir, at_graph_error(g));
        at_err err;
        at_session *s = y1 != AT_NONE ? at_session_new(g, NULL, &err) : NULL;
        if (s) {
            float xd[T * B * I];
            for (int i = 0; i < T * B * I; i++) xd[i] = (float)sin(0.3 * i + 0.1);
            at_feed f = {xv, {AT_F32, AT_SHAPE(T, B, I), xd}};
            at_val fetch[2] = {y0, y1};
            at_tensor out[2];
            CHECK_OK(at_session_run(s, &f, 1, fetch, 2, out, NULL, 0));
            CHECK(memcmp(out[0].data, out[1].data, at_tensor_nbytes(&out[0])) == 0,
                  "%s: default activations spelled out change the output", dir);
            at_session_free(s);
        }
        /* three names for a bidirectional LSTM, or a non-default one: refused */
        at_attr bad[3] = {plain[0], plain[1],
                          AT_ATTR_STRS("activations", bidi ? 3 : 6, bidi ? dflt1 : relu)};
        CHECK(at_node1(g, "LSTM", in, 3, bad, 3) == AT_NONE, "%s: bad activations accepted", dir);
        CHECK(at_graph_status(g) == AT_E_UNSUPPORTED &&
                  strstr(at_graph_error(g), "activations [Sigmoid, Tanh, Tanh") &&
                  strstr(at_graph_error(g), "only the defaults"),
              "%s: %s", dir, at_graph_error(g));
        at_graph_free(g);
    }
    at_graph *g = at_graph_new();
    at_val xv = at_input(g, "x", AT_F32, AT_SHAPE(T, B, I));
    float zeros[4 * H * I] = {0};
    at_val w = at_const(g, "W", AT_F32, AT_SHAPE(1, 4 * H, I), zeros);
    at_val r = at_const(g, "R", AT_F32, AT_SHAPE(1, 4 * H, H), zeros);
    at_val in[3] = {xv, w, r};
    at_attr a[1] = {AT_ATTR_STRS("activations", 3, relu + 3)};
    CHECK(at_node1(g, "LSTM", in, 3, a, 1) == AT_NONE, "Relu gate activation accepted");
    CHECK(strstr(at_graph_error(g), "activations [Sigmoid, Relu, Tanh] are not supported"), "%s",
          at_graph_error(g));
    at_graph_free(g);
}

int main(void) {
    for (int i = 0; i < NX; i++) x[i] = (float)(sin(1.7 * i + 0.3) * 2.0);
    test_torch_model("torch_small.onnx");
    test_torch_model("torch_small_opset9.onnx");
    test_torch_missing_ops();
    test_opset9();
    test_opset11();
    test_old_opset_errors();
    test_lstm_activations();
    arena_free();
    return check_done("test_torch_import");
}
