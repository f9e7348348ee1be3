/* jobs_spec: the JSON body of POST /jobs, parsed and checked into native structs.
 *
 *     jobs_spec s;
 *     if (jobs_spec_parse(body, len, data_sets_root(), &s, err, sizeof err)) -> 422 with err
 *     if (limit && s.mem_bytes > limit) -> 422
 *     char *canonical = jobs_spec_to_json(&s);   // stored with the job; caller frees
 *
 * Keys are the `vaed train` flags with '-' written '_' and the same defaults:
 *   model (required: the registry model the result becomes a version of),
 *   data ("mnist", "fashion" or the path of an IDX image file; default mnist),
 *   arch, hidden (a list of widths, or one integer), conv_channels (a list),
 *   latent, activation, likelihood, sigma, binarize, beta, kl_warmup,
 *   free_bits, mc_samples, lr, beta1, beta2, eps, weight_decay, clip_grad,
 *   batch, epochs (1..100000), seed (0..2^53), limit (0 = all images),
 *   class (null or a label 0..255), conditional (true: a conditional model
 *   on the data's labels, which must be there), ranks (1..JOBS_SPEC_MAX_RANKS,
 *   default 1: the processes that train the job data parallel under mpirun,
 *   on the hosts of the daemon's --mpi-hostfile; jobs_pool refuses more than
 *   1 without one).
 * Any other key is an error that names it. "threads" is refused: OpenBLAS's
 * thread count is process-wide, so the daemon sets it once (one BLAS thread;
 * each training worker takes one core) and a job cannot change it. "out",
 * "register" and "data_dir" are CLI-only; the error says to use "model".
 * A value of the wrong JSON type, an integer with a fraction, or a number out
 * of range is an error naming the key.
 *
 * The data set is checked at once without loading it: the header of its IDX
 * image file (dataset_peek_idx, at the paths data_sets_idx_paths gives)
 * gives the image count and size, so an unknown or missing data set, a class
 * without labels, or a model that does not fit the images is refused before
 * the job is queued.
 */
#ifndef JOBS_SPEC_H
#define JOBS_SPEC_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/vae.h"

typedef enum {
    JOBS_SPEC_OK = 0,
    JOBS_SPEC_ERR_INVALID, /* bad JSON, key, type, range, or data set: a 422 */
    JOBS_SPEC_ERR_NOMEM
} jobs_spec_status;

#define JOBS_SPEC_MAX_EPOCHS 100000
#define JOBS_SPEC_MAX_RANKS 1024

typedef struct {
    vae_config cfg;       /* complete: channels/height/width from the data set */
    char model[128];      /* registry model name */
    char data[PATH_MAX];  /* "mnist", "fashion" or a path */
    int klass;            /* -1 = every label */
    int limit;            /* first N training images; 0 = all */
    int conditional;      /* a conditional model; cfg.n_classes is 10 for the built-in sets and,
                             for the memory estimate, VAE_MAX_CLASSES for a path (train_run
                             counts the labels) */
    int ranks;            /* processes under mpirun; 1 = the daemon's own worker */
    int n_train;          /* images the data set holds (before class and limit) */
    int n_test;           /* images of the test split; 0 when there is none */
    int n_used;           /* training images after limit (class not known yet) */
    size_t mem_bytes;     /* estimated peak memory of the job, see jobs_spec_memory_bytes */
} jobs_spec;

/* Parses and validates json (len bytes, need not be NUL-terminated) against
 * the data sets under data_root. On failure err names the key or the reason. */
jobs_spec_status jobs_spec_parse(const char *json, size_t len, const char *data_root,
                                 jobs_spec *out, char *err, size_t errlen);
/* As jobs_spec_parse, for a daemon whose clients must not make it read any
 * file they like: "data" is a built-in name or a path inside data_root (a
 * relative path is taken from data_root; symlinks and ".." are resolved
 * first, and the labels file beside the images must be inside too), and
 * out->data becomes the resolved absolute path. */
jobs_spec_status jobs_spec_parse_confined(const char *json, size_t len, const char *data_root,
                                          jobs_spec *out, char *err, size_t errlen);
/* The spec as JSON with every option written out (so a job is reproducible
 * whatever the defaults become); malloc'd, caller frees; NULL when out of
 * memory. jobs_spec_parse reads it back to the same spec. */
char *jobs_spec_to_json(const jobs_spec *s);
/* Bytes a job needs at its peak, estimated from the engine's own sizes (so a
 * change of an architecture cannot make it drift). Always held: the
 * parameters (vae_config_param_count) and the data kept as bytes (n_train +
 * n_test images with their labels) with its data order (an int per training
 * image). Then the larger of: the training state for a batch
 * (vae_config_train_state_bytes: gradients, Adam m and v, activations,
 * scratch) with the trainer's batch copy, plus, when there is a test set,
 * the evaluation after every epoch (trainer_evaluate: a training state for
 * max(500, batch) images, their copy and noise); and the final evaluation
 * alone (train_run frees the trainer before it). A config that does not
 * validate is SIZE_MAX / 2. */
size_t jobs_spec_memory_bytes(const vae_config *cfg, int n_train, int n_test);

#endif
