/* safetensors: reading and writing the safetensors file format, for
 * checkpoints (engine/checkpoint) and the trainer's resume file.
 *
 * A file is: 8 bytes little-endian header length N, N bytes of JSON header,
 * then the tensor data. The header maps tensor names to
 * {"dtype","shape","data_offsets":[begin,end]} (offsets relative to the data
 * area) and may hold "__metadata__", a map of string to string.
 *
 *     st_file f;
 *     if (st_parse(buf, len, &f, err, sizeof err)) ...   // f borrows buf
 *     const st_tensor_info *t = st_find(&f, "fc1.weight");
 *     const float *w = (const float *)(f.data + t->begin);  // when dtype is F32
 *     st_free(&f);
 *
 *     st_tensor_out out[1] = {{.name = "w", .ndim = 1, .shape = {n}, .data = w}};  // F32
 *     if (st_write_file(path, out, 1, keys, values, n_meta, err, sizeof err)) ...
 *
 * The parser trusts nothing: header length within the file and under a
 * bound (VAE_ERR_TOO_LARGE past it), at most a budget of JSON values
 * (VAE_ERR_TOO_MANY past it; both bounds are the caller's, st_limits, so a
 * server can make them flags and count their refusals apart), strict JSON
 * (engine/json_strict) with bounded depth, offsets in range, ordered, non-overlapping and covering the data area, shape
 * product times dtype size equal to the byte length, names unique. The
 * writer takes any dtype the parser knows and copies the bytes as they are
 * (so the host must be little-endian, as safetensors.c checks).
 */
#ifndef SAFETENSORS_H
#define SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "engine/vae_status.h"

/* The default bounds of st_parse: header bytes and JSON values in it. */
#define ST_MAX_HEADER (100u * 1024u * 1024u)
#define ST_MAX_HEADER_VALUES 65536
#define ST_MAX_DIMS 8
#define ST_NAME_MAX 256

typedef struct {
    char name[ST_NAME_MAX];
    char dtype[8];            /* "F32", "F16", "I64", ... */
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t begin, end;      /* byte offsets into data */
} st_tensor_info;

typedef struct {
    int n_tensors;
    st_tensor_info *tensors;  /* owned */
    int n_meta;
    char **meta_keys;         /* owned */
    char **meta_values;       /* owned */
    const uint8_t *data;      /* the data area: into the parsed buffer */
    uint64_t data_len;
    uint8_t *owned_buf;       /* owned; the whole file when read by st_read_file */
    size_t owned_len;
} st_file;

/* The bounds a parse applies to an untrusted header (zero fields: defaults). */
typedef struct {
    size_t max_header;  /* header bytes, default ST_MAX_HEADER: VAE_ERR_TOO_LARGE past it */
    size_t max_values;  /* JSON values, default ST_MAX_HEADER_VALUES: VAE_ERR_TOO_MANY past it */
} st_limits;

/* Parses buf (borrowed: it must outlive f) with the default st_limits. */
vae_status st_parse(const uint8_t *buf, size_t len, st_file *f, char *err, size_t errlen);
/* The same with the caller's bounds (NULL: the defaults). */
vae_status st_parse_limited(const uint8_t *buf, size_t len, const st_limits *limits, st_file *f,
                            char *err, size_t errlen);
/* Reads and parses a whole file (f owns the bytes). */
vae_status st_read_file(const char *path, st_file *f, char *err, size_t errlen);
const st_tensor_info *st_find(const st_file *f, const char *name);
const char *st_meta_get(const st_file *f, const char *key);
void st_free(st_file *f);

typedef struct {
    const char *name;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;         /* product(shape) elements of dtype, little-endian */
    const char *dtype;        /* NULL: "F32"; else one of the dtypes the parser knows */
} st_tensor_out;

/* Serialises tensors and string metadata into a new buffer (*out owned by
 * the caller, free()). The header is padded with spaces to a multiple of 8. */
vae_status st_write_mem(const st_tensor_out *tensors, int n_tensors,
                        const char *const *meta_keys, const char *const *meta_values, int n_meta,
                        uint8_t **out, size_t *out_len, char *err, size_t errlen);
/* Writes a file atomically: a temporary file beside it, fsync, rename, fsync
 * of the directory. On failure the target is untouched. */
vae_status st_write_file(const char *path, const st_tensor_out *tensors, int n_tensors,
                         const char *const *meta_keys, const char *const *meta_values, int n_meta,
                         char *err, size_t errlen);

#endif
