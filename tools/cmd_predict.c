/* attune predict: intents and slots of sentences as JSON lines, with the attention weights and
 * scaling factors on request, and an SVG heatmap of one sentence's attention. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "outfile.h"

#define CMD "predict"

typedef struct pred_opts {
    bool attention, full;
    const char *heatmap;
    bool heatmap_done;
} pred_opts;

static void json_num(FILE *f, double v) {
    if (isfinite(v))
        fprintf(f, "%.4g", v);
    else
        fputs("null", f);
}

static void json_floats(FILE *f, const float *v, int64_t n) {
    fputc('[', f);
    for (int64_t i = 0; i < n; i++) {
        if (i) fputc(',', f);
        json_num(f, v[i]);
    }
    fputc(']', f);
}

/* Mean over d of each token's scaling factors. */
static void s_means(const float *s, int64_t n, int64_t d, float *out) {
    for (int64_t t = 0; t < n; t++) {
        double sum = 0;
        for (int64_t k = 0; k < d; k++) sum += s[t * d + k];
        out[t] = d ? (float)(sum / (double)d) : 1.0f;
    }
}

/* ---- the heatmap ---- */

static double text_w(const char *s) {
    return 7.0 * (double)strlen(s);
}

/* White to dark blue. */
static void blue(double f, char *buf, size_t cap) {
    if (!(f >= 0)) f = 0;
    if (f > 1) f = 1;
    int r = (int)(255 - f * (255 - 8)), g = (int)(255 - f * (255 - 48)),
        b = (int)(255 - f * (255 - 107));
    snprintf(buf, cap, "#%02x%02x%02x", r, g, b);
}

/* Blue below 1, white at 1, red above; f in [-1, 1]. */
static void diverging(double f, char *buf, size_t cap) {
    if (!(f >= -1)) f = -1;
    if (f > 1) f = 1;
    int r, g, b;
    if (f < 0) {
        r = (int)(255 + f * (255 - 33));
        g = (int)(255 + f * (255 - 102));
        b = (int)(255 + f * (255 - 172));
    } else {
        r = (int)(255 - f * (255 - 178));
        g = (int)(255 - f * (255 - 24));
        b = (int)(255 - f * (255 - 43));
    }
    snprintf(buf, cap, "#%02x%02x%02x", r, g, b);
}

