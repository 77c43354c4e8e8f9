/* Internal: what the model's graph side (models/joint_nlu.c and the parts, which use ops.h)
 * and its data side (models/nlu_model.c, models/trainer.c, which use dataset.h) share. The two
 * sides cannot include each other's headers: dataset.h's at_split type collides with ops.h's
 * at_split() builder. */
#ifndef ATTUNE_MODELS_NLU_MODEL_H
#define ATTUNE_MODELS_NLU_MODEL_H

#include "attune/graph.h"
#include "attune/nlu.h"

/* dataset.h's AT_IGNORE_INDEX and AT_CHAR_WIDTH (checked equal in nlu_model.c). */
#define NLU_IGNORE     (-100)
#define NLU_CHAR_WIDTH 16

typedef struct nlu_sizes {
    int64_t words, chars, slots, intents;
} nlu_sizes;

/* Builds the whole training graph into g (an empty graph) and fills net. On error the graph
 * holds the message. */
at_status nlu_build(at_graph *g, const at_nlu_config *cfg, const nlu_sizes *sz, at_nlu_net *net);
void nlu_net_free(at_nlu_net *net);

/* After the graph's parameter buffers were written (best-model restore), makes the session
 * see them (a device session is started afresh). */
at_status nlu_model_params_changed(at_nlu_model *m, at_err *e);

#endif
