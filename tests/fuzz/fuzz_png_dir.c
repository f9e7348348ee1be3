/* fuzz_png_dir: the PNG-folder loader (dataset_load_png_dir): a folder of
 * PNGs, or of class sub-folders of PNGs.
 *
 * Input: records of [where][name][2-byte little-endian length][bytes], at
 * most 12. where & 3 is 0 for the top folder, else class sub-folder
 * "c<where & 3>"; where & 4 makes the name start with '.', which the loader
 * skips; name picks the file name "<name>.png". The first image sets the
 * shape; a loaded set must have every image in it, pixels in [0, 1], and
 * labels exactly when it has sub-folders. */
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

#include "engine/dataset.h"
#include "tests/fuzz/fuzz_env.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char dir[FUZZ_ENV_PATH_MAX], path[FUZZ_ENV_PATH_MAX + 64];
    fuzz_env_path(dir, sizeof dir, "pngs");
    fuzz_env_fresh_dir(dir);
    int subdirs = 0;
    for (int rec = 0; rec < 12 && size >= 4; rec++) {
        int where = data[0], name = data[1];
        size_t len = fuzz_env_u16(data + 2);
        data += 4;
        size -= 4;
        if (len > size)
            len = size;
        const char *dot = where & 4 ? "." : "";
        if (where & 3) {
            snprintf(path, sizeof path, "%s/c%d", dir, where & 3);
            mkdir(path, 0755);
            subdirs = 1;
            snprintf(path, sizeof path, "%s/c%d/%s%02x.png", dir, where & 3, dot, name);
        } else {
            snprintf(path, sizeof path, "%s/%s%02x.png", dir, dot, name);
        }
        fuzz_env_write_file(path, data, len);
        data += len;
        size -= len;
    }
    dataset d;
    char err[512] = "";
    if (dataset_load_png_dir(&d, dir, err, sizeof err) != VAE_OK) {
        FUZZ_CHECK(err[0] != '\0' && d.x == NULL && d.labels == NULL,
                   "a failed load left images or no message");
        return 0;
    }
    FUZZ_CHECK(d.n >= 1 && (d.channels == 1 || d.channels == 3), "%d images of %d channels", d.n,
               d.channels);
    FUZZ_CHECK(!subdirs || d.labels, "sub-folders but no labels");
    size_t total = (size_t)d.n * (size_t)dataset_dim(&d);
    for (size_t i = 0; i < total; i++)
        FUZZ_CHECK(d.x[i] >= 0.0f && d.x[i] <= 1.0f, "pixel %zu = %g", i, (double)d.x[i]);
    dataset_free(&d);
    return 0;
}
