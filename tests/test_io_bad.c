/* Bad graph files: each gives a clear error that names what is wrong, never a crash or a
 * huge allocation. A valid model is saved, decoded with protobuf-c, broken one field at a
 * time, encoded again and loaded; plus truncations, random bytes, random byte flips, and
 * file-system errors. Run under ATTUNE_SANITIZE=ON to have ASan watch the parser. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attune/attune.h"
#include "attune/io.h"
#include "check.h"
#include "graph/quote.h"
#include "onnx.pb-c.h"

typedef Onnx__ModelProto Model;

static uint8_t *good;
static size_t good_len;

static uint64_t rs = 12345;
static uint64_t rnd(void) {
    uint64_t z = (rs += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static char *xstrdup(const char *s) {
    char *d = malloc(strlen(s) + 1);
    strcpy(d, s);
    return d;
}

static void set_str(char **field, const char *v) {
    free(*field);
    *field = v ? xstrdup(v) : NULL;
}

/* x [B,4] -> mm = MatMul(x, W) -> add = Add(h, b) -> act = LeakyRelu(y, alpha) -> z. */
static void make_good(void) {
    at_graph *g = at_graph_new();
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(at_sym(g, "B"), 4));
    at_val W = at_param(g, "W", AT_F32, AT_SHAPE(4, 3), 0);
    float bv[3] = {1, 2, 3};
    at_val b = at_const(g, "b", AT_F32, AT_SHAPE(3), bv);
    at_val h = at_matmul(g, x, W);
    at_val y = at_add(g, h, b);
    at_val z = at_leaky_relu(g, y, 0.2f);
    at_value_rename(g, h, "h");
    at_value_rename(g, y, "y");
    at_value_rename(g, z, "z");
    at_node_rename(g, 0, "mm");
    at_node_rename(g, 1, "add");
    at_node_rename(g, 2, "act");
    at_output(g, z);
    at_graph_set_meta(g, "labels", "a,b");
    at_err err;
    if (at_graph_save_bytes(g, NULL, (void **)&good, &good_len, &err) != AT_OK) {
        fprintf(stderr, "cannot make the good model: %s\n", err.msg);
        exit(1);
    }
    at_graph_free(g);
}

/* Decodes the good model, applies mut, encodes, loads; returns the status and message. */
static at_status load_mutated(void (*mut)(Model *), at_err *err) {
    Model *m = onnx__model_proto__unpack(NULL, good_len, good);
    if (!m) {
        fprintf(stderr, "cannot decode the good model\n");
        exit(1);
    }
    mut(m);
    size_t n = onnx__model_proto__get_packed_size(m);
    uint8_t *b = malloc(n + 1);
    onnx__model_proto__pack(m, b);
    onnx__model_proto__free_unpacked(m, NULL);
    memset(err, 0, sizeof *err);
    at_graph *g = at_graph_load_bytes(b, n, err);
    free(b);
    at_status st = g ? AT_OK : err->code;
    at_graph_free(g);
    return st;
}

