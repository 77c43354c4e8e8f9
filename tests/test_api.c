/* The public API's small promises, as the headers document them: version
 * macros and at_version(), status names, at_err, and the documented results
 * of NULL handles, invalid indices and bad arguments (no crash, the stated
 * "none" value or error code). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <attune/attune.h>

#include "check.h"

/* The macros are integer constant expressions, usable in #if. */
#if !defined(AT_VERSION_MAJOR) || !defined(AT_VERSION_MINOR) || !defined(AT_VERSION_PATCH)
#error "version macros missing"
#endif
#if AT_VERSION_MAJOR < 0 || AT_VERSION_MINOR < 0 || AT_VERSION_PATCH < 0
#error "version macros must be non-negative integers"
#endif

/* project(attune VERSION x.y.z) in the top CMakeLists.txt, or "" if not found. */
static void cmake_version(char *out, size_t cap) {
    out[0] = 0;
    const char *src = getenv("ATTUNE_SRC");
    char path[1024];
    snprintf(path, sizeof path, "%s/CMakeLists.txt", src ? src : "..");
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "project(attune VERSION ");
        if (!p) continue;
        p += strlen("project(attune VERSION ");
        size_t n = strspn(p, "0123456789.");
        if (n < cap) {
            memcpy(out, p, n);
            out[n] = 0;
        }
        break;
    }
    fclose(f);
}

static void test_version(void) {
    const char *v = at_version();
    CHECK(v != NULL, "at_version() is NULL");
    if (!v) return;
    CHECK(strcmp(v, AT_VERSION_STRING) == 0, "library %s, headers %s", v, AT_VERSION_STRING);
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", AT_VERSION_MAJOR, AT_VERSION_MINOR, AT_VERSION_PATCH);
    CHECK(strcmp(AT_VERSION_STRING, want) == 0, "AT_VERSION_STRING %s, numbers give %s",
          AT_VERSION_STRING, want);
    int a, b, c;
    char tail;
    CHECK(sscanf(v, "%d.%d.%d%c", &a, &b, &c, &tail) == 3, "at_version() '%s' is not X.Y.Z", v);
    CHECK(at_version() == v, "at_version() returns one static string");
    char cm[64];
    cmake_version(cm, sizeof cm);
    CHECK(cm[0] != 0, "no project(attune VERSION ...) found in CMakeLists.txt");
    if (cm[0]) CHECK(strcmp(cm, v) == 0, "CMakeLists.txt says %s, at_version() %s", cm, v);
}

static void test_status(void) {
    const at_status all[] = {AT_OK,         AT_E_INVALID, AT_E_SHAPE,       AT_E_NOMEM,
                             AT_E_IO,       AT_E_FORMAT,  AT_E_UNSUPPORTED, AT_E_NUMERIC,
                             AT_E_INTERNAL, AT_E_DEVICE};
    const int n = (int)(sizeof all / sizeof all[0]);
    CHECK(AT_OK == 0, "AT_OK is %d", (int)AT_OK);
    for (int i = 0; i < n; i++) {
        const char *s = at_status_str(all[i]);
        CHECK(s && strncmp(s, "AT_", 3) == 0, "status %d: name '%s'", (int)all[i], s ? s : "NULL");
        for (int j = 0; j < i; j++)
            CHECK(strcmp(s, at_status_str(all[j])) != 0, "statuses %d and %d share a name",
                  (int)all[i], (int)all[j]);
    }
    CHECK(strcmp(at_status_str(AT_E_SHAPE), "AT_E_SHAPE") == 0, "AT_E_SHAPE named %s",
          at_status_str(AT_E_SHAPE));
    const char *unk = at_status_str((at_status)12345);
    CHECK(unk && strcmp(unk, "AT_E_UNKNOWN") == 0, "unknown status named %s", unk ? unk : "NULL");

    CHECK(at_err_set(NULL, AT_E_IO, "x %d", 1) == AT_E_IO, "at_err_set(NULL) returns the code");
    at_err e;
    CHECK(at_err_set(&e, AT_E_FORMAT, "bad %s at line %d", "token", 7) == AT_E_FORMAT,
          "at_err_set returns the code");
    CHECK(e.code == AT_E_FORMAT && strcmp(e.msg, "bad token at line 7") == 0, "err %d '%s'",
          (int)e.code, e.msg);
    static char big[4000];
    memset(big, 'a', sizeof big - 1);
    at_err_set(&e, AT_E_INVALID, "%s", big);
    CHECK(strlen(e.msg) == sizeof e.msg - 1, "a long message is truncated to fit (%zu)",
          strlen(e.msg));
}

