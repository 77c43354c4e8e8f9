/* The NLU data reader, vocabularies, label fractions, epoch plans and batches. */
#include "attune/dataset.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/quote.h"

/* ------------------------------------------------------------------------------------------ */
/* A seeded generator (splitmix64): small, no global state, and good enough for shuffles. */

typedef struct rng64 {
    uint64_t s;
} rng64;

static uint64_t rng_next(rng64 *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Distinct streams (label fraction, epoch k, dropout step k) from one user seed, so that
 * changing the epoch number does not just shift the same sequence by one. */
static rng64 rng_make(uint64_t seed, uint64_t stream, uint64_t k) {
    rng64 r = {seed};
    uint64_t a = rng_next(&r);
    r.s = a ^ (stream * 0xd1b54a32d192ed03ULL);
    uint64_t b = rng_next(&r);
    r.s = b ^ (k * 0xaef17502108ef2d9ULL);
    (void)rng_next(&r);
    return r;
}

/* Uniform in [0, n), n > 0, without modulo bias. */
static uint64_t rng_below(rng64 *r, uint64_t n) {
    uint64_t limit = -n % n; /* values below this would bias the remainder */
    for (;;) {
        uint64_t x = rng_next(r);
        if (x >= limit) return x % n;
    }
}

static double rng_unit(rng64 *r) {
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

static void shuffle_i64(int64_t *a, int64_t n, rng64 *r) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(r, (uint64_t)i + 1);
        int64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

enum { STREAM_FRACTION = 1, STREAM_EPOCH = 2, STREAM_DROPOUT = 3 };

/* ------------------------------------------------------------------------------------------ */
/* Text helpers. */

static int is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Byte offset of the first invalid UTF-8 sequence in p[0..n), or n when all is valid. */
static size_t utf8_check(const char *p, size_t n) {
    const unsigned char *u = (const unsigned char *)p;
    size_t i = 0;
    while (i < n) {
        size_t k = at_utf8_seq(u + i, n - i);
        if (k == 0) return i;
        i += k;
    }
    return n;
}

/* ------------------------------------------------------------------------------------------ */
/* A text file split into lines and tokens in place. */

typedef struct textfile {
    char *buf;         /* the file's bytes, with NULs written after each token */
    int64_t n_lines;   /* lines, trailing blank lines not counted */
    int64_t *line_tok; /* [n_lines + 1]: line i's tokens are tok[line_tok[i] ..] */
    char **tok;        /* [n_tok] */
    int64_t n_tok;
} textfile;

static void textfile_free(textfile *tf) {
    free(tf->buf);
    free(tf->line_tok);
    free(tf->tok);
    memset(tf, 0, sizeof *tf);
}

/* Files over this are refused before they are read whole into memory. */
#define MAX_FILE_BYTES ((size_t)1 << 31)

static at_status read_all(const char *path, char **out, size_t *size, at_err *e) {
    *out = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return at_err_set(e, AT_E_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return at_err_set(e, AT_E_NOMEM, "%s: out of memory reading the file", path);
    }
    for (;;) {
        if (n == cap) {
            if (cap >= MAX_FILE_BYTES) {
                free(buf);
                fclose(f);
                return at_err_set(e, AT_E_NOMEM, "%s: file larger than %zu bytes", path,
                                  MAX_FILE_BYTES);
            }
            cap *= 2;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                return at_err_set(e, AT_E_NOMEM, "%s: out of memory reading the file", path);
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    int err_no = errno;
    fclose(f);
    if (bad) {
        free(buf);
        return at_err_set(e, AT_E_IO, "%s: read error: %s", path, strerror(err_no));
    }
    buf[n] = '\0';
    *out = buf;
    *size = n;
    return AT_OK;
}

static int64_t line_of(const char *buf, size_t off) {
    int64_t line = 1;
    for (size_t i = 0; i < off; i++) line += buf[i] == '\n';
    return line;
}

/* Takes ownership of buf (size bytes plus a NUL) and splits it, checking every limit. */
static at_status textfile_parse(textfile *tf, char *buf, size_t size, const char *name, at_err *e) {
    memset(tf, 0, sizeof *tf);
    tf->buf = buf;
    const char *nul = memchr(buf, '\0', size);
    if (nul) {
        at_status st = at_err_set(e, AT_E_FORMAT, "%s:%lld: NUL byte in a text file", name,
                                  (long long)line_of(buf, (size_t)(nul - buf)));
        textfile_free(tf);
        return st;
    }
    /* Pass 1: check each line and count lines and tokens, so pass 2 allocates exactly. */
    int64_t lines = 0, last_nonblank = 0, first_blank = 0, tokens = 0;
    size_t pos = 0;
    while (pos < size) {
        char *end = memchr(buf + pos, '\n', size - pos);
        size_t len = end ? (size_t)(end - (buf + pos)) : size - pos;
        lines++;
        const char *line = buf + pos;
        if (len > AT_DATA_MAX_LINE_BYTES) {
            at_status st = at_err_set(e, AT_E_FORMAT, "%s:%lld: line of %zu bytes (limit %d)", name,
                                      (long long)lines, len, AT_DATA_MAX_LINE_BYTES);
            textfile_free(tf);
            return st;
        }
        size_t bad = utf8_check(line, len);
        if (bad < len) {
            at_status st =
                at_err_set(e, AT_E_FORMAT, "%s:%lld: invalid UTF-8 at byte %zu of the line", name,
                           (long long)lines, bad + 1);
            textfile_free(tf);
            return st;
        }
        int64_t nt = 0;
        for (size_t i = 0; i < len; i++) {
            if (!is_space((unsigned char)line[i]) &&
                (i == 0 || is_space((unsigned char)line[i - 1])))
                nt++;
        }
        if (nt > AT_DATA_MAX_TOKENS) {
            at_status st = at_err_set(e, AT_E_FORMAT, "%s:%lld: %lld tokens (limit %d)", name,
                                      (long long)lines, (long long)nt, AT_DATA_MAX_TOKENS);
            textfile_free(tf);
            return st;
        }
        if (nt > 0)
            last_nonblank = lines;
        else if (first_blank == 0)
            first_blank = lines;
        tokens += nt;
        pos += len + 1;
    }
    if (last_nonblank == 0) {
        at_status st = at_err_set(e, AT_E_FORMAT, "%s: empty file (no tokens)", name);
        textfile_free(tf);
        return st;
    }
    if (first_blank != 0 && first_blank < last_nonblank) {
        at_status st = at_err_set(e, AT_E_FORMAT, "%s:%lld: blank line (no tokens)", name,
                                  (long long)first_blank);
        textfile_free(tf);
        return st;
    }
    tf->n_lines = last_nonblank;
    tf->n_tok = tokens;
    tf->line_tok = malloc(sizeof(int64_t) * (size_t)(tf->n_lines + 1));
    tf->tok = malloc(sizeof(char *) * (size_t)tokens);
    if (!tf->line_tok || !tf->tok) {
        textfile_free(tf);
        return at_err_set(e, AT_E_NOMEM, "%s: out of memory for %lld tokens", name,
                          (long long)tokens);
    }
    /* Pass 2: cut the tokens in place. */
    int64_t li = 0, ti = 0;
    pos = 0;
    while (li < tf->n_lines) {
        char *end = memchr(buf + pos, '\n', size - pos);
        size_t len = end ? (size_t)(end - (buf + pos)) : size - pos;
        char *line = buf + pos;
        tf->line_tok[li++] = ti;
        size_t i = 0;
        while (i < len) {
            while (i < len && is_space((unsigned char)line[i])) i++;
            if (i == len) break;
            tf->tok[ti++] = line + i;
            while (i < len && !is_space((unsigned char)line[i])) i++;
            line[i++] = '\0'; /* a space, the '\n' or the final NUL */
        }
        pos += len + 1;
    }
    tf->line_tok[li] = ti;
    return AT_OK;
}

static at_status textfile_read(textfile *tf, const char *path, at_err *e) {
    char *buf;
    size_t size;
    memset(tf, 0, sizeof *tf);
    at_status st = read_all(path, &buf, &size, e);
    if (st != AT_OK) return st;
    return textfile_parse(tf, buf, size, path, e);
}

static int64_t line_ntok(const textfile *tf, int64_t i) {
    return tf->line_tok[i + 1] - tf->line_tok[i];
}

/* ------------------------------------------------------------------------------------------ */
/* Splits. */

struct at_split_priv_ {
    textfile f[3]; /* seq.in, seq.out, label */
};

static void clear_encoding(at_split *s) {
    free(s->word_ids);
    free(s->slot_ids);
    free(s->intent_ids);
    free(s->char_ids);
    free(s->n_chars);
    s->word_ids = s->slot_ids = s->intent_ids = s->char_ids = NULL;
    s->n_chars = NULL;
}

void at_split_free(at_split *s) {
    if (!s) return;
    if (s->priv_) {
        for (int i = 0; i < 3; i++) textfile_free(&s->priv_->f[i]);
        free(s->priv_);
    }
    clear_encoding(s);
    free(s->labelled);
    free(s);
}

/* Makes a split around files already read (f[0] required, f[1] and f[2] either both present
 * or both empty); takes ownership of them. */
static at_status split_assemble(at_split **out, textfile f[3], const char *path, at_err *e) {
    *out = NULL;
    at_split *s = calloc(1, sizeof *s);
    struct at_split_priv_ *p = calloc(1, sizeof *p);
    uint8_t *lab = malloc((size_t)f[0].n_lines);
    if (!s || !p || !lab) {
        free(s);
        free(p);
        free(lab);
        for (int i = 0; i < 3; i++) textfile_free(&f[i]);
        return at_err_set(e, AT_E_NOMEM, "%s: out of memory", path);
    }
    for (int i = 0; i < 3; i++) p->f[i] = f[i];
    s->priv_ = p;
    snprintf(s->path, sizeof s->path, "%s", path);
    s->n = p->f[0].n_lines;
    s->n_tokens = p->f[0].n_tok;
    s->start = p->f[0].line_tok;
    s->words = (const char **)p->f[0].tok;
    bool has_labels = p->f[1].buf != NULL;
    s->slots = has_labels ? (const char **)p->f[1].tok : NULL;
    s->intents = has_labels ? (const char **)p->f[2].tok : NULL;
    memset(lab, has_labels ? 1 : 0, (size_t)s->n);
    s->labelled = lab;
    s->n_labelled = has_labels ? s->n : 0;
    for (int64_t i = 0; i < s->n; i++) {
        int64_t len = s->start[i + 1] - s->start[i];
        if (len > s->max_len) s->max_len = (int32_t)len;
    }
    *out = s;
    return AT_OK;
}

static at_status join_path(char *buf, size_t cap, const char *dir, const char *file, at_err *e) {
    int n = snprintf(buf, cap, "%s/%s", dir, file);
    if (n < 0 || (size_t)n >= cap) return at_err_set(e, AT_E_INVALID, "%s: path too long", dir);
    return AT_OK;
}

at_status at_dataset_split(at_split **out, const char *dir, at_err *e) {
    if (!out) return at_err_set(e, AT_E_INVALID, "at_dataset_split: out is NULL");
    *out = NULL;
    if (!dir) return at_err_set(e, AT_E_INVALID, "at_dataset_split: dir is NULL");
    static const char *names[3] = {"seq.in", "seq.out", "label"};
    char path[3][4096];
    textfile f[3];
    memset(f, 0, sizeof f);
    at_status st = AT_OK;
    for (int i = 0; i < 3 && st == AT_OK; i++) {
        st = join_path(path[i], sizeof path[i], dir, names[i], e);
        if (st == AT_OK) st = textfile_read(&f[i], path[i], e);
    }
    if (st != AT_OK) goto fail;

    /* The first line whose counts differ helps find a missing line, so it is named even
     * when the line counts already differ. */
    int64_t common = f[0].n_lines < f[1].n_lines ? f[0].n_lines : f[1].n_lines;
    int64_t first_diff = 0;
    for (int64_t i = 0; i < common && !first_diff; i++)
        if (line_ntok(&f[0], i) != line_ntok(&f[1], i)) first_diff = i + 1;
    for (int i = 1; i < 3; i++) {
        if (f[i].n_lines == f[0].n_lines) continue;
        if (i == 1 && first_diff) {
            st = at_err_set(e, AT_E_FORMAT,
                            "%s has %lld lines but %s has %lld (token and label counts first "
                            "differ at line %lld)",
                            path[0], (long long)f[0].n_lines, path[i], (long long)f[i].n_lines,
                            (long long)first_diff);
        } else {
            st = at_err_set(e, AT_E_FORMAT, "%s has %lld lines but %s has %lld", path[0],
                            (long long)f[0].n_lines, path[i], (long long)f[i].n_lines);
        }
        goto fail;
    }
    if (first_diff) {
        int64_t i = first_diff - 1;
        st = at_err_set(e, AT_E_FORMAT, "%s:%lld: %lld labels for %lld tokens in %s:%lld", path[1],
                        (long long)first_diff, (long long)line_ntok(&f[1], i),
                        (long long)line_ntok(&f[0], i), path[0], (long long)first_diff);
        goto fail;
    }
    for (int64_t i = 0; i < f[2].n_lines; i++) {
        if (line_ntok(&f[2], i) != 1) {
            st = at_err_set(e, AT_E_FORMAT, "%s:%lld: expected one intent, found %lld tokens",
                            path[2], (long long)(i + 1), (long long)line_ntok(&f[2], i));
            goto fail;
        }
    }
    return split_assemble(out, f, dir, e);
fail:
    for (int i = 0; i < 3; i++) textfile_free(&f[i]);
    return st;
}

at_status at_dataset_sentences(at_split **out, const char *path, at_err *e) {
    if (!out) return at_err_set(e, AT_E_INVALID, "at_dataset_sentences: out is NULL");
    *out = NULL;
    if (!path) return at_err_set(e, AT_E_INVALID, "at_dataset_sentences: path is NULL");
    textfile f[3];
    memset(f, 0, sizeof f);
    at_status st = textfile_read(&f[0], path, e);
    if (st != AT_OK) return st;
    return split_assemble(out, f, path, e);
}

at_status at_dataset_sentences_text(at_split **out, const char *text, const char *name, at_err *e) {
    if (!out) return at_err_set(e, AT_E_INVALID, "at_dataset_sentences_text: out is NULL");
    *out = NULL;
    if (!name) name = "<text>";
    if (!text) return at_err_set(e, AT_E_INVALID, "%s: text is NULL", name);
    size_t size = strlen(text);
    char *buf = malloc(size + 1);
    if (!buf) return at_err_set(e, AT_E_NOMEM, "%s: out of memory", name);
    memcpy(buf, text, size + 1);
    textfile f[3];
    memset(f, 0, sizeof f);
    at_status st = textfile_parse(&f[0], buf, size, name, e);
    if (st != AT_OK) return st;
    return split_assemble(out, f, name, e);
}

at_status at_split_label_fraction(at_split *s, double fraction, uint64_t seed, at_err *e) {
    if (!s) return at_err_set(e, AT_E_INVALID, "at_split_label_fraction: split is NULL");
    if (!(fraction >= 0.0 && fraction <= 1.0))
        return at_err_set(e, AT_E_INVALID, "%s: label fraction %g is not in [0, 1]", s->path,
                          fraction);
    if (!s->slots)
        return at_err_set(e, AT_E_INVALID, "%s: no labels to keep a fraction of", s->path);
    int64_t keep = (int64_t)floor(fraction * (double)s->n + 0.5);
    if (keep > s->n) keep = s->n;
    int64_t *perm = malloc(sizeof(int64_t) * (size_t)s->n);
    if (!perm) return at_err_set(e, AT_E_NOMEM, "%s: out of memory", s->path);
    for (int64_t i = 0; i < s->n; i++) perm[i] = i;
    rng64 r = rng_make(seed, STREAM_FRACTION, 0);
    shuffle_i64(perm, s->n, &r);
    memset(s->labelled, 0, (size_t)s->n);
    for (int64_t i = 0; i < keep; i++) s->labelled[perm[i]] = 1;
    s->n_labelled = keep;
    free(perm);
    return AT_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Vocabularies: an array of strings and an open-addressing hash of their ids. */

struct at_vocab {
    char **str;
    int32_t n, cap;
    int32_t *table; /* ids, -1 empty; size tcap, a power of two */
    uint32_t tcap;
    int32_t unk;
};

static uint64_t hash_str(const char *s) {
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (const unsigned char *u = (const unsigned char *)s; *u; u++) {
        h ^= *u;
        h *= 0x100000001b3ULL;
    }
    return h;
}

at_status at_vocab_new(at_vocab **out, at_err *e) {
    if (!out) return at_err_set(e, AT_E_INVALID, "at_vocab_new: out is NULL");
    at_vocab *v = calloc(1, sizeof *v);
    if (v) v->table = malloc(sizeof(int32_t) * 16);
    if (!v || !v->table) {
        free(v);
        *out = NULL;
        return at_err_set(e, AT_E_NOMEM, "at_vocab_new: out of memory");
    }
    v->tcap = 16;
    for (uint32_t i = 0; i < v->tcap; i++) v->table[i] = -1;
    v->unk = -1;
    *out = v;
    return AT_OK;
}

void at_vocab_free(at_vocab *v) {
    if (!v) return;
    for (int32_t i = 0; i < v->n; i++) free(v->str[i]);
    free(v->str);
    free(v->table);
    free(v);
}

int32_t at_vocab_find(const at_vocab *v, const char *s) {
    if (!v || !s) return -1;
    uint32_t mask = v->tcap - 1;
    for (uint32_t h = (uint32_t)hash_str(s) & mask;; h = (h + 1) & mask) {
        int32_t id = v->table[h];
        if (id < 0) return -1;
        if (strcmp(v->str[id], s) == 0) return id;
    }
}

int32_t at_vocab_lookup(const at_vocab *v, const char *s) {
    int32_t id = at_vocab_find(v, s);
    return id >= 0 ? id : (v ? v->unk : -1);
}

const char *at_vocab_str(const at_vocab *v, int32_t id) {
    return v && id >= 0 && id < v->n ? v->str[id] : NULL;
}

int32_t at_vocab_size(const at_vocab *v) {
    return v ? v->n : 0;
}
int32_t at_vocab_unk(const at_vocab *v) {
    return v ? v->unk : -1;
}

static void table_put(int32_t *table, uint32_t tcap, const char *s, int32_t id) {
    uint32_t mask = tcap - 1;
    uint32_t h = (uint32_t)hash_str(s) & mask;
    while (table[h] >= 0) h = (h + 1) & mask;
    table[h] = id;
}

/* Why an entry cannot be stored, or NULL when it can. */
static const char *entry_problem(const char *s, size_t len) {
    if (len == 0) return "empty entry";
    for (size_t i = 0; i < len; i++)
        if (is_space((unsigned char)s[i]) || s[i] == '\n') return "entry contains whitespace";
    if (utf8_check(s, len) < len) return "entry is not valid UTF-8";
    return NULL;
}

/* Adds s[0..len) known to be absent and valid. */
static at_status vocab_append(at_vocab *v, const char *s, size_t len, int32_t *id, at_err *e) {
    if (v->n == INT32_MAX / 2)
        return at_err_set(e, AT_E_NOMEM, "vocabulary over %d entries", INT32_MAX / 2);
    if (v->n == v->cap) {
        int32_t nc = v->cap ? v->cap * 2 : 64;
        char **ns = realloc(v->str, sizeof(char *) * (size_t)nc);
        if (!ns) return at_err_set(e, AT_E_NOMEM, "vocabulary: out of memory");
        v->str = ns;
        v->cap = nc;
    }
    if ((uint32_t)(v->n + 1) * 2 > v->tcap) {
        uint32_t nt = v->tcap * 2;
        int32_t *tab = malloc(sizeof(int32_t) * nt);
        if (!tab) return at_err_set(e, AT_E_NOMEM, "vocabulary: out of memory");
        for (uint32_t i = 0; i < nt; i++) tab[i] = -1;
        for (int32_t i = 0; i < v->n; i++) table_put(tab, nt, v->str[i], i);
        free(v->table);
        v->table = tab;
        v->tcap = nt;
    }
    char *copy = malloc(len + 1);
    if (!copy) return at_err_set(e, AT_E_NOMEM, "vocabulary: out of memory");
    memcpy(copy, s, len);
    copy[len] = '\0';
    int32_t nid = v->n++;
    v->str[nid] = copy;
    table_put(v->table, v->tcap, copy, nid);
    if (v->unk < 0 && strcmp(copy, "<unk>") == 0) v->unk = nid;
    if (id) *id = nid;
    return AT_OK;
}

at_status at_vocab_add(at_vocab *v, const char *s, int32_t *id, at_err *e) {
    if (!v || !s) return at_err_set(e, AT_E_INVALID, "at_vocab_add: NULL argument");
    int32_t found = at_vocab_find(v, s);
    if (found >= 0) {
        if (id) *id = found;
        return AT_OK;
    }
    size_t len = strlen(s);
    const char *why = entry_problem(s, len);
    if (why) return at_err_set(e, AT_E_INVALID, "at_vocab_add: %s", why);
    return vocab_append(v, s, len, id, e);
}

at_status at_vocab_to_string(const at_vocab *v, char **out, size_t *len, at_err *e) {
    if (!v || !out) return at_err_set(e, AT_E_INVALID, "at_vocab_to_string: NULL argument");
    size_t total = 0;
    for (int32_t i = 0; i < v->n; i++) total += strlen(v->str[i]) + 1;
    char *buf = malloc(total + 1);
    if (!buf) {
        *out = NULL;
        return at_err_set(e, AT_E_NOMEM, "at_vocab_to_string: out of memory for %zu bytes", total);
    }
    size_t at = 0;
    for (int32_t i = 0; i < v->n; i++) {
        size_t k = strlen(v->str[i]);
        memcpy(buf + at, v->str[i], k);
        buf[at + k] = '\n';
        at += k + 1;
    }
    buf[at] = '\0';
    *out = buf;
    if (len) *len = at;
    return AT_OK;
}

at_status at_vocab_from_string(at_vocab **out, const char *text, at_err *e) {
    if (!out || !text) return at_err_set(e, AT_E_INVALID, "at_vocab_from_string: NULL argument");
    *out = NULL;
    at_vocab *v;
    at_status st = at_vocab_new(&v, e);
    if (st != AT_OK) return st;
    const char *p = text;
    int64_t line = 0;
    while (*p) {
        line++;
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *why = entry_problem(p, len);
        if (why) {
            at_vocab_free(v);
            return at_err_set(e, AT_E_FORMAT, "vocabulary line %lld: %s", (long long)line, why);
        }
        char tmp[64];
        char *key = len < sizeof tmp ? tmp : malloc(len + 1);
        if (!key) {
            at_vocab_free(v);
            return at_err_set(e, AT_E_NOMEM, "vocabulary line %lld: out of memory",
                              (long long)line);
        }
        memcpy(key, p, len);
        key[len] = '\0';
        int32_t dup = at_vocab_find(v, key);
        if (key != tmp) free(key);
        if (dup >= 0) {
            at_vocab_free(v);
            return at_err_set(e, AT_E_FORMAT, "vocabulary line %lld: duplicate of line %d",
                              (long long)line, dup + 1);
        }
        st = vocab_append(v, p, len, NULL, e);
        if (st != AT_OK) {
            at_vocab_free(v);
            return st;
        }
        p += len + (end ? 1 : 0);
    }
    *out = v;
    return AT_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Building the model's vocabularies. */

typedef struct counted {
    const char *s;
    int64_t count;
} counted;

static int by_count_then_bytes(const void *a, const void *b) {
    const counted *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return strcmp(x->s, y->s);
}

static int by_bytes(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Counts strings into a scratch vocab (ids) and a parallel count array. */
typedef struct counter {
    at_vocab *v;
    int64_t *count;
    int64_t cap;
} counter;

static at_status counter_add(counter *c, const char *s, at_err *e) {
    int32_t id;
    at_status st = at_vocab_add(c->v, s, &id, e);
    if (st != AT_OK) return st;
    if (id >= c->cap) {
        int64_t nc = c->cap ? c->cap * 2 : 1024;
        int64_t *n = realloc(c->count, sizeof(int64_t) * (size_t)nc);
        if (!n) return at_err_set(e, AT_E_NOMEM, "vocabulary: out of memory");
        memset(n + c->cap, 0, sizeof(int64_t) * (size_t)(nc - c->cap));
        c->count = n;
        c->cap = nc;
    }
    c->count[id]++;
    return AT_OK;
}

/* Fills out (already holding its specials) with the counted strings, most frequent first. */
static at_status vocab_from_counts(at_vocab *out, const counter *c, int64_t min_count,
                                   int64_t max_size, at_err *e) {
    int32_t n = at_vocab_size(c->v);
    counted *items = malloc(sizeof(counted) * (size_t)(n ? n : 1));
    if (!items) return at_err_set(e, AT_E_NOMEM, "vocabulary: out of memory");
    for (int32_t i = 0; i < n; i++) items[i] = (counted){at_vocab_str(c->v, i), c->count[i]};
    qsort(items, (size_t)n, sizeof *items, by_count_then_bytes);
    at_status st = AT_OK;
    for (int32_t i = 0; i < n && st == AT_OK; i++) {
        if (items[i].count < min_count) break;
        if (max_size > 0 && at_vocab_size(out) >= max_size) break;
        st = at_vocab_add(out, items[i].s, NULL, e);
    }
    free(items);
    return st;
}

/* Adds the distinct strings of list[0..n) in byte order. */
static at_status vocab_sorted(at_vocab *out, const char **list, int64_t n, at_err *e) {
    at_vocab *seen;
    at_status st = at_vocab_new(&seen, e);
    if (st != AT_OK) return st;
    for (int64_t i = 0; i < n && st == AT_OK; i++) st = at_vocab_add(seen, list[i], NULL, e);
    int32_t k = at_vocab_size(seen);
    const char **names = st == AT_OK ? malloc(sizeof(char *) * (size_t)(k ? k : 1)) : NULL;
    if (st == AT_OK && !names) st = at_err_set(e, AT_E_NOMEM, "vocabulary: out of memory");
    if (st == AT_OK) {
        for (int32_t i = 0; i < k; i++) names[i] = at_vocab_str(seen, i);
        qsort(names, (size_t)k, sizeof *names, by_bytes);
        for (int32_t i = 0; i < k && st == AT_OK; i++) st = at_vocab_add(out, names[i], NULL, e);
    }
    free(names);
    at_vocab_free(seen);
    return st;
}

void at_nlu_vocab_free(at_nlu_vocab *v) {
    if (!v) return;
    at_vocab_free(v->words);
    at_vocab_free(v->chars);
    at_vocab_free(v->slots);
    at_vocab_free(v->intents);
    memset(v, 0, sizeof *v);
}

at_status at_nlu_vocab_build(at_nlu_vocab *v, const at_split *train, const at_vocab_opts *opts,
                             at_err *e) {
    if (!v) return at_err_set(e, AT_E_INVALID, "at_nlu_vocab_build: v is NULL");
    memset(v, 0, sizeof *v);
    if (!train) return at_err_set(e, AT_E_INVALID, "at_nlu_vocab_build: train is NULL");
    if (!train->slots || !train->intents)
        return at_err_set(e, AT_E_INVALID, "%s: the training split has no labels", train->path);
    at_vocab_opts o = opts ? *opts : (at_vocab_opts){0, 0, 0};
    counter words = {0}, chars = {0};
    at_status st = at_vocab_new(&words.v, e);
    if (st == AT_OK) st = at_vocab_new(&chars.v, e);
    for (int64_t t = 0; t < train->n_tokens && st == AT_OK; t++) {
        const char *w = train->words[t];
        st = counter_add(&words, w, e);
        for (const char *c = w; *c && st == AT_OK;) {
            char cp[5];
            size_t k = at_utf8_seq((const unsigned char *)c, strlen(c));
            memcpy(cp, c, k);
            cp[k] = '\0';
            st = counter_add(&chars, cp, e);
            c += k;
        }
    }
    if (st == AT_OK) st = at_vocab_new(&v->words, e);
    if (st == AT_OK) st = at_vocab_new(&v->chars, e);
    if (st == AT_OK) st = at_vocab_new(&v->slots, e);
    if (st == AT_OK) st = at_vocab_new(&v->intents, e);
    if (st == AT_OK) st = at_vocab_add(v->words, "<pad>", NULL, e);
    if (st == AT_OK) st = at_vocab_add(v->words, "<unk>", NULL, e);
    if (st == AT_OK) st = at_vocab_add(v->chars, "<pad>", NULL, e);
    if (st == AT_OK) st = at_vocab_add(v->chars, "<unk>", NULL, e);
    if (st == AT_OK) st = vocab_from_counts(v->words, &words, o.word_min_count, o.max_words, e);
    if (st == AT_OK) st = vocab_from_counts(v->chars, &chars, o.char_min_count, 0, e);
    if (st == AT_OK) st = at_vocab_add(v->slots, "O", NULL, e);
    if (st == AT_OK) st = vocab_sorted(v->slots, train->slots, train->n_tokens, e);
    if (st == AT_OK) st = vocab_sorted(v->intents, train->intents, train->n, e);
    at_vocab_free(words.v);
    free(words.count);
    at_vocab_free(chars.v);
    free(chars.count);
    if (st != AT_OK) at_nlu_vocab_free(v);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* Encoding. */

/* Appends name to the stats' list unless it is there already or the list is full. */
static void note_unknown(at_encode_stats *st, const char *name) {
    size_t have = strlen(st->unknown), k = strlen(name);
    for (const char *p = st->unknown; (p = strstr(p, name)) != NULL; p++) {
        bool starts = p == st->unknown || p[-1] == ' ';
        bool ends = p[k] == '\0' || p[k] == ' ';
        if (starts && ends) return;
    }
    if (have + (have ? 1 : 0) + k + 1 > sizeof st->unknown) return;
    if (have) st->unknown[have++] = ' ';
    memcpy(st->unknown + have, name, k + 1);
}

at_status at_split_encode(at_split *s, const at_nlu_vocab *v, at_encode_stats *st, at_err *e) {
    /* No character vocabulary is fine: a model without character features (char_dim 0) has
     * none in its file, and every character becomes <unk> here, unused. */
    if (!s || !v || !v->words || !v->slots || !v->intents)
        return at_err_set(e, AT_E_INVALID, "at_split_encode: NULL split or vocabulary");
    at_encode_stats local;
    if (!st) st = &local;
    memset(st, 0, sizeof *st);
    clear_encoding(s);
    size_t nt = (size_t)s->n_tokens, ns = (size_t)s->n;
    s->word_ids = malloc(sizeof(int32_t) * (nt ? nt : 1));
    s->slot_ids = malloc(sizeof(int32_t) * (nt ? nt : 1));
    s->intent_ids = malloc(sizeof(int32_t) * (ns ? ns : 1));
    s->char_ids = calloc(nt ? nt : 1, sizeof(int32_t) * AT_CHAR_WIDTH);
    s->n_chars = malloc(nt ? nt : 1);
    if (!s->word_ids || !s->slot_ids || !s->intent_ids || !s->char_ids || !s->n_chars) {
        clear_encoding(s);
        return at_err_set(e, AT_E_NOMEM, "%s: out of memory encoding %lld tokens", s->path,
                          (long long)s->n_tokens);
    }
    int32_t unk = at_vocab_unk(v->words), cunk = at_vocab_unk(v->chars);
    if (unk < 0) unk = AT_UNK_ID;
    if (cunk < 0) cunk = AT_UNK_ID;
    for (size_t t = 0; t < nt; t++) {
        const char *w = s->words[t];
        int32_t id = at_vocab_find(v->words, w);
        if (id < 0) {
            id = unk;
            st->unk_words++;
        }
        s->word_ids[t] = id;
        int32_t *cid = s->char_ids + t * AT_CHAR_WIDTH;
        int k = 0;
        for (const char *c = w; *c && k < AT_CHAR_WIDTH; k++) {
            char cp[5];
            size_t len = at_utf8_seq((const unsigned char *)c, strlen(c));
            memcpy(cp, c, len);
            cp[len] = '\0';
            int32_t ci = at_vocab_find(v->chars, cp);
            cid[k] = ci >= 0 ? ci : cunk;
            c += len;
        }
        s->n_chars[t] = (uint8_t)k;
        if (!s->slots) {
            s->slot_ids[t] = AT_IGNORE_INDEX;
            continue;
        }
        id = at_vocab_find(v->slots, s->slots[t]);
        if (id < 0) {
            id = AT_IGNORE_INDEX;
            st->unk_slot_labels++;
            note_unknown(st, s->slots[t]);
        }
        s->slot_ids[t] = id;
    }
    for (size_t i = 0; i < ns; i++) {
        if (!s->intents) {
            s->intent_ids[i] = AT_IGNORE_INDEX;
            continue;
        }
        int32_t id = at_vocab_find(v->intents, s->intents[i]);
        if (id < 0) {
            id = AT_IGNORE_INDEX;
            st->unk_intents++;
            note_unknown(st, s->intents[i]);
        }
        s->intent_ids[i] = id;
    }
    st->tokens = s->n_tokens;
    return AT_OK;
}

const char *at_encode_stats_str(const at_encode_stats *st, const char *split_name, char *buf,
                                size_t cap) {
    if (!buf || cap == 0) return buf;
    if (!st) {
        snprintf(buf, cap, "%s: no statistics", split_name ? split_name : "split");
        return buf;
    }
    const char *name = split_name ? split_name : "split";
    if (st->unk_intents || st->unk_slot_labels) {
        snprintf(buf, cap,
                 "%s: %lld intents and %lld slot labels unknown to the training split (%s); "
                 "%lld of %lld words <unk>",
                 name, (long long)st->unk_intents, (long long)st->unk_slot_labels, st->unknown,
                 (long long)st->unk_words, (long long)st->tokens);
    } else {
        snprintf(buf, cap, "%s: all labels known; %lld of %lld words <unk>", name,
                 (long long)st->unk_words, (long long)st->tokens);
    }
    return buf;
}

/* ------------------------------------------------------------------------------------------ */
/* Epoch plans. */

typedef struct len_key {
    int64_t len, rank, idx;
} len_key;

static int by_len_then_rank(const void *a, const void *b) {
    const len_key *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return (x->rank > y->rank) - (x->rank < y->rank);
}

void at_epoch_free(at_epoch *ep) {
    if (!ep) return;
    free(ep->order);
    free(ep->start);
    memset(ep, 0, sizeof *ep);
}

at_status at_epoch_plan(at_epoch *ep, const at_split *s, at_subset subset, at_order order,
                        int64_t batch_size, uint64_t seed, uint64_t epoch, at_err *e) {
    if (!ep) return at_err_set(e, AT_E_INVALID, "at_epoch_plan: ep is NULL");
    memset(ep, 0, sizeof *ep);
    if (!s) return at_err_set(e, AT_E_INVALID, "at_epoch_plan: split is NULL");
    if (batch_size < 1)
        return at_err_set(e, AT_E_INVALID, "at_epoch_plan: batch size %lld < 1",
                          (long long)batch_size);
    if (subset < AT_SUBSET_ALL || subset > AT_SUBSET_UNLABELLED || order < AT_ORDER_FILE ||
        order > AT_ORDER_BUCKET)
        return at_err_set(e, AT_E_INVALID, "at_epoch_plan: bad subset %d or order %d", (int)subset,
                          (int)order);
    int64_t n = 0;
    for (int64_t i = 0; i < s->n; i++)
        n += subset == AT_SUBSET_ALL || (s->labelled[i] != 0) == (subset == AT_SUBSET_LABELLED);
    int64_t nb = (n + batch_size - 1) / batch_size;
    ep->order = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    ep->start = malloc(sizeof(int64_t) * (size_t)(nb + 1));
    int64_t *tmp = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    len_key *keys = order == AT_ORDER_BUCKET ? malloc(sizeof(len_key) * (size_t)(n ? n : 1)) : NULL;
    int64_t *bperm = malloc(sizeof(int64_t) * (size_t)(nb ? nb : 1));
    if (!ep->order || !ep->start || !tmp || !bperm || (order == AT_ORDER_BUCKET && !keys)) {
        free(tmp);
        free(keys);
        free(bperm);
        at_epoch_free(ep);
        return at_err_set(e, AT_E_NOMEM, "%s: out of memory planning %lld sentences", s->path,
                          (long long)n);
    }
    int64_t k = 0;
    for (int64_t i = 0; i < s->n; i++)
        if (subset == AT_SUBSET_ALL || (s->labelled[i] != 0) == (subset == AT_SUBSET_LABELLED))
            ep->order[k++] = i;
    rng64 r = rng_make(seed, STREAM_EPOCH, epoch);
    if (order != AT_ORDER_FILE) shuffle_i64(ep->order, n, &r);
    if (order == AT_ORDER_BUCKET) {
        /* The shuffle above decides ties, so equal-length sentences meet in new batches
         * every epoch. */
        for (int64_t i = 0; i < n; i++) {
            int64_t si = ep->order[i];
            keys[i] = (len_key){s->start[si + 1] - s->start[si], i, si};
        }
        qsort(keys, (size_t)n, sizeof *keys, by_len_then_rank);
        for (int64_t i = 0; i < n; i++) tmp[i] = keys[i].idx;
        for (int64_t b = 0; b < nb; b++) bperm[b] = b;
        shuffle_i64(bperm, nb, &r);
        int64_t at = 0;
        for (int64_t b = 0; b < nb; b++) {
            int64_t lo = bperm[b] * batch_size;
            int64_t hi = lo + batch_size < n ? lo + batch_size : n;
            ep->start[b] = at;
            for (int64_t i = lo; i < hi; i++) ep->order[at++] = tmp[i];
        }
        ep->start[nb] = at;
    } else {
        for (int64_t b = 0; b <= nb; b++) ep->start[b] = b * batch_size < n ? b * batch_size : n;
    }
    ep->n = n;
    ep->n_batches = nb;
    free(tmp);
    free(keys);
    free(bperm);
    return AT_OK;
}

int64_t at_epoch_padding(const at_epoch *ep, const at_split *s) {
    if (!ep || !s) return 0;
    int64_t pad = 0;
    for (int64_t b = 0; b < ep->n_batches; b++) {
        int64_t T = 0, sum = 0;
        for (int64_t i = ep->start[b]; i < ep->start[b + 1]; i++) {
            int64_t si = ep->order[i], len = s->start[si + 1] - s->start[si];
            T = len > T ? len : T;
            sum += len;
        }
        pad += T * (ep->start[b + 1] - ep->start[b]) - sum;
    }
    return pad;
}

/* ------------------------------------------------------------------------------------------ */
/* Batches. */

/* Caps on batch capacities: far above any real batch, low enough that products fit. */
#define MAX_CAP_B (1 << 20)

at_status at_batch_alloc(at_batch *b, int64_t cap_B, int64_t cap_T, int64_t cap_W, at_err *e) {
    if (!b) return at_err_set(e, AT_E_INVALID, "at_batch_alloc: b is NULL");
    memset(b, 0, sizeof *b);
    if (cap_B < 1 || cap_B > MAX_CAP_B || cap_T < 1 || cap_T > AT_DATA_MAX_TOKENS || cap_W < 0 ||
        cap_W > AT_CHAR_WIDTH)
        return at_err_set(e, AT_E_INVALID,
                          "at_batch_alloc: capacities B=%lld T=%lld W=%lld out of range "
                          "(1..%d, 1..%d, 0..%d)",
                          (long long)cap_B, (long long)cap_T, (long long)cap_W, MAX_CAP_B,
                          AT_DATA_MAX_TOKENS, AT_CHAR_WIDTH);
    size_t bt = (size_t)(cap_B * cap_T);
    b->tokens = malloc(sizeof(int64_t) * bt);
    b->lengths = malloc(sizeof(int64_t) * (size_t)cap_B);
    b->mask = malloc(sizeof(float) * bt);
    b->slots = malloc(sizeof(int64_t) * bt);
    b->intents = malloc(sizeof(int64_t) * (size_t)cap_B);
    b->index = malloc(sizeof(int64_t) * (size_t)cap_B);
    b->chars = cap_W > 0 ? malloc(sizeof(int64_t) * bt * (size_t)cap_W) : NULL;
    b->owned = true;
    b->cap_B = cap_B;
    b->cap_T = cap_T;
    b->cap_W = cap_W;
    if (!b->tokens || !b->lengths || !b->mask || !b->slots || !b->intents || !b->index ||
        (cap_W > 0 && !b->chars)) {
        at_batch_free(b);
        return at_err_set(e, AT_E_NOMEM, "at_batch_alloc: out of memory for B=%lld T=%lld",
                          (long long)cap_B, (long long)cap_T);
    }
    return AT_OK;
}

void at_batch_free(at_batch *b) {
    if (!b) return;
    if (b->owned) {
        free(b->tokens);
        free(b->lengths);
        free(b->mask);
        free(b->slots);
        free(b->intents);
        free(b->chars);
        free(b->index);
    }
    memset(b, 0, sizeof *b);
}

at_status at_batch_fill(at_batch *b, const at_split *s, const int64_t *idx, int64_t n, at_err *e) {
    if (!b || !s || !idx) return at_err_set(e, AT_E_INVALID, "at_batch_fill: NULL argument");
    if (!b->tokens || !b->lengths)
        return at_err_set(e, AT_E_INVALID, "at_batch_fill: the batch has no tokens or lengths");
    if (!s->word_ids)
        return at_err_set(e, AT_E_INVALID, "%s: at_batch_fill before at_split_encode", s->path);
    if (n < 1) return at_err_set(e, AT_E_INVALID, "%s: empty batch", s->path);
    if (n > b->cap_B)
        return at_err_set(e, AT_E_SHAPE, "%s: batch of %lld sentences, capacity %lld", s->path,
                          (long long)n, (long long)b->cap_B);
    int64_t T = 0, Wmax = 0;
    for (int64_t i = 0; i < n; i++) {
        if (idx[i] < 0 || idx[i] >= s->n)
            return at_err_set(e, AT_E_INVALID, "%s: sentence %lld out of range [0, %lld)", s->path,
                              (long long)idx[i], (long long)s->n);
        int64_t lo = s->start[idx[i]], hi = s->start[idx[i] + 1];
        T = hi - lo > T ? hi - lo : T;
        for (int64_t t = lo; t < hi; t++) Wmax = s->n_chars[t] > Wmax ? s->n_chars[t] : Wmax;
    }
    if (T > b->cap_T)
        return at_err_set(e, AT_E_SHAPE, "%s: batch needs T=%lld, capacity %lld", s->path,
                          (long long)T, (long long)b->cap_T);
    int64_t W = 0;
    if (b->chars && b->cap_W > 0) {
        W = Wmax < b->cap_W ? Wmax : b->cap_W;
        if (W > AT_CHAR_WIDTH) W = AT_CHAR_WIDTH;
        if (W < 1) W = 1;
    }
    b->B = n;
    b->T = T;
    b->W = W;
    for (int64_t i = 0; i < n; i++) {
        int64_t si = idx[i], lo = s->start[si], len = s->start[si + 1] - lo;
        bool lab = s->labelled[si] != 0;
        b->lengths[i] = len;
        if (b->index) b->index[i] = si;
        if (b->intents) b->intents[i] = lab ? s->intent_ids[si] : AT_IGNORE_INDEX;
        for (int64_t t = 0; t < T; t++) {
            int64_t o = i * T + t;
            bool real = t < len;
            b->tokens[o] = real ? s->word_ids[lo + t] : AT_PAD_ID;
            if (b->mask) b->mask[o] = real ? 1.0f : 0.0f;
            if (b->slots) b->slots[o] = real && lab ? s->slot_ids[lo + t] : AT_IGNORE_INDEX;
            if (W > 0) {
                int64_t *c = b->chars + o * W;
                int64_t nc = real ? s->n_chars[lo + t] : 0;
                const int32_t *src = real ? s->char_ids + (lo + t) * AT_CHAR_WIDTH : NULL;
                for (int64_t k = 0; k < W; k++) c[k] = k < nc ? src[k] : AT_PAD_ID;
            }
        }
    }
    return AT_OK;
}

int64_t at_batch_word_dropout(at_batch *b, double p, int64_t unk_id, uint64_t seed, uint64_t step) {
    if (!b || !b->tokens || !b->lengths || !(p > 0.0)) return 0;
    rng64 r = rng_make(seed, STREAM_DROPOUT, step);
    int64_t dropped = 0;
    for (int64_t i = 0; i < b->B; i++) {
        int64_t len = b->lengths[i] < b->T ? b->lengths[i] : b->T;
        for (int64_t t = 0; t < len; t++) {
            int64_t *tok = b->tokens + i * b->T + t;
            if (*tok == AT_PAD_ID || *tok == unk_id) continue;
            if (rng_unit(&r) < p) {
                *tok = unk_id;
                dropped++;
            }
        }
    }
    return dropped;
}