#define EXPECT(mut, code, text)                                                                    \
    do {                                                                                           \
        at_err e_;                                                                                 \
        at_status s_ = load_mutated(mut, &e_);                                                     \
        if (getenv("TEST_IO_VERBOSE")) printf("%-24s %s\n", #mut, e_.msg);                         \
        CHECK(s_ == (code) && strstr(e_.msg, text), "%s: got %s \"%s\", want %s \"%s\"", #mut,     \
              at_status_str(s_), e_.msg, at_status_str(code), text);                               \
    } while (0)

static Onnx__NodeProto *node(Model *m, const char *name) {
    for (size_t i = 0; i < m->graph->n_node; i++)
        if (!strcmp(m->graph->node[i]->name, name)) return m->graph->node[i];
    fprintf(stderr, "no node %s\n", name);
    exit(1);
}

static Onnx__TensorProto *init(Model *m, const char *name) {
    for (size_t i = 0; i < m->graph->n_initializer; i++)
        if (!strcmp(m->graph->initializer[i]->name, name)) return m->graph->initializer[i];
    fprintf(stderr, "no initializer %s\n", name);
    exit(1);
}

static void set_raw(Onnx__TensorProto *t, size_t len) {
    free(t->raw_data.data);
    t->raw_data.data = calloc(len + 1, 1);
    t->raw_data.len = len;
    t->has_raw_data = 1;
}

static void set_dims(Onnx__TensorProto *t, int n, const int64_t *d) {
    free(t->dims);
    t->dims = malloc(sizeof(int64_t) * (size_t)(n + 1));
    memcpy(t->dims, d, sizeof(int64_t) * (size_t)n);
    t->n_dims = (size_t)n;
}

/* ---- the mutations ---- */

static void no_ir_version(Model *m) {
    m->has_ir_version = 0;
}
static void no_graph(Model *m) {
    onnx__graph_proto__free_unpacked(m->graph, NULL);
    m->graph = NULL;
}
static void no_opset(Model *m) {
    for (size_t i = 0; i < m->n_opset_import; i++)
        onnx__operator_set_id_proto__free_unpacked(m->opset_import[i], NULL);
    m->n_opset_import = 0;
}
static void old_opset(Model *m) {
    m->opset_import[0]->version = 6;
}
static void newer_attune_opset(Model *m) {
    m->opset_import[1]->version = 9;
}
static void unknown_ops(Model *m) {
    /* declare the domain so the op, not the domain, is what is unknown */
    set_str(&m->opset_import[1]->domain, "x.y");
    set_str(&node(m, "mm")->op_type, "Foo");
    set_str(&node(m, "mm")->domain, "x.y");
    set_str(&node(m, "act")->op_type, "Bar");
}
static void undeclared_domain(Model *m) {
    set_str(&node(m, "add")->domain, "com.example");
}
static void empty_op(Model *m) {
    set_str(&node(m, "add")->op_type, "");
}
static void undefined_input(Model *m) {
    set_str(&node(m, "add")->input[1], "foo");
}
static void missing_initializer(Model *m) {
    Onnx__GraphProto *g = m->graph;
    for (size_t i = 0; i < g->n_initializer; i++)
        if (!strcmp(g->initializer[i]->name, "b")) {
            onnx__tensor_proto__free_unpacked(g->initializer[i], NULL);
            g->initializer[i] = g->initializer[--g->n_initializer];
            break;
        }
}
static void cycle(Model *m) {
    set_str(&node(m, "mm")->input[0], "z");
}
static void defined_twice(Model *m) {
    set_str(&node(m, "add")->output[0], "x");
}
static void output_twice(Model *m) {
    set_str(&node(m, "act")->output[0], "h");
}
static void dtype_mismatch(Model *m) {
    Onnx__TensorProto *b = init(m, "b");
    b->data_type = 7; /* INT64 */
    set_raw(b, 24);
}
static void raw_too_short(Model *m) {
    set_raw(init(m, "b"), 8);
}
static void inner_dim_mismatch(Model *m) {
    Onnx__TensorProto *W = init(m, "W");
    set_dims(W, 2, (int64_t[]){5, 3});
    set_raw(W, 60);
}
static void output_shape_mismatch(Model *m) {
    m->graph->output[0]->type->tensor_type->shape->dim[1]->dim_value = 7;
}
static void output_dtype_mismatch(Model *m) {
    m->graph->output[0]->type->tensor_type->elem_type = 7;
}
static void huge_dim(Model *m) {
    Onnx__TensorProto *b = init(m, "b");
    set_dims(b, 1, (int64_t[]){(int64_t)1 << 40});
}
static void huge_numel(Model *m) {
    int64_t d = (int64_t)1 << 31;
    set_dims(init(m, "b"), 3, (int64_t[]){d, d, d});
}
static void huge_input_dim(Model *m) {
    Onnx__TensorShapeProto__Dimension *d = m->graph->input[0]->type->tensor_type->shape->dim[1];
    d->dim_value = (int64_t)1 << 40;
}
static void negative_dim(Model *m) {
    set_dims(init(m, "b"), 1, (int64_t[]){-3});
}
static void rank_9(Model *m) {
    set_dims(init(m, "b"), 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 3});
}
static void double_dtype(Model *m) {
    init(m, "b")->data_type = 11;
}
static void no_dtype(Model *m) {
    init(m, "b")->has_data_type = 0;
}
static void bogus_dtype(Model *m) {
    init(m, "b")->data_type = 99;
}
static void two_data_fields(Model *m) {
    Onnx__TensorProto *b = init(m, "b");
    b->float_data = malloc(3 * sizeof(float));
    b->n_float_data = 3;
}
static void typed_field_mismatch(Model *m) {
    Onnx__TensorProto *b = init(m, "b");
    free(b->raw_data.data);
    b->raw_data.data = NULL;
    b->has_raw_data = 0;
    b->raw_data.len = 0;
    b->int64_data = calloc(3, sizeof(int64_t));
    b->n_int64_data = 3;
}
static void no_data(Model *m) {
    Onnx__TensorProto *b = init(m, "b");
    free(b->raw_data.data);
    b->raw_data.data = NULL;
    b->raw_data.len = 0;
    b->has_raw_data = 0;
}
static void external_data(Model *m) {
    init(m, "W")->has_data_location = 1;
    init(m, "W")->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
}
static void unnamed_initializer(Model *m) {
    set_str(&init(m, "b")->name, "");
}
static Onnx__AttributeProto *alpha(Model *m) {
    return node(m, "act")->attribute[0];
}
static void attr_no_type(Model *m) {
    alpha(m)->has_type = 0;
}
static void attr_wrong_type(Model *m) {
    alpha(m)->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    alpha(m)->has_i = 1;
}
static void attr_unknown_name(Model *m) {
    set_str(&alpha(m)->name, "beta");
}
static void attr_graph_type(Model *m) {
    alpha(m)->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH;
}
static void attr_no_name(Model *m) {
    set_str(&alpha(m)->name, "");
}
static void output_undefined(Model *m) {
    set_str(&m->graph->output[0]->name, "nope");
}
static void input_no_type(Model *m) {
    onnx__type_proto__free_unpacked(m->graph->input[0]->type, NULL);
    m->graph->input[0]->type = NULL;
}
static void input_no_shape(Model *m) {
    Onnx__TypeProto__Tensor *t = m->graph->input[0]->type->tensor_type;
    onnx__tensor_shape_proto__free_unpacked(t->shape, NULL);
    t->shape = NULL;
}
static void input_not_tensor(Model *m) {
    Onnx__TypeProto *t = m->graph->input[0]->type;
    protobuf_c_message_free_unpacked(&t->tensor_type->base, NULL);
    t->value_case = ONNX__TYPE_PROTO__VALUE__NOT_SET;
}
static void input_twice(Model *m) {
    set_str(&m->graph->input[0]->name, "h");
}
static void params_bad_line(Model *m) {
    for (size_t i = 0; i < m->n_metadata_props; i++)
        if (!strcmp(m->metadata_props[i]->key, "attune.params"))
            set_str(&m->metadata_props[i]->value, "zero W");
}
static void params_not_initializer(Model *m) {
    for (size_t i = 0; i < m->n_metadata_props; i++)
        if (!strcmp(m->metadata_props[i]->key, "attune.params"))
            set_str(&m->metadata_props[i]->value, "0 h");
}
static void duplicate_meta(Model *m) {
    set_str(&m->metadata_props[1]->key, "labels");
}

