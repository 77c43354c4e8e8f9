/* attune build: a fresh joint NLU model from a preset and options, written as a model file. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#define CMD "build"

int cmd_build(int argc, char **argv) {
    cli_cfg_opts co;
    cli_cfg_init(&co);
    const char *data = NULL, *out = NULL;
    const cli_opt io[] = {
        {.name = "data",
         .kind = CLI_STR,
         .dst = &data,
         .metavar = "DIR",
         .required = true,
         .help = "dataset folder; the vocabularies and label sets come from DIR/train"},
        {.name = "output",
         .short_name = 'o',
         .kind = CLI_STR,
         .dst = &out,
         .metavar = "FILE",
         .required = true,
         .help = "the model file to write (.onnx)"},
        cli_cfg_row(&co, "seed"),
    };
    cli_opt arch[CLI_CFG_MAX];
    int na = cli_cfg_rows(&co, CLI_CFG_ARCH, arch);
    const cli_group groups[] = {CLI_GROUP("Input and output", io), {"Model", arch, na, NULL}};
    const cli_cmd c = {
        .name = CMD,
        .usage = "--data DIR -o MODEL.onnx [--preset joint-nlu] [model options]",
        .summary = "Build an untrained joint intent + slot model and write it as a model file.",
        .about = "The model file holds the inference graph, freshly initialized weights (from "
                 "--seed), the vocabularies and label sets of DIR/train, and the configuration "
                 "(training settings at their defaults). Train it with 'attune train'.",
        .epilog = "Example:\n  attune build --data data/sample --layers 2 --kind bilstm --attn1 "
                  "additive -o model.onnx",
        .groups = groups,
        .n_groups = 2,
        .min_pos = 0,
        .max_pos = 0,
    };
    int n_pos, rc = cli_parse(&c, argc, argv, &n_pos);
    if (rc != CLI_CONTINUE) return rc;
    at_nlu_config cfg = at_nlu_config_default();
    if ((rc = cli_cfg_apply(CMD, &co, &cfg)) != CLI_CONTINUE) return rc;
    if ((rc = cli_check_out_dir(CMD, "-o", out)) != CLI_CONTINUE) return rc;
    at_split *train = NULL;
    if ((rc = cli_read_split(CMD, data, "train", &train)) != CLI_CONTINUE) return rc;

    at_err e = {0};
    at_nlu_model *m = NULL;
    at_status st = at_nlu_model_from_split(&m, &cfg, train, &e);
    at_split_free(train);
    if (st != AT_OK) return cli_fail(cli_exit_for_work(st), CMD, "%s", e.msg);
    st = at_nlu_save(m, out, &e);
    if (st != AT_OK) {
        at_nlu_model_free(m);
        /* The library's message names the file already. */
        return cli_fail(CLI_EXIT_FAIL, CMD, "%s", e.msg);
    }
    char desc[512];
    cli_model_describe(m, desc, sizeof desc);
    printf("wrote %s: %s\n", out, desc);
    at_nlu_model_free(m);
    return CLI_EXIT_OK;
}
