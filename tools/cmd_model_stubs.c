/* attune build / train / eval / predict / bench: their options, parsed and checked.
 *
 * The NLU model library (include/attune/nlu.h, models/) is not part of this build yet, so after
 * checking everything they can check without it (options, the model file, the data folders),
 * these commands stop with exit status 1 and "not built yet". Wiring one to the model means
 * mapping model_opts / train_opts onto the model's config and replacing not_built(). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "attune/dataset.h"
#include "cli.h"

#define ATTN_SCORES "additive|multiplicative|dot|scaled-dot|multi-head|key-value|neg-distance"

/* ---- model options (build; train and bench when they build the model) ---- */

typedef struct model_opts {
    const char *preset;
    int64_t layers;
    const char *kind;
    int64_t emb, dim, heads, ffn, max_positions;
    const char *generator; /* on|off; NULL: as the preset says */
    int64_t gen_dim, gen_layers, gen_heads;
    const char *attn1, *attn2;
    int64_t attn_size, attn_heads;
    bool hard1, hard2, slot_gate;
    int64_t disc_channels, disc_hidden;
    const char *disc_widths;
    const char *disc_input;
    double dropout;
    bool crf;
    int64_t char_dim, char_channels;
    int64_t word_min_count, max_words;
} model_opts;

static model_opts model_defaults(void) {
    return (model_opts){
        .preset = "joint-nlu",
        .layers = 2,
        .kind = "transformer",
        .emb = 128,
        .dim = 256,
        .heads = 4,
        .ffn = 0,
        .max_positions = 128,
        .gen_dim = 128,
        .gen_layers = 1,
        .gen_heads = 4,
        .attn1 = "additive",
        .attn2 = "additive",
        .attn_size = 128,
        .attn_heads = 4,
        .disc_channels = 64,
        .disc_hidden = 64,
        .disc_widths = "3,5",
        .disc_input = "hard",
        .dropout = 0.2,
        .char_dim = 0,
        .char_channels = 64,
        .word_min_count = 1,
        .max_words = 0,
    };
}

#define N_MODEL_OPTS 29

static int model_table(model_opts *m, cli_opt *t) {
    const cli_opt rows[] = {
        CLI_OPT_CHOICE("preset", &m->preset, "joint-nlu|baseline",
                       "joint-nlu: the model of DESIGN.md section 6; baseline: the same with the "
                       "generator off (the ablation)"),
        CLI_OPT_INT("layers", &m->layers, 1, 8, "encoder layers L"),
        CLI_OPT_CHOICE("kind", &m->kind, "transformer|bilstm",
                       "encoder layer kind (pre-LN transformer, or bidirectional LSTM)"),
        CLI_OPT_INT("emb", &m->emb, 1, 65536, "word embedding size"),
        CLI_OPT_INT("dim", &m->dim, 2, 65536,
                    "encoder width d (a bilstm layer has d/2 per direction)"),
        CLI_OPT_INT("heads", &m->heads, 1, 1024, "self-attention heads of transformer layers"),
        CLI_OPT_INT("ffn", &m->ffn, 0, 1 << 20, "feed-forward width of transformer layers; 0 = 4d"),
        CLI_OPT_INT("max-positions", &m->max_positions, 1, AT_DATA_MAX_TOKENS,
                    "the longest sentence a transformer encoder takes (learned positions)"),
        CLI_OPT_CHOICE("generator", &m->generator, "on|off",
                       "the GAN-driven attention weighting G (default: on for joint-nlu, off "
                       "for baseline)"),
        CLI_OPT_INT("gen-dim", &m->gen_dim, 1, 65536, "generator width d_g"),
        CLI_OPT_INT("gen-layers", &m->gen_layers, 1, 64, "generator transformer layers"),
        CLI_OPT_INT("gen-heads", &m->gen_heads, 1, 1024, "generator attention heads"),
        CLI_OPT_CHOICE("attn1", &m->attn1, ATTN_SCORES,
                       "scoring function of the first attention component (intent)"),
        CLI_OPT_CHOICE("attn2", &m->attn2, ATTN_SCORES,
                       "scoring function of the second attention component (slots)"),
        CLI_OPT_INT("attn-size", &m->attn_size, 1, 65536, "attention size"),
        CLI_OPT_INT("attn-heads", &m->attn_heads, 1, 1024, "heads of multi-head scoring"),
        CLI_OPT_FLAG("hard-attn1", &m->hard1,
                     "hard attention (straight-through Gumbel-softmax) in the first component"),
        CLI_OPT_FLAG("hard-attn2", &m->hard2, "hard attention in the second component"),
        CLI_OPT_FLAG("slot-gate", &m->slot_gate, "gate the slot decoder by the intent context"),
        CLI_OPT_INT("disc-channels", &m->disc_channels, 1, 65536,
                    "discriminator channels per kernel width"),
        CLI_OPT_STR("disc-widths", &m->disc_widths, "LIST",
                    "discriminator Conv1d kernel widths, comma-separated"),
        CLI_OPT_INT("disc-hidden", &m->disc_hidden, 1, 65536, "discriminator first FC size"),
        CLI_OPT_CHOICE("disc-input", &m->disc_input, "hard|soft",
                       "what D sees: one-hot labels (straight-through on the fake side) or "
                       "label-smoothed gold against the predicted softmax"),
        CLI_OPT_FLOAT("dropout", &m->dropout, 0, 0.99, "dropout rate"),
        CLI_OPT_INT("char-dim", &m->char_dim, 0, 4096,
                    "character embedding size of the char CNN word features; 0 = off"),
        CLI_OPT_INT("char-channels", &m->char_channels, 1, 65536, "character CNN channels"),
        CLI_OPT_FLAG("crf", &m->crf, "linear-chain CRF on the slot logits (Viterbi decoding)"),
        CLI_OPT_INT("word-min-count", &m->word_min_count, 0, 1 << 30,
                    "words seen fewer times in training become <unk>"),
        CLI_OPT_INT("max-words", &m->max_words, 0, 1 << 30,
                    "cap on the word vocabulary size; 0 = none"),
    };
    _Static_assert(sizeof rows / sizeof rows[0] == N_MODEL_OPTS, "N_MODEL_OPTS");
    memcpy(t, rows, sizeof rows);
    return N_MODEL_OPTS;
}

