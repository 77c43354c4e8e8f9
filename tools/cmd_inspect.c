/* attune inspect: the text form, Graphviz DOT, or a summary of a graph file. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "outfile.h"

#define CMD "inspect"

static const char *human_bytes(double b, char *buf, size_t cap) {
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) {
        b /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%.0f B", b);
    else
        snprintf(buf, cap, "%.1f %s", b, unit[u]);
    return buf;
}

/* 1234567 -> "1,234,567". */
static const char *grouped(int64_t v, char *buf, size_t cap) {
    char raw[32];
    int n = snprintf(raw, sizeof raw, "%" PRId64, v < 0 ? -v : v);
    size_t k = 0;
    if (v < 0 && k + 1 < cap) buf[k++] = '-';
    for (int i = 0; i < n && k + 2 < cap; i++) {
        if (i && (n - i) % 3 == 0) buf[k++] = ',';
        buf[k++] = raw[i];
    }
    buf[k] = 0;
    return buf;
}

typedef struct op_count {
    char name[96];
    int n;
} op_count;

static int by_count(const void *a, const void *b) {
    const op_count *x = a, *y = b;
    if (x->n != y->n) return y->n - x->n;
    return strcmp(x->name, y->name);
}

static void print_value_line(FILE *f, const at_graph *g, at_val v, int width) {
    char sb[256];
    at_shape sh = at_value_shape(g, v);
    fprintf(f, "  %-*s %s %s\n", width, at_value_name(g, v), at_dtype_name(at_value_dtype(g, v)),
            at_graph_shape_str(g, &sh, sb, sizeof sb));
}

static int write_summary(FILE *f, const at_graph *g, const char *path) {
    char b1[64], b2[64];
    struct stat st;
    fprintf(f, "%s", path);
    if (stat(path, &st) == 0) fprintf(f, " (%s)", human_bytes((double)st.st_size, b1, sizeof b1));
    fputc('\n', f);

    int nn = at_graph_num_nodes(g), nv = at_graph_num_values(g);
    fprintf(f, "  %d nodes, %d values", nn, nv);
    int ns = at_graph_num_syms(g);
    if (ns) {
        fprintf(f, ", symbolic dims:");
        for (int k = 0; k < ns; k++) fprintf(f, " %s", at_sym_name(g, -(int64_t)k - 1));
    }
    fputc('\n', f);

    int width = 8;
    for (int i = 0; i < at_graph_num_inputs(g); i++) {
        int l = (int)strlen(at_value_name(g, at_graph_input(g, i)));
        if (l > width && l < 48) width = l;
    }
    for (int i = 0; i < at_graph_num_outputs(g); i++) {
        int l = (int)strlen(at_value_name(g, at_graph_output(g, i)));
        if (l > width && l < 48) width = l;
    }
    fprintf(f, "\ninputs (%d):\n", at_graph_num_inputs(g));
    for (int i = 0; i < at_graph_num_inputs(g); i++)
        print_value_line(f, g, at_graph_input(g, i), width);
    fprintf(f, "\noutputs (%d):\n", at_graph_num_outputs(g));
    for (int i = 0; i < at_graph_num_outputs(g); i++)
        print_value_line(f, g, at_graph_output(g, i), width);

    op_count *ops = calloc((size_t)nn + 1, sizeof *ops);
    if (!ops) return cli_fail(CLI_EXIT_FAIL, CMD, "out of memory");
    int n_ops = 0;
    for (int i = 0; i < nn; i++) {
        const char *dom = at_node_domain(g, i), *op = at_node_op(g, i);
        char name[96];
        if (dom && *dom)
            snprintf(name, sizeof name, "%s.%s", dom, op);
        else
            snprintf(name, sizeof name, "%s", op);
        int j = 0;
        while (j < n_ops && strcmp(ops[j].name, name)) j++;
        if (j == n_ops) snprintf(ops[n_ops++].name, sizeof ops[0].name, "%s", name);
        ops[j].n++;
    }
    qsort(ops, (size_t)n_ops, sizeof *ops, by_count);
    fprintf(f, "\nops (%d kinds, %d nodes):\n", n_ops, nn);
    for (int j = 0; j < n_ops; j++) fprintf(f, "  %-32s %d\n", ops[j].name, ops[j].n);
    free(ops);

    /* Initializers by kind: trainable parameters, constants, state. */
    const at_value_kind kinds[3] = {AT_VALUE_PARAM, AT_VALUE_CONST, AT_VALUE_STATE};
    const char *titles[3] = {"parameters", "constants", "state"};
    int64_t cnt[3] = {0}, elems[3] = {0};
    double bytes[3] = {0};
    for (at_val v = 0; v < nv; v++) {
        at_value_kind k = at_value_kind_of(g, v);
        for (int t = 0; t < 3; t++) {
            if (k != kinds[t]) continue;
            at_shape sh = at_value_shape(g, v);
            int64_t n = at_shape_numel(&sh);
            cnt[t]++;
            if (n > 0) {
                elems[t] += n;
                bytes[t] += (double)n * (double)at_dtype_size(at_value_dtype(g, v));
            }
        }
    }
    fprintf(f, "\ninitializers:\n");
    for (int t = 0; t < 3; t++)
        fprintf(f, "  %-11s %s values in %" PRId64 " tensors (%s)\n", titles[t],
                grouped(elems[t], b1, sizeof b1), cnt[t], human_bytes(bytes[t], b2, sizeof b2));

    int nm = at_graph_num_meta(g);
    fprintf(f, "\nmetadata (%d keys):\n", nm);
    for (int i = 0; i < nm; i++) {
        const char *k = at_graph_meta_key(g, i), *v = at_graph_meta(g, k);
        size_t l = v ? strlen(v) : 0;
        bool short_line = l <= 60 && v && !strpbrk(v, "\n\r\t");
        if (short_line)
            fprintf(f, "  %-24s %s\n", k, v);
        else
            fprintf(f, "  %-24s (%s)\n", k, human_bytes((double)l, b1, sizeof b1));
    }
    return CLI_EXIT_OK;
}

