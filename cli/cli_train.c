/* cli_train: the commands that make and use a checkpoint file. See cli_train.h. */
#include "cli/cli_train.h"

#include <cblas.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli_options.h"
#include "cli/cli_registry.h"
#include "cli/dist_mpi.h"
#include "engine/checkpoint.h"
#include "engine/dataset.h"
#include "engine/eval.h"
#include "engine/image.h"
#include "engine/util.h"
#include "engine/vae.h"
#include "engine/file_io.h"
#include "server/data_sets.h"
#include "server/jobs_ranks.h"
#include "server/jobs_spec.h"
#include "server/registry.h"
#include "server/train_run.h"

/* ---------- train ---------- */

typedef struct {
    const char *hidden, *activation, *likelihood, *binarize, *arch, *channels;
    double sigma, beta, free_bits, lr, beta1, beta2, eps, wd, clip;
    long latent, kl_warmup, mc, batch, epochs, seed, threads, limit, klass;
} train_flags;

static int parse_int_list(const char *s, int *out, int max, int *n)
{
    *n = 0;
    if (!*s) return 0;
    while (*s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 1 || v > 65536 || *n == max) return -1;
        out[(*n)++] = (int)v;
        if (*end == ',') end++;
        else if (*end) return -1;
        s = end;
    }
    return 0;
}

static int flags_to_config(const train_flags *f, vae_config *c, char *err, size_t errlen)
{
    vae_config_default(c);
    if (parse_int_list(f->hidden, c->hidden, VAE_MAX_HIDDEN, &c->n_hidden)) {
        snprintf(err, errlen, "--hidden wants widths like 400 or 512,256 (at most %d)", VAE_MAX_HIDDEN);
        return -1;
    }
    if (parse_int_list(f->channels, c->conv_channels, VAE_MAX_HIDDEN, &c->n_conv) || c->n_conv < 1) {
        snprintf(err, errlen, "--channels wants conv widths like 32,64,128,256 (1 to %d layers)",
                 VAE_MAX_HIDDEN);
        return -1;
    }
    if (vae_activation_parse(f->activation, &c->activation)) {
        snprintf(err, errlen, "--activation: relu, leaky_relu, tanh or elu, not %s", f->activation);
        return -1;
    }
    if (vae_likelihood_parse(f->likelihood, &c->likelihood)) {
        snprintf(err, errlen, "--likelihood: bernoulli, cbernoulli, gaussian or gaussian-learned, not %s",
                 f->likelihood);
        return -1;
    }
    if (vae_binarize_parse(f->binarize, &c->binarize)) {
        snprintf(err, errlen, "--binarize: none, static or dynamic, not %s", f->binarize);
        return -1;
    }
    if (vae_arch_parse(f->arch, &c->arch)) {
        snprintf(err, errlen, "--arch: mlp or conv, not %s", f->arch);
        return -1;
    }
    c->latent = (int)f->latent;
    c->sigma = (float)f->sigma;
    c->beta = (float)f->beta;
    c->kl_warmup = f->kl_warmup;
    c->free_bits = (float)f->free_bits;
    c->mc_samples = (int)f->mc;
    c->lr = (float)f->lr;
    c->beta1 = (float)f->beta1;
    c->beta2 = (float)f->beta2;
    c->eps = (float)f->eps;
    c->weight_decay = (float)f->wd;
    c->clip_grad = (float)f->clip;
    c->batch = (int)f->batch;
    c->epochs = (int)f->epochs;
    c->seed = (uint64_t)f->seed;
    return vae_config_validate(c, err, errlen);
}

/* What `vaed train` shows while it runs: a progress bar on a terminal,
 * and one line per epoch. */
typedef struct {
    int tty;
    double last_print;
    int epochs;        /* of the run */
    int have_test;
} progress_printer;

static void print_progress(void *ctx, const trainer_progress *p)
{
    progress_printer *pp = ctx;
    if (!pp->tty) return;
    double now = util_mono_s();
    if (now - pp->last_print < 0.2 && p->step != p->steps) return;
    pp->last_print = now;
    int width = 30, done = (int)(width * p->step / (p->steps ? p->steps : 1));
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < done ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\repoch %d/%d [%s] %3d%%  loss %8.2f  %7.0f img/s  ETA %4.0fs ", p->epoch,
            p->epochs, bar, (int)(100 * p->step / (p->steps ? p->steps : 1)), p->loss,
            p->images_per_s, p->eta_s);
    fflush(stderr);
}

