/* attune run: the generic graph runner. Inputs from .npy files, outputs to .npy files. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "npy.h"

#define CMD "run"

typedef struct feed_in {
    const char *name, *file;
    at_val v;
    at_tensor t;
} feed_in;

/* A file name for a value name: value names may hold '/', ':' and anything else. */
static void safe_name(const char *name, char *out, size_t cap) {
    size_t n = 0;
    for (const char *p = name; *p && n + 1 < cap && n < 120; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-' || c == '.';
        out[n++] = ok ? c : '_';
    }
    out[n] = 0;
    /* No hidden files, no "." or "..". */
    if (n == 0 || out[0] == '.') {
        if (n + 1 < cap) memmove(out + 1, out, n + 1);
        out[0] = '_';
    }
}

static bool wants_input(const at_graph *g, const at_val *fetch, int n_fetch, bool *need) {
    int nv = at_graph_num_values(g);
    bool *seen = calloc((size_t)nv, 1);
    at_val *stack = malloc(sizeof(at_val) * (size_t)(nv + n_fetch));
    if (!seen || !stack) {
        free(seen);
        free(stack);
        return false;
    }
    int sp = 0;
    for (int i = 0; i < n_fetch; i++) stack[sp++] = fetch[i];
    while (sp) {
        at_val v = stack[--sp];
        if (v < 0 || v >= nv || seen[v]) continue;
        seen[v] = true;
        if (at_value_kind_of(g, v) == AT_VALUE_INPUT) need[v] = true;
        int node = at_value_producer(g, v);
        if (node < 0) continue;
        for (int k = 0; k < at_node_num_inputs(g, node); k++) {
            at_val u = at_node_input(g, node, k);
            if (u >= 0 && !seen[u]) stack[sp++] = u;
        }
    }
    free(seen);
    free(stack);
    return true;
}

static void input_list(const at_graph *g, char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = 0;
    for (int i = 0; i < at_graph_num_inputs(g) && n + 1 < cap; i++) {
        int w = snprintf(buf + n, cap - n, "%s%s", i ? ", " : "",
                         at_value_name(g, at_graph_input(g, i)));
        if (w < 0) break;
        n += (size_t)w;
    }
    if (n >= cap && cap > 4) strcpy(buf + cap - 4, "...");
    if (!at_graph_num_inputs(g)) snprintf(buf, cap, "(none)");
}

/* Checks a feed against the graph input it names, binding symbols in syms[] (the value of
 * each symbol, -1 while unbound) and who[] (the feed that bound it). */
static int check_feed(const at_graph *g, const feed_in *f, int idx, const feed_in *all,
                      int64_t *syms, int *who) {
    char want[256], got[256];
    at_dtype dt = at_value_dtype(g, f->v);
    at_shape ws = at_value_shape(g, f->v);
    at_graph_shape_str(g, &ws, want, sizeof want);
    at_shape_str(&f->t.shape, got, sizeof got);
    if (f->t.dtype != dt)
        return cli_fail(CLI_EXIT_USAGE, CMD, "input '%s' (%s): dtype %s, the graph wants %s %s",
                        f->name, f->file, at_dtype_name(f->t.dtype), at_dtype_name(dt), want);
    if (f->t.shape.rank != ws.rank)
        return cli_fail(CLI_EXIT_USAGE, CMD,
                        "input '%s' (%s): shape %s has rank %d, the graph wants %s (rank %d)",
                        f->name, f->file, got, (int)f->t.shape.rank, want, (int)ws.rank);
    for (int d = 0; d < ws.rank; d++) {
        int64_t w = ws.dim[d], x = f->t.shape.dim[d];
        if (w >= 0) {
            if (w != x)
                return cli_fail(CLI_EXIT_USAGE, CMD,
                                "input '%s' (%s): shape %s, the graph wants %s (dim %d is %" PRId64
                                ", not %" PRId64 ")",
                                f->name, f->file, got, want, d, x, w);
            continue;
        }
        int k = (int)(-w - 1);
        if (k < 0 || k >= at_graph_num_syms(g)) continue;
        if (syms[k] >= 0 && syms[k] != x)
            return cli_fail(CLI_EXIT_USAGE, CMD,
                            "input '%s' (%s): shape %s makes %s = %" PRId64
                            ", but input '%s' made it %" PRId64,
                            f->name, f->file, got, at_sym_name(g, w), x, all[who[k]].name, syms[k]);
        syms[k] = x;
        who[k] = idx;
    }
    return CLI_EXIT_OK;
}

