/* checkpoint: a vae_model as a safetensors file that PyTorch reads and writes.
 *
 *     vae_model m;
 *     char *metrics;                          // malloc'd by the load, or NULL
 *     if (ckpt_load_file(&m, "digits.safetensors", &metrics, err, sizeof err)) ...
 *     ... vae_encode / vae_decode / vae_train_step on m ...
 *     if (ckpt_save_file(&m, metrics, "digits-2.safetensors", err, sizeof err)) ...
 *     free(metrics);                          // the caller's
 *     vae_free(&m);                           // m was initialised by the load
 *
 * Tensors are F32 with PyTorch names and layouts; "__metadata__" holds
 * "format": "pt", "vaed_config": the model configuration as JSON, and
 * optionally "vaed_metrics": metrics JSON (opaque to the engine). A loaded
 * file is checked whole (every tensor against the config, every value
 * finite) before the model is handed back; on failure m holds nothing.
 * The same bytes come out for the same model and metrics, so a checkpoint's
 * SHA-256 names it in the registry.
 */
#ifndef CHECKPOINT_H
#define CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "engine/vae.h"
#include "engine/safetensors.h"

/* Serialises m (and metrics_json when not NULL) into *out (owned by caller). */
vae_status ckpt_save_mem(const vae_model *m, const char *metrics_json, uint8_t **out,
                         size_t *out_len, char *err, size_t errlen);
/* Writes atomically (temporary file, fsync, rename). */
vae_status ckpt_save_file(const vae_model *m, const char *metrics_json, const char *path,
                          char *err, size_t errlen);
/* Loads and validates: a vaed config that agrees with every tensor's shape,
 * dtype F32, every value finite; or a pytorch/examples VAE state_dict (fc1,
 * fc21, fc22, fc3, fc4) without metadata. m is initialised on success.
 * metrics_json, when not NULL, receives a malloc'd copy of the stored metrics
 * or NULL. */
vae_status ckpt_load_mem(vae_model *m, const uint8_t *buf, size_t len, char **metrics_json,
                         char *err, size_t errlen);
/* The same with the caller's bounds on the safetensors header (NULL: the
 * defaults): VAE_ERR_TOO_LARGE past its bytes, VAE_ERR_TOO_MANY past its JSON
 * values (the config in it included), apart from every VAE_ERR_FORMAT. */
vae_status ckpt_load_mem_limited(vae_model *m, const uint8_t *buf, size_t len,
                                 const st_limits *limits, char **metrics_json, char *err,
                                 size_t errlen);
vae_status ckpt_load_file(vae_model *m, const char *path, char **metrics_json, char *err,
                          size_t errlen);
/* Writes the state_dict of the pytorch/examples VAE (fc1, fc21, fc22, fc3,
 * fc4; no vaed metadata): only for a 1-hidden-layer MLP. */
vae_status ckpt_save_pytorch_examples(const vae_model *m, const char *path, char *err,
                                      size_t errlen);
/* The config as JSON into buf; returns the length, or -1 when it does not fit. */
int ckpt_config_to_json(const vae_config *cfg, char *buf, size_t buflen);
vae_status ckpt_config_from_json(vae_config *cfg, const char *json, size_t len, char *err,
                                 size_t errlen);

#endif
