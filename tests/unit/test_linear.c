/* linear: the forward pass and both halves of the backward pass against
 * double-precision loops, over shapes that cross gemm's tile edges; dw and
 * db are added into (the gradients start non-zero here), dx is overwritten
 * and may be NULL; linear_backward_params writes a range of rows alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/linear.h"
#include "engine/rng.h"

static float *rand_floats(rng_state *r, size_t n)
{
    float *v = malloc(sizeof(float) * (n ? n : 1));
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) v[i] = 2.0f * rng_uniform(r) - 1.0f;
    return v;
}

/* |got - want| <= 1e-5 * max(1, |want|): float sums of up to 70 terms of size 1 */
static void assert_close(const float *got, const double *want, size_t n, const char *what, int B,
                         int in, int out)
{
    for (size_t i = 0; i < n; i++)
        if (!(fabs(got[i] - want[i]) <= 1e-5 * fmax(1.0, fabs(want[i]))))
            fail_msg("%s[%zu] (B %d, in %d, out %d): %.8g, reference %.8g", what, i, B, in, out,
                     got[i], want[i]);
}

static void check_shape(int B, int in, int out)
{
    rng_state r;
    rng_seed(&r, (uint64_t)(B * 10007 + in * 101 + out));
    float *x = rand_floats(&r, (size_t)B * in), *w = rand_floats(&r, (size_t)out * in);
    float *b = rand_floats(&r, (size_t)out), *dy = rand_floats(&r, (size_t)B * out);
    float *dw = rand_floats(&r, (size_t)out * in), *db = rand_floats(&r, (size_t)out);
    float *y = malloc(sizeof(float) * B * out), *dx = rand_floats(&r, (size_t)B * in);
    double *want_y = malloc(sizeof(double) * B * out), *want_dx = malloc(sizeof(double) * B * in);
    double *want_dw = malloc(sizeof(double) * out * in), *want_db = malloc(sizeof(double) * out);
    for (int n = 0; n < B; n++)
        for (int o = 0; o < out; o++) {
            double s = b[o];
            for (int i = 0; i < in; i++) s += (double)x[n * in + i] * w[o * in + i];
            want_y[n * out + o] = s;
        }
    for (int o = 0; o < out; o++) {
        double s = db[o];
        for (int n = 0; n < B; n++) s += dy[n * out + o];
        want_db[o] = s;
        for (int i = 0; i < in; i++) {
            double t = dw[o * in + i];
            for (int n = 0; n < B; n++) t += (double)dy[n * out + o] * x[n * in + i];
            want_dw[o * in + i] = t;
        }
    }
    for (int n = 0; n < B; n++)
        for (int i = 0; i < in; i++) {
            double s = 0;
            for (int o = 0; o < out; o++) s += (double)dy[n * out + o] * w[o * in + i];
            want_dx[n * in + i] = s;
        }

    linear_forward(y, x, w, b, B, in, out);
    assert_close(y, want_y, (size_t)B * out, "y", B, in, out);
    float *dw2 = malloc(sizeof(float) * out * in), *db2 = malloc(sizeof(float) * out);
    memcpy(dw2, dw, sizeof(float) * out * in);
    memcpy(db2, db, sizeof(float) * out);
    linear_backward(dx, dw, db, dy, x, w, B, in, out);
    assert_close(dx, want_dx, (size_t)B * in, "dx", B, in, out);
    assert_close(dw, want_dw, (size_t)out * in, "dw", B, in, out);
    assert_close(db, want_db, (size_t)out, "db", B, in, out);
    /* without dx the parameter gradients are the same */
    linear_backward(NULL, dw2, db2, dy, x, w, B, in, out);
    assert_close(dw2, want_dw, (size_t)out * in, "dw (dx NULL)", B, in, out);
    assert_close(db2, want_db, (size_t)out, "db (dx NULL)", B, in, out);
    /* rows [r0, r1) written (accumulate 0) over rubbish, the rest untouched:
     * two threads writing halves of one gradient */
    int r0 = out / 3, r1 = out - out / 4;
    for (size_t i = 0; i < (size_t)out * in; i++) dw2[i] = 1e30f;
    for (int o = 0; o < out; o++) db2[o] = 1e30f;
    linear_backward_params(dw2, db2, dy, x, B, in, out, r0, r1, 0);
    for (int o = 0; o < out; o++) {
        double sb = 0;
        for (int n = 0; n < B; n++) sb += dy[n * out + o];
        want_db[o] = o >= r0 && o < r1 ? sb : 1e30f;
        for (int i = 0; i < in; i++) {
            double t = 0;
            for (int n = 0; n < B; n++) t += (double)dy[n * out + o] * x[n * in + i];
            want_dw[o * in + i] = o >= r0 && o < r1 ? t : 1e30f;
        }
    }
    assert_close(dw2, want_dw, (size_t)out * in, "dw rows (accumulate 0)", B, in, out);
    assert_close(db2, want_db, (size_t)out, "db rows (accumulate 0)", B, in, out);
    free(x); free(w); free(b); free(dy); free(dw); free(db); free(y); free(dx);
    free(want_y); free(want_dx); free(want_dw); free(want_db); free(dw2); free(db2);
}

static void test_against_double_loops(void **state)
{
    (void)state;
    const int Bs[] = {1, 2, 3, 7, 17, 64};
    const int dims[] = {1, 5, 16, 17, 33, 70};
    for (size_t a = 0; a < sizeof Bs / sizeof Bs[0]; a++)
        for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
            for (size_t o = 0; o < sizeof dims / sizeof dims[0]; o++)
                check_shape(Bs[a], dims[i], dims[o]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_double_loops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
