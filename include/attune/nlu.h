/* The joint NLU model of DESIGN.md section 6 (intent classification + slot filling with
 * GAN-driven attention weighting) and its trainer.
 *
 * A model is one training graph built once from a config and the vocabularies: the encoder,
 * the generator G, the two attention components with their decoders, the discriminator D,
 * the losses, and one update set (gradients, clipping, AdamW) per training step kind. Every
 * run names the outputs and update set it needs, so the same graph serves the D step, the
 * combined step, each phase and evaluation; the session re-plans only for new (B, T).
 *
 * Parameter groups: AT_NLU_G_ENCODER (embeddings + encoder), AT_NLU_G_DECODERS,
 * AT_NLU_G_GENERATOR, AT_NLU_G_DISCRIMINATOR.
 *
 * Adversarial tools of DESIGN.md section 6.1 on x, the encoder's input vectors: the FGSM attack
 * of evaluation (at_nlu_evaluate_fgsm), adversarial training and VAT (config adv_train, vat: a
 * part of every step's loss), and hard attention (attn1_hard, attn2_hard). A perturbed forward
 * is the same graph code on x + delta: shared weights, and the clean forward's dropout masks
 * and Gumbel noise replayed, so delta is its only difference.
 *
 * Typical use (what `attune build/train/eval/predict` do):
 *
 *     at_nlu_config cfg = at_nlu_config_default();
 *     at_nlu_config_set(&cfg, "encoder", "bilstm", &e);
 *     at_nlu_model *m;
 *     at_nlu_model_from_split(&m, &cfg, train, &e);   // vocabularies from the training split
 *     at_nlu_train(m, train, valid, NULL, &opts, &res, &e);
 *     at_nlu_evaluate(m, test, metrics, NULL, &e);
 *     at_nlu_save(m, "trained.onnx", &e);
 */
#ifndef ATTUNE_NLU_H
#define ATTUNE_NLU_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "attune/dataset.h"
#include "attune/graph.h"
#include "attune/io.h"
#include "attune/metrics.h"
#include "attune/session.h"
#include "attune/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Configuration: one struct describes a variant; its text form is stored in model files. */

typedef enum at_nlu_encoder_kind {
    AT_NLU_TRANSFORMER = 0, /* pre-LN, multi-head self-attention, GELU FFN, learned positions */
    AT_NLU_BILSTM = 1,      /* ONNX LSTM, bidirectional, d/2 a direction */
} at_nlu_encoder_kind;

typedef enum at_nlu_attn_kind {
    AT_NLU_ATTN_ADDITIVE = 0,     /* v . tanh(W1 q + W2 k) */
    AT_NLU_ATTN_GENERAL = 1,      /* q^T W k ("multiplicative") */
    AT_NLU_ATTN_DOT = 2,          /* q^T k */
    AT_NLU_ATTN_SCALED_DOT = 3,   /* q^T k / sqrt(d) */
    AT_NLU_ATTN_MULTIHEAD = 4,    /* multi-head scaled dot with projections */
    AT_NLU_ATTN_KEY_VALUE = 5,    /* states split into key and value halves; scaled dot */
    AT_NLU_ATTN_NEG_DISTANCE = 6, /* -||q - k||^2 / sqrt(d) */
} at_nlu_attn_kind;

typedef enum at_nlu_adv_mode {
    AT_NLU_ADV_NONE = 0, /* no discriminator */
    AT_NLU_ADV_GAN = 1,  /* alternate D steps and combined steps */
    AT_NLU_ADV_GRL = 2,  /* one pass through a GradientReversal layer */
} at_nlu_adv_mode;

/* Adversarial training on the encoder's input vectors (DESIGN.md section 6.1). */
typedef enum at_nlu_adv_train {
    AT_NLU_ADV_TRAIN_NONE = 0,
    AT_NLU_ADV_TRAIN_FGSM = 1, /* J' = alpha J(x) + (1 - alpha) J(x + eps sign(grad_x J)) */
} at_nlu_adv_train;