static void test_tensor_helpers(void) {
    CHECK(at_dtype_size(AT_F32) == 4 && at_dtype_size(AT_I64) == 8 && at_dtype_size(AT_BOOL) == 1,
          "dtype sizes");
    CHECK(at_dtype_size((at_dtype)99) == 0 && at_dtype_size(AT_UNDEFINED) == 0,
          "unknown dtype size is 0");
    CHECK(strcmp(at_dtype_name((at_dtype)99), "undefined") == 0, "unknown dtype name");
    CHECK(!at_dtype_valid(0) && !at_dtype_valid(99) && at_dtype_valid(AT_I32), "at_dtype_valid");
    at_shape bad = at_shape_make(AT_MAX_RANK + 1, NULL);
    CHECK(bad.rank == -1, "rank > AT_MAX_RANK gives rank %d", (int)bad.rank);
    at_shape sc = at_shape_make(0, NULL);
    CHECK(sc.rank == 0 && at_shape_numel(&sc) == 1, "a scalar has one element");
    at_shape s = AT_SHAPE(2, -1, 3); /* -1: symbol 0 */
    CHECK(at_shape_numel(&s) == -1 && !at_shape_is_concrete(&s), "symbolic numel");
    char buf[6];
    at_shape_str(&AT_SHAPE(1000, 2000), buf, sizeof buf);
    CHECK(strlen(buf) < sizeof buf && strncmp(buf, "[1000", 5) == 0, "truncated: '%s'", buf);
    at_tensor t = {AT_F32, AT_SHAPE(2, 3), NULL};
    CHECK(at_tensor_nbytes(&t) == 24, "nbytes %zu", at_tensor_nbytes(&t));
    t.shape = s;
    CHECK(at_tensor_nbytes(&t) == 0, "nbytes of a symbolic shape");
}

static void test_null_and_invalid(void) {
    at_graph_free(NULL);
    at_session_free(NULL);
    CHECK(at_graph_status(NULL) == AT_E_INVALID, "status of NULL graph");
    CHECK(strcmp(at_graph_error(NULL), "no graph") == 0, "error of NULL graph");
    CHECK(strcmp(at_session_error(NULL), "no session") == 0, "error of NULL session");
    CHECK(at_graph_find(NULL, "x") == AT_NONE, "find in NULL graph");
    CHECK(at_session_sync(NULL) == AT_E_INVALID, "sync of NULL session");

    at_err e;
    at_session *s = at_session_new(NULL, NULL, &e);
    CHECK(s == NULL && e.code == AT_E_INVALID, "session on NULL graph: %s", e.msg);
    at_session_free(s);

    at_graph *g = at_graph_new();
    CHECK(g != NULL, "at_graph_new");
    if (!g) return;
    CHECK(at_graph_status(g) == AT_OK && strcmp(at_graph_error(g), "") == 0, "fresh graph");
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(2));
    CHECK(at_graph_find(g, "x") == x && at_graph_find(g, NULL) == AT_NONE, "find");
    CHECK(at_value_name(g, 999) == NULL && at_value_dtype(g, 999) == AT_UNDEFINED &&
              at_value_shape(g, 999).rank == -1 && at_value_data(g, 999) == NULL &&
              at_value_group(g, 999) == -1 && at_value_producer(g, -5) == -1,
          "invalid value accessors");
    CHECK(at_node_op(g, 3) == NULL && at_node_num_inputs(g, 3) == 0 &&
              at_node_input(g, 3, 0) == AT_NONE,
          "invalid node accessors");
    CHECK(at_graph_input(g, 5) == AT_NONE && at_graph_output(g, 0) == AT_NONE,
          "inputs/outputs out of range");
    CHECK(at_graph_meta(g, "nope") == NULL && at_graph_meta_key(g, 0) == NULL, "no metadata");
    at_val p = at_param(g, "p", AT_F32, AT_SHAPE(3), 4);
    CHECK(at_graph_params(g, ~0u, NULL, 0) == 1, "count-only at_graph_params");
    CHECK(at_value_group(g, p) == 4 && at_value_group(g, x) == 0, "groups");
    CHECK(at_graph_set_meta(g, "k", "v1") == AT_OK && at_graph_set_meta(g, "k", "v2") == AT_OK &&
              at_graph_num_meta(g) == 1 && strcmp(at_graph_meta(g, "k"), "v2") == 0,
          "metadata replaced");

    /* Sticky errors: the first is kept, later adds do nothing, clear resumes. */
    CHECK(at_input(g, "x", AT_F32, AT_SHAPE(2)) == AT_NONE, "a used name fails");
    CHECK(at_graph_status(g) == AT_E_INVALID && strstr(at_graph_error(g), "'x'"), "error: %s",
          at_graph_error(g));
    CHECK(at_param(g, "q", AT_F32, AT_SHAPE(3), 0) == AT_NONE, "adds do nothing after an error");
    CHECK(at_graph_find(g, "q") == AT_NONE, "nothing was added");
    CHECK(strstr(at_graph_error(g), "'x'") != NULL, "the first error is kept: %s",
          at_graph_error(g));
    s = at_session_new(g, NULL, &e);
    CHECK(s == NULL && e.code == AT_E_INVALID, "a session on a failed graph reports its error");
    at_session_free(s);
    at_graph_clear_error(g);
    CHECK(at_param(g, "q", AT_F32, AT_SHAPE(3), 0) != AT_NONE, "building resumes after clear");
    CHECK(at_param(g, "r", AT_F32, AT_SHAPE(3), 32) == AT_NONE &&
              at_graph_status(g) == AT_E_INVALID,
          "group 32 is out of range");
    at_graph_clear_error(g);
    CHECK(at_node_add(g, "NoSuchOp", "", &x, 1, NULL, 1, NULL, 0) == -1 &&
              at_graph_status(g) == AT_E_UNSUPPORTED,
          "unknown op: %s", at_graph_error(g));
    CHECK(at_graph_num_nodes(g) == 0, "a failed node add adds no node");
    at_graph_free(g);
}

int main(void) {
    test_version();
    test_status();
    test_tensor_helpers();
    test_null_and_invalid();
    return check_done("test_api");
}