static int write_heatmap(const char *path, const at_nlu_model *m, const at_split *s, int64_t i,
                         const at_nlu_pred *p) {
    const at_nlu_vocab *v = at_nlu_model_vocab(m);
    int64_t n = p->n;
    const char **tok = s->words + s->start[i];
    cli_out of;
    if (cli_out_open(&of, path) != 0)
        return cli_fail(CLI_EXIT_FAIL, CMD, "--heatmap %s: %s", path, strerror(errno));
    FILE *f = of.f;
    double cell = n <= 14 ? 40 : n <= 28 ? 560.0 / (double)n : 20;
    double lw = 60, tw = 0;
    for (int64_t t = 0; t < n; t++) {
        double w = text_w(tok[t]) + 12, w2 = text_w(at_vocab_str(v->slots, p->slots[t])) + 12;
        if (w > lw) lw = w;
        if (w2 > tw) tw = w2;
        if (w > tw) tw = w;
    }
    if (lw < 130) lw = 130; /* room for the row titles */
    bool have_s = p->s_intent && p->s_entity && p->d > 0;
    double left = lw + 10, top = 70 + tw * 0.75 + 10;
    double bar_y = top, mat_y = top + cell + 26, mat_h = cell * (double)n;
    double s_y = mat_y + mat_h + 16;
    double legend_y = s_y + (have_s ? 2 * cell + 30 : 0);
    double W = left + cell * (double)n + tw + 40, H = legend_y + 60;
    if (W < left + 540) W = left + 540; /* the captions */

    double amax = 1e-9, imax = 1e-9;
    for (int64_t k = 0; k < n * n; k++)
        if (p->attn_entity[k] > amax) amax = p->attn_entity[k];
    for (int64_t k = 0; k < n; k++)
        if (p->attn_intent[k] > imax) imax = p->attn_intent[k];
    float *si = NULL, *se = NULL;
    double sdev = 1e-6;
    if (have_s) {
        si = malloc((size_t)n * sizeof *si);
        se = malloc((size_t)n * sizeof *se);
        if (!si || !se) {
            free(si);
            free(se);
            cli_out_close(&of, true);
            return cli_fail(CLI_EXIT_FAIL, CMD, "out of memory");
        }
        s_means(p->s_intent, n, p->d, si);
        s_means(p->s_entity, n, p->d, se);
        for (int64_t t = 0; t < n; t++) {
            if (fabs(si[t] - 1) > sdev) sdev = fabs(si[t] - 1);
            if (fabs(se[t] - 1) > sdev) sdev = fabs(se[t] - 1);
        }
    }
    char col[16];
    fprintf(f,
            "<?xml version='1.0' encoding='UTF-8'?>\n"
            "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' "
            "viewBox='0 0 %.0f %.0f' font-family='sans-serif'>\n"
            "<style>.t{font-size:12px;fill:#222}.s{font-size:10px;fill:#666}"
            ".h{font-size:14px;font-weight:bold}.v{font-size:9px}</style>\n"
            "<rect width='100%%' height='100%%' fill='white'/>\n<text x='10' y='22' class='h'>",
            W, H, W, H);
    for (int64_t t = 0; t < n; t++) {
        if (t) fputc(' ', f);
        cli_xml_str(f, tok[t]);
    }
    fprintf(f, "</text>\n<text x='10' y='42' class='t'>intent: ");
    cli_xml_str(f, at_vocab_str(v->intents, p->intent));
    fprintf(f, " (p = %.3f)</text>\n", (double)p->intent_prob);

    /* Column labels: the key tokens, slanted. */
    for (int64_t t = 0; t < n; t++) {
        double x = left + cell * ((double)t + 0.5);
        fprintf(f, "<text transform='translate(%.1f,%.1f) rotate(-45)' class='t'>", x + 4, top - 6);
        cli_xml_str(f, tok[t]);
        fprintf(f, "</text>\n");
    }
    /* The intent component: one bar of weights over the tokens. */
    fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='end' class='t'>intent attention</text>\n",
            left - 8, bar_y + cell / 2 + 4);
    for (int64_t t = 0; t < n; t++) {
        double w = p->attn_intent[t];
        blue(w / imax, col, sizeof col);
        fprintf(f,
                "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='%s' stroke='#ccc'>"
                "<title>intent attention on ",
                left + cell * (double)t, bar_y, cell, cell, col);
        cli_xml_str(f, tok[t]);
        fprintf(f, ": %.4f</title></rect>\n", w);
        if (cell >= 24)
            fprintf(f,
                    "<text x='%.1f' y='%.1f' text-anchor='middle' class='v' fill='%s'>%.2f"
                    "</text>\n",
                    left + cell * ((double)t + 0.5), bar_y + cell / 2 + 3,
                    w / imax > 0.6 ? "white" : "#222", w);
    }
    /* The entity component: row t = token t's weights over all tokens. */
    fprintf(f,
            "<text x='%.1f' y='%.1f' class='s'>slot attention: row = query token (its predicted "
            "tag on the right), column = attended token</text>\n",
            left, mat_y - 8);
    for (int64_t r = 0; r < n; r++) {
        double y = mat_y + cell * (double)r;
        fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='end' class='t'>", left - 8,
                y + cell / 2 + 4);
        cli_xml_str(f, tok[r]);
        fprintf(f, "</text>\n<text x='%.1f' y='%.1f' class='s'>", left + cell * (double)n + 8,
                y + cell / 2 + 4);
        cli_xml_str(f, at_vocab_str(v->slots, p->slots[r]));
        fprintf(f, "</text>\n");
        for (int64_t c = 0; c < n; c++) {
            double w = p->attn_entity[r * n + c];
            blue(w / amax, col, sizeof col);
            fprintf(f,
                    "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='%s' stroke='#eee'>"
                    "<title>",
                    left + cell * (double)c, y, cell, cell, col);
            cli_xml_str(f, tok[r]);
            fprintf(f, " -&gt; ");
            cli_xml_str(f, tok[c]);
            fprintf(f, ": %.4f</title></rect>\n", w);
            if (cell >= 24)
                fprintf(f,
                        "<text x='%.1f' y='%.1f' text-anchor='middle' class='v' fill='%s'>%.2f"
                        "</text>\n",
                        left + cell * ((double)c + 0.5), y + cell / 2 + 3,
                        w / amax > 0.6 ? "white" : "#222", w);
        }
    }
    /* The scaling factors: the mean over d of s per token, around 1. */
    if (have_s) {
        const float *rows[2] = {si, se};
        const char *names[2] = {"s intent (mean)", "s entity (mean)"};
        for (int k = 0; k < 2; k++) {
            double y = s_y + cell * k;
            fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='end' class='t'>%s</text>\n", left - 8,
                    y + cell / 2 + 4, names[k]);
            for (int64_t t = 0; t < n; t++) {
                diverging((rows[k][t] - 1) / sdev, col, sizeof col);
                fprintf(f,
                        "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='%s' "
                        "stroke='#ccc'><title>%s, ",
                        left + cell * (double)t, y, cell, cell, col, names[k]);
                cli_xml_str(f, tok[t]);
                fprintf(f, ": %.4f</title></rect>\n", rows[k][t]);
            }
        }
        fprintf(f,
                "<text x='%.1f' y='%.1f' class='s'>scaling factors s: blue below 1, red above "
                "(full scale 1 &#177; %.3g)</text>\n",
                left, s_y + 2 * cell + 14, sdev);
    }
    /* Legend. */
    fprintf(f, "<defs><linearGradient id='g'><stop offset='0' stop-color='#ffffff'/><stop "
               "offset='1' stop-color='#08306b'/></linearGradient></defs>\n");
    fprintf(f,
            "<rect x='%.1f' y='%.1f' width='160' height='12' fill='url(#g)' stroke='#ccc'/>\n"
            "<text x='%.1f' y='%.1f' class='s'>0</text><text x='%.1f' y='%.1f' "
            "class='s'>max (slot %.3f, intent %.3f)</text>\n",
            left, legend_y + 10, left, legend_y + 36, left + 120, legend_y + 36, amax, imax);
    fprintf(f, "</svg>\n");
    free(si);
    free(se);
    /* The write's own errno (ENOSPC), before closing can replace it. */
    int werr = ferror(f) ? errno : 0;
    if (cli_out_close(&of, false) != 0)
        return cli_fail(CLI_EXIT_FAIL, CMD, "--heatmap %s: writing failed: %s", path,
                        strerror(werr ? werr : errno));
    return CLI_EXIT_OK;
}

