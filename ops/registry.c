/* The op table, generated from ops/ops.def. */
#include <string.h>

#include "ops/op.h"

#define AT_OP(name) &at_op_def_##name,
const at_op_def *const at_op_table[AT_OP_COUNT] = {
#include "ops/ops.def"
};
#undef AT_OP

static bool same_domain(const char *a, const char *b) {
    if (!a || strcmp(a, "ai.onnx") == 0) a = "";
    if (!b || strcmp(b, "ai.onnx") == 0) b = "";
    return strcmp(a, b) == 0;
}

int at_op_lookup(const char *op_type, const char *domain) {
    if (!op_type) return -1;
    for (int i = 0; i < AT_OP_COUNT; i++) {
        const at_op_def *d = at_op_table[i];
        if (strcmp(d->name, op_type) == 0 && same_domain(d->domain, domain)) return i;
    }
    return -1;
}
