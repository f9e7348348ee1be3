/* Unit tests for engine/file_io.c's temporary files: unique names (a file a
 * crash left under any earlier name never blocks a save), what counts as a
 * temporary name, and their removal at start. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/file_io.h"
#include "tests/lib/harness.h"

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void touch(const char *path)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("left by a crash", f);
    fclose(f);
}

static void test_temp_names(void **state)
{
    (void)state;
    assert_true(file_io_is_temp_name("model.safetensors.tmp.0123456789ab"));
    assert_true(file_io_is_temp_name("resume.safetensors.tmp.1.0")); /* pid.counter, as before */
    assert_false(file_io_is_temp_name("notes.tmp"));
    assert_false(file_io_is_temp_name(".tmp.0123"));
    assert_false(file_io_is_temp_name("a.tmp."));
    assert_false(file_io_is_temp_name("a.tmp.xyz"));
    assert_false(file_io_is_temp_name("registry.db"));
}

/* The leftovers of a crash under the names an earlier daemon (PID 1 in a
 * container, every time) would pick do not stop a save, and are cleared. */
static void test_leftovers_neither_block_nor_stay(void **state)
{
    (void)state;
    char dir[HARNESS_PATH_MAX], path[HARNESS_PATH_MAX + 64], left[HARNESS_PATH_MAX + 96], err[256];
    assert_int_equal(harness_tmpdir(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/resume.safetensors", dir);
    for (int i = 0; i < 4; i++) {
        snprintf(left, sizeof left, "%s.tmp.1.%d", path, i);
        touch(left);
        snprintf(left, sizeof left, "%s.tmp.%ld.%d", path, (long)getpid(), i);
        touch(left);
    }
    snprintf(left, sizeof left, "%s/keep.tmp", dir);
    touch(left);
    snprintf(left, sizeof left, "%s/sub.tmp.00", dir); /* a directory: not touched */
    assert_int_equal(mkdir(left, 0700), 0);
    for (int i = 0; i < 20; i++)
        assert_int_equal(file_io_write_atomic(path, (const uint8_t *)"ok", 2, err, sizeof err),
                         VAE_OK);
    assert_int_equal(count_entries(dir), 8 + 3); /* nothing of its own left behind */
    int removed = -1;
    assert_int_equal(file_io_remove_stale_temps(dir, &removed, err, sizeof err), VAE_OK);
    assert_int_equal(removed, 8);
    assert_int_equal(count_entries(dir), 3); /* the file, keep.tmp, the directory */
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(file_io_read_all(path, 16, &buf, &len, err, sizeof err), VAE_OK);
    assert_int_equal(len, 2);
    free(buf);
    assert_int_equal(file_io_remove_stale_temps("/nonexistent/vaed", &removed, err, sizeof err),
                     VAE_OK);
    assert_int_equal(removed, 0);
    harness_rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_temp_names),
        cmocka_unit_test(test_leftovers_neither_block_nor_stay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