/* ---- JSON lines ---- */

static void print_pred(const at_nlu_model *m, const at_split *s, int64_t i, const at_nlu_pred *p,
                       const pred_opts *o) {
    const at_nlu_vocab *v = at_nlu_model_vocab(m);
    int64_t n = p->n;
    const char **tok = s->words + s->start[i];
    FILE *f = stdout;
    fputs("{\"text\":\"", f);
    for (int64_t t = 0; t < n; t++) {
        /* Tokens hold no whitespace; the escaping of cli_json_str without its quotes. */
        if (t) fputc(' ', f);
        for (const unsigned char *c = (const unsigned char *)tok[t]; *c; c++) {
            if (*c == '"' || *c == '\\')
                fprintf(f, "\\%c", *c);
            else if (*c < 0x20)
                fprintf(f, "\\u%04x", *c);
            else
                fputc(*c, f);
        }
    }
    fputs("\",\"intent\":", f);
    cli_json_str(f, at_vocab_str(v->intents, p->intent));
    fputs(",\"prob\":", f);
    json_num(f, p->intent_prob);
    fputs(",\"slots\":[", f);
    const char *tags[AT_DATA_MAX_TOKENS];
    for (int64_t t = 0; t < n && t < AT_DATA_MAX_TOKENS; t++)
        tags[t] = at_vocab_str(v->slots, p->slots[t]);
    at_span spans[AT_DATA_MAX_TOKENS];
    int64_t ns = at_bio_spans(tags, n, spans, AT_DATA_MAX_TOKENS);
    for (int64_t k = 0; k < ns; k++) {
        fputs(k ? ",{\"type\":" : "{\"type\":", f);
        cli_json_str(f, spans[k].type);
        fputs(",\"text\":\"", f);
        for (int64_t t = spans[k].start; t < spans[k].end; t++) {
            if (t > spans[k].start) fputc(' ', f);
            for (const unsigned char *c = (const unsigned char *)tok[t]; *c; c++) {
                if (*c == '"' || *c == '\\')
                    fprintf(f, "\\%c", *c);
                else if (*c < 0x20)
                    fprintf(f, "\\u%04x", *c);
                else
                    fputc(*c, f);
            }
        }
        fprintf(f, "\",\"start\":%lld,\"end\":%lld}", (long long)spans[k].start,
                (long long)spans[k].end);
    }
    fputc(']', f);
    if (o->attention) {
        fputs(",\"tokens\":[", f);
        for (int64_t t = 0; t < n; t++) {
            if (t) fputc(',', f);
            cli_json_str(f, tok[t]);
        }
        fputs("],\"tags\":[", f);
        for (int64_t t = 0; t < n; t++) {
            if (t) fputc(',', f);
            cli_json_str(f, tags[t]);
        }
        fputs("],\"attention\":{\"intent\":", f);
        json_floats(f, p->attn_intent, n);
        fputs(",\"entity\":[", f);
        for (int64_t t = 0; t < n; t++) {
            if (t) fputc(',', f);
            json_floats(f, p->attn_entity + t * n, n);
        }
        fputs("]},\"s\":", f);
        if (p->s_intent && p->s_entity && p->d > 0) {
            float *mean = malloc((size_t)(n ? n : 1) * sizeof *mean);
            fprintf(f, "{\"d\":%lld", (long long)p->d);
            if (mean) {
                s_means(p->s_intent, n, p->d, mean);
                fputs(",\"intent_mean\":", f);
                json_floats(f, mean, n);
                s_means(p->s_entity, n, p->d, mean);
                fputs(",\"entity_mean\":", f);
                json_floats(f, mean, n);
                free(mean);
            }
            if (o->full) {
                const float *sv[2] = {p->s_intent, p->s_entity};
                for (int k = 0; k < 2; k++) {
                    fputs(k ? ",\"entity\":[" : ",\"intent\":[", f);
                    for (int64_t t = 0; t < n; t++) {
                        if (t) fputc(',', f);
                        json_floats(f, sv[k] + t * p->d, p->d);
                    }
                    fputc(']', f);
                }
            }
            fputc('}', f);
        } else {
            fputs("null", f);
        }
    }
    fputs("}\n", f);
}