/* Cross-option checks the parser cannot make. */
static int check_model(const char *cmd, model_opts *m) {
    if (!m->generator) m->generator = strcmp(m->preset, "baseline") ? "on" : "off";
    bool transformer = !strcmp(m->kind, "transformer"), bilstm = !transformer;
    if (transformer && m->dim % m->heads)
        return cli_fail(CLI_EXIT_USAGE, cmd, "--dim %lld is not a multiple of --heads %lld",
                        (long long)m->dim, (long long)m->heads);
    if ((bilstm || !strcmp(m->attn1, "key-value") || !strcmp(m->attn2, "key-value")) && m->dim % 2)
        return cli_fail(CLI_EXIT_USAGE, cmd,
                        "--dim %lld must be even (a bilstm layer splits it into two directions; "
                        "key-value attention into a key and a value half)",
                        (long long)m->dim);
    if (!strcmp(m->generator, "on") && m->gen_dim % m->gen_heads)
        return cli_fail(CLI_EXIT_USAGE, cmd, "--gen-dim %lld is not a multiple of --gen-heads %lld",
                        (long long)m->gen_dim, (long long)m->gen_heads);
    if ((!strcmp(m->attn1, "multi-head") || !strcmp(m->attn2, "multi-head")) &&
        m->attn_size % m->attn_heads)
        return cli_fail(CLI_EXIT_USAGE, cmd,
                        "--attn-size %lld is not a multiple of --attn-heads %lld",
                        (long long)m->attn_size, (long long)m->attn_heads);
    const char *p = m->disc_widths;
    for (;;) {
        char item[32];
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        snprintf(item, sizeof item, "%.*s", (int)(n < sizeof item ? n : sizeof item - 1), p);
        int64_t w;
        if (n >= sizeof item || !cli_parse_i64(item, &w) || w < 1 || w > 31)
            return cli_fail(CLI_EXIT_USAGE, cmd,
                            "--disc-widths: '%s' is not a comma-separated list of widths 1..31",
                            m->disc_widths);
        if (!e) break;
        p = e + 1;
    }
    return CLI_CONTINUE;
}

/* ---- shared checks ---- */

static int not_built(const char *cmd) {
    return cli_fail(CLI_EXIT_FAIL, cmd,
                    "not built yet: this build has no NLU model library (include/attune/nlu.h); "
                    "the options and inputs were checked");
}

