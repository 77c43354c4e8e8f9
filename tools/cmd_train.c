/* attune train: trains a model file (or a model built from options) on a dataset folder through
 * at_nlu_train, with a progress display, checkpoints, JSON-line metrics and an SVG of the curves.
 *
 * Resuming (--resume CHECKPOINT) goes on exactly where the checkpoint was written: a checkpoint
 * holds every parameter and optimizer state value and the trainer's state (phase, epoch, batch
 * within it, session step, unlabelled stream, running losses, best model and early-stopping
 * count; at_nlu_train_opts.resume), so a resumed run takes the same steps and selects the same
 * model as an uninterrupted one with the same options. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "graph/quote.h"

#define CMD "train"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static volatile sig_atomic_t g_interrupted = 0;

static void on_sigint(int sig) {
    (void)sig;
    /* A second Ctrl-C ends the process the usual way. */
    if (g_interrupted) {
        signal(SIGINT, SIG_DFL);
        raise(SIGINT);
    }
    g_interrupted = 1;
}

/* ---- phases ---- */

static int phase_of(const char *s, size_t n) {
    static const char *names[3] = {"base", "gan", "joint"};
    for (int i = 0; i < 3; i++)
        if ((n == 1 && s[0] == '0' + i) || (n == strlen(names[i]) && !strncmp(s, names[i], n)))
            return i;
    return -1;
}

/* "1", "0-2", "gan-joint". */
static int parse_phases(const char *v, int *first, int *last) {
    const char *dash = strchr(v, '-');
    int a = phase_of(v, dash ? (size_t)(dash - v) : strlen(v));
    int b = dash ? phase_of(dash + 1, strlen(dash + 1)) : a;
    if (a < 0 || b < 0)
        return cli_fail(CLI_EXIT_USAGE, CMD,
                        "--phases: '%s' is not a phase or a range of phases (0, 1, 2, 0-2, "
                        "base-joint)",
                        v);
    if (a > b)
        return cli_fail(CLI_EXIT_USAGE, CMD, "--phases: '%s' runs backwards; phases run in order",
                        v);
    *first = a;
    *last = b;
    return CLI_CONTINUE;
}

/* ---- what the progress callback keeps ---- */

typedef struct point {
    double x, y[4]; /* x: global step; y: loss_task, loss_d, loss_adv, loss_reg (NaN absent) */
} point;

typedef struct epoch_pt {
    double x;
    int phase, epoch;
    double intent, slot_f1, sentence; /* percentages */
    bool best;
    double loss_task;
} epoch_pt;

typedef enum show_mode { SHOW_NONE, SHOW_LINES, SHOW_BAR } show_mode;

typedef struct prog {
    show_mode show;
    at_nlu_model *m;
    /* the previous call */
    int prev_phase, prev_epoch;
    double prev_t;
    double prev_mean[4];
    int64_t prev_step;
    /* speed: time spent between step calls within an epoch */
    double step_time;
    int64_t step_count;
    double last_print;
    bool bar_open;
    /* checkpoints */
    const char *ckpt_dir;
    int64_t ckpt_every;
    uint64_t seed;
    int n_ckpt;
    char last_ckpt[4096];
    char ckpt_err[5400];
    /* curves */
    point *pts;
    int64_t n_pts, cap_pts;
    epoch_pt *eps;
    int n_eps, cap_eps;
    int64_t phase_start[3];
    /* the JSON lines (the trainer writes them; a write error stops training) */
    FILE *metrics;
    const char *metrics_path;
    /* failures inside the callback stop training */
    bool failed;
} prog;

static void bar_clear(prog *p) {
    if (p->bar_open) {
        fputs("\r\033[K", stderr);
        p->bar_open = false;
    }
}

static const char *fmt_time(double s, char *buf, size_t cap) {
    if (!isfinite(s) || s < 0) return snprintf(buf, cap, "?"), buf;
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, cap, "%ld:%02ld", t / 60, t % 60);
    return buf;
}

static void losses_text(const at_nlu_progress *pr, char *buf, size_t cap) {
    int k = snprintf(buf, cap, "loss %.4f", pr->loss_task);
    if (isfinite(pr->loss_d) && k > 0 && (size_t)k < cap)
        k += snprintf(buf + k, cap - (size_t)k, "  D %.4f", pr->loss_d);
    if (isfinite(pr->loss_adv) && k > 0 && (size_t)k < cap)
        k += snprintf(buf + k, cap - (size_t)k, "  adv %.4f", pr->loss_adv);
    if (isfinite(pr->loss_reg) && k > 0 && (size_t)k < cap)
        k += snprintf(buf + k, cap - (size_t)k, "  reg %.2g", pr->loss_reg);
    if (isfinite(pr->loss_task_adv) && k > 0 && (size_t)k < cap)
        k += snprintf(buf + k, cap - (size_t)k, "  loss(x+eta) %.4f", pr->loss_task_adv);
    if (isfinite(pr->loss_vat) && k > 0 && (size_t)k < cap)
        k += snprintf(buf + k, cap - (size_t)k, "  vat %.4f", pr->loss_vat);
    if (pr->phase > 0 && pr->lambda > 0 && k > 0 && (size_t)k < cap)
        snprintf(buf + k, cap - (size_t)k, "  lambda %.3f", pr->lambda);
}