/* Names and strings from a corrupt file, with control bytes, invalid UTF-8 and great length. */
static void garbage_op(Model *m) {
    set_str(&node(m, "add")->op_type, "Fo\x1b[31m\xff\x07");
}
static void garbage_names(Model *m) {
    Onnx__NodeProto *n = node(m, "add");
    set_str(&n->name, "a\x01\xc3");
    set_str(&n->input[1], "\x7f\xe2\x82\n\xc2\x9b");
}
static void utf8_names(Model *m) {
    Onnx__NodeProto *n = node(m, "add");
    set_str(&n->name, "\xc3\xa9t\xc3\xa9");
    set_str(&n->input[1], "caf\xc3\xa9\t");
}
static void long_name(Model *m) {
    char *s = malloc(5001);
    memset(s, 'n', 5000);
    s[5000] = 0;
    set_str(&node(m, "add")->input[1], s);
    free(s);
}
static void long_op(Model *m) {
    char *s = malloc(3001);
    memset(s, 'X', 3000);
    s[0] = '\x01';
    s[3000] = 0;
    set_str(&node(m, "add")->op_type, s);
    set_str(&node(m, "act")->op_type, s + 1);
    free(s);
}
static void garbage_attr(Model *m) {
    set_str(&alpha(m)->name, "al\x02ph\xfe");
}
static void garbage_meta(Model *m) {
    set_str(&m->metadata_props[0]->key, "k\x1b\xff");
    set_str(&m->metadata_props[1]->key, "k\x1b\xff");
}

