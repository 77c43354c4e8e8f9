/* PLACEHOLDER: the loss family is being written; these records only name the ops. */
#include "ops/op.h"

const at_op_def at_op_def_SoftmaxCrossEntropyLoss = {.name = "SoftmaxCrossEntropyLoss", .domain = AT_DOMAIN_ONNX, .min_in = 0, .max_in = AT_VARIADIC, .min_out = 1, .max_out = AT_VARIADIC};
const at_op_def at_op_def_SoftmaxCrossEntropyLossGrad = {.name = "SoftmaxCrossEntropyLossGrad", .domain = AT_DOMAIN_ATTUNE, .min_in = 0, .max_in = AT_VARIADIC, .min_out = 1, .max_out = AT_VARIADIC};
