/* file_io: whole files in and out, safely.
 *
 *     uint8_t *buf; size_t len;
 *     if (file_io_read_all(path, max, &buf, &len, err, sizeof err)) ...   // buf: caller frees
 *     if (file_io_write_atomic(path, buf, len, err, sizeof err)) ...
 *
 * file_io_write_atomic writes a temporary file beside the target, fsyncs it,
 * renames it over the target and fsyncs the directory: a reader sees the old
 * file or the whole new one, never part of it, and on failure the target is
 * untouched and no temporary file is left (but for a failed fsync of the
 * directory after the rename: reported, with the new file in place). Only a
 * crash leaves one, named TARGET.tmp.<12 random hex digits> (never the name
 * of another's), and file_io_remove_stale_temps clears them from a directory
 * at start. Files are created 0644 less the umask (`vaed serve` runs with
 * umask 077, so what the daemon writes is its own: 0600).
 */
#ifndef FILE_IO_H
#define FILE_IO_H

#include <stddef.h>
#include <stdint.h>

#include "engine/vae_status.h"

/* Opens path for reading only when it is a regular file: a FIFO, a device
 * or a directory is refused without blocking (the open does not wait for a
 * FIFO's writer). The fd (the caller closes it), or -1 with err. */
int file_io_open_regular(const char *path, char *err, size_t errlen);
/* VAE_ERR_IO when the file cannot be opened or read, or is not a regular
 * file (err says why), VAE_ERR_TOO_LARGE when it is larger than max,
 * VAE_ERR_NOMEM. */
vae_status file_io_read_all(const char *path, size_t max, uint8_t **out, size_t *len, char *err,
                         size_t errlen);
/* VAE_ERR_IO when a step fails (err says which and why), VAE_ERR_ARG for no path. */
vae_status file_io_write_atomic(const char *path, const uint8_t *buf, size_t len, char *err,
                             size_t errlen);
/* What file_io_write_atomic puts between a target's name and a temporary
 * suffix. */
#define FILE_IO_TEMP_MARK ".tmp."
/* 1 when name (a file name, no directory) is a temporary file of
 * file_io_write_atomic: NAME.tmp.SUFFIX, SUFFIX hex digits and dots. */
int file_io_is_temp_name(const char *name);
/* Removes the temporary files (file_io_is_temp_name, regular files only)
 * that crashed writes left in dir; *removed (may be NULL) counts them. A dir
 * that does not exist holds none. Only for a directory no running writer
 * uses (the caller holds its lock). */
vae_status file_io_remove_stale_temps(const char *dir, int *removed, char *err, size_t errlen);
/* mkdir -p: dir and every missing parent (0755); VAE_ERR_IO when one
 * cannot be made or dir exists but is not a directory. */
vae_status file_io_make_dirs(const char *dir, char *err, size_t errlen);

#endif