/* One line per epoch, the test figures when there is a test set. */
static void print_epoch(void *ctx, const trainer_epoch_metrics *history, int n_done)
{
    progress_printer *pp = ctx;
    const trainer_epoch_metrics *m = &history[n_done - 1];
    if (pp->tty) fprintf(stderr, "\r\033[K");
    if (pp->have_test)
        printf("epoch %d/%d  train loss %.2f  test loss %.2f  (recon %.2f, kl %.2f)  "
               "%.0f images/s\n",
               m->epoch, pp->epochs, m->train_loss, m->test_loss, m->test_recon, m->test_kl,
               m->images_per_s);
    else
        printf("epoch %d/%d  train loss %.2f  test loss n/a  (recon %.2f, kl %.2f)  "
               "%.0f images/s\n",
               m->epoch, pp->epochs, m->train_loss, m->train_recon, m->train_kl, m->images_per_s);
    fflush(stdout);
}

/* --events: the lines a daemon's job reads from rank 0 (jobs_ranks.h). */
static void event_progress(void *ctx, const trainer_progress *p)
{
    (void)ctx;
    jobs_ranks_print_progress(p);
}

static void event_epoch(void *ctx, const trainer_epoch_metrics *history, int n_done)
{
    (void)ctx;
    jobs_ranks_print_epoch("epoch", &history[n_done - 1]);
}

/* Set by SIGINT or SIGTERM while `vaed train --resume` runs: the pipeline
 * stops before its next step and the position goes to the resume file.
 * A lock-free atomic_int, so a signal handler may set it. */
static atomic_int train_stop;

static void on_train_signal(int sig)
{
    (void)sig;
    train_stop = 1;
}

/* SIGINT and SIGTERM set train_stop; a second one acts as usual (kills). */
static void catch_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_train_signal;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* mpirun ends the ranks on SIGTERM but passes SIGUSR1 on to each: the
     * way to stop a run of ranks at one step and keep its state */
    sigaction(SIGUSR1, &sa, NULL);
}

