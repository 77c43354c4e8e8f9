/* What build, train, eval, predict and bench share: the options that map onto the model's
 * configuration (at_nlu_config), reading splits and model files with messages that name what is
 * wrong, reconfiguring a loaded model, and its session. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

#define ATTN_SCORES "additive|multiplicative|dot|scaled-dot|multi-head|key-value|neg-distance"

/* ---- config options ---- */

static const char *attn_cli_name(at_nlu_attn_kind k) {
    static const char *names[] = {"additive",   "multiplicative", "dot",         "scaled-dot",
                                  "multi-head", "key-value",      "neg-distance"};
    return (unsigned)k < sizeof names / sizeof *names ? names[k] : "additive";
}

static int add_row(cli_cfg_opts *o, cli_cfg_set set, const char *key, cli_opt row) {
    int i = o->n++;
    if (i >= CLI_CFG_MAX) abort(); /* the table below outgrew CLI_CFG_MAX */
    o->set[i] = set;
    o->key[i] = key;
    o->seen[i] = false;
    switch (row.kind) {
    case CLI_FLAG:
        row.dst = &o->val[i].b;
        break;
    case CLI_INT:
        row.dst = &o->val[i].i;
        break;
    case CLI_FLOAT:
        row.dst = &o->val[i].f;
        break;
    default:
        row.dst = &o->val[i].s;
        break;
    }
    row.seen = &o->seen[i];
    o->opt[i] = row;
    return i;
}

#define ROW_INT(set, key, nm, dflt, lo, hi, help)                                                  \
    o->val[add_row(o, set, key, (cli_opt)CLI_OPT_INT(nm, NULL, lo, hi, help))].i = (dflt)
#define ROW_FLOAT(set, key, nm, dflt, lo, hi, help)                                                \
    o->val[add_row(o, set, key, (cli_opt)CLI_OPT_FLOAT(nm, NULL, lo, hi, help))].f = (dflt)
#define ROW_CHOICE(set, key, nm, dflt, ch, help)                                                   \
    o->val[add_row(o, set, key, (cli_opt)CLI_OPT_CHOICE(nm, NULL, ch, help))].s = (dflt)
#define ROW_STR(set, key, nm, dflt, mv, help)                                                      \
    o->val[add_row(o, set, key, (cli_opt)CLI_OPT_STR(nm, NULL, mv, help))].s = (dflt)
#define ROW_FLAG(set, key, nm, help)                                                               \
    o->val[add_row(o, set, key, (cli_opt)CLI_OPT_FLAG(nm, NULL, help))].b = false

