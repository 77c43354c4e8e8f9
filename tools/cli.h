/* The `attune` command: what the subcommands share. Not installed, not public API.
 *
 * Exit codes (DESIGN.md section 7): 0 success, 1 failure, 2 bad usage or bad input. Every
 * error is one line on stderr that starts with "attune: ". */
#ifndef ATTUNE_TOOLS_CLI_H
#define ATTUNE_TOOLS_CLI_H

#include <stdbool.h>
#include <stdint.h>

/* Not attune.h: its ops.h declares the builder at_split(), which collides with dataset.h's
 * at_split type, and the model commands need the latter. */
#include "attune/graph.h"
#include "attune/io.h"
#include "attune/session.h"
#include "attune/status.h"
#include "attune/tensor.h"

#define CLI_EXIT_OK    0
#define CLI_EXIT_FAIL  1
#define CLI_EXIT_USAGE 2
/* Returned by cli_parse when the subcommand should go on. */
#define CLI_CONTINUE (-1)

/* "attune: <cmd>: <message>\n" on stderr (cmd may be NULL). Always returns code. */
int cli_fail(int code, const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* The exit code for a status from reading what the user gave us (a model file, a .npy, a data
 * folder): the content or the path is the user's to fix (2), unless the machine failed (1). */
int cli_exit_for_input(at_status st);
/* The exit code for a status from doing the work (running, writing results): bad data that
 * reaches a kernel (an index out of range, a shape that does not fit) is still the input's
 * fault (2); everything else is a failure (1). */
int cli_exit_for_work(at_status st);

/* ---- options ---- */

typedef enum cli_kind {
    CLI_FLAG,    /* bool *; takes no value */
    CLI_STR,     /* const char **; any value */
    CLI_INT,     /* int64_t *; decimal, within [lo, hi] */
    CLI_FLOAT,   /* double *; finite, within [lo, hi] */
    CLI_CHOICE,  /* const char **; one of choices ("cpu|cuda") */
    CLI_CHOICES, /* const char **; comma-separated, each one of choices ("bilstm,transformer") */
    CLI_LIST,    /* cli_list *; repeatable, each occurrence appends its value */
} cli_kind;

typedef struct cli_list {
    int n, cap;
    const char **v; /* point into argv */
} cli_list;

void cli_list_free(cli_list *l);

typedef struct cli_opt {
    const char *name; /* long name without the dashes: "epochs" */
    char short_name;  /* 'o', or 0 */
    cli_kind kind;
    void *dst;
    const char *metavar; /* "N", "DIR"; NULL for flags */
    const char *help;
    const char *choices; /* CLI_CHOICE / CLI_CHOICES */
    double lo, hi;       /* CLI_INT / CLI_FLOAT range; lo == hi == 0: any value */
    bool required;       /* cli_parse fails when the option is absent */
} cli_opt;

/* Table rows. Ranges are inclusive. */
#define CLI_OPT_FLAG(nm, d, h)                                                                     \
    { .name = (nm), .kind = CLI_FLAG, .dst = (d), .help = (h) }
#define CLI_OPT_STR(nm, d, mv, h)                                                                  \
    { .name = (nm), .kind = CLI_STR, .dst = (d), .metavar = (mv), .help = (h) }
#define CLI_OPT_INT(nm, d, l, u, h)                                                                \
    { .name = (nm), .kind = CLI_INT, .dst = (d), .metavar = "N", .help = (h), .lo = (l), .hi = (u) }
#define CLI_OPT_FLOAT(nm, d, l, u, h)                                                              \
    {                                                                                              \
        .name = (nm), .kind = CLI_FLOAT, .dst = (d), .metavar = "X", .help = (h), .lo = (l),       \
        .hi = (u)                                                                                  \
    }
#define CLI_OPT_CHOICE(nm, d, ch, h)                                                               \
    {                                                                                              \
        .name = (nm), .kind = CLI_CHOICE, .dst = (d), .metavar = "NAME", .help = (h),              \
        .choices = (ch)                                                                            \
    }
#define CLI_OPT_CHOICES(nm, d, ch, h)                                                              \
    {                                                                                              \
        .name = (nm), .kind = CLI_CHOICES, .dst = (d), .metavar = "LIST", .help = (h),             \
        .choices = (ch)                                                                            \
    }
#define CLI_OPT_LIST(nm, d, mv, h)                                                                 \
    { .name = (nm), .kind = CLI_LIST, .dst = (d), .metavar = (mv), .help = (h) }

/* A titled block of options in the help text. */
typedef struct cli_group {
    const char *title;
    const cli_opt *opts;
    int n;
    int *given; /* may be NULL; cli_parse adds 1 for each option of the group given */
} cli_group;

#define CLI_GROUP(title, arr)                                                                      \
    ((cli_group){(title), (arr), (int)(sizeof(arr) / sizeof((arr)[0])), NULL})
#define CLI_GROUP_COUNTED(title, arr, cnt)                                                         \
    ((cli_group){(title), (arr), (int)(sizeof(arr) / sizeof((arr)[0])), (cnt)})

typedef struct cli_cmd {
    const char *name;    /* "run" */
    const char *usage;   /* after "attune run ": "MODEL --input NAME=FILE.npy ... [options]" */
    const char *summary; /* one line, also in the global help */
    const char *about;   /* paragraphs after the usage line; may be NULL */
    const char *epilog;  /* examples, after the options; may be NULL */
    const cli_group *groups;
    int n_groups;
    int min_pos, max_pos; /* positional arguments; max_pos < 0: no limit */
    const char *pos_name; /* "MODEL", for "missing MODEL" */
} cli_cmd;

/* Parses argv[0..argc) (the words after the subcommand's name). Option values land in the
 * dst of each option; positional arguments are moved, in order, to argv[0..*n_pos). "--"
 * ends the options; "-" alone is a positional argument. "--help" or "-h" anywhere before
 * "--" prints the help to stdout (defaults read from the dst values as they are when
 * cli_parse starts) and returns 0. Returns CLI_CONTINUE when the command should go on,
 * otherwise the exit code, having printed the message. */
int cli_parse(const cli_cmd *c, int argc, char **argv, int *n_pos);
void cli_print_help(const cli_cmd *c);

/* Strict number parsing: the whole string, no overflow, finite. */
bool cli_parse_i64(const char *s, int64_t *out);
bool cli_parse_f64(const char *s, double *out);

/* ---- subcommands (each returns the process's exit code) ---- */

typedef struct cli_sub {
    const char *name;
    const char *summary;
    int (*main)(int argc, char **argv); /* argv: the words after the name */
} cli_sub;

int cmd_build(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_bench(int argc, char **argv);

/* ---- shared helpers ---- */

/* Loads a graph file; on error prints "attune: <cmd>: <message naming the file>" and returns
 * NULL with *code set to the exit code. */
at_graph *cli_load_graph(const char *cmd, const char *path, int *code);
/* The name of a value kind for messages: "input", "parameter", ... */
const char *cli_value_kind_name(at_value_kind k);
/* mkdir -p; 0 on success, else -1 with errno set. */
int cli_mkdirs(const char *path);

#endif
