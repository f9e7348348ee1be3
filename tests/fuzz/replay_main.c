/* replay_main: a fuzz target as a unit test. Linked with one
 * tests/fuzz/fuzz_NAME.c into BUILD/tests/unit_fuzz_NAME (gcc, no libFuzzer),
 * it feeds LLVMFuzzerTestOneInput every file of tests/fuzz/corpus/NAME/ —
 * its seeds and every input a fuzzing run found crashing — and then every
 * other target's corpus, one cmocka test per corpus directory. An input
 * that crashes, trips a target's check or (under make asan) a sanitizer
 * fails the binary, which the suite counts as a failed test.
 *
 * Run from the repository root, as scripts/run-tests.sh does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* $FUZZ_CORPUS_ROOT, else this (relative to the repository root). */
#define CORPUS_ROOT "tests/fuzz/corpus"
#define MAX_DIRS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in dir that do not start with '.', sorted; *n of them (caller frees each and the array). */
static char **list_dir(const char *dir, int *n)
{
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return NULL;
    char **names = NULL; /* owned: returned */
    int cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            char **grown = realloc(names, (size_t)cap * sizeof *names);
            assert_non_null(grown);
            names = grown;
        }
        names[*n] = strdup(e->d_name);
        assert_non_null(names[*n]);
        (*n)++;
    }
    closedir(d);
    if (*n)
        qsort(names, (size_t)*n, sizeof *names, cmp_names);
    return names;
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(size > 0 ? (size_t)size : 1); /* owned: returned */
    if (buf && size > 0 && fread(buf, 1, (size_t)size, f) != (size_t)size) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = size > 0 ? (size_t)size : 0;
    return buf;
}

static void test_replay_dir(void **state)
{
    const char *dir = *state;
    int n = 0, ran = 0;
    char **names = list_dir(dir, &n);
    for (int i = 0; i < n; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            size_t len = 0;
            uint8_t *data = read_file(path, &len);
            if (!data)
                fail_msg("cannot read %s", path);
            /* Printed first, so a crash names its input. */
            fprintf(stderr, "replay %s (%zu bytes)\n", path, len);
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            LLVMFuzzerTestOneInput(data, len);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) * 1e-6;
            if (ms > 1000)
                fprintf(stderr, "replay %s took %.0f ms\n", path, ms);
            free(data);
            ran++;
        }
        free(names[i]);
    }
    free(names);
    printf("replayed %d inputs from %s\n", ran, dir);
}

int main(int argc, char **argv)
{
    /* unit_fuzz_NAME: NAME's corpus first, then the others'. */
    const char *base = strrchr(argv[0], '/');
    base = base ? base + 1 : argv[0];
    const char *own = strncmp(base, "unit_fuzz_", 10) ? "" : base + 10;
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);

    const char *root = getenv("FUZZ_CORPUS_ROOT");
    root = root && *root ? root : CORPUS_ROOT;
    int n = 0;
    char **names = list_dir(root, &n);
    if (!names) {
        fprintf(stderr, "replay: no %s (run from the repository root)\n", root);
        return 1;
    }
    static struct CMUnitTest tests[MAX_DIRS];
    static char dirs[MAX_DIRS][512], titles[MAX_DIRS][600];
    int count = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n && count < MAX_DIRS; i++) {
            int is_own = !strcmp(names[i], own);
            if (pass == 0 ? !is_own : is_own)
                continue;
            snprintf(dirs[count], sizeof dirs[count], "%s/%s", root, names[i]);
            snprintf(titles[count], sizeof titles[count], "replay_%s", names[i]);
            tests[count] = (struct CMUnitTest){.name = titles[count],
                                               .test_func = test_replay_dir,
                                               .initial_state = dirs[count]};
            count++;
        }
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    char group[128];
    snprintf(group, sizeof group, "fuzz target %s", *own ? own : base);
    return _cmocka_run_group_tests(group, tests, (size_t)count, NULL, NULL);
}