int cmd_inspect(int argc, char **argv) {
    bool dot = false, summary = false;
    const char *out = NULL;
    const cli_opt opts[] = {
        CLI_OPT_FLAG("dot", &dot, "print Graphviz DOT (render: dot -Tsvg g.dot -o g.svg)"),
        CLI_OPT_FLAG("summary", &summary,
                     "print a summary: inputs, outputs, op counts, parameter count and size, "
                     "metadata keys"),
        {.name = "output",
         .short_name = 'o',
         .kind = CLI_STR,
         .dst = &out,
         .metavar = "FILE",
         .help = "write to FILE instead of stdout"},
    };
    const cli_group groups[] = {CLI_GROUP("Options", opts)};
    const cli_cmd c = {
        .name = CMD,
        .usage = "MODEL.onnx [--dot | --summary] [-o FILE]",
        .summary = "Show a graph file: its text form (the default), Graphviz DOT, or a summary.",
        .about = "The text form lists the inputs and outputs with their types, the initializers "
                 "with their kind, group and first values, one line per node with attributes "
                 "and output types, and the metadata.",
        .groups = groups,
        .n_groups = 1,
        .min_pos = 1,
        .max_pos = 1,
        .pos_name = "MODEL (the graph file to show)",
    };
    int n_pos, rc = cli_parse(&c, argc, argv, &n_pos);
    if (rc != CLI_CONTINUE) return rc;
    if (dot && summary)
        return cli_fail(CLI_EXIT_USAGE, CMD,
                        "--dot and --summary are exclusive (see 'attune inspect --help')");
    const char *path = argv[0];
    if (out && (rc = cli_check_out_dir(CMD, "-o", out)) != CLI_CONTINUE) return rc;
    at_graph *g = cli_load_graph(CMD, path, &rc);
    if (!g) return rc;
    FILE *f = stdout;
    cli_out of = {0};
    if (out) {
        if (cli_out_open(&of, out) != 0) {
            rc = cli_fail(CLI_EXIT_FAIL, CMD, "-o %s: %s", out, strerror(errno));
            at_graph_free(g);
            return rc;
        }
        f = of.f;
    }
    at_status st = AT_OK;
    rc = CLI_EXIT_OK;
    if (dot)
        st = at_graph_write_dot(g, f);
    else if (summary)
        rc = write_summary(f, g, path);
    else
        st = at_graph_write_text(g, f);
    /* The write's own errno (ENOSPC), before closing can replace it. */
    int werr = st != AT_OK || ferror(f) ? errno : 0;
    bool failed = st != AT_OK || rc != CLI_EXIT_OK;
    int cerr = 0;
    if (out ? cli_out_close(&of, failed) != 0 : fflush(f) != 0 || ferror(f)) cerr = errno;
    if (rc == CLI_EXIT_OK && (failed || cerr)) {
        int en = werr ? werr : cerr ? cerr : EIO;
        rc = out ? cli_fail(CLI_EXIT_FAIL, CMD, "writing %s failed: %s", out, strerror(en))
                 : cli_fail(CLI_EXIT_FAIL, CMD, "writing to stdout failed: %s", strerror(en));
    }
    at_graph_free(g);
    return rc;
}
