/* The option parser and the small helpers every subcommand uses. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "graph/quote.h"

int cli_fail(int code, const char *cmd, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* One line: a message with a newline inside would read as two errors. */
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    /* Messages carry names and values read from the user's files; the library quotes what it
     * reads, but not every layer does, and a terminal must not act on a stray escape byte. */
    at_msg_escape(msg, sizeof msg);
    if (cmd)
        fprintf(stderr, "attune: %s: %s\n", cmd, msg);
    else
        fprintf(stderr, "attune: %s\n", msg);
    return code;
}

int cli_exit_for_input(at_status st) {
    switch (st) {
    case AT_OK:
        return CLI_EXIT_OK;
    case AT_E_INVALID:
    case AT_E_SHAPE:
    case AT_E_IO:
    case AT_E_FORMAT:
    case AT_E_UNSUPPORTED:
        return CLI_EXIT_USAGE;
    default:
        return CLI_EXIT_FAIL;
    }
}

int cli_exit_for_work(at_status st) {
    switch (st) {
    case AT_OK:
        return CLI_EXIT_OK;
    case AT_E_INVALID:
    case AT_E_SHAPE:
        return CLI_EXIT_USAGE;
    default:
        return CLI_EXIT_FAIL;
    }
}

void cli_list_free(cli_list *l) {
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

static int list_push(cli_list *l, const char *s) {
    if (l->n == l->cap) {
        int nc = l->cap ? 2 * l->cap : 8;
        const char **v = realloc(l->v, (size_t)nc * sizeof *v);
        if (!v) return -1;
        l->v = v;
        l->cap = nc;
    }
    l->v[l->n++] = s;
    return 0;
}

bool cli_parse_i64(const char *s, int64_t *out) {
    if (!s || !*s) return false;
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    if (*p < '0' || *p > '9') return false; /* strtoll would skip spaces and accept "0x" */
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return false;
    *out = (int64_t)v;
    return true;
}

bool cli_parse_f64(const char *s, double *out) {
    if (!s || !*s) return false;
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    if (!((*p >= '0' && *p <= '9') || *p == '.')) return false; /* no "inf", "nan", spaces */
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno == ERANGE && fabs(v) > 1.0) return false;
    if (*end || !isfinite(v)) return false;
    *out = v;
    return true;
}

/* ---- help ---- */

static const cli_opt *find_long(const cli_cmd *c, const char *name, size_t len) {
    for (int g = 0; g < c->n_groups; g++)
        for (int i = 0; i < c->groups[g].n; i++) {
            const cli_opt *o = &c->groups[g].opts[i];
            if (strlen(o->name) == len && !strncmp(o->name, name, len)) return o;
        }
    return NULL;
}

static const cli_opt *find_short(const cli_cmd *c, char ch) {
    for (int g = 0; g < c->n_groups; g++)
        for (int i = 0; i < c->groups[g].n; i++)
            if (c->groups[g].opts[i].short_name == ch) return &c->groups[g].opts[i];
    return NULL;
}

/* Prints text from column `col` on, wrapped at 100 columns; continuation lines start at
 * column `indent` plus the leading spaces of the source line they continue. */
static void print_wrapped(const char *text, int col, int indent) {
    const int width = 100;
    const char *p = text;
    bool first_line = true;
    while (*p) {
        const char *eol = strchr(p, '\n');
        if (!eol) eol = p + strlen(p);
        int lead = 0;
        while (p + lead < eol && p[lead] == ' ') lead++;
        if (!first_line) {
            printf("%*s", indent + lead, "");
            col = indent + lead;
        } else if (lead) {
            printf("%*s", lead, "");
            col += lead;
        }
        int start_col = col, cont = indent + lead;
        p += lead;
        while (p < eol) {
            const char *w = p;
            while (w < eol && *w != ' ') w++;
            int wl = (int)(w - p);
            if (col > start_col) {
                if (col + 1 + wl > width) {
                    printf("\n%*s", cont, "");
                    col = cont;
                } else {
                    putchar(' ');
                    col++;
                }
            }
            printf("%.*s", wl, p);
            col += wl;
            p = w;
            while (p < eol && *p == ' ') p++;
        }
        putchar('\n');
        first_line = false;
        p = *eol ? eol + 1 : eol;
    }
    if (first_line) putchar('\n');
}