void cli_cfg_init(cli_cfg_opts *o) {
    const at_nlu_config d = at_nlu_config_default();
    static char widths[32];
    int k = 0;
    for (int i = 0; i < d.n_d_widths && i < 4; i++)
        k += snprintf(widths + k, sizeof widths - (size_t)k, "%s%d", i ? "," : "", d.d_widths[i]);
    memset(o, 0, sizeof *o);
    const cli_cfg_set A = CLI_CFG_ARCH, S = CLI_CFG_SCHED, V = CLI_CFG_ADV, R = CLI_CFG_ROBUST;

    ROW_CHOICE(A, "+preset", "preset", "joint-nlu", "joint-nlu|baseline",
               "joint-nlu: the model of DESIGN.md section 6; baseline: the same with the "
               "generator and the discriminator off (the ablation)");
    ROW_INT(A, "layers", "layers", d.layers, 1, 8, "encoder layers L");
    ROW_CHOICE(A, "encoder", "kind", d.encoder == AT_NLU_BILSTM ? "bilstm" : "transformer",
               "transformer|bilstm",
               "encoder layer kind (pre-LN transformer, or bidirectional LSTM)");
    ROW_INT(A, "emb_dim", "emb", d.emb_dim, 1, 65536, "word embedding size");
    ROW_INT(A, "d_model", "dim", d.d_model, 2, 65536,
            "encoder width d (a bilstm layer has d/2 per direction)");
    ROW_INT(A, "heads", "heads", d.heads, 1, 256, "self-attention heads of transformer layers");
    ROW_INT(A, "ffn_dim", "ffn", d.ffn_dim, 0, 1 << 20,
            "feed-forward width of transformer layers; 0 = 4d");
    ROW_INT(A, "max_positions", "max-positions", d.max_positions, 1, AT_DATA_MAX_TOKENS,
            "the longest sentence a transformer encoder takes (learned positions)");
    ROW_CHOICE(A, "use_g", "generator", NULL, "on|off",
               "the GAN-driven attention weighting G (default: on for joint-nlu, off for "
               "baseline)");
    ROW_INT(A, "g_dim", "gen-dim", d.g_dim, 1, 65536, "generator width d_g");
    ROW_INT(A, "g_layers", "gen-layers", d.g_layers, 0, 16, "generator transformer layers");
    ROW_INT(A, "g_heads", "gen-heads", d.g_heads, 1, 256, "generator attention heads");
    ROW_CHOICE(A, "attn1", "attn1", attn_cli_name(d.attn1), ATTN_SCORES,
               "scoring function of the first attention component (intent)");
    ROW_CHOICE(A, "attn2", "attn2", attn_cli_name(d.attn2), ATTN_SCORES,
               "scoring function of the second attention component (slots)");
    ROW_INT(A, "attn_dim", "attn-size", d.attn_dim, 1, 65536,
            "attention size (additive scoring; the entity decoder's a_t)");
    ROW_INT(A, "attn_heads", "attn-heads", d.attn_heads, 1, 256,
            "heads of multi-head scoring (a divisor of --dim)");
    ROW_FLAG(A, "attn1_hard", "attn1-hard",
             "hard attention in the first component: straight-through Gumbel-softmax (one-hot "
             "forward, softmax backward; no noise in evaluation)");
    ROW_FLAG(A, "attn1_hard", "hard-attn1", "the same as --attn1-hard");
    ROW_FLAG(A, "attn2_hard", "attn2-hard", "hard attention in the second component");
    ROW_FLAG(A, "attn2_hard", "hard-attn2", "the same as --attn2-hard");
    ROW_FLAG(A, "slot_gate", "slot-gate", "gate the slot decoder by the intent context");
    ROW_INT(A, "d_channels", "disc-channels", d.d_channels, 1, 65536,
            "discriminator channels per kernel width");
    ROW_STR(A, "d_widths", "disc-widths", widths, "LIST",
            "discriminator Conv1d kernel widths: 1 to 4 odd numbers, comma-separated");
    ROW_INT(A, "d_hidden", "disc-hidden", d.d_hidden, 1, 65536, "discriminator first FC size");
    ROW_CHOICE(A, "d_input", "disc-input", d.d_soft ? "soft" : "hard", "hard|soft",
               "what D sees: one-hot labels (straight-through on the fake side) or "
               "label-smoothed gold against the predicted softmax");
    ROW_INT(A, "char_dim", "char-dim", d.char_dim, 0, 4096,
            "character embedding size of the char CNN word features; 0 = off");
    ROW_INT(A, "char_channels", "char-channels", d.char_channels, 1, 4096,
            "character CNN channels");
    ROW_FLAG(A, "crf", "crf", "linear-chain CRF on the slot logits (Viterbi decoding)");
    ROW_INT(A, "word_min_count", "word-min-count", d.word_min_count, 0, 1 << 30,
            "words seen fewer times in training become <unk>");
    ROW_INT(A, "max_words", "max-words", d.max_words, 0, 1 << 30,
            "cap on the word vocabulary size; 0 = none");

    ROW_INT(S, "+epochs0", "epochs0", d.epochs[0], 0, 100000, "epochs of phase 0 (base)");
    ROW_INT(S, "+epochs1", "epochs1", d.epochs[1], 0, 100000,
            "epochs of phase 1 (GAN pre-training)");
    ROW_INT(S, "+epochs2", "epochs2", d.epochs[2], 0, 100000, "epochs of phase 2 (joint)");
    ROW_INT(S, "batch", "batch", d.batch, 1, 65536, "sentences per batch");
    ROW_FLOAT(S, "lr", "lr", d.lr, 0, 10, "AdamW learning rate");
    ROW_FLOAT(S, "weight_decay", "weight-decay", d.weight_decay, 0, 10,
              "AdamW decoupled weight decay");
    ROW_FLOAT(S, "clip", "clip", d.clip, 0, 1e9, "clip gradients to this global L2 norm; 0 = off");
    ROW_FLOAT(S, "dropout", "dropout", d.dropout, 0, 0.95, "dropout rate");
    ROW_FLOAT(S, "word_dropout", "word-dropout", d.word_dropout, 0, 0.95,
              "replace training words by <unk> with this probability");
    ROW_INT(S, "patience", "patience", d.patience, 0, 100000,
            "stop a phase after this many epochs without a better valid score; 0 = never");
    ROW_CHOICE(S, "select", "select", "sentence", "sentence|slot_f1|intent",
               "the valid metric (sentence accuracy, slot F1, intent accuracy) for early stopping "
               "and model selection");

    ROW_CHOICE(V, "adv", "mode",
               d.adv == AT_NLU_ADV_GAN   ? "gan"
               : d.adv == AT_NLU_ADV_GRL ? "grl"
                                         : "none",
               "gan|grl|none",
               "gan: alternate D steps and combined steps; grl: one pass through a gradient "
               "reversal layer; none: no discriminator");
    ROW_INT(V, "d_steps", "d-steps", d.d_steps, 1, 100, "D steps per combined step (mode gan)");
    ROW_FLOAT(V, "lambda_max", "lambda-max", d.lambda_max, 0, 1e6,
              "weight of the adversarial term at the end of training");
    ROW_FLOAT(V, "gamma", "gamma", d.gamma, 0, 1e6, "steepness of the lambda_p schedule");
    ROW_FLOAT(V, "beta", "beta", d.beta, 0, 1e6, "weight of the regularization of s toward 1");
    ROW_CHOICE(V, "reg", "reg", d.reg_l1 ? "l1" : "l2", "l2|l1", "regularization of s");

    ROW_CHOICE(R, "adv_train", "adv-train", d.adv_train == AT_NLU_ADV_TRAIN_FGSM ? "fgsm" : "none",
               "none|fgsm",
               "adversarial training on the word embeddings x: J' = alpha J(x) + (1 - alpha) "
               "J(x + eps sign(grad_x J)), the perturbation held constant");
    ROW_FLOAT(R, "adv_eps", "adv-eps", d.adv_eps, 0, 1e3,
              "eps of adversarial training (a step per coordinate of x)");
    ROW_FLOAT(R, "adv_alpha", "adv-alpha", d.adv_alpha, 0, 1,
              "alpha: the weight of the clean loss in J'");
    ROW_FLAG(R, "vat", "vat",
             "virtual adversarial training: + weight KL(p(y|x) || p(y|x + r_vadv)), r_vadv from "
             "one power iteration, on labelled and unlabelled sentences (--unlabelled, "
             "--label-fraction)");
    ROW_FLOAT(R, "vat_eps", "vat-eps", d.vat_eps, 0, 1e3,
              "L2 norm of r_vadv, per sentence (over its tokens' x)");
    ROW_FLOAT(R, "vat_xi", "vat-xi", d.vat_xi, 1e-9, 1e3,
              "the power iteration's probe size (1e-3 survives float32; 1e-6 is noise)");
    ROW_FLOAT(R, "vat_weight", "vat-weight", d.vat_weight, 0, 1e6, "weight of the VAT term");

    ROW_FLOAT(CLI_CFG_DATA, "label_fraction", "label-fraction", d.label_fraction, 0, 1,
              "keep the labels of this seeded fraction of the training split; the rest is used "
              "unlabelled");
    ROW_INT(CLI_CFG_SEED, "seed", "seed", (int64_t)d.seed, 0, 9.2e18,
            "seed of initialization, label fraction, shuffling and dropout");
}

