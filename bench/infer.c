/* Batch-1 inference latency of the joint NLU model's saved inference graph (the model file
 * at_nlu_save writes), run the way a deployment would: at_graph_load + one at_session, every
 * graph output fetched. bench/ort_infer.py runs the same file in ONNX Runtime.
 *
 *   bench_infer --model PATH [--export] [--seq 16] [--threads 2] [--reps 300] [--warmup 30]
 *               [--encoder transformer|bilstm] [--profile]
 *
 * --export first builds the default model (random vocabulary: 10000 words, 72 slot labels,
 * 7 intents) and saves it to PATH. Prints one JSON line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "attune/dataset.h"
#include "attune/graph.h"
#include "attune/io.h"
#include "attune/nlu.h"
#include "attune/session.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int die(const char *what, const char *msg) {
    fprintf(stderr, "bench_infer: %s: %s\n", what, msg);
    return 1;
}

static at_status make_vocab(at_nlu_vocab *v, int words, int slots, int intents, at_err *e) {
    char name[32];
    at_status st = at_vocab_new(&v->words, e);
    if (!st) st = at_vocab_new(&v->slots, e);
    if (!st) st = at_vocab_new(&v->intents, e);
    if (!st) st = at_vocab_add(v->words, "<pad>", NULL, e);
    if (!st) st = at_vocab_add(v->words, "<unk>", NULL, e);
    for (int i = 2; !st && i < words; i++) {
        snprintf(name, sizeof name, "w%d", i);
        st = at_vocab_add(v->words, name, NULL, e);
    }
    if (!st) st = at_vocab_add(v->slots, "O", NULL, e);
    for (int i = 1; !st && i < slots; i++) {
        snprintf(name, sizeof name, "%c-s%d", i % 2 ? 'B' : 'I', (i + 1) / 2);
        st = at_vocab_add(v->slots, name, NULL, e);
    }
    for (int i = 0; !st && i < intents; i++) {
        snprintf(name, sizeof name, "intent%d", i);
        st = at_vocab_add(v->intents, name, NULL, e);
    }
    return st;
}

static int export_model(const char *path, const char *encoder) {
    at_err e = {0};
    at_nlu_config cfg = at_nlu_config_default();
    if (at_nlu_config_set(&cfg, "encoder", encoder, &e)) return die("config", e.msg);
    at_nlu_vocab voc = {0};
    if (make_vocab(&voc, 10000, 72, 7, &e)) return die("vocabulary", e.msg);
    at_nlu_model *m = NULL;
    if (at_nlu_model_new(&m, &cfg, &voc, &e)) return die("model", e.msg);
    if (at_nlu_save(m, path, &e)) return die("save", e.msg);
    at_nlu_model_free(m);
    return 0;
}

int main(int argc, char **argv) {
    const char *path = NULL, *encoder = "transformer";
    int T = 16, threads = 2, reps = 300, warmup = 30;
    bool do_export = false, profile = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--export")) {
            do_export = true;
            continue;
        }
        if (!strcmp(a, "--profile")) { /* kernel times by op type, to stderr */
            profile = true;
            continue;
        }
        if (!v) return die("usage", "a flag lacks its value");
        if (!strcmp(a, "--model"))
            path = v;
        else if (!strcmp(a, "--seq"))
            T = atoi(v);
        else if (!strcmp(a, "--threads"))
            threads = atoi(v);
        else if (!strcmp(a, "--reps"))
            reps = atoi(v);
        else if (!strcmp(a, "--warmup"))
            warmup = atoi(v);
        else if (!strcmp(a, "--encoder"))
            encoder = v;
        else
            return die("usage", a);
        i++;
    }
    if (!path || T < 1 || reps < 1) return die("usage", "--model PATH, --seq >= 1, --reps >= 1");
    if (do_export && export_model(path, encoder)) return 1;

    at_err e = {0};
    double t_load = now();
    at_graph *g = at_graph_load(path, &e);
    if (!g) return die(path, e.msg);
    t_load = now() - t_load;
    at_session_opts so = at_session_defaults();
    so.threads = threads;
    so.profile = profile;
    at_session *s = at_session_new(g, &so, &e);
    if (!s) return die("session", e.msg);

    /* One sentence of T tokens; every input the inference graph has gets fed. */
    int64_t *tok = malloc((size_t)T * sizeof *tok), *len = malloc(sizeof *len);
    float *mask = malloc((size_t)T * sizeof *mask);
    if (!tok || !len || !mask) return die("feeds", "out of memory");
    for (int t = 0; t < T; t++) tok[t] = 2 + (t * 7919) % 9000, mask[t] = 1.0f;
    len[0] = T;
    bool training = false;
    at_feed feeds[8];
    int nf = 0;
    for (int i = 0; i < at_graph_num_inputs(g) && nf < 8; i++) {
        at_val v = at_graph_input(g, i);
        const char *name = at_value_name(g, v);
        if (!strcmp(name, "tokens"))
            feeds[nf++] = (at_feed){v, {AT_I64, AT_SHAPE(1, T), tok}};
        else if (!strcmp(name, "mask"))
            feeds[nf++] = (at_feed){v, {AT_F32, AT_SHAPE(1, T), mask}};
        else if (!strcmp(name, "lengths"))
            feeds[nf++] = (at_feed){v, {AT_I64, AT_SHAPE(1), len}};
        else if (!strcmp(name, "training"))
            feeds[nf++] = (at_feed){v, {AT_BOOL, AT_SCALAR, &training}};
        else
            return die("inputs", name);
    }
    int no = at_graph_num_outputs(g);
    at_val fetch[16];
    at_tensor out[16];
    if (no > 16) return die("outputs", "more than 16");
    for (int i = 0; i < no; i++) fetch[i] = at_graph_output(g, i);

    double *lat = malloc((size_t)reps * sizeof *lat);
    if (!lat) return die("timing", "out of memory");
    for (int k = 0; k < warmup + reps; k++) {
        double t0 = now();
        if (at_session_run(s, feeds, nf, fetch, no, out, NULL, 0))
            return die("run", at_session_error(s));
        double t1 = now();
        if (k >= warmup) lat[k - warmup] = (t1 - t0) * 1e3;
    }
    if (profile && at_session_profile_write(s, stderr, 15)) return die("profile", "out of memory");
    double first_logit = ((const float *)out[0].data)[0];
    qsort(lat, (size_t)reps, sizeof *lat, cmp_d);
    int p99 = (int)(0.99 * (reps - 1) + 0.5);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"impl\":\"attune\",\"encoder\":\"%s\",\"batch\":1,\"seq\":%d,\"threads\":%d,"
           "\"reps\":%d,\"median_ms\":%.4f,\"p99_ms\":%.4f,\"min_ms\":%.4f,\"nodes\":%d,"
           "\"outputs\":%d,\"load_s\":%.3f,\"peak_rss_mb\":%.1f,\"out0\":%.6f}\n",
           encoder, T, threads, reps, lat[reps / 2], lat[p99], lat[0], at_graph_num_nodes(g), no,
           t_load, (double)ru.ru_maxrss / 1024.0, first_logit);
    free(lat), free(tok), free(len), free(mask);
    at_session_free(s);
    at_graph_free(g);
    return 0;
}
