/* Internal: the parts of the joint NLU model, built through the builder API.
 * Each part creates its parameters by name through nlu_param, which returns the existing
 * parameter when the name is taken, so applying a part twice (G per task, the decoders on
 * the G-off and G-on paths) shares its weights. */
#ifndef ATTUNE_MODELS_NLU_PARTS_H
#define ATTUNE_MODELS_NLU_PARTS_H

#include "attune/autodiff.h"
#include "attune/graph.h"
#include "attune/ops.h"
#include "models/nlu_model.h"

#define NLU_MASK_NEG (-1e9f) /* added to the scores of padded keys */

typedef enum nlu_init {
    NLU_INIT_ZERO,
    NLU_INIT_ONE,
    NLU_INIT_XAVIER, /* uniform, +-sqrt(6 / (fan_in + fan_out)) over the last two dims */
    NLU_INIT_EMBED,  /* normal, std 0.1 */
    NLU_INIT_SMALL,  /* normal, std 0.02 */
    NLU_INIT_LSTM,   /* uniform, +-1/sqrt(hidden), hidden = last dim of R */
    NLU_INIT_CONV,   /* uniform, +-1/sqrt(fan_in), weights [M, C, K]: fan_in = C K (PyTorch's) */
} nlu_init;

/* The random values one clean forward drew (dropout masks, Gumbel noise), in drawing order. A
 * perturbed forward (adversarial examples, VAT) built by the same code replays them in the same
 * order instead of drawing its own, so its input perturbation is its only difference. */
typedef struct nlu_tape {
    at_val *v;
    int n, cap;
} nlu_tape;

void nlu_tape_free(nlu_tape *t);

typedef struct nlu_ctx {
    at_graph *g;
    const at_nlu_config *cfg;
    int64_t n_words, n_chars, n_slots, n_intents;
    uint64_t rng;
    at_val training; /* bool scalar */
    at_val mask;     /* [B,T] */
    at_val mask3;    /* [B,T,1] */
    at_val kbias;    /* [B,1,T]: 0 at tokens, NLU_MASK_NEG at padding */
    /* Random draws: recorded to rec (when set), or replayed from play (when set). */
    nlu_tape *rec;
    const nlu_tape *play;
    int play_pos;
} nlu_ctx;

/* layers.c */
at_val nlu_param(nlu_ctx *c, int group, at_shape s, nlu_init init, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;
at_val nlu_linear(nlu_ctx *c, at_val x, int64_t in, int64_t out, bool bias, nlu_init init,
                  int group, const char *name);
at_val nlu_layer_norm(nlu_ctx *c, at_val x, int64_t d, int group, const char *name);
/* Dropout (recorded / replayed: a replay applies the recorded mask through DropoutGrad, which
 * is dropout with a given mask, forward and backward). */
at_val nlu_dropout(nlu_ctx *c, at_val x);
/* Gumbel(0, 1) noise shaped like x in training, zeros in evaluation (recorded / replayed). */
at_val nlu_gumbel(nlu_ctx *c, at_val x);
/* BCE with logits: softplus(-x) for target 1, softplus(x) for target 0. */
at_val nlu_softplus(nlu_ctx *c, at_val x);
/* Cast(Equal(Unsqueeze(labels, -1), 0..n-1)): one-hot float rows, zero rows where a label is
 * outside [0, n) (AT_IGNORE_INDEX). */
at_val nlu_one_hot(nlu_ctx *c, at_val labels, int64_t n);
/* The one-hot of each row's largest entry of probs (never differentiated). */
at_val nlu_hard_one_hot(nlu_ctx *c, at_val probs);
/* Σ x / max(Σ w, 1) for x already weighted. */
at_val nlu_weighted_mean(nlu_ctx *c, at_val wx, at_val w);

/* attention.c: q [Bq,Tq,dq] (Bq 1 or B) over kv [B,Tk,d] masked by c->kbias. Returns the
 * context [B,Tq,dv] and writes the weights [B,Tq,Tk] (multi-head: the heads' mean). hard:
 * straight-through Gumbel-softmax weights (one-hot forward, softmax backward). */
int64_t nlu_attn_query_dim(at_nlu_attn_kind kind, int64_t d);
int64_t nlu_attn_value_dim(at_nlu_attn_kind kind, int64_t d);
at_val nlu_attend(nlu_ctx *c, at_nlu_attn_kind kind, at_val q, int64_t dq, at_val kv, int64_t d,
                  int heads, int group, const char *name, at_val *weights, bool hard);

/* encoder.c */
at_val nlu_transformer_layer(nlu_ctx *c, at_val x, int64_t d, int heads, int64_t ffn, int group,
                             const char *name);
/* x: the encoder's input vectors [B,T,*in] (word embeddings, + char CNN features). */
at_val nlu_embed(nlu_ctx *c, at_val tokens, at_val chars, int64_t *in);
/* The layers on x (input dropout first): fills h[0..L-1]; returns H_L. */
at_val nlu_encode(nlu_ctx *c, at_val x, int64_t in, at_val tokens, at_val lengths, at_val *h);

/* generator.c: s = 2 sigmoid(z) for task 0 (intent) or 1 (entity), [B,T,d]. */
at_val nlu_generator(nlu_ctx *c, const at_val *h, int n_layers, int task);

/* decoders.c */
typedef struct nlu_heads {
    at_val intent_logits, slot_logits, attn_intent, attn_entity;
} nlu_heads;
void nlu_decoders(nlu_ctx *c, at_val r_intent, at_val r_entity, nlu_heads *out);
/* crf: the CRF's transitions [n_slots, n_slots], start and end [n_slots] (decoders' group). */
void nlu_crf_params(nlu_ctx *c, at_val out[3]);

/* discriminator.c: one logit per sentence [B] for the labelling (slot_vec [B,T,n_slots],
 * intent_vec [B,n_intents]) of r [B,T,d]. */
at_val nlu_discriminator(nlu_ctx *c, at_val r, at_val slot_vec, at_val intent_vec);

/* losses.c */
at_val nlu_task_loss(nlu_ctx *c, const nlu_heads *h, at_val slots, at_val intents);
at_val nlu_reg_loss(nlu_ctx *c, at_val s_intent, at_val s_entity);
/* The sum over sentences of each one's L_task: its intent CE + the mean CE of its labelled
 * tokens (a sentence without labels adds 0). */
at_val nlu_sentence_loss(nlu_ctx *c, const nlu_heads *h, at_val slots, at_val intents);
/* KL(p || q) for the log-probabilities lp_intent [B,n_intents], lp_slots [B,T,n_slots] (held
 * constant by the caller) and q from h's logits: the mean over sentences of the intent KL +
 * the mean over real tokens of the slot KL. */
at_val nlu_kl_loss(nlu_ctx *c, at_val lp_intent, at_val lp_slots, const nlu_heads *h);
typedef struct nlu_adv {
    at_val d_real, d_fake, loss_d, loss_adv;
} nlu_adv;
/* D on gold (real) and predicted (fake) labellings of r_entity; grl_lambda != AT_NONE puts
 * D's inputs behind a GradientReversal layer. Real counts labelled sentences only. */
void nlu_adversarial(nlu_ctx *c, at_val r_entity, const nlu_heads *h, at_val slots, at_val intents,
                     at_val grl_lambda, nlu_adv *out);

#endif
