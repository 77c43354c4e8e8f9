/* A minimal test helper: CHECK records a failure and goes on; check_done()
 * prints the closing line and gives the exit code. */
#ifndef ATTUNE_TESTS_CHECK_H
#define ATTUNE_TESTS_CHECK_H

#include <math.h>
#include <stdio.h>

static int check_passed;
static int check_failed;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            check_passed++;                                                                        \
        } else {                                                                                   \
            check_failed++;                                                                        \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

#define CHECK_OK(expr)                                                                             \
    do {                                                                                           \
        int check_st_ = (int)(expr);                                                               \
        CHECK(check_st_ == 0, "%s returned status %d", #expr, check_st_);                          \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                      \
    do {                                                                                           \
        double check_a_ = (a), check_b_ = (b);                                                     \
        CHECK(fabs(check_a_ - check_b_) <= (tol), "%s = %.8g, %s = %.8g, tol %.3g", #a, check_a_,  \
              #b, check_b_, (double)(tol));                                                        \
    } while (0)

static inline int check_done(const char *name) {
    printf("%s: %d passed, %d failed\n", name, check_passed, check_failed);
    return check_failed ? 1 : 0;
}

#endif
