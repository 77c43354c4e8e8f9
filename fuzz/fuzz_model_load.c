/* libFuzzer target: the model-file loader on arbitrary bytes.
 *
 * A file either loads or gives an error with a message; it never crashes, leaks or asks for
 * an absurd allocation. What loads must also validate, save and load again (a model attune
 * accepts is one it can write back), print as text, clone, and, when it is small and all its
 * shapes are concrete, compile into a session and run on zero inputs: a file's initializers
 * and attributes are as hostile as its structure, and kernels must answer bad data with an
 * error too. Inputs that mention "attune.step" also go through the checkpoint loader, from a
 * file, and a checkpoint that loads must save and load again with the same training
 * position. */
#define _GNU_SOURCE /* memmem, mkdtemp */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attune/attune.h"

/* Bounds on what a run may touch, so that a tiny file whose shapes say "4 GiB" fails the
 * size check here instead of tripping the fuzzer's memory limit inside the arena. */
enum { MAX_RUN_NODES = 256, MAX_RUN_VALUES = 1024 };
#define MAX_VALUE_BYTES ((int64_t)1 << 20)
#define MAX_TOTAL_BYTES ((int64_t)16 << 20)

static FILE *devnull;
static char dir[256], path_in[300], path_out[300];

static void cleanup(void) {
    unlink(path_in);
    unlink(path_out);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    devnull = fopen("/dev/null", "w");
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%s/attune_fuzz_model_XXXXXX", tmp);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        abort();
    }
    snprintf(path_in, sizeof path_in, "%s/in.onnx", dir);
    snprintf(path_out, sizeof path_out, "%s/out.onnx", dir);
    atexit(cleanup);
    return 0;
}

/* An error must say what went wrong: a failure with an empty message or AT_OK is a bug. */
static void check_err(const char *what, const at_err *err) {
    if (err->code == AT_OK || err->msg[0] == '\0') {
        fprintf(stderr, "%s failed with code %d and message '%s'\n", what, (int)err->code,
                err->msg);
        abort();
    }
}

static int64_t value_bytes(const at_graph *g, at_val v) {
    at_shape s = at_value_shape(g, v);
    int64_t n = at_shape_numel(&s);
    if (n < 0) return -1;
    int64_t es = (int64_t)at_dtype_size(at_value_dtype(g, v));
    if (es == 0 || n > MAX_VALUE_BYTES / es) return -1;
    return n * es;
}

static void try_run(at_graph *g) {
    int nv = at_graph_num_values(g), ni = at_graph_num_inputs(g), no = at_graph_num_outputs(g);
    if (at_graph_num_nodes(g) > MAX_RUN_NODES || nv > MAX_RUN_VALUES || no == 0) return;
    int64_t total = 0;
    for (at_val v = 0; v < nv; v++) {
        int64_t b = value_bytes(g, v);
        if (b < 0 || (total += b) > MAX_TOTAL_BYTES) return;
    }
    at_session_opts o = at_session_defaults();
    o.threads = 1;
    o.check_finite = true;
    at_err err = {0};
    at_session *s = at_session_new(g, &o, &err);
    if (!s) {
        check_err("at_session_new", &err);
        return;
    }
    at_feed *feeds = calloc((size_t)ni + 1, sizeof *feeds);
    at_val *fetch = calloc((size_t)no, sizeof *fetch);
    at_tensor *out = calloc((size_t)no, sizeof *out);
    int fed = 0;
    if (feeds && fetch && out) {
        for (; fed < ni; fed++) {
            at_val v = at_graph_input(g, fed);
            int64_t b = value_bytes(g, v);
            feeds[fed].val = v;
            feeds[fed].t.dtype = at_value_dtype(g, v);
            feeds[fed].t.shape = at_value_shape(g, v);
            feeds[fed].t.data = calloc(1, b > 0 ? (size_t)b : 1);
            if (!feeds[fed].t.data) break;
        }
        for (int i = 0; i < no; i++) fetch[i] = at_graph_output(g, i);
        if (fed == ni) {
            at_status st = at_session_run(s, feeds, ni, fetch, no, out, NULL, 0);
            if (st != AT_OK && at_session_error(s)[0] == '\0') {
                fprintf(stderr, "at_session_run failed (%s) without a message\n",
                        at_status_str(st));
                abort();
            }
        }
    }
    for (int i = 0; i < fed; i++) free(feeds[i].t.data);
    free(feeds);
    free(fetch);
    free(out);
    at_session_free(s);
}

static void checkpoint(const uint8_t *data, size_t size) {
    FILE *f = fopen(path_in, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
        perror(path_in);
        abort();
    }
    at_checkpoint_info info, info2;
    at_err err = {0};
    at_graph *g = at_checkpoint_load(path_in, &info, &err);
    if (!g) {
        check_err("at_checkpoint_load", &err);
        return;
    }
    if (at_checkpoint_save(g, &info, path_out, &err) != AT_OK) {
        check_err("at_checkpoint_save", &err);
        at_graph_free(g);
        return;
    }
    at_graph *g2 = at_checkpoint_load(path_out, &info2, &err);
    if (!g2) {
        fprintf(stderr, "a saved checkpoint does not load: %s\n", err.msg);
        abort();
    }
    if (info.step != info2.step || info.epoch != info2.epoch || info.phase != info2.phase ||
        info.rng_seed != info2.rng_seed || at_graph_num_nodes(g) != at_graph_num_nodes(g2)) {
        fprintf(stderr, "checkpoint save + load changed it\n");
        abort();
    }
    at_graph_free(g2);
    at_graph_free(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size && memmem(data, size, "attune.step", 11)) checkpoint(data, size);
    at_err err = {0};
    at_graph *g = at_graph_load_bytes(data, size, &err);
    if (!g) {
        check_err("at_graph_load_bytes", &err);
        return 0;
    }
    if (at_graph_validate(g) != AT_OK) {
        /* The loader rebuilt every node through the builder, so a loaded graph is valid. */
        fprintf(stderr, "a loaded graph does not validate: %s\n", at_graph_error(g));
        abort();
    }

    void *buf = NULL;
    size_t len = 0;
    at_err serr = {0};
    at_status st = at_graph_save_bytes(g, NULL, &buf, &len, &serr);
    if (st == AT_OK) {
        at_err lerr = {0};
        at_graph *g2 = at_graph_load_bytes(buf, len, &lerr);
        if (!g2) {
            fprintf(stderr, "a loaded graph saved but did not load again: %s\n", lerr.msg);
            abort();
        }
        if (at_graph_num_nodes(g2) != at_graph_num_nodes(g) ||
            at_graph_num_inputs(g2) != at_graph_num_inputs(g) ||
            at_graph_num_outputs(g2) != at_graph_num_outputs(g)) {
            fprintf(stderr,
                    "save + load changed the graph: %d/%d/%d nodes/inputs/outputs, "
                    "then %d/%d/%d\n",
                    at_graph_num_nodes(g), at_graph_num_inputs(g), at_graph_num_outputs(g),
                    at_graph_num_nodes(g2), at_graph_num_inputs(g2), at_graph_num_outputs(g2));
            abort();
        }
        at_graph_free(g2);
        free(buf);
    } else {
        check_err("at_graph_save_bytes", &serr);
        if (st == AT_E_INTERNAL) {
            fprintf(stderr, "saving a loaded graph: %s\n", serr.msg);
            abort();
        }
    }

    if (devnull) {
        at_graph_write_text(g, devnull);
        at_graph_write_dot(g, devnull);
    }
    at_graph *c = at_graph_clone(g);
    at_graph_free(c);

    try_run(g);
    at_graph_free(g);
    return 0;
}