static void print_stats(const at_tensor *t) {
    int64_t n = at_shape_numel(&t->shape);
    if (n <= 0) return;
    if (t->dtype == AT_F32) {
        const float *x = t->data;
        double lo = INFINITY, hi = -INFINITY, sum = 0;
        int64_t bad = 0;
        for (int64_t i = 0; i < n; i++) {
            if (!isfinite(x[i])) {
                bad++;
                continue;
            }
            if (x[i] < lo) lo = x[i];
            if (x[i] > hi) hi = x[i];
            sum += x[i];
        }
        if (bad < n) printf("  min %.6g  max %.6g  mean %.6g", lo, hi, sum / (double)(n - bad));
        if (bad) printf("  %" PRId64 " non-finite", bad);
    } else if (t->dtype == AT_I64 || t->dtype == AT_I32 || t->dtype == AT_I8 || t->dtype == AT_U8) {
        int64_t lo = INT64_MAX, hi = INT64_MIN;
        for (int64_t i = 0; i < n; i++) {
            int64_t v = t->dtype == AT_I64   ? ((const int64_t *)t->data)[i]
                        : t->dtype == AT_I32 ? ((const int32_t *)t->data)[i]
                        : t->dtype == AT_I8  ? ((const int8_t *)t->data)[i]
                                             : ((const uint8_t *)t->data)[i];
            if (v < lo) lo = v;
            if (v > hi) hi = v;
        }
        printf("  min %" PRId64 "  max %" PRId64, lo, hi);
    } else if (t->dtype == AT_BOOL) {
        int64_t on = 0;
        for (int64_t i = 0; i < n; i++) on += ((const uint8_t *)t->data)[i] != 0;
        printf("  %" PRId64 " of %" PRId64 " true", on, n);
    }
}