static bool save_checkpoint(prog *p, const at_nlu_progress *pr, bool epoch_end) {
    at_session *s = at_nlu_model_session(p->m, NULL);
    int epoch = pr->epoch;
    at_checkpoint_info info = {
        .step = s ? at_session_step(s) : 0,
        .epoch = epoch_end ? epoch : epoch - 1,
        .phase = pr->phase,
        .rng_seed = p->seed,
    };
    char path[4096];
    if (epoch_end)
        snprintf(path, sizeof path, "%s/phase%d-epoch%03d.ckpt.onnx", p->ckpt_dir, pr->phase,
                 epoch);
    else
        snprintf(path, sizeof path, "%s/phase%d-epoch%03d-step%06lld.ckpt.onnx", p->ckpt_dir,
                 pr->phase, epoch, (long long)pr->step);
    at_err e = {0};
    if (at_nlu_checkpoint_save(p->m, &info, path, &e) != AT_OK) {
        snprintf(p->ckpt_err, sizeof p->ckpt_err, "writing checkpoint %s: %s", path, e.msg);
        return false;
    }
    snprintf(p->last_ckpt, sizeof p->last_ckpt, "%s", path);
    p->n_ckpt++;
    return true;
}

static bool push_point(prog *p, const point *pt) {
    if (p->n_pts == p->cap_pts) {
        int64_t nc = p->cap_pts ? 2 * p->cap_pts : 1024;
        point *np = realloc(p->pts, (size_t)nc * sizeof *np);
        if (!np) return false;
        p->pts = np;
        p->cap_pts = nc;
    }
    p->pts[p->n_pts++] = *pt;
    return true;
}

static bool push_epoch(prog *p, const epoch_pt *ep) {
    if (p->n_eps == p->cap_eps) {
        int nc = p->cap_eps ? 2 * p->cap_eps : 64;
        epoch_pt *np = realloc(p->eps, (size_t)nc * sizeof *np);
        if (!np) return false;
        p->eps = np;
        p->cap_eps = nc;
    }
    p->eps[p->n_eps++] = *ep;
    return true;
}

static bool on_progress(const at_nlu_progress *pr, void *user) {
    prog *p = user;
    double t = now_s();
    bool epoch_end = pr->epoch_end;
    bool new_epoch = pr->phase != p->prev_phase || pr->epoch != p->prev_epoch;
    double means[4] = {pr->loss_task, pr->loss_d, pr->loss_adv, pr->loss_reg};
    int64_t x = pr->global_step;
    char buf[256], tb[32], eb[32];

    if (!epoch_end) {
        if (pr->phase != p->prev_phase && pr->phase >= 0 && pr->phase < 3) {
            p->phase_start[pr->phase] = x - 1;
            /* Each phase runs other update sets: its own speed. */
            p->step_time = 0;
            p->step_count = 0;
        }
        if (new_epoch) {
            p->prev_step = 0;
            for (int k = 0; k < 4; k++) p->prev_mean[k] = 0;
        } else {
            p->step_time += t - p->prev_t;
            p->step_count++;
        }
        /* The step's own losses from the running means: k m_k - (k - 1) m_(k-1). */
        point pt = {.x = (double)x};
        int64_t k = pr->step, k0 = p->prev_step;
        for (int i = 0; i < 4; i++) {
            if (!isfinite(means[i]) || k <= k0) {
                pt.y[i] = NAN;
                continue;
            }
            double prev = k0 > 0 && isfinite(p->prev_mean[i]) ? p->prev_mean[i] : 0;
            pt.y[i] = ((double)k * means[i] - (double)k0 * prev) / (double)(k - k0);
        }
        if (!push_point(p, &pt)) p->failed = true;
        for (int i = 0; i < 4; i++) p->prev_mean[i] = means[i];
        p->prev_step = k;

        double speed = p->step_time > 0 ? (double)p->step_count / p->step_time : NAN;
        int64_t left = (int64_t)(pr->epochs - pr->epoch) * pr->steps + (pr->steps - pr->step);
        if (p->show == SHOW_BAR && (t - p->last_print > 0.1 || pr->step == pr->steps)) {
            int width = 20, fill = pr->steps > 0 ? (int)(width * pr->step / pr->steps) : 0;
            char bar[64];
            for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
            bar[width] = 0;
            losses_text(pr, buf, sizeof buf);
            fprintf(stderr, "\r\033[Kphase %d epoch %d/%d [%s] %lld/%lld  %s  %.1f steps/s  ETA %s",
                    pr->phase, pr->epoch, pr->epochs, bar, (long long)pr->step,
                    (long long)pr->steps, buf, speed,
                    fmt_time((double)left / speed, tb, sizeof tb));
            fflush(stderr);
            p->bar_open = true;
            p->last_print = t;
        } else if (p->show == SHOW_LINES && t - p->last_print > 10) {
            losses_text(pr, buf, sizeof buf);
            fprintf(stderr,
                    "phase %d epoch %d/%d step %lld/%lld  %s  %.1f steps/s  ETA %s (phase)\n",
                    pr->phase, pr->epoch, pr->epochs, (long long)pr->step, (long long)pr->steps,
                    buf, speed, fmt_time((double)left / speed, tb, sizeof tb));
            p->last_print = t;
        }
        if (p->ckpt_dir && p->ckpt_every > 0 && x % p->ckpt_every == 0 && pr->step < pr->steps &&
            !save_checkpoint(p, pr, false))
            p->failed = true;
    } else {
        epoch_pt ep = {.x = (double)x,
                       .phase = pr->phase,
                       .epoch = pr->epoch,
                       .intent = NAN,
                       .slot_f1 = NAN,
                       .sentence = NAN,
                       .best = pr->improved,
                       .loss_task = pr->loss_task};
        if (pr->valid) {
            ep.intent = 100 * pr->valid->intent_acc;
            ep.slot_f1 = 100 * pr->valid->slots.f1;
            ep.sentence = 100 * pr->valid->sentence_acc;
        }
        if (!push_epoch(p, &ep)) p->failed = true;
        if (p->show != SHOW_NONE) {
            bar_clear(p);
            losses_text(pr, buf, sizeof buf);
            char v[160] = "";
            if (pr->valid)
                snprintf(v, sizeof v, " | valid intent %.2f  slot F1 %.2f  sentence %.2f%s",
                         ep.intent, ep.slot_f1, ep.sentence, pr->improved ? " *" : "");
            double speed = p->step_time > 0 ? (double)p->step_count / p->step_time : NAN;
            fprintf(stderr, "phase %d epoch %d/%d  %lld steps  %s%s | %.1f steps/s  %s\n",
                    pr->phase, ep.epoch, pr->epochs, (long long)pr->steps, buf, v, speed,
                    fmt_time(pr->elapsed_s, eb, sizeof eb));
            fflush(stderr);
            p->last_print = t;
        }
        if (p->ckpt_dir && !save_checkpoint(p, pr, true)) p->failed = true;
        if (p->metrics && ferror(p->metrics)) {
            snprintf(p->ckpt_err, sizeof p->ckpt_err, "--metrics %s: writing failed: %s",
                     p->metrics_path, strerror(errno ? errno : EIO));
            p->failed = true;
        }
    }
    p->prev_phase = pr->phase;
    p->prev_epoch = pr->epoch;
    p->prev_t = t;
    return !p->failed && !g_interrupted;
}