int cli_cfg_rows(const cli_cfg_opts *o, cli_cfg_set set, cli_opt *out) {
    int n = 0;
    for (int i = 0; i < o->n; i++)
        if (o->set[i] == set) out[n++] = o->opt[i];
    return n;
}

cli_opt cli_cfg_row(const cli_cfg_opts *o, const char *name) {
    for (int i = 0; i < o->n; i++)
        if (!strcmp(o->opt[i].name, name)) return o->opt[i];
    fprintf(stderr, "attune: internal error: no config option '%s'\n", name);
    abort();
}

const char *cli_cfg_given(const cli_cfg_opts *o, cli_cfg_set set) {
    for (int i = 0; i < o->n; i++)
        if (o->set[i] == set && o->seen[i]) return o->opt[i].name;
    return NULL;
}

/* "config d_widths: '3,x' is not ..." -> "'3,x' is not ...". */
static const char *strip_config_prefix(const char *msg) {
    if (strncmp(msg, "config", 6) != 0) return msg;
    const char *p = strstr(msg, ": ");
    return p ? p + 2 : msg;
}

static int apply_one(const char *cmd, const cli_cfg_opts *o, int i, at_nlu_config *cfg) {
    const char *key = o->key[i], *name = o->opt[i].name;
    const cli_val *v = &o->val[i];
    if (!strcmp(key, "+preset")) {
        if (!strcmp(v->s, "baseline")) {
            cfg->use_g = false;
            cfg->adv = AT_NLU_ADV_NONE;
        }
        return CLI_CONTINUE;
    }
    if (!strncmp(key, "+epochs", 7)) {
        cfg->epochs[key[7] - '0'] = (int)v->i;
        return CLI_CONTINUE;
    }
    char text[64];
    const char *value = text;
    switch (o->opt[i].kind) {
    case CLI_FLAG:
        value = v->b ? "true" : "false";
        break;
    case CLI_INT:
        snprintf(text, sizeof text, "%lld", (long long)v->i);
        break;
    case CLI_FLOAT:
        snprintf(text, sizeof text, "%.9g", v->f);
        break;
    default:
        value = v->s;
        break;
    }
    at_err e = {0};
    at_status st = at_nlu_config_set(cfg, key, value, &e);
    if (st == AT_OK) return CLI_CONTINUE;
    if (strstr(e.msg, "unknown key"))
        return cli_fail(CLI_EXIT_USAGE, cmd,
                        "--%s: this build's model has no such feature yet (no config key '%s')",
                        name, key);
    return cli_fail(CLI_EXIT_USAGE, cmd, "--%s: %s", name, strip_config_prefix(e.msg));
}