static void choices_text(const char *choices, char *buf, size_t cap) {
    size_t n = 0;
    for (const char *p = choices; *p && n + 3 < cap; p++) {
        if (*p == '|') {
            buf[n++] = ',';
            buf[n++] = ' ';
        } else {
            buf[n++] = *p;
        }
    }
    buf[n] = 0;
}

static void print_opt(const cli_opt *o) {
    char left[128];
    int n = 0;
    if (o->short_name)
        n = snprintf(left, sizeof left, "  -%c, --%s", o->short_name, o->name);
    else
        n = snprintf(left, sizeof left, "      --%s", o->name);
    if (o->kind != CLI_FLAG && o->metavar)
        snprintf(left + n, sizeof left - (size_t)n, " %s", o->metavar);
    char help[1024];
    int h = snprintf(help, sizeof help, "%s", o->help ? o->help : "");
    size_t cap = sizeof help;
#define APPEND(...)                                                                                \
    do {                                                                                           \
        if (h >= 0 && (size_t)h < cap) h += snprintf(help + h, cap - (size_t)h, __VA_ARGS__);      \
    } while (0)
    char ch[512];
    if (o->kind == CLI_CHOICE || o->kind == CLI_CHOICES) choices_text(o->choices, ch, sizeof ch);
    if (o->kind == CLI_CHOICE) APPEND(" (one of: %s)", ch);
    if (o->kind == CLI_CHOICES) APPEND(" (comma-separated, each one of: %s)", ch);
    if (o->kind == CLI_LIST) APPEND(" (repeatable)");
    if (o->required) {
        APPEND(" (required)");
    } else if (o->dst) {
        switch (o->kind) {
        case CLI_INT:
            APPEND(" [default: %lld]", (long long)*(int64_t *)o->dst);
            break;
        case CLI_FLOAT:
            APPEND(" [default: %g]", *(double *)o->dst);
            break;
        case CLI_STR:
        case CLI_CHOICE:
        case CLI_CHOICES:
            if (*(const char **)o->dst) APPEND(" [default: %s]", *(const char **)o->dst);
            break;
        default:
            break;
        }
    }
#undef APPEND
    const int col = 28;
    int len = (int)strlen(left);
    if (len + 2 > col) {
        printf("%s\n%*s", left, col, "");
    } else {
        printf("%s%*s", left, col - len, "");
    }
    print_wrapped(help, col, col);
}

void cli_print_help(const cli_cmd *c) {
    printf("Usage: attune %s %s\n\n", c->name, c->usage);
    if (c->summary) print_wrapped(c->summary, 0, 0);
    if (c->about) {
        putchar('\n');
        print_wrapped(c->about, 0, 0);
    }
    for (int g = 0; g < c->n_groups; g++) {
        printf("\n%s:\n", c->groups[g].title);
        for (int i = 0; i < c->groups[g].n; i++) print_opt(&c->groups[g].opts[i]);
    }
    printf("\n%s:\n", c->n_groups ? "Other" : "Options");
    print_opt(&(cli_opt){
        .name = "help", .short_name = 'h', .kind = CLI_FLAG, .help = "show this help and exit"});
    if (c->epilog) {
        putchar('\n');
        print_wrapped(c->epilog, 0, 0);
    }
}

/* ---- parsing ---- */

/* Edit distance, for "did you mean". */
static int distance(const char *a, size_t la, const char *b) {
    size_t lb = strlen(b);
    if (la > 40 || lb > 40) return 99;
    int d[41][41];
    for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            d[i][j] = best;
        }
    return d[la][lb];
}

static const char *suggest(const cli_cmd *c, const char *name, size_t len) {
    const char *best = NULL;
    int bd = 3;
    for (int g = 0; g < c->n_groups; g++)
        for (int i = 0; i < c->groups[g].n; i++) {
            const char *cand = c->groups[g].opts[i].name;
            int d = distance(name, len, cand);
            if (len >= 3 && !strncmp(cand, name, len)) d = 1; /* a prefix of a real name */
            if (d < bd) {
                bd = d;
                best = cand;
            }
        }
    return best;
}

