/* A non-finite loss stops training with a message that names the first node that produced a
 * non-finite value, found by running the epoch again with the session's check on, and leaves the
 * parameters finite (as they were before the failing step).
 *
 * The fault: the embedding row of a rare word ("blues", 3 of 1500 training sentences) is set to
 * +-3e38, finite but so large that the products it enters overflow, so the loss turns
 * non-finite only at the first batch that holds the word, well inside the epoch (the trace then
 * replays the batches before it). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attune/dataset.h"
#include "attune/nlu.h"
#include "check.h"

typedef struct seen {
    int64_t steps;
} seen;

static bool on_progress(const at_nlu_progress *p, void *user) {
    if (!p->epoch_end) ((seen *)user)->steps = p->global_step;
    return true;
}

static at_nlu_config tiny(void) {
    at_nlu_config c = at_nlu_config_default();
    c.encoder = AT_NLU_BILSTM;
    c.layers = 1;
    c.emb_dim = 8;
    c.d_model = 8;
    c.attn_dim = 8;
    c.use_g = false;
    c.adv = AT_NLU_ADV_NONE;
    c.batch = 16;
    c.epochs[0] = 2;
    c.seed = 3;
    return c;
}

static bool all_finite(at_nlu_model *m) {
    at_graph *g = at_nlu_model_graph(m);
    for (at_val v = 0; v < at_graph_num_values(g); v++) {
        if (at_value_kind_of(g, v) != AT_VALUE_PARAM || at_value_dtype(g, v) != AT_F32) continue;
        at_shape sh = at_value_shape(g, v);
        const float *x = at_value_data(g, v);
        for (int64_t i = 0; i < at_shape_numel(&sh); i++)
            if (!isfinite(x[i])) return false;
    }
    return true;
}

int main(void) {
    const char *src = getenv("ATTUNE_SRC");
    char path[1024];
    at_err e = {0};
    at_split *train = NULL, *valid = NULL;
    snprintf(path, sizeof path, "%s/data/sample/train", src ? src : "..");
    CHECK_OK(at_dataset_split(&train, path, &e));
    snprintf(path, sizeof path, "%s/data/sample/valid", src ? src : "..");
    CHECK_OK(at_dataset_split(&valid, path, &e));
    at_nlu_config cfg = tiny();
    at_nlu_model *m = NULL;
    if (train) CHECK_OK(at_nlu_model_from_split(&m, &cfg, train, &e));
    if (!m) return check_done("test_nlu_nonfinite");

    at_session_opts so = at_session_defaults();
    so.threads = 1;
    CHECK_OK(at_nlu_model_set_session(m, &so, &e));
    at_graph *g = at_nlu_model_graph(m);
    at_val emb = at_graph_find(g, "enc.word_emb");
    int32_t w = at_vocab_find(at_nlu_model_vocab(m)->words, "blues");
    CHECK(emb != AT_NONE && w > 0, "the embedding and the word exist");
    if (emb != AT_NONE && w > 0) {
        at_shape sh = at_value_shape(g, emb);
        float *row = (float *)at_value_data(g, emb) + (int64_t)w * sh.dim[1];
        for (int64_t i = 0; i < sh.dim[1]; i++) row[i] = i % 2 ? 3e38f : -3e38f;
    }

    at_nlu_train_opts o = at_nlu_train_defaults();
    seen s = {0};
    o.progress = on_progress;
    o.user = &s;
    at_nlu_train_result r;
    at_status st = at_nlu_train(m, train, valid, NULL, &o, &r, &e);
    printf("after %lld good steps: %s\n", (long long)s.steps, e.msg);
    CHECK(st == AT_E_NUMERIC, "training stops with AT_E_NUMERIC (got %d)", (int)st);
    CHECK(strstr(e.msg, "loss_task is ") != NULL, "the message says which loss: %s", e.msg);
    CHECK(strstr(e.msg, "the first non-finite value: node '") != NULL,
          "the message names the first node, found at the failing step: %s", e.msg);
    CHECK(strstr(e.msg, "(AdamW)") == NULL && strstr(e.msg, "Grad") == NULL,
          "the first non-finite value is in the forward pass, not in an update: %s", e.msg);
    char want[64];
    snprintf(want, sizeof want, "(step %lld)", (long long)s.steps + 1);
    CHECK(strstr(e.msg, want) != NULL, "the message names the failing step %s", want);
    CHECK(s.steps > 0, "the fault lies inside the epoch (%lld good steps before it)",
          (long long)s.steps);
    CHECK(all_finite(m), "the other parameters are still finite after the stop");
    at_nlu_model_free(m);
    at_split_free(train);
    at_split_free(valid);
    return check_done("test_nlu_nonfinite");
}