typedef enum at_nlu_select {
    AT_NLU_SELECT_SENTENCE = 0, /* valid sentence accuracy, ties by slot F1 */
    AT_NLU_SELECT_SLOT_F1 = 1,  /* valid slot F1, ties by sentence accuracy */
    AT_NLU_SELECT_INTENT = 2,   /* valid intent accuracy, ties by slot F1 */
} at_nlu_select;

typedef struct at_nlu_config {
    /* encoder */
    at_nlu_encoder_kind encoder;
    int layers;        /* L */
    int emb_dim;       /* word embedding size */
    int d_model;       /* d: the size of every H_l */
    int heads;         /* transformer self-attention heads */
    int ffn_dim;       /* transformer feed-forward size; 0: 4 d */
    int max_positions; /* transformer: the longest sentence */
    int char_dim;      /* character embedding size; 0: no character features */
    int char_channels; /* char CNN filters (width 3), max-pooled and concatenated */
    /* generator */
    /* false: G off throughout (s = 1). With adv none that is the ablation baseline (phase 0
     * only); with adv gan/grl, D acts on the encoder and decoders directly. */
    bool use_g;
    int g_dim, g_layers, g_heads;
    /* attention components and decoders */
    at_nlu_attn_kind attn1, attn2; /* first (intent) and second (entity) component */
    int attn_dim;                  /* additive attention size; a_t size of the entity decoder */
    int attn_heads;                /* heads of the multi-head scoring */
    /* Hard attention (straight-through Gumbel-softmax) in the first / second component: the
     * forward is the one-hot of argmax(scores + Gumbel noise) over the real tokens (no noise in
     * evaluation), the backward the gradient of softmax(scores + noise). */
    bool attn1_hard, attn2_hard;
    bool slot_gate; /* Goo et al. (2018) slot gate from the intent context */
    /* A linear-chain CRF on the slot logits: the slot loss is its negative log-likelihood (mean
     * over labelled sentences) and slots are decoded by Viterbi (output slot_tags). */
    bool crf;
    /* discriminator and losses */
    at_nlu_adv_mode adv;
    bool d_soft;     /* false: hard one-hot + straight-through; true: smoothed gold vs softmax */
    int d_channels;  /* conv filters a width */
    int d_widths[4]; /* conv kernel widths (odd), n_d_widths of them; default 3, 5 */
    int n_d_widths;
    int d_hidden;     /* first FC size */
    int d_steps;      /* gan: D steps before each combined step */
    bool reg_l1;      /* false: L2, beta * mean((s-1)^2); true: L1 */
    float beta;       /* L_reg weight */
    float lambda_max; /* lambda_p = lambda_max * (2 / (1 + exp(-gamma p)) - 1) */
    float gamma;
    /* training */
    float dropout, word_dropout;
    int64_t word_min_count; /* rarer training words become <unk> */
    int64_t max_words;      /* cap on the word vocabulary, specials included; 0: none */
    int batch;
    float lr, weight_decay, clip;
    int epochs[3]; /* phase 0 (base, G off), 1 (G + D, encoder/decoders frozen), 2 (joint) */
    int patience;  /* epochs without a valid improvement before a phase stops; 0: never */
    at_nlu_select select;
    float label_fraction; /* keep the labels of this fraction of the training split */
    /* Adversarial examples and virtual adversarial training on x, the encoder's input vectors
     * (word embeddings, with the char CNN features where char_dim > 0), in every phase: */
    at_nlu_adv_train adv_train;
    float adv_eps;   /* FGSM step: eta = adv_eps * sign(grad_x L_task) (an L-inf radius) */
    float adv_alpha; /* J' = alpha L_task(x) + (1 - alpha) L_task(x + eta) */
    bool vat;        /* + vat_weight * KL(p(y|x) || p(y|x + r_vadv)), labelled and unlabelled */
    float vat_eps;   /* ||r_vadv|| per sentence (L2 over tokens and features) */
    float vat_xi;    /* the power iteration's probe size (survives float32 at ~1e-3) */
    float vat_weight;
    uint64_t seed; /* parameter init, label fraction, batch order, dropout */
} at_nlu_config;