/* The checks at_nlu_config_check makes, worded with the options' names. */
static int check_combinations(const char *cmd, const at_nlu_config *c) {
    bool kv = c->attn1 == AT_NLU_ATTN_KEY_VALUE || c->attn2 == AT_NLU_ATTN_KEY_VALUE;
    bool mh = c->attn1 == AT_NLU_ATTN_MULTIHEAD || c->attn2 == AT_NLU_ATTN_MULTIHEAD;
    if (c->encoder == AT_NLU_TRANSFORMER && c->d_model % c->heads)
        return cli_fail(CLI_EXIT_USAGE, cmd, "--dim %d is not a multiple of --heads %d", c->d_model,
                        c->heads);
    if ((c->encoder == AT_NLU_BILSTM || kv) && c->d_model % 2)
        return cli_fail(CLI_EXIT_USAGE, cmd,
                        "--dim %d must be even (a bilstm layer splits it into two directions; "
                        "key-value attention into a key and a value half)",
                        c->d_model);
    if (c->use_g && c->g_layers > 0 && c->g_dim % c->g_heads)
        return cli_fail(CLI_EXIT_USAGE, cmd, "--gen-dim %d is not a multiple of --gen-heads %d",
                        c->g_dim, c->g_heads);
    if (mh && c->d_model % c->attn_heads)
        return cli_fail(CLI_EXIT_USAGE, cmd,
                        "--dim %d is not a multiple of --attn-heads %d (multi-head attention)",
                        c->d_model, c->attn_heads);
    at_err e = {0};
    if (at_nlu_config_check(c, &e) != AT_OK)
        return cli_fail(CLI_EXIT_USAGE, cmd, "the model configuration: %s",
                        strip_config_prefix(e.msg));
    return CLI_CONTINUE;
}