/* A message that may be printed as it is: no control bytes, valid UTF-8, one line. */
static bool printable(const char *msg) {
    const unsigned char *u = (const unsigned char *)msg;
    size_t n = strlen(msg);
    for (size_t i = 0; i < n;) {
        size_t k = u[i] < 0x20 || u[i] == 0x7f ? 0 : at_utf8_seq(u + i, n - i);
        if (!k || (k == 2 && u[i] == 0xc2 && u[i + 1] < 0xa0)) return false;
        i += k;
    }
    return true;
}

#define EXPECT_SAFE(mut, code, text)                                                               \
    do {                                                                                           \
        EXPECT(mut, code, text);                                                                   \
        at_err e_ = {0};                                                                           \
        load_mutated(mut, &e_);                                                                    \
        CHECK(printable(e_.msg) && strlen(e_.msg) < 400, "%s: unsafe or long message (%zu bytes)", \
              #mut, strlen(e_.msg));                                                               \
    } while (0)

static void test_garbage_quoted(void) {
    EXPECT_SAFE(garbage_op, AT_E_UNSUPPORTED, "unknown op: Fo\\x1b[31m\\xff\\x07");
    EXPECT_SAFE(garbage_names, AT_E_FORMAT,
                "node 'a\\x01\\xc3' (Add): input '\\x7f\\xe2\\x82\\x0a\\xc2\\x9b' is not defined");
    EXPECT_SAFE(utf8_names, AT_E_FORMAT,
                "node '\xc3\xa9t\xc3\xa9' (Add): input 'caf\xc3\xa9\\x09' is not defined");
    char want[128];
    snprintf(want, sizeof want, "input '%.*s... (5000 bytes)' is not defined", AT_QUOTE_SHOW,
             "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn");
    EXPECT_SAFE(long_name, AT_E_FORMAT, want);
    EXPECT_SAFE(long_op, AT_E_UNSUPPORTED, "unknown ops: \\x01XXX");
    EXPECT_SAFE(long_op, AT_E_UNSUPPORTED, "XXX... (3000 bytes), XXX");
    EXPECT_SAFE(garbage_attr, AT_E_INVALID, "unknown attribute 'al\\x02ph\\xfe'");
    EXPECT_SAFE(garbage_meta, AT_E_FORMAT, "metadata key 'k\\x1b\\xff' appears twice");
}

/* The quoting itself: escapes, cuts at a character, never splits an escape. */
static void test_quote(void) {
    char q[AT_QUOTE_CAP];
    CHECK(!strcmp(at_quote(q, "plain \xc3\xa9"), "plain \xc3\xa9"), "%s", q);
    CHECK(!strcmp(at_quote(q, NULL), ""), "NULL: %s", q);
    CHECK(
        !strcmp(at_quote(q, "\x01\x7f\xc0\xaf\xed\xa0\x80"), "\\x01\\x7f\\xc0\\xaf\\xed\\xa0\\x80"),
        "controls, overlong, surrogate: %s", q);
    /* a 2-byte character that would straddle the cut is left out whole */
    char s[AT_QUOTE_SHOW + 2];
    memset(s, 'a', AT_QUOTE_SHOW - 1);
    memcpy(s + AT_QUOTE_SHOW - 1, "\xc3\xa9", 3);
    at_quote(q, s);
    CHECK(strlen(q) == AT_QUOTE_SHOW - 1 + strlen("... (65 bytes)") && printable(q), "cut: %s", q);
    /* all escapes: the longest result fits */
    char e[300];
    memset(e, 0x01, sizeof e - 1);
    e[sizeof e - 1] = 0;
    at_quote(q, e);
    CHECK(strlen(q) < AT_QUOTE_CAP && strstr(q, "... (299 bytes)"), "all escapes: %s", q);
    /* a small buffer takes whole escapes only */
    char small[7];
    size_t used = at_escape(small, sizeof small, "a\x01\x02", 3, 3);
    CHECK(used == 2 && !strcmp(small, "a\\x01"), "small buffer: %zu '%s'", used, small);
    char msg[32] = "x\x1by\xff";
    at_msg_escape(msg, sizeof msg);
    CHECK(!strcmp(msg, "x\\x1by\\xff"), "msg: %s", msg);
}

/* Loads a mutated model, or exits. */
static at_graph *load_or_die(void (*mut)(Model *)) {
    Model *m = onnx__model_proto__unpack(NULL, good_len, good);
    mut(m);
    size_t n = onnx__model_proto__get_packed_size(m);
    uint8_t *b = malloc(n + 1);
    onnx__model_proto__pack(m, b);
    onnx__model_proto__free_unpacked(m, NULL);
    at_err e = {0};
    at_graph *g = at_graph_load_bytes(b, n, &e);
    free(b);
    if (!g) {
        fprintf(stderr, "the mutated model does not load: %s\n", e.msg);
        exit(1);
    }
    return g;
}

static void garbage_but_loads(Model *m) {
    set_str(&node(m, "add")->name, "a\x1b[2J\xff\"\\");
    set_str(&m->metadata_props[0]->value, "v\x01\xc0\t\"");
}

/* Each line printable (see printable()). */
static bool printable_lines(char *text) {
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
        if (!printable(line)) return false;
    return true;
}

/* The text form and DOT of a graph show names from the file escaped, not as they are. */
static void test_text_escaped(void) {
    at_graph *g = load_or_die(garbage_but_loads);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(at_graph_write_text(g, f) == AT_OK, "write_text");
    fclose(f);
    CHECK(strstr(buf, "[a\\x1b[2J\\xff\"\\] y = Add(h, b)") != NULL, "text form: %s", buf);
    CHECK(strstr(buf, "\"v\\x01\\xc0\\t\\\"\"") != NULL, "metadata value: %s", buf);
    CHECK(printable_lines(buf), "the text form has raw control bytes or invalid UTF-8");
    free(buf);
    f = open_memstream(&buf, &len);
    CHECK(at_graph_write_dot(g, f) == AT_OK, "write_dot");
    fclose(f);
    CHECK(strstr(buf, "label=\"Add\\na\\\\x1b[2J\\\\xff\\\"\\\\\"") != NULL, "dot: %s", buf);
    CHECK(printable_lines(buf), "the DOT form has raw control bytes or invalid UTF-8");
    free(buf);
    at_graph_free(g);
}

static void test_mutations(void) {
    EXPECT(no_ir_version, AT_E_FORMAT, "missing ir_version");
    EXPECT(no_graph, AT_E_FORMAT, "missing graph");
    EXPECT(no_opset, AT_E_FORMAT, "missing opset_import");
    EXPECT(old_opset, AT_E_UNSUPPORTED, "opset 6 is too old");
    EXPECT(newer_attune_opset, AT_E_UNSUPPORTED, "ai.attune opset 9");
    EXPECT(unknown_ops, AT_E_UNSUPPORTED, "unknown ops: Foo (domain x.y), Bar");
    EXPECT(undeclared_domain, AT_E_FORMAT,
           "node 'add' (Add): domain 'com.example' is not declared in opset_import");
    EXPECT(empty_op, AT_E_FORMAT, "node 'add' (): empty op_type");
    EXPECT(undefined_input, AT_E_FORMAT, "node 'add' (Add): input 'foo' is not defined");
    EXPECT(missing_initializer, AT_E_FORMAT, "node 'add' (Add): input 'b' is not defined");
    EXPECT(cycle, AT_E_FORMAT, "cycle through node 'mm' (MatMul), node 'add' (Add)");
    EXPECT(defined_twice, AT_E_FORMAT,
           "node 'add' (Add): output 'x' is already defined as an input or initializer");
    EXPECT(output_twice, AT_E_FORMAT, "node 'act' (LeakyRelu): output 'h' is already defined");
    EXPECT(dtype_mismatch, AT_E_SHAPE, "node 'add' (Add), inputs (float32[B,3], int64[3])");
    EXPECT(raw_too_short, AT_E_FORMAT,
           "initializer 'b': raw_data has 8 bytes, but float32[3] needs 12");
    EXPECT(inner_dim_mismatch, AT_E_SHAPE,
           "node 'mm' (MatMul), inputs (float32[B,4], float32[5,3])");
    EXPECT(output_shape_mismatch, AT_E_SHAPE,
           "graph output 'z': the file declares float32[?,7], but the graph computes float32[B,3]");
    EXPECT(output_dtype_mismatch, AT_E_SHAPE, "graph output 'z': the file declares int64");
    EXPECT(huge_dim, AT_E_FORMAT, "initializer 'b': dimension too large");
    EXPECT(huge_numel, AT_E_FORMAT, "initializer 'b': dimension too large");
    EXPECT(huge_input_dim, AT_E_FORMAT, "graph input 'x': dimension too large");
    EXPECT(negative_dim, AT_E_FORMAT, "initializer 'b': dim 0 is negative");
    EXPECT(rank_9, AT_E_FORMAT, "initializer 'b': rank 9 exceeds the maximum 8");
    EXPECT(double_dtype, AT_E_UNSUPPORTED,
           "initializer 'b': data type DOUBLE (11) is not supported");
    EXPECT(no_dtype, AT_E_FORMAT, "initializer 'b': missing data type");
    EXPECT(bogus_dtype, AT_E_UNSUPPORTED, "initializer 'b': data type unknown (99)");
    EXPECT(two_data_fields, AT_E_FORMAT, "initializer 'b': data is stored in 2 fields");
    EXPECT(typed_field_mismatch, AT_E_FORMAT, "FLOAT cannot be stored in int64_data");
    EXPECT(no_data, AT_E_FORMAT, "initializer 'b': no data");
    EXPECT(external_data, AT_E_UNSUPPORTED, "initializer 'W': external data is not supported");
    EXPECT(unnamed_initializer, AT_E_FORMAT, "has no name");
    EXPECT(attr_no_type, AT_E_FORMAT, "node 'act' (LeakyRelu): attribute 'alpha' has no type");
    EXPECT(attr_wrong_type, AT_E_INVALID,
           "node 'act' (LeakyRelu): attribute 'alpha' is INT, expected FLOAT");
    EXPECT(attr_unknown_name, AT_E_INVALID, "node 'act' (LeakyRelu): unknown attribute 'beta'");
    EXPECT(attr_graph_type, AT_E_UNSUPPORTED, "attribute 'alpha' has type GRAPH");
    EXPECT(attr_no_name, AT_E_FORMAT, "node 'act' (LeakyRelu): attribute 0 has no name");
    EXPECT(output_undefined, AT_E_FORMAT, "graph output 'nope' is not defined");
    EXPECT(input_no_type, AT_E_FORMAT, "graph input 'x': missing type");
    EXPECT(input_no_shape, AT_E_FORMAT, "graph input 'x': missing shape");
    EXPECT(input_not_tensor, AT_E_UNSUPPORTED, "graph input 'x': not a tensor type");
    EXPECT(input_twice, AT_E_FORMAT, "output 'h' is already defined as an input");
    EXPECT(params_bad_line, AT_E_FORMAT, "metadata attune.params, line 1");
    EXPECT(params_not_initializer, AT_E_FORMAT, "'h' is not an initializer");
    EXPECT(duplicate_meta, AT_E_FORMAT, "metadata key 'labels' appears twice");
}

/* Every prefix: no crash; an error names itself; cuts inside a field always fail. */
static void test_truncated(void) {
    int ok = 0, failed = 0, bad_msg = 0;
    for (size_t len = 0; len < good_len; len++) {
        at_err e = {0};
        at_graph *g = at_graph_load_bytes(good, len, &e);
        if (g)
            ok++;
        else {
            failed++;
            if (!e.msg[0] || (e.code != AT_E_FORMAT && e.code != AT_E_UNSUPPORTED &&
                              e.code != AT_E_SHAPE && e.code != AT_E_INVALID))
                bad_msg++;
        }
        at_graph_free(g);
    }
    CHECK(bad_msg == 0, "%d truncations gave an unclear error", bad_msg);
    CHECK(failed > (int)good_len * 9 / 10, "only %d of %zu truncations failed (%d loaded)", failed,
          good_len, ok);
    at_err e = {0};
    CHECK(!at_graph_load_bytes(good, good_len / 2, &e) && e.code == AT_E_FORMAT &&
              strstr(e.msg, "protobuf parse failed"),
          "half a file: %s", e.msg);
}

static void test_random(void) {
    uint8_t buf[512];
    int loaded = 0, bad_msg = 0;
    for (int t = 0; t < 3000; t++) {
        size_t len = 1 + rnd() % sizeof buf;
        for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)rnd();
        at_err e = {0};
        at_graph *g = at_graph_load_bytes(buf, len, &e);
        if (g)
            loaded++;
        else if (!e.msg[0] || !printable(e.msg))
            bad_msg++;
        at_graph_free(g);
    }
    CHECK(loaded == 0 && bad_msg == 0, "random bytes: %d loaded, %d without message", loaded,
          bad_msg);
    uint8_t one = 0x08;
    at_err e = {0};
    CHECK(!at_graph_load_bytes(&one, 1, &e) && e.code == AT_E_FORMAT, "1-byte file: %s", e.msg);
    CHECK(!at_graph_load_bytes(good, 0, &e) && e.code == AT_E_FORMAT && strstr(e.msg, "empty"),
          "empty buffer: %s", e.msg);

    /* byte flips in a valid model: anything may happen except a crash or a silent NULL */
    uint8_t *cp = malloc(good_len);
    int flips_loaded = 0;
    bad_msg = 0;
    for (int t = 0; t < 3000; t++) {
        memcpy(cp, good, good_len);
        int k = 1 + (int)(rnd() % 4);
        for (int i = 0; i < k; i++) cp[rnd() % good_len] = (uint8_t)rnd();
        at_graph *g = at_graph_load_bytes(cp, good_len, &e);
        if (g)
            flips_loaded++;
        else if (!e.msg[0] || !printable(e.msg))
            bad_msg++;
        e.msg[0] = 0;
        at_graph_free(g);
    }
    CHECK(bad_msg == 0, "byte flips: %d errors without a printable message", bad_msg);
    free(cp);

    /* a wrong wire type: ir_version (field 1, varint) sent as a length-delimited field */
    uint8_t *w = malloc(good_len + 3);
    w[0] = 0x0a;
    w[1] = 0x01;
    w[2] = 0x41;
    memcpy(w + 3, good, good_len);
    CHECK(!at_graph_load_bytes(w, good_len + 3, &e) && e.code == AT_E_FORMAT, "wrong wire type: %s",
          e.msg);
    free(w);
}