/* DESIGN.md's starting hyperparameters: transformer, L = 2, embeddings 128, d = 256, G on
 * (d_g = 128, 1 layer, 4 heads), additive + additive attention, attention size 128, adv gan
 * (hard), D 64 channels a width, dropout 0.2, batch 32, AdamW lr 1e-3 wd 0.01, clip 5,
 * beta 0.01, lambda_max 0.1, gamma 10, epochs 20 / 3 / 10. */
at_nlu_config at_nlu_config_default(void);

/* Sets one field from text, by the key names of the text form below ("encoder" =
 * "transformer" | "bilstm"; "attn1"/"attn2" = "additive" | "general" (or "multiplicative") |
 * "dot" | "scaled_dot" | "multihead" | "key_value" | "neg_distance"; "adv" = "none" | "gan" |
 * "grl"; "d_input" = "hard" | "soft"; "reg" = "l2" | "l1"; "select" = "sentence" | "slot_f1"
 * | "intent"; booleans "true"/"false"/"1"/"0"; "epochs" = "20,3,10"; "d_widths" = "3,5").
 * Names match ignoring '-' and '_' ("scaled-dot", "multi-head", "key-value" work).
 * AT_E_INVALID naming the key for an unknown key or a bad value. */
at_status at_nlu_config_set(at_nlu_config *c, const char *key, const char *value, at_err *e);
/* Checks ranges and combinations (e.g. d_model divisible by heads). */
at_status at_nlu_config_check(const at_nlu_config *c, at_err *e);
/* Text form: "key=value\n" lines, every field, in a fixed order. *out is malloc'd. */
at_status at_nlu_config_to_string(const at_nlu_config *c, char **out, at_err *e);
/* Parses the text form on top of the defaults (missing keys keep their defaults). */
at_status at_nlu_config_from_string(at_nlu_config *c, const char *text, at_err *e);
const char *at_nlu_attn_name(at_nlu_attn_kind k);

/* lambda_p at training progress p in [0, 1]; the trainer runs p from 0 to 1 over each of the
 * adversarial phases 1 and 2. */
float at_nlu_lambda(const at_nlu_config *c, double p);

/* ------------------------------------------------------------------------------------------ */
/* The model. */

enum {
    AT_NLU_G_ENCODER = 0,
    AT_NLU_G_DECODERS = 1,
    AT_NLU_G_GENERATOR = 2,
    AT_NLU_G_DISCRIMINATOR = 3,
};

/* Step kinds, each an update set in the graph (absent ones have n == 0). */
typedef enum at_nlu_step {
    AT_NLU_STEP_BASE = 0, /* phase 0: L_task with G off, encoder + decoders */
    AT_NLU_STEP_P1 = 1,   /* phase 1 main step: G (+ D in grl); encoder, decoders frozen */
    AT_NLU_STEP_P2 = 2,   /* phase 2 main step: all but D (gan), all (grl) */
    AT_NLU_STEP_D = 3,    /* gan: L_D, D only */
    AT_NLU_STEP_COUNT = 4,
} at_nlu_step;

typedef struct at_nlu_update_set {
    int n;           /* params updated */
    at_val *params;  /* [n] */
    at_val *grads;   /* [n] gradients before clipping */
    at_val *updates; /* [n] AdamW outputs: the run targets */
    at_val loss;     /* the loss this set minimizes */
    at_val grad_norm;
} at_nlu_update_set;

