/* The conv VAE's layers one at a time (vaed train --arch conv's defaults:
 * 28x28 padded to 32, channels 32,64,128,256, 64 images per training
 * thread), forward and backward, on the implicit GEMM (the widest tile
 * kernel the CPU has) and on im2col + gemm alternated in the same run,
 * checked against each other before timing; on AVX-512 CPUs also the
 * implicit GEMM on the 6 x 16 AVX2 tile, for the step's total.
 * Times are the thread's CPU time (best of REPS), so that other work on a
 * shared machine inflates them less than wall time.
 *   make build/bench_conv && build/bench_conv
 * prints a row per layer: forward and backward ms on each path, the ratio. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/conv.h"

enum { N = 64, REPS = 7 };

static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static float *filled(size_t n, unsigned seed)
{
    float *v = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        v[i] = (float)((seed >> 8) & 0xffff) / 65536.0f - 0.5f;
    }
    return v;
}

typedef struct {
    float *x, *y, *w, *b, *dy, *dx, *dw, *db, *col;
    size_t col_floats;
} bufs;

static void fwd(const conv_shape *s, bufs *u)
{
    (s->transposed ? conv_transpose2d_forward : conv2d_forward)(u->y, u->x, u->w, u->b, N, s,
                                                                u->col, u->col_floats);
}

static void bwd(const conv_shape *s, bufs *u, int with_dx)
{
    (s->transposed ? conv_transpose2d_backward : conv2d_backward)(
        with_dx ? u->dx : NULL, u->dw, u->db, u->dy, u->x, u->w, N, s, u->col, u->col_floats);
}

static double best_of(void (*f)(const conv_shape *, bufs *, int), const conv_shape *s, bufs *u,
                      int with_dx)
{
    double best = 1e30;
    for (int r = 0; r < REPS; r++) {
        double t0 = cpu_s();
        f(s, u, with_dx);
        double t = cpu_s() - t0;
        if (t < best) best = t;
    }
    return best;
}

static void fwd3(const conv_shape *s, bufs *u, int unused) { (void)unused; fwd(s, u); }

static double max_rel(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / fmax(1.0, fabs((double)b[i]));
        if (d > m) m = d;
    }
    return m;
}

int main(void)
{
    int widest = conv_set_implicit_gemm(1);
    if (!widest) {
        printf("no AVX2 + FMA here: only im2col + gemm runs\n");
        return 0;
    }
    conv_shape layers[8];
    int ch[4] = {32, 64, 128, 256}, side = 32, in = 1;
    for (int i = 0; i < 4; i++) {
        layers[i] = conv2d_shape(in, ch[i], side, side, 3, 2, 1);
        in = ch[i];
        side /= 2;
    }
    for (int i = 0; i < 4; i++) {
        int out = i < 3 ? ch[2 - i] : 1;
        layers[4 + i] = conv_transpose2d_shape(ch[3 - i], out, side, side, 3, 2, 1, 1);
        side *= 2;
    }
    printf("layer                  fwd ms implicit / im2col  ratio   bwd ms implicit / im2col  ratio\n");
    double tot[6] = {0};
    for (int li = 0; li < 8; li++) {
        const conv_shape *s = &layers[li];
        size_t nx = (size_t)s->cin * N * s->h * s->w, ny = (size_t)s->cout * N * s->oh * s->ow;
        size_t nw = conv_weight_floats(s);
        bufs u = {filled(nx, 1), filled(ny, 2), filled(nw, 3), filled((size_t)s->cout, 4),
                  filled(ny, 5), filled(nx, 6), calloc(nw, 4), calloc((size_t)s->cout, 4),
                  NULL, (size_t)1 << 22};
        if (u.col_floats < conv_col_floats(s, 1)) u.col_floats = conv_col_floats(s, 1);
        u.col = malloc(sizeof(float) * u.col_floats);
        int with_dx = li > 0; /* the input needs no gradient */
        /* the two paths agree before they are timed */
        float *y2 = malloc(sizeof(float) * ny), *dx2 = malloc(sizeof(float) * nx);
        float *dw2 = calloc(nw, 4);
        fwd(s, &u);
        bwd(s, &u, with_dx);
        memcpy(y2, u.y, sizeof(float) * ny);
        memcpy(dx2, u.dx, sizeof(float) * nx);
        memcpy(dw2, u.dw, sizeof(float) * nw);
        conv_set_path(CONV_IM2COL);
        memset(u.dw, 0, sizeof(float) * nw);
        memset(u.db, 0, sizeof(float) * s->cout);
        fwd(s, &u);
        bwd(s, &u, with_dx);
        double e = fmax(max_rel(y2, u.y, ny), fmax(max_rel(dx2, u.dx, nx), max_rel(dw2, u.dw, nw) / N));
        if (e > 1e-4) {
            printf("layer %d: the paths differ by %g\n", li, e);
            return 1;
        }
        /* t: fwd, bwd on the widest implicit path, on im2col, and on the
         * 6 x 16 AVX2 tile where the widest is AVX-512 */
        double t[6];
        const int paths[3] = {widest, CONV_IM2COL, CONV_IMPLICIT_AVX2};
        for (int rep = 0; rep < 2; rep++) /* alternated */
            for (int pi = 0; pi < 3; pi++) {
                conv_set_path(paths[pi]);
                double f = best_of(fwd3, s, &u, 0), b = best_of(bwd, s, &u, with_dx);
                if (rep == 0 || f < t[2 * pi]) t[2 * pi] = f;
                if (rep == 0 || b < t[2 * pi + 1]) t[2 * pi + 1] = b;
            }
        conv_set_path(widest);
        for (int i = 0; i < 6; i++) tot[i] += t[i];
        printf("%s %3d->%-3d %2dx%-2d   %8.3f / %8.3f  %5.2fx   %8.3f / %8.3f  %5.2fx\n",
               s->transposed ? "convT " : "conv2d", s->cin, s->cout, s->h, s->w, 1e3 * t[0],
               1e3 * t[2], t[2] / t[0], 1e3 * t[1], 1e3 * t[3], t[3] / t[1]);
        free(u.x), free(u.y), free(u.w), free(u.b), free(u.dy), free(u.dx), free(u.dw);
        free(u.db), free(u.col), free(y2), free(dx2), free(dw2);
    }
    printf("all layers             %8.3f / %8.3f  %5.2fx   %8.3f / %8.3f  %5.2fx\n", 1e3 * tot[0],
           1e3 * tot[2], tot[2] / tot[0], 1e3 * tot[1], 1e3 * tot[3], tot[3] / tot[1]);
    printf("step (fwd + bwd)       %8.3f / %8.3f ms  %5.2fx\n", 1e3 * (tot[0] + tot[1]),
           1e3 * (tot[2] + tot[3]), (tot[2] + tot[3]) / (tot[0] + tot[1]));
    if (widest == CONV_IMPLICIT_AVX512)
        printf("step, 6x16 AVX2 tile     %8.3f ms (12x16 AVX-512 tile %5.2fx faster)\n",
               1e3 * (tot[4] + tot[5]), (tot[4] + tot[5]) / (tot[0] + tot[1]));
    return 0;
}