int cmd_run(int argc, char **argv) {
    cli_list inputs = {0}, fetches = {0};
    const char *out_dir = ".", *device = "cpu";
    int64_t threads = 0, seed = 0;
    bool check_finite = false, quiet = false, profile = false;
    const cli_opt io_opts[] = {
        CLI_OPT_LIST("input", &inputs, "NAME=FILE.npy",
                     "feed graph input NAME from a .npy file; once per input"),
        CLI_OPT_STR("output-dir", &out_dir, "DIR",
                    "write each fetched value to DIR/<name>.npy (created if missing; characters "
                    "other than letters, digits, '.', '_' and '-' in names become '_')"),
        CLI_OPT_LIST("fetch", &fetches, "NAME",
                     "fetch this value (any value of the graph, by name) instead of the graph "
                     "outputs"),
        CLI_OPT_FLAG("quiet", &quiet, "print nothing on success"),
    };
    const cli_opt exec_opts[] = {
        CLI_OPT_CHOICE("device", &device, "cpu|cuda", "where to run"),
        CLI_OPT_INT("threads", &threads, 0, 4096, "CPU threads; 0 = OpenMP's default"),
        CLI_OPT_INT("seed", &seed, 0, 9.2e18, "seed of random ops (Dropout in training mode)"),
        CLI_OPT_FLAG("check-finite", &check_finite,
                     "stop at the first node that produces NaN or Inf, naming it"),
        CLI_OPT_FLAG("profile", &profile,
                     "print each kernel's time, by op type and slowest nodes, to stderr (CPU)"),
    };
    const cli_group groups[] = {CLI_GROUP("Inputs and outputs", io_opts),
                                CLI_GROUP("Execution", exec_opts)};
    const cli_cmd c = {
        .name = CMD,
        .usage = "MODEL.onnx --input NAME=FILE.npy ... [options]",
        .summary = "Run any graph file on inputs from .npy files and write its outputs as .npy.",
        .about = "Every input the fetched values depend on must be given. Dtypes and shapes are "
                 "checked against the graph's inputs (symbolic dims such as B must agree across "
                 "inputs). Supported .npy dtypes: float32, float16, int64, int32, int8, uint8, "
                 "bool; C order. Prints one line per output: name, dtype, shape, file, and a "
                 "summary of the values.",
        .epilog = "Example:\n  python3 -c 'import numpy as n; n.save(\"x.npy\", "
                  "n.ones((2,3), n.float32))'\n  attune run model.onnx --input x=x.npy "
                  "--output-dir out",
        .groups = groups,
        .n_groups = 2,
        .min_pos = 1,
        .max_pos = 1,
        .pos_name = "MODEL (the graph file to run)",
    };
    int n_pos, rc = cli_parse(&c, argc, argv, &n_pos);
    at_graph *g = NULL;
    feed_in *feeds = NULL;
    at_val *fetch = NULL;
    at_tensor *outs = NULL;
    bool *need = NULL;
    int64_t *syms = NULL;
    int *who = NULL;
    at_session *s = NULL;
    int n_feeds = 0, n_fetch = 0;
    if (rc != CLI_CONTINUE) goto done;
    const char *model = argv[0];
    /* A file in the way of the output folder is found before the run, not after it. */
    if ((rc = cli_check_dir_path(CMD, "--output-dir", out_dir)) != CLI_CONTINUE) goto done;

    /* The --input specs first: a typo there needs no model load to report. */
    feeds = calloc((size_t)inputs.n + 1, sizeof *feeds);
    if (!feeds) {
        rc = cli_fail(CLI_EXIT_FAIL, CMD, "out of memory");
        goto done;
    }
    for (int i = 0; i < inputs.n; i++) {
        const char *spec = inputs.v[i], *eq = strchr(spec, '=');
        if (!eq || eq == spec || !eq[1]) {
            rc = cli_fail(CLI_EXIT_USAGE, CMD, "--input: '%s' is not NAME=FILE.npy", spec);
            goto done;
        }
        feeds[i].name = strndup(spec, (size_t)(eq - spec));
        feeds[i].file = eq + 1;
        n_feeds = i + 1;
        if (!feeds[i].name) {
            rc = cli_fail(CLI_EXIT_FAIL, CMD, "out of memory");
            goto done;
        }
        for (int j = 0; j < i; j++)
            if (!strcmp(feeds[j].name, feeds[i].name)) {
                rc = cli_fail(CLI_EXIT_USAGE, CMD, "input '%s' given twice (%s and %s)",
                              feeds[i].name, feeds[j].file, feeds[i].file);
                goto done;
            }
    }

    g = cli_load_graph(CMD, model, &rc);
    if (!g) goto done;
    char names[512];
    input_list(g, names, sizeof names);
    for (int i = 0; i < n_feeds; i++) {
        at_val v = at_graph_find(g, feeds[i].name);
        if (v == AT_NONE) {
            rc = cli_fail(CLI_EXIT_USAGE, CMD, "%s has no input '%s' (its inputs: %s)", model,
                          feeds[i].name, names);
            goto done;
        }
        if (at_value_kind_of(g, v) != AT_VALUE_INPUT) {
            rc = cli_fail(CLI_EXIT_USAGE, CMD,
                          "'%s' is a %s of %s, not an input; only inputs can be fed (its inputs: "
                          "%s)",
                          feeds[i].name, cli_value_kind_name(at_value_kind_of(g, v)), model, names);
            goto done;
        }
        feeds[i].v = v;
    }

    /* What to fetch. */
    n_fetch = fetches.n ? fetches.n : at_graph_num_outputs(g);
    if (n_fetch == 0) {
        rc = cli_fail(CLI_EXIT_USAGE, CMD, "%s has no outputs; name values with --fetch", model);
        goto done;
    }
    fetch = calloc((size_t)n_fetch, sizeof *fetch);
    outs = calloc((size_t)n_fetch, sizeof *outs);
    need = calloc((size_t)at_graph_num_values(g) + 1, 1);
    int n_syms = at_graph_num_syms(g);
    syms = malloc(sizeof *syms * (size_t)(n_syms + 1));
    who = calloc((size_t)n_syms + 1, sizeof *who);
    if (!fetch || !outs || !need || !syms || !who) {
        rc = cli_fail(CLI_EXIT_FAIL, CMD, "out of memory");
        goto done;
    }
    int k = 0;
    for (int i = 0; i < n_fetch; i++) {
        at_val v = fetches.n ? at_graph_find(g, fetches.v[i]) : at_graph_output(g, i);
        if (v == AT_NONE) {
            rc =
                cli_fail(CLI_EXIT_USAGE, CMD, "--fetch: %s has no value '%s'", model, fetches.v[i]);
            goto done;
        }
        /* A value named twice is written once. */
        bool dup = false;
        for (int j = 0; j < k; j++) dup |= fetch[j] == v;
        if (!dup) fetch[k++] = v;
    }
    n_fetch = k;
    if (!wants_input(g, fetch, n_fetch, need)) {
        rc = cli_fail(CLI_EXIT_FAIL, CMD, "out of memory");
        goto done;
    }
    for (int i = 0; i < at_graph_num_inputs(g); i++) {
        at_val v = at_graph_input(g, i);
        if (!need[v]) continue;
        bool fed = false;
        for (int j = 0; j < n_feeds; j++) fed |= feeds[j].v == v;
        if (!fed) {
            char sb[256];
            at_shape sh = at_value_shape(g, v);
            rc = cli_fail(CLI_EXIT_USAGE, CMD,
                          "missing input '%s' (%s %s): pass --input %s=FILE.npy",
                          at_value_name(g, v), at_dtype_name(at_value_dtype(g, v)),
                          at_graph_shape_str(g, &sh, sb, sizeof sb), at_value_name(g, v));
            goto done;
        }
    }

    /* Read and check the arrays. */
    for (int i = 0; i < n_syms; i++) syms[i] = -1;
    for (int i = 0; i < n_feeds; i++) {
        at_err e = {0};
        at_status st = at_npy_read(feeds[i].file, &feeds[i].t, &e);
        if (st != AT_OK) {
            rc = cli_fail(cli_exit_for_input(st), CMD, "input '%s': %s", feeds[i].name, e.msg);
            goto done;
        }
        if ((rc = check_feed(g, &feeds[i], i, feeds, syms, who)) != CLI_EXIT_OK) goto done;
    }

    at_session_opts so = at_session_defaults();
    so.device = !strcmp(device, "cuda") ? AT_DEVICE_CUDA : AT_DEVICE_CPU;
    so.threads = (int)threads;
    so.seed = (uint64_t)seed;
    so.check_finite = check_finite;
    so.profile = profile;
    at_err e = {0};
    s = at_session_new(g, &so, &e);
    if (!s) {
        rc = cli_fail(e.code == AT_E_DEVICE ? CLI_EXIT_FAIL : cli_exit_for_input(e.code), CMD,
                      "%s: %s", model, e.msg);
        goto done;
    }
    at_feed *af = calloc((size_t)n_feeds + 1, sizeof *af);
    if (!af) {
        rc = cli_fail(CLI_EXIT_FAIL, CMD, "out of memory");
        goto done;
    }
    for (int i = 0; i < n_feeds; i++) af[i] = (at_feed){feeds[i].v, feeds[i].t};
    at_status st = at_session_run(s, af, n_feeds, fetch, n_fetch, outs, NULL, 0);
    free(af);
    if (st != AT_OK) {
        rc = cli_fail(st == AT_E_NUMERIC ? CLI_EXIT_FAIL : cli_exit_for_work(st), CMD, "%s: %s",
                      model, at_session_error(s));
        goto done;
    }
    if (profile && at_session_profile_write(s, stderr, 15)) {
        rc = cli_fail(CLI_EXIT_FAIL, CMD, "out of memory");
        goto done;
    }

    if (cli_mkdirs(out_dir) != 0) {
        rc = cli_fail(CLI_EXIT_FAIL, CMD, "--output-dir %s: cannot create the folder: %s", out_dir,
                      strerror(errno));
        goto done;
    }
    char(*used)[128] = calloc((size_t)n_fetch, sizeof *used);
    if (!used) {
        rc = cli_fail(CLI_EXIT_FAIL, CMD, "out of memory");
        goto done;
    }
    rc = CLI_EXIT_OK;
    for (int i = 0; i < n_fetch && rc == CLI_EXIT_OK; i++) {
        const char *name = at_value_name(g, fetch[i]);
        char base[128], file[128];
        safe_name(name, base, 110);
        snprintf(file, sizeof file, "%s", base);
        /* Two names that sanitize alike ("a/b", "a:b"), or one value fetched twice. */
        for (int k = 2;; k++) {
            bool clash = false;
            for (int j = 0; j < i; j++) clash |= !strcmp(used[j], file);
            if (!clash) break;
            snprintf(file, sizeof file, "%.100s_%d", base, k);
        }
        snprintf(used[i], sizeof used[i], "%s", file);
        size_t pl = strlen(out_dir) + strlen(file) + 8;
        char *path = malloc(pl);
        if (!path) {
            rc = cli_fail(CLI_EXIT_FAIL, CMD, "out of memory");
            break;
        }
        snprintf(path, pl, "%s/%s.npy", out_dir, file);
        at_err we = {0};
        if (at_npy_write(path, &outs[i], &we) != AT_OK) {
            rc = cli_fail(CLI_EXIT_FAIL, CMD, "output '%s': %s", name, we.msg);
        } else if (!quiet) {
            char sb[256];
            printf("%s  %s %s  -> %s", name, at_dtype_name(outs[i].dtype),
                   at_shape_str(&outs[i].shape, sb, sizeof sb), path);
            print_stats(&outs[i]);
            putchar('\n');
        }
        free(path);
    }
    free(used);
    if (rc == CLI_EXIT_OK && fflush(stdout) != 0)
        rc = cli_fail(CLI_EXIT_FAIL, CMD, "writing to stdout failed: %s", strerror(errno));

done:
    at_session_free(s);
    for (int i = 0; i < n_feeds; i++) {
        free((char *)feeds[i].name);
        free(feeds[i].t.data);
    }
    free(feeds);
    free(fetch);
    free(outs);
    free(need);
    free(syms);
    free(who);
    at_graph_free(g);
    cli_list_free(&inputs);
    cli_list_free(&fetches);
    return rc;
}
