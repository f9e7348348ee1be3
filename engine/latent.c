#include "engine/latent.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

void latent_walk(const float *a, const float *b, int L, int steps, latent_path path, float *z)
{
    double na = 0, nb = 0, dot = 0;
    for (int k = 0; k < L; k++) {
        na += (double)a[k] * a[k];
        nb += (double)b[k] * b[k];
        dot += (double)a[k] * b[k];
    }
    double omega = 0, so = 0;
    if (path == LATENT_SLERP && na > 0 && nb > 0) {
        double cosw = dot / sqrt(na * nb);
        if (cosw > 1)
            cosw = 1;
        if (cosw < -1)
            cosw = -1;
        omega = acos(cosw);
        so = sin(omega);
    }
    int use_slerp = path == LATENT_SLERP && so > 1e-6;
    for (int s = 0; s < steps; s++) {
        double t = (double)s / (double)(steps - 1);
        double wa, wb;
        if (use_slerp) {
            wa = sin((1.0 - t) * omega) / so;
            wb = sin(t * omega) / so;
        } else {
            wa = 1.0 - t;
            wb = t;
        }
        for (int k = 0; k < L; k++)
            z[(size_t)s * (size_t)L + (size_t)k] = (float)(wa * a[k] + wb * b[k]);
        if (s == 0)
            memcpy(z, a, (size_t)L * sizeof *z);
        if (s == steps - 1)
            memcpy(z + (size_t)s * (size_t)L, b, (size_t)L * sizeof *z);
    }
}