/* A small file that asks the parser for a great many messages: a million empty nodes. */
static void test_many_messages(void) {
    size_t n = 1000000, len = good_len + 2 * n + 16;
    uint8_t *b = malloc(len);
    size_t k = 0;
    /* field 7 (graph), length-delimited, with n empty NodeProtos (0a 00) */
    size_t inner = 2 * n;
    b[k++] = 0x3a;
    for (size_t v = inner; v >= 0x80; v >>= 7) b[k++] = (uint8_t)(v | 0x80);
    {
        size_t v = inner;
        while (v >= 0x80) v >>= 7;
        b[k++] = (uint8_t)v;
    }
    for (size_t i = 0; i < n; i++) {
        b[k++] = 0x0a;
        b[k++] = 0x00;
    }
    b[k++] = 0x08; /* ir_version 10 */
    b[k++] = 0x0a;
    at_err e = {0};
    at_graph *g = at_graph_load_bytes(b, k, &e);
    CHECK(!g && e.code == AT_E_FORMAT && strstr(e.msg, "more memory than"),
          "a million empty nodes: %s", e.msg);
    at_graph_free(g);
    free(b);
}

static void test_files(void) {
    char dir[] = "/tmp/attune_io_bad_XXXXXX";
    if (!mkdtemp(dir)) return;
    char path[256];
    at_err e = {0};
    snprintf(path, sizeof path, "%s/missing.onnx", dir);
    CHECK(!at_graph_load(path, &e) && e.code == AT_E_IO && strstr(e.msg, "missing.onnx"),
          "missing file: %s", e.msg);
    CHECK(!at_graph_load(dir, &e) && e.code == AT_E_IO, "a directory: %s", e.msg);
    snprintf(path, sizeof path, "%s/empty.onnx", dir);
    FILE *f = fopen(path, "wb");
    fclose(f);
    CHECK(!at_graph_load(path, &e) && e.code == AT_E_FORMAT && strstr(e.msg, "empty.onnx: empty"),
          "empty file: %s", e.msg);
    unlink(path);
    snprintf(path, sizeof path, "%s/one.onnx", dir);
    f = fopen(path, "wb");
    fputc(0x08, f);
    fclose(f);
    CHECK(!at_graph_load(path, &e) && e.code == AT_E_FORMAT && strstr(e.msg, "one.onnx"),
          "1-byte file: %s", e.msg);
    unlink(path);
    /* a failed save leaves the old file alone */
    snprintf(path, sizeof path, "%s/keep.onnx", dir);
    f = fopen(path, "wb");
    fwrite(good, 1, good_len, f);
    fclose(f);
    at_graph *bad = at_graph_new();
    at_node1(bad, "NoSuchOp", NULL, 0, NULL, 0);
    CHECK(at_graph_save(bad, path, NULL, &e) != AT_OK, "saving a broken graph fails");
    at_graph_free(bad);
    at_graph *g = at_graph_load(path, &e);
    CHECK(g != NULL, "the old file is intact: %s", e.msg);
    at_graph_free(g);
    unlink(path);
    rmdir(dir);
}

int main(void) {
    make_good();
    at_err e;
    at_graph *g = at_graph_load_bytes(good, good_len, &e);
    CHECK(g != NULL, "the unbroken model loads: %s", e.msg);
    at_graph_free(g);
    test_mutations();
    test_quote();
    test_garbage_quoted();
    test_text_escaped();
    test_truncated();
    test_random();
    test_many_messages();
    test_files();
    free(good);
    return check_done("test_io_bad");
}
