/* Unit tests for server/data_sets.c: where a data set's IDX files are, by the
 * names users type (the built-in layout and the labels-beside-images rule). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtin_paths),
        cmocka_unit_test(test_path_with_labels_beside),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