static bool is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static bool is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Reads split folder dir[/sub] to check it; the reader's messages name file and line. */
static int check_split(const char *cmd, const char *dir, const char *sub) {
    char path[4096];
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return cli_fail(CLI_EXIT_USAGE, cmd, "%s: %s", dir,
                        errno == ENOENT ? "no such folder" : strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return cli_fail(CLI_EXIT_USAGE, cmd, "%s: not a folder", dir);
    if (sub)
        snprintf(path, sizeof path, "%s/%s", dir, sub);
    else
        snprintf(path, sizeof path, "%s", dir);
    if (sub && !is_dir(path))
        return cli_fail(CLI_EXIT_USAGE, cmd,
                        "%s: no such folder (a dataset folder holds train/, valid/ and test/, "
                        "each with seq.in, seq.out and label)",
                        path);
    at_split *s = NULL;
    at_err e = {0};
    at_status st = at_dataset_split(&s, path, &e);
    at_split_free(s);
    if (st != AT_OK) return cli_fail(cli_exit_for_input(st), cmd, "%s", e.msg);
    return CLI_CONTINUE;
}

static int check_readable(const char *cmd, const char *opt, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return cli_fail(CLI_EXIT_USAGE, cmd, "%s%s%s: %s", opt ? opt : "", opt ? " " : "", path,
                        strerror(errno));
    fclose(f);
    if (!is_file(path))
        return cli_fail(CLI_EXIT_USAGE, cmd, "%s%s%s: not a regular file", opt ? opt : "",
                        opt ? " " : "", path);
    return CLI_CONTINUE;
}

/* The folder an output file goes to must exist: failing after an hour of training because
 * of a typo in -o is the worst time to learn of it. */
static int check_out_dir(const char *cmd, const char *opt, const char *path) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) return CLI_CONTINUE;
    if (slash == dir) return CLI_CONTINUE;
    *slash = 0;
    if (!is_dir(dir))
        return cli_fail(CLI_EXIT_USAGE, cmd, "%s %s: the folder %s does not exist", opt, path, dir);
    return CLI_CONTINUE;
}

static int check_model_file(const char *cmd, const char *path) {
    int rc = CLI_CONTINUE;
    at_graph *g = cli_load_graph(cmd, path, &rc);
    if (!g) return rc;
    at_graph_free(g);
    return CLI_CONTINUE;
}

/* ---- build ---- */

int cmd_build(int argc, char **argv) {
    model_opts m = model_defaults();
    const char *data = NULL, *out = NULL;
    cli_opt mt[N_MODEL_OPTS];
    int nm = model_table(&m, mt);
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
    };
    const cli_group groups[] = {CLI_GROUP("Input and output", io), {"Model", mt, nm, NULL}};
    const cli_cmd c = {
        .name = "build",
        .usage = "--data DIR -o MODEL.onnx [--preset joint-nlu] [model options]",
        .summary = "Build an untrained joint intent + slot model and write it as a model file.",
        .about = "The model file holds the graph, freshly initialized weights, the "
                 "vocabularies and label sets of DIR/train, and the configuration. Train it with "
                 "'attune train'.",
        .epilog = "Example:\n  attune build --data data/sample --layers 2 --kind bilstm --attn1 "
                  "additive -o model.onnx",
        .groups = groups,
        .n_groups = 2,
        .min_pos = 0,
        .max_pos = 0,
    };
    int n_pos, rc = cli_parse(&c, argc, argv, &n_pos);
    if (rc != CLI_CONTINUE) return rc;
    if ((rc = check_model("build", &m)) != CLI_CONTINUE) return rc;
    if ((rc = check_split("build", data, "train")) != CLI_CONTINUE) return rc;
    if ((rc = check_out_dir("build", "-o", out)) != CLI_CONTINUE) return rc;
    return not_built("build");
}

/* ---- train ---- */

static int phase_of(const char *s, size_t n) {
    static const char *names[3] = {"base", "gan", "joint"};
    for (int i = 0; i < 3; i++)
        if ((n == 1 && s[0] == '0' + i) || (n == strlen(names[i]) && !strncmp(s, names[i], n)))
            return i;
    return -1;
}

