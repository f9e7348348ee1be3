/* cli_score: `vaed score`. See cli_score.h. */
#include "cli/cli_score.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_options.h"
#include "cli/cli_train.h"
#include "engine/checkpoint.h"
#include "engine/eval.h"

/* The scores, by name and place in eval_score, in the order printed. */
typedef struct {
    const char *name;
    size_t offset;
} score_field;

static const score_field fields[] = {
    {"neg_elbo", offsetof(eval_score, neg_elbo)},
    {"recon", offsetof(eval_score, recon)},
    {"kl", offsetof(eval_score, kl)},
    {"iwae_nll", offsetof(eval_score, iwae_nll)},
    {"complexity_bits", offsetof(eval_score, complexity_bits)},
    {"corrected_bits", offsetof(eval_score, corrected_bits)},
    {"regret", offsetof(eval_score, regret)},
    {"recon_floor", offsetof(eval_score, recon_floor)},
    {"ood_score", offsetof(eval_score, ood_score)},
};
#define N_FIELDS ((int)(sizeof fields / sizeof fields[0]))

static double field_of(const eval_score *s, int f)
{
    return *(const double *)((const char *)s + fields[f].offset);
}

/* One data set's images and their scores. */
typedef struct {
    const char *name, *split;
    dataset d;          /* owned */
    eval_score *scores; /* owned; d.n */
} scored_set;

