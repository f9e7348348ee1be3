/* trainer_dist: the agreement of the ranks at start. See trainer_dist.h. */
#include "engine/trainer_dist.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/util.h"

/* The line of a that holds byte at into out, from at most 40 bytes before
 * at ("..." when the line starts earlier) to at most 40 after it. */
static void line_at(const char *a, size_t at, char *out, size_t outlen)
{
    size_t b = at, len = strlen(a);
    while (b > 0 && a[b - 1] != '\n' && at - b < 40) b--;
    int cut = b > 0 && a[b - 1] != '\n';
    size_t e = at < len ? at : len;
    while (e < len && a[e] != '\n' && e - at < 40) e++;
    snprintf(out, outlen, "%s%.*s", cut ? "..." : "", (int)(e - b), a + b);
}

/* Appends the ranks whose flag is set in flags (size) to s as "1, 3". */
static void list_ranks(const float *flags, int size, char *s, size_t len)
{
    size_t used = strlen(s);
    for (int r = 0, first = 1; r < size && used + 16 < len; r++) {
        if (flags[r] == 0.0f) continue;
        used += (size_t)snprintf(s + used, len - used, first ? "%d" : ", %d", r);
        first = 0;
    }
}

vae_status trainer_dist_agree(const trainer_dist *d, int ok, const char *text, char *err,
                              size_t errlen)
{
    if (!trainer_dist_active(d)) return ok ? VAE_OK : VAE_ERR_ARG; /* err is the caller's */
    uint64_t len = d->rank == 0 ? strlen(text) : 0;
    vae_status rc = d->broadcast(d->ctx, &len, sizeof len, err, errlen);
    if (rc) return rc;
    if (len > (64u << 20)) {
        util_set_err(err, errlen, "rank 0 sent a configuration of %llu bytes", (unsigned long long)len);
        return VAE_ERR_IO;
    }
    char *root = malloc((size_t)len + 1);                       /* owned here */
    float *flags = calloc(2 * (size_t)d->size, sizeof *flags); /* owned here: failed, then differs */
    if (!root || !flags) {
        free(root);
        free(flags);
        util_set_err(err, errlen, "out of memory agreeing on the configuration");
        return VAE_ERR_NOMEM;
    }
    if (d->rank == 0) memcpy(root, text, (size_t)len);
    root[len] = '\0';
    if ((rc = d->broadcast(d->ctx, root, (size_t)len, err, errlen))) goto end;
    int differs = strcmp(root, text) != 0;
    flags[d->rank] = ok ? 0.0f : 1.0f;
    flags[d->size + d->rank] = differs ? 1.0f : 0.0f;
    if ((rc = d->allreduce_sum(d->ctx, flags, 2 * (size_t)d->size, err, errlen))) goto end;
    int failed = 0, differ = 0;
    for (int r = 0; r < d->size; r++) {
        failed += flags[r] != 0.0f;
        differ += flags[d->size + r] != 0.0f;
    }
    if (!failed && !differ) goto end;
    rc = VAE_ERR_ARG;
    if (differs) {
        size_t at = 0;
        while (root[at] && root[at] == text[at]) at++;
        char mine[160], theirs[160];
        line_at(text, at, mine, sizeof mine);
        line_at(root, at, theirs, sizeof theirs);
        util_set_err(err, errlen,
                     "rank %d's run differs from rank 0's: rank 0 has \"%s\", rank %d \"%s\"",
                     d->rank, theirs, d->rank, mine);
    } else if (!ok) {
        /* the caller's message says why; it stays */
    } else {
        char s[512] = "";
        if (failed) {
            strcat(s, "the setup failed on rank ");
            list_ranks(flags, d->size, s, sizeof s);
        }
        if (differ) {
            strcat(s, failed ? "; " : "");
            strcat(s, "the run differs from rank 0's on rank ");
            list_ranks(flags + d->size, d->size, s, sizeof s);
        }
        util_set_err(err, errlen, "%s (each rank's message says why); nothing was trained", s);
    }
end:
    free(root);
    free(flags);
    return rc;
}
