/* attune bench: the cost of one training step, or of one sentence's inference, of the model
 * built from options, on random data of a given shape. One JSON line on stdout. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cli.h"

#define CMD "bench"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double peak_rss_mb(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return NAN;
    return (double)ru.ru_maxrss / 1024.0; /* kilobytes on Linux */
}

/* splitmix64: the random data depends on the seed only. */
static uint64_t next_u64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int64_t uniform(uint64_t *s, int64_t lo, int64_t hi) {
    return lo + (int64_t)(next_u64(s) % (uint64_t)(hi - lo));
}

/* Vocabularies of the given sizes with made-up entries. */
static at_status random_vocab(at_nlu_vocab *v, int64_t words, int64_t slots, int64_t intents,
                              bool chars, at_err *e) {
    memset(v, 0, sizeof *v);
    char buf[64];
    at_status st = at_vocab_new(&v->words, e);
    if (!st) st = at_vocab_new(&v->slots, e);
    if (!st) st = at_vocab_new(&v->intents, e);
    if (!st && chars) st = at_vocab_new(&v->chars, e);
    if (!st) st = at_vocab_add(v->words, "<pad>", NULL, e);
    if (!st) st = at_vocab_add(v->words, "<unk>", NULL, e);
    for (int64_t i = 2; !st && i < words; i++) {
        snprintf(buf, sizeof buf, "w%lld", (long long)i);
        st = at_vocab_add(v->words, buf, NULL, e);
    }
    if (!st) st = at_vocab_add(v->slots, "O", NULL, e);
    for (int64_t i = 1; !st && i < slots; i++) {
        snprintf(buf, sizeof buf, "%c-type%lld", i % 2 ? 'B' : 'I', (long long)(i + 1) / 2);
        st = at_vocab_add(v->slots, buf, NULL, e);
    }
    for (int64_t i = 0; !st && i < intents; i++) {
        snprintf(buf, sizeof buf, "intent%lld", (long long)i);
        st = at_vocab_add(v->intents, buf, NULL, e);
    }
    if (!st && chars) st = at_vocab_add(v->chars, "<pad>", NULL, e);
    if (!st && chars) st = at_vocab_add(v->chars, "<unk>", NULL, e);
    for (char ch = 'a'; !st && chars && ch <= 'z'; ch++) {
        char s[2] = {ch, 0};
        st = at_vocab_add(v->chars, s, NULL, e);
    }
    if (st) at_nlu_vocab_free(v);
    return st;
}

/* The arrays of one random batch. Rows [B, B + extra) are unlabelled, as the trainer's
 * unlabelled half of an adversarial step. */
typedef struct rbatch {
    int64_t B, T;
    int64_t *tokens, *lengths, *chars, *slots, *intents;
    float *mask;
    float lambda, lr;
    bool training;
} rbatch;

static void rbatch_free(rbatch *b) {
    free(b->tokens);
    free(b->lengths);
    free(b->chars);
    free(b->slots);
    free(b->intents);
    free(b->mask);
}

static bool rbatch_alloc(rbatch *b, int64_t B, int64_t T) {
    size_t bt = (size_t)(B * T);
    b->B = B;
    b->T = T;
    b->tokens = malloc(bt * sizeof *b->tokens);
    b->lengths = malloc((size_t)B * sizeof *b->lengths);
    b->chars = malloc(bt * AT_CHAR_WIDTH * sizeof *b->chars);
    b->slots = malloc(bt * sizeof *b->slots);
    b->intents = malloc((size_t)B * sizeof *b->intents);
    b->mask = malloc(bt * sizeof *b->mask);
    return b->tokens && b->lengths && b->chars && b->slots && b->intents && b->mask;
}