/* ---- the SVG of the curves ---- */

typedef struct axis {
    double lo, hi;
    bool log;
    double px0, px1; /* pixels of lo and hi */
} axis;

static double ax_map(const axis *a, double v) {
    double f = a->log ? (log10(v) - log10(a->lo)) / (log10(a->hi) - log10(a->lo))
                      : (v - a->lo) / (a->hi - a->lo);
    return a->px0 + f * (a->px1 - a->px0);
}

static double nice_step(double range, int n) {
    double raw = range / (n > 0 ? n : 1), p = pow(10, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

static void draw_ticks(FILE *f, const axis *x, const axis *y, double top, double bottom,
                       double left, double right) {
    double st = nice_step(x->hi - x->lo, 8);
    for (double v = ceil(x->lo / st) * st; v <= x->hi + 1e-9; v += st) {
        double px = ax_map(x, v);
        fprintf(f,
                "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#e4e4e4'/>\n"
                "<text x='%.1f' y='%.1f' text-anchor='middle' class='t'>%g</text>\n",
                px, top, px, bottom, px, bottom + 14, v);
    }
    if (y->log) {
        for (double d = floor(log10(y->lo)); d <= ceil(log10(y->hi)); d++) {
            double v = pow(10, d);
            if (v < y->lo * 0.999 || v > y->hi * 1.001) continue;
            double py = ax_map(y, v);
            fprintf(f,
                    "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#e4e4e4'/>\n"
                    "<text x='%.1f' y='%.1f' text-anchor='end' class='t'>%g</text>\n",
                    left, py, right, py, left - 4, py + 4, v);
        }
    } else {
        st = nice_step(y->hi - y->lo, 5);
        for (double v = ceil(y->lo / st) * st; v <= y->hi + 1e-9; v += st) {
            double py = ax_map(y, v);
            fprintf(f,
                    "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#e4e4e4'/>\n"
                    "<text x='%.1f' y='%.1f' text-anchor='end' class='t'>%g</text>\n",
                    left, py, right, py, left - 4, py + 4, v);
        }
    }
    fprintf(f, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='none' stroke='#888'/>\n",
            left, top, right - left, bottom - top);
}

static void phase_lines(FILE *f, const prog *p, const axis *x, double top, double bottom) {
    for (int ph = 1; ph < 3; ph++) {
        if (p->phase_start[ph] < 0 || p->phase_start[ph] <= x->lo) continue;
        double px = ax_map(x, (double)p->phase_start[ph] + 0.5);
        /* Written down along the line, so labels of nearby phases do not collide. */
        fprintf(f,
                "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#999' "
                "stroke-dasharray='4,3'/>\n<text transform='translate(%.1f,%.1f) rotate(90)' "
                "class='t' fill-opacity='0.8'>phase %d</text>\n",
                px, top, px, bottom, px + 3, (top + bottom) / 2, ph);
    }
}

static int write_plot(const char *path, const prog *p, const char *title) {
    FILE *f = fopen(path, "w");
    if (!f) return cli_fail(CLI_EXIT_FAIL, CMD, "--plot %s: %s", path, strerror(errno));
    const double W = 860, left = 70, right = W - 150, t1 = 50, b1 = 290, t2 = 340, b2 = 580;
    const double H = 620;
    static const char *names[4] = {"task loss", "D loss", "adversarial loss", "s regularization"};
    static const char *colors[4] = {"#1f77b4", "#d62728", "#ff7f0e", "#2ca02c"};
    fprintf(f,
            "<?xml version='1.0' encoding='UTF-8'?>\n"
            "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' "
            "viewBox='0 0 %.0f %.0f' font-family='sans-serif'>\n"
            "<style>.t{font-size:11px;fill:#333}.h{font-size:14px;font-weight:bold}</style>\n"
            "<rect width='100%%' height='100%%' fill='white'/>\n<text x='%.0f' y='24' "
            "class='h'>",
            W, H, W, H, left);
    cli_xml_str(f, title);
    fprintf(f, "</text>\n");

    /* x range: every step recorded (at least one). */
    double xlo = p->n_pts ? p->pts[0].x - 1 : 0, xhi = p->n_pts ? p->pts[p->n_pts - 1].x : 1;
    for (int i = 0; i < p->n_eps; i++)
        if (p->eps[i].x > xhi) xhi = p->eps[i].x;
    if (xhi <= xlo) xhi = xlo + 1;
    axis x1 = {xlo, xhi, false, left, right}, x2 = x1;

    /* Losses: per-step values averaged over buckets of steps, at most 400 points. */
    int64_t n = p->n_pts, per = n > 400 ? (n + 399) / 400 : 1, nb = n ? (n + per - 1) / per : 0;
    double *bx = calloc((size_t)(nb ? nb : 1), sizeof *bx);
    double *by = calloc((size_t)(nb ? nb : 1) * 4, sizeof *by);
    double ylo = INFINITY, yhi = -INFINITY;
    bool have[4] = {false};
    for (int64_t b = 0; bx && by && b < nb; b++) {
        double sx = 0, sy[4] = {0};
        int cx = 0, cy[4] = {0};
        for (int64_t i = b * per; i < n && i < (b + 1) * per; i++) {
            sx += p->pts[i].x;
            cx++;
            for (int k = 0; k < 4; k++)
                if (isfinite(p->pts[i].y[k])) sy[k] += p->pts[i].y[k], cy[k]++;
        }
        bx[b] = sx / cx;
        for (int k = 0; k < 4; k++) {
            by[b * 4 + k] = cy[k] ? sy[k] / cy[k] : NAN;
            if (cy[k]) {
                have[k] = true;
                double v = by[b * 4 + k];
                if (v > 0 && v < ylo) ylo = v;
                if (v > yhi) yhi = v;
            }
        }
    }
    if (!(ylo < yhi)) ylo = 1e-3, yhi = 1;
    bool logy = ylo > 0 && yhi / ylo > 20;
    axis y1 = {logy ? pow(10, floor(log10(ylo))) : 0, logy ? pow(10, ceil(log10(yhi))) : yhi * 1.05,
               logy, b1, t1};
    fprintf(f,
            "<text x='%.0f' y='%.0f' class='t'>losses by step (mean of each bucket of %lld "
            "step%s)%s</text>\n",
            left, t1 - 6, (long long)per, per == 1 ? "" : "s", logy ? ", log scale" : "");
    draw_ticks(f, &x1, &y1, t1, b1, left, right);
    phase_lines(f, p, &x1, t1, b1);
    int row = 0;
    for (int k = 0; k < 4; k++) {
        if (!have[k]) continue;
        fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='1.5' points='", colors[k]);
        for (int64_t b = 0; b < nb; b++) {
            double v = by[b * 4 + k];
            if (!isfinite(v) || (logy && v <= 0)) continue;
            fprintf(f, "%.1f,%.1f ", ax_map(&x1, bx[b]), ax_map(&y1, v));
        }
        fprintf(f,
                "'/>\n<line x1='%.0f' y1='%.0f' x2='%.0f' y2='%.0f' stroke='%s' "
                "stroke-width='3'/><text x='%.0f' y='%.0f' class='t'>%s</text>\n",
                right + 12, t1 + 10 + 18 * row, right + 30, t1 + 10 + 18 * row, colors[k],
                right + 36, t1 + 14 + 18 * row, names[k]);
        row++;
    }
    free(bx);
    free(by);

    /* Valid metrics by epoch. */
    bool any_valid = false;
    double mlo = 100;
    for (int i = 0; i < p->n_eps; i++) {
        const epoch_pt *e = &p->eps[i];
        if (!isfinite(e->intent)) continue;
        any_valid = true;
        double m = fmin(e->intent, fmin(e->slot_f1, e->sentence));
        if (m < mlo) mlo = m;
    }
    mlo = floor(mlo / 10) * 10;
    if (mlo > 90) mlo = 90;
    axis y2 = {mlo, 100, false, b2, t2};
    fprintf(f,
            "<text x='%.0f' y='%.0f' class='t'>validation metrics by epoch (%%; a ring marks "
            "each new best)</text>\n",
            left, t2 - 6);
    draw_ticks(f, &x2, &y2, t2, b2, left, right);
    phase_lines(f, p, &x2, t2, b2);
    static const char *mnames[3] = {"intent accuracy", "slot F1", "sentence accuracy"};
    static const char *mcolors[3] = {"#9467bd", "#1f77b4", "#d62728"};
    if (!any_valid)
        fprintf(f, "<text x='%.0f' y='%.0f' class='t'>no validation split</text>\n",
                (left + right) / 2 - 50, (t2 + b2) / 2);
    for (int k = 0; any_valid && k < 3; k++) {
        fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='1.5' points='", mcolors[k]);
        for (int i = 0; i < p->n_eps; i++) {
            const epoch_pt *e = &p->eps[i];
            double v = k == 0 ? e->intent : k == 1 ? e->slot_f1 : e->sentence;
            if (isfinite(v)) fprintf(f, "%.1f,%.1f ", ax_map(&x2, e->x), ax_map(&y2, v));
        }
        fprintf(f, "'/>\n");
        for (int i = 0; i < p->n_eps; i++) {
            const epoch_pt *e = &p->eps[i];
            double v = k == 0 ? e->intent : k == 1 ? e->slot_f1 : e->sentence;
            if (!isfinite(v)) continue;
            fprintf(f,
                    "<circle cx='%.1f' cy='%.1f' r='%s' fill='%s' stroke='%s'><title>phase %d "
                    "epoch %d: %s %.2f</title></circle>\n",
                    ax_map(&x2, e->x), ax_map(&y2, v), e->best ? "4.5" : "2.5",
                    e->best ? "white" : mcolors[k], mcolors[k], e->phase, e->epoch, mnames[k], v);
        }
        fprintf(f,
                "<line x1='%.0f' y1='%.0f' x2='%.0f' y2='%.0f' stroke='%s' "
                "stroke-width='3'/><text x='%.0f' y='%.0f' class='t'>%s</text>\n",
                right + 12, t2 + 10 + 18 * k, right + 30, t2 + 10 + 18 * k, mcolors[k], right + 36,
                t2 + 14 + 18 * k, mnames[k]);
    }
    fprintf(f, "<text x='%.0f' y='%.0f' text-anchor='middle' class='t'>training step</text>\n",
            (left + right) / 2, H - 8);
    fprintf(f, "</svg>\n");
    bool err = ferror(f) != 0;
    if (fclose(f) != 0 || err)
        return cli_fail(CLI_EXIT_FAIL, CMD, "--plot %s: writing failed: %s", path, strerror(errno));
    return CLI_EXIT_OK;
}

/* ---- the command ---- */

static int check_readable(const char *opt, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return cli_fail(CLI_EXIT_USAGE, CMD, "%s %s: %s", opt, path, strerror(errno));
    fclose(f);
    if (!cli_is_file(path))
        return cli_fail(CLI_EXIT_USAGE, CMD, "%s %s: not a regular file", opt, path);
    return CLI_CONTINUE;
}

/* MODEL.onnx -> MODEL.trained.onnx */
static void default_output(const char *model, char *buf, size_t cap) {
    size_t n = strlen(model);
    if (n > 5 && !strcmp(model + n - 5, ".onnx")) n -= 5;
    snprintf(buf, cap, "%.*s.trained.onnx", (int)n, model);
}

/* A resumed run continues the checkpoint's run: its options must be the checkpoint's, or the
 * steps it takes would not be the ones the uninterrupted run takes. Names the first that differs.
 */
static int check_same_config(const char *ckpt, const at_nlu_model *m, const at_nlu_config *cfg) {
    char *a = NULL, *b = NULL;
    at_err e = {0};
    at_status st = at_nlu_config_to_string(at_nlu_model_config(m), &a, &e);
    if (!st) st = at_nlu_config_to_string(cfg, &b, &e);
    int rc = st ? cli_fail(CLI_EXIT_FAIL, CMD, "%s", e.msg) : CLI_CONTINUE;
    for (const char *x = a, *y = b; !st && *x && *y;) {
        size_t nx = strcspn(x, "\n"), ny = strcspn(y, "\n");
        if (nx != ny || memcmp(x, y, nx)) {
            size_t key = strcspn(x, "=");
            rc = cli_fail(CLI_EXIT_USAGE, CMD,
                          "--resume %s: the checkpoint's run has %.*s, this one asks %.*s; a "
                          "resumed run must keep the checkpoint's options (to start a new run "
                          "from its weights, give it as MODEL instead)",
                          ckpt, (int)nx, x, (int)ny - (int)key - 1, y + key + 1);
            break;
        }
        x += nx + (x[nx] ? 1 : 0);
        y += ny + (y[ny] ? 1 : 0);
    }
    free(a);
    free(b);
    return rc;
}

typedef struct train_args {
    const char *data, *out, *phases, *unlabelled;
    int64_t max_steps;
    double time_limit;
    const char *device;
    int64_t threads, ckpt_every;
    const char *ckpt_dir, *resume, *metrics, *plot, *progress;
    bool check_finite;
} train_args;

/* Valid sentences whose intent or slot labels the training split never has count as wrong
 * whatever the model does: say so once, as eval does, before any epoch. */
static void note_unknown_labels(at_split *valid, at_nlu_model *m) {
    at_encode_stats es;
    at_err e = {0};
    if (!valid || at_split_encode(valid, at_nlu_model_vocab(m), &es, &e) != AT_OK) return;
    if (!es.unk_intents && !es.unk_slot_labels) return;
    char line[512];
    at_encode_stats_str(&es, valid->path, line, sizeof line);
    at_msg_escape(line, sizeof line); /* the labels are the data file's words */
    fprintf(stderr, "attune: " CMD ": note: %s\n", line);
}

int cmd_train(int argc, char **argv) {
    cli_cfg_opts co;
    cli_cfg_init(&co);
    train_args t = {.device = "cpu", .progress = "auto"};
    int model_given = 0;
    const cli_opt io[] = {
        {.name = "data",
         .kind = CLI_STR,
         .dst = &t.data,
         .metavar = "DIR",
         .required = true,
         .help = "dataset folder with train/ and valid/ (valid/ drives early stopping and model "
                 "selection; without it the last model is kept)"},
        {.name = "output",
         .short_name = 'o',
         .kind = CLI_STR,
         .dst = &t.out,
         .metavar = "FILE",
         .help = "the trained model file to write (the best on valid) [default: MODEL.trained.onnx "
                 "beside MODEL, or trained.onnx]"},
        CLI_OPT_STR("unlabelled", &t.unlabelled, "FILE",
                    "extra sentences without labels (one a line, like seq.in) for the "
                    "adversarial term"),
        cli_cfg_row(&co, "label-fraction"),
    };
    cli_opt sched[CLI_CFG_MAX + 3];
    int ns = 0;
    sched[ns++] = (cli_opt)CLI_OPT_STR(
        "phases", &t.phases, "A[-B]",
        "the phases to run, a range of 0 (base: G off), 1 (G and D, the rest frozen), 2 (joint); "
        "names base, gan, joint work too (default: 0-2; phases without work, such as 1 and 2 "
        "with the generator and D off, are skipped)");
    ns += cli_cfg_rows(&co, CLI_CFG_SCHED, sched + ns);
    sched[ns++] = (cli_opt)CLI_OPT_INT("max-steps", &t.max_steps, 0, 1e15,
                                       "stop each phase after this many steps; 0 = no limit (for "
                                       "smoke tests)");
    sched[ns++] = (cli_opt)CLI_OPT_FLOAT(
        "time-limit", &t.time_limit, 0, 1e9,
        "stop training after this many seconds, keeping the best model; 0 = none");
    cli_opt adv[CLI_CFG_MAX], robust[CLI_CFG_MAX];
    int nv = cli_cfg_rows(&co, CLI_CFG_ADV, adv);
    int nr = cli_cfg_rows(&co, CLI_CFG_ROBUST, robust);
    const cli_opt run[] = {
        CLI_OPT_CHOICE("device", &t.device, "cpu|cuda", "where to train"),
        CLI_OPT_INT("threads", &t.threads, 0, 4096, "CPU threads; 0 = OpenMP's default"),
        cli_cfg_row(&co, "seed"),
        CLI_OPT_INT("checkpoint-every", &t.ckpt_every, 0, 1e15,
                    "write a checkpoint every N steps too (with --checkpoint-dir, or into "
                    "OUTPUT.ckpt/)"),
        CLI_OPT_STR("checkpoint-dir", &t.ckpt_dir, "DIR",
                    "write a checkpoint at the end of every epoch into DIR (created if missing)"),
        CLI_OPT_STR("resume", &t.resume, "CHECKPOINT",
                    "continue exactly where a checkpoint was written (weights, optimizer state, "
                    "random streams, position in the epoch, best model so far); give the same "
                    "data and options"),
        CLI_OPT_STR("metrics", &t.metrics, "FILE",
                    "write metrics as JSON lines, one an epoch (appended to when resuming)"),
        CLI_OPT_STR("plot", &t.plot, "FILE.svg", "draw the loss and metric curves"),
        CLI_OPT_CHOICE("progress", &t.progress, "auto|bar|lines|none",
                       "auto: a bar on a terminal, plain lines otherwise"),
        CLI_OPT_FLAG("check-finite", &t.check_finite,
                     "stop at the first node that produces NaN or Inf, naming it"),
    };
    cli_opt arch[CLI_CFG_MAX];
    int na = cli_cfg_rows(&co, CLI_CFG_ARCH, arch);
    const cli_group groups[] = {
        CLI_GROUP("Data", io),
        {"Schedule", sched, ns, NULL},
        {"Adversarial term", adv, nv, NULL},
        {"Adversarial examples and VAT (on the word embeddings)", robust, nr, NULL},
        CLI_GROUP("Running", run),
        {"Model (when train builds the model: no MODEL argument)", arch, na, &model_given},
    };
    const cli_cmd c = {
        .name = CMD,
        .usage = "[MODEL.onnx] --data DIR [-o TRAINED.onnx] [options]",
        .summary = "Train a model on a dataset folder: phases, early stopping, checkpoints, "
                   "metrics.",
        .about = "MODEL is a file from 'attune build' (or an earlier 'attune train'); without "
                 "it, train builds the model from the model options. Training options not given "
                 "keep the values stored in MODEL (a fresh 'attune build' model holds the "
                 "defaults shown). Each epoch ends with the valid metrics; the best model on "
                 "valid, over all phases, is what -o receives. Ctrl-C stops after the current "
                 "step and still writes the best model so far.",
        .epilog = "Examples:\n  attune train model.onnx --data data/sample -o trained.onnx "
                  "--epochs0 5 --epochs1 1 --epochs2 2\n  attune train --data data/sample --kind "
                  "bilstm --layers 1 --generator off --mode none --epochs0 8 -o base.onnx\n  "
                  "attune train model.onnx --data data/sample --adv-train fgsm --adv-eps 0.02 "
                  "-o adv.onnx\n  attune train model.onnx --data data/sample --vat "
                  "--label-fraction 0.1 -o vat.onnx",
        .groups = groups,
        .n_groups = 6,
        .min_pos = 0,
        .max_pos = 1,
    };
    int n_pos, rc = cli_parse(&c, argc, argv, &n_pos);
    if (rc != CLI_CONTINUE) return rc;
    const char *model_path = n_pos ? argv[0] : NULL;
    if ((model_path || t.resume) && model_given)
        return cli_fail(CLI_EXIT_USAGE, CMD,
                        "model options apply when train builds the model, but %s is already "
                        "built; drop %s or the model options",
                        model_path ? model_path : t.resume, model_path ? "MODEL" : "--resume");
    int first = 0, last = 2;
    if ((rc = cli_check_device(CMD, t.device)) != CLI_CONTINUE) return rc;
    if (t.phases && (rc = parse_phases(t.phases, &first, &last)) != CLI_CONTINUE) return rc;
    char out_buf[4096];
    if (!t.out) {
        if (model_path)
            default_output(model_path, out_buf, sizeof out_buf);
        else
            snprintf(out_buf, sizeof out_buf, "trained.onnx");
        t.out = out_buf;
    }
    if ((rc = cli_check_out_dir(CMD, "-o", t.out)) != CLI_CONTINUE) return rc;
    if (t.metrics && (rc = cli_check_out_dir(CMD, "--metrics", t.metrics)) != CLI_CONTINUE)
        return rc;
    if (t.plot && (rc = cli_check_out_dir(CMD, "--plot", t.plot)) != CLI_CONTINUE) return rc;
    if (t.unlabelled && (rc = check_readable("--unlabelled", t.unlabelled)) != CLI_CONTINUE)
        return rc;
    char ckpt_buf[4096];
    if (t.ckpt_every > 0 && !t.ckpt_dir) {
        snprintf(ckpt_buf, sizeof ckpt_buf, "%s.ckpt", t.out);
        t.ckpt_dir = ckpt_buf;
    }
    if (t.ckpt_dir &&
        (rc = cli_check_dir_path(CMD, "--checkpoint-dir", t.ckpt_dir)) != CLI_CONTINUE)
        return rc;

    at_nlu_model *m = NULL;
    at_split *train = NULL, *valid = NULL, *unl = NULL;
    FILE *mf = NULL;
    prog p = {.prev_phase = -1, .phase_start = {-1, -1, -1}};
    at_checkpoint_info info = {0};

    /* The model: a checkpoint, a model file, or built below from the options. */
    if (t.resume) {
        if ((rc = cli_load_model(CMD, t.resume, &info, &m)) != CLI_CONTINUE) goto done;
        if (model_path)
            fprintf(stderr, "attune: train: resuming from %s (the weights of %s are not used)\n",
                    t.resume, model_path);
    } else if (model_path) {
        if ((rc = cli_load_model(CMD, model_path, NULL, &m)) != CLI_CONTINUE) goto done;
    }
    if ((rc = cli_read_split(CMD, t.data, "train", &train)) != CLI_CONTINUE) goto done;
    char vpath[4096];
    snprintf(vpath, sizeof vpath, "%s/valid", t.data);
    if (cli_is_dir(vpath)) {
        if ((rc = cli_read_split(CMD, t.data, "valid", &valid)) != CLI_CONTINUE) goto done;
    } else {
        fprintf(stderr,
                "attune: train: no %s: training without early stopping or model selection\n",
                vpath);
    }
    if (t.unlabelled) {
        at_err e = {0};
        at_status st = at_dataset_sentences(&unl, t.unlabelled, &e);
        if (st != AT_OK) {
            rc = cli_fail(cli_exit_for_input(st), CMD, "%s", e.msg);
            goto done;
        }
    }

    at_nlu_config cfg = m ? *at_nlu_model_config(m) : at_nlu_config_default();
    if ((rc = cli_cfg_apply(CMD, &co, &cfg)) != CLI_CONTINUE) goto done;
    if (t.resume && (rc = check_same_config(t.resume, m, &cfg)) != CLI_CONTINUE) goto done;
    if (m) {
        if ((rc = cli_model_reconfigure(CMD, &m, &cfg)) != CLI_CONTINUE) goto done;
    } else {
        at_err e = {0};
        at_status st = at_nlu_model_from_split(&m, &cfg, train, &e);
        if (st != AT_OK) {
            rc = cli_fail(cli_exit_for_work(st), CMD, "%s", e.msg);
            goto done;
        }
    }
    /* The trainer checks this too, but only after the header lines were printed. */
    const at_split *all[3] = {train, valid, unl};
    for (int i = 0; i < 3; i++)
        if (all[i] && cfg.encoder == AT_NLU_TRANSFORMER && all[i]->max_len > cfg.max_positions) {
            rc = cli_fail(CLI_EXIT_USAGE, CMD,
                          "%s: a sentence has %d tokens, more than the model's max_positions %d "
                          "(--max-positions when the model is built)",
                          all[i]->path, all[i]->max_len, cfg.max_positions);
            goto done;
        }
    if ((rc = cli_model_session(CMD, m, t.device, t.threads, cfg.seed,
                                t.check_finite ? CLI_SESSION_CHECK_FINITE : 0)) != CLI_CONTINUE)
        goto done;
    note_unknown_labels(valid, m);

    if (t.ckpt_dir && cli_mkdirs(t.ckpt_dir) != 0) {
        rc = cli_fail(CLI_EXIT_FAIL, CMD, "--checkpoint-dir %s: %s", t.ckpt_dir, strerror(errno));
        goto done;
    }
    if (t.metrics && !(mf = fopen(t.metrics, t.resume ? "a" : "w"))) {
        rc = cli_fail(CLI_EXIT_FAIL, CMD, "--metrics %s: %s", t.metrics, strerror(errno));
        goto done;
    }

    bool tty = isatty(2);
    p.show = !strcmp(t.progress, "none")    ? SHOW_NONE
             : !strcmp(t.progress, "lines") ? SHOW_LINES
             : !strcmp(t.progress, "bar")   ? SHOW_BAR
             : tty                          ? SHOW_BAR
                                            : SHOW_LINES;
    p.m = m;
    p.metrics = mf;
    p.metrics_path = t.metrics;
    p.ckpt_dir = t.ckpt_dir;
    p.ckpt_every = t.ckpt_every;
    p.seed = cfg.seed;
    p.last_print = now_s();
    if (p.show != SHOW_NONE) {
        char desc[512];
        cli_model_describe(m, desc, sizeof desc);
        fprintf(stderr, "model: %s\n", desc);
        fprintf(stderr, "data: %lld training sentences", (long long)train->n);
        if (cfg.label_fraction < 1)
            fprintf(stderr, " (labels kept for %lld)",
                    (long long)llround(cfg.label_fraction * (double)train->n));
        if (unl) fprintf(stderr, ", %lld unlabelled", (long long)unl->n);
        if (valid) fprintf(stderr, ", %lld valid", (long long)valid->n);
        fputc('\n', stderr);
        if (t.resume)
            fprintf(stderr, "resuming %s: phase %d, %lld epoch%s done, session step %llu\n",
                    t.resume, info.phase, (long long)info.epoch, info.epoch == 1 ? "" : "s",
                    (unsigned long long)info.step);
    }

    at_nlu_train_opts o = at_nlu_train_defaults();
    o.first_phase = first;
    o.last_phase = last;
    o.resume = t.resume != NULL;
    o.progress = on_progress;
    o.user = &p;
    o.metrics = mf;
    o.max_steps = t.max_steps;
    o.max_seconds = t.time_limit;
    at_nlu_train_result res;
    at_err e = {0};
    void (*old_int)(int) = signal(SIGINT, on_sigint);
    at_status st = at_nlu_train(m, train, valid, unl, &o, &res, &e);
    signal(SIGINT, old_int);
    bar_clear(&p);
    if (st == AT_E_NUMERIC) {
        /* Nothing more is written: the checkpoints on disk stay the last good state. */
        const char *last = p.last_ckpt[0] ? p.last_ckpt : t.resume;
        rc = cli_fail(CLI_EXIT_FAIL, CMD, "%s; %s%s%s; %s not written", e.msg,
                      last ? "the last good checkpoint is " : "no checkpoint was written",
                      last ? last : "", last ? "" : " (--checkpoint-dir, --checkpoint-every)",
                      t.out);
        goto done;
    }
    if (st != AT_OK) {
        rc = cli_fail(cli_exit_for_work(st), CMD, "%s", e.msg);
        goto done;
    }
    if (p.failed) {
        rc = cli_fail(CLI_EXIT_FAIL, CMD, "%s", p.ckpt_err[0] ? p.ckpt_err : "out of memory");
        goto done;
    }
    st = at_nlu_save(m, t.out, &e);
    if (st != AT_OK) {
        rc = cli_fail(CLI_EXIT_FAIL, CMD, "%s", e.msg); /* e names the file */
        goto done;
    }
    if (t.plot) {
        char title[512];
        snprintf(title, sizeof title, "attune train: %s", t.out);
        if ((rc = write_plot(t.plot, &p, title)) != CLI_EXIT_OK) goto done;
    }

    printf("trained %lld steps in %.1f s (epochs: phase 0 %d, phase 1 %d, phase 2 %d)\n",
           (long long)res.steps, res.seconds, res.epochs_run[0], res.epochs_run[1],
           res.epochs_run[2]);
    if (res.best_phase >= 0)
        printf("best on valid: phase %d epoch %d: intent %.2f  slot F1 %.2f  sentence %.2f\n",
               res.best_phase, res.best_epoch, 100 * res.best_valid.intent_acc,
               100 * res.best_valid.slots.f1, 100 * res.best_valid.sentence_acc);
    if (isfinite(res.last_loss_d))
        printf("D loss in the last epoch: %.4f (chance: 2 ln 2 = 1.3863)\n", res.last_loss_d);
    if (p.n_ckpt)
        printf("%d checkpoint%s in %s (last: %s)\n", p.n_ckpt, p.n_ckpt == 1 ? "" : "s", t.ckpt_dir,
               p.last_ckpt);
    if (t.plot) printf("wrote %s\n", t.plot);
    printf("wrote %s\n", t.out);
    rc = CLI_EXIT_OK;
    if (g_interrupted)
        rc = cli_fail(CLI_EXIT_FAIL, CMD,
                      "interrupted after %lld steps; %s holds the best model "
                      "so far",
                      (long long)res.steps, t.out);
done:
    if (mf && fclose(mf) != 0 && rc == CLI_EXIT_OK)
        rc = cli_fail(CLI_EXIT_FAIL, CMD, "--metrics %s: %s", t.metrics, strerror(errno));
    free(p.pts);
    free(p.eps);
    at_split_free(train);
    at_split_free(valid);
    at_split_free(unl);
    at_nlu_model_free(m);
    return rc;
}