/* One forward path: G off (s = 1) or G on. Values are AT_NONE where absent. */
typedef struct at_nlu_path {
    at_val s_intent, s_entity;  /* [B,T,d] */
    at_val r_intent, r_entity;  /* [B,T,d]: H_L weighted */
    at_val intent_logits;       /* [B, n_intents] */
    at_val slot_logits;         /* [B, T, n_slots] */
    at_val slot_tags;           /* crf: [B, T] int64 Viterbi tags (0 at padding) */
    at_val attn_intent;         /* [B, T] */
    at_val attn_entity;         /* [B, T, T]: row t holds token t's weights (multi-head: the
                                 * mean over heads) */
    at_val loss_task, loss_reg; /* scalars */
    at_val d_real, d_fake;      /* [B] D logits */
    at_val loss_d, loss_adv;    /* scalars */
    at_val loss_main;           /* what STEP_P1 / STEP_P2 minimize */
    /* Adversarial examples on x (the encoder's input vectors, net.emb). Every perturbed forward
     * shares the weights and replays the clean forward's dropout masks and Gumbel noise, so
     * the perturbation is its only difference. */
    at_val loss_obj;      /* L_task with the adversarial-training and VAT terms: what
                           * STEP_BASE minimizes and loss_main builds on */
    at_val adv_delta;     /* adv_train: eta = adv_eps sign(grad_x L_task) on real tokens */
    at_val loss_task_adv; /* adv_train: L_task(x + eta) */
    at_val vat_delta;     /* vat: r_vadv [B,T,in] */
    at_val loss_vat;      /* vat: KL(p(y|x) || p(y|x + r_vadv)), intent + mean over tokens */
    /* The FGSM attack (eval path only), on J = the sum over sentences of each sentence's own
     * L_task (its intent CE + the mean of its tokens' slot CE), so a sentence's perturbation
     * does not depend on the batch it is evaluated in: */
    at_val loss_sent;                                /* J at x */
    at_val emb_grad;                                 /* [B,T,in] grad_x J (gold labels) */
    at_val attack_delta;                             /* attack_eps sign(emb_grad) on real tokens */
    at_val attack_intent_logits, attack_slot_logits; /* the predictions at x + attack_delta */
    at_val attack_slot_tags;                         /* crf: Viterbi tags there */
    at_val loss_sent_attack;                         /* J there */
} at_nlu_path;

/* The values of the training graph, for the trainer, tests and advanced callers. */
typedef struct at_nlu_net {
    /* inputs */
    at_val tokens;     /* [B,T] int64 */
    at_val mask;       /* [B,T] float32: 1 token, 0 padding */
    at_val lengths;    /* [B] int64 (bilstm; AT_NONE for the transformer) */
    at_val chars;      /* [B,T,16] int64 (char_dim > 0) */
    at_val slots;      /* [B,T] int64, AT_IGNORE_INDEX where unlabelled or padding */
    at_val intents;    /* [B] int64, AT_IGNORE_INDEX where unlabelled */
    at_val lambda;     /* scalar: lambda_p (gan: weight of L_adv; grl: reversal scale) */
    at_val lr;         /* scalar */
    at_val training;   /* bool scalar: dropout on */
    at_val attack_eps; /* scalar: the FGSM attack's eps (eval path's attack_* values only) */
    at_val emb;        /* [B,T,in] x: the encoder's input vectors (before input dropout) */
    int64_t emb_dim;   /* in */
    /* encoder */
    int n_layers;
    at_val h[8];             /* H_1 .. H_L, [B,T,d] */
    at_nlu_path off;         /* G off: the base system (phase 0) */
    at_nlu_path on;          /* G on (use_g); .intent_logits == AT_NONE otherwise */
    const at_nlu_path *eval; /* the path for evaluation and the model file */
    at_nlu_update_set steps[AT_NLU_STEP_COUNT];
} at_nlu_net;

typedef struct at_nlu_model at_nlu_model;

/* Builds the model for cfg and the vocabularies (taken over: *vocab is zeroed on success and
 * freed with the model). Parameters are initialized from cfg->seed. */