static void rbatch_fill(rbatch *b, int64_t labelled, uint64_t *rng, int64_t words, int64_t chars,
                        int64_t slots, int64_t intents) {
    int64_t T = b->T;
    for (int64_t r = 0; r < b->B; r++) {
        bool lab = r < labelled;
        b->lengths[r] = T;
        b->intents[r] = lab ? uniform(rng, 0, intents) : AT_IGNORE_INDEX;
        for (int64_t t = 0; t < T; t++) {
            int64_t k = r * T + t;
            b->tokens[k] = uniform(rng, 2, words);
            b->mask[k] = 1.0f;
            b->slots[k] = lab ? uniform(rng, 0, slots) : AT_IGNORE_INDEX;
            int64_t len = 3 + (int64_t)(next_u64(rng) % 6);
            for (int64_t w = 0; w < AT_CHAR_WIDTH; w++)
                b->chars[k * AT_CHAR_WIDTH + w] =
                    w < len && chars > 2 ? uniform(rng, 2, chars) : AT_PAD_ID;
        }
    }
}

static int make_feeds(const at_nlu_net *n, rbatch *b, bool labels, at_feed *out) {
    int k = 0;
    at_shape bt = AT_SHAPE(b->B, b->T), bv = AT_SHAPE(b->B);
    out[k++] = (at_feed){n->tokens, {AT_I64, bt, b->tokens}};
    out[k++] = (at_feed){n->mask, {AT_F32, bt, b->mask}};
    if (n->lengths != AT_NONE) out[k++] = (at_feed){n->lengths, {AT_I64, bv, b->lengths}};
    if (n->chars != AT_NONE)
        out[k++] = (at_feed){n->chars, {AT_I64, AT_SHAPE(b->B, b->T, AT_CHAR_WIDTH), b->chars}};
    out[k++] = (at_feed){n->training, {AT_BOOL, AT_SCALAR, &b->training}};
    if (!labels) return k;
    out[k++] = (at_feed){n->slots, {AT_I64, bt, b->slots}};
    out[k++] = (at_feed){n->intents, {AT_I64, bv, b->intents}};
    out[k++] = (at_feed){n->lambda, {AT_F32, AT_SCALAR, &b->lambda}};
    out[k++] = (at_feed){n->lr, {AT_F32, AT_SCALAR, &b->lr}};
    return k;
}

