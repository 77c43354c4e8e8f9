/* End-to-end training of the joint NLU model through the library API (what `attune train`
 * and `attune eval` call): a short run on the project's sample corpus (data/sample) must reach
 * a stated test accuracy in seconds; then the same with G and D in gan mode at a 20 % label
 * fraction (all three phases, unlabelled batches, JSON lines, progress callbacks, model
 * selection); and, where ../shared/data/snips exists, a run on a small SNIPS subset.
 *
 * Arguments key=value override the config (for experiments); "snips=DIR" points at SNIPS. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attune/dataset.h"
#include "attune/metrics.h"
#include "attune/nlu.h"
#include "check.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One thread: these models are small, and on a shared 2-core machine a second OpenMP thread
 * spinning at every barrier costs more than it gives. */
static int g_threads = 1;

typedef struct counts {
    int steps, epochs;
    double last_loss_task;
} counts;

static bool on_progress(const at_nlu_progress *p, void *user) {
    counts *c = user;
    if (p->valid) {
        c->epochs++;
        printf("  phase %d epoch %d/%d: %lld steps, loss_task %.4f loss_d %.4f loss_adv %.4f "
               "lambda %.4f | valid intent %.4f slot F1 %.4f sentence %.4f%s (%.1f s)\n",
               p->phase, p->epoch, p->epochs, (long long)p->steps, p->loss_task, p->loss_d,
               p->loss_adv, p->lambda, p->valid->intent_acc, p->valid->slots.f1,
               p->valid->sentence_acc, p->improved ? " *" : "", p->elapsed_s);
        fflush(stdout);
    } else {
        c->steps++;
        c->last_loss_task = p->loss_task;
    }
    return true;
}

typedef struct run_result {
    at_metrics_summary test;
    at_nlu_train_result tr;
    double seconds;
    counts cnt;
} run_result;

/* Trains on dir/train (valid: dir/valid), evaluates on dir/test. */
static bool train_eval(const char *dir, const at_nlu_config *cfg, FILE *metrics, run_result *r) {
    char path[1024];
    at_err e = {0};
    at_split *train = NULL, *valid = NULL, *test = NULL;
    memset(r, 0, sizeof *r);
    snprintf(path, sizeof path, "%s/train", dir);
    CHECK_OK(at_dataset_split(&train, path, &e));
    snprintf(path, sizeof path, "%s/valid", dir);
    CHECK_OK(at_dataset_split(&valid, path, &e));
    snprintf(path, sizeof path, "%s/test", dir);
    CHECK_OK(at_dataset_split(&test, path, &e));
    if (!train || !valid || !test) {
        fprintf(stderr, "%s\n", e.msg);
        return false;
    }
    double t0 = now_s();
    at_nlu_model *m = NULL;
    at_status st = at_nlu_model_from_split(&m, cfg, train, &e);
    CHECK(st == AT_OK, "model: %s", e.msg);
    bool ok = false;
    if (m) {
        at_session_opts so = at_session_defaults();
        so.threads = g_threads;
        CHECK_OK(at_nlu_model_set_session(m, &so, &e));
        printf("model: %lld parameters (encoder %lld, decoders %lld, G %lld, D %lld)\n",
               (long long)at_nlu_model_num_params(m, ~0u),
               (long long)at_nlu_model_num_params(m, 1u << AT_NLU_G_ENCODER),
               (long long)at_nlu_model_num_params(m, 1u << AT_NLU_G_DECODERS),
               (long long)at_nlu_model_num_params(m, 1u << AT_NLU_G_GENERATOR),
               (long long)at_nlu_model_num_params(m, 1u << AT_NLU_G_DISCRIMINATOR));
        at_nlu_train_opts o = at_nlu_train_defaults();
        o.progress = on_progress;
        o.user = &r->cnt;
        o.metrics = metrics;
        st = at_nlu_train(m, train, valid, NULL, &o, &r->tr, &e);
        CHECK(st == AT_OK, "train: %s", e.msg);
        at_metrics *mt = NULL;
        CHECK_OK(at_metrics_new(&mt, &e));
        st = at_nlu_evaluate(m, test, mt, &r->test, &e);
        CHECK(st == AT_OK, "evaluate: %s", e.msg);
        ok = st == AT_OK;
        r->seconds = now_s() - t0;
        printf("test: intent %.4f slot F1 %.4f sentence %.4f; %lld steps, best phase %d epoch "
               "%d, %.1f s\n",
               r->test.intent_acc, r->test.slots.f1, r->test.sentence_acc, (long long)r->tr.steps,
               r->tr.best_phase, r->tr.best_epoch, r->seconds);
        if (ok) {
            /* Prediction agrees with evaluation and carries attention weights. */
            at_nlu_pred p;
            st = at_nlu_predict_text(m, "wake me up at seven", &p, &e);
            CHECK(st == AT_OK && p.n == 5 && p.slots && p.attn_intent, "predict one sentence: %s",
                  e.msg);
            if (st == AT_OK) {
                double sum = 0;
                for (int64_t t = 0; t < p.n; t++) sum += p.attn_intent[t];
                CHECK(fabs(sum - 1) < 1e-4, "intent attention sums to 1 (%g)", sum);
                CHECK((p.s_intent != NULL) == cfg->use_g, "s fetched where G is on");
                const at_nlu_vocab *v = at_nlu_model_vocab(m);
                printf("predict 'wake me up at seven': %s (%.3f):",
                       at_vocab_str(v->intents, p.intent), p.intent_prob);
                for (int64_t t = 0; t < p.n; t++) printf(" %s", at_vocab_str(v->slots, p.slots[t]));
                printf("\n");
            }
            at_nlu_pred_free(&p);
        }
        at_metrics_free(mt);
        at_nlu_model_free(m);
    }
    at_split_free(train);
    at_split_free(valid);
    at_split_free(test);
    return ok;
}

