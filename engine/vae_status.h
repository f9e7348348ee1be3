/* vae_status: the one status type of the engine.
 *
 *     char err[256];
 *     vae_status rc = ckpt_load_file(&m, path, NULL, err, sizeof err);
 *     if (rc != VAE_OK) fprintf(stderr, "%s\n", err);   // err says what and why
 *
 * Every engine function that can fail returns one of these and writes a
 * sentence into the caller's err buffer; the server maps each value to an
 * HTTP status in one table (server/http_util.c).
 */
#ifndef VAE_STATUS_H
#define VAE_STATUS_H

typedef enum {
    VAE_OK = 0,
    VAE_ERR_ARG,       /* a bad option or size */
    VAE_ERR_NOMEM,
    VAE_ERR_IO,        /* open, read, write, fsync, rename; err says which and why */
    VAE_ERR_FORMAT,    /* a file that is not what it claims */
    VAE_ERR_NONFINITE, /* a NaN or Inf loss or value */
    VAE_ERR_CANCELLED, /* stopped on request; the state is consistent */
    VAE_ERR_TOO_LARGE, /* larger than the caller's limit */
    VAE_ERR_TOO_MANY   /* more items (e.g. JSON values) than the caller's budget */
} vae_status;

#endif