int cmd_bench(int argc, char **argv) {
    cli_cfg_opts co;
    cli_cfg_init(&co);
    bool train = false, infer = false, with_unl = false, profile = false;
    const char *data = NULL, *device = "cpu";
    int64_t batch = 32, seq = 16, warmup = 3, steps = 20, threads = 0;
    int64_t vocab = 10000, intents = 7, slots = 72;
    const cli_opt opts[] = {
        CLI_OPT_FLAG("train", &train, "time full training steps (the default)"),
        CLI_OPT_FLAG("infer", &infer, "time batch-1 inference"),
        CLI_OPT_INT("batch", &batch, 1, 1 << 20, "sentences per step (--train)"),
        CLI_OPT_INT("seq", &seq, 1, AT_DATA_MAX_TOKENS, "tokens per sentence T"),
        CLI_OPT_FLAG("with-unlabelled", &with_unl,
                     "add B unlabelled rows to each step, as training with --label-fraction or "
                     "--unlabelled does in the adversarial phases"),
        CLI_OPT_INT("warmup", &warmup, 0, 1 << 20, "untimed steps first"),
        CLI_OPT_INT("steps", &steps, 1, 1 << 20, "timed steps"),
        CLI_OPT_INT("vocab", &vocab, 3, 1 << 24, "word vocabulary size of the random data"),
        CLI_OPT_INT("intents", &intents, 1, 1 << 20, "intents of the random data"),
        CLI_OPT_INT("slots", &slots, 1, 1 << 20, "slot labels of the random data (with O)"),
        CLI_OPT_STR("data", &data, "DIR", "take the vocabularies and label sets from DIR/train"),
        CLI_OPT_CHOICE("device", &device, "cpu|cuda", "where to run"),
        CLI_OPT_INT("threads", &threads, 0, 4096, "CPU threads; 0 = OpenMP's default"),
        CLI_OPT_FLAG("profile", &profile,
                     "print kernel time by op type and the slowest nodes to stderr (CPU)"),
        cli_cfg_row(&co, "seed"),
    };
    cli_opt model[2 * CLI_CFG_MAX];
    int nm = cli_cfg_rows(&co, CLI_CFG_ARCH, model);
    nm += cli_cfg_rows(&co, CLI_CFG_ADV, model + nm);
    model[nm++] = cli_cfg_row(&co, "dropout");
    model[nm++] = cli_cfg_row(&co, "clip");
    const cli_group groups[] = {CLI_GROUP("Benchmark", opts), {"Model", model, nm, NULL}};
    const cli_cmd c = {
        .name = CMD,
        .usage = "[--train | --infer] [--batch B --seq T] [model options]",
        .summary = "Time training steps or inference of the model on random data; prints one "
                   "JSON line.",
        .about = "--train times what one training step of the joint phase costs: the combined "
                 "update of encoder, G and decoders, plus the D updates in gan mode (--d-steps "
                 "of them); where the model has no joint phase (G and D off), the base update. "
                 "It prints {\"ms_per_step_median\": ..., \"ms_per_step_min\": ..., "
                 "\"peak_rss_mb\": ...} and details. --infer times batch-1 inference of the "
                 "evaluation path (ms_per_sentence_median). --batch is ignored by --infer; peak "
                 "RSS is the process's maximum resident set (getrusage).",
        .epilog = "Examples:\n  attune bench --train --batch 32 --seq 16 --kind transformer\n"
                  "  attune bench --infer --seq 12 --kind bilstm --generator off",
        .groups = groups,
        .n_groups = 2,
        .min_pos = 0,
        .max_pos = 0,
    };
    int n_pos, rc = cli_parse(&c, argc, argv, &n_pos);
    if (rc != CLI_CONTINUE) return rc;
    if (train && infer)
        return cli_fail(CLI_EXIT_USAGE, CMD, "--train and --infer are exclusive: run twice");
    at_nlu_config cfg = at_nlu_config_default();
    if ((rc = cli_cfg_apply(CMD, &co, &cfg)) != CLI_CONTINUE) return rc;
    if ((rc = cli_check_device(CMD, device)) != CLI_CONTINUE) return rc;
    if (cfg.encoder == AT_NLU_TRANSFORMER && seq > cfg.max_positions)
        return cli_fail(CLI_EXIT_USAGE, CMD, "--seq %lld is longer than --max-positions %d",
                        (long long)seq, cfg.max_positions);

    at_err e = {0};
    at_nlu_model *m = NULL;
    at_status st;
    if (data) {
        at_split *tr = NULL;
        if ((rc = cli_read_split(CMD, data, "train", &tr)) != CLI_CONTINUE) return rc;
        st = at_nlu_model_from_split(&m, &cfg, tr, &e);
        at_split_free(tr);
    } else {
        at_nlu_vocab v;
        st = random_vocab(&v, vocab, slots, intents, cfg.char_dim > 0, &e);
        if (!st) st = at_nlu_model_new(&m, &cfg, &v, &e);
        at_nlu_vocab_free(&v);
    }
    if (st) return cli_fail(cli_exit_for_work(st), CMD, "%s", e.msg);
    const at_nlu_vocab *v = at_nlu_model_vocab(m);
    int64_t nw = at_vocab_size(v->words), nc = v->chars ? at_vocab_size(v->chars) : 0;
    int64_t nsl = at_vocab_size(v->slots), ni = at_vocab_size(v->intents);
    unsigned flags = (profile ? CLI_SESSION_PROFILE : 0) | (infer ? CLI_SESSION_PACK_TRAINED : 0);
    if ((rc = cli_model_session(CMD, m, device, threads, cfg.seed, flags)) != CLI_CONTINUE) {
        at_nlu_model_free(m);
        return rc;
    }
    at_session *s = at_nlu_model_session(m, &e);
    const at_nlu_net *net = at_nlu_model_net(m);

    /* What one step runs. */
    const at_nlu_update_set *main = &net->steps[AT_NLU_STEP_P2];
    const char *step_kind = "joint";
    if (main->n == 0) {
        main = &net->steps[AT_NLU_STEP_BASE];
        step_kind = "base";
    }
    const at_nlu_update_set *dstep =
        main == &net->steps[AT_NLU_STEP_P2] && net->steps[AT_NLU_STEP_D].n > 0
            ? &net->steps[AT_NLU_STEP_D]
            : NULL;
    int d_steps = dstep ? cfg.d_steps : 0;

    int64_t B = infer ? 1 : batch, rows = B * (!infer && with_unl ? 2 : 1);
    rbatch b = {0};
    uint64_t rng = cfg.seed * 0x2545f4914f6cdd1dull + 17;
    double *ms = calloc((size_t)steps, sizeof *ms);
    if (!rbatch_alloc(&b, rows, seq) || !ms) {
        rbatch_free(&b);
        free(ms);
        at_nlu_model_free(m);
        return cli_fail(CLI_EXIT_FAIL, CMD, "out of memory");
    }
    b.lambda = cfg.lambda_max;
    b.lr = cfg.lr;
    b.training = !infer;
    at_val fetch[2] = {net->eval->intent_logits, net->eval->slot_logits};
    rc = CLI_EXIT_OK;
    for (int64_t it = 0; it < warmup + steps && rc == CLI_EXIT_OK; it++) {
        rbatch_fill(&b, B, &rng, nw, nc, nsl, ni);
        at_feed feeds[12];
        at_tensor out[2];
        if (it == warmup) at_session_profile_reset(s);
        double t0 = now_ms();
        if (infer) {
            int nf = make_feeds(net, &b, false, feeds);
            st = at_session_run(s, feeds, nf, fetch, 2, out, NULL, 0);
        } else {
            int nf = make_feeds(net, &b, true, feeds);
            st = AT_OK;
            for (int d = 0; d < d_steps && !st; d++)
                st = at_session_run(s, feeds, nf, &dstep->loss, 1, out, dstep->updates, dstep->n);
            if (!st) st = at_session_run(s, feeds, nf, &main->loss, 1, out, main->updates, main->n);
        }
        double dt = now_ms() - t0;
        if (st) {
            rc = cli_fail(cli_exit_for_work(st), CMD, "%s", at_session_error(s));
            break;
        }
        if (it >= warmup) ms[it - warmup] = dt;
    }
    if (rc == CLI_EXIT_OK) {
        double mean = 0;
        for (int64_t i = 0; i < steps; i++) mean += ms[i] / (double)steps;
        qsort(ms, (size_t)steps, sizeof *ms, cmp_double);
        double med = steps % 2 ? ms[steps / 2] : 0.5 * (ms[steps / 2 - 1] + ms[steps / 2]);
        const char *unit = infer ? "sentence" : "step";
        printf("{\"ms_per_%s_median\":%.4f,\"ms_per_%s_min\":%.4f,\"ms_per_%s_mean\":%.4f,"
               "\"peak_rss_mb\":%.1f,\"mode\":\"%s\",",
               unit, med, unit, ms[0], unit, mean, peak_rss_mb(), infer ? "infer" : "train");
        if (!infer)
            printf("\"step\":\"%s\",\"d_steps\":%d,\"batch\":%lld,\"rows\":%lld,", step_kind,
                   d_steps, (long long)B, (long long)rows);
        at_session_stats ss = at_session_get_stats(s);
        printf("\"seq\":%lld,\"warmup\":%lld,\"steps\":%lld,\"threads\":%lld,\"device\":\"%s\","
               "\"encoder\":\"%s\",\"layers\":%d,\"d_model\":%d,\"generator\":%s,\"adv\":\"%s\","
               "\"params\":%lld,\"words\":%lld,\"slot_labels\":%lld,\"intents\":%lld,"
               "\"arena_mb\":%.1f}\n",
               (long long)seq, (long long)warmup, (long long)steps, (long long)threads, device,
               cfg.encoder == AT_NLU_BILSTM ? "bilstm" : "transformer", cfg.layers, cfg.d_model,
               cfg.use_g ? "true" : "false",
               cfg.adv == AT_NLU_ADV_GAN   ? "gan"
               : cfg.adv == AT_NLU_ADV_GRL ? "grl"
                                           : "none",
               (long long)at_nlu_model_num_params(m, ~0u), (long long)nw, (long long)nsl,
               (long long)ni, (double)ss.arena_bytes / (1024.0 * 1024.0));
        if (profile && at_session_profile_write(s, stderr, 15))
            rc = cli_fail(CLI_EXIT_FAIL, CMD, "out of memory");
    }
    rbatch_free(&b);
    free(ms);
    at_nlu_model_free(m);
    return rc;
}