static int usage_error(const cli_cmd *c, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static int usage_error(const cli_cmd *c, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cli_fail(CLI_EXIT_USAGE, c->name, "%s (see 'attune %s --help')", msg, c->name);
}

static bool in_choices(const char *choices, const char *v, size_t vlen) {
    const char *p = choices;
    while (*p) {
        const char *e = strchr(p, '|');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == vlen && !strncmp(p, v, n)) return true;
        if (!e) break;
        p = e + 1;
    }
    return false;
}

static int store(const cli_cmd *c, const cli_opt *o, const char *v) {
    char ch[512];
    switch (o->kind) {
    case CLI_FLAG:
        *(bool *)o->dst = true;
        return CLI_CONTINUE;
    case CLI_STR:
        if (!*v) return usage_error(c, "--%s: the value is empty", o->name);
        *(const char **)o->dst = v;
        return CLI_CONTINUE;
    case CLI_INT: {
        int64_t x;
        if (!cli_parse_i64(v, &x))
            return usage_error(c, "--%s: '%s' is not an integer", o->name, v);
        if ((o->lo != 0 || o->hi != 0) && ((double)x < o->lo || (double)x > o->hi))
            return usage_error(c, "--%s: %lld is out of range (%.17g .. %.17g)", o->name,
                               (long long)x, o->lo, o->hi);
        *(int64_t *)o->dst = x;
        return CLI_CONTINUE;
    }
    case CLI_FLOAT: {
        double x;
        if (!cli_parse_f64(v, &x))
            return usage_error(c, "--%s: '%s' is not a finite number", o->name, v);
        if ((o->lo != 0 || o->hi != 0) && (x < o->lo || x > o->hi))
            return usage_error(c, "--%s: %g is out of range (%g .. %g)", o->name, x, o->lo, o->hi);
        *(double *)o->dst = x;
        return CLI_CONTINUE;
    }
    case CLI_CHOICE:
        if (!in_choices(o->choices, v, strlen(v))) {
            choices_text(o->choices, ch, sizeof ch);
            return usage_error(c, "--%s: '%s' is not one of %s", o->name, v, ch);
        }
        *(const char **)o->dst = v;
        return CLI_CONTINUE;
    case CLI_CHOICES: {
        const char *p = v;
        for (;;) {
            const char *e = strchr(p, ',');
            size_t n = e ? (size_t)(e - p) : strlen(p);
            if (!in_choices(o->choices, p, n)) {
                choices_text(o->choices, ch, sizeof ch);
                return usage_error(c, "--%s: '%.*s' in '%s' is not one of %s", o->name, (int)n, p,
                                   v, ch);
            }
            if (!e) break;
            p = e + 1;
        }
        *(const char **)o->dst = v;
        return CLI_CONTINUE;
    }
    case CLI_LIST:
        if (!*v) return usage_error(c, "--%s: the value is empty", o->name);
        if (list_push((cli_list *)o->dst, v))
            return cli_fail(CLI_EXIT_FAIL, c->name, "out of memory");
        return CLI_CONTINUE;
    }
    return cli_fail(CLI_EXIT_FAIL, c->name, "internal error: option kind %d", (int)o->kind);
}