int cli_cfg_apply(const char *cmd, const cli_cfg_opts *o, at_nlu_config *cfg) {
    int rc;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < o->n; i++) {
            if (!o->seen[i] || (pass == 0) != !strcmp(o->key[i], "+preset")) continue;
            if ((rc = apply_one(cmd, o, i, cfg)) != CLI_CONTINUE) return rc;
        }
    return check_combinations(cmd, cfg);
}

/* ---- files ---- */

bool cli_is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

bool cli_is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* What a non-folder in the way is, for "X is a file, not a folder". */
static const char *file_kind(mode_t m) {
    return S_ISREG(m) ? "a file" : "a special file (a device, a pipe)";
}

/* The first existing prefix of dir (cut at each '/', then dir itself) that is not a folder:
 * 1 with it in buf; 0 when every existing prefix is a folder; -1 with errno when one cannot be
 * looked at (permissions). A missing prefix ends the walk: nothing under it exists. */
static int blocker(const char *dir, char *buf, size_t cap, mode_t *mode) {
    size_t n = strlen(dir);
    if (n >= cap) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char keep = buf[i];
        buf[i] = 0;
        struct stat sb;
        if (stat(buf, &sb) != 0) {
            if (errno == ENOENT) return 0;
            return -1;
        }
        if (!S_ISDIR(sb.st_mode)) {
            *mode = sb.st_mode;
            return 1;
        }
        buf[i] = keep;
    }
    return 0;
}

int cli_check_dir_path(const char *cmd, const char *opt, const char *dir) {
    char b[4096];
    mode_t mode = 0;
    int r = blocker(dir, b, sizeof b, &mode);
    if (r < 0) return cli_fail(CLI_EXIT_FAIL, cmd, "%s %s: %s", opt, dir, strerror(errno));
    if (r > 0) {
        if (!strcmp(b, dir))
            return cli_fail(CLI_EXIT_USAGE, cmd, "%s %s: is %s, not a folder", opt, dir,
                            file_kind(mode));
        return cli_fail(CLI_EXIT_USAGE, cmd, "%s %s: %s is %s, not a folder", opt, dir, b,
                        file_kind(mode));
    }
    return CLI_CONTINUE;
}

int cli_check_out_dir(const char *cmd, const char *opt, const char *path) {
    size_t n = strlen(path);
    if (n == 0) return cli_fail(CLI_EXIT_USAGE, cmd, "%s: the file name is empty", opt);
    if (path[n - 1] == '/' || cli_is_dir(path))
        return cli_fail(CLI_EXIT_USAGE, cmd, "%s %s: is a folder; give the name of a file", opt,
                        path);
    char dir[4096];
    if (n >= sizeof dir)
        return cli_fail(CLI_EXIT_USAGE, cmd, "%s: the path is longer than %zu bytes", opt,
                        sizeof dir - 1);
    memcpy(dir, path, n + 1);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return CLI_CONTINUE;
    *slash = 0;
    char b[4096];
    mode_t mode = 0;
    int r = blocker(dir, b, sizeof b, &mode);
    if (r < 0)
        return cli_fail(CLI_EXIT_FAIL, cmd, "%s %s: %s: %s", opt, path, dir, strerror(errno));
    if (r > 0)
        return cli_fail(CLI_EXIT_USAGE, cmd, "%s %s: %s is %s, not a folder", opt, path, b,
                        file_kind(mode));
    if (!cli_is_dir(dir))
        return cli_fail(CLI_EXIT_USAGE, cmd, "%s %s: the folder %s does not exist", opt, path, dir);
    return CLI_CONTINUE;
}

void cli_json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

