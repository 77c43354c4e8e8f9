/* attune: the command. Dispatches to the subcommands (DESIGN.md section 7). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "attune/attune.h"
#include "cli.h"

static const cli_sub SUBS[] = {
    {"build", "build a joint NLU model from a preset and options into a model file", cmd_build},
    {"train", "train a model on a dataset folder (phases, checkpoints, metrics)", cmd_train},
    {"eval", "evaluate a model on a split: intent accuracy, slot F1, sentence accuracy", cmd_eval},
    {"predict", "predict intents and slots for sentences (JSON lines)", cmd_predict},
    {"run", "run any graph file on .npy inputs and write its outputs as .npy", cmd_run},
    {"inspect", "show a graph file as text, Graphviz DOT, or a summary", cmd_inspect},
    {"bench", "time training steps or inference of a model (one JSON line)", cmd_bench},
};
#define N_SUBS ((int)(sizeof SUBS / sizeof SUBS[0]))

static void usage(FILE *f) {
    fprintf(f, "Usage: attune COMMAND [options]\n\n"
               "A tensor-graph engine with autodiff, and a joint intent + slot model built on "
               "it.\n\nCommands:\n");
    for (int i = 0; i < N_SUBS; i++) fprintf(f, "  %-9s %s\n", SUBS[i].name, SUBS[i].summary);
    fprintf(f, "\nOptions:\n"
               "  -h, --help     show this help and exit\n"
               "      --version  print the version and exit\n\n"
               "'attune COMMAND --help' (or 'attune help COMMAND') describes a command.\n"
               "Exit status: 0 success, 1 failure, 2 bad usage or bad input.\n");
}

static const cli_sub *find_sub(const char *name) {
    for (int i = 0; i < N_SUBS; i++)
        if (!strcmp(SUBS[i].name, name)) return &SUBS[i];
    return NULL;
}

static int unknown_command(const char *name) {
    char list[256] = "";
    size_t n = 0;
    for (int i = 0; i < N_SUBS; i++)
        n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", SUBS[i].name);
    return cli_fail(CLI_EXIT_USAGE, NULL,
                    "unknown command '%s' (commands: %s; see 'attune --help')", name, list);
}

/* Output that never arrived (a full disk, a closed pipe) is a failure, whatever printed it. */
static int finish(int rc) {
    if (fflush(stdout) != 0 || ferror(stdout)) {
        if (rc == CLI_EXIT_OK)
            rc = cli_fail(CLI_EXIT_FAIL, NULL, "writing to stdout failed: %s", strerror(errno));
    }
    return rc;
}

static int dispatch(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *a = argv[1];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if (!strcmp(a, "--version")) {
        printf("attune %s (library %s)\n", AT_VERSION_STRING, at_version());
        return CLI_EXIT_OK;
    }
    if (!strcmp(a, "help")) {
        if (argc == 2) {
            usage(stdout);
            return CLI_EXIT_OK;
        }
        const cli_sub *s = find_sub(argv[2]);
        if (!s) return unknown_command(argv[2]);
        char help[] = "--help";
        char *args[] = {help, NULL};
        return s->main(1, args);
    }
    if (a[0] == '-')
        return cli_fail(CLI_EXIT_USAGE, NULL, "unknown option '%s' (see 'attune --help')", a);
    const cli_sub *s = find_sub(a);
    if (!s) return unknown_command(a);
    return s->main(argc - 2, argv + 2);
}

int main(int argc, char **argv) {
    return finish(dispatch(argc, argv));
}
