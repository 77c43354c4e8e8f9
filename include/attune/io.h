/* Graph files: ONNX models (protobuf, IR 10 / opset 21), training
 * checkpoints, and a readable text form and Graphviz DOT of any graph.
 *
 * A file is an ONNX ModelProto. Graph inputs are GraphProto.input (symbolic
 * dims as dim_param), parameters, constants and state are initializers
 * (raw_data, little-endian), graph outputs carry their inferred types, and
 * the graph's metadata is ModelProto.metadata_props. What ONNX has no field
 * for (which initializers are trainable and in which group, which are
 * state) travels in reserved metadata keys "attune.params" and
 * "attune.state". opset_import declares {"", 21} and {"ai.attune", 1}; an
 * inference graph made of standard ops runs in ONNX Runtime as it is.
 *
 * Loading rebuilds the graph through the builder, so every node is checked
 * against its op schema and its shapes are inferred again; a bad file gives
 * AT_E_FORMAT (or AT_E_SHAPE, AT_E_UNSUPPORTED, AT_E_IO) with a message that
 * names what is wrong, never a crash or an absurd allocation.
 *
 * Files are written atomically: a temporary file in the same directory,
 * fsync, rename, so a crash leaves either the old file or the new one. */
#ifndef ATTUNE_IO_H
#define ATTUNE_IO_H

#include <stdio.h>

#include "graph.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The ONNX versions attune writes. */
#define AT_ONNX_IR_VERSION 10
#define AT_ONNX_OPSET      21
#define AT_ATTUNE_OPSET    1

typedef struct at_save_opts {
    /* Keep only what the graph outputs need: the nodes they depend on and
     * the inputs and initializers those nodes read. Drops training-only
     * nodes (losses, gradients, updates), their inputs (labels, learning
     * rate) and optimizer state; writes StopGradient and GradientReversal
     * (the identity in the forward pass) as ONNX Identity, so a model made
     * of standard ops otherwise runs in ONNX Runtime. This is how a model
     * file is written. */
    bool inference;
    /* GraphProto.name (ONNX requires a non-empty one); NULL: "attune". */
    const char *graph_name;
} at_save_opts;

/* Writes g to path (atomically). opts may be NULL (the whole graph). */
at_status at_graph_save(const at_graph *g, const char *path, const at_save_opts *opts, at_err *err);
/* The serialized bytes in *buf (malloc'ed; the caller frees them). */
at_status at_graph_save_bytes(const at_graph *g, const at_save_opts *opts, void **buf, size_t *len,
                              at_err *err);

/* A new graph from a file or a buffer; NULL with *err set on failure. */
at_graph *at_graph_load(const char *path, at_err *err);
at_graph *at_graph_load_bytes(const void *buf, size_t len, at_err *err);

/* A model file: the inference part of g (see at_save_opts.inference), its
 * weights and its metadata. */
at_status at_model_save(const at_graph *g, const char *path, at_err *err);

/* ---- training checkpoints ----
 * A checkpoint is the whole training graph (parameters, optimizer state as
 * AT_VALUE_STATE initializers, update nodes) plus the training position,
 * kept in the metadata keys "attune.step", "attune.epoch", "attune.phase"
 * and "attune.rng_seed" (decimal). The random streams are counter-based,
 * keyed by (seed, step, node), so seed and step are the whole RNG state. */
typedef struct at_checkpoint_info {
    uint64_t step;     /* optimizer steps taken */
    int64_t epoch;     /* epochs completed */
    int32_t phase;     /* training phase (which parameter groups train) */
    uint64_t rng_seed; /* the session seed */
} at_checkpoint_info;

at_status at_checkpoint_save(const at_graph *g, const at_checkpoint_info *info, const char *path,
                             at_err *err);
/* Loads a checkpoint written by at_checkpoint_save; info (may be NULL)
 * receives the training position. The "attune.step" etc. keys are not
 * copied into the graph's metadata. A file without them is AT_E_FORMAT. */
at_graph *at_checkpoint_load(const char *path, at_checkpoint_info *info, at_err *err);

/* ---- readable forms ---- */

/* The graph as text, in the spirit of ONNX's textual syntax: inputs and
 * outputs with types, initializers with kind, group and leading values,
 * one line per node with attributes and output types, metadata. */
at_status at_graph_write_text(const at_graph *g, FILE *f);
/* Graphviz DOT: values as ellipses (inputs green, initializers grey), ops
 * as boxes, edges labelled with types. */
at_status at_graph_write_dot(const at_graph *g, FILE *f);

#ifdef __cplusplus
}
#endif
#endif