void cli_xml_str(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '&':
            fputs("&amp;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        case '\'':
            fputs("&#39;", f);
            break;
        default:
            /* Control characters are not allowed in XML 1.0. */
            fputc((unsigned char)*s < 0x20 ? ' ' : *s, f);
        }
    }
}

int cli_read_split(const char *cmd, const char *dir, const char *sub, at_split **out) {
    char path[4096];
    struct stat sb;
    *out = NULL;
    if (stat(dir, &sb) != 0)
        return cli_fail(CLI_EXIT_USAGE, cmd, "%s: %s", dir,
                        errno == ENOENT ? "no such folder" : strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return cli_fail(CLI_EXIT_USAGE, cmd, "%s: not a folder", dir);
    if (sub)
        snprintf(path, sizeof path, "%s/%s", dir, sub);
    else
        snprintf(path, sizeof path, "%s", dir);
    if (sub && !cli_is_dir(path))
        return cli_fail(CLI_EXIT_USAGE, cmd,
                        "%s: no such folder (a dataset folder holds train/, valid/ and test/, "
                        "each with seq.in, seq.out and label)",
                        path);
    at_err e = {0};
    at_status st = at_dataset_split(out, path, &e);
    if (st != AT_OK) {
        at_split_free(*out);
        *out = NULL;
        return cli_fail(cli_exit_for_input(st), cmd, "%s", e.msg);
    }
    return CLI_CONTINUE;
}

int cli_load_model(const char *cmd, const char *path, at_checkpoint_info *ckpt_info,
                   at_nlu_model **out) {
    at_err e = {0};
    at_status st =
        ckpt_info ? at_nlu_checkpoint_load(out, ckpt_info, path, &e) : at_nlu_load(out, path, &e);
    if (st == AT_OK) return CLI_CONTINUE;
    *out = NULL;
    int code = cli_exit_for_input(st);
    const char *what = ckpt_info ? "--resume " : "";
    /* The loaders' messages usually start with the path already. */
    if (strncmp(e.msg, path, strlen(path)) == 0) return cli_fail(code, cmd, "%s%s", what, e.msg);
    return cli_fail(code, cmd, "%s%s: %s", what, path, e.msg);
}

static at_status copy_vocab(at_vocab **dst, const at_vocab *src, at_err *e) {
    *dst = NULL;
    if (!src) return AT_OK;
    char *text = NULL;
    at_status st = at_vocab_to_string(src, &text, NULL, e);
    if (!st) st = at_vocab_from_string(dst, text, e);
    free(text);
    return st;
}

int cli_model_reconfigure(const char *cmd, at_nlu_model **m, const at_nlu_config *cfg) {
    at_err e = {0};
    char *a = NULL, *b = NULL;
    at_status st = at_nlu_config_to_string(at_nlu_model_config(*m), &a, &e);
    if (!st) st = at_nlu_config_to_string(cfg, &b, &e);
    bool same = !st && !strcmp(a, b);
    free(a);
    free(b);
    if (st) return cli_fail(CLI_EXIT_FAIL, cmd, "%s", e.msg);
    if (same) return CLI_CONTINUE;

    const at_nlu_vocab *src = at_nlu_model_vocab(*m);
    at_nlu_vocab v = {0};
    st = copy_vocab(&v.words, src->words, &e);
    if (!st) st = copy_vocab(&v.chars, src->chars, &e);
    if (!st) st = copy_vocab(&v.slots, src->slots, &e);
    if (!st) st = copy_vocab(&v.intents, src->intents, &e);
    at_nlu_model *n = NULL;
    if (!st) st = at_nlu_model_new(&n, cfg, &v, &e);
    at_nlu_vocab_free(&v);
    if (st) return cli_fail(cli_exit_for_work(st), cmd, "%s", e.msg);

    at_graph *from = at_nlu_model_graph(*m), *to = at_nlu_model_graph(n);
    for (at_val x = 0; x < at_graph_num_values(to); x++) {
        at_value_kind k = at_value_kind_of(to, x);
        if (k != AT_VALUE_PARAM && k != AT_VALUE_STATE) continue;
        at_val y = at_graph_find(from, at_value_name(to, x));
        if (y == AT_NONE || at_value_kind_of(from, y) != k) continue;
        at_shape sa = at_value_shape(to, x), sb = at_value_shape(from, y);
        void *dst = at_value_data(to, x), *srcd = at_value_data(from, y);
        if (!dst || !srcd || !at_shape_equal(&sa, &sb) ||
            at_value_dtype(to, x) != at_value_dtype(from, y))
            continue;
        memcpy(dst, srcd, (size_t)at_shape_numel(&sa) * at_dtype_size(at_value_dtype(to, x)));
    }
    at_nlu_model_free(*m);
    *m = n;
    return CLI_CONTINUE;
}

int cli_model_session(const char *cmd, at_nlu_model *m, const char *device, int64_t threads,
                      uint64_t seed, unsigned flags) {
    at_session_opts so = at_session_defaults();
    so.device = device && !strcmp(device, "cuda") ? AT_DEVICE_CUDA : AT_DEVICE_CPU;
    so.threads = (int)threads;
    so.seed = seed;
    so.check_finite = flags & CLI_SESSION_CHECK_FINITE;
    so.profile = flags & CLI_SESSION_PROFILE;
    so.pack_trained = flags & CLI_SESSION_PACK_TRAINED;
    at_err e = {0};
    at_status st = at_nlu_model_set_session(m, &so, &e);
    if (st == AT_OK) return CLI_CONTINUE;
    if (st == AT_E_DEVICE) return cli_fail(CLI_EXIT_FAIL, cmd, "--device %s: %s", device, e.msg);
    return cli_fail(cli_exit_for_work(st), cmd, "%s", e.msg);
}

int cli_check_device(const char *cmd, const char *device) {
    if (!device || strcmp(device, "cuda") != 0) return CLI_CONTINUE;
    /* A session on an empty graph opens the device: an error now beats one after the data is
     * read and the model built. */
    at_graph *g = at_graph_new();
    if (!g) return cli_fail(CLI_EXIT_FAIL, cmd, "out of memory");
    at_session_opts so = at_session_defaults();
    so.device = AT_DEVICE_CUDA;
    at_err e = {0};
    at_session *s = at_session_new(g, &so, &e);
    at_session_free(s);
    at_graph_free(g);
    if (s) return CLI_CONTINUE;
    return cli_fail(CLI_EXIT_FAIL, cmd, "--device %s: %s", device, e.msg);
}

void cli_model_describe(at_nlu_model *m, char *buf, size_t cap) {
    const at_nlu_config *c = at_nlu_model_config(m);
    const at_nlu_vocab *v = at_nlu_model_vocab(m);
    const char *adv = c->adv == AT_NLU_ADV_GAN ? "gan" : c->adv == AT_NLU_ADV_GRL ? "grl" : "none";
    char robust[128] = "";
    if (c->adv_train == AT_NLU_ADV_TRAIN_FGSM)
        snprintf(robust, sizeof robust, ", adv-train fgsm eps %g alpha %g", (double)c->adv_eps,
                 (double)c->adv_alpha);
    if (c->vat)
        snprintf(robust + strlen(robust), sizeof robust - strlen(robust), ", vat eps %g",
                 (double)c->vat_eps);
    snprintf(buf, cap,
             "%s x%d d=%d, G %s, attention %s%s/%s%s, adversarial %s%s; %lld parameters; %d "
             "words, %d slot labels, %d intents",
             c->encoder == AT_NLU_BILSTM ? "bilstm" : "transformer", c->layers, c->d_model,
             c->use_g ? "on" : "off", attn_cli_name(c->attn1), c->attn1_hard ? " (hard)" : "",
             attn_cli_name(c->attn2), c->attn2_hard ? " (hard)" : "", adv, robust,
             (long long)at_nlu_model_num_params(m, ~0u), at_vocab_size(v->words),
             at_vocab_size(v->slots), at_vocab_size(v->intents));
}