/* "1", "0-2", "gan-joint". */
static int check_phases(const char *v) {
    const char *dash = strchr(v, '-');
    int a = phase_of(v, dash ? (size_t)(dash - v) : strlen(v));
    int b = dash ? phase_of(dash + 1, strlen(dash + 1)) : a;
    if (a < 0 || b < 0)
        return cli_fail(CLI_EXIT_USAGE, "train",
                        "--phases: '%s' is not a phase or a range of phases (0, 1, 2, 0-2, "
                        "base-joint)",
                        v);
    if (a > b)
        return cli_fail(CLI_EXIT_USAGE, "train",
                        "--phases: '%s' runs backwards; phases run "
                        "in order",
                        v);
    return CLI_CONTINUE;
}

typedef struct train_opts {
    const char *data, *out, *phases;
    int64_t epochs[3];
    const char *mode;
    int64_t d_steps;
    double lambda_max, gamma, beta;
    const char *reg;
    int64_t batch;
    double lr, weight_decay, clip, word_dropout;
    const char *unlabelled;
    double label_fraction;
    int64_t patience, max_steps;
    double time_limit;
    const char *select;
    const char *device;
    int64_t threads, seed;
    int64_t ckpt_every;
    const char *ckpt_dir, *resume, *metrics, *plot, *progress;
    bool check_finite;
} train_opts;