static int score_set(const vae_model *m, scored_set *s, const char *data, long limit,
                     const eval_score_options *o, char *err, size_t errlen)
{
    s->name = data;
    if (cli_train_load_eval_set(data, limit, -1, &s->d, &s->split, err, errlen)) return -1;
    const vae_config *c = &m->cfg;
    if (dataset_dim(&s->d) != vae_config_input_dim(c)) {
        snprintf(err, errlen, "%s has %d values per image; the model takes %d", data,
                 dataset_dim(&s->d), vae_config_input_dim(c));
        return -1;
    }
    if (vae_config_is_conditional(c) && !s->d.labels) {
        snprintf(err, errlen, "the model is conditional and %s has no labels", data);
        return -1;
    }
    int n = s->d.n, *labels = NULL; /* owned */
    s->scores = calloc((size_t)n, sizeof *s->scores);
    if (vae_config_is_conditional(c) && (labels = malloc(sizeof(int) * (size_t)n)))
        for (int i = 0; i < n; i++) labels[i] = s->d.labels[i] % c->n_classes;
    if (!s->scores || (vae_config_is_conditional(c) && !labels)) {
        free(labels);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = eval_score_inputs(m, s->d.x, labels, n, o, s->scores, err, errlen);
    free(labels);
    return rc ? -1 : 0;
}

static void print_means(const scored_set *s)
{
    char label[96];
    snprintf(label, sizeof label, "%s (%s, %d)", s->name, s->split, s->d.n);
    printf("%-28s", label);
    for (int f = 0; f < N_FIELDS; f++) {
        double sum = 0.0;
        for (int i = 0; i < s->d.n; i++) sum += field_of(&s->scores[i], f);
        printf(" %15.4f", sum / s->d.n);
    }
    printf("\n");
}

static void print_each(const scored_set *s)
{
    for (int i = 0; i < s->d.n; i++) {
        printf("%s\t%d\t%d", s->name, i, s->d.labels ? s->d.labels[i] : -1);
        for (int f = 0; f < N_FIELDS; f++) printf("\t%.6f", field_of(&s->scores[i], f));
        printf("\n");
    }
}

int cli_score(int argc, char **argv)
{
    const char *model = NULL, *data = "mnist", *against = NULL;
    long limit = 0, iwae = 64, regret = 0, seed = 1;
    double regret_lr = 1e-3;
    int each = 0;
    cli_option opts[] = {
        {"model", CLI_STRING, &model, 0, 0, "checkpoint file"},
        {"data", CLI_STRING, &data, 0, 0,
         "the normal images: mnist, fashion or a file (its test split when it has one)"},
        {"against", CLI_STRING, &against, 0, 0,
         "images to score as anomalies: the AUROC of each score"},
        {"limit", CLI_LONG, &limit, 0, INT_MAX, "the first N images of each set"},
        {"iwae", CLI_LONG, &iwae, 1, EVAL_SCORE_MAX_K, "K of the IWAE bound (default 64)"},
        {"regret", CLI_LONG, &regret, 0, EVAL_SCORE_MAX_REGRET_STEPS,
         "likelihood regret with this many Adam steps on the encoder per image (0 = off)"},
        {"regret-lr", CLI_DOUBLE, &regret_lr, 0, 0, "learning rate of those steps (default 1e-3)"},
        {"seed", CLI_LONG, &seed, 0, LONG_MAX, "random seed"},
        {"each", CLI_FLAG, &each, 0, 0, "print every image's scores (tab-separated)"},
    };
    int rc = cli_parse("score", argc, argv, opts, sizeof opts / sizeof opts[0], NULL);
    if (rc) return rc == CLI_HELP ? 0 : 2;
    if (!model) {
        fprintf(stderr, "vaed score: --model FILE is required\n");
        return 2;
    }
    if (!(regret_lr > 0) || !isfinite(regret_lr)) {
        fprintf(stderr, "vaed score: --regret-lr must be a positive number\n");
        return 2;
    }
    /* products of one image's K draws: threads would cost more than they bring */
    openblas_set_num_threads(1);
    char err[512];
    vae_model m;
    if (ckpt_load_file(&m, model, NULL, err, sizeof err)) {
        fprintf(stderr, "vaed score: %s\n", err);
        return 1;
    }
    eval_score_options o;
    eval_score_options_default(&o);
    o.iwae_k = (int)iwae;
    o.regret_steps = (int)regret;
    o.regret_lr = regret_lr;
    o.seed = (uint64_t)seed;
    scored_set sets[2] = {{0}};
    int n_sets = against ? 2 : 1, status = 1;
    for (int k = 0; k < n_sets; k++)
        if (score_set(&m, &sets[k], k ? against : data, limit, &o, err, sizeof err)) {
            fprintf(stderr, "vaed score: %s\n", err);
            goto end;
        }
    printf("scores of %s, IWAE K = %d%s; nats, bits where named; complexity: the engine's PNG "
           "encoder (Sub filter, literal-only deflate)\n",
           model, o.iwae_k, regret ? "" : ", no likelihood regret (--regret STEPS)");
    if (each) {
        printf("set\tindex\tlabel");
        for (int f = 0; f < N_FIELDS; f++) printf("\t%s", fields[f].name);
        printf("\n");
        for (int k = 0; k < n_sets; k++) print_each(&sets[k]);
    }
    printf("%-28s", "mean of");
    for (int f = 0; f < N_FIELDS; f++) printf(" %15s", fields[f].name);
    printf("\n");
    for (int k = 0; k < n_sets; k++) print_means(&sets[k]);
    if (against) {
        printf("%-28s", "auroc");
        int n0 = sets[0].d.n, n1 = sets[1].d.n;
        double *a = malloc(sizeof(double) * (size_t)n0), *b = malloc(sizeof(double) * (size_t)n1);
        if (!a || !b) {
            free(a);
            free(b);
            fprintf(stderr, "vaed score: out of memory\n");
            goto end;
        }
        for (int f = 0; f < N_FIELDS; f++) {
            for (int i = 0; i < n0; i++) a[i] = field_of(&sets[0].scores[i], f);
            for (int i = 0; i < n1; i++) b[i] = field_of(&sets[1].scores[i], f);
            double auc = eval_auroc(a, n0, b, n1);
            if (isnan(auc))
                printf(" %15s", "n/a");
            else
                printf(" %15.4f", auc);
        }
        printf("\n(AUROC: %s as anomalies against %s; above 0.5 when a score ranks them higher)\n",
               against, data);
        free(a);
        free(b);
    }
    status = 0;
end:
    for (int k = 0; k < 2; k++) {
        dataset_free(&sets[k].d);
        free(sets[k].scores);
    }
    vae_free(&m);
    return status;
}