int cli_parse(const cli_cmd *c, int argc, char **argv, int *n_pos) {
    *n_pos = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--")) break;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            cli_print_help(c);
            return CLI_EXIT_OK;
        }
    }
    int n_opts = 0;
    for (int g = 0; g < c->n_groups; g++) n_opts += c->groups[g].n;
    /* Which options were given, by position in the flattened tables. */
    bool *seen = calloc((size_t)n_opts + 1, 1);
    if (!seen) return cli_fail(CLI_EXIT_FAIL, c->name, "out of memory");
    int rc = CLI_CONTINUE, np = 0;
    bool only_pos = false;
    for (int i = 0; i < argc && rc == CLI_CONTINUE; i++) {
        char *a = argv[i];
        if (only_pos || a[0] != '-' || !a[1]) {
            argv[np++] = a;
            continue;
        }
        if (!strcmp(a, "--")) {
            only_pos = true;
            continue;
        }
        const cli_opt *o;
        const char *val = NULL;
        char shown[96];
        if (a[1] == '-') {
            const char *name = a + 2, *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            o = find_long(c, name, len);
            if (!o) {
                const char *s = suggest(c, name, len);
                if (s)
                    rc = usage_error(c, "unknown option '--%.*s'; did you mean '--%s'?", (int)len,
                                     name, s);
                else
                    rc = usage_error(c, "unknown option '--%.*s'", (int)len, name);
                break;
            }
            if (eq) val = eq + 1;
            snprintf(shown, sizeof shown, "--%s", o->name);
        } else {
            o = find_short(c, a[1]);
            if (!o) {
                rc = usage_error(c, "unknown option '-%c'", a[1]);
                break;
            }
            if (a[2]) {
                if (o->kind == CLI_FLAG) {
                    rc = usage_error(c, "unknown option '%s'", a);
                    break;
                }
                val = a + 2;
            }
            snprintf(shown, sizeof shown, "-%c", o->short_name);
        }
        if (o->kind == CLI_FLAG) {
            if (val) {
                rc = usage_error(c, "option '%s' takes no value", shown);
                break;
            }
        } else if (!val) {
            if (i + 1 >= argc) {
                rc = usage_error(c, "option '%s' needs a value (%s)", shown,
                                 o->metavar ? o->metavar : "VALUE");
                break;
            }
            /* "--data --json" is a forgotten value, not a directory called "--json". */
            if (argv[i + 1][0] == '-' && argv[i + 1][1] == '-') {
                rc = usage_error(c, "option '%s' needs a value (%s), got option '%s'", shown,
                                 o->metavar ? o->metavar : "VALUE", argv[i + 1]);
                break;
            }
            val = argv[++i];
        }
        rc = store(c, o, val);
        int k = 0;
        for (int g = 0; g < c->n_groups; g++)
            for (int j = 0; j < c->groups[g].n; j++, k++)
                if (&c->groups[g].opts[j] == o) {
                    seen[k] = true;
                    if (o->seen) *o->seen = true;
                    if (c->groups[g].given) (*c->groups[g].given)++;
                }
    }
    if (rc == CLI_CONTINUE) {
        int k = 0;
        for (int g = 0; g < c->n_groups && rc == CLI_CONTINUE; g++)
            for (int j = 0; j < c->groups[g].n; j++, k++) {
                const cli_opt *o = &c->groups[g].opts[j];
                if (o->required && !seen[k]) {
                    rc = usage_error(c, "option '--%s %s' is required", o->name,
                                     o->metavar ? o->metavar : "VALUE");
                    break;
                }
            }
    }
    free(seen);
    if (rc != CLI_CONTINUE) return rc;
    if (np < c->min_pos)
        return usage_error(c, "missing %s", c->pos_name ? c->pos_name : "argument");
    if (c->max_pos >= 0 && np > c->max_pos)
        return usage_error(c, "unexpected argument '%s'", argv[c->max_pos]);
    *n_pos = np;
    return CLI_CONTINUE;
}

/* ---- shared helpers ---- */

at_graph *cli_load_graph(const char *cmd, const char *path, int *code) {
    at_err e = {0};
    at_graph *g = at_graph_load(path, &e);
    if (!g) {
        *code = cli_exit_for_input(e.code);
        /* The loader's messages start with the path already. */
        if (strncmp(e.msg, path, strlen(path)) == 0)
            cli_fail(*code, cmd, "%s", e.msg);
        else
            cli_fail(*code, cmd, "%s: %s", path, e.msg);
    }
    return g;
}

const char *cli_value_kind_name(at_value_kind k) {
    switch (k) {
    case AT_VALUE_INPUT:
        return "input";
    case AT_VALUE_PARAM:
        return "parameter";
    case AT_VALUE_CONST:
        return "constant";
    case AT_VALUE_STATE:
        return "state";
    case AT_VALUE_INTERMEDIATE:
        return "intermediate value";
    }
    return "value";
}

int cli_mkdirs(const char *path) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char keep = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
        buf[i] = keep;
    }
    struct stat sb;
    if (stat(path, &sb) != 0) return -1;
    if (!S_ISDIR(sb.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}