/* Predicts the sentences of text (one a line, none blank) and prints them. */
static int predict_text(at_nlu_model *m, const char *text, const char *name, pred_opts *o) {
    at_err e = {0};
    at_split *s = NULL;
    at_status st = at_dataset_sentences_text(&s, text, name, &e);
    if (st != AT_OK) return cli_fail(cli_exit_for_input(st), CMD, "%s", e.msg);
    at_nlu_pred *p = NULL;
    st = at_nlu_predict(m, s, &p, &e);
    if (st != AT_OK) {
        at_split_free(s);
        return cli_fail(cli_exit_for_work(st), CMD, "%s", e.msg);
    }
    int rc = CLI_EXIT_OK;
    for (int64_t i = 0; i < s->n; i++) print_pred(m, s, i, &p[i], o);
    if (o->heatmap && !o->heatmap_done && s->n > 0) {
        rc = write_heatmap(o->heatmap, m, s, 0, &p[0]);
        o->heatmap_done = true;
    }
    fflush(stdout);
    at_nlu_preds_free(p, s->n);
    at_split_free(s);
    return rc;
}

static bool blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n' && *s != '\v' && *s != '\f')
            return false;
    return true;
}

/* Lines of stdin, in chunks (one line at a time from a terminal, so answers come at once). */
static int predict_stdin(at_nlu_model *m, pred_opts *o) {
    const int chunk = isatty(0) ? 1 : 256;
    char *buf = NULL, *line = NULL;
    size_t cap = 0, len = 0, lcap = 0;
    int in_chunk = 0, rc = CLI_EXIT_OK;
    long lineno = 0, first = 0;
    for (;;) {
        ssize_t r = getline(&line, &lcap, stdin);
        if (r > 0 && !blank(line)) {
            lineno++;
            /* Each line checked alone, so a message names its line of stdin. */
            at_err e = {0};
            at_split *one = NULL;
            at_status st = at_dataset_sentences_text(&one, line, "stdin", &e);
            at_split_free(one);
            if (st != AT_OK) {
                /* The reader saw one line: give the message stdin's line number. */
                const char *rest = !strncmp(e.msg, "stdin:1:", 8) ? e.msg + 8 : NULL;
                if (rest)
                    rc = cli_fail(cli_exit_for_input(st), CMD, "stdin:%ld:%s", lineno, rest);
                else
                    rc = cli_fail(cli_exit_for_input(st), CMD, "stdin line %ld: %s", lineno, e.msg);
                break;
            }
            if (len + (size_t)r + 2 > cap) {
                size_t nc = (len + (size_t)r + 2) * 2;
                char *nb = realloc(buf, nc);
                if (!nb) {
                    rc = cli_fail(CLI_EXIT_FAIL, CMD, "out of memory");
                    break;
                }
                buf = nb;
                cap = nc;
            }
            memcpy(buf + len, line, (size_t)r);
            len += (size_t)r;
            if (buf[len - 1] != '\n') buf[len++] = '\n';
            buf[len] = 0;
            if (!in_chunk) first = lineno;
            in_chunk++;
        } else if (r > 0) {
            lineno++;
        }
        if (in_chunk && (in_chunk >= chunk || r < 0)) {
            char name[64];
            snprintf(name, sizeof name, "stdin lines %ld-%ld", first, lineno);
            if ((rc = predict_text(m, buf, name, o)) != CLI_EXIT_OK) break;
            len = 0;
            in_chunk = 0;
        }
        if (r < 0) break;
    }
    if (rc == CLI_EXIT_OK && ferror(stdin))
        rc = cli_fail(CLI_EXIT_FAIL, CMD, "reading stdin: %s", strerror(errno));
    free(buf);
    free(line);
    return rc;
}