at_status at_nlu_model_new(at_nlu_model **out, const at_nlu_config *cfg, at_nlu_vocab *vocab,
                           at_err *e);
/* The same with vocabularies built from a training split (word_min_count applied). */
at_status at_nlu_model_from_split(at_nlu_model **out, const at_nlu_config *cfg,
                                  const at_split *train, at_err *e);
void at_nlu_model_free(at_nlu_model *m);

const at_nlu_config *at_nlu_model_config(const at_nlu_model *m);
const at_nlu_vocab *at_nlu_model_vocab(const at_nlu_model *m);
at_graph *at_nlu_model_graph(at_nlu_model *m);
const at_nlu_net *at_nlu_model_net(const at_nlu_model *m);
/* Parameters (params of trainable groups) in the model. */
int64_t at_nlu_model_num_params(const at_nlu_model *m, uint32_t group_mask);

/* The session runs use (created on first use with opts, or defaults). Calling it again
 * replaces the session (e.g. another device or thread count). */
at_status at_nlu_model_set_session(at_nlu_model *m, const at_session_opts *opts, at_err *e);
at_session *at_nlu_model_session(at_nlu_model *m, at_err *e);

/* A model file: the inference graph (G on where use_g), weights, and metadata keys
 * "attune.nlu.config", "attune.nlu.words", "attune.nlu.chars", "attune.nlu.slots",
 * "attune.nlu.intents". at_nlu_load rebuilds the training graph from the config and
 * vocabularies and copies the weights by name, so a loaded model can be evaluated and trained
 * further (D, absent from a model file, starts afresh). */
at_status at_nlu_save(at_nlu_model *m, const char *path, at_err *e);
at_status at_nlu_load(at_nlu_model **out, const char *path, at_err *e);

/* A training checkpoint (io.h): the whole training graph with optimizer state and metadata;
 * loading rebuilds the model and copies every parameter and state value by name, so training
 * resumes exactly (feed info->step to at_session_set_step for the dropout stream). */
at_status at_nlu_checkpoint_save(at_nlu_model *m, const at_checkpoint_info *info, const char *path,
                                 at_err *e);
at_status at_nlu_checkpoint_load(at_nlu_model **out, at_checkpoint_info *info, const char *path,
                                 at_err *e);

/* ------------------------------------------------------------------------------------------ */
/* Training. */

typedef struct at_nlu_progress {
    int phase;           /* 0, 1, 2 */
    int epoch, epochs;   /* 1-based epoch within the phase, the phase's epoch budget */
    int64_t step, steps; /* 1-based step within the epoch, steps in the epoch */
    int64_t global_step; /* steps done so far, over the runs a resume continues */
    double elapsed_s;
    /* running means over the epoch so far (NaN where the phase has no such loss) */
    double loss_task, loss_d, loss_adv, loss_reg;
    double loss_task_adv, loss_vat; /* adv_train: L_task(x + eta); vat: the KL term */
    double lambda;
    /* at the end of an epoch: the valid metrics (NULL on other calls or without valid) */
    const at_metrics_summary *valid;
    bool improved;  /* this epoch is the best so far (end of epoch only) */
    bool epoch_end; /* this call reports an epoch's end (after its evaluation) */
} at_nlu_progress;

/* Return false to stop training (after the current step). */
typedef bool (*at_nlu_progress_fn)(const at_nlu_progress *p, void *user);