/* A small, fast config for the sample corpus. */
static at_nlu_config sample_config(void) {
    at_nlu_config c = at_nlu_config_default();
    c.encoder = AT_NLU_BILSTM;
    c.layers = 1;
    c.emb_dim = 32;
    c.d_model = 64;
    c.attn_dim = 32;
    c.use_g = false;
    c.adv = AT_NLU_ADV_NONE;
    c.dropout = 0.1f;
    c.epochs[0] = 8;
    c.batch = 32;
    c.lr = 1e-2f;
    return c;
}

int main(int argc, char **argv) {
    const char *src = getenv("ATTUNE_SRC");
    char sample[1024], snips[1024];
    snprintf(sample, sizeof sample, "%s/data/sample", src ? src : "..");
    snprintf(snips, sizeof snips, "%s/../shared/data/snips", src ? src : "..");
    at_nlu_config cfg = sample_config();
    at_err e = {0};
    bool custom = false;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        char key[128];
        const char *eq = strchr(argv[i], '=');
        if (!eq || (size_t)(eq - argv[i]) >= sizeof key) {
            fprintf(stderr,
                    "usage: test_nlu_train [key=value ...] [snips=DIR] [only=base|gan|snips]\n");
            return 2;
        }
        memcpy(key, argv[i], (size_t)(eq - argv[i]));
        key[eq - argv[i]] = 0;
        if (!strcmp(key, "snips"))
            snprintf(snips, sizeof snips, "%s", eq + 1);
        else if (!strcmp(key, "only"))
            only = eq + 1;
        else if (!strcmp(key, "threads"))
            g_threads = atoi(eq + 1);
        else if (at_nlu_config_set(&cfg, key, eq + 1, &e)) {
            fprintf(stderr, "%s\n", e.msg);
            return 2;
        } else
            custom = true;
    }
    run_result r;

    /* 1. The base system (G off) on the sample corpus. */
    if (!only || !strcmp(only, "base")) {
        printf("== sample corpus, base system\n");
        if (train_eval(sample, &cfg, NULL, &r) && !custom) {
            /* Measured (seed 1, one thread): intent 1.000, slot F1 0.958, sentence 0.915. */
            CHECK(r.test.intent_acc >= 0.97, "sample intent accuracy %.4f >= 0.97",
                  r.test.intent_acc);
            CHECK(r.test.slots.f1 >= 0.92, "sample slot F1 %.4f >= 0.92", r.test.slots.f1);
            CHECK(r.test.sentence_acc >= 0.85, "sample sentence accuracy %.4f >= 0.85",
                  r.test.sentence_acc);
            CHECK(r.seconds < 60, "sample run took %.1f s (< 60 s)", r.seconds);
            CHECK(r.cnt.epochs == r.tr.epochs_run[0] && r.cnt.steps == r.tr.steps,
                  "progress called per step and per epoch");
        }
    }

    /* 2. gan mode, all three phases, 20 % of the labels, the rest unlabelled. */
    if (!only || !strcmp(only, "gan")) {
        printf("== sample corpus, gan, label fraction 0.2\n");
        at_nlu_config c = cfg;
        if (!custom) {
            c.use_g = true;
            c.adv = AT_NLU_ADV_GAN;
            c.g_dim = 32;
            c.g_heads = 2;
            c.d_channels = 16;
            c.d_hidden = 16;
            c.label_fraction = 0.2f;
            c.epochs[0] = 20;
            c.epochs[1] = 1;
            c.epochs[2] = 3;
        }
        char path[] = "/tmp/attune_test_nlu_train_XXXXXX";
        FILE *jl = NULL;
        int fd = mkstemp(path);
        if (fd >= 0) jl = fdopen(fd, "w+");
        if (train_eval(sample, &c, jl, &r) && !custom) {
            /* Measured: intent 0.990, slot F1 0.881, sentence 0.745. */
            CHECK(r.test.intent_acc >= 0.95, "gan 20%% intent accuracy %.4f >= 0.95",
                  r.test.intent_acc);
            CHECK(r.test.slots.f1 >= 0.83, "gan 20%% slot F1 %.4f >= 0.83", r.test.slots.f1);
            CHECK(r.tr.epochs_run[1] == 1 && r.tr.epochs_run[2] >= 1, "phases 1 and 2 ran");
            CHECK(isfinite(r.tr.last_loss_d) && r.tr.last_loss_d > 0, "D trained (L_D %.4f)",
                  r.tr.last_loss_d);
            printf("L_D at the end: %.4f (chance: 2 ln 2 = %.4f)\n", r.tr.last_loss_d,
                   2 * log(2.0));
        }
        if (jl) {
            rewind(jl);
            char line[1024];
            int n = 0, with_d = 0;
            while (fgets(line, sizeof line, jl)) {
                n++;
                with_d += strstr(line, "\"loss_d\":") != NULL;
                CHECK(line[0] == '{' && strstr(line, "\"valid_slot_f1\":"), "JSON line: %s", line);
            }
            CHECK(n == r.tr.epochs_run[0] + r.tr.epochs_run[1] + r.tr.epochs_run[2],
                  "one JSON line an epoch (%d)", n);
            CHECK(with_d == r.tr.epochs_run[1] + r.tr.epochs_run[2], "L_D logged in phases 1-2");
            fclose(jl);
            remove(path);
        }
    }

    /* 3. A small SNIPS subset, where the data is there. */
    if ((!only || !strcmp(only, "snips"))) {
        char probe[1100];
        snprintf(probe, sizeof probe, "%s/train/label", snips);
        FILE *f = fopen(probe, "r");
        if (!f) {
            printf("== SNIPS not found at %s: skipped\n", snips);
        } else {
            fclose(f);
            /* 15 % of the labels (about 2000 sentences); with G and D off the rest is unused. */
            printf("== SNIPS, 15 %% of the training split\n");
            at_nlu_config c = cfg;
            if (!custom) c.epochs[0] = 5, c.label_fraction = 0.15f;
            if (train_eval(snips, &c, NULL, &r) && !custom) {
                /* Measured: intent 0.951, slot F1 0.560, sentence 0.283. */
                CHECK(r.test.intent_acc >= 0.92, "SNIPS subset intent accuracy %.4f >= 0.92",
                      r.test.intent_acc);
                CHECK(r.test.slots.f1 >= 0.50, "SNIPS subset slot F1 %.4f >= 0.50",
                      r.test.slots.f1);
            }
        }
    }
    return check_done("test_nlu_train");
}