int cmd_predict(int argc, char **argv) {
    const char *device = "cpu";
    int64_t threads = 0;
    pred_opts o = {0};
    const cli_opt opts[] = {
        CLI_OPT_FLAG("attention", &o.attention,
                     "add the tokens, tags, the attention weights of both components (intent: "
                     "one weight a token; entity: a row of weights a token) and the scaling "
                     "factors s of G (the mean over d a token; null where G is off)"),
        CLI_OPT_FLAG("attention-full", &o.full,
                     "with --attention, also the whole s vectors (d numbers a token and task)"),
        CLI_OPT_STR("heatmap", &o.heatmap, "FILE.svg",
                    "draw the attention and scaling factors of the first sentence as a heatmap"),
        CLI_OPT_CHOICE("device", &device, "cpu|cuda", "where to run"),
        CLI_OPT_INT("threads", &threads, 0, 4096, "CPU threads; 0 = OpenMP's default"),
    };
    const cli_group groups[] = {CLI_GROUP("Options", opts)};
    const cli_cmd c = {
        .name = CMD,
        .usage = "MODEL.onnx [SENTENCE ...] [--attention] [--heatmap FILE.svg]",
        .summary = "Predict the intent and slots of sentences, as JSON lines.",
        .about = "Sentences come from the arguments, or from stdin (one a line; blank lines are "
                 "skipped) when there are none or one is '-'. Tokens are split on whitespace and "
                 "looked up as they are (the bundled corpora are lower-case). Each output line "
                 "holds the text, the intent and its probability, and the slots as spans: type, "
                 "text, and the token range [start, end).",
        .epilog = "Examples:\n  attune predict trained.onnx \"book a table for two\"\n  "
                  "attune predict trained.onnx --attention --heatmap attn.svg \"wake me up at "
                  "seven\"\n  attune predict trained.onnx < data/sample/test/seq.in",
        .groups = groups,
        .n_groups = 1,
        .min_pos = 1,
        .max_pos = -1,
        .pos_name = "MODEL (the model file to run)",
    };
    int n_pos, rc = cli_parse(&c, argc, argv, &n_pos);
    if (rc != CLI_CONTINUE) return rc;
    if (o.full) o.attention = true;
    for (int i = 1; i < n_pos; i++) {
        if (!strcmp(argv[i], "-")) continue;
        if (blank(argv[i])) return cli_fail(CLI_EXIT_USAGE, CMD, "sentence %d is empty", i);
        if (strchr(argv[i], '\n'))
            return cli_fail(CLI_EXIT_USAGE, CMD,
                            "sentence %d holds a line break: give one sentence an argument", i);
    }
    if (o.heatmap && (rc = cli_check_out_dir(CMD, "--heatmap", o.heatmap)) != CLI_CONTINUE)
        return rc;
    if ((rc = cli_check_device(CMD, device)) != CLI_CONTINUE) return rc;
    at_nlu_model *m = NULL;
    if ((rc = cli_load_model(CMD, argv[0], NULL, &m)) != CLI_CONTINUE) return rc;
    if ((rc = cli_model_session(CMD, m, device, threads, 0, CLI_SESSION_PACK_TRAINED)) !=
        CLI_CONTINUE)
        goto done;
    rc = CLI_EXIT_OK;
    for (int i = 1; i < n_pos && rc == CLI_EXIT_OK; i++) {
        if (!strcmp(argv[i], "-")) {
            rc = predict_stdin(m, &o);
            continue;
        }
        char name[32];
        snprintf(name, sizeof name, "sentence %d", i);
        rc = predict_text(m, argv[i], name, &o);
    }
    if (n_pos == 1) rc = predict_stdin(m, &o);
done:
    at_nlu_model_free(m);
    return rc;
}
