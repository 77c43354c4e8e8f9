/* The `attune` command: what the subcommands share. Not installed, not public API.
 *
 * Exit codes (DESIGN.md section 7): 0 success, 1 failure, 2 bad usage or bad input. Every
 * error is one line on stderr that starts with "attune: ". */
#ifndef ATTUNE_TOOLS_CLI_H
#define ATTUNE_TOOLS_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "attune/attune.h"
#include "attune/dataset.h"
#include "attune/metrics.h"
#include "attune/nlu.h"

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
    bool *seen;          /* may be NULL; cli_parse sets it when the option is given */
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
bool cli_is_dir(const char *path);
bool cli_is_file(const char *path);
/* The folder an output file goes to must exist, and the path must name a file: failing after an
 * hour of training because of a typo in -o is the worst time to learn of it. Names the part of
 * the path at fault (a file where a folder should be). Returns CLI_CONTINUE or the exit code. */
int cli_check_out_dir(const char *cmd, const char *opt, const char *path);
/* The same for a folder that will be created (mkdir -p): no part of dir may be a file.
 * CLI_CONTINUE or the exit code. */
int cli_check_dir_path(const char *cmd, const char *opt, const char *dir);
/* JSON string (with the quotes) of s to f; bytes below 0x20, '"' and '\\' escaped. */
void cli_json_str(FILE *f, const char *s);
/* XML text of s to f ('<', '>', '&', '"' and '\'' escaped). */
void cli_xml_str(FILE *f, const char *s);

/* ---- the NLU model commands (model_opts.c) ---- */

/* Options that set fields of at_nlu_config. Each row keeps its value and whether it was given
 * inside the table, and cli_opt rows point there: initialize the table in place and keep it
 * where it is while the rows are in use (copies of the rows are fine). */
#define CLI_CFG_MAX 64

typedef enum cli_cfg_set {
    CLI_CFG_ARCH,   /* architecture and vocabularies: fixed once a model is built */
    CLI_CFG_SCHED,  /* epochs, batch, optimizer, dropout, patience, selection */
    CLI_CFG_ADV,    /* the adversarial term */
    CLI_CFG_ROBUST, /* adversarial training and VAT */
    CLI_CFG_DATA,   /* label fraction */
    CLI_CFG_SEED,   /* the seed */
} cli_cfg_set;

typedef union cli_val {
    int64_t i;
    double f;
    const char *s;
    bool b;
} cli_val;

typedef struct cli_cfg_opts {
    int n;
    cli_opt opt[CLI_CFG_MAX];
    cli_cfg_set set[CLI_CFG_MAX];
    const char *key[CLI_CFG_MAX]; /* the config key, or a name starting with '+' done by hand */
    bool seen[CLI_CFG_MAX];
    cli_val val[CLI_CFG_MAX];
} cli_cfg_opts;

/* Every config option, its default shown as at_nlu_config_default() has it. */
void cli_cfg_init(cli_cfg_opts *o);
/* Copies the rows of one set to out (room for CLI_CFG_MAX) and returns how many. */
int cli_cfg_rows(const cli_cfg_opts *o, cli_cfg_set set, cli_opt *out);
/* The row of one option by name (which must exist). */
cli_opt cli_cfg_row(const cli_cfg_opts *o, const char *name);
/* The first option of a set that was given, or NULL. */
const char *cli_cfg_given(const cli_cfg_opts *o, cli_cfg_set set);
/* Applies the options that were given (only those; --preset first) on top of cfg, then checks
 * the result, naming the options at fault. CLI_CONTINUE or the exit code (message printed). */
int cli_cfg_apply(const char *cmd, const cli_cfg_opts *o, at_nlu_config *cfg);

/* Reads split folder dir/sub (sub may be NULL: dir itself). The reader's messages name the
 * file and line. CLI_CONTINUE or the exit code. */
int cli_read_split(const char *cmd, const char *dir, const char *sub, at_split **out);
/* Loads a model file or (ckpt_info non-NULL) a training checkpoint. */
int cli_load_model(const char *cmd, const char *path, at_checkpoint_info *ckpt_info,
                   at_nlu_model **out);
/* Gives *m the configuration cfg: when it differs from the model's, the model is built again
 * from cfg and its vocabularies, and every parameter and optimizer state value whose name,
 * dtype and shape agree is copied over (the rest starts fresh: D when a model file had none).
 * CLI_CONTINUE or the exit code. */
int cli_model_reconfigure(const char *cmd, at_nlu_model **m, const at_nlu_config *cfg);
/* The model's session on device ("cpu" or "cuda") with threads, seed and CLI_SESSION_* flags
 * (PACK_TRAINED: commands that only predict pack the trained weights, at_session_opts). */
enum { CLI_SESSION_CHECK_FINITE = 1, CLI_SESSION_PROFILE = 2, CLI_SESSION_PACK_TRAINED = 4 };
int cli_model_session(const char *cmd, at_nlu_model *m, const char *device, int64_t threads,
                      uint64_t seed, unsigned flags);
/* For --device cuda: fails (exit 1, naming the reason) where no CUDA device can be used. */
int cli_check_device(const char *cmd, const char *device);
/* The encoder kind, G on or off, attention kinds and parameter count, for a log line. */
void cli_model_describe(at_nlu_model *m, char *buf, size_t cap);

#endif