int cmd_train(int argc, char **argv) {
    model_opts m = model_defaults();
    train_opts t = {
        .epochs = {20, 3, 10},
        .mode = "gan",
        .d_steps = 1,
        .lambda_max = 0.1,
        .gamma = 10,
        .beta = 0.01,
        .reg = "l2",
        .batch = 32,
        .lr = 1e-3,
        .weight_decay = 0.01,
        .clip = 5,
        .word_dropout = 0,
        .label_fraction = 1,
        .patience = 5,
        .select = "sentence",
        .device = "cpu",
        .threads = 0,
        .seed = 1,
        .ckpt_every = 0,
        .progress = "auto",
    };
    int model_given = 0;
    cli_opt mt[N_MODEL_OPTS];
    int nm = model_table(&m, mt);
    const cli_opt io[] = {
        {.name = "data",
         .kind = CLI_STR,
         .dst = &t.data,
         .metavar = "DIR",
         .required = true,
         .help = "dataset folder with train/ and valid/ (and test/)"},
        {.name = "output",
         .short_name = 'o',
         .kind = CLI_STR,
         .dst = &t.out,
         .metavar = "FILE",
         .required = true,
         .help = "the trained model file to write (the best on valid)"},
        CLI_OPT_STR("unlabelled", &t.unlabelled, "FILE",
                    "extra sentences without labels (one a line, like seq.in) for the "
                    "adversarial term"),
        CLI_OPT_FLOAT("label-fraction", &t.label_fraction, 0, 1,
                      "keep the labels of this seeded fraction of the training split; the rest "
                      "is used unlabelled"),
    };
    const cli_opt sched[] = {
        CLI_OPT_STR("phases", &t.phases, "A[-B]",
                    "the phases to run, a range of 0 (base: G off), 1 (G and D, the rest "
                    "frozen), 2 (joint); names base, gan, joint work too (default: 0-2; phases "
                    "without work, such as 1 and 2 with the generator off, are skipped)"),
        CLI_OPT_INT("epochs0", &t.epochs[0], 0, 100000, "epochs of phase 0 (base)"),
        CLI_OPT_INT("epochs1", &t.epochs[1], 0, 100000, "epochs of phase 1 (GAN pre-training)"),
        CLI_OPT_INT("epochs2", &t.epochs[2], 0, 100000, "epochs of phase 2 (joint)"),
        CLI_OPT_INT("batch", &t.batch, 1, 1 << 20, "sentences per batch"),
        CLI_OPT_FLOAT("lr", &t.lr, 0, 10, "AdamW learning rate"),
        CLI_OPT_FLOAT("weight-decay", &t.weight_decay, 0, 10, "AdamW decoupled weight decay"),
        CLI_OPT_FLOAT("clip", &t.clip, 0, 1e9, "clip gradients to this global L2 norm; 0 = off"),
        CLI_OPT_FLOAT("word-dropout", &t.word_dropout, 0, 1,
                      "replace training words by <unk> with this probability"),
        CLI_OPT_INT("patience", &t.patience, 0, 100000,
                    "stop a phase after this many epochs without a better valid score; 0 = "
                    "never"),
        CLI_OPT_CHOICE("select", &t.select, "sentence|slot_f1|intent",
                       "the valid metric (sentence accuracy, slot F1, intent accuracy) for early "
                       "stopping and model selection"),
        CLI_OPT_INT("max-steps", &t.max_steps, 0, 1e15,
                    "stop each phase after this many steps; 0 = no limit (for smoke tests)"),
        CLI_OPT_FLOAT("time-limit", &t.time_limit, 0, 1e9,
                      "stop training after this many seconds, keeping the best model; 0 = none"),
    };
    const cli_opt adv[] = {
        CLI_OPT_CHOICE("mode", &t.mode, "gan|grl|none",
                       "gan: alternate D steps and combined steps; grl: one pass through a "
                       "gradient reversal layer; none: no discriminator"),
        CLI_OPT_INT("d-steps", &t.d_steps, 1, 1000, "D steps per combined step (mode gan)"),
        CLI_OPT_FLOAT("lambda-max", &t.lambda_max, 0, 1e6,
                      "weight of the adversarial term at "
                      "the end of training"),
        CLI_OPT_FLOAT("gamma", &t.gamma, 0, 1e6, "steepness of the lambda_p schedule"),
        CLI_OPT_FLOAT("beta", &t.beta, 0, 1e6, "weight of the regularization of s toward 1"),
        CLI_OPT_CHOICE("reg", &t.reg, "l2|l1", "regularization of s"),
    };
    const cli_opt run[] = {
        CLI_OPT_CHOICE("device", &t.device, "cpu|cuda", "where to train"),
        CLI_OPT_INT("threads", &t.threads, 0, 4096, "CPU threads; 0 = OpenMP's default"),
        CLI_OPT_INT("seed", &t.seed, 0, 9.2e18, "seed of initialization, shuffling and dropout"),
        CLI_OPT_INT("checkpoint-every", &t.ckpt_every, 0, 1e15,
                    "also write a checkpoint every N steps (one is written at each epoch's end)"),
        CLI_OPT_STR("checkpoint-dir", &t.ckpt_dir, "DIR",
                    "where checkpoints go (default: "
                    "FILE.ckpt/ beside the -o file)"),
        CLI_OPT_STR("resume", &t.resume, "CHECKPOINT", "continue a run exactly from a checkpoint"),
        CLI_OPT_STR("metrics", &t.metrics, "FILE", "write metrics as JSON lines"),
        CLI_OPT_STR("plot", &t.plot, "FILE.svg", "draw the loss and metric curves"),
        CLI_OPT_CHOICE("progress", &t.progress, "auto|bar|lines|none",
                       "auto: a bar on a terminal, plain lines otherwise"),
        CLI_OPT_FLAG("check-finite", &t.check_finite,
                     "stop at the first node that produces NaN or Inf, naming it"),
    };
    const cli_group groups[] = {
        CLI_GROUP("Data", io),
        CLI_GROUP("Schedule", sched),
        CLI_GROUP("Adversarial term", adv),
        CLI_GROUP("Running", run),
        {"Model (when train builds the model: no MODEL argument)", mt, nm, &model_given},
    };
    const cli_cmd c = {
        .name = "train",
        .usage = "[MODEL.onnx] --data DIR -o TRAINED.onnx [options]",
        .summary = "Train a model on a dataset folder: phases, early stopping, checkpoints, "
                   "metrics.",
        .about = "MODEL is a file from 'attune build'; without it, train builds the model from "
                 "the model options. Each epoch ends with the valid metrics; the best model on "
                 "valid is what -o receives.",
        .epilog = "Example:\n  attune train model.onnx --data data/sample -o trained.onnx "
                  "--epochs0 5 --epochs1 1 --epochs2 2",
        .groups = groups,
        .n_groups = 5,
        .min_pos = 0,
        .max_pos = 1,
    };
    int n_pos, rc = cli_parse(&c, argc, argv, &n_pos);
    if (rc != CLI_CONTINUE) return rc;
    if (n_pos == 1 && model_given)
        return cli_fail(CLI_EXIT_USAGE, "train",
                        "model options apply when train builds the model, but %s is already "
                        "built; drop MODEL or the model options",
                        argv[0]);
    if ((rc = check_model("train", &m)) != CLI_CONTINUE) return rc;
    if (t.phases && (rc = check_phases(t.phases)) != CLI_CONTINUE) return rc;
    if (t.label_fraction < 1 && t.unlabelled)
        return cli_fail(CLI_EXIT_USAGE, "train",
                        "--label-fraction and --unlabelled are exclusive: choose one source of "
                        "unlabelled sentences");
    if (n_pos == 1 && (rc = check_model_file("train", argv[0])) != CLI_CONTINUE) return rc;
    if (t.resume) {
        at_err e = {0};
        at_checkpoint_info info;
        at_graph *g = at_checkpoint_load(t.resume, &info, &e);
        if (!g) return cli_fail(cli_exit_for_input(e.code), "train", "--resume %s", e.msg);
        at_graph_free(g);
    }
    if ((rc = check_split("train", t.data, "train")) != CLI_CONTINUE) return rc;
    if ((rc = check_split("train", t.data, "valid")) != CLI_CONTINUE) return rc;
    if (t.unlabelled) {
        if ((rc = check_readable("train", "--unlabelled", t.unlabelled)) != CLI_CONTINUE) return rc;
        at_split *s = NULL;
        at_err e = {0};
        at_status st = at_dataset_sentences(&s, t.unlabelled, &e);
        at_split_free(s);
        if (st != AT_OK) return cli_fail(cli_exit_for_input(st), "train", "%s", e.msg);
    }
    if ((rc = check_out_dir("train", "-o", t.out)) != CLI_CONTINUE) return rc;
    if (t.metrics && (rc = check_out_dir("train", "--metrics", t.metrics)) != CLI_CONTINUE)
        return rc;
    if (t.plot && (rc = check_out_dir("train", "--plot", t.plot)) != CLI_CONTINUE) return rc;
    return not_built("train");
}