typedef struct at_nlu_train_opts {
    int first_phase, last_phase; /* inclusive, default 0 .. 2; phases with no work are skipped */
    /* Resuming (from at_nlu_checkpoint_load, after at_session_set_step with the checkpoint's
     * step): epochs of first_phase already done; the phase goes on from the next one, with
     * lambda_p where it was. */
    int start_epoch;
    /* Resume exactly where the checkpoint m was loaded from stood (at_nlu_checkpoint_load keeps
     * the trainer's state: phase, epoch, batch within it, the unlabelled stream, the losses so
     * far, the best model and early-stopping count): the run then takes the same steps and
     * selects the same model as an uninterrupted one. Give the same data and options.
     * first_phase and start_epoch are ignored then. */
    bool resume;
    at_nlu_progress_fn progress; /* called after every step and at every epoch end */
    void *user;
    /* JSON lines, one an epoch (NULL: none); the valid_* metrics in percent, as eval --json */
    FILE *metrics;
    int64_t max_steps;  /* stop a phase after this many steps (0: no limit; for tests) */
    double max_seconds; /* stop training after this long (0: no limit) */
} at_nlu_train_opts;

at_nlu_train_opts at_nlu_train_defaults(void);

typedef struct at_nlu_train_result {
    at_metrics_summary best_valid; /* of the selected model (zeroed without valid) */
    int best_phase, best_epoch;    /* where it came from (-1 / 0 without valid) */
    int epochs_run[3];
    int64_t steps;
    double seconds;
    double last_loss_d; /* mean L_D of the last epoch with a D (NaN if none): vs 2 ln 2 */
} at_nlu_train_result;

/* Trains m (cfg's phases, epochs, label fraction, ...). Encodes the splits with the model's
 * vocabularies and applies cfg->label_fraction to train (changing its labelled flags).
 * unlabelled (may be NULL) adds sentences without labels for the adversarial term; the
 * unlabelled part of train is used too. valid (may be NULL) drives early stopping and model
 * selection: the best parameters (over all phases) are restored at the end. */
at_status at_nlu_train(at_nlu_model *m, at_split *train, at_split *valid, at_split *unlabelled,
                       const at_nlu_train_opts *opts, at_nlu_train_result *res, at_err *e);

/* ------------------------------------------------------------------------------------------ */
/* Evaluation and prediction. */

/* Adds every sentence of split (encoded here) to metrics (which may already hold others);
 * summary (may be NULL) receives the totals. */
at_status at_nlu_evaluate(at_nlu_model *m, at_split *split, at_metrics *metrics,
                          at_metrics_summary *summary, at_err *e);

/* The same under attack: FGSM on the word embeddings. Each sentence's encoder input vectors x
 * (word embeddings, with the char CNN features where char_dim > 0) move by
 * eta = eps * sign(grad_x L_task) on its real tokens, L_task the sentence's own loss (intent CE +
 * mean slot CE) with its gold labels, the model in evaluation mode; so the result does not
 * depend on the batching. eps = 0 gives at_nlu_evaluate's numbers. Sentences without gold
 * labels are not perturbed. */
at_status at_nlu_evaluate_fgsm(at_nlu_model *m, at_split *split, float eps, at_metrics *metrics,
                               at_metrics_summary *summary, at_err *e);

/* One sentence's prediction. Arrays are owned by the prediction (at_nlu_pred_free). */
typedef struct at_nlu_pred {
    int64_t n;      /* tokens */
    int32_t intent; /* intent id (at_vocab_str(vocab->intents, intent)) */
    float intent_prob;
    int32_t *slots;     /* [n] slot ids */
    float *attn_intent; /* [n] first component's weights */
    float *attn_entity; /* [n * n] second component: row t = token t's weights */
    int64_t d;          /* size of s vectors; 0 when G is off */
    float *s_intent;    /* [n * d] or NULL */
    float *s_entity;    /* [n * d] or NULL */
} at_nlu_pred;

/* Predicts every sentence of split; *out gets split->n predictions (free with
 * at_nlu_preds_free). */
at_status at_nlu_predict(at_nlu_model *m, at_split *split, at_nlu_pred **out, at_err *e);
/* One sentence given as text (tokens split on whitespace). */
at_status at_nlu_predict_text(at_nlu_model *m, const char *sentence, at_nlu_pred *out, at_err *e);
void at_nlu_pred_free(at_nlu_pred *p);
void at_nlu_preds_free(at_nlu_pred *p, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
