/* Reader of the text fixtures written by tools/golden_torch.py:
 * records "name rank d0 .. \n values\n". */
#ifndef ATTUNE_TESTS_FIXTURE_H
#define ATTUNE_TESTS_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fx_rec {
    char name[64];
    int rank;
    long long dim[8];
    long long n;
    double *v;
} fx_rec;

typedef struct fx_file {
    fx_rec rec[64];
    int n;
} fx_file;

static void fx_free(fx_file *f) {
    for (int i = 0; i < f->n; i++) free(f->rec[i].v);
    f->n = 0;
}

/* 0 on success; -1 with a message on stderr. */
static int fx_load(fx_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    FILE *fp = fopen(path, "r");
    if (!fp) {
        fprintf(stderr, "cannot open fixture %s\n", path);
        return -1;
    }
    while (f->n < 64) {
        fx_rec *r = &f->rec[f->n];
        if (fscanf(fp, "%63s %d", r->name, &r->rank) != 2) break;
        r->n = 1;
        for (int d = 0; d < r->rank && d < 8; d++) {
            if (fscanf(fp, "%lld", &r->dim[d]) != 1) goto bad;
            r->n *= r->dim[d];
        }
        r->v = malloc(sizeof(double) * (size_t)(r->n ? r->n : 1));
        if (!r->v) goto bad;
        for (long long i = 0; i < r->n; i++)
            if (fscanf(fp, "%lf", &r->v[i]) != 1) goto bad;
        f->n++;
    }
    fclose(fp);
    return 0;
bad:
    fprintf(stderr, "fixture %s: malformed record %d\n", path, f->n);
    fclose(fp);
    fx_free(f);
    return -1;
}

static const fx_rec *fx_get(const fx_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->rec[i].name, name) == 0) return &f->rec[i];
    fprintf(stderr, "fixture has no record '%s'\n", name);
    return NULL;
}

#endif
