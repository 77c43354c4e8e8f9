/* attune: a tensor-graph engine with reverse-mode autodiff. Include this. */
#ifndef ATTUNE_ATTUNE_H
#define ATTUNE_ATTUNE_H

#define AT_VERSION_MAJOR 0
#define AT_VERSION_MINOR 1
#define AT_VERSION_PATCH 0
#define AT_VERSION_STRING "0.1.0"

#include "status.h"
#include "tensor.h"
#include "graph.h"
#include "ops.h"
#include "autodiff.h"
#include "session.h"
#include "io.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The version of the library linked at run time ("0.1.0"). */
const char *at_version(void);

#ifdef __cplusplus
}
#endif
#endif