/* ---- eval ---- */

int cmd_eval(int argc, char **argv) {
    const char *data = NULL, *device = "cpu";
    bool json = false;
    int64_t batch = 64, threads = 0;
    const cli_opt opts[] = {
        {.name = "data",
         .kind = CLI_STR,
         .dst = &data,
         .metavar = "DIR",
         .required = true,
         .help = "a split folder (seq.in, seq.out, label), or a dataset folder (its test/ is "
                 "used)"},
        CLI_OPT_FLAG("json", &json,
                     "print one JSON line: intent_acc, slot_f1, sentence_acc (percentages) and "
                     "more"),
        CLI_OPT_INT("batch", &batch, 1, 1 << 20, "sentences per batch"),
        CLI_OPT_CHOICE("device", &device, "cpu|cuda", "where to run"),
        CLI_OPT_INT("threads", &threads, 0, 4096, "CPU threads; 0 = OpenMP's default"),
    };
    const cli_group groups[] = {CLI_GROUP("Options", opts)};
    const cli_cmd c = {
        .name = "eval",
        .usage = "MODEL.onnx --data DIR [--json]",
        .summary = "Evaluate a model: intent accuracy, slot F1 (conlleval rules) with a per-slot "
                   "table, sentence accuracy.",
        .epilog = "Example:\n  attune eval trained.onnx --data data/sample/test --json",
        .groups = groups,
        .n_groups = 1,
        .min_pos = 1,
        .max_pos = 1,
        .pos_name = "MODEL (the model file to evaluate)",
    };
    int n_pos, rc = cli_parse(&c, argc, argv, &n_pos);
    if (rc != CLI_CONTINUE) return rc;
    if ((rc = check_model_file("eval", argv[0])) != CLI_CONTINUE) return rc;
    char seq[4096];
    snprintf(seq, sizeof seq, "%s/seq.in", data);
    const char *sub = is_dir(data) && !is_file(seq) ? "test" : NULL;
    if ((rc = check_split("eval", data, sub)) != CLI_CONTINUE) return rc;
    return not_built("eval");
}

/* ---- predict ---- */

