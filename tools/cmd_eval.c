/* attune eval: intent accuracy, slot F1 by the conlleval rules with a per-type table, and
 * sentence accuracy of a model on a split; with --attack fgsm, the same metrics under FGSM on
 * the word embeddings for each eps of a list. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "graph/quote.h"

#define CMD "eval"

/* Precision, recall (and F1 unless the caller has it already) as percentages, and counts. */
static void json_prf(FILE *f, const char *prefix, const at_prf *p, bool f1) {
    fprintf(f, "\"%sprecision\":%.4f,\"%srecall\":%.4f,", prefix, 100 * p->precision, prefix,
            100 * p->recall);
    if (f1) fprintf(f, "\"%sf1\":%.4f,", prefix, 100 * p->f1);
    fprintf(f, "\"%sgold\":%lld,\"%spred\":%lld,\"%scorrect\":%lld", prefix, (long long)p->gold,
            prefix, (long long)p->pred, prefix, (long long)p->correct);
}

#define MAX_EPS     32
#define DEFAULT_EPS "0.01,0.02,0.05"

/* "0.01,0.05": 1 to MAX_EPS finite numbers >= 0. */
static int parse_eps(const char *v, double *eps, int *n) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", v);
    *n = 0;
    for (char *p = buf, *end;; p = end + 1) {
        end = strchr(p, ',');
        if (end) *end = 0;
        if (*n == MAX_EPS)
            return cli_fail(CLI_EXIT_USAGE, CMD, "--eps: more than %d values", MAX_EPS);
        if (!cli_parse_f64(p, &eps[*n]) || eps[*n] < 0)
            return cli_fail(CLI_EXIT_USAGE, CMD,
                            "--eps: '%s' is not a number >= 0 (give a list like %s)", p,
                            DEFAULT_EPS);
        (*n)++;
        if (!end) break;
    }
    return CLI_CONTINUE;
}

typedef struct attack_row {
    double eps;
    at_metrics_summary sum;
} attack_row;

/* The metrics under FGSM for each eps. */
static int run_attack(at_nlu_model *m, at_split *s, const double *eps, int n, attack_row *rows) {
    for (int i = 0; i < n; i++) {
        at_err e = {0};
        at_metrics *mt = NULL;
        at_status st = at_metrics_new(&mt, &e);
        rows[i].eps = eps[i];
        if (st == AT_OK) st = at_nlu_evaluate_fgsm(m, s, (float)eps[i], mt, &rows[i].sum, &e);
        at_metrics_free(mt);
        if (st != AT_OK)
            return cli_fail(cli_exit_for_work(st), CMD, "--attack fgsm --eps %g: %s", eps[i],
                            e.msg);
    }
    return CLI_CONTINUE;
}

