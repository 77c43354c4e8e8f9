/* Exact resume through the library API: a run stopped at a step (from its progress callback,
 * right after writing a checkpoint there) and continued with at_nlu_train_opts.resume from
 * that checkpoint must end with the same parameters, bit for bit, and select the same model as
 * an uninterrupted run. The stop points cover the middle of an epoch, an epoch's end, each
 * phase, and the step after a phase boundary (where the best model so far was restored); the
 * config has G and D on (gan), early stopping and half the labels (so the unlabelled stream
 * feeds D and its position matters). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attune/dataset.h"
#include "attune/nlu.h"
#include "check.h"

typedef struct stopper {
    int64_t at;  /* stop after this global step (-1: never) */
    bool at_end; /* stop at that step's epoch-end call instead */
    const char *ckpt;
    at_nlu_model *m;
    bool saved;
    at_err e;
} stopper;

/* What the uninterrupted run saw: where epochs end and phases start. */
typedef struct recorder {
    int64_t first_epoch_end, first_of_phase[3], mid_phase2;
} recorder;

static bool on_record(const at_nlu_progress *p, void *user) {
    recorder *r = user;
    if (p->epoch_end && r->first_epoch_end < 0) r->first_epoch_end = p->global_step;
    if (!p->epoch_end && r->first_of_phase[p->phase] < 0)
        r->first_of_phase[p->phase] = p->global_step;
    if (!p->epoch_end && p->phase == 2 && p->epoch == 2 && p->step == 2)
        r->mid_phase2 = p->global_step;
    return true;
}

static bool on_progress(const at_nlu_progress *p, void *user) {
    stopper *s = user;
    if (s->at < 0 || p->global_step != s->at || p->epoch_end != s->at_end) return true;
    at_checkpoint_info info = {.phase = p->phase, .epoch = p->epoch};
    s->saved = at_nlu_checkpoint_save(s->m, &info, s->ckpt, &s->e) == AT_OK;
    return false;
}

static at_nlu_config tiny_config(void) {
    at_nlu_config c = at_nlu_config_default();
    c.encoder = AT_NLU_BILSTM;
    c.layers = 1;
    c.emb_dim = 8;
    c.d_model = 8;
    c.attn_dim = 8;
    c.g_dim = 8;
    c.g_heads = 2;
    c.d_channels = 4;
    c.d_hidden = 4;
    c.use_g = true;
    c.adv = AT_NLU_ADV_GAN;
    c.batch = 16;
    c.epochs[0] = 3;
    c.epochs[1] = 2;
    c.epochs[2] = 3;
    c.patience = 2;
    c.label_fraction = 0.5f;
    c.word_dropout = 0.05f;
    c.seed = 11;
    return c;
}

/* All parameter and optimizer-state bytes of m, concatenated. */
static char *values_of(at_nlu_model *m, size_t *len) {
    at_graph *g = at_nlu_model_graph(m);
    size_t cap = 0;
    for (int pass = 0; pass < 2; pass++) {
        char *buf = pass ? malloc(cap ? cap : 1) : NULL;
        if (pass && !buf) return NULL;
        size_t k = 0;
        for (at_val v = 0; v < at_graph_num_values(g); v++) {
            at_value_kind kind = at_value_kind_of(g, v);
            if (kind != AT_VALUE_PARAM && kind != AT_VALUE_STATE) continue;
            at_shape sh = at_value_shape(g, v);
            size_t n = (size_t)at_shape_numel(&sh) * at_dtype_size(at_value_dtype(g, v));
            if (pass) memcpy(buf + k, at_value_data(g, v), n);
            k += n;
        }
        if (!pass) cap = k;
        if (pass) {
            *len = k;
            return buf;
        }
    }
    return NULL;
}

typedef struct splits {
    at_split *train, *valid;
} splits;

static bool read_splits(const char *dir, splits *s, at_err *e) {
    char path[1024];
    snprintf(path, sizeof path, "%s/train", dir);
    if (at_dataset_split(&s->train, path, e)) return false;
    snprintf(path, sizeof path, "%s/valid", dir);
    return at_dataset_split(&s->valid, path, e) == AT_OK;
}

static at_status train(at_nlu_model *m, const char *dir, bool resume, at_nlu_progress_fn fn,
                       void *user, at_nlu_train_result *res, at_err *e) {
    splits s = {0};
    at_status rc = read_splits(dir, &s, e) ? AT_OK : AT_E_IO;
    if (!rc) {
        at_session_opts so = at_session_defaults();
        so.threads = 1;
        rc = at_nlu_model_set_session(m, &so, e);
    }
    at_nlu_train_opts o = at_nlu_train_defaults();
    o.resume = resume;
    o.progress = fn;
    o.user = user;
    if (!rc) rc = at_nlu_train(m, s.train, s.valid, NULL, &o, res, e);
    at_split_free(s.train);
    at_split_free(s.valid);
    return rc;
}