int cli_train(int argc, char **argv)
{
    train_flags f = {.hidden = "400", .activation = "relu", .likelihood = "bernoulli",
                     .binarize = "none", .arch = "mlp", .channels = "32,64,128,256", .sigma = 1.0, .beta = 1.0, .lr = 1e-3,
                     .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .latent = 20, .mc = 1,
                     .batch = 128, .epochs = 10, .seed = 1, .threads = 0, .limit = 0,
                     .klass = -1};
    const char *data = "mnist", *out = NULL, *reg_name = NULL, *data_dir = "var", *resume = NULL,
               *registry_at = NULL;
    double val_split = 0.0;
    long iwae_k = EVAL_TRAIN_IWAE_K;
    double rank_timeout = 300.0;
    int conditional = 0, events = 0;
    const char *job_spec = NULL, *data_root = NULL;
    const char *push_url = NULL, *push_model = NULL, *token_file = NULL;
    cli_option opts[] = {
        {"data", CLI_STRING, &data, 0, 0,
         "mnist, fashion, an IDX image file, a CIFAR-10 folder or a folder of PNGs"},
        {"val-split", CLI_DOUBLE, &val_split, 0, 0, "hold out this fraction when there is no test split"},
        {"out", CLI_STRING, &out, 0, 0, "write the checkpoint (safetensors) here"},
        {"register", CLI_STRING, &reg_name, 0, 0, "register the checkpoint as a version of this model"},
        {"data-dir", CLI_STRING, &data_dir, 0, 0, "registry directory for --register (default var)"},
        {"registry", CLI_STRING, &registry_at, 0, 0,
         "--register into this file or postgresql:// URL (else $VAED_REGISTRY, else DATA_DIR/registry.db)"},
        {"arch", CLI_STRING, &f.arch, 0, 0, "mlp or conv"},
        {"channels", CLI_STRING, &f.channels, 0, 0, "conv channel widths (default 32,64,128,256)"},
        {"hidden", CLI_STRING, &f.hidden, 0, 0, "hidden widths, e.g. 400 or 512,256"},
        {"latent", CLI_LONG, &f.latent, 1, 4096, "latent dimensions"},
        {"activation", CLI_STRING, &f.activation, 0, 0, "relu, leaky_relu, tanh, elu"},
        {"likelihood", CLI_STRING, &f.likelihood, 0, 0, "bernoulli, cbernoulli, gaussian, gaussian-learned"},
        {"sigma", CLI_DOUBLE, &f.sigma, 0, 0, "gaussian likelihood's std"},
        {"binarize", CLI_STRING, &f.binarize, 0, 0, "none, static, dynamic"},
        {"beta", CLI_DOUBLE, &f.beta, 0, 0, "weight of the KL term"},
        {"kl-warmup", CLI_LONG, &f.kl_warmup, 0, LONG_MAX, "steps over which beta rises from 0"},
        {"free-bits", CLI_DOUBLE, &f.free_bits, 0, 0, "nats per latent dimension"},
        {"mc-samples", CLI_LONG, &f.mc, 1, 64, "samples of z per input"},
        {"lr", CLI_DOUBLE, &f.lr, 0, 0, "Adam learning rate"},
        {"beta1", CLI_DOUBLE, &f.beta1, 0, 0, "Adam beta1"},
        {"beta2", CLI_DOUBLE, &f.beta2, 0, 0, "Adam beta2"},
        {"eps", CLI_DOUBLE, &f.eps, 0, 0, "Adam epsilon"},
        {"weight-decay", CLI_DOUBLE, &f.wd, 0, 0, "L2 weight decay"},
        {"clip-grad", CLI_DOUBLE, &f.clip, 0, 0, "clip the gradient norm (0 = off)"},
        {"batch", CLI_LONG, &f.batch, 1, 65536, "batch size"},
        {"epochs", CLI_LONG, &f.epochs, 0, 100000, "epochs"},
        {"seed", CLI_LONG, &f.seed, 0, LONG_MAX, "random seed"},
        {"threads", CLI_LONG, &f.threads, 0, 256, "BLAS threads (0 = cores)"},
        {"limit", CLI_LONG, &f.limit, 0, INT_MAX, "use the first N training images"},
        {"class", CLI_LONG, &f.klass, -1, 255, "train on one label only"},
        {"conditional", CLI_FLAG, &conditional, 0, 0,
         "a conditional VAE: the label into encoder and decoder (needs labelled data)"},
        {"resume", CLI_STRING, &resume, 0, 0,
         "continue the run kept in FILE when it exists; keep its state there (removed when done)"},
        {"iwae", CLI_LONG, &iwae_k, 0, 1000000,
         "K of the IWAE bound written into the metrics, on the first 256 test images (0 = off)"},
        {"rank-timeout", CLI_DOUBLE, &rank_timeout, 0, 0,
         "under mpirun: seconds a rank waits for the others before it ends the run (default 300)"},
        {"job-spec", CLI_STRING, &job_spec, 0, 0,
         "a daemon's job: the model, data and training from this POST /jobs spec (JSON) file"},
        {"data-root", CLI_STRING, &data_root, 0, 0, "with --job-spec: the daemon's data sets root"},
        {"events", CLI_FLAG, &events, 0, 0, "progress and epochs as lines for a daemon's job"},
        {"push", CLI_STRING, &push_url, 0, 0,
         "then upload the --out file to the server at this URL (as `vaed push` does)"},
        {"push-model", CLI_STRING, &push_model, 0, 0, "with --push: the model it becomes a version of"},
        {"token-file", CLI_STRING, &token_file, 0, 0, "with --push: bearer token file (else $VAED_TOKEN)"},
    };
    int rc = cli_parse("train", argc, argv, opts, sizeof opts / sizeof opts[0], NULL);
    if (rc) return rc == CLI_HELP ? 0 : 2;
    if (!out && !reg_name) {
        fprintf(stderr, "vaed train: give --out FILE and/or --register NAME\n");
        return 2;
    }
    if (!push_url != !push_model || (push_url && !out)) {
        fprintf(stderr, "vaed train: --push URL needs --push-model NAME and --out FILE (the file it uploads)\n");
        return 2;
    }
    if (reg_name && !registry_valid_name(reg_name)) {
        fprintf(stderr, "vaed train: --register: invalid model name \"%s\"\n", reg_name);
        return 2;
    }
    char err[512];
    vae_config cfg;
    if (flags_to_config(&f, &cfg, err, sizeof err)) {
        fprintf(stderr, "vaed train: %s\n", err);
        return 2;
    }
    /* --threads N >= 2 (0 = the cores): the batch is split over N = 2 training
     * threads, each with one BLAS thread (measured faster than one thread
     * driving a 2-thread OpenBLAS; see README); 1: one thread, one BLAS thread. */
    long threads = f.threads > 0 ? f.threads : sysconf(_SC_NPROCESSORS_ONLN);
    openblas_set_num_threads(1);
    if (!(val_split >= 0.0 && val_split < 1.0)) {
        fprintf(stderr, "vaed train: --val-split must be in [0, 1)\n");
        return 2;
    }
    if (!(rank_timeout >= 1.0 && rank_timeout <= 86400.0)) {
        fprintf(stderr, "vaed train: --rank-timeout must be 1 to 86400 seconds\n");
        return 2;
    }
    /* a daemon's job run as ranks: the spec replaces the training flags */
    jobs_spec spec;
    uint8_t *spec_json = NULL; /* owned: freed at end */
    size_t spec_len = 0;
    if (job_spec) {
        if (!data_root) data_root = data_sets_root();
        if (file_io_read_all(job_spec, 1 << 20, &spec_json, &spec_len, err, sizeof err) ||
            jobs_spec_parse_confined((const char *)spec_json, spec_len, data_root, &spec, err,
                                     sizeof err)) {
            fprintf(stderr, "vaed train: --job-spec %s: %s\n", job_spec, err);
            free(spec_json);
            return 2;
        }
        cfg = spec.cfg;
        data = spec.data;
        f.klass = spec.klass;
        f.limit = spec.limit;
        conditional = spec.conditional;
    }
    if (resume) catch_stop_signals();
    if (events) signal(SIGPIPE, SIG_DFL); /* the daemon gone: end with the next line */
    /* under mpirun every rank runs this; rank 0 alone prints, writes and
     * registers, the others train their shard and say only what went wrong */
    dist_mpi *mpi = NULL; /* owned: dist_mpi_end */
    trainer_dist dist;
    const char *who = "vaed train";
    char who_rank[48];
    if (dist_mpi_launched()) {
        if (dist_mpi_start(rank_timeout, &mpi, err, sizeof err)) {
            fprintf(stderr, "vaed train: %s\n", err);
            free(spec_json);
            return 1;
        }
        dist_mpi_table(mpi, &dist);
        if (dist.rank != 0) {
            snprintf(who_rank, sizeof who_rank, "vaed train (rank %d)", dist.rank);
            who = who_rank;
            if (!freopen("/dev/null", "w", stdout)) {
                fprintf(stderr, "%s: cannot silence stdout: %s\n", who, strerror(errno));
                free(spec_json);
                return dist_mpi_end(mpi, 1);
            }
        }
    }
    int root = !mpi || dist.rank == 0;
    /* An unreachable or mistyped registry is found now, not after the
     * training. (Under MPI rank 0 alone opens it, at the end: a rank that
     * returned here would leave the others waiting on it.) */
    if (reg_name && !mpi) {
        registry *probe = NULL;
        int prc = cli_registry_open("train", registry_at, data_dir, 1, 0, &probe);
        registry_close(probe);
        if (prc) {
            free(spec_json);
            return prc;
        }
    }

    progress_printer pp = {.tty = isatty(STDERR_FILENO), .epochs = cfg.epochs};
    train_run_options o;
    train_run_options_default(&o);
    o.data = data;
    o.data_root = data_root;
    o.klass = (int)f.klass;
    o.limit = (int)f.limit;
    o.val_split = val_split;
    o.cfg = cfg;
    o.conditional = conditional;
    /* under mpirun a rank trains with one thread (one rank per core), also
     * the one rank of -np 1, which the trainer runs as one process: it is
     * the reference 2 ranks are measured against (scripts/bench-mpi.sh) */
    o.threads = !mpi && threads >= 2 ? 2 : 1;
    o.iwae_k = (int)iwae_k;
    o.on_progress = !root ? NULL : events ? event_progress : print_progress;
    o.on_epoch = !root ? NULL : events ? event_epoch : print_epoch;
    o.ctx = &pp;
    o.dist = mpi ? &dist : NULL;
    /* a resume file continues only the run that wrote it: the model config
     * (the engine checks it) and what chose the images */
    char klass_s[16], limit_s[24], split_s[32], seed_s[24];
    snprintf(klass_s, sizeof klass_s, "%ld", f.klass);
    snprintf(limit_s, sizeof limit_s, "%ld", f.limit);
    snprintf(split_s, sizeof split_s, "%.17g", val_split);
    snprintf(seed_s, sizeof seed_s, "%ld", f.seed);
    const trainer_meta meta[] = {
        {"data", data}, {"class", klass_s}, {"limit", limit_s}, {"val_split", split_s},
        {"seed", seed_s},
    };
    /* a job's state is keyed to its spec, as the daemon's own jobs are */
    char *spec_text = NULL; /* owned: freed at end */
    if (spec_json && !(spec_text = strndup((const char *)spec_json, spec_len))) {
        fprintf(stderr, "%s: out of memory\n", who);
        free(spec_json);
        return dist_mpi_end(mpi, 1);
    }
    const trainer_meta job_meta = {"job_config", spec_text};
    if (resume) {
        o.resume_path = resume;
        o.meta = spec_text ? &job_meta : meta;
        o.n_meta = spec_text ? 1 : (int)(sizeof meta / sizeof meta[0]);
        o.cancel = &train_stop;
    }
    train_run *run = NULL; /* owned: freed at end */
    int status = 1;
    if (train_run_new(&o, &run, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", who, err);
        goto end;
    }
    const train_run_info *info = train_run_get_info(run);
    if (events && root && info->resumed) {
        int n;
        const trainer_epoch_metrics *h = train_run_history(run, &n);
        for (int i = 0; i < n; i++) jobs_ranks_print_epoch("history", &h[i]);
    }
    const vae_config *mc = &train_run_model(run)->cfg;
    pp.have_test = info->n_test > 0;
    if (info->val_split_unused)
        printf("note: %s has a test split; --val-split is not used\n", data);
    char hidden_s[128] = "";
    for (int i = 0, p = 0; i < mc->n_hidden; i++)
        p += snprintf(hidden_s + p, sizeof hidden_s - (size_t)p, "%s%d", i ? "-" : "", mc->hidden[i]);
    if (mc->arch == VAE_ARCH_CONV) {
        hidden_s[0] = '\0';
        for (int i = 0, p = 0; i < mc->n_conv; i++)
            p += snprintf(hidden_s + p, sizeof hidden_s - (size_t)p, "%sc%d", i ? "-" : "",
                          mc->conv_channels[i]);
    }
    char cond_s[48] = "";
    if (vae_config_is_conditional(mc))
        snprintf(cond_s, sizeof cond_s, "conditional on %d classes, ", mc->n_classes);
    printf("training %s VAE %d-%s-%d (%s%s) on %s: %d train, %d test images, %d epochs, batch %d\n",
           vae_arch_name(mc->arch), vae_config_input_dim(mc), hidden_s, mc->latent, cond_s,
           vae_likelihood_name(mc->likelihood), data, info->n_train, info->n_test, mc->epochs,
           mc->batch);
    if (mpi)
        printf("data parallel over %d ranks, each on its shard of the training images\n",
               dist.size);
    if (mpi && info->n_test > 0)
        printf("rank 0 holds test images %d to %d of %d\n", info->test_first,
               info->test_first + info->test_held - 1, info->n_test);
    if (info->resumed) {
        if (info->position.next_step > 0)
            printf("resuming from %s: %d of %d epochs done, epoch %d at step %lld\n", resume,
                   info->epochs_done, mc->epochs, info->epochs_done + 1,
                   (long long)info->position.next_step);
        else
            printf("resuming from %s: %d of %d epochs done\n", resume, info->epochs_done,
                   mc->epochs);
    }
    fflush(stdout);
    train_run_status st = train_run_epochs(run, err, sizeof err);
    if (st == TRAIN_RUN_ERR_CANCELLED) {
        if (pp.tty) fprintf(stderr, "\n");
        trainer_position at;
        train_run_get_position(run, &at);
        if (train_run_save_resume(run, err, sizeof err)) {
            fprintf(stderr, "vaed train: stopped; %s (it holds the last epoch's state)\n", err);
            goto end;
        }
        if (root)
            fprintf(stderr,
                "vaed train: stopped with %d of %d epochs done (the next at step %lld); %s holds "
                "the run: the same command continues it\n",
                at.epochs_done, mc->epochs, (long long)at.next_step, resume);
        goto end;
    }
    if (st) {
        if (pp.tty) fprintf(stderr, "\n");
        fprintf(stderr, "%s: %s; nothing was written\n", who, err);
        goto end;
    }
    /* every rank evaluates its part; rank 0 prints, writes and registers */
    const eval_result *er = train_run_evaluate(run);
    if (!root) {
        status = 0;
        goto end;
    }
    if (er) {
        printf("active units %d of %d\n", er->active_units, mc->latent);
        if (er->iwae_k)
            printf("test IWAE bound (K=%d, first %d images): %.2f nats\n", er->iwae_k, er->iwae_n,
                   er->iwae_nll);
    }
    if (out) {
        if (train_run_write_file(run, out, err, sizeof err)) {
            fprintf(stderr, "vaed train: %s\n", err);
            goto end;
        }
        printf("wrote %s\n", out);
    }
    if (reg_name) {
        registry *r = NULL;
        registry_checkpoint_info ci;
        if (cli_registry_open("train", registry_at, data_dir, 1, 0, &r))
            goto end; /* it said why */
        train_run_status st = train_run_register(run, r, reg_name, 0, &ci, err, sizeof err);
        registry_close(r);
        if (st) {
            fprintf(stderr, "vaed train: %s%s\n", st == TRAIN_RUN_ERR_REGISTRY ? "registry: " : "",
                    err);
            goto end;
        }
        printf("registered %s version %lld (sha256 %.12s)\n", ci.model, (long long)ci.version,
               ci.sha256);
    }
    if (push_url) {
        char *push_argv[] = {"push", "--url", (char *)push_url, "--model", (char *)push_model,
                             "--token-file", (char *)token_file, (char *)out, NULL};
        if (!token_file) { /* $VAED_TOKEN then */
            push_argv[5] = (char *)out;
            push_argv[6] = NULL;
        }
        fflush(stdout);
        if (cli_push(token_file ? 8 : 6, push_argv)) goto end; /* it said why */
    }
    if (resume && unlink(resume) != 0 && errno != ENOENT)
        fprintf(stderr, "vaed train: cannot remove %s: %s\n", resume, strerror(errno));
    status = 0;
end:
    train_run_free(run);
    free(spec_text);
    free(spec_json);
    return dist_mpi_end(mpi, status);
}

/* ---------- sample ---------- */

int cli_sample(int argc, char **argv)
{
    const char *model = NULL, *out = "samples.png";
    long n = 16, seed = 1, label = -1;
    double temperature = 1.0;
    cli_option opts[] = {
        {"model", CLI_STRING, &model, 0, 0, "checkpoint file (safetensors)"},
        {"n", CLI_LONG, &n, 1, 1024, "number of samples"},
        {"label", CLI_LONG, &label, 0, 255,
         "a conditional model's class (default: sample i is of class i mod the classes)"},
        {"seed", CLI_LONG, &seed, 0, LONG_MAX, "random seed"},
        {"temperature", CLI_DOUBLE, &temperature, 0, 0, "scale of z (default 1)"},
        {"out", CLI_STRING, &out, 0, 0, "PNG file to write (default samples.png)"},
    };
    int rc = cli_parse("sample", argc, argv, opts, sizeof opts / sizeof opts[0], "o");
    if (rc) return rc == CLI_HELP ? 0 : 2;
    if (!model) {
        fprintf(stderr, "vaed sample: --model FILE is required\n");
        return 2;
    }
    if (!(temperature >= 0.0) || !isfinite(temperature)) {
        fprintf(stderr, "vaed sample: --temperature must be >= 0\n");
        return 2;
    }
    char err[512];
    vae_model m;
    if (ckpt_load_file(&m, model, NULL, err, sizeof err)) {
        fprintf(stderr, "vaed sample: %s\n", err);
        return 1;
    }
    int status = 1, Z = m.cfg.latent, D = vae_config_input_dim(&m.cfg), K = m.cfg.n_classes;
    float *z = malloc(sizeof(float) * (size_t)n * Z), *x = malloc(sizeof(float) * (size_t)n * D);
    int *labels = K ? malloc(sizeof(int) * (size_t)n) : NULL;
    vae_workspace *ws = vae_workspace_new(&m, (int)n);
    if (!z || !x || !ws || (K && !labels)) {
        fprintf(stderr, "vaed sample: out of memory\n");
        goto end;
    }
    if (label >= 0 && label >= K) {
        if (K)
            fprintf(stderr, "vaed sample: --label %ld: the model has classes 0 to %d\n", label,
                    K - 1);
        else
            fprintf(stderr, "vaed sample: --label: %s is not a conditional model\n", model);
        goto end;
    }
    for (long i = 0; K && i < n; i++) labels[i] = label >= 0 ? (int)label : (int)(i % K);
    rng_state r;
    rng_seed(&r, (uint64_t)seed);
    rng_normal_fill(&r, z, (size_t)n * Z);
    for (long i = 0; i < n * Z; i++) z[i] *= (float)temperature;
    vae_decode_cond(&m, ws, z, labels, (int)n, x);
    if (image_write_grid_png(out, x, (int)n, m.cfg.channels, m.cfg.height, m.cfg.width, 0, err,
                             sizeof err)) {
        fprintf(stderr, "vaed sample: %s\n", err);
        goto end;
    }
    printf("wrote %s (%ld samples)\n", out, n);
    status = 0;
end:
    vae_workspace_free(ws);
    free(z);
    free(x);
    free(labels);
    vae_free(&m);
    return status;
}

/* ---------- eval, reconstruct, import, export ---------- */

int cli_train_load_eval_set(const char *data, long limit, long klass, dataset *d,
                            const char **split, char *err, size_t errlen)
{
    *split = "test";
    if (data_sets_load(data_sets_root(), data, DATA_SETS_TEST, d, err, errlen)) {
        *split = "train";
        if (data_sets_load(data_sets_root(), data, DATA_SETS_TRAIN, d, err, errlen)) return -1;
    }
    if (klass >= 0 && dataset_filter_class(d, (int)klass, err, errlen)) return -1;
    if (limit > 0 && limit < d->n) dataset_truncate(d, (int)limit);
    return 0;
}

int cli_eval(int argc, char **argv)
{
    const char *model = NULL, *data = "mnist";
    long iwae = 0, limit = 0, seed = 1, klass = -1, class_samples = 1000;
    double class_temperature = 1.0;
    cli_option opts[] = {
        {"model", CLI_STRING, &model, 0, 0, "checkpoint file"},
        {"data", CLI_STRING, &data, 0, 0, "mnist, fashion or an IDX image file (its test split when it has one)"},
        {"class-samples", CLI_LONG, &class_samples, 0, 1000000,
         "a conditional model: samples per class for the class accuracy (0 = skip)"},
        {"class-temperature", CLI_DOUBLE, &class_temperature, 0, 0,
         "scale of those samples' z, 0 to 10 (default 1)"},
        {"iwae", CLI_LONG, &iwae, 0, 1000000, "importance samples K for the IWAE bound (0 = skip; 5000 as in the paper)"},
        {"limit", CLI_LONG, &limit, 0, INT_MAX, "evaluate the first N images"},
        {"class", CLI_LONG, &klass, -1, 255, "one label only"},
        {"seed", CLI_LONG, &seed, 0, LONG_MAX, "random seed"},
    };
    int rc = cli_parse("eval", argc, argv, opts, sizeof opts / sizeof opts[0], NULL);
    if (rc) return rc == CLI_HELP ? 0 : 2;
    if (!model) {
        fprintf(stderr, "vaed eval: --model FILE is required\n");
        return 2;
    }
    if (!(class_temperature >= 0.0 && class_temperature <= 10.0)) {
        fprintf(stderr, "vaed eval: --class-temperature must be from 0 to 10\n");
        return 2;
    }
    char err[512];
    vae_model m;
    if (ckpt_load_file(&m, model, NULL, err, sizeof err)) {
        fprintf(stderr, "vaed eval: %s\n", err);
        return 1;
    }
    dataset d = {0};
    const char *split;
    int status = 1;
    eval_result r;
    if (cli_train_load_eval_set(data, limit, klass, &d, &split, err, sizeof err) ||
        eval_run(&m, &d, (int)iwae, (uint64_t)seed, &r, err, sizeof err)) {
        fprintf(stderr, "vaed eval: %s\n", err);
        goto end;
    }
    printf("data           %s (%s split, %d images)\n", data, split, r.n);
    printf("neg_elbo       %.4f nats/image\n", r.neg_elbo);
    printf("recon          %.4f nats/image\n", r.recon);
    printf("kl             %.4f nats/image\n", r.kl);
    if (r.iwae_k)
        printf("iwae_nll       %.4f nats/image (K = %d)\n", r.iwae_nll, r.iwae_k);
    printf("active_units   %d of %d (KL > 0.01 nats)\n", r.active_units, r.latent);
    if (vae_config_is_conditional(&m.cfg) && class_samples > 0) {
        eval_class_result cr;
        /* the bounds above stand without it: a set that lacks a class (a
         * --limit, a --class) gets the reason instead of a failed command */
        if (eval_class_accuracy(&m, &d, (int)class_samples, (uint64_t)seed, class_temperature, &cr,
                                err, sizeof err)) {
            printf("class_accuracy n/a: %s\n", err);
            status = 0;
            goto end;
        }
        printf("class_accuracy %.4f of %ld samples per class (temperature %g) classified as their "
               "class (nearest class mean on the %s images' pixels, which scores %.4f on %d of "
               "them)\n",
               cr.accuracy, class_samples, class_temperature, split, cr.data_accuracy, cr.data_n);
        printf("per class     ");
        for (int k = 0; k < cr.n_classes; k++) printf(" %d:%.3f", k, cr.class_accuracy[k]);
        printf("\n");
    }
    status = 0;
end:
    dataset_free(&d);
    vae_free(&m);
    return status;
}

int cli_reconstruct(int argc, char **argv)
{
    const char *model = NULL, *data = "mnist", *out = "recon.png";
    long n = 8, klass = -1;
    cli_option opts[] = {
        {"model", CLI_STRING, &model, 0, 0, "checkpoint file"},
        {"data", CLI_STRING, &data, 0, 0, "mnist, fashion or an IDX image file"},
        {"n", CLI_LONG, &n, 1, 256, "images"},
        {"class", CLI_LONG, &klass, -1, 255, "one label only"},
        {"out", CLI_STRING, &out, 0, 0, "PNG file (default recon.png)"},
    };
    int rc = cli_parse("reconstruct", argc, argv, opts, sizeof opts / sizeof opts[0], "o");
    if (rc) return rc == CLI_HELP ? 0 : 2;
    if (!model) {
        fprintf(stderr, "vaed reconstruct: --model FILE is required\n");
        return 2;
    }
    char err[512];
    vae_model m;
    if (ckpt_load_file(&m, model, NULL, err, sizeof err)) {
        fprintf(stderr, "vaed reconstruct: %s\n", err);
        return 1;
    }
    dataset d = {0};
    const char *split;
    int status = 1, D = vae_config_input_dim(&m.cfg), Z = m.cfg.latent;
    float *grid = NULL, *mu = NULL, *lv = NULL;
    int *labels = NULL;
    vae_workspace *ws = NULL;
    if (cli_train_load_eval_set(data, n, klass, &d, &split, err, sizeof err)) {
        fprintf(stderr, "vaed reconstruct: %s\n", err);
        goto end;
    }
    if (dataset_dim(&d) != D) {
        fprintf(stderr, "vaed reconstruct: the data has %d values per image; the model takes %d\n",
                dataset_dim(&d), D);
        goto end;
    }
    n = d.n;
    grid = malloc(sizeof(float) * 2 * (size_t)n * D);
    mu = malloc(sizeof(float) * (size_t)n * Z);
    lv = malloc(sizeof(float) * (size_t)n * Z);
    ws = vae_workspace_new(&m, (int)n);
    labels = malloc(sizeof(int) * (size_t)n);
    if (!grid || !mu || !lv || !ws || !labels) {
        fprintf(stderr, "vaed reconstruct: out of memory\n");
        goto end;
    }
    if (vae_config_is_conditional(&m.cfg) && !d.labels) {
        fprintf(stderr, "vaed reconstruct: the model is conditional and %s has no labels\n", data);
        goto end;
    }
    for (long i = 0; d.labels && i < n; i++) labels[i] = d.labels[i];
    const int *y = vae_config_is_conditional(&m.cfg) ? labels : NULL;
    memcpy(grid, d.x, sizeof(float) * (size_t)n * D);
    if (vae_encode_cond(&m, ws, d.x, y, (int)n, mu, lv) ||
        vae_decode_cond(&m, ws, mu, y, (int)n, grid + (size_t)n * D)) {
        fprintf(stderr, "vaed reconstruct: a label of %s is not one of the model's %d classes\n",
                data, m.cfg.n_classes);
        goto end;
    }
    if (image_write_grid_png(out, grid, 2 * (int)n, m.cfg.channels, m.cfg.height, m.cfg.width,
                             (int)n, err, sizeof err)) {
        fprintf(stderr, "vaed reconstruct: %s\n", err);
        goto end;
    }
    printf("wrote %s (%ld originals above their reconstructions)\n", out, n);
    status = 0;
end:
    vae_workspace_free(ws);
    free(labels);
    free(grid);
    free(mu);
    free(lv);
    dataset_free(&d);
    vae_free(&m);
    return status;
}

int cli_import(int argc, char **argv)
{
    const char *from = "pytorch-examples", *out = NULL;
    cli_option opts[] = {
        {"from", CLI_STRING, &from, 0, 0, "pytorch-examples (a state_dict with fc1, fc21, fc22, fc3, fc4)"},
        {"out", CLI_STRING, &out, 0, 0, "vaed checkpoint to write"},
    };
    int rc = cli_parse("import", argc, argv, opts, sizeof opts / sizeof opts[0], "o");
    if (rc) return rc == CLI_HELP ? 0 : 2;
    const char *in = cli_positional(0);
    if (!in || !out || strcmp(from, "pytorch-examples") != 0) {
        fprintf(stderr, "usage: vaed import --from pytorch-examples FILE --out model.safetensors\n");
        return 2;
    }
    char err[512];
    vae_model m;
    if (ckpt_load_file(&m, in, NULL, err, sizeof err) || ckpt_save_file(&m, NULL, out, err, sizeof err)) {
        fprintf(stderr, "vaed import: %s\n", err);
        vae_free(&m);
        return 1;
    }
    printf("wrote %s (%d-%d-%d, %s)\n", out, vae_config_input_dim(&m.cfg), m.cfg.hidden[0],
           m.cfg.latent, vae_likelihood_name(m.cfg.likelihood));
    vae_free(&m);
    return 0;
}

int cli_export(int argc, char **argv)
{
    const char *model = NULL, *out = NULL, *format = "vaed";
    cli_option opts[] = {
        {"model", CLI_STRING, &model, 0, 0, "checkpoint file"},
        {"format", CLI_STRING, &format, 0, 0, "vaed (default) or pytorch-examples"},
        {"out", CLI_STRING, &out, 0, 0, "file to write"},
    };
    int rc = cli_parse("export", argc, argv, opts, sizeof opts / sizeof opts[0], "o");
    if (rc) return rc == CLI_HELP ? 0 : 2;
    if (!model || !out) {
        fprintf(stderr, "usage: vaed export --model FILE --out FILE [--format vaed|pytorch-examples]\n");
        return 2;
    }
    char err[512];
    vae_model m;
    if (ckpt_load_file(&m, model, NULL, err, sizeof err)) {
        fprintf(stderr, "vaed export: %s\n", err);
        return 1;
    }
    int status = 1;
    if (strcmp(format, "vaed") == 0) {
        rc = ckpt_save_file(&m, NULL, out, err, sizeof err);
    } else if (strcmp(format, "pytorch-examples") == 0) {
        rc = ckpt_save_pytorch_examples(&m, out, err, sizeof err);
    } else {
        fprintf(stderr, "vaed export: --format vaed or pytorch-examples, not %s\n", format);
        vae_free(&m);
        return 2;
    }
    if (rc)
        fprintf(stderr, "vaed export: %s\n", err);
    else {
        printf("wrote %s (%s layout)\n", out, format);
        status = 0;
    }
    vae_free(&m);
    return status;
}

