/* PLACEHOLDER: the optim family is being written; these records only name the ops. */
#include "ops/op.h"

const at_op_def at_op_def_SGD = {.name = "SGD", .domain = AT_DOMAIN_ATTUNE, .min_in = 0, .max_in = AT_VARIADIC, .min_out = 1, .max_out = AT_VARIADIC};
const at_op_def at_op_def_Adam = {.name = "Adam", .domain = AT_DOMAIN_ATTUNE, .min_in = 0, .max_in = AT_VARIADIC, .min_out = 1, .max_out = AT_VARIADIC};
const at_op_def at_op_def_AdamW = {.name = "AdamW", .domain = AT_DOMAIN_ATTUNE, .min_in = 0, .max_in = AT_VARIADIC, .min_out = 1, .max_out = AT_VARIADIC};
const at_op_def at_op_def_ClipGlobalNorm = {.name = "ClipGlobalNorm", .domain = AT_DOMAIN_ATTUNE, .min_in = 0, .max_in = AT_VARIADIC, .min_out = 1, .max_out = AT_VARIADIC};
const at_op_def at_op_def_Increment = {.name = "Increment", .domain = AT_DOMAIN_ATTUNE, .min_in = 0, .max_in = AT_VARIADIC, .min_out = 1, .max_out = AT_VARIADIC};