int main(void) {
    const char *src = getenv("ATTUNE_SRC");
    char dir[1024], ckpt[] = "/tmp/attune_test_resume_XXXXXX";
    snprintf(dir, sizeof dir, "%s/data/sample", src ? src : "..");
    int fd = mkstemp(ckpt);
    CHECK(fd >= 0, "temporary file");
    if (fd >= 0) close(fd);
    at_err e = {0};
    at_nlu_config cfg = tiny_config();
    splits s = {0};
    CHECK(read_splits(dir, &s, &e), "read %s: %s", dir, e.msg);
    at_split *train0 = s.train;
    at_split_free(s.valid);

    /* The uninterrupted run. */
    at_nlu_model *ref = NULL;
    at_nlu_train_result rref = {0};
    recorder rec = {-1, {-1, -1, -1}, -1};
    CHECK_OK(at_nlu_model_from_split(&ref, &cfg, train0, &e));
    size_t nref = 0;
    char *vref = NULL;
    if (ref) {
        CHECK_OK(train(ref, dir, false, on_record, &rec, &rref, &e));
        vref = values_of(ref, &nref);
        printf("uninterrupted: %lld steps, epochs %d/%d/%d, best phase %d epoch %d\n",
               (long long)rref.steps, rref.epochs_run[0], rref.epochs_run[1], rref.epochs_run[2],
               rref.best_phase, rref.best_epoch);
    }

    /* Resuming needs a training state. */
    at_nlu_model *fresh = NULL;
    CHECK_OK(at_nlu_model_from_split(&fresh, &cfg, train0, &e));
    if (fresh) {
        at_nlu_train_result r;
        at_err e2 = {0};
        CHECK(train(fresh, dir, true, NULL, NULL, &r, &e2) == AT_E_INVALID &&
                  strstr(e2.msg, "state"),
              "resume without a training state is refused (%s)", e2.msg);
    }
    at_nlu_model_free(fresh);

    /* Each stop point: train to it (checkpoint, stop), load, resume, compare. */
    CHECK(rec.first_epoch_end > 2 && rec.first_of_phase[1] > 0 && rec.first_of_phase[2] > 0 &&
              rec.mid_phase2 > 0,
          "the reference run has three phases and phase 2 a second epoch");
    const struct {
        int64_t at;
        bool at_end;
    } stops[] = {{2, false},
                 {rec.first_epoch_end, true},
                 {rec.first_of_phase[1], false},
                 {rec.first_of_phase[2], false},
                 {rec.mid_phase2, false}};
    for (size_t i = 0; ref && i < sizeof stops / sizeof *stops; i++) {
        at_nlu_model *m = NULL, *r = NULL;
        CHECK_OK(at_nlu_model_from_split(&m, &cfg, train0, &e));
        if (!m) break;
        stopper st = {.at = stops[i].at, .at_end = stops[i].at_end, .ckpt = ckpt, .m = m};
        at_nlu_train_result r1, r2;
        CHECK_OK(train(m, dir, false, on_progress, &st, &r1, &e));
        CHECK(st.saved, "stop %zu: checkpoint at step %lld written (%s)", i, (long long)st.at,
              st.e.msg);
        at_nlu_model_free(m);
        at_checkpoint_info info;
        CHECK_OK(at_nlu_checkpoint_load(&r, &info, ckpt, &e));
        if (!r) continue;
        CHECK_OK(train(r, dir, true, NULL, NULL, &r2, &e));
        size_t n = 0;
        char *v = values_of(r, &n);
        CHECK(v && vref && n == nref && !memcmp(v, vref, n),
              "stop %zu (step %lld%s, phase %d): resumed parameters and optimizer state equal "
              "the uninterrupted run's",
              i, (long long)stops[i].at, stops[i].at_end ? ", epoch end" : "", (int)info.phase);
        CHECK(r2.best_phase == rref.best_phase && r2.best_epoch == rref.best_epoch &&
                  r2.best_valid.slots.f1 == rref.best_valid.slots.f1,
              "stop %zu: the same model is selected (phase %d epoch %d vs %d %d)", i, r2.best_phase,
              r2.best_epoch, rref.best_phase, rref.best_epoch);
        CHECK(r1.steps + r2.steps == rref.steps, "stop %zu: %lld + %lld steps = %lld", i,
              (long long)r1.steps, (long long)r2.steps, (long long)rref.steps);
        free(v);
        at_nlu_model_free(r);
    }
    free(vref);
    at_nlu_model_free(ref);
    at_split_free(train0);
    remove(ckpt);
    return check_done("test_nlu_resume");
}
