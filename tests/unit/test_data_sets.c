/* Unit tests for server/data_sets.c: where a data set's IDX files are, by the
 * names users type (the built-in layout and the labels-beside-images rule). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/file_io.h"

#include "server/data_sets.h"

static void test_builtin_paths(void **state)
{
    (void)state;
    char img[256], lab[256];
    assert_int_equal(data_sets_idx_paths("/d", "mnist", DATA_SETS_TRAIN, img, lab, sizeof img), 0);
    assert_string_equal(img, "/d/mnist/train-images-idx3-ubyte");
    assert_string_equal(lab, "/d/mnist/train-labels-idx1-ubyte");
    assert_int_equal(data_sets_idx_paths("data", "fashion", DATA_SETS_TEST, img, lab, sizeof img),
                     0);
    assert_string_equal(img, "data/fashion/t10k-images-idx3-ubyte");
    assert_string_equal(lab, "data/fashion/t10k-labels-idx1-ubyte");
    assert_true(data_sets_is_builtin("mnist") && data_sets_is_builtin("fashion"));
    assert_false(data_sets_is_builtin("cifar"));
    /* a root too long for the buffer is refused, not cut */
    assert_int_equal(data_sets_idx_paths("/a/long/root", "mnist", DATA_SETS_TRAIN, img, lab, 20),
                     -1);
}

static void test_path_with_labels_beside(void **state)
{
    (void)state;
    char img[256], lab[256];
    assert_int_equal(data_sets_idx_paths("/d", "sets/x-images-idx3-ubyte.gz", DATA_SETS_TRAIN, img,
                                         lab, sizeof img),
                     0);
    assert_string_equal(img, "sets/x-images-idx3-ubyte.gz");
    assert_string_equal(lab, "sets/x-labels-idx1-ubyte.gz");
    /* no -images-idx3-ubyte part: no labels */
    assert_int_equal(data_sets_idx_paths("/d", "sets/bare.idx", DATA_SETS_TRAIN, img, lab,
                                         sizeof img),
                     0);
    assert_string_equal(img, "sets/bare.idx");
    assert_string_equal(lab, "");
    /* a path has no test split */
    assert_int_equal(data_sets_idx_paths("/d", "sets/x-images-idx3-ubyte", DATA_SETS_TEST, img,
                                         lab, sizeof img),
                     -1);
}

/* Server directories leave messages; paths inside them stay, relative. */
static void test_strip_dir(void **state)
{
    (void)state;
    char text[PATH_MAX + 64];
    snprintf(text, sizeof text, "/srv/sets/a/b-idx3-ubyte: bad magic; see \"/srv/sets/c\" and "
                                "/srv/setsX/d and x/srv/sets/e");
    data_sets_strip_dir(text, "/srv/sets/");
    assert_string_equal(text, "a/b-idx3-ubyte: bad magic; see \"c\" and /srv/setsX/d and "
                              "x/srv/sets/e");
    snprintf(text, sizeof text, "(var/jobs/3/resume.safetensors): no space");
    data_sets_strip_dir(text, "var");
    assert_string_equal(text, "(jobs/3/resume.safetensors): no space");
    /* the real path of a relative one too */
    char cwd[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof cwd));
    snprintf(text, sizeof text, "%s/tests/x: gone", cwd);
    data_sets_strip_dir(text, "tests/..");
    assert_string_equal(text, "tests/x: gone");
    snprintf(text, sizeof text, "unchanged");
    data_sets_strip_dir(text, ".");
    data_sets_strip_dir(text, "");
    data_sets_strip_dir(text, NULL);
    assert_string_equal(text, "unchanged");
}

/* Data is read from regular files only: a FIFO is refused without waiting
 * for a writer, and so are directories and devices. */
static void test_only_regular_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/vaed_test_sets_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char fifo[64], file[64], err[256];
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    snprintf(file, sizeof file, "%s/file", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fputs("x", f);
    fclose(f);
    assert_int_equal(file_io_open_regular(fifo, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a regular file"));
    assert_int_equal(file_io_open_regular(dir, err, sizeof err), -1);
    assert_int_equal(file_io_open_regular("/dev/zero", err, sizeof err), -1);
    int fd = file_io_open_regular(file, err, sizeof err);
    assert_true(fd >= 0);
    assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
    close(fd);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(file_io_read_all(fifo, 100, &buf, &len, err, sizeof err), VAE_ERR_IO);
    dataset d;
    assert_int_not_equal(data_sets_load(dir, fifo, DATA_SETS_TRAIN, &d, err, sizeof err), VAE_OK);
    assert_non_null(strstr(err, "not a regular file"));
    unlink(fifo);
    unlink(file);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtin_paths),
        cmocka_unit_test(test_path_with_labels_beside),
        cmocka_unit_test(test_strip_dir),
        cmocka_unit_test(test_only_regular_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
