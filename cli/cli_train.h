/* cli_train: the `vaed` commands that make and use a checkpoint file.
 *
 *     vaed train --data mnist --epochs 10 --out digits.safetensors
 *     vaed sample --model digits.safetensors -n 16 -o samples.png
 *     vaed eval --model digits.safetensors --iwae 5000
 *     vaed reconstruct --model digits.safetensors -o recon.png
 *     vaed import --from pytorch-examples vae.safetensors --out digits.safetensors
 *     vaed export --model digits.safetensors --format pytorch-examples --out vae.safetensors
 *
 * Each takes the command's arguments (argv[0] is the command name), parses
 * its flags into native structs, calls the engine or the training pipeline
 * (server/train_run) and prints; it returns the exit status: 0 done, 1 it
 * failed (the reason on stderr), 2 a bad flag.
 */
#ifndef CLI_TRAIN_H
#define CLI_TRAIN_H

int cli_train(int argc, char **argv);
int cli_sample(int argc, char **argv);
int cli_eval(int argc, char **argv);
int cli_reconstruct(int argc, char **argv);
int cli_import(int argc, char **argv);
int cli_export(int argc, char **argv);

#include <stddef.h>

#include "engine/dataset.h"

/* The images a command evaluates: data's test split when it has one, else
 * its training split (*split says which), of one class (klass >= 0), the
 * first limit (> 0) of them. 0, or -1 with err. */
int cli_train_load_eval_set(const char *data, long limit, long klass, dataset *d,
                            const char **split, char *err, size_t errlen);

#endif
