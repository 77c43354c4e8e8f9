/* PLACEHOLDER: the shape family is being written; these records only name the ops. */
#include "ops/op.h"

const at_op_def at_op_def_Shape = {.name = "Shape", .domain = AT_DOMAIN_ONNX, .min_in = 0, .max_in = AT_VARIADIC, .min_out = 1, .max_out = AT_VARIADIC};
const at_op_def at_op_def_Transpose = {.name = "Transpose", .domain = AT_DOMAIN_ONNX, .min_in = 0, .max_in = AT_VARIADIC, .min_out = 1, .max_out = AT_VARIADIC};
const at_op_def at_op_def_Reshape = {.name = "Reshape", .domain = AT_DOMAIN_ONNX, .min_in = 0, .max_in = AT_VARIADIC, .min_out = 1, .max_out = AT_VARIADIC};
const at_op_def at_op_def_Concat = {.name = "Concat", .domain = AT_DOMAIN_ONNX, .min_in = 0, .max_in = AT_VARIADIC, .min_out = 1, .max_out = AT_VARIADIC};
const at_op_def at_op_def_Split = {.name = "Split", .domain = AT_DOMAIN_ONNX, .min_in = 0, .max_in = AT_VARIADIC, .min_out = 1, .max_out = AT_VARIADIC};
const at_op_def at_op_def_Slice = {.name = "Slice", .domain = AT_DOMAIN_ONNX, .min_in = 0, .max_in = AT_VARIADIC, .min_out = 1, .max_out = AT_VARIADIC};
const at_op_def at_op_def_SliceGrad = {.name = "SliceGrad", .domain = AT_DOMAIN_ATTUNE, .min_in = 0, .max_in = AT_VARIADIC, .min_out = 1, .max_out = AT_VARIADIC};
const at_op_def at_op_def_Unsqueeze = {.name = "Unsqueeze", .domain = AT_DOMAIN_ONNX, .min_in = 0, .max_in = AT_VARIADIC, .min_out = 1, .max_out = AT_VARIADIC};
const at_op_def at_op_def_Squeeze = {.name = "Squeeze", .domain = AT_DOMAIN_ONNX, .min_in = 0, .max_in = AT_VARIADIC, .min_out = 1, .max_out = AT_VARIADIC};
const at_op_def at_op_def_Expand = {.name = "Expand", .domain = AT_DOMAIN_ONNX, .min_in = 0, .max_in = AT_VARIADIC, .min_out = 1, .max_out = AT_VARIADIC};
const at_op_def at_op_def_Constant = {.name = "Constant", .domain = AT_DOMAIN_ONNX, .min_in = 0, .max_in = AT_VARIADIC, .min_out = 1, .max_out = AT_VARIADIC};
const at_op_def at_op_def_ConstantOfShape = {.name = "ConstantOfShape", .domain = AT_DOMAIN_ONNX, .min_in = 0, .max_in = AT_VARIADIC, .min_out = 1, .max_out = AT_VARIADIC};
