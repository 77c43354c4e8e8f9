/* Readable forms of a graph: a text listing close to ONNX's textual syntax
 * (what `attune inspect` prints) and Graphviz DOT. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "attune/io.h"
#include "graph/ir.h"
#include "graph/quote.h"

/* How many leading values of a tensor the text form shows. */
#define SHOW_VALUES 6
/* Longer metadata values are cut (vocabularies can be megabytes). */
#define SHOW_META_CHARS 160

static float half_to_float(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    float v;
    if (e == 0)
        v = ldexpf((float)m, -24);
    else if (e == 31)
        v = m ? NAN : INFINITY;
    else
        v = ldexpf((float)(m | 1024), e - 25);
    return s ? -v : v;
}

static float bf16_to_float(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* A float written so that it reads back as a float ("1.0", not "1"). */
static void put_float(FILE *f, double x) {
    char b[40];
    snprintf(b, sizeof b, "%.9g", x);
    if (!strpbrk(b, ".eEni")) strcat(b, ".0");
    fputs(b, f);
}

static void put_elem(FILE *f, at_dtype dt, const void *data, int64_t i) {
    switch (dt) {
    case AT_F32:
        put_float(f, ((const float *)data)[i]);
        break;
    case AT_F16:
        put_float(f, half_to_float(((const uint16_t *)data)[i]));
        break;
    case AT_BF16:
        put_float(f, bf16_to_float(((const uint16_t *)data)[i]));
        break;
    case AT_I64:
        fprintf(f, "%lld", (long long)((const int64_t *)data)[i]);
        break;
    case AT_I32:
        fprintf(f, "%d", (int)((const int32_t *)data)[i]);
        break;
    case AT_I8:
        fprintf(f, "%d", (int)((const int8_t *)data)[i]);
        break;
    case AT_U8:
    case AT_BOOL:
        fprintf(f, "%u", (unsigned)((const uint8_t *)data)[i]);
        break;
    default:
        fputs("?", f);
        break;
    }
}

/* "{1.0, 2.0, ...}" with the count when cut. */
static void put_values(FILE *f, at_dtype dt, const at_shape *shape, const void *data) {
    int64_t n = at_shape_numel(shape);
    if (!data || n < 0) return;
    fputs(" = {", f);
    for (int64_t i = 0; i < n && i < SHOW_VALUES; i++) {
        if (i) fputs(", ", f);
        put_elem(f, dt, data, i);
    }
    if (n > SHOW_VALUES) fprintf(f, ", ... (%lld values)", (long long)n);
    fputc('}', f);
}

/* Names and strings come from files that may be corrupt: control bytes and invalid UTF-8 are
 * written as \xNN (graph/quote.h) so that none reaches a terminal as it is. */

/* A name, unquoted, whole. */
static void put_name(FILE *f, const char *s) {
    if (!s) return;
    size_t n = strlen(s), i = 0;
    char b[256];
    while (i < n) {
        i += at_escape(b, sizeof b, s + i, n - i, n - i);
        fputs(b, f);
    }
}

/* Up to max bytes of s inside double quotes: '"', '\\', newline and tab as C escapes (for
 * DOT, the \xNN escapes' backslash doubled too, and tab left as it is). Returns the bytes
 * shown; a character that max would cut is left out. */
static size_t put_cstr(FILE *f, const char *s, size_t max, bool dot) {
    size_t n = strlen(s), i = 0;
    if (max > n) max = n;
    const char *special = dot ? "\"\\\n" : "\"\\\n\t";
    char b[256];
    while (i < max) {
        size_t j = i;
        while (j < max && !strchr(special, s[j])) j++;
        while (i < j) {
            size_t k = at_escape(b, sizeof b, s + i, n - i, j - i);
            if (k == 0) return i;
            for (const char *p = b; *p; p++) {
                if (dot && *p == '\\') fputc('\\', f);
                fputc(*p, f);
            }
            i += k;
        }
        if (i < max) {
            char c = s[i++];
            fputc('\\', f);
            fputc(c == '\n' ? 'n' : c == '\t' ? 't' : c, f);
        }
    }
    return i;
}

static void put_quoted(FILE *f, const char *s, size_t max) {
    fputc('"', f);
    size_t shown = put_cstr(f, s, max, false);
    fputc('"', f);
    size_t n = strlen(s);
    if (shown < n) fprintf(f, "... (%zu bytes)", n);
}

static void put_type(FILE *f, const at_graph *g, at_val v) {
    char b[160];
    fprintf(f, "%s%s", at_dtype_name(g->vals[v].dtype),
            at_graph_shape_str(g, &g->vals[v].shape, b, sizeof b));
}

static void put_attr(FILE *f, const at_attr_rec *a) {
    put_name(f, a->name);
    fputs(" = ", f);
    switch (a->kind) {
    case AT_ATTR_INT:
        fprintf(f, "%lld", (long long)a->i);
        break;
    case AT_ATTR_FLOAT:
        put_float(f, a->f);
        break;
    case AT_ATTR_STRING:
        put_quoted(f, a->s ? a->s : "", SHOW_META_CHARS);
        break;
    case AT_ATTR_INTS:
        fputc('[', f);
        for (int i = 0; i < a->n; i++) fprintf(f, "%s%lld", i ? ", " : "", (long long)a->ints[i]);
        fputc(']', f);
        break;
    case AT_ATTR_FLOATS:
        fputc('[', f);
        for (int i = 0; i < a->n; i++) {
            if (i) fputs(", ", f);
            put_float(f, a->floats[i]);
        }
        fputc(']', f);
        break;
    case AT_ATTR_STRINGS:
        fputc('[', f);
        for (int i = 0; i < a->n; i++) {
            if (i) fputs(", ", f);
            put_quoted(f, a->strs && a->strs[i] ? a->strs[i] : "", SHOW_META_CHARS);
        }
        fputc(']', f);
        break;
    case AT_ATTR_TENSOR:
        if (a->t) {
            char b[160];
            fprintf(f, "%s%s", at_dtype_name(a->t->dtype), at_shape_str(&a->t->shape, b, sizeof b));
            put_values(f, a->t->dtype, &a->t->shape, a->t->data);
        }
        break;
    default:
        fputs("?", f);
        break;
    }
}

static const char *kind_word(at_value_kind k) {
    switch (k) {
    case AT_VALUE_INPUT:
        return "input";
    case AT_VALUE_PARAM:
        return "param";
    case AT_VALUE_CONST:
        return "const";
    case AT_VALUE_STATE:
        return "state";
    case AT_VALUE_INTERMEDIATE:
        return "value";
    }
    return "?";
}

at_status at_graph_write_text(const at_graph *g, FILE *f) {
    if (!g || !f) return AT_E_INVALID;
    int n_init = 0;
    int64_t n_param_elems = 0;
    for (int v = 0; v < g->n_vals; v++) {
        const at_value_rec *r = &g->vals[v];
        if (!r->data) continue;
        n_init++;
        if (r->kind == AT_VALUE_PARAM) n_param_elems += at_shape_numel(&r->shape);
    }
    fprintf(f, "# attune graph: %d nodes, %d values, %d initializers, %lld trainable elements\n",
            g->n_nodes, g->n_vals, n_init, (long long)n_param_elems);
    if (g->status != AT_OK) fprintf(f, "# build error: %s\n", g->err);

    fputs("graph (", f);
    for (int i = 0; i < g->n_inputs; i++) {
        fputs(i ? ", " : "", f);
        put_type(f, g, g->inputs[i]);
        fputc(' ', f);
        put_name(f, g->vals[g->inputs[i]].name);
    }
    fputs(") => (", f);
    for (int i = 0; i < g->n_outputs; i++) {
        fputs(i ? ", " : "", f);
        put_type(f, g, g->outputs[i]);
        fputc(' ', f);
        put_name(f, g->vals[g->outputs[i]].name);
    }
    fputs(")\n", f);

    if (n_init) {
        fputs("initializers {\n", f);
        for (int v = 0; v < g->n_vals; v++) {
            const at_value_rec *r = &g->vals[v];
            if (!r->data) continue;
            fprintf(f, "  %s", kind_word(r->kind));
            if (r->kind == AT_VALUE_PARAM) fprintf(f, "[group %d]", r->group);
            fputc(' ', f);
            put_type(f, g, v);
            fputc(' ', f);
            put_name(f, r->name);
            put_values(f, r->dtype, &r->shape, r->data);
            fputc('\n', f);
        }
        fputs("}\n", f);
    }

    fputs("nodes {\n", f);
    for (int i = 0; i < g->n_nodes; i++) {
        const at_node_rec *n = &g->nodes[i];
        fputs("  [", f);
        put_name(f, n->name);
        fputs("] ", f);
        for (int j = 0; j < n->n_out; j++) {
            fputs(j ? ", " : "", f);
            if (n->out[j] != AT_NONE) put_name(f, g->vals[n->out[j]].name);
        }
        fputs(" = ", f);
        if (n->domain && *n->domain) {
            put_name(f, n->domain);
            fputc('.', f);
        }
        put_name(f, n->op_type);
        if (n->n_attrs) {
            fputc('<', f);
            for (int k = 0; k < n->n_attrs; k++) {
                fputs(k ? ", " : "", f);
                put_attr(f, &n->attrs[k]);
            }
            fputc('>', f);
        }
        fputc('(', f);
        for (int k = 0; k < n->n_in; k++) {
            fputs(k ? ", " : "", f);
            if (n->in[k] != AT_NONE) put_name(f, g->vals[n->in[k]].name);
        }
        fputs(")  # ", f);
        for (int j = 0; j < n->n_out; j++) {
            fputs(j ? ", " : "", f);
            if (n->out[j] != AT_NONE) put_type(f, g, n->out[j]);
        }
        fputc('\n', f);
    }
    fputs("}\n", f);

    if (g->n_meta) {
        fputs("metadata {\n", f);
        for (int i = 0; i < g->n_meta; i++) {
            fputs("  ", f);
            put_quoted(f, g->meta_keys[i], SHOW_META_CHARS);
            fputs(": ", f);
            put_quoted(f, g->meta_vals[i], SHOW_META_CHARS);
            fputc('\n', f);
        }
        fputs("}\n", f);
    }
    return ferror(f) ? AT_E_IO : AT_OK;
}

/* ---- DOT ---- */

static void dot_str(FILE *f, const char *s) {
    if (s) put_cstr(f, s, SIZE_MAX, true);
}

static void dot_type(FILE *f, const at_graph *g, at_val v) {
    char b[160];
    fprintf(f, "%s", at_dtype_name(g->vals[v].dtype));
    dot_str(f, at_graph_shape_str(g, &g->vals[v].shape, b, sizeof b));
}

at_status at_graph_write_dot(const at_graph *g, FILE *f) {
    if (!g || !f) return AT_E_INVALID;
    fputs("digraph attune {\n  rankdir=TB;\n"
          "  node [fontname=\"Helvetica\", fontsize=10];\n"
          "  edge [fontname=\"Helvetica\", fontsize=8];\n",
          f);
    /* Values with no producer (inputs, initializers) are their own nodes;
     * intermediates are edges from producer to consumer. */
    for (int v = 0; v < g->n_vals; v++) {
        const at_value_rec *r = &g->vals[v];
        if (r->producer >= 0) continue;
        const char *fill = r->kind == AT_VALUE_INPUT   ? "#c8e6c9"
                           : r->kind == AT_VALUE_PARAM ? "#bbdefb"
                           : r->kind == AT_VALUE_STATE ? "#ffe0b2"
                                                       : "#e0e0e0";
        fprintf(f, "  v%d [shape=ellipse, style=filled, fillcolor=\"%s\", label=\"", v, fill);
        dot_str(f, r->name);
        fputs("\\n", f);
        dot_type(f, g, v);
        fputs("\"];\n", f);
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const at_node_rec *n = &g->nodes[i];
        bool custom = n->domain && *n->domain;
        fprintf(f, "  n%d [shape=box, style=\"rounded,filled\", fillcolor=\"%s\", label=\"", i,
                custom ? "#f8bbd0" : "#eeeeee");
        dot_str(f, n->op_type);
        if (n->name && *n->name) {
            fputs("\\n", f);
            dot_str(f, n->name);
        }
        fputs("\"];\n", f);
        for (int k = 0; k < n->n_in; k++) {
            at_val v = n->in[k];
            if (v == AT_NONE) continue;
            const at_value_rec *r = &g->vals[v];
            if (r->producer >= 0)
                fprintf(f, "  n%d -> n%d [label=\"", r->producer, i);
            else
                fprintf(f, "  v%d -> n%d [label=\"", v, i);
            if (r->producer >= 0) {
                dot_str(f, r->name);
                fputs("\\n", f);
            }
            dot_type(f, g, v);
            fputs("\"];\n", f);
        }
    }
    for (int i = 0; i < g->n_outputs; i++) {
        at_val v = g->outputs[i];
        const at_value_rec *r = &g->vals[v];
        fprintf(f, "  out%d [shape=ellipse, style=filled, fillcolor=\"#ffcdd2\", label=\"", i);
        dot_str(f, r->name);
        fputs("\\n", f);
        dot_type(f, g, v);
        fputs("\"];\n", f);
        if (r->producer >= 0)
            fprintf(f, "  n%d -> out%d;\n", r->producer, i);
        else
            fprintf(f, "  v%d -> out%d;\n", v, i);
    }
    fputs("}\n", f);
    return ferror(f) ? AT_E_IO : AT_OK;
}