int cmd_predict(int argc, char **argv) {
    const char *heatmap = NULL, *device = "cpu";
    bool attention = false;
    int64_t threads = 0;
    const cli_opt opts[] = {
        CLI_OPT_FLAG("attention", &attention,
                     "add the attention weights of both components and the scaling factors s"),
        CLI_OPT_STR("heatmap", &heatmap, "FILE.svg",
                    "draw the attention of the first sentence as a heatmap"),
        CLI_OPT_CHOICE("device", &device, "cpu|cuda", "where to run"),
        CLI_OPT_INT("threads", &threads, 0, 4096, "CPU threads; 0 = OpenMP's default"),
    };
    const cli_group groups[] = {CLI_GROUP("Options", opts)};
    const cli_cmd c = {
        .name = "predict",
        .usage = "MODEL.onnx [SENTENCE ...] [--attention] [--heatmap FILE.svg]",
        .summary = "Predict the intent and slots of sentences, as JSON lines.",
        .about = "Sentences come from the arguments, or from stdin (one a line) when there are "
                 "none or one is '-'. Each output line holds the intent and its probability and "
                 "the slots as spans (type, text, token range).",
        .epilog = "Example:\n  attune predict trained.onnx \"book a table for two\"",
        .groups = groups,
        .n_groups = 1,
        .min_pos = 1,
        .max_pos = -1,
        .pos_name = "MODEL (the model file to run)",
    };
    int n_pos, rc = cli_parse(&c, argc, argv, &n_pos);
    if (rc != CLI_CONTINUE) return rc;
    if ((rc = check_model_file("predict", argv[0])) != CLI_CONTINUE) return rc;
    for (int i = 1; i < n_pos; i++) {
        const char *p = argv[i];
        while (*p == ' ' || *p == '\t') p++;
        if (!*p) return cli_fail(CLI_EXIT_USAGE, "predict", "sentence %d is empty", i);
    }
    if (heatmap && (rc = check_out_dir("predict", "--heatmap", heatmap)) != CLI_CONTINUE) return rc;
    return not_built("predict");
}

/* ---- bench ---- */

int cmd_bench(int argc, char **argv) {
    model_opts m = model_defaults();
    bool train = false, infer = false;
    const char *data = NULL, *device = "cpu";
    int64_t batch = 32, seq = 16, warmup = 3, steps = 20, threads = 0, seed = 1;
    int64_t vocab = 10000, intents = 7, slots = 72;
    cli_opt mt[N_MODEL_OPTS];
    int nm = model_table(&m, mt);
    const cli_opt opts[] = {
        CLI_OPT_FLAG("train", &train, "time full training steps (the default)"),
        CLI_OPT_FLAG("infer", &infer, "time batch-1 inference"),
        CLI_OPT_INT("batch", &batch, 1, 1 << 20, "sentences per step (--train)"),
        CLI_OPT_INT("seq", &seq, 1, AT_DATA_MAX_TOKENS, "tokens per sentence T"),
        CLI_OPT_INT("warmup", &warmup, 0, 1 << 20, "untimed steps first"),
        CLI_OPT_INT("steps", &steps, 1, 1 << 20, "timed steps"),
        CLI_OPT_INT("vocab", &vocab, 2, 1 << 24, "word vocabulary size of the random data"),
        CLI_OPT_INT("intents", &intents, 1, 1 << 20, "intents of the random data"),
        CLI_OPT_INT("slots", &slots, 1, 1 << 20, "slot labels of the random data"),
        CLI_OPT_STR("data", &data, "DIR", "take the vocabulary and label sizes from DIR/train"),
        CLI_OPT_CHOICE("device", &device, "cpu|cuda", "where to run"),
        CLI_OPT_INT("threads", &threads, 0, 4096, "CPU threads; 0 = OpenMP's default"),
        CLI_OPT_INT("seed", &seed, 0, 9.2e18, "seed of the random data and weights"),
    };
    const cli_group groups[] = {CLI_GROUP("Benchmark", opts), {"Model", mt, nm, NULL}};
    const cli_cmd c = {
        .name = "bench",
        .usage = "[--train | --infer] [--batch B --seq T] [model options]",
        .summary = "Time training steps or inference of the model on random data; prints one "
                   "JSON line.",
        .about = "--train prints {\"ms_per_step_median\": ..., \"ms_per_step_min\": ..., "
                 "\"peak_rss_mb\": ...}; --infer prints ms_per_sentence_median instead of the "
                 "step times.",
        .epilog = "Example:\n  attune bench --train --batch 32 --seq 16 --kind transformer",
        .groups = groups,
        .n_groups = 2,
        .min_pos = 0,
        .max_pos = 0,
    };
    int n_pos, rc = cli_parse(&c, argc, argv, &n_pos);
    if (rc != CLI_CONTINUE) return rc;
    if (train && infer)
        return cli_fail(CLI_EXIT_USAGE, "bench", "--train and --infer are exclusive: run twice");
    if ((rc = check_model("bench", &m)) != CLI_CONTINUE) return rc;
    if (data && (rc = check_split("bench", data, "train")) != CLI_CONTINUE) return rc;
    return not_built("bench");
}
