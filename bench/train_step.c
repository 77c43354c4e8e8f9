/* Training-step time of the default joint NLU model (DESIGN.md section 6: transformer, G on,
 * adv gan, hard D input) built through nlu.h with a random vocabulary, on random batches.
 * A step is what the trainer does per batch in phase 2 in gan mode: d_steps D updates
 * (AT_NLU_STEP_D) then one combined update (AT_NLU_STEP_P2), fetching the same losses.
 * bench/torch_joint.py is the same model and step in PyTorch and prints the same JSON line.
 *
 *   bench_train_step [--batch 32] [--seq 16] [--threads 2] [--steps 20] [--warmup 3]
 *                    [--encoder transformer|bilstm] [--words 10000] [--slots 72]
 *                    [--intents 7] [--part step|d|main] [--blas-threads N]
 *
 * --part d or main times only that half (for profiling); --blas-threads overrides the
 * OpenBLAS thread count the session set (a diagnostic). Prints one JSON line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "attune/dataset.h"
#include "attune/graph.h"
#include "attune/nlu.h"
#include "attune/session.h"

extern void openblas_set_num_threads(int); /* --blas-threads: a diagnostic, see NOTES.md */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint64_t lcg(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

/* Current resident set in MiB (the peak comes from getrusage). */
static double rss_mib(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = 0;
        fclose(f);
    }
    return (double)res * 4096.0 / (1024.0 * 1024.0);
}

static double peak_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

