/* Internal: what the model object and trainer (models/nlu_model.c, models/trainer.c) need from
 * the graph side (models/joint_nlu.c and the parts). */
#ifndef ATTUNE_MODELS_NLU_MODEL_H
#define ATTUNE_MODELS_NLU_MODEL_H

#include "attune/graph.h"
#include "attune/metrics.h"
#include "attune/nlu.h"

typedef struct nlu_sizes {
    int64_t words, chars, slots, intents;
} nlu_sizes;

/* Builds the whole training graph into g (an empty graph) and fills net. On error the graph
 * holds the message. */
at_status nlu_build(at_graph *g, const at_nlu_config *cfg, const nlu_sizes *sz, at_nlu_net *net);
void nlu_net_free(at_nlu_net *net);

/* After the graph's parameter buffers were written (best-model restore), makes the session
 * see them: a device session is started afresh (sync it before writing the buffers, so the
 * optimizer state is current), keeping its step. The session pointer may change. */
at_status nlu_model_params_changed(at_nlu_model *m, at_err *e);

/* Where training stands, in full: what a checkpoint carries besides the graph's values so that
 * a resumed run takes exactly the steps and selects exactly the model an uninterrupted run
 * would. The trainer keeps it current after every step and at every epoch end; the model
 * object owns it, so a checkpoint written from a progress callback holds it, and
 * at_nlu_checkpoint_load restores it. */
enum { NLU_LOSSES = 6, NLU_MAX_UNL = 2 };
typedef struct nlu_train_state {
    bool valid;         /* set by a trainer or a checkpoint */
    int phase, epoch;   /* the epoch in progress (1-based) or just finished */
    int64_t batch;      /* batches of it done */
    bool epoch_done;    /* its evaluation and selection are done too */
    int64_t done;       /* steps done in the phase (the lambda_p schedule) */
    int64_t global;     /* steps done over all runs */
    uint64_t sess_step; /* the session's step (dropout and word-dropout streams) */
    float lambda;       /* lambda_p of the last step */
    double loss_sum[NLU_LOSSES];
    int64_t loss_cnt[NLU_LOSSES];
    int next_unl; /* which unlabelled source feeds next */
    int64_t unl_next[NLU_MAX_UNL], unl_round[NLU_MAX_UNL];
    int bad_epochs; /* early stopping */
    bool have_best;
    int best_phase, best_epoch;
    at_metrics_summary best_sum;
    float *best; /* the best parameters so far, at_graph_params(~0u) order, or NULL */
    int64_t best_numel;
} nlu_train_state;

/* Starts the session afresh with at_session_opts.check_finite on or off, keeping its step. */
at_status nlu_model_check_finite(at_nlu_model *m, bool on, at_err *e);
bool nlu_model_checks_finite(const at_nlu_model *m);

/* The model's training state (never NULL). */
nlu_train_state *nlu_model_train_state(at_nlu_model *m);
/* save: the graph's parameters into the state's best copy (allocated on first use); else the
 * best copy back into the graph. */
at_status nlu_best_copy(at_nlu_model *m, bool save, at_err *e);
/* Frees the best-parameter buffer and clears the state. */
void nlu_train_state_clear(nlu_train_state *ts);

#endif