int cmd_eval(int argc, char **argv) {
    const char *data = NULL, *split_name = "test", *device = "cpu", *attack = NULL, *eps_s = NULL;
    bool json = false;
    int64_t threads = 0;
    const cli_opt opts[] = {
        {.name = "data",
         .kind = CLI_STR,
         .dst = &data,
         .metavar = "DIR",
         .required = true,
         .help = "a split folder (seq.in, seq.out, label), or a dataset folder (then --split "
                 "names the split)"},
        CLI_OPT_STR("split", &split_name, "NAME",
                    "the split of a dataset folder to evaluate (train, valid, test)"),
        CLI_OPT_FLAG("json", &json,
                     "print one JSON line: intent_acc, slot_f1, sentence_acc (percentages), "
                     "slot precision and recall, token accuracy, the counts, per-type scores"),
        CLI_OPT_CHOICE("device", &device, "cpu|cuda", "where to run"),
        CLI_OPT_INT("threads", &threads, 0, 4096, "CPU threads; 0 = OpenMP's default"),
        CLI_OPT_CHOICE("attack", &attack, "fgsm",
                       "also evaluate under an attack: fgsm moves each sentence's word embeddings "
                       "x by eps sign(grad_x J), J its loss with the gold labels"),
        CLI_OPT_STR("eps", &eps_s, "E[,E2,...]",
                    "the attack's eps values (per coordinate of x) [default: " DEFAULT_EPS "]"),
    };
    const cli_group groups[] = {CLI_GROUP("Options", opts)};
    const cli_cmd c = {
        .name = CMD,
        .usage = "MODEL.onnx --data DIR [--json] [--attack fgsm [--eps E,...]]",
        .summary = "Evaluate a model: intent accuracy, slot F1 (conlleval rules) with a per-slot "
                   "table, sentence accuracy.",
        .about = "Slot spans come from the BIO tags as conlleval finds them; a predicted span is "
                 "right when a gold span has the same first and last token and type. Sentence "
                 "accuracy counts sentences whose intent and every slot label are right. Labels "
                 "the training split did not have are reported on stderr and count as errors.",
        .epilog = "Examples:\n  attune eval trained.onnx --data data/sample/test\n  attune eval "
                  "trained.onnx --data data/sample --split valid --json\n  attune eval "
                  "trained.onnx --data data/sample/test --attack fgsm --eps 0.01,0.05,0.1",
        .groups = groups,
        .n_groups = 1,
        .min_pos = 1,
        .max_pos = 1,
        .pos_name = "MODEL (the model file to evaluate)",
    };
    int n_pos, rc = cli_parse(&c, argc, argv, &n_pos);
    if (rc != CLI_CONTINUE) return rc;
    const char *model_path = argv[0];
    double eps[MAX_EPS];
    int n_eps = 0;
    if (eps_s && !attack)
        return cli_fail(CLI_EXIT_USAGE, CMD, "--eps is the attack's: give --attack fgsm too");
    if (attack && (rc = parse_eps(eps_s ? eps_s : DEFAULT_EPS, eps, &n_eps)) != CLI_CONTINUE)
        return rc;
    attack_row rows[MAX_EPS];
    if ((rc = cli_check_device(CMD, device)) != CLI_CONTINUE) return rc;
    at_nlu_model *m = NULL;
    at_split *s = NULL;
    at_metrics *mt = NULL;
    if ((rc = cli_load_model(CMD, model_path, NULL, &m)) != CLI_CONTINUE) goto done;
    char seq[4096];
    snprintf(seq, sizeof seq, "%s/seq.in", data);
    bool is_split = cli_is_file(seq) || !cli_is_dir(data);
    if ((rc = cli_read_split(CMD, data, is_split ? NULL : split_name, &s)) != CLI_CONTINUE)
        goto done;
    if ((rc = cli_model_session(CMD, m, device, threads, 0, CLI_SESSION_PACK_TRAINED)) !=
        CLI_CONTINUE)
        goto done;

    at_err e = {0};
    at_encode_stats es;
    at_status st = at_split_encode(s, at_nlu_model_vocab(m), &es, &e);
    if (st == AT_OK && (es.unk_intents || es.unk_slot_labels)) {
        /* The unknown labels are the data file's words: escaped like any error's. */
        char line[512];
        at_encode_stats_str(&es, s->path, line, sizeof line);
        at_msg_escape(line, sizeof line);
        fprintf(stderr, "attune: eval: note: %s\n", line);
    }
    if (st == AT_OK) st = at_metrics_new(&mt, &e);
    at_metrics_summary sum;
    if (st == AT_OK) st = at_nlu_evaluate(m, s, mt, &sum, &e);
    if (st != AT_OK) {
        rc = cli_fail(cli_exit_for_work(st), CMD, "%s", e.msg);
        goto done;
    }
    if (attack && (rc = run_attack(m, s, eps, n_eps, rows)) != CLI_CONTINUE) goto done;
    if (json) {
        FILE *f = stdout;
        fprintf(
            f, "{\"intent_acc\":%.4f,\"slot_f1\":%.4f,\"sentence_acc\":%.4f,\"token_acc\":%.4f,",
            100 * sum.intent_acc, 100 * sum.slots.f1, 100 * sum.sentence_acc, 100 * sum.token_acc);
        json_prf(f, "slot_", &sum.slots, false);
        fprintf(f,
                ",\"sentences\":%lld,\"intent_correct\":%lld,\"sentence_correct\":%lld,"
                "\"tokens\":%lld,\"token_correct\":%lld,\"unknown_intents\":%lld,"
                "\"unknown_slot_labels\":%lld,\"unknown_words\":%lld,\"data\":",
                (long long)sum.sentences, (long long)sum.intent_correct,
                (long long)sum.sentence_correct, (long long)sum.tokens,
                (long long)sum.token_correct, (long long)es.unk_intents,
                (long long)es.unk_slot_labels, (long long)es.unk_words);
        cli_json_str(f, s->path);
        fprintf(f, ",\"model\":");
        cli_json_str(f, model_path);
        fprintf(f, ",\"types\":{");
        for (int32_t i = 0; i < at_metrics_n_types(mt); i++) {
            at_prf p;
            const char *name = at_metrics_type(mt, i, &p);
            if (i) fputc(',', f);
            cli_json_str(f, name);
            fputc(':', f);
            fputc('{', f);
            json_prf(f, "", &p, true);
            fputc('}', f);
        }
        fprintf(f, "}");
        if (attack) {
            fprintf(f, ",\"attack\":{\"method\":\"fgsm\",\"results\":[");
            for (int i = 0; i < n_eps; i++)
                fprintf(f,
                        "%s{\"eps\":%.9g,\"intent_acc\":%.4f,\"slot_f1\":%.4f,"
                        "\"sentence_acc\":%.4f}",
                        i ? "," : "", rows[i].eps, 100 * rows[i].sum.intent_acc,
                        100 * rows[i].sum.slots.f1, 100 * rows[i].sum.sentence_acc);
            fprintf(f, "]}");
        }
        fprintf(f, "}\n");
    } else {
        printf("%s on %s: %lld sentences\n", model_path, s->path, (long long)sum.sentences);
        errno = 0;
        if (at_metrics_print(mt, stdout, &e) != AT_OK) {
            /* at_metrics_print does not say why a write failed; errno still does. */
            int err = errno;
            if (e.code == AT_E_IO && ferror(stdout))
                rc = cli_fail(CLI_EXIT_FAIL, CMD, "writing to stdout failed: %s",
                              err ? strerror(err) : "I/O error");
            else
                rc = cli_fail(CLI_EXIT_FAIL, CMD, "%s", e.msg);
            goto done;
        }
        if (attack) {
            printf("\nFGSM on the word embeddings (x + eps sign(grad_x J), gold labels):\n");
            printf("%10s  %8s  %8s  %8s\n", "eps", "intent", "slot F1", "sentence");
            printf("%10s  %8.2f  %8.2f  %8.2f\n", "clean", 100 * sum.intent_acc, 100 * sum.slots.f1,
                   100 * sum.sentence_acc);
            for (int i = 0; i < n_eps; i++)
                printf("%10g  %8.2f  %8.2f  %8.2f\n", rows[i].eps, 100 * rows[i].sum.intent_acc,
                       100 * rows[i].sum.slots.f1, 100 * rows[i].sum.sentence_acc);
        }
    }
    rc = CLI_EXIT_OK;
done:
    at_metrics_free(mt);
    at_split_free(s);
    at_nlu_model_free(m);
    return rc;
}