static int die(const char *what, const char *msg) {
    fprintf(stderr, "bench_train_step: %s: %s\n", what, msg);
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

int main(int argc, char **argv) {
    int B = 32, T = 16, threads = 2, steps = 20, warmup = 3, words = 10000, slots = 72, intents = 7,
        blas_threads = 0;
    const char *encoder = "transformer", *part = "step";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return die("usage", "every flag takes a value");
        if (!strcmp(a, "--batch"))
            B = atoi(v);
        else if (!strcmp(a, "--seq"))
            T = atoi(v);
        else if (!strcmp(a, "--threads"))
            threads = atoi(v);
        else if (!strcmp(a, "--steps"))
            steps = atoi(v);
        else if (!strcmp(a, "--warmup"))
            warmup = atoi(v);
        else if (!strcmp(a, "--encoder"))
            encoder = v;
        else if (!strcmp(a, "--words"))
            words = atoi(v);
        else if (!strcmp(a, "--slots"))
            slots = atoi(v);
        else if (!strcmp(a, "--intents"))
            intents = atoi(v);
        else if (!strcmp(a, "--part"))
            part = v;
        else if (!strcmp(a, "--blas-threads"))
            blas_threads = atoi(v);
        else
            return die("usage", a);
        i++;
    }
    if (B < 1 || T < 1 || steps < 1 || warmup < 0 || threads < 0) return die("usage", "bad size");
    bool do_d = strcmp(part, "main") != 0, do_main = strcmp(part, "d") != 0;

    at_err e = {0};
    at_nlu_config cfg = at_nlu_config_default();
    if (at_nlu_config_set(&cfg, "encoder", encoder, &e)) return die("config", e.msg);
    if (T > cfg.max_positions) cfg.max_positions = T;
    at_nlu_vocab voc = {0};
    if (make_vocab(&voc, words, slots, intents, &e)) return die("vocabulary", e.msg);
    at_nlu_model *m = NULL;
    double t_build = now();
    if (at_nlu_model_new(&m, &cfg, &voc, &e)) return die("model", e.msg);
    t_build = now() - t_build;
    at_session_opts so = at_session_defaults();
    so.threads = threads;
    if (at_nlu_model_set_session(m, &so, &e)) return die("session", e.msg);
    at_session *s = at_nlu_model_session(m, &e);
    if (blas_threads > 0) openblas_set_num_threads(blas_threads); /* after the session's own */
    const at_nlu_net *n = at_nlu_model_net(m);
    const at_nlu_update_set *ud = &n->steps[AT_NLU_STEP_D], *um = &n->steps[AT_NLU_STEP_P2];
    if (ud->n == 0 || um->n == 0) return die("model", "no D or P2 update set");

    /* One batch, reused: random tokens and labels, lengths between T/2 and T (row 0 full). */
    size_t bt = (size_t)B * (size_t)T;
    int64_t *tok = malloc(bt * sizeof *tok), *sl = malloc(bt * sizeof *sl);
    int64_t *len = malloc((size_t)B * sizeof *len), *it = malloc((size_t)B * sizeof *it);
    float *mask = malloc(bt * sizeof *mask);
    if (!tok || !sl || !len || !it || !mask) return die("batch", "out of memory");
    uint64_t rs = 42;
    for (int b = 0; b < B; b++) {
        len[b] = b == 0 ? T : T - (int64_t)((b * 7919) % (T / 2 + 1));
        it[b] = (int64_t)(lcg(&rs) % (uint64_t)intents);
        for (int t = 0; t < T; t++) {
            bool in = t < len[b];
            tok[b * T + t] = in ? 2 + (int64_t)(lcg(&rs) % (uint64_t)(words - 2)) : AT_PAD_ID;
            sl[b * T + t] = in ? (int64_t)(lcg(&rs) % (uint64_t)slots) : AT_IGNORE_INDEX;
            mask[b * T + t] = in ? 1.0f : 0.0f;
        }
    }
    float lambda = 0.05f, lr = cfg.lr;
    bool training = true;
    at_shape sbt = AT_SHAPE(B, T), sb = AT_SHAPE(B);
    at_feed feeds[10];
    int nf = 0;
    feeds[nf++] = (at_feed){n->tokens, {AT_I64, sbt, tok}};
    feeds[nf++] = (at_feed){n->mask, {AT_F32, sbt, mask}};
    if (n->lengths != AT_NONE) feeds[nf++] = (at_feed){n->lengths, {AT_I64, sb, len}};
    feeds[nf++] = (at_feed){n->training, {AT_BOOL, AT_SCALAR, &training}};
    feeds[nf++] = (at_feed){n->slots, {AT_I64, sbt, sl}};
    feeds[nf++] = (at_feed){n->intents, {AT_I64, sb, it}};
    feeds[nf++] = (at_feed){n->lambda, {AT_F32, AT_SCALAR, &lambda}};
    feeds[nf++] = (at_feed){n->lr, {AT_F32, AT_SCALAR, &lr}};

    /* What the trainer fetches: L_D on the D step; L_task, L_reg, L_adv on the main step. */
    const at_nlu_path *p = n->eval;
    at_val fetch_m[3] = {p->loss_task, p->loss_reg, p->loss_adv};
    at_tensor out[3];
    double rss0 = rss_mib();
    double *times = malloc((size_t)steps * sizeof *times),
           *cpu = malloc((size_t)steps * sizeof *cpu);
    if (!times || !cpu) return die("timing", "out of memory");
    double loss_d = 0, loss_task = 0;
    size_t arena = 0;
    int nodes_d = 0, nodes_main = 0;
    for (int k = 0; k < warmup + steps; k++) {
        double t0 = now(), c0 = cpu_now();
        for (int d = 0; do_d && d < cfg.d_steps; d++) {
            if (at_session_run(s, feeds, nf, &ud->loss, 1, out, ud->updates, ud->n))
                return die("D step", at_session_error(s));
            loss_d = ((const float *)out[0].data)[0];
            nodes_d = at_session_get_stats(s).nodes_run;
            size_t a = at_session_get_stats(s).arena_bytes;
            if (a > arena) arena = a;
        }
        if (do_main) {
            if (at_session_run(s, feeds, nf, fetch_m, 3, out, um->updates, um->n))
                return die("combined step", at_session_error(s));
            loss_task = ((const float *)out[0].data)[0];
            nodes_main = at_session_get_stats(s).nodes_run;
            size_t a = at_session_get_stats(s).arena_bytes;
            if (a > arena) arena = a;
        }
        double t1 = now(), c1 = cpu_now();
        if (k >= warmup) times[k - warmup] = (t1 - t0) * 1e3, cpu[k - warmup] = (c1 - c0) * 1e3;
    }
    qsort(times, (size_t)steps, sizeof *times, cmp_d);
    qsort(cpu, (size_t)steps, sizeof *cpu, cmp_d);
    printf("{\"impl\":\"attune\",\"encoder\":\"%s\",\"part\":\"%s\",\"batch\":%d,\"seq\":%d,"
           "\"threads\":%d,\"steps\":%d,\"median_ms\":%.3f,\"min_ms\":%.3f,\"max_ms\":%.3f,"
           "\"cpu_ms\":%.3f,"
           "\"peak_rss_mb\":%.1f,\"rss_before_steps_mb\":%.1f,\"arena_mb\":%.1f,"
           "\"nodes_d\":%d,\"nodes_main\":%d,\"params\":%lld,\"build_s\":%.3f,\"loss_d\":%.4f,"
           "\"loss_task\":%.4f}\n",
           encoder, part, B, T, threads, steps, times[steps / 2], times[0], times[steps - 1],
           cpu[steps / 2], peak_mib(), rss0, (double)arena / (1024.0 * 1024.0), nodes_d, nodes_main,
           (long long)at_nlu_model_num_params(m, ~0u), t_build, loss_d, loss_task);
    free(times), free(cpu);
    free(tok), free(sl), free(len), free(it), free(mask);
    at_nlu_model_free(m);
    return 0;
}
