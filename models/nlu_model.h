/* Internal: what the model object and trainer (models/nlu_model.c, models/trainer.c) need from
 * the graph side (models/joint_nlu.c and the parts). */
#ifndef ATTUNE_MODELS_NLU_MODEL_H
#define ATTUNE_MODELS_NLU_MODEL_H

#include "attune/graph.h"
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

#endif
